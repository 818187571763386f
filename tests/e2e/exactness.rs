//! The zip holds exactly what the manifest says: directories are pruned
//! only when the exclude text covers them, and what is not packaged (a
//! loop, a broken link) cannot fail the build; what cannot be read can,
//! with one exit code and the path named.

use std::os::unix::fs::{PermissionsExt, symlink};

use crate::common::*;

fn with_sources(extra: &str) -> String {
    HELLO_MANIFEST.replace("[config]", &format!("[sources]\n{extra}\n\n[config]"))
}

/// What the hello project packages with `exclude` and a tests/ tree
/// three levels deep.
fn packaged_with_tests_excluding(exclude: &str) -> Vec<String> {
    let p = TestProject::hello();
    p.write(
        "lambda.toml",
        &with_sources(&format!("exclude = {exclude}")),
    );
    p.write("tests/top.py", "x = 1\n");
    p.write("tests/a/mid.py", "x = 2\n");
    p.write("tests/a/b/c.py", "x = 3\n");
    p.build_json();
    entry_names(&p.zip_path("hello"))
}

#[test]
fn exclude_globs_that_do_not_cover_a_directory_do_not_prune_it() {
    // Regression: pruning probed made-up paths, and `tests/*` with
    // `tests/*/*.*` left out tests/a/b/c.py, which matches neither.
    assert_eq!(
        packaged_with_tests_excluding("[\"tests/*\", \"tests/*/*.*\"]"),
        [
            "app.py",
            "config/settings.json",
            "tests/a/b/c.py",
            "util.py"
        ]
    );
}

#[test]
fn exclude_globs_that_cover_a_directory_prune_it() {
    // Pruned directories are never entered: a loop inside cannot matter.
    let p = TestProject::hello();
    p.write(
        "lambda.toml",
        &with_sources("exclude = [\"tests/**\", \"**/build/**/*\"]"),
    );
    p.write("tests/a/b/c.py", "x = 3\n");
    p.write("pkg/build/gen.py", "x = 4\n");
    p.write("pkg/keep.py", "x = 5\n");
    symlink("..", p.path().join("tests/a/up")).unwrap();
    p.build_json();
    assert_eq!(
        entry_names(&p.zip_path("hello")),
        ["app.py", "config/settings.json", "pkg/keep.py", "util.py"]
    );
}

#[test]
fn an_exclude_of_everything_in_subdirectories_keeps_the_files_above_them() {
    // Regression: `tests/**/*/**` (only what lies in a subdirectory of
    // tests) pruned tests itself, dropping tests/top.py, which it does not
    // match.
    assert_eq!(
        packaged_with_tests_excluding("[\"tests/**/*/**\"]"),
        ["app.py", "config/settings.json", "tests/top.py", "util.py"]
    );
}

#[test]
fn include_globs_prune_directories_they_cannot_reach() {
    // A directory outside every include's literal prefix is never entered
    // (in a workspace: the other functions' directories): a loop inside
    // cannot matter, while the same loop under an included directory does.
    let p = TestProject::empty();
    p.write(
        "lambda.toml",
        "[function]\nname = \"f\"\nhandler = \"fn1.app.handler\"\nruntime = \"python3.12\"\n\n\
         [sources]\ninclude = [\"fn1/**/*.py\", \"shared/*.py\"]\n",
    );
    p.write("fn1/app.py", "def handler(event, context):\n    return 1\n");
    p.write("fn1/deep/x.py", "x = 1\n");
    p.write("shared/util.py", "u = 1\n");
    p.write("fn2/app.py", "x = 2\n");
    symlink("..", p.path().join("fn2/up")).unwrap();
    p.build_json();
    assert_eq!(
        entry_names(&p.zip_path("f")),
        ["fn1/app.py", "fn1/deep/x.py", "shared/util.py"]
    );
    symlink("..", p.path().join("fn1/deep/up")).unwrap();
    let err = p.fail(&[]);
    assert!(err.contains("symlink loop"), "{err}");
}

#[test]
fn loops_and_broken_links_no_glob_selects_do_not_fail_the_build() {
    let p = TestProject::hello();
    symlink("loop.txt", p.path().join("loop.txt")).unwrap();
    symlink("missing.txt", p.path().join("gone.txt")).unwrap();
    p.build_json();
    assert_eq!(
        entry_names(&p.zip_path("hello")),
        ["app.py", "config/settings.json", "util.py"]
    );

    // Selected, they are errors naming the link.
    symlink("loop.py", p.path().join("loop.py")).unwrap();
    let out = p.run(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("symlink loop") && err.contains("loop.py"),
        "{err}"
    );
    std::fs::remove_file(p.path().join("loop.py")).unwrap();
    symlink("missing.py", p.path().join("gone.py")).unwrap();
    let out = p.run(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("broken symlink") && err.contains("gone.py"),
        "{err}"
    );
}

#[test]
fn an_unreadable_file_and_an_unreadable_directory_are_the_same_error() {
    let p = TestProject::hello();
    p.write("secret.py", "x = 1\n");
    std::fs::set_permissions(p.path().join("secret.py"), PermissionsExt::from_mode(0o000)).unwrap();
    let file = run_unprivileged(&p);
    let file_err = String::from_utf8_lossy(&file.stderr);
    assert_eq!(file.status.code(), Some(2), "{file_err}");
    assert!(
        file_err.contains("cannot read") && file_err.contains("secret.py"),
        "{file_err}"
    );

    std::fs::set_permissions(p.path().join("secret.py"), PermissionsExt::from_mode(0o644)).unwrap();
    std::fs::create_dir(p.path().join("private")).unwrap();
    std::fs::set_permissions(p.path().join("private"), PermissionsExt::from_mode(0o000)).unwrap();
    let dir = run_unprivileged(&p);
    let dir_err = String::from_utf8_lossy(&dir.stderr);
    assert_eq!(dir.status.code(), Some(2), "{dir_err}");
    assert!(
        dir_err.contains("cannot read") && dir_err.contains("private"),
        "{dir_err}"
    );
    assert!(file_err.contains("hint:") && dir_err.contains("hint:"));
    std::fs::set_permissions(p.path().join("private"), PermissionsExt::from_mode(0o755)).unwrap();
}

#[test]
fn output_path_that_is_a_directory_points_at_the_key() {
    let p = TestProject::hello();
    p.write(
        "lambda.toml",
        &format!("output = {{ level = 6, path = \"out/build\" }}\n{HELLO_MANIFEST}"),
    );
    std::fs::create_dir_all(p.path().join("out/build")).unwrap();
    let err = p.fail(&[]);
    assert!(
        err.contains("lambda.toml:1:30: error: output path") && err.contains("is a directory"),
        "{err}"
    );
}

#[test]
fn manifest_errors_in_inline_tables_point_at_the_value() {
    let p = TestProject::hello();
    p.write(
        "lambda.toml",
        "function = { name = \"hello\", handler = \"app.handler\" }\n\
         output.level = 42\n",
    );
    let err = p.fail(&[]);
    assert!(
        err.contains("lambda.toml:2:16: error: compression level 42"),
        "{err}"
    );
}
