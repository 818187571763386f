//! SAM and CloudFormation templates: `AWS::Serverless::Function` and
//! `AWS::Lambda::Function` resources with local code, `Globals`, and
//! `AWS::Serverless::LayerVersion` built by `python3.X`, read into a
//! [`Template`]. Finding and parsing the file is `mod.rs`'s.

use super::yaml::Node;
use super::*;

impl Reader<'_> {
    pub(super) fn sam(&mut self, doc: &Node) -> crate::Result<Template> {
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
        let runtime = match method {
            Some(m) if m.starts_with("python") => Some(m),
            // Zipped as it is: what Python imports from it is its python/
            // directory (Lambda puts /opt/python on the path), which a
            // layer of lbuild's packs under the same name.
            None => None,
            Some(m) => {
                self.report.push(format!(
                    "layer {name}: left out: BuildMethod {m} (lbuild builds layers of Python code and requirements, as SAM's BuildMethod python3.X does)"
                ));
                return None;
            }
        };
        let content = props.get("ContentUri");
        let Some(uri) = text(content).filter(|_| !is_reference(content)) else {
            self.report.push(format!(
                "layer {name}: left out: ContentUri is not a local directory ({})",
                content.show(80)
            ));
            return None;
        };
        let mut root = self.code_dir(&format!("layer {name}"), &uri)?;
        if runtime.is_none() {
            let Some(python) = self.python_dir(&root) else {
                self.report.push(format!(
                    "layer {name}: left out: no BuildMethod, so SAM zips {root} as it is, and it has no python/ directory for lbuild to pack (lbuild builds layers of Python code and requirements)"
                ));
                return None;
            };
            self.report.push(format!(
                "layer {name}: no BuildMethod: {python} carried as the layer's python/ (what Python imports from it); anything else in {root} is not"
            ));
            root = python;
        }
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
            // SAM installs nothing for a layer without a BuildMethod.
            requirements: runtime.and_then(|_| self.requirements(&root)),
            root,
            runtime: runtime.map(str::to_string),
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
}

#[cfg(test)]
mod tests {
    use super::super::tests::{read_in, said};
    use super::*;

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
    fn a_layer_without_build_method_is_its_python_directory_or_left_out() {
        let d = tempfile::tempdir().unwrap();
        for dir in ["fn", "layers/code/python", "layers/tools/bin"] {
            fs_err::create_dir_all(d.path().join(dir)).unwrap();
        }
        fs_err::write(d.path().join("layers/code/python/layer.py"), "X = 1\n").unwrap();
        fs_err::write(d.path().join("layers/code/requirements.txt"), "attrs\n").unwrap();
        fs_err::write(
            d.path().join("template.yaml"),
            r#"
Transform: AWS::Serverless-2016-10-31
Resources:
  Code:
    Type: AWS::Serverless::LayerVersion
    Properties:
      ContentUri: layers/code
  Tools:
    Type: AWS::Serverless::LayerVersion
    Properties:
      ContentUri: layers/tools
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fn/
      Handler: app.handler
      Runtime: python3.12
      Layers: [!Ref Code, !Ref Tools]
"#,
        )
        .unwrap();
        let t = read_in(d.path(), "template.yaml").unwrap();
        assert_eq!(
            t.layers,
            [TemplateLayer {
                name: "Code".into(),
                root: "layers/code/python".into(),
                requirements: None,
                runtime: None,
            }]
        );
        assert_eq!(t.functions[0].layers, ["Code"]);
        let report = t.report.join("\n");
        assert!(
            report.contains("layer Code: no BuildMethod: layers/code/python carried"),
            "{report}"
        );
        assert!(
            report.contains("layer Tools: left out: no BuildMethod")
                && report.contains("no python/ directory"),
            "{report}"
        );
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
}
