//! One walk per sources root (issue 22): the functions of a workspace
//! share one listing of their root, and each still sees exactly what its
//! own walk would: its globs, its output directory, and only the problems
//! (broken links, unreadable directories, links out of the project) that
//! lie where its globs reach.

use std::os::unix::fs::symlink;
use std::process::Output;

use crate::common::*;

const TWO: &str = r#"
[defaults]
runtime = "python3.12"
architecture = "x86_64"
sources = { root = "src" }

[functions.a]
handler = "a.app.handler"
sources = { include = ["a/**/*.py", "shared/**/*.py"] }

[functions.b]
handler = "b.app.handler"
sources = { include = ["b/**/*", "shared/**/*.py"] }
"#;

fn two() -> TestProject {
    let p = TestProject::empty();
    p.write("lambda.toml", TWO);
    for f in ["a", "b"] {
        p.write(&format!("src/{f}/__init__.py"), "");
        p.write(
            &format!("src/{f}/app.py"),
            "from shared.util import one\n\ndef handler(event, context):\n    return one()\n",
        );
    }
    p.write("src/shared/__init__.py", "");
    p.write("src/shared/util.py", "def one():\n    return 1\n");
    p
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Why `out`'s stderr says function `name` failed, if it does.
fn failure_of(out: &Output, name: &str) -> Option<String> {
    let marker = format!("error: function {name}: ");
    stderr(out)
        .lines()
        .find_map(|l| l.split_once(&marker).map(|(_, why)| why.to_string()))
}

#[test]
fn a_problem_fails_only_the_function_whose_globs_reach_it() {
    let p = two();
    symlink("missing.py", p.path().join("src/b/gone.py")).unwrap();
    let out = p.run(&[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let line = failure_of(&out, "b").unwrap_or_else(|| panic!("{err}"));
    assert!(
        line.contains("broken symlink") && line.contains("gone.py"),
        "{err}"
    );
    assert_eq!(failure_of(&out, "a"), None, "{err}");
    assert!(p.zip_path("a").exists(), "a must still build: {err}");
    assert!(!p.zip_path("b").exists(), "{err}");
    // The same error as building b alone.
    assert_eq!(failure_of(&p.run(&["--function", "b"]), "b"), Some(line));
    std::fs::remove_file(p.path().join("src/b/gone.py")).unwrap();

    // A directory symlink out of the project: b keeps a file below it.
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("x.py"), "").unwrap();
    symlink(outside.path(), p.path().join("src/b/ext")).unwrap();
    let out = p.run(&[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let line = failure_of(&out, "b").unwrap_or_else(|| panic!("{err}"));
    assert!(
        line.contains("points outside") && line.contains("src/b/ext"),
        "{err}"
    );
    assert_eq!(failure_of(&out, "a"), None, "{err}");
    assert_eq!(failure_of(&p.run(&["--function", "b"]), "b"), Some(line));
    std::fs::remove_file(p.path().join("src/b/ext")).unwrap();
    assert_success(&p.run(&[]));
    assert!(p.zip_path("b").exists());
}

#[test]
fn an_unreadable_directory_fails_only_the_function_that_reaches_it() {
    use std::os::unix::fs::PermissionsExt;
    let p = two();
    let private = p.path().join("src/b/private");
    std::fs::create_dir(&private).unwrap();
    std::fs::set_permissions(&private, PermissionsExt::from_mode(0o000)).unwrap();
    let out = run_unprivileged(&p);
    std::fs::set_permissions(&private, PermissionsExt::from_mode(0o755)).unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let line = failure_of(&out, "b").unwrap_or_else(|| panic!("{err}"));
    assert!(
        line.contains("cannot read") && line.contains("src/b/private"),
        "{err}"
    );
    assert_eq!(failure_of(&out, "a"), None, "{err}");
    assert!(p.zip_path("a").exists(), "a must still build: {err}");
    assert!(!p.zip_path("b").exists(), "{err}");
}

#[test]
fn ignore_files_and_virtualenvs_hold_for_every_function() {
    let p = two();
    p.write("src/.gitignore", "generated_*.py\n");
    p.write("src/shared/generated_x.py", "");
    p.write("src/a/.lbuildignore", "scratch.py\n");
    p.write("src/a/scratch.py", "");
    p.write("src/shared/env/pyvenv.cfg", "home = /usr/bin\n");
    p.write("src/shared/env/lib/site.py", "");
    p.write("src/b/data.json", "{}\n");
    assert_success(&p.run(&[]));
    let a = entry_names(&p.zip_path("a"));
    let b = entry_names(&p.zip_path("b"));
    assert_eq!(
        a,
        [
            "a/__init__.py",
            "a/app.py",
            "shared/__init__.py",
            "shared/util.py"
        ]
    );
    assert_eq!(
        b,
        [
            "b/__init__.py",
            "b/app.py",
            "b/data.json",
            "shared/__init__.py",
            "shared/util.py"
        ]
    );
}

#[test]
fn the_output_directory_check_is_each_functions_own() {
    // Both take every .py file; a writes its zip into src/out_a, which the
    // ignore file hides. b never sees out_a; a's walk enters it anyway and
    // finds a file its globs select there.
    let p = two();
    p.write(
        "lambda.toml",
        r#"
[defaults]
runtime = "python3.12"
architecture = "x86_64"
sources = { root = "src", include = ["**/*.py"] }

[functions.a]
handler = "a.app.handler"
output = { path = "src/out_a/a.zip" }

[functions.b]
handler = "b.app.handler"
"#,
    );
    p.write("src/.gitignore", "out_a/\n");
    p.write("src/out_a/stray.py", "");
    let out = p.run(&[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let line = failure_of(&out, "a").unwrap_or_else(|| panic!("{err}"));
    assert!(
        line.contains("lies in the output directory") && line.contains("stray.py"),
        "{err}"
    );
    assert_eq!(failure_of(&out, "b"), None, "{err}");
    assert!(!p.path().join("src/out_a/a.zip").exists());
    let b = entry_names(&p.zip_path("b"));
    assert!(!b.iter().any(|n| n.contains("out_a")), "{b:?}");
    assert!(b.contains(&"a/app.py".to_string()), "{b:?}");
}

#[test]
fn a_shared_walk_writes_the_bytes_a_single_function_project_writes() {
    let p = two();
    p.write("src/shared/data/table.py", "T = 1\n");
    assert_success(&p.run(&[]));
    // The same function as the project's only one: a walk of its own.
    let single = TestProject::empty();
    single.write(
        "lambda.toml",
        "[function]\nname = \"a\"\nhandler = \"a.app.handler\"\nruntime = \"python3.12\"\narchitecture = \"x86_64\"\n\n[sources]\nroot = \"src\"\ninclude = [\"a/**/*.py\", \"shared/**/*.py\"]\n",
    );
    for rel in [
        "src/a/__init__.py",
        "src/a/app.py",
        "src/b/app.py",
        "src/shared/__init__.py",
        "src/shared/util.py",
        "src/shared/data/table.py",
    ] {
        single.write(rel, &std::fs::read_to_string(p.path().join(rel)).unwrap());
    }
    assert_success(&single.run(&[]));
    assert_eq!(p.zip_bytes("a"), single.zip_bytes("a"));
}

/// Five functions whose globs overlap, come in different orders, negate
/// classes and exclude each other's files: the globs they share are
/// compiled once per load and matched across artifacts, and each
/// function's zip and package-data warning is exactly what it gets as the
/// only function of a project.
#[test]
fn functions_sharing_globs_select_what_each_selects_alone() {
    let functions: [(&str, &str, &str); 5] = [
        (
            "f1",
            r#"["f1/**/*.py", "shared/**/*.py"]"#,
            r#"["shared/tests/**"]"#,
        ),
        (
            "f2",
            r#"["shared/**/*.py", "f2/**/*"]"#,
            r#"["**/*_test.py"]"#,
        ),
        (
            "f3",
            r#"["shared/**/*.py", "f3/*.py", "f3/[!x]*/*.py"]"#,
            "[]",
        ),
        (
            "f4",
            r#"["**/*.py"]"#,
            r#"["f1/**", "f2/**", "f3/**", "shared/[!u]*.py"]"#,
        ),
        (
            "f5",
            r#"["f5/**/*.py", "shared/*.py"]"#,
            r#"["shared/tests/**"]"#,
        ),
    ];
    let files = [
        "f1/__init__.py",
        "f1/app.py",
        "f1/h/x.py",
        "f2/__init__.py",
        "f2/app.py",
        "f2/app_test.py",
        "f2/data.txt",
        "f3/__init__.py",
        "f3/app.py",
        "f3/a/m.py",
        "f3/x1/m.py",
        "f4/__init__.py",
        "f4/app.py",
        "f5/__init__.py",
        "f5/app.py",
        "f5/templates/t.html",
        "shared/__init__.py",
        "shared/util.py",
        "shared/db_test.py",
        "shared/tests/t.py",
    ];
    let write_sources = |p: &TestProject| {
        for f in files {
            let text = if f.ends_with("/app.py") {
                "def handler(event, context):\n    return 1\n"
            } else {
                ""
            };
            p.write(&format!("src/{f}"), text);
        }
    };
    let mut manifest = String::from(
        "[defaults]\nruntime = \"python3.12\"\narchitecture = \"x86_64\"\nsources = { root = \"src\" }\n",
    );
    for (name, include, exclude) in functions {
        manifest += &format!(
            "\n[functions.{name}]\nhandler = \"{name}.app.handler\"\nsources = {{ include = {include}, exclude = {exclude} }}\n"
        );
    }
    let ws = TestProject::empty();
    ws.write("lambda.toml", &manifest);
    write_sources(&ws);
    let ws_json = ws.build_json();
    // The package-data warning lists the files no glob matched: each
    // artifact's own, in --json (the terminal shows a repeated one once).
    let warned = |json: &serde_json::Value, name: &str| {
        // A workspace lists its artifacts; a single function is the top.
        let artifact = match json["artifacts"].as_array() {
            Some(all) => all.iter().find(|a| a["name"] == name),
            None => (json["name"] == name).then_some(json),
        }
        .unwrap_or_else(|| panic!("{name} not built: {json}"));
        artifact["warnings"].as_array().is_some_and(|w| {
            w.iter()
                .any(|w| w.as_str().unwrap().contains("f5/templates/t.html"))
        })
    };

    let expected: [&[&str]; 5] = [
        &[
            "f1/__init__.py",
            "f1/app.py",
            "f1/h/x.py",
            "shared/__init__.py",
            "shared/db_test.py",
            "shared/util.py",
        ],
        &[
            "f2/__init__.py",
            "f2/app.py",
            "f2/data.txt",
            "shared/__init__.py",
            "shared/tests/t.py",
            "shared/util.py",
        ],
        &[
            "f3/__init__.py",
            "f3/a/m.py",
            "f3/app.py",
            "shared/__init__.py",
            "shared/db_test.py",
            "shared/tests/t.py",
            "shared/util.py",
        ],
        &[
            "f4/__init__.py",
            "f4/app.py",
            "f5/__init__.py",
            "f5/app.py",
            "shared/tests/t.py",
            "shared/util.py",
        ],
        &[
            "f5/__init__.py",
            "f5/app.py",
            "shared/__init__.py",
            "shared/db_test.py",
            "shared/util.py",
        ],
    ];
    for ((name, include, exclude), expected) in functions.iter().zip(expected) {
        assert_eq!(entry_names(&ws.zip_path(name)), expected, "{name}");
        let alone = TestProject::empty();
        alone.write(
            "lambda.toml",
            &format!(
                "[function]\nname = \"{name}\"\nhandler = \"{name}.app.handler\"\nruntime = \"python3.12\"\narchitecture = \"x86_64\"\n\n[sources]\nroot = \"src\"\ninclude = {include}\nexclude = {exclude}\n"
            ),
        );
        write_sources(&alone);
        let alone_json = alone.build_json();
        assert_eq!(ws.zip_bytes(name), alone.zip_bytes(name), "{name}");
        // f4 packages f5/__init__.py too, and leaves the template out.
        let warns = matches!(*name, "f4" | "f5");
        assert_eq!(warned(&ws_json, name), warns, "{name}: {ws_json}");
        assert_eq!(warned(&alone_json, name), warns, "{name}: {alone_json}");
    }
}
