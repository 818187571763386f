//! The Python functions a SAM `template.yaml` or a Serverless
//! `serverless.yml` already declares, for `lbuild init` (moving from SAM or
//! Serverless is one command).
//!
//! Owns reading those files (YAML, with CloudFormation's `!Ref`/`!Sub` tags
//! read as plain values) into handler, code directory, runtime and
//! architecture per function. It does not write the manifest (`init.rs`
//! does) nor resolve anything CloudFormation would (parameters, `!If`):
//! what it cannot read plainly it leaves out and says so.

use std::path::Path;

use yaml_rust2::{Yaml, YamlLoader};

/// One function found in the template.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateFunction {
    /// The logical ID (SAM) or the function's key (Serverless).
    pub name: String,
    /// `module.function`, dotted, relative to `root`.
    pub handler: String,
    /// The code directory relative to the project (`.` for the project).
    pub root: String,
    pub runtime: Option<String>,
    pub architecture: Option<String>,
    /// `ROOT/requirements.txt` when it exists (SAM builds it per function).
    pub requirements: Option<String>,
}

/// What a template says.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    /// `template.yaml` or `serverless.yml` (as found).
    pub file: String,
    /// "SAM" or "Serverless".
    pub kind: &'static str,
    pub functions: Vec<TemplateFunction>,
    /// The default for every function (SAM `Globals`, Serverless `provider`).
    pub runtime: Option<String>,
    pub architecture: Option<String>,
    /// Functions left out, each with why (not Python, an image, inline code).
    pub skipped: Vec<String>,
}

/// The first of `template.yaml`, `template.yml`, `serverless.yml`,
/// `serverless.yaml` in `dir` that parses, read.
pub fn read(dir: &Path) -> Option<Template> {
    for file in ["template.yaml", "template.yml"] {
        if let Some(doc) = load(&dir.join(file)) {
            return Some(sam(dir, file, &doc));
        }
    }
    for file in ["serverless.yml", "serverless.yaml"] {
        if let Some(doc) = load(&dir.join(file)) {
            return Some(serverless(file, &doc));
        }
    }
    None
}

fn load(path: &Path) -> Option<Yaml> {
    let text = std::fs::read_to_string(path).ok()?;
    YamlLoader::load_from_str(&text).ok()?.into_iter().next()
}

/// A plain string value (numbers too: `Runtime: python3.12` is a string,
/// but a bare `3.12` would not be).
fn text(y: &Yaml) -> Option<String> {
    match y {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        _ => None,
    }
}

/// `Architectures: [arm64]` (SAM) or `architecture: arm64` (Serverless).
fn architecture(y: &Yaml) -> Option<String> {
    let first = match y {
        Yaml::Array(items) => items.first().and_then(text),
        other => text(other),
    }?;
    matches!(first.as_str(), "arm64" | "x86_64").then_some(first)
}

/// `dir/rel` without a trailing slash, `.` for the project itself.
fn code_dir(rel: &str) -> String {
    let t = rel.trim().trim_start_matches("./").trim_end_matches('/');
    if t.is_empty() { ".".into() } else { t.into() }
}

fn requirements_in(dir: &Path, root: &str) -> Option<String> {
    let rel = if root == "." {
        "requirements.txt".to_string()
    } else {
        format!("{root}/requirements.txt")
    };
    dir.join(&rel).is_file().then_some(rel)
}

/// Why a function with this runtime is left out, unless it is Python.
fn not_python(runtime: &Option<String>) -> Option<String> {
    match runtime.as_deref() {
        Some(r) if r.starts_with("python") => None,
        other => Some(format!("runtime {}", other.unwrap_or("not given"))),
    }
}

/// `path/to/module.function` (either separator) as `path.to.module.function`.
fn dotted(handler: &str) -> String {
    handler.trim().trim_start_matches("./").replace('/', ".")
}

fn sam(dir: &Path, file: &str, doc: &Yaml) -> Template {
    let globals = &doc["Globals"]["Function"];
    let runtime = text(&globals["Runtime"]);
    let arch = architecture(&globals["Architectures"]);
    let mut functions = Vec::new();
    let mut skipped = Vec::new();
    if let Yaml::Hash(resources) = &doc["Resources"] {
        for (id, res) in resources {
            let (Some(name), Some("AWS::Serverless::Function")) = (text(id), res["Type"].as_str())
            else {
                continue;
            };
            let props = &res["Properties"];
            let pick = |key: &str| text(&props[key]).or_else(|| text(&globals[key]));
            if props["PackageType"].as_str() == Some("Image") {
                skipped.push(format!("{name} (a container image)"));
                continue;
            }
            let fn_runtime = pick("Runtime");
            if let Some(why) = not_python(&fn_runtime) {
                skipped.push(format!("{name} ({why})"));
                continue;
            }
            let Some(handler) = pick("Handler") else {
                skipped.push(format!("{name} (no Handler)"));
                continue;
            };
            if !props["InlineCode"].is_badvalue() {
                skipped.push(format!("{name} (inline code)"));
                continue;
            }
            // CodeUri may be an S3 location (a map): not local code.
            let root = match (&props["CodeUri"], &globals["CodeUri"]) {
                (Yaml::BadValue, Yaml::BadValue) => ".".to_string(),
                (Yaml::BadValue, g) => match text(g) {
                    Some(g) => code_dir(&g),
                    None => {
                        skipped.push(format!("{name} (CodeUri is not a local directory)"));
                        continue;
                    }
                },
                (p, _) => match text(p) {
                    Some(p) => code_dir(&p),
                    None => {
                        skipped.push(format!("{name} (CodeUri is not a local directory)"));
                        continue;
                    }
                },
            };
            functions.push(TemplateFunction {
                requirements: requirements_in(dir, &root),
                name,
                handler: dotted(&handler),
                root,
                runtime: fn_runtime,
                architecture: architecture(&props["Architectures"]).or_else(|| arch.clone()),
            });
        }
    }
    Template {
        file: file.into(),
        kind: "SAM",
        functions,
        runtime,
        architecture: arch,
        skipped,
    }
}

fn serverless(file: &str, doc: &Yaml) -> Template {
    let provider = &doc["provider"];
    let runtime = text(&provider["runtime"]);
    let arch = architecture(&provider["architecture"]);
    let mut functions = Vec::new();
    let mut skipped = Vec::new();
    if let Yaml::Hash(fns) = &doc["functions"] {
        for (key, f) in fns {
            let Some(name) = text(key) else { continue };
            if !f["image"].is_badvalue() {
                skipped.push(format!("{name} (a container image)"));
                continue;
            }
            let fn_runtime = text(&f["runtime"]).or_else(|| runtime.clone());
            if let Some(why) = not_python(&fn_runtime) {
                skipped.push(format!("{name} ({why})"));
                continue;
            }
            let Some(handler) = text(&f["handler"]) else {
                skipped.push(format!("{name} (no handler)"));
                continue;
            };
            // Serverless packages the service directory: handlers are
            // paths from it.
            functions.push(TemplateFunction {
                name,
                handler: dotted(&handler),
                root: ".".into(),
                runtime: fn_runtime,
                architecture: architecture(&f["architecture"]).or_else(|| arch.clone()),
                requirements: None,
            });
        }
    }
    Template {
        file: file.into(),
        kind: "Serverless",
        functions,
        runtime,
        architecture: arch,
        skipped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sam_functions_with_globals_tags_and_skips() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("orders")).unwrap();
        std::fs::write(d.path().join("orders/requirements.txt"), "").unwrap();
        std::fs::write(
            d.path().join("template.yaml"),
            r#"
AWSTemplateFormatVersion: '2010-09-09'
Transform: AWS::Serverless-2016-10-31
Globals:
  Function:
    Runtime: python3.12
    Architectures: [arm64]
    Timeout: 10
Resources:
  OrdersFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: orders/
      Handler: app.lambda_handler
      Environment:
        Variables:
          TABLE: !Ref OrdersTable
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
        let t = read(d.path()).unwrap();
        assert_eq!(t.kind, "SAM");
        assert_eq!(t.runtime.as_deref(), Some("python3.12"));
        assert_eq!(t.architecture.as_deref(), Some("arm64"));
        assert_eq!(
            t.functions,
            [
                TemplateFunction {
                    name: "OrdersFunction".into(),
                    handler: "app.lambda_handler".into(),
                    root: "orders".into(),
                    runtime: Some("python3.12".into()),
                    architecture: Some("arm64".into()),
                    requirements: Some("orders/requirements.txt".into()),
                },
                TemplateFunction {
                    name: "BillingFunction".into(),
                    handler: "handlers.pay.handler".into(),
                    root: "billing".into(),
                    runtime: Some("python3.11".into()),
                    architecture: Some("x86_64".into()),
                    requirements: None,
                },
            ]
        );
        assert_eq!(t.skipped, ["NodeFunction (runtime nodejs20.x)"]);
    }

    #[test]
    fn serverless_functions_take_the_providers_target() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("serverless.yml"),
            r#"
service: shop
provider:
  name: aws
  runtime: python3.12
  architecture: arm64
functions:
  orders:
    handler: src/orders/app.handler
  report:
    handler: report.main
    runtime: python3.11
    architecture: x86_64
  web:
    image: 123.dkr.ecr.us-east-1.amazonaws.com/web:latest
"#,
        )
        .unwrap();
        let t = read(d.path()).unwrap();
        assert_eq!(t.kind, "Serverless");
        let got: Vec<(&str, &str, Option<&str>, Option<&str>)> = t
            .functions
            .iter()
            .map(|f| {
                (
                    f.name.as_str(),
                    f.handler.as_str(),
                    f.runtime.as_deref(),
                    f.architecture.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    "orders",
                    "src.orders.app.handler",
                    Some("python3.12"),
                    Some("arm64")
                ),
                ("report", "report.main", Some("python3.11"), Some("x86_64")),
            ]
        );
        assert_eq!(t.skipped, ["web (a container image)"]);
    }
}
