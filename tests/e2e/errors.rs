//! Bad input: each case gives a message that says what, where and how to
//! fix, a non-zero exit, and leaves the previous zip byte-identical.

use std::os::unix::ffi::OsStrExt;

use crate::common::*;

/// Builds the hello project, applies `break_it`, expects failure with all
/// of `expect` in stderr, and checks the last good zip is untouched.
fn fails_keeping_zip(break_it: impl FnOnce(&TestProject), expect: &[&str]) -> String {
    let p = TestProject::hello();
    p.build_json();
    let before = p.zip_bytes("hello");
    let mtime = std::fs::metadata(p.zip_path("hello"))
        .unwrap()
        .modified()
        .unwrap();
    break_it(&p);
    let out = p.run(&[]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "expected failure");
    assert_eq!(
        out.status.code(),
        Some(2),
        "input errors exit with 2:\n{err}"
    );
    for e in expect {
        assert!(err.contains(e), "stderr lacks {e:?}:\n{err}");
    }
    assert!(err.contains("hint:"), "no hint:\n{err}");
    assert_eq!(p.zip_bytes("hello"), before, "last good zip changed");
    assert_eq!(
        std::fs::metadata(p.zip_path("hello"))
            .unwrap()
            .modified()
            .unwrap(),
        mtime
    );
    // No temp files left beside it.
    let leftovers: Vec<_> = std::fs::read_dir(p.path().join("dist")).unwrap().collect();
    assert_eq!(leftovers.len(), 1);
    err
}

#[test]
fn malformed_toml_names_line_and_column() {
    fails_keeping_zip(
        |p| {
            p.write(
                "lambda.toml",
                "[function]\nname = \"hello\nhandler = \"app.handler\"\n",
            );
        },
        &["lambda.toml:2:"],
    );
}

#[test]
fn unknown_key_names_line_column_and_allowed_keys() {
    let err = fails_keeping_zip(
        |p| {
            p.write(
                "lambda.toml",
                &HELLO_MANIFEST.replace("runtime =", "runtme ="),
            );
        },
        &["lambda.toml:4:1", "unknown field `runtme`", "runtime"],
    );
    assert!(err.contains("expected one of"), "{err}");
}

#[test]
fn wrong_type_and_bad_values() {
    fails_keeping_zip(
        |p| {
            p.write(
                "lambda.toml",
                &format!("{HELLO_MANIFEST}\n[output]\nlevel = \"high\"\n"),
            );
        },
        &["lambda.toml:10:"],
    );
    fails_keeping_zip(
        |p| {
            p.write(
                "lambda.toml",
                &HELLO_MANIFEST.replace("python3.12", "python2.7"),
            );
        },
        &[
            "lambda.toml:4:",
            "runtime \"python2.7\" is deprecated by AWS",
            "python3.12",
        ],
    );
    fails_keeping_zip(
        |p| {
            p.write(
                "lambda.toml",
                &HELLO_MANIFEST.replace(
                    "runtime = \"python3.12\"",
                    "runtime = \"python3.12\"\narchitecture = \"sparc\"",
                ),
            );
        },
        &["unknown variant `sparc`", "arm64"],
    );
}

#[test]
fn missing_handler_module() {
    fails_keeping_zip(
        |p| p.remove("app.py"),
        &["handler \"app.handler\"", "app.py", "app/__init__.py"],
    );
}

#[test]
fn missing_handler_function_only_warns() {
    let p = TestProject::hello();
    p.write("app.py", "def main(event, context):\n    return 1\n");
    let out = p.run(&[]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning:") && err.contains("def handler("),
        "{err}"
    );
}

#[test]
fn include_glob_escaping_root() {
    fails_keeping_zip(
        |p| {
            p.write(
                "lambda.toml",
                &HELLO_MANIFEST.replace(
                    "[config]",
                    "[sources]\ninclude = [\"../x/*.py\"]\n\n[config]",
                ),
            );
        },
        &["lambda.toml:7:", "../x/*.py", "outside the root"],
    );
}

#[test]
fn symlink_pointing_outside_root() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.py"), "x = 1\n").unwrap();
    let target = outside.path().join("secret.py");
    fails_keeping_zip(
        move |p| std::os::unix::fs::symlink(&target, p.path().join("leak.py")).unwrap(),
        &["symlink", "leak.py", "points outside"],
    );
}

#[test]
fn non_utf8_file_name() {
    fails_keeping_zip(
        |p| {
            let name = std::ffi::OsStr::from_bytes(b"bad\xff.py");
            std::fs::write(p.path().join(name), "x = 1\n").unwrap();
        },
        &["not valid UTF-8", "bad"],
    );
}

#[test]
fn two_inputs_claiming_one_archive_path() {
    fails_keeping_zip(
        |p| {
            p.write(
                "lambda.toml",
                &HELLO_MANIFEST.replace("config/*.json", "util.py"),
            );
        },
        &["\"util.py\" is claimed twice", "sources", "config"],
    );
}

#[test]
fn output_path_inside_the_sources() {
    fails_keeping_zip(
        |p| {
            p.write(
                "lambda.toml",
                &format!("{HELLO_MANIFEST}\n[output]\npath = \"hello.zip\"\n"),
            );
        },
        &["lambda.toml:10:", "inside the sources", "dist/"],
    );
}

#[test]
fn output_beside_a_sources_subdirectory_is_fine() {
    let p = TestProject::empty();
    p.write(
        "lambda.toml",
        "[function]\nname = \"h\"\nhandler = \"app.handler\"\n\n[sources]\nroot = \"src\"\n\n[output]\npath = \"h.zip\"\n",
    );
    p.write("src/app.py", "def handler(event, context):\n    return 1\n");
    p.build_json();
    assert_eq!(entry_names(&p.path().join("h.zip")), ["app.py"]);
}

#[test]
fn missing_config_file() {
    fails_keeping_zip(
        |p| {
            p.write(
                "lambda.toml",
                &HELLO_MANIFEST.replace("config/*.json", "config/missing.json"),
            );
        },
        &["config file \"config/missing.json\" not found"],
    );
}

#[test]
fn no_manifest_anywhere_suggests_init() {
    let p = TestProject::empty();
    let err = p.fail(&[]);
    assert!(
        err.contains("no lambda.toml found") && err.contains("lbuild init"),
        "{err}"
    );
}

#[test]
fn json_mode_reports_the_error_on_stdout_too() {
    let p = TestProject::hello();
    p.remove("app.py");
    let out = p.run(&["--json"]);
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["exit_code"], 2);
    assert!(
        v["error"].as_str().unwrap().contains("module not found"),
        "{v}"
    );
}

#[test]
fn what_is_not_packaged_cannot_fail_the_build() {
    // Regression: a .venv (symlinks to the host's python), an Emacs lock
    // link, and a non-UTF-8 name in an excluded directory used to fail the
    // walk before the globs were applied.
    let p = TestProject::hello();
    p.write(
        "lambda.toml",
        &HELLO_MANIFEST.replace(
            "[config]",
            "[sources]\nexclude = [\"tests/**\", \"vendored\"]\n\n[config]",
        ),
    );
    std::fs::create_dir_all(p.path().join(".venv/bin")).unwrap();
    std::os::unix::fs::symlink("/usr/bin/python3", p.path().join(".venv/bin/python3")).unwrap();
    p.write(".venv/lib/site.py", "x = 1\n");
    std::os::unix::fs::symlink("root@host.123:1700000000", p.path().join(".#app.py")).unwrap();
    p.write("tests/test_app.py", "def test(): pass\n");
    std::fs::write(
        p.path()
            .join("tests")
            .join(std::ffi::OsStr::from_bytes(b"\xff.py")),
        "x",
    )
    .unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("lib.py"), "y = 2\n").unwrap();
    std::os::unix::fs::symlink(outside.path(), p.path().join("vendored")).unwrap();
    p.build_json();
    assert_eq!(
        entry_names(&p.zip_path("hello")),
        ["app.py", "config/settings.json", "util.py"]
    );

    // The same escaping directory link, packaged: an error naming the link.
    std::fs::remove_dir_all(p.path().join("tests")).unwrap();
    p.write("lambda.toml", HELLO_MANIFEST);
    let err = p.fail(&[]);
    assert!(
        err.contains("vendored") && err.contains("points outside"),
        "{err}"
    );
}
