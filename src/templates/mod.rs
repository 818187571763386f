//! The Python functions and layers a SAM/CloudFormation template or a
//! Serverless `serverless.yml` declares, for `lbuild init` (moving from SAM
//! or Serverless is one command).
//!
//! Owns finding the template (`--template`, `samconfig.toml`'s
//! `template_file`, or the YAML files declaring a Lambda function), reading
//! it whole ([`yaml`]: tags as data, positions, bounded aliases) and turning
//! it into a [`Template`]: per function its handler, code directory,
//! runtime, architecture, timeout, memory, literal environment, layers; per
//! `AWS::Serverless::LayerVersion` built by `python3.X` a layer; and the
//! report of what was left out and why (the SAM reading in `sam.rs`, the
//! Serverless reading in `serverless.rs`). It does not write the manifest
//! (`init.rs` does) nor resolve what CloudFormation would (parameters,
//! `!Sub`, `!GetAtt`): references are kept as text for comments.

mod sam;
mod serverless;
pub(crate) mod yaml;

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use yaml::Node;

use crate::Error;

/// One function found in the template.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct TemplateFunction {
    /// The logical ID (SAM) or the function's key (Serverless): letters,
    /// digits, `-`, `_` (checked).
    pub name: String,
    /// `module.function`, dotted Python identifiers, relative to `root`.
    pub handler: String,
    /// The code directory relative to the project (`.` for the project).
    pub root: String,
    pub runtime: Option<String>,
    pub architecture: Option<String>,
    pub timeout: Option<i64>,
    pub memory: Option<i64>,
    /// Literal environment variables, in the template's order.
    pub environment: Vec<(String, String)>,
    /// Variables whose value is a reference, as (name, the reference's text).
    pub environment_refs: Vec<(String, String)>,
    /// Names of layers this template declares and init carries over.
    pub layers: Vec<String>,
    /// Layers attached by ARN (not built here).
    pub external_layers: Vec<String>,
    /// Layer entries init cannot resolve (a `!Sub`, a parameter), as text.
    pub layer_refs: Vec<String>,
    /// A non-empty `ROOT/requirements.txt` (SAM builds it per function).
    pub requirements: Option<String>,
    /// Serverless `package.patterns`: what to add to / take from the
    /// sources (`None`: the writer's default).
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    /// Distributions not to ship (serverless-python-requirements' noDeploy).
    pub dependency_exclude: Vec<String>,
    /// The AWS function name when the template gives it literally.
    pub aws_name: Option<String>,
}

/// A layer built from the template's sources and requirements.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct TemplateLayer {
    pub name: String,
    /// The directory whose files go under `python/` (relative to the project).
    pub root: String,
    pub requirements: Option<String>,
    pub runtime: Option<String>,
}

/// What a template says.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Template {
    /// The template's path relative to the project (as written in messages).
    pub file: String,
    /// "SAM" or "Serverless".
    pub kind: &'static str,
    pub functions: Vec<TemplateFunction>,
    pub layers: Vec<TemplateLayer>,
    /// The default for every function (SAM `Globals`, Serverless `provider`).
    pub runtime: Option<String>,
    pub architecture: Option<String>,
    /// Each thing left out, with why; each guess made.
    pub report: Vec<String>,
}

fn input(message: String, hint: &str) -> Error {
    Error::Input {
        message,
        hint: hint.into(),
    }
}

/// The template to read, if any: `explicit` (`--template`), else
/// `samconfig.toml`'s `template_file`, else the one YAML file under `dir`
/// (three levels deep) declaring `AWS::Serverless::Function` or
/// `AWS::Lambda::Function`, or a `serverless.yml`. Several: an error
/// listing them.
pub(crate) fn locate(dir: &Path, explicit: Option<&Path>) -> crate::Result<Option<PathBuf>> {
    if let Some(p) = explicit {
        let p = if p.is_absolute() {
            p.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(Error::io("cannot read", "."))?
                .join(p)
        };
        if !p.is_file() {
            return Err(input(
                format!("--template {}: no such file", p.display()),
                "pass the path of a SAM/CloudFormation template or a serverless.yml",
            ));
        }
        return Ok(Some(p));
    }
    let samconfig = dir.join("samconfig.toml");
    if let Ok(text) = fs_err::read_to_string(&samconfig) {
        let table: toml::Table = toml::from_str(&text).map_err(|e| {
            input(
                format!("{}: {}", samconfig.display(), e.message()),
                "fix samconfig.toml, or pass --template PATH",
            )
        })?;
        if let Some(t) = find_key(&toml::Value::Table(table), "template_file") {
            let p = dir.join(&t);
            if !p.is_file() {
                return Err(input(
                    format!(
                        "{} names template_file {:?}, which does not exist",
                        samconfig.display(),
                        t
                    ),
                    "fix template_file, or pass --template PATH",
                ));
            }
            return Ok(Some(p));
        }
    }
    let mut found = Vec::new();
    let walk = walkdir::WalkDir::new(dir)
        .max_depth(3)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            let n = e.file_name().to_string_lossy();
            e.depth() == 0
                || !(n.starts_with('.')
                    || crate::exclusions::PRUNED_DIRS.contains(&n.as_ref())
                    || matches!(n.as_ref(), "node_modules" | "cdk.out" | "dist"))
        });
    for e in walk.flatten() {
        let name = e.file_name().to_string_lossy();
        if !e.file_type().is_file() || !(name.ends_with(".yaml") || name.ends_with(".yml")) {
            continue;
        }
        let serverless = e.depth() == 1 && name.starts_with("serverless.");
        let declares = || {
            fs_err::read(e.path()).is_ok_and(|b| {
                let t = String::from_utf8_lossy(&b);
                t.contains("AWS::Serverless::Function") || t.contains("AWS::Lambda::Function")
            })
        };
        if serverless || declares() {
            found.push(e.into_path());
        }
    }
    match found.len() {
        0 | 1 => Ok(found.pop()),
        _ => {
            let names: Vec<String> = found
                .iter()
                .map(|p| rel(dir, p).unwrap_or_else(|| p.display().to_string()))
                .collect();
            Err(input(
                format!(
                    "found {} templates declaring Lambda functions: {}",
                    names.len(),
                    names.join(", ")
                ),
                "pass the one to migrate: lbuild init --template PATH",
            ))
        }
    }
}

fn find_key(v: &toml::Value, key: &str) -> Option<String> {
    let t = v.as_table()?;
    if let Some(s) = t.get(key).and_then(|v| v.as_str()) {
        return Some(s.to_string());
    }
    t.values().find_map(|v| find_key(v, key))
}

fn rel(dir: &Path, p: &Path) -> Option<String> {
    let d = dir.canonicalize().ok()?;
    let p = p.canonicalize().ok()?;
    Some(p.strip_prefix(d).ok()?.to_string_lossy().into_owned())
}

/// Reads the template at `path` for the project in `dir`.
pub(crate) fn read(dir: &Path, path: &Path) -> crate::Result<Template> {
    let bytes = fs_err::read(path).map_err(Error::io("cannot read", path))?;
    let shown = rel(dir, path).unwrap_or_else(|| path.display().to_string());
    let doc = yaml::load(&bytes).map_err(|e| {
        input(
            format!("{shown}:{}:{}: {}", e.line, e.col, e.message),
            "fix the template (sam validate / serverless print read it the same way), or pass --template for another file",
        )
    })?;
    // Code paths in the template are relative to its own directory.
    let base = {
        let parent = Path::new(&shown).parent().unwrap_or(Path::new(""));
        if path.is_absolute() && rel(dir, path).is_none() {
            None
        } else {
            Some(parent.to_path_buf())
        }
    };
    let mut r = Reader {
        dir,
        file: shown,
        base,
        report: Vec::new(),
    };
    let serverless = !doc.get("service").is_null() && !doc.get("functions").is_null();
    if serverless {
        r.serverless(&doc)
    } else {
        r.sam(&doc)
    }
}

struct Reader<'a> {
    dir: &'a Path,
    file: String,
    /// The template's directory relative to the project; `None` when the
    /// template lives outside it.
    base: Option<PathBuf>,
    report: Vec<String>,
}

/// Name/value pairs in the template's order.
type Vars = Vec<(String, String)>;

/// A scalar's text, numbers included; `None` for a reference or a collection.
fn text(n: &Node) -> Option<String> {
    n.as_str().map(str::to_string)
}

/// A Serverless `${...}` variable or a CloudFormation intrinsic: a value
/// only the deploy tool knows.
fn is_reference(n: &Node) -> bool {
    n.intrinsic().is_some() || n.as_str().is_some_and(|s| s.contains("${"))
}

/// Letters, digits, `-` and `_`: a bare TOML key, a file name, an AWS name.
pub(crate) fn plain_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// `module.function`: at least two dotted Python identifiers.
pub(crate) fn valid_handler(h: &str) -> bool {
    let ident = |s: &str| {
        let mut c = s.chars();
        c.next()
            .is_some_and(|f| f == '_' || f.is_ascii_alphabetic())
            && c.all(|c| c == '_' || c.is_ascii_alphanumeric())
    };
    h.split('.').count() >= 2 && h.split('.').all(ident)
}

/// `path/to/module.function` (either separator) as `path.to.module.function`.
fn dotted(handler: &str) -> String {
    handler
        .trim()
        .trim_start_matches("./")
        .replace(['/', '\\'], ".")
}

/// `s` for a message: quoted, control characters and quotes escaped.
fn shown(s: &str) -> String {
    format!("{s:?}")
}

impl Reader<'_> {
    fn at(&self, n: &Node) -> String {
        format!("{}:{}:{}", self.file, n.line, n.col)
    }

    fn check_name(&self, key: &Node, what: &str) -> crate::Result<String> {
        let name = key.as_str().unwrap_or_default().to_string();
        if plain_name(&name) {
            return Ok(name);
        }
        Err(input(
            format!(
                "{}: {what} name {} cannot name a manifest table and an output file",
                self.at(key),
                shown(&name)
            ),
            "rename it in the template to letters, digits, - and _ (CloudFormation logical IDs are alphanumeric)",
        ))
    }

    fn check_handler(&self, name: &str, n: &Node) -> crate::Result<String> {
        let raw = n.as_str().unwrap_or_default();
        let h = dotted(raw);
        if valid_handler(&h) {
            return Ok(h);
        }
        Err(input(
            format!(
                "{}: the handler of {name}, {}, is not module.function",
                self.at(n),
                shown(raw)
            ),
            "a Python handler is dotted identifiers, e.g. app.lambda_handler; fix it in the template, or pass --template for another file",
        ))
    }

    /// A directory the template names, relative to the project: `None`
    /// (with a report line) when it is outside the project.
    fn code_dir(&mut self, name: &str, written: &str) -> Option<String> {
        let Some(base) = &self.base else {
            self.report.push(format!(
                "{name}: left out: the template is outside the project, so its code directory {} is too (run init in the template's project)",
                shown(written)
            ));
            return None;
        };
        let mut out: Vec<String> = Vec::new();
        for c in base.join(written.trim()).components() {
            match c {
                Component::Normal(s) => out.push(s.to_string_lossy().into_owned()),
                Component::ParentDir if out.pop().is_some() => {}
                Component::CurDir => {}
                _ => {
                    self.report.push(format!(
                        "{name}: left out: its code directory {} is outside the project",
                        shown(written)
                    ));
                    return None;
                }
            }
        }
        let d = if out.is_empty() {
            ".".to_string()
        } else {
            out.join("/")
        };
        if !self.dir.join(&d).is_dir() {
            self.report.push(format!(
                "{name}: left out: its code directory {d} does not exist"
            ));
            return None;
        }
        Some(d)
    }

    /// `ROOT/python` (relative to the project) when it is a directory: what
    /// Python imports from a layer zipped as it is (Lambda puts /opt/python
    /// on the path).
    fn python_dir(&self, root: &str) -> Option<String> {
        let python = if root == "." {
            "python".to_string()
        } else {
            format!("{root}/python")
        };
        self.dir.join(&python).is_dir().then_some(python)
    }

    /// `ROOT/requirements.txt` when it names at least one requirement; an
    /// empty one is said once and not attached.
    fn requirements(&mut self, root: &str) -> Option<String> {
        let rel = if root == "." {
            "requirements.txt".to_string()
        } else {
            format!("{root}/requirements.txt")
        };
        let text = fs_err::read_to_string(self.dir.join(&rel)).ok()?;
        let empty = text
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'));
        if empty {
            let line = format!("{rel} names no requirement: not attached");
            if !self.report.contains(&line) {
                self.report.push(line);
            }
            return None;
        }
        Some(rel)
    }

    fn int(&mut self, fname: &str, key: &str, n: &Node) -> Option<i64> {
        if n.is_null() {
            return None;
        }
        match text(n).and_then(|s| s.parse().ok()) {
            Some(v) => Some(v),
            None => {
                self.report.push(format!(
                    "{fname}: {key} {} is not a number: left out (set it in lambda.toml)",
                    n.show(80)
                ));
                None
            }
        }
    }

    /// Environment variables of `maps` (later ones win), literal ones as
    /// values, references as text.
    fn environment(&self, maps: &[&Node]) -> (Vars, Vars) {
        let mut lit: Vars = Vec::new();
        let mut refs: Vars = Vec::new();
        for m in maps {
            for (k, v) in m.entries() {
                let Some(k) = k.as_str() else { continue };
                lit.retain(|(n, _)| n != k);
                refs.retain(|(n, _)| n != k);
                match text(v).filter(|_| !is_reference(v)) {
                    Some(s) => lit.push((k.to_string(), s)),
                    None if v.is_null() => lit.push((k.to_string(), String::new())),
                    None => refs.push((k.to_string(), v.show(120))),
                }
            }
        }
        (lit, refs)
    }

    fn architecture(n: &Node) -> Option<String> {
        let first = match n.items().first() {
            Some(i) => text(i),
            None => text(n),
        }?;
        matches!(first.as_str(), "arm64" | "x86_64").then_some(first)
    }

    fn left_out(&mut self, name: &str, props: &Node, carried: &[&str]) {
        let keys: Vec<&str> = props
            .entries()
            .iter()
            .filter_map(|(k, _)| k.as_str())
            .filter(|k| !carried.contains(k))
            .collect();
        if !keys.is_empty() {
            self.report.push(format!(
                "{name}: left out {} (they stay with your infrastructure code: lbuild builds and updates code, not triggers, permissions or networking)",
                keys.join(", ")
            ));
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(super) fn read_in(dir: &Path, name: &str) -> crate::Result<Template> {
        read(dir, &dir.join(name))
    }

    pub(super) fn said(e: &Error) -> String {
        match e {
            Error::Input { message, hint } => format!("{message}\n{hint}"),
            other => other.to_string(),
        }
    }

    #[test]
    fn locate_lists_several_templates_and_follows_samconfig() {
        let d = tempfile::tempdir().unwrap();
        let fnyaml = "Resources:\n  F:\n    Type: AWS::Serverless::Function\n";
        fs_err::create_dir_all(d.path().join("infra")).unwrap();
        fs_err::write(d.path().join("infra/backend.yaml"), fnyaml).unwrap();
        assert_eq!(
            locate(d.path(), None).unwrap().unwrap(),
            d.path().join("infra/backend.yaml")
        );
        fs_err::write(d.path().join("other.yml"), fnyaml).unwrap();
        fs_err::write(d.path().join("config.yaml"), "a: 1\n").unwrap();
        let e = said(&locate(d.path(), None).unwrap_err());
        assert!(e.contains("infra/backend.yaml, other.yml"), "{e}");
        assert!(e.contains("--template"), "{e}");
        fs_err::write(
            d.path().join("samconfig.toml"),
            "version = 0.1\n[default.build.parameters]\ntemplate_file = \"infra/backend.yaml\"\n",
        )
        .unwrap();
        assert_eq!(
            locate(d.path(), None).unwrap().unwrap(),
            d.path().join("infra/backend.yaml")
        );
    }
}
