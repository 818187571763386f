//! A new user's first build: the project's ignore files are honoured, tool
//! and virtualenv directories are pruned, a file reached through a
//! directory symlink is packaged once, and `init` writes a manifest that
//! builds on real layouts.

use std::os::unix::fs::symlink;
use std::process::Command;

use crate::common::*;

const FLAT_MANIFEST: &str = r#"[function]
name = "flat"
handler = "app.handler"
runtime = "python3.12"

[sources]
root = "."
include = ["**/*.py", "**/*.json", "**/*.js", "**/*.txt", "**/*.cfg"]
"#;

/// The flat project of issue 14: a real venv, SAM and node output, a
/// .gitignore listing extra files, and a lib64-style directory symlink.
fn flat_project() -> TestProject {
    let p = TestProject::empty();
    p.write("lambda.toml", FLAT_MANIFEST);
    p.write(
        "app.py",
        "from lib import helpers\n\ndef handler(event, context):\n    return helpers.X\n",
    );
    p.write("lib/__init__.py", "");
    p.write("lib/helpers.py", "X = 1\n");
    symlink("lib", p.path().join("lib64")).unwrap();
    let venv = Command::new("python3")
        .args(["-m", "venv", "--without-pip", "venv"])
        .current_dir(p.path())
        .status()
        .unwrap();
    assert!(venv.success());
    // A virtualenv of any name, made by hand (just its marker).
    p.write("env2/pyvenv.cfg", "home = /usr/bin\n");
    p.write("env2/lib/python3.12/site-packages/x.py", "");
    p.write(".aws-sam/build/Fn/app.py", "");
    p.write(".serverless/x.json", "{}");
    p.write("cdk.out/x.json", "{}");
    p.write(".terraform/x.json", "{}");
    p.write(".tox/py312/x.py", "");
    p.write("node_modules/left-pad/index.js", "");
    p.write(".gitignore", "scratch.py\nnotes/\n*.log.txt\n");
    p.write("scratch.py", "");
    p.write("notes/todo.py", "");
    p.write("run.log.txt", "");
    p.write("sub/.gitignore", "local.py\n");
    p.write("sub/local.py", "");
    p.write("sub/kept.py", "");
    p.write(".lbuildignore", "test_*.py\n");
    p.write("test_b.py", "");
    std::fs::create_dir_all(p.path().join(".git/info")).unwrap();
    p.write(".git/info/exclude", "private.py\n");
    p.write("private.py", "");
    p
}

#[test]
fn flat_project_packages_only_the_handlers_files() {
    let p = flat_project();
    p.build_json();
    assert_eq!(
        entry_names(&p.zip_path("flat")),
        ["app.py", "lib/__init__.py", "lib/helpers.py", "sub/kept.py"]
    );
    unzip_test(&p.zip_path("flat"));
}

#[test]
fn a_global_gitignore_changes_nothing() {
    let p = flat_project();
    p.build_json();
    let before = p.zip_bytes("flat");
    let home = tempfile::tempdir().unwrap();
    let global = home.path().join("global-ignore");
    std::fs::write(&global, "app.py\nlib/\n*.py\n").unwrap();
    let cfg = home.path().join("gitconfig");
    std::fs::write(
        &cfg,
        format!("[core]\n\texcludesFile = {}\n", global.display()),
    )
    .unwrap();
    std::fs::create_dir_all(home.path().join("xdg/git")).unwrap();
    std::fs::write(home.path().join("xdg/git/ignore"), "*.py\n").unwrap();
    std::fs::write(home.path().join(".gitconfig"), std::fs::read(&cfg).unwrap()).unwrap();
    let out = p
        .cmd()
        .arg("--json")
        .env("HOME", home.path())
        .env("XDG_CONFIG_HOME", home.path().join("xdg"))
        .env("GIT_CONFIG_GLOBAL", &cfg)
        .output()
        .unwrap();
    assert_success(&out);
    assert_eq!(p.zip_bytes("flat"), before);
    assert_eq!(
        entry_names(&p.zip_path("flat")),
        ["app.py", "lib/__init__.py", "lib/helpers.py", "sub/kept.py"]
    );
}

#[test]
fn a_negated_line_in_a_deeper_ignore_file_re_includes() {
    let p = TestProject::hello();
    p.write(".gitignore", "gen_*.py\n");
    p.write("pkg/.lbuildignore", "!gen_keep.py\n");
    p.write("pkg/gen_keep.py", "");
    p.write("pkg/gen_drop.py", "");
    p.write("gen_top.py", "");
    p.build_json();
    assert_eq!(
        entry_names(&p.zip_path("hello")),
        [
            "app.py",
            "config/settings.json",
            "pkg/gen_keep.py",
            "util.py"
        ]
    );
}

#[test]
fn an_ignored_output_directory_still_reports_a_selected_file_there() {
    let p = TestProject::hello();
    p.write(".gitignore", "dist/\n");
    p.write("dist/stray.py", "");
    let err = p.fail(&[]);
    assert!(err.contains("stray.py"), "{err}");
}

#[test]
fn package_data_no_glob_mentions_is_a_warning_naming_both_fixes() {
    let p = TestProject::hello();
    p.write("shop/__init__.py", "");
    p.write("shop/templates/letter.txt", "Dear customer\n");
    p.write("notes/readme.txt", "not in a package\n");
    let out = p.run(&[]);
    assert_success(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("shop/templates/letter.txt"), "{err}");
    assert!(
        err.contains("\"shop/**/*.txt\" to [sources] include"),
        "{err}"
    );
    assert!(err.contains("[sources] exclude"), "{err}");
    assert!(!err.contains("notes/readme.txt"), "{err}");

    // Excluded on purpose: silent.
    p.write(
        "lambda.toml",
        &HELLO_MANIFEST.replace(
            "[config]",
            "[sources]\nexclude = [\"shop/templates/*\"]\n\n[config]",
        ),
    );
    let out = p.run(&[]);
    assert_success(&out);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("letter.txt"));

    // Included: shipped, silent.
    p.write(
        "lambda.toml",
        &HELLO_MANIFEST.replace(
            "[config]",
            "[sources]\ninclude = [\"**/*.py\", \"shop/**/*.txt\"]\n\n[config]",
        ),
    );
    let out = p.run(&[]);
    assert_success(&out);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("letter.txt"));
    assert!(entry_names(&p.zip_path("hello")).contains(&"shop/templates/letter.txt".to_string()));
}

/// Runs `lbuild init` (with `args`), then `lbuild`; returns init's stderr
/// and the names in the zip.
fn init_then_build(p: &TestProject, args: &[&str], manifest: &str) -> (String, Vec<String>) {
    let mut init = vec!["init"];
    init.extend_from_slice(args);
    let out = p.run(&init);
    assert_success(&out);
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    let text = std::fs::read_to_string(p.path().join(manifest)).unwrap();
    let out = p.run(&["--manifest", manifest, "--json"]);
    assert!(
        out.status.success(),
        "build after init failed:\n{}\nmanifest:\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dist = p.path().join(manifest).parent().unwrap().join("dist");
    let zips: Vec<_> = std::fs::read_dir(&dist).unwrap().flatten().collect();
    assert_eq!(zips.len(), 1);
    (said, entry_names(&zips[0].path()))
}

#[test]
fn init_then_build_on_a_flat_project() {
    let p = TestProject::empty();
    p.write("app.py", "def handler(event, context):\n    return 1\n");
    p.write("util.py", "X = 1\n");
    p.write("test_b.py", "def test(): pass\n");
    p.write("conftest.py", "");
    p.write("config/settings.yaml", "a: 1\n");
    p.write("config/nested/extra.ini", "[a]\n");
    p.write("README.md", "# hi\n");
    let venv = Command::new("python3")
        .args(["-m", "venv", "--without-pip", "venv"])
        .current_dir(p.path())
        .status()
        .unwrap();
    assert!(venv.success());
    let (_, names) = init_then_build(&p, &[], "lambda.toml");
    assert_eq!(
        names,
        [
            "app.py",
            "config/nested/extra.ini",
            "config/settings.yaml",
            "util.py"
        ]
    );
    let text = std::fs::read_to_string(p.path().join("lambda.toml")).unwrap();
    assert!(text.contains("handler = \"app.handler\""), "{text}");
    assert!(text.contains("# Test files are left out"), "{text}");
    let ignore = std::fs::read_to_string(p.path().join(".gitignore")).unwrap();
    assert!(ignore.lines().any(|l| l == ".lbuild/"), "{ignore}");
    assert!(ignore.lines().any(|l| l == "dist/"), "{ignore}");
    // A second init (forced) adds nothing twice.
    assert_success(&p.run(&["init", "--force"]));
    assert_eq!(
        std::fs::read_to_string(p.path().join(".gitignore")).unwrap(),
        ignore
    );
}

#[test]
fn init_then_build_on_a_src_package_layout() {
    let p = TestProject::empty();
    p.write("src/shop/__init__.py", "");
    p.write(
        "src/shop/handler.py",
        "from shop import util\n\ndef handler(event, context):\n    return util.X\n",
    );
    p.write("src/shop/util.py", "X = 1\n");
    p.write("src/shop/templates/letter.txt", "Dear customer\n");
    p.write("src/shop/tests/test_util.py", "");
    p.write("tests/test_handler.py", "");
    p.write("config/app.yaml", "a: 1\n");
    p.write(".gitignore", "*.log");
    p.write(".python-version", "3.11\n");
    let (said, names) = init_then_build(&p, &[], "lambda.toml");
    assert_eq!(
        names,
        [
            "config/app.yaml",
            "shop/__init__.py",
            "shop/handler.py",
            "shop/templates/letter.txt",
            "shop/util.py"
        ]
    );
    let text = std::fs::read_to_string(p.path().join("lambda.toml")).unwrap();
    assert!(
        text.contains("handler = \"shop.handler.handler\""),
        "{text}"
    );
    assert!(text.contains("root = \"src\""), "{text}");
    assert!(text.contains("runtime = \"python3.11\""), "{text}");
    assert!(
        said.contains("runtime python3.11 (from .python-version)"),
        "{said}"
    );
    assert_eq!(
        std::fs::read_to_string(p.path().join(".gitignore")).unwrap(),
        "*.log\n.lbuild/\ndist/\n"
    );
}

#[test]
fn init_then_build_picks_the_candidate_defining_a_handler_and_honours_manifest() {
    let p = TestProject::empty();
    p.write("fn/app.py", "import json\n");
    p.write(
        "fn/lambda_function.py",
        "def lambda_handler(event, context):\n    return 1\n",
    );
    p.write("fn/requirements.txt", "");
    p.write("fn/.python-version", "3.13.1\n");
    let (said, names) = init_then_build(&p, &["--manifest", "fn/lambda.toml"], "fn/lambda.toml");
    assert_eq!(names, ["app.py", "lambda_function.py"]);
    assert!(said.contains("chose lambda_function.py"), "{said}");
    assert!(said.contains("app.py"), "{said}");
    let text = std::fs::read_to_string(p.path().join("fn/lambda.toml")).unwrap();
    assert!(
        text.contains("handler = \"lambda_function.lambda_handler\""),
        "{text}"
    );
    assert!(text.contains("runtime = \"python3.13\""), "{text}");
    assert!(text.contains("\n[dependencies]"), "{text}");
    assert!(!p.path().join("lambda.toml").exists());
    assert!(p.path().join("fn/.gitignore").is_file());
}

/// `init` in a project `sam build` or `serverless deploy` packages, then a
/// build: every Python function of the template gets its zip.
fn init_from_template_then_build(p: &TestProject) -> (String, String, Vec<(String, Vec<String>)>) {
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
    let mut zips: Vec<(String, Vec<String>)> = std::fs::read_dir(p.path().join("dist"))
        .unwrap()
        .flatten()
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                entry_names(&e.path()),
            )
        })
        .collect();
    zips.sort();
    (said, text, zips)
}

#[test]
fn init_turns_a_sam_template_with_several_functions_into_a_workspace() {
    let p = TestProject::empty();
    p.write(
        "template.yaml",
        r#"AWSTemplateFormatVersion: '2010-09-09'
Transform: AWS::Serverless-2016-10-31
Globals:
  Function:
    Runtime: python3.12
    Architectures: [arm64]
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
      CodeUri: billing/
      Handler: pay.handler
      Runtime: python3.11
  Web:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: web/
      Handler: index.handler
      Runtime: nodejs20.x
  OrdersTable:
    Type: AWS::Serverless::SimpleTable
"#,
    );
    p.write(
        "orders/app.py",
        "def lambda_handler(event, context):\n    return 1\n",
    );
    p.write("orders/schema.json", "{}\n");
    p.write("orders/test_app.py", "def test(): pass\n");
    p.write(
        "billing/pay.py",
        "def handler(event, context):\n    return 2\n",
    );
    p.write("web/index.js", "exports.handler = async () => 1;\n");
    let (said, text, zips) = init_from_template_then_build(&p);
    assert!(said.contains("migrated template.yaml (SAM)"), "{said}");
    assert!(
        said.contains("Web: left out: runtime nodejs20.x is not Python"),
        "{said}"
    );
    assert!(text.contains("architecture = \"arm64\""), "{text}");
    assert!(text.contains("[functions.BillingFunction]"), "{text}");
    assert!(text.contains("runtime = \"python3.11\""), "{text}");
    assert_eq!(
        zips,
        [
            (
                "BillingFunction.zip".to_string(),
                vec!["pay.py".to_string()]
            ),
            (
                "OrdersFunction.zip".to_string(),
                vec!["app.py".to_string(), "schema.json".to_string()]
            ),
        ]
    );
}

#[test]
fn init_turns_a_serverless_service_into_a_workspace() {
    let p = TestProject::empty();
    p.write(
        "serverless.yml",
        "service: shop\nprovider:\n  name: aws\n  runtime: python3.12\nfunctions:\n  orders:\n    handler: src/orders.handler\n  report:\n    handler: report.main\n",
    );
    p.write(
        "src/orders.py",
        "def handler(event, context):\n    return 1\n",
    );
    p.write("report.py", "def main(event, context):\n    return 2\n");
    p.write("package.json", "{}\n");
    let (said, text, zips) = init_from_template_then_build(&p);
    assert!(
        said.contains("migrated serverless.yml (Serverless)"),
        "{said}"
    );
    assert!(text.contains("handler = \"src.orders.handler\""), "{text}");
    let all = vec!["report.py".to_string(), "src/orders.py".to_string()];
    assert_eq!(
        zips,
        [
            ("orders.zip".to_string(), all.clone()),
            ("report.zip".to_string(), all)
        ]
    );
}

#[test]
fn completions_generate_for_each_shell() {
    let p = TestProject::empty();
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let out = p.run(&["completions", shell]);
        assert_success(&out);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("lbuild"), "{shell}: {text}");
        assert!(text.contains("watch"), "{shell}: subcommands missing");
    }
    let err = p.fail(&["completions", "tcsh"]);
    assert!(err.contains("possible values"), "{err}");
}

#[test]
fn quiet_and_json_together_print_only_the_json() {
    let p = TestProject::hello();
    let out = p.run(&["-q", "--json"]);
    assert_success(&out);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(json["code_sha256"].is_string(), "{json}");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn init_clean_and_gc_honour_json() {
    let p = TestProject::empty();
    p.write("app.py", "def handler(event, context):\n    return 1\n");
    let json = |args: &[&str]| -> serde_json::Value {
        let out = p.run(args);
        assert_success(&out);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{args:?}: bad JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    };
    let init = json(&["init", "--json"]);
    assert_eq!(init["handler"], "app.handler");
    assert!(init["manifest"].as_str().unwrap().ends_with("lambda.toml"));
    p.build_json();
    let gc = json(&["gc", "--json", "--days", "0"]);
    assert!(gc["removed"].is_number(), "{gc}");
    let clean = json(&["clean", "--json"]);
    assert_eq!(clean["cleaned"], true);
    assert!(
        !p.path().join("dist").read_dir().unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".zip"))
    );
}

#[test]
fn an_empty_requirements_file_warns_that_the_zip_has_no_dependencies() {
    let p = TestProject::hello();
    p.write(
        "lambda.toml",
        &format!("{HELLO_MANIFEST}\n[dependencies]\nrequirements = \"requirements.txt\"\n"),
    );
    p.write("requirements.txt", "# nothing yet\n");
    for run in ["first", "cached"] {
        let out = p.run(&[]);
        assert_success(&out);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("requirements.txt lists no requirements: the zip has no dependencies"),
            "{run}: {err}"
        );
    }
}

#[test]
fn a_config_glob_matching_nothing_is_an_error_with_its_position() {
    let p = TestProject::hello();
    p.write(
        "lambda.toml",
        &HELLO_MANIFEST.replace(
            "files = [\"config/*.json\"]",
            "files = [\"config/*.json\", \"config/*.yaml\"]",
        ),
    );
    let out = p.run(&[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("lambda.toml:7:27"), "{err}");
    assert!(err.contains("\"config/*.yaml\" matches no file"), "{err}");
    assert!(err.contains("required = false"), "{err}");

    // The opt-out: a warning, and the build goes on.
    p.write(
        "lambda.toml",
        &HELLO_MANIFEST.replace(
            "files = [\"config/*.json\"]",
            "required = false\nfiles = [\"config/*.json\", \"config/*.yaml\"]",
        ),
    );
    let out = p.run(&[]);
    assert_success(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("matches no file"));
}

#[test]
fn requirements_stubs_and_docs_in_a_package_are_not_package_data() {
    // A SAM CodeUri directory is often a package holding requirements.txt.
    let p = TestProject::hello();
    p.write("billing/__init__.py", "");
    p.write("billing/requirements.txt", "requests==2.32.3\n");
    p.write("billing/api.pyi", "");
    p.write("billing/py.typed", "");
    p.write("billing/README.md", "");
    p.write("billing/.gitignore", "*.tmp\n");
    let out = p.run(&[]);
    assert_success(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("inside Python package"), "{err}");
}
