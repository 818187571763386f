//! "Why did this run?" (`lbuild explain`, `-v`, `--json` reasons),
//! warnings replayed from cached stage results, `lbuild check`, and the
//! one-line `path:line:col: error:` shape editors parse.

use std::process::Output;

use crate::common::{TestProject, assert_success, box_installers};
use crate::deps::{Wheel, write_wheelhouse};

const SHOP: &str = r#"[function]
name = "shop"
handler = "shop.handler.handler"
runtime = "python3.11"

[sources]
root = "src"
include = ["**/*.py"]

[output]
level = 6
"#;

fn shop() -> TestProject {
    let p = TestProject::empty();
    p.write("lambda.toml", SHOP);
    p.write("src/shop/__init__.py", "");
    p.write(
        "src/shop/handler.py",
        "def handler(event, context):\n    return 1\n",
    );
    p
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn reasons(json: &serde_json::Value, stage: &str) -> Vec<String> {
    json["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == stage)
        .and_then(|s| s.get("reasons"))
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn explain_names_the_edited_and_added_source_and_the_level_change() {
    let p = shop();
    assert_success(&p.run(&[]));

    let out = p.run(&["explain"]);
    assert_success(&out);
    assert!(
        stderr(&out).contains("nothing changed since the last build"),
        "{}",
        stderr(&out)
    );

    p.write(
        "src/shop/handler.py",
        "def handler(event, context):\n    return 2\n",
    );
    p.write("src/shop/new.py", "X = 1\n");
    let out = p.run(&["explain"]);
    assert_success(&out);
    let err = stderr(&out);
    assert!(
        err.contains("  sources: shop/handler.py changed; shop/new.py added"),
        "{err}"
    );
    assert!(
        err.contains("  package: shop/handler.py changed; shop/new.py added"),
        "{err}"
    );

    // The same reasons in --json, per stage; none on stages that did not run.
    p.remove("src/shop/new.py");
    let json = p.build_json();
    assert_eq!(reasons(&json, "sources"), ["shop/new.py removed"]);
    assert!(reasons(&json, "config").is_empty());

    p.write("lambda.toml", &SHOP.replace("level = 6", "level = 9"));
    let out = p.run(&["-v"]);
    assert_success(&out);
    assert!(
        stderr(&out).contains("why: level 6 → 9"),
        "{}",
        stderr(&out)
    );
    let json = p.build_json();
    assert!(
        reasons(&json, "package").is_empty(),
        "a no-op has no reasons"
    );
}

#[test]
fn plain_builds_print_one_summary_line_and_the_stage_table_only_under_verbose() {
    let p = shop();
    let out = p.run(&[]);
    assert_success(&out);
    let err = stderr(&out);
    assert!(!err.contains(" ms  key "), "no stage table: {err}");
    assert_eq!(err.lines().filter(|l| l.starts_with("Built ")).count(), 1);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("CodeSha256 "), "{stdout}");
    let out = p.run(&["-v"]);
    assert!(stderr(&out).contains(" ms  key "), "{}", stderr(&out));
}

// ------------------------------------------------------------ deps

struct Deps {
    p: TestProject,
    caches: tempfile::TempDir,
}

impl Deps {
    fn new(requirements: &str) -> Self {
        let p = TestProject::empty();
        p.write(
            "lambda.toml",
            "[function]\nname = \"fn\"\nhandler = \"app.handler\"\nruntime = \"python3.12\"\n\n\
             [dependencies]\ninstaller = \"uv\"\nfind_links = [\"wheels\"]\nno_index = true\n",
        );
        p.write("app.py", "def handler(event, context):\n    return 1\n");
        p.write("requirements.txt", requirements);
        write_wheelhouse(&p.path().join("wheels"));
        Wheel {
            name: "purepkg",
            version: "1.1",
            tag: "py3-none-any",
            files: vec![("purepkg/__init__.py".into(), b"V = 11\n".to_vec(), false)],
            entry_points: None,
        }
        .write_into(&p.path().join("wheels"));
        let caches = tempfile::Builder::new()
            .prefix("lbuild-caches-")
            .tempdir()
            .unwrap();
        Deps { p, caches }
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut cmd = self.p.cmd();
        box_installers(&mut cmd, self.caches.path());
        let out = cmd.args(args).output().unwrap();
        assert_success(&out);
        out
    }
}

#[test]
fn explain_names_the_requirement_whose_pin_moved() {
    let d = Deps::new("purepkg==1.0\n");
    d.run(&[]);
    d.p.write("requirements.txt", "purepkg==1.1\n");
    let err = stderr(&d.run(&["explain"]));
    assert!(
        err.contains("  deps: requirements.txt changed (purepkg 1.0 → 1.1)"),
        "{err}"
    );
}

#[test]
fn the_unpinned_warning_is_replayed_on_cached_runs_in_human_and_json_output() {
    let d = Deps::new("purepkg\n");
    let first = stderr(&d.run(&[]));
    let warning = "requirements.txt:1: \"purepkg\" is not pinned with ==";
    assert!(first.contains(&format!("warning: {warning}")), "{first}");

    // Nothing changed: the deps tree is cached, and its warning with it.
    let again = stderr(&d.run(&[]));
    let line = again
        .lines()
        .find(|l| l.contains(warning))
        .unwrap_or_else(|| panic!("the warning was not replayed:\n{again}"));
    assert!(
        line.starts_with("warning: ") && line.ends_with("(cached)"),
        "{line}"
    );

    let out = d.run(&["--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let warnings: Vec<&str> = json["warnings"]
        .as_array()
        .unwrap_or_else(|| panic!("no warnings in {json}"))
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains(warning) && w.ends_with("(cached)")),
        "{warnings:?}"
    );
}

// ------------------------------------------------------------ check

#[test]
fn check_reports_a_syntax_error_with_its_position_and_build_check_refuses_to_build() {
    let p = shop();
    p.write(
        "src/shop/handler.py",
        "def handler(event, context):\n    return (1,\n\nx = ]\n",
    );
    let out = p.run(&["check"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    let line = err
        .lines()
        .find(|l| l.starts_with("src/shop/handler.py:"))
        .unwrap_or_else(|| panic!("no problem line:\n{err}"));
    let mut parts = line.splitn(4, ':');
    parts.next();
    let (l, c) = (parts.next().unwrap(), parts.next().unwrap());
    assert!(l.parse::<u32>().unwrap() >= 2, "{line}");
    assert!(c.parse::<u32>().unwrap() >= 1, "{line}");
    assert!(
        parts.next().unwrap().starts_with(" error: SyntaxError"),
        "{line}"
    );

    let out = p.run(&["build", "--check"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!p.zip_path("shop").exists(), "no zip after a failed check");

    p.write(
        "src/shop/handler.py",
        "def handler(event, context):\n    return 1\n",
    );
    assert_success(&p.run(&["build", "--check"]));
}

#[test]
fn check_json_is_one_document_carrying_problems_and_the_failure() {
    // Regression: a failed `check --json` printed its problems, then a
    // second JSON document for the error: editors parse one.
    let p = shop();
    p.write("src/shop/handler.py", "x = ]\n");
    let out = p.run(&["check", "--json"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let docs: Vec<&str> = stdout.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(docs.len(), 1, "{stdout}");
    let doc: serde_json::Value = serde_json::from_str(docs[0]).unwrap();
    assert_eq!(doc["problems"][0]["path"], "src/shop/handler.py", "{doc}");
    assert_eq!(doc["error"], "1 syntax error in the sources", "{doc}");
    assert_eq!(doc["exit_code"], 2, "{doc}");
    assert!(
        doc["hint"].as_str().unwrap().contains("fix the lines"),
        "{doc}"
    );
}

#[test]
fn check_without_the_runtimes_python_says_it_skipped() {
    let p = shop();
    p.write("lambda.toml", &SHOP.replace("python3.11", "python3.13"));
    p.write("src/shop/handler.py", "x = ]\n");
    // A PATH with neither python3.13 nor uv.
    let empty = tempfile::tempdir().unwrap();
    let out = p
        .cmd()
        .env("PATH", empty.path())
        .arg("check")
        .output()
        .unwrap();
    assert_success(&out);
    assert!(
        stderr(&out).contains("note: skipped the syntax check of function shop"),
        "{}",
        stderr(&out)
    );
}

// ------------------------------------------------------------ editors

/// The problem matcher of docs/editors.md, applied (with Python's `re`,
/// close enough to the JavaScript regexp VS Code runs) to what lbuild
/// really prints for a manifest error and a syntax error.
#[test]
fn the_documented_problem_matcher_parses_lbuilds_errors() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/editors.md")).unwrap();
    let tasks = doc
        .split("```json\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a json block in docs/editors.md");
    let tasks: serde_json::Value = serde_json::from_str(tasks).unwrap();
    let regexp = tasks["tasks"][0]["problemMatcher"]["pattern"]["regexp"]
        .as_str()
        .unwrap()
        .to_string();

    let p = shop();
    p.write(
        "lambda.toml",
        &SHOP.replace("level = 6", "level = 6\nbogus = 1"),
    );
    let manifest_err = p.fail(&[]);
    p.write("lambda.toml", SHOP);
    p.write("src/shop/handler.py", "def handler(:\n");
    let check_err = p.fail(&["check"]);

    let script = r#"
import json, re, sys
rx = re.compile(sys.argv[1])
for text in sys.argv[2:]:
    m = [x.groups() for x in map(rx.match, text.splitlines()) if x]
    print(json.dumps(m))
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script, &regexp, &manifest_err, &check_err])
        .output()
        .unwrap();
    assert_success(&out);
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let first = |v: &serde_json::Value| v[0].as_array().cloned().unwrap_or_default();
    let m = first(&lines[0]);
    assert_eq!(m.len(), 5, "manifest error not matched:\n{manifest_err}");
    assert!(m[0].as_str().unwrap().ends_with("lambda.toml"), "{m:?}");
    assert_eq!(m[1], "12", "{m:?}");
    assert_eq!(m[3], "error");
    assert!(m[4].as_str().unwrap().contains("bogus"), "{m:?}");
    let m = first(&lines[1]);
    assert_eq!(m.len(), 5, "syntax error not matched:\n{check_err}");
    assert_eq!(m[0], "src/shop/handler.py");
    assert_eq!(m[1], "1");
    assert_eq!(m[3], "error");
    // One match per problem: the hint line and the summary are not problems.
    assert_eq!(lines[1].as_array().unwrap().len(), 1, "{check_err}");
}
