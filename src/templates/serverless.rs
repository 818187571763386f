//! Serverless Framework `serverless.yml`: `functions`, `layers`,
//! `package.patterns`, `provider` settings and the options of
//! serverless-python-requirements that change what is packaged, read into a
//! [`Template`]. Finding and parsing the file is `mod.rs`'s.

use super::yaml::Node;
use super::*;

impl Reader<'_> {
    pub(super) fn serverless(&mut self, doc: &Node) -> crate::Result<Template> {
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
            let Some(python) = self.python_dir(&root) else {
                self.report.push(format!(
                    "layer {name}: left out: {root} has no python/ directory (Lambda puts /opt/python on sys.path)"
                ));
                continue;
            };
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
    use super::super::tests::read_in;

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
}
