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
//! report of what was left out and why. It does not write the manifest
//! (`init.rs` does) nor resolve what CloudFormation would (parameters,
//! `!Sub`, `!GetAtt`): references are kept as text for comments.

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

    fn sam(&mut self, doc: &Node) -> crate::Result<Template> {
        let globals = doc.get("Globals").get("Function");
        let runtime = text(globals.get("Runtime"));
        let arch = Self::architecture(globals.get("Architectures"));
        let resources = doc.get("Resources");
        // Layers first: functions refer to them by logical ID.
        let mut layers = Vec::new();
        let mut other_types: Vec<String> = Vec::new();
        for (id, res) in resources.entries() {
            let ty = res.get("Type").as_str().unwrap_or_default();
            match ty {
                "AWS::Serverless::LayerVersion" => {
                    let name = self.check_name(id, "layer")?;
                    if let Some(l) = self.sam_layer(&name, res) {
                        layers.push(l);
                    }
                }
                "AWS::Lambda::LayerVersion" => self.report.push(format!(
                    "{} (AWS::Lambda::LayerVersion): left out: its Content is built elsewhere; add a [layers.NAME] by hand to build it here",
                    id.as_str().unwrap_or_default()
                )),
                "AWS::Serverless::Function" | "AWS::Lambda::Function" => {}
                t => {
                    if !other_types.iter().any(|o| o == t) {
                        other_types.push(t.to_string());
                    }
                }
            }
        }
        let layer_names: Vec<String> = layers
            .iter()
            .map(|l: &TemplateLayer| l.name.clone())
            .collect();
        let mut functions = Vec::new();
        for (id, res) in resources.entries() {
            let ty = res.get("Type").as_str().unwrap_or_default();
            let serverless = ty == "AWS::Serverless::Function";
            if !serverless && ty != "AWS::Lambda::Function" {
                continue;
            }
            let name = id.as_str().unwrap_or_default().to_string();
            let props = res.get("Properties");
            let g = |key: &str| -> &Node {
                let own = props.get(key);
                if own.is_null() && serverless {
                    globals.get(key)
                } else {
                    own
                }
            };
            if g("PackageType").as_str() == Some("Image") {
                self.report
                    .push(format!("{name}: left out: a container image"));
                continue;
            }
            let fn_runtime = text(g("Runtime"));
            match fn_runtime.as_deref() {
                Some(r) if r.starts_with("python") => {}
                Some(r) => {
                    self.report
                        .push(format!("{name}: left out: runtime {r} is not Python"));
                    continue;
                }
                None => {
                    self.report.push(format!(
                        "{name}: left out: no literal Runtime ({})",
                        g("Runtime").show(60)
                    ));
                    continue;
                }
            }
            let name = self.check_name(id, "function")?;
            let handler_node = g("Handler");
            if handler_node.is_null() {
                self.report.push(format!("{name}: left out: no Handler"));
                continue;
            }
            let handler = self.check_handler(&name, handler_node)?;
            let code = if serverless {
                if !props.get("InlineCode").is_null() {
                    self.report.push(format!("{name}: left out: inline code"));
                    continue;
                }
                let c = g("CodeUri");
                if c.is_null() {
                    Some(".".to_string())
                } else {
                    text(c)
                }
            } else {
                let c = props.get("Code");
                if !c.get("ZipFile").is_null() {
                    self.report.push(format!("{name}: left out: inline code"));
                    continue;
                }
                text(c)
            };
            let Some(code) =
                code.filter(|_| !is_reference(g(if serverless { "CodeUri" } else { "Code" })))
            else {
                self.report.push(format!(
                    "{name}: left out: its code is not a local directory ({})",
                    g(if serverless { "CodeUri" } else { "Code" }).show(80)
                ));
                continue;
            };
            let Some(root) = self.code_dir(&name, &code) else {
                continue;
            };
            if let Some(m) = res.get("Metadata").get("BuildMethod").as_str() {
                self.report.push(format!(
                    "{name}: Metadata BuildMethod {m}: lbuild installs requirements.txt itself; a makefile's other steps are not carried"
                ));
            }
            let mut f = TemplateFunction {
                name: name.clone(),
                handler,
                requirements: self.requirements(&root),
                root,
                runtime: fn_runtime,
                architecture: Self::architecture(g("Architectures")),
                ..Default::default()
            };
            f.timeout = self.int(&name, "Timeout", g("Timeout"));
            f.memory = self.int(&name, "MemorySize", g("MemorySize"));
            let mut envs = Vec::new();
            if serverless {
                envs.push(globals.get("Environment").get("Variables"));
            }
            envs.push(props.get("Environment").get("Variables"));
            (f.environment, f.environment_refs) = self.environment(&envs);
            let mut layer_nodes: Vec<&Arc<Node>> = Vec::new();
            if serverless {
                layer_nodes.extend(globals.get("Layers").items());
            }
            layer_nodes.extend(props.get("Layers").items());
            for l in layer_nodes {
                self.sam_layer_use(&mut f, l, &layer_names, resources);
            }
            f.aws_name = props
                .get("FunctionName")
                .as_str()
                .filter(|n| !n.contains("${"))
                .map(str::to_string);
            let carried = [
                "Handler",
                "Runtime",
                "CodeUri",
                "Code",
                "Architectures",
                "Timeout",
                "MemorySize",
                "Environment",
                "Layers",
                "PackageType",
                "FunctionName",
            ];
            self.left_out(&name, props, &carried);
            functions.push(f);
        }
        if !other_types.is_empty() {
            self.report.push(format!(
                "other resources stay with the template: {}",
                other_types.join(", ")
            ));
        }
        Ok(Template {
            file: self.file.clone(),
            kind: "SAM",
            functions,
            layers,
            runtime,
            architecture: arch,
            report: std::mem::take(&mut self.report),
        })
    }

    fn sam_layer(&mut self, name: &str, res: &Node) -> Option<TemplateLayer> {
        let props = res.get("Properties");
        let method = res.get("Metadata").get("BuildMethod").as_str();
        let Some(runtime) = method.filter(|m| m.starts_with("python")) else {
            self.report.push(format!(
                "layer {name}: left out: {} (lbuild builds layers of Python code and requirements, as SAM's BuildMethod python3.X does)",
                match method {
                    Some(m) => format!("BuildMethod {m}"),
                    None => "no BuildMethod, so SAM zips its ContentUri as it is".into(),
                }
            ));
            return None;
        };
        let content = props.get("ContentUri");
        let Some(uri) = text(content).filter(|_| !is_reference(content)) else {
            self.report.push(format!(
                "layer {name}: left out: ContentUri is not a local directory ({})",
                content.show(80)
            ));
            return None;
        };
        let root = self.code_dir(&format!("layer {name}"), &uri)?;
        self.left_out(
            &format!("layer {name}"),
            props,
            &[
                "ContentUri",
                "CompatibleRuntimes",
                "CompatibleArchitectures",
                "LayerName",
            ],
        );
        Some(TemplateLayer {
            name: name.to_string(),
            requirements: self.requirements(&root),
            root,
            runtime: Some(runtime.to_string()),
        })
    }

    /// One entry of a SAM function's `Layers`.
    fn sam_layer_use(
        &mut self,
        f: &mut TemplateFunction,
        l: &Node,
        known: &[String],
        resources: &Node,
    ) {
        match (l.intrinsic(), l.as_str()) {
            (Some(("Ref", arg)), _) => match arg.scalar() {
                Some(id) if known.iter().any(|k| k == id) => f.layers.push(id.to_string()),
                Some(id) if !resources.get(id).is_null() => f.layer_refs.push(format!(
                    "!Ref {id} (a layer of this template not carried over)"
                )),
                _ => f.layer_refs.push(format!(
                    "{} (a parameter: put the layer's ARN here)",
                    l.show(120)
                )),
            },
            (_, Some(arn)) if arn.starts_with("arn:") => f.external_layers.push(arn.to_string()),
            _ => f.layer_refs.push(format!(
                "{} (resolved at deploy: fill in the ARN)",
                l.show(160)
            )),
        }
    }

    fn serverless(&mut self, doc: &Node) -> crate::Result<Template> {
        let provider = doc.get("provider");
        let runtime = text(provider.get("runtime"));
        let arch = Self::architecture(provider.get("architecture"));
        let custom = doc.get("custom").get("pythonRequirements");
        let truthy = |n: &Node| !n.is_null() && n.as_str() != Some("false");
        let req_layer = truthy(custom.get("layer"));
        let no_deploy: Vec<String> = custom
            .get("noDeploy")
            .items()
            .iter()
            .filter_map(|n| text(n))
            .collect();
        if truthy(custom.get("slim")) {
            self.report.push(
                "custom.pythonRequirements.slim: not carried: lbuild ships no __pycache__ or .pyc, and does not strip .so files or delete dist-info".into(),
            );
        }
        if truthy(custom.get("dockerizePip")) {
            self.report.push(
                "custom.pythonRequirements.dockerizePip: not needed: lbuild installs wheels for the Lambda target (manylinux) without Docker".into(),
            );
        }
        let service_patterns = doc.get("package").get("patterns");
        let requirements = self.requirements(".");
        let mut layers = Vec::new();
        if req_layer && let Some(r) = &requirements {
            layers.push(TemplateLayer {
                name: "pythonRequirements".into(),
                root: String::new(),
                requirements: Some(r.clone()),
                runtime: runtime.clone(),
            });
            self.report.push(format!(
                "custom.pythonRequirements.layer: {r} becomes [layers.pythonRequirements]; functions referencing PythonRequirementsLambdaLayer use it"
            ));
        }
        for (key, l) in doc.get("layers").entries() {
            let name = self.check_name(key, "layer")?;
            let Some(path) = text(l.get("path")) else {
                self.report
                    .push(format!("layer {name}: left out: no literal path"));
                continue;
            };
            let Some(root) = self.code_dir(&format!("layer {name}"), &path) else {
                continue;
            };
            // Serverless zips `path` as it is: Python code is under python/.
            let python = if root == "." {
                "python".to_string()
            } else {
                format!("{root}/python")
            };
            if !self.dir.join(&python).is_dir() {
                self.report.push(format!(
                    "layer {name}: left out: {root} has no python/ directory (Lambda puts /opt/python on sys.path)"
                ));
                continue;
            }
            layers.push(TemplateLayer {
                name,
                requirements: None,
                root: python,
                runtime: runtime.clone(),
            });
        }
        let serverless_ref = |l: &TemplateLayer| {
            let mut c = l.name.chars();
            let first: String = c
                .next()
                .map(|f| f.to_uppercase().collect())
                .unwrap_or_default();
            format!("{first}{}LambdaLayer", c.as_str())
        };
        let mut functions = Vec::new();
        for (key, f) in doc.get("functions").entries() {
            let name = key.as_str().unwrap_or_default().to_string();
            if !f.get("image").is_null() {
                self.report
                    .push(format!("{name}: left out: a container image"));
                continue;
            }
            let fn_runtime = text(f.get("runtime")).or_else(|| runtime.clone());
            match fn_runtime.as_deref() {
                Some(r) if r.starts_with("python") => {}
                other => {
                    self.report.push(format!(
                        "{name}: left out: runtime {} is not Python",
                        other.unwrap_or("(none given)")
                    ));
                    continue;
                }
            }
            let name = self.check_name(key, "function")?;
            let hn = f.get("handler");
            if hn.is_null() {
                self.report.push(format!("{name}: left out: no handler"));
                continue;
            }
            let handler = self.check_handler(&name, hn)?;
            let mut t = TemplateFunction {
                name: name.clone(),
                handler,
                root: ".".into(),
                runtime: fn_runtime,
                architecture: Self::architecture(f.get("architecture")).or_else(|| arch.clone()),
                dependency_exclude: no_deploy.clone(),
                ..Default::default()
            };
            let timeout = if f.get("timeout").is_null() {
                provider.get("timeout")
            } else {
                f.get("timeout")
            };
            let memory = if f.get("memorySize").is_null() {
                provider.get("memorySize")
            } else {
                f.get("memorySize")
            };
            t.timeout = self.int(&name, "timeout", timeout);
            t.memory = self.int(&name, "memorySize", memory);
            (t.environment, t.environment_refs) =
                self.environment(&[provider.get("environment"), f.get("environment")]);
            let layer_list = if f.get("layers").is_null() {
                provider.get("layers")
            } else {
                f.get("layers")
            };
            for l in layer_list.items() {
                let target = l
                    .intrinsic()
                    .filter(|(n, _)| *n == "Ref")
                    .and_then(|(_, a)| a.scalar());
                let known = target.and_then(|r| layers.iter().find(|k| serverless_ref(k) == r));
                match (known, l.as_str()) {
                    (Some(known), _) => t.layers.push(known.name.clone()),
                    (_, Some(arn)) if arn.starts_with("arn:") && !arn.contains("${") => {
                        t.external_layers.push(arn.to_string())
                    }
                    _ => t
                        .layer_refs
                        .push(format!("{} (fill in the ARN)", l.show(160))),
                }
            }
            // With the plugin's layer, the requirements reach only the
            // functions that reference it (as the plugin deploys them).
            if !req_layer {
                t.requirements = requirements.clone();
            }
            for p in service_patterns
                .items()
                .iter()
                .chain(f.get("package").get("patterns").items())
            {
                let Some(p) = p.as_str() else { continue };
                match p.strip_prefix('!') {
                    Some(neg) => t.exclude.push(neg.to_string()),
                    None => t.include.push(p.to_string()),
                }
            }
            self.left_out(
                &name,
                f,
                &[
                    "handler",
                    "runtime",
                    "architecture",
                    "timeout",
                    "memorySize",
                    "environment",
                    "layers",
                    "package",
                ],
            );
            functions.push(t);
        }
        if !service_patterns.items().is_empty() {
            self.report.push(
                "package.patterns: positive patterns are added to include = [\"**/*.py\"], negated ones to exclude (Serverless starts from the whole service directory: check the zips)".into(),
            );
        }
        Ok(Template {
            file: self.file.clone(),
            kind: "Serverless",
            functions,
            layers,
            runtime,
            architecture: arch,
            report: std::mem::take(&mut self.report),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_in(dir: &Path, name: &str) -> crate::Result<Template> {
        read(dir, &dir.join(name))
    }

    fn said(e: &Error) -> String {
        match e {
            Error::Input { message, hint } => format!("{message}\n{hint}"),
            other => other.to_string(),
        }
    }

    #[test]
    fn sam_functions_layers_globals_and_the_report() {
        let d = tempfile::tempdir().unwrap();
        fs_err::create_dir_all(d.path().join("orders")).unwrap();
        fs_err::create_dir_all(d.path().join("billing")).unwrap();
        fs_err::create_dir_all(d.path().join("layers/shared")).unwrap();
        fs_err::write(d.path().join("orders/requirements.txt"), "# none\n\n").unwrap();
        fs_err::write(d.path().join("layers/shared/requirements.txt"), "attrs\n").unwrap();
        fs_err::write(
            d.path().join("template.yaml"),
            r#"
AWSTemplateFormatVersion: '2010-09-09'
Transform: AWS::Serverless-2016-10-31
Globals:
  Function:
    Runtime: python3.12
    Architectures: [arm64]
    Timeout: 10
    Environment:
      Variables:
        LOG_LEVEL: info
Resources:
  Shared:
    Type: AWS::Serverless::LayerVersion
    Properties:
      ContentUri: layers/shared/
    Metadata:
      BuildMethod: python3.12
  OrdersFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: orders/
      Handler: app.lambda_handler
      MemorySize: 256
      Layers:
        - !Ref Shared
        - arn:aws:lambda:us-east-1:017000801446:layer:AWSLambdaPowertoolsPythonV3:7
        - !Sub arn:aws:lambda:${AWS::Region}:123:layer:x:1
      Environment:
        Variables:
          TABLE: !Ref OrdersTable
      Events:
        Api: {Type: Api}
      Policies: [AWSXrayWriteOnlyAccess]
  BillingFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: ./billing
      Handler: handlers/pay.handler
      Runtime: python3.11
      Architectures:
        - x86_64
  NodeFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: web/
      Handler: index.handler
      Runtime: nodejs20.x
  OrdersTable:
    Type: AWS::Serverless::SimpleTable
"#,
        )
        .unwrap();
        let t = read_in(d.path(), "template.yaml").unwrap();
        assert_eq!(t.kind, "SAM", "{:?}", t.report);
        assert_eq!(t.runtime.as_deref(), Some("python3.12"));
        assert_eq!(t.architecture.as_deref(), Some("arm64"));
        assert_eq!(
            t.layers,
            [TemplateLayer {
                name: "Shared".into(),
                root: "layers/shared".into(),
                requirements: Some("layers/shared/requirements.txt".into()),
                runtime: Some("python3.12".into()),
            }],
            "{:?}",
            t.report
        );
        let orders = &t.functions[0];
        assert_eq!(orders.name, "OrdersFunction");
        assert_eq!(orders.root, "orders");
        assert_eq!(orders.requirements, None, "empty: not attached");
        assert_eq!(orders.timeout, Some(10));
        assert_eq!(orders.memory, Some(256));
        assert_eq!(orders.environment, [("LOG_LEVEL".into(), "info".into())]);
        assert_eq!(
            orders.environment_refs,
            [("TABLE".into(), "!Ref OrdersTable".into())]
        );
        assert_eq!(orders.layers, ["Shared"]);
        assert_eq!(orders.external_layers.len(), 1);
        assert!(
            orders.layer_refs[0].starts_with("!Sub arn:aws:lambda:${AWS::Region}"),
            "{:?}",
            orders.layer_refs
        );
        let billing = &t.functions[1];
        assert_eq!(billing.handler, "handlers.pay.handler");
        assert_eq!(billing.root, "billing");
        assert_eq!(billing.architecture.as_deref(), Some("x86_64"));
        let report = t.report.join("\n");
        assert!(
            report.contains("NodeFunction: left out: runtime nodejs20.x is not Python"),
            "{report}"
        );
        assert!(
            report.contains("OrdersFunction: left out Events, Policies"),
            "{report}"
        );
        assert!(
            report.contains("orders/requirements.txt names no requirement"),
            "{report}"
        );
        assert!(report.contains("AWS::Serverless::SimpleTable"), "{report}");
    }

    #[test]
    fn injected_handlers_and_names_are_refused_with_positions() {
        let d = tempfile::tempdir().unwrap();
        let evil = "Resources:\n  Fn:\n    Type: AWS::Serverless::Function\n    Properties:\n      Runtime: python3.12\n      Handler: \"app.handler\\\"\\n[functions.evil]\\nroot = \\\"..\\\"\"\n";
        fs_err::write(d.path().join("t.yaml"), evil).unwrap();
        let e = said(&read_in(d.path(), "t.yaml").unwrap_err());
        assert!(e.contains("t.yaml:6:16"), "{e}");
        assert!(e.contains("is not module.function"), "{e}");
        assert!(e.contains("\\n[functions.evil]"), "escaped: {e}");
        let weird = "Resources:\n  'Weird\"Name]':\n    Type: AWS::Serverless::Function\n    Properties:\n      Runtime: python3.12\n      Handler: app.handler\n";
        fs_err::write(d.path().join("t.yaml"), weird).unwrap();
        let e = said(&read_in(d.path(), "t.yaml").unwrap_err());
        assert!(
            e.contains("t.yaml:2:3: function name \"Weird\\\"Name]\""),
            "{e}"
        );
    }

    #[test]
    fn serverless_functions_layers_and_plugin_options() {
        let d = tempfile::tempdir().unwrap();
        fs_err::write(d.path().join("requirements.txt"), "requests\nboto3\n").unwrap();
        fs_err::write(
            d.path().join("serverless.yml"),
            r#"
service: shop
provider:
  name: aws
  runtime: python3.12
  architecture: arm64
  timeout: 20
  environment:
    STAGE: ${sls:stage}
    MODE: live
package:
  patterns: ['!node_modules/**', 'templates/**']
custom:
  pythonRequirements:
    layer: true
    noDeploy: [boto3]
    slim: true
functions:
  orders:
    handler: src/orders/app.handler
    layers:
      - {Ref: PythonRequirementsLambdaLayer}
      - arn:aws:lambda:us-east-1:1:layer:x:2
    events:
      - http: {path: orders, method: get}
  report:
    handler: report.main
    runtime: python3.11
    architecture: x86_64
  web:
    image: 123.dkr.ecr.us-east-1.amazonaws.com/web:latest
plugins: [serverless-python-requirements]
"#,
        )
        .unwrap();
        let t = read_in(d.path(), "serverless.yml").unwrap();
        assert_eq!(t.kind, "Serverless");
        assert_eq!(t.layers[0].name, "pythonRequirements");
        let o = &t.functions[0];
        assert_eq!(o.handler, "src.orders.app.handler");
        assert_eq!(o.layers, ["pythonRequirements"]);
        assert_eq!(o.external_layers, ["arn:aws:lambda:us-east-1:1:layer:x:2"]);
        assert_eq!(o.requirements, None);
        assert_eq!(o.dependency_exclude, ["boto3"]);
        assert_eq!(o.timeout, Some(20));
        assert_eq!(o.environment, [("MODE".into(), "live".into())]);
        assert_eq!(
            o.environment_refs,
            [("STAGE".into(), "${sls:stage}".into())]
        );
        assert_eq!(o.include, ["templates/**"]);
        assert_eq!(o.exclude, ["node_modules/**"]);
        let r = &t.functions[1];
        assert_eq!(
            (r.runtime.as_deref(), r.architecture.as_deref()),
            (Some("python3.11"), Some("x86_64"))
        );
        let report = t.report.join("\n");
        assert!(
            report.contains("web: left out: a container image"),
            "{report}"
        );
        assert!(report.contains("orders: left out events"), "{report}");
        assert!(report.contains("slim"), "{report}");
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
