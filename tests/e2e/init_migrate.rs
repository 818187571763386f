//! `lbuild init` from SAM and Serverless templates (issues 19 and 20): the
//! whole template read (flow lists over several lines, tags, Globals,
//! layers), a manifest that builds, a migration report naming what was left
//! out; and templates that try to write into the manifest, alias bombs,
//! undecodable files and symlinks refused.

use std::time::{Duration, Instant};

use crate::common::*;

/// Every zip under dist/, by path relative to it, with its entries.
fn zips(p: &TestProject) -> Vec<(String, Vec<String>)> {
    let dist = p.path().join("dist");
    let mut out: Vec<(String, Vec<String>)> = walk(&dist)
        .into_iter()
        .filter(|f| f.extension().is_some_and(|e| e == "zip"))
        .map(|f| {
            (
                f.strip_prefix(&dist)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
                entry_names(&f),
            )
        })
        .collect();
    out.sort();
    out
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

const BACKEND: &str = r#"AWSTemplateFormatVersion: '2010-09-09'
Transform: AWS::Serverless-2016-10-31
Parameters:
  PowertoolsArn: {Type: String}
Globals:
  Function:
    Runtime: python3.12
    Timeout: 10
    MemorySize: 256
    Environment:
      Variables:
        LOG_LEVEL: info
Resources:
  SharedLayer:
    Type: AWS::Serverless::LayerVersion
    Properties:
      ContentUri: ../layers/shared
      CompatibleRuntimes: [python3.12]
    Metadata:
      BuildMethod: python3.12
  OrdersFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: ../src/orders/
      Handler: app.lambda_handler
      Architectures: [arm64]
      Layers:
        - !Ref SharedLayer
        - arn:aws:lambda:us-east-1:017000801446:layer:AWSLambdaPowertoolsPythonV3:7
        - Fn::Sub: arn:aws:lambda:${AWS::Region}:123456789012:layer:extra:1
        - !Ref PowertoolsArn
      Environment:
        Variables:
          TABLE: !Ref OrdersTable
          QUEUE: {"Fn::GetAtt": [Queue, Arn]}
      Events:
        Api:
          Type: Api
          Properties: {Path: /orders, Method: get}
      Policies:
        - Statement:
            - Effect: Allow
              Action: [
                "xray:PutTraceSegments",
                "xray:PutTelemetryRecords"
              ]
              Resource: "*"
  LegacyFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: ../src/legacy
      Handler: handler.main
      Runtime: python3.8
  WebFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: ../web
      Handler: index.handler
      Runtime: nodejs20.x
      Architectures: [arm64]
  PlainFunction:
    Type: AWS::Lambda::Function
    Properties:
      Code: ../src/plain
      Handler: lambda_function.lambda_handler
      Runtime: python3.11
      Role: !GetAtt Role.Arn
  OrdersTable:
    Type: AWS::Serverless::SimpleTable
"#;

fn sam_project() -> TestProject {
    let p = TestProject::empty();
    p.write(
        "samconfig.toml",
        "version = 0.1\n[default.build.parameters]\ntemplate_file = \"infra/backend.yaml\"\n",
    );
    p.write("infra/backend.yaml", BACKEND);
    p.write(
        "src/orders/app.py",
        "def lambda_handler(event, context):\n    return 1\n",
    );
    p.write("src/orders/requirements.txt", "\n# none yet\n");
    p.write("src/orders/templates/receipt.txt", "Thanks\n");
    p.write("src/orders/tests/test_app.py", "def test(): pass\n");
    p.write("src/orders/__pycache__/app.cpython-312.pyc", "junk");
    p.write(
        "src/legacy/handler.py",
        "def main(event, context):\n    return 2\n",
    );
    p.write(
        "src/plain/lambda_function.py",
        "def lambda_handler(event, context):\n    return 3\n",
    );
    p.write("layers/shared/shared/__init__.py", "");
    p.write("layers/shared/shared/util.py", "X = 1\n");
    p.write("layers/shared/requirements.txt", "");
    p.write("web/index.js", "exports.handler = async () => 1;\n");
    p
}

#[test]
fn a_sam_template_named_in_samconfig_migrates_and_builds_what_sam_would_ship() {
    let p = sam_project();
    let out = p.run(&["init"]);
    assert_success(&out);
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    // The last line counts the functions (not the first one's handler).
    assert!(
        said.trim_end()
            .lines()
            .last()
            .is_some_and(|l| l.contains(" functions); run `lbuild` to build them all")),
        "{said}"
    );
    let text = std::fs::read_to_string(p.path().join("lambda.toml")).unwrap();
    let out = p.run(&["--json"]);
    assert!(
        out.status.success(),
        "build after init failed:\n{}\nmanifest:\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        zips(&p),
        [
            (
                "LegacyFunction.zip".to_string(),
                vec!["handler.py".to_string()]
            ),
            (
                "OrdersFunction.zip".into(),
                vec!["app.py".into(), "templates/receipt.txt".into()]
            ),
            (
                "PlainFunction.zip".into(),
                vec!["lambda_function.py".into()]
            ),
            (
                "layers/SharedLayer.zip".into(),
                vec![
                    "python/shared/__init__.py".into(),
                    "python/shared/util.py".into()
                ]
            ),
        ],
        "{text}"
    );
    // The Python functions' target, not the Node.js function's arm64.
    assert!(
        text.contains("[defaults]\nruntime = \"python3.12\"\narchitecture = \"x86_64\""),
        "{text}"
    );
    let orders = text.split("[functions.OrdersFunction]").nth(1).unwrap();
    let orders = orders.split("[functions.LegacyFunction]").next().unwrap();
    for line in [
        "architecture = \"arm64\"",
        "timeout = 10",
        "memory = 256",
        "layers = [\"SharedLayer\"]",
        "# layer attached by ARN, not built here (keep it attached at deploy): arn:aws:lambda:us-east-1:017000801446:layer:AWSLambdaPowertoolsPythonV3:7",
        "# layer: !Sub arn:aws:lambda:${AWS::Region}:123456789012:layer:extra:1",
        "# layer: !Ref PowertoolsArn (a parameter: put the layer's ARN here)",
        "LOG_LEVEL = \"info\"",
        "# TABLE = !Ref OrdersTable",
        "# QUEUE = !GetAtt [Queue, Arn]",
    ] {
        assert!(orders.contains(line), "{line}\n{text}");
    }
    assert!(
        !orders.contains("requirements.txt\" }"),
        "empty requirements attached: {text}"
    );
    let legacy = text.split("[functions.LegacyFunction]").nth(1).unwrap();
    assert!(
        legacy.contains("# python3.8: AWS no longer lets you update functions on it"),
        "{text}"
    );
    assert!(!legacy.contains("runtime = \"python3.8\""), "{text}");
    for line in [
        "migrated infra/backend.yaml (SAM): layer SharedLayer (layers/shared); function OrdersFunction",
        "OrdersFunction: left out Events, Policies",
        "PlainFunction: left out Role",
        "WebFunction: left out: runtime nodejs20.x is not Python",
        "src/orders/requirements.txt names no requirement: not attached",
        "other resources stay with the template: AWS::Serverless::SimpleTable",
        "python3.8: AWS no longer lets you update",
        "OrdersFunction: layers attached by ARN kept as comments",
        "OrdersFunction: references written as comments to fill in: TABLE, QUEUE",
    ] {
        assert!(said.contains(line), "{line}\n{said}");
    }
    assert_eq!(said.matches("names no requirement").count(), 2, "{said}");
}

#[test]
fn several_templates_are_listed_and_template_picks_one() {
    let p = sam_project();
    std::fs::remove_file(p.path().join("samconfig.toml")).unwrap();
    p.write(
        "other/service.yaml",
        "Resources:\n  F:\n    Type: AWS::Lambda::Function\n    Properties: {Runtime: python3.12, Handler: app.handler, Code: .}\n",
    );
    let out = p.run(&["init"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "found 2 templates declaring Lambda functions: infra/backend.yaml, other/service.yaml"
        ),
        "{err}"
    );
    assert!(err.contains("--template"), "{err}");
    assert!(!p.path().join("lambda.toml").exists());
    assert_success(&p.run(&["init", "--template", "infra/backend.yaml"]));
    let text = std::fs::read_to_string(p.path().join("lambda.toml")).unwrap();
    assert!(text.contains("[functions.OrdersFunction]"), "{text}");
}

#[test]
fn a_serverless_service_migrates_with_its_layer_patterns_and_report() {
    let p = TestProject::empty();
    p.write(
        "serverless.yml",
        r#"service: shop
provider:
  name: aws
  runtime: python3.12
  architecture: arm64
  memorySize: 512
package:
  patterns: ['!scripts/**', 'data/**']
layers:
  common:
    path: layers/common
functions:
  orders:
    handler: src/orders/app.handler
    layers:
      - {Ref: CommonLambdaLayer}
    events:
      - http: {path: orders, method: get}
  report:
    handler: report.handler
    runtime: python3.11
    architecture: x86_64
"#,
    );
    p.write(
        "src/orders/app.py",
        "def handler(event, context):\n    return 1\n",
    );
    p.write("report.py", "def handler(event, context):\n    return 2\n");
    p.write("data/prices.json", "{}\n");
    p.write("scripts/deploy.py", "print()\n");
    p.write("layers/common/python/common.py", "X = 1\n");
    let out = p.run(&["init"]);
    assert_success(&out);
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    let text = std::fs::read_to_string(p.path().join("lambda.toml")).unwrap();
    let out = p.run(&["--json"]);
    assert!(
        out.status.success(),
        "build after init failed:\n{}\nmanifest:\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all = zips(&p);
    let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["layers/common.zip", "orders.zip", "report.zip"],
        "{text}"
    );
    assert_eq!(all[0].1, ["python/common.py"]);
    assert!(
        all[1].1.contains(&"data/prices.json".to_string()),
        "{:?}",
        all[1]
    );
    assert!(
        all[1].1.contains(&"src/orders/app.py".to_string()),
        "{:?}",
        all[1]
    );
    assert!(
        !all[1].1.iter().any(|n| n.starts_with("scripts/")),
        "{:?}",
        all[1]
    );
    assert!(text.contains("memory = 512"), "{text}");
    assert!(said.contains("orders: left out events"), "{said}");
}

#[test]
fn template_text_cannot_write_into_the_manifest() {
    let p = TestProject::empty();
    p.write("app.py", "def handler(event, context):\n    return 1\n");
    // A Handler carrying a quote and newlines: once spliced into TOML it
    // was a [functions.evil] table packaging the parent directory.
    p.write(
        "template.yaml",
        "Resources:\n  Fn:\n    Type: AWS::Serverless::Function\n    Properties:\n      Runtime: python3.12\n      Handler: \"app.handler\\\"\\n[functions.evil]\\nhandler = \\\"a.b\\\"\\nsources = { root = \\\"..\\\", allow_outside_project = true }\\n#\"\n",
    );
    let out = p.run(&["init"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("template.yaml:6:16"), "{err}");
    assert!(err.contains("is not module.function"), "{err}");
    assert!(!err.contains("\n[functions.evil]"), "unescaped: {err}");
    assert!(!p.path().join("lambda.toml").exists());

    p.write(
        "template.yaml",
        "Resources:\n  'Weird\"Name]':\n    Type: AWS::Serverless::Function\n    Properties:\n      Runtime: python3.12\n      Handler: app.handler\n",
    );
    let err = p.fail(&["init"]);
    assert!(err.contains("template.yaml:2:3"), "{err}");
    assert!(!p.path().join("lambda.toml").exists());

    // Literal values with quotes and newlines go through the serializer.
    p.write(
        "template.yaml",
        "Resources:\n  Fn:\n    Type: AWS::Serverless::Function\n    Properties:\n      Runtime: python3.12\n      Handler: app.handler\n      Environment:\n        Variables:\n          MOTD: \"hi\\\"\\n[functions.evil]\\nhandler = \\\"a.b\\\"\"\n",
    );
    assert_success(&p.run(&["init"]));
    let text = std::fs::read_to_string(p.path().join("lambda.toml")).unwrap();
    let table: toml::Table = toml::from_str(&text).unwrap();
    let functions = table["functions"].as_table().unwrap();
    assert_eq!(functions.keys().collect::<Vec<_>>(), ["Fn"], "{text}");
    assert_eq!(
        functions["Fn"]["environment"]["MOTD"].as_str(),
        Some("hi\"\n[functions.evil]\nhandler = \"a.b\"")
    );
    assert_success(&p.run(&[]));
}

#[test]
fn an_alias_bomb_fails_fast_and_small() {
    let p = TestProject::empty();
    let mut text = String::from(
        "Resources:\n  Fn:\n    Type: AWS::Serverless::Function\n    Properties: {Runtime: python3.12, Handler: app.handler}\nBomb:\n  a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n",
    );
    for i in 1..10 {
        let p = i - 1;
        text.push_str(&format!(
            "  a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    p.write("template.yaml", &text);
    let start = Instant::now();
    let child = p
        .cmd()
        .arg("init")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    // Peak memory from /proc while it runs (VmHWM), then the result.
    let mut peak_kb = 0u64;
    loop {
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status"))
            && let Some(l) = status.lines().find(|l| l.starts_with("VmHWM:"))
        {
            let kb: u64 = l.split_whitespace().nth(1).unwrap().parse().unwrap();
            peak_kb = peak_kb.max(kb);
        }
        if start.elapsed() > Duration::from_secs(20) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
        if std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.contains(") Z"))
            .unwrap_or(true)
        {
            break;
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("aliases here expand to more than"), "{err}");
    assert!(err.contains("template.yaml:"), "{err}");
    assert!(peak_kb < 200 * 1024, "peak {peak_kb} KiB");
}

#[test]
fn an_undecodable_template_is_an_error_with_its_position() {
    let p = TestProject::empty();
    p.write("app.py", "def handler(event, context):\n    return 1\n");
    let mut bytes = b"Resources:\n  Fn:\n    Type: AWS::Serverless::Function\n    Properties:\n      Description: caf".to_vec();
    bytes.extend([0xe9, b'\n']);
    std::fs::write(p.path().join("template.yaml"), bytes).unwrap();
    let out = p.run(&["init"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("template.yaml:5:23"), "{err}");
    assert!(err.contains("not UTF-8"), "{err}");
    assert!(!p.path().join("lambda.toml").exists());
}

#[test]
fn init_never_writes_through_a_symlink() {
    let p = TestProject::empty();
    p.write("app.py", "def handler(event, context):\n    return 1\n");
    let target = p.path().join("elsewhere/planted.toml");
    std::os::unix::fs::symlink(&target, p.path().join("lambda.toml")).unwrap();
    for args in [&["init"][..], &["init", "--force"][..]] {
        let out = p.run(args);
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("is a symbolic link"), "{err}");
        assert!(!target.exists());
        assert!(!p.path().join("elsewhere").exists());
    }
}

#[test]
fn handlers_by_signature_in_a_src_layout() {
    let p = TestProject::empty();
    p.write(
        "pyproject.toml",
        "[project]\nname = \"svc\"\nrequires-python = \"<3.13,>=3.10\"\n",
    );
    p.write("src/svc/main.py", "def main():\n    pass\n");
    p.write(
        "src/svc/handler.py",
        "def handler(event, context):\n    return 1\n",
    );
    p.write("infra/stack.py", "print('cdk')\n");
    let out = p.run(&["init"]);
    assert_success(&out);
    let text = std::fs::read_to_string(p.path().join("lambda.toml")).unwrap();
    assert!(text.contains("handler = \"svc.handler.handler\""), "{text}");
    assert!(text.contains("root = \"src\""), "{text}");
    assert!(!text.contains("runtime = \"python3.13\""), "{text}");
    assert_success(&p.run(&[]));
    let dir = std::fs::read_dir(p.path().join("dist"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(entry_names(&dir.path()), ["svc/handler.py", "svc/main.py"]);

    p.write("src/svc/main.py", "def main(event, context):\n    pass\n");
    let out = p.run(&["init", "--force"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("2 functions could be the handler"), "{err}");
    assert!(err.contains("--handler"), "{err}");
    assert_success(&p.run(&["init", "--force", "--handler", "svc.main.main"]));
    let text = std::fs::read_to_string(p.path().join("lambda.toml")).unwrap();
    assert!(text.contains("handler = \"svc.main.main\""), "{text}");
}

/// A layer with no BuildMethod is zipped by SAM as it is; what Python
/// imports from it is its python/ directory, which init carries over: the
/// built layer holds the same files under python/, and the function's zip
/// does not.
#[test]
fn a_sam_layer_without_build_method_builds_its_python_directory() {
    let p = TestProject::empty();
    p.write(
        "template.yaml",
        "Transform: AWS::Serverless-2016-10-31\n\
         Resources:\n  \
           CodeLayer:\n    Type: AWS::Serverless::LayerVersion\n    \
             Properties:\n      ContentUri: src/codeLayer\n  \
           Fn:\n    Type: AWS::Serverless::Function\n    \
             Properties:\n      CodeUri: src/fn\n      Handler: app.handler\n      \
               Runtime: python3.12\n      Layers:\n        - !Ref CodeLayer\n",
    );
    p.write(
        "src/fn/app.py",
        "from layer import X\n\ndef handler(event, context):\n    return X\n",
    );
    p.write("src/codeLayer/python/__init__.py", "");
    p.write("src/codeLayer/python/layer.py", "X = 1\n");
    p.write("src/codeLayer/README.md", "not imported\n");
    assert_success(&p.run(&["init"]));
    let out = p.run(&["--json"]);
    assert_success(&out);
    assert_eq!(
        zips(&p),
        [
            ("Fn.zip".to_string(), vec!["app.py".to_string()]),
            (
                "layers/CodeLayer.zip".to_string(),
                vec![
                    "python/__init__.py".to_string(),
                    "python/layer.py".to_string()
                ]
            ),
        ]
    );
}
