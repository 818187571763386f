//! lbuild never destroys what it does not own: the output is none of the
//! build's inputs, and the sources never leave the project unless the
//! manifest says so.

use std::os::unix::fs::{FileTypeExt, symlink};

use crate::common::*;

/// Expects the build to fail with exit code 2, a hint, and all of `expect`
/// in stderr; returns stderr.
fn fails_with(p: &TestProject, expect: &[&str]) -> String {
    let out = p.run(&[]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(2),
        "input errors exit with 2:\n{err}"
    );
    for e in expect {
        assert!(err.contains(e), "stderr lacks {e:?}:\n{err}");
    }
    assert!(err.contains("hint:"), "no hint:\n{err}");
    err
}

fn with_output(path: &str) -> String {
    format!("{HELLO_MANIFEST}\n[output]\npath = \"{path}\"\n")
}

#[test]
fn output_cannot_be_a_config_input() {
    let p = TestProject::hello();
    p.write("lambda.toml", &with_output("config/settings.json"));
    fails_with(
        &p,
        &[
            "lambda.toml:10:8:",
            "config/settings.json",
            "config input",
            "config/*.json",
        ],
    );
    assert_eq!(
        std::fs::read_to_string(p.path().join("config/settings.json")).unwrap(),
        "{\"a\": 1}\n"
    );
}

#[test]
fn output_cannot_be_the_manifest() {
    let p = TestProject::empty();
    let manifest = "[function]\nname = \"h\"\nhandler = \"app.handler\"\n\n\
                    [sources]\nroot = \"src\"\n\n[output]\npath = \"lambda.toml\"\n";
    p.write("lambda.toml", manifest);
    p.write("src/app.py", "def handler(event, context):\n    return 1\n");
    let err = fails_with(&p, &["lambda.toml:9:8:", "is the manifest"]);
    assert_eq!(err.matches("lambda.toml").count(), 3, "{err}");
    assert_eq!(
        std::fs::read_to_string(p.path().join("lambda.toml")).unwrap(),
        manifest
    );
}

#[test]
fn output_cannot_be_the_requirements_file() {
    let p = TestProject::hello();
    p.write("deps/requirements.txt", "# none\n");
    p.write(
        "lambda.toml",
        &format!(
            "{HELLO_MANIFEST}\n[dependencies]\nrequirements = \"deps/requirements.txt\"\n\n\
             [output]\npath = \"deps/requirements.txt\"\n"
        ),
    );
    fails_with(
        &p,
        &[
            "lambda.toml:13:8:",
            "deps/requirements.txt",
            "is the requirements file",
        ],
    );
    assert_eq!(
        std::fs::read_to_string(p.path().join("deps/requirements.txt")).unwrap(),
        "# none\n"
    );
}

#[test]
fn output_inside_a_sources_subdirectory_is_an_error_not_a_missing_package() {
    // Regression: the output directory src/lib was left out of the walk,
    // and with it the whole lib package.
    let p = TestProject::empty();
    p.write(
        "lambda.toml",
        "[function]\nname = \"h\"\nhandler = \"app.handler\"\n\n\
         [sources]\nroot = \"src\"\n\n[output]\npath = \"src/lib/o.zip\"\n",
    );
    p.write(
        "src/app.py",
        "from lib import util\n\ndef handler(event, context):\n    return 1\n",
    );
    p.write("src/lib/util.py", "x = 1\n");
    fails_with(
        &p,
        &[
            "lambda.toml:9:8:",
            "src/lib/util.py",
            "o.zip",
            "output directory",
        ],
    );
    assert!(!p.path().join("src/lib/o.zip").exists());
}

#[test]
fn output_selected_by_the_sources_globs_is_an_error_until_excluded() {
    let p = TestProject::hello();
    p.write(
        "lambda.toml",
        &HELLO_MANIFEST.replace("[config]", "[sources]\ninclude = [\"**/*\"]\n\n[config]"),
    );
    fails_with(&p, &["dist/hello.zip", "one of the sources", "dist/**"]);
    p.write(
        "lambda.toml",
        &HELLO_MANIFEST.replace(
            "[config]",
            "[sources]\ninclude = [\"*.py\", \"dist/*\"]\nexclude = [\"dist/**\"]\n\n[config]",
        ),
    );
    p.build_json();
    assert_eq!(
        entry_names(&p.zip_path("hello")),
        ["app.py", "config/settings.json", "util.py"]
    );
}

#[test]
fn output_cannot_replace_a_fifo() {
    let p = TestProject::hello();
    std::fs::create_dir(p.path().join("dist")).unwrap();
    let fifo = p.zip_path("hello");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    fails_with(&p, &["hello.zip", "is a fifo", "not a regular file"]);
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo()
    );
}

#[test]
fn sources_root_cannot_leave_the_project() {
    // Regression: `root = "../home"` with `include = ["**/*"]` packaged
    // the credentials beside the project.
    let t = TestProject::empty();
    t.write("home/.aws/credentials", "secret\n");
    t.write(
        "home/app.py",
        "def handler(event, context):\n    return 1\n",
    );
    t.write(
        "project/lambda.toml",
        "[function]\nname = \"h\"\nhandler = \"app.handler\"\n\n\
         [sources]\nroot = \"../home\"\ninclude = [\"**/*\"]\n",
    );
    let out = t
        .cmd()
        .current_dir(t.path().join("project"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for e in [
        "lambda.toml:6:8:",
        "\"../home\"",
        "outside the project",
        "allow_outside_project",
    ] {
        assert!(err.contains(e), "stderr lacks {e:?}:\n{err}");
    }
    assert!(!t.path().join("project/dist").exists());
}

#[test]
fn a_symlinked_root_leading_out_of_the_project_needs_the_opt_in() {
    let home = tempfile::tempdir().unwrap();
    std::fs::write(
        home.path().join("app.py"),
        "def handler(event, context):\n    return 1\n",
    )
    .unwrap();
    let p = TestProject::empty();
    symlink(home.path(), p.path().join("src")).unwrap();
    let manifest =
        "[function]\nname = \"h\"\nhandler = \"app.handler\"\n\n[sources]\nroot = \"src\"\n";
    p.write("lambda.toml", manifest);
    fails_with(&p, &["lambda.toml:6:8:", "\"src\"", "outside the project"]);
    assert!(!p.path().join("dist").exists());

    p.write(
        "lambda.toml",
        &format!("{manifest}allow_outside_project = true\n"),
    );
    p.build_json();
    assert_eq!(entry_names(&p.path().join("dist/h.zip")), ["app.py"]);
}

#[test]
fn a_config_directory_leading_out_of_the_project_is_an_error() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("settings.json"), "{}").unwrap();
    let p = TestProject::hello();
    std::fs::remove_dir_all(p.path().join("config")).unwrap();
    symlink(outside.path(), p.path().join("config")).unwrap();
    fails_with(
        &p,
        &["lambda.toml:7:10:", "config/*.json", "outside the project"],
    );
}

#[test]
fn a_relative_cache_dir_resolves_against_the_project() {
    let p = TestProject::hello();
    p.write("sub/notes.txt", "x\n");
    let out = p
        .cmd()
        .current_dir(p.path().join("sub"))
        .env("LBUILD_CACHE_DIR", "cache")
        .output()
        .unwrap();
    assert_success(&out);
    assert!(p.path().join("cache/cache.sqlite").is_file());
    assert!(!p.path().join("sub/cache").exists());
    assert!(!p.path().join(".lbuild").exists());
}

#[test]
fn a_workspace_output_cannot_be_another_artifacts_input() {
    // Regression: function a's output was checked against a's own inputs
    // only, so `output = { path = "src/b/app.py" }` replaced function b's
    // handler with a's zip (and b then failed for a missing module).
    let p = TestProject::empty();
    let handler = "def handler(event, context):\n    return 1\n";
    p.write("src/a/app.py", handler);
    p.write("src/b/app.py", handler);
    p.write("config/b.json", "{}\n");
    p.write("b-requirements.txt", "# none\n");
    let manifest = |output: &str| {
        format!(
            "[defaults]\nruntime = \"python3.12\"\nsources = {{ root = \"src\" }}\n\n\
             [functions.a]\nhandler = \"a.app.handler\"\n\
             sources = {{ include = [\"a/**/*.py\"] }}\n\
             output = {{ path = \"{output}\" }}\n\n\
             [functions.b]\nhandler = \"b.app.handler\"\n\
             sources = {{ include = [\"b/**/*.py\"] }}\n\
             config = {{ files = [\"config/*.json\"] }}\n\
             dependencies = {{ requirements = \"b-requirements.txt\" }}\n"
        )
    };
    // (An existing file that is not a zip is refused before, whoever's
    // input it is: the new sources file here is only b's input.)
    for (output, what) in [
        ("src/b/new.py", "one of the sources"),
        ("src/b/app.py", "not a zip"),
        ("config/b.json", "not a zip"),
        ("b-requirements.txt", "not a zip"),
    ] {
        let before = std::fs::read(p.path().join(output)).ok();
        p.write("lambda.toml", &manifest(output));
        fails_with(&p, &["lambda.toml:8:19:", output, what]);
        assert_eq!(
            std::fs::read(p.path().join(output)).ok(),
            before,
            "{output} was written"
        );
    }
    p.write("lambda.toml", &manifest("src/b/new.py"));
    fails_with(&p, &["(an input of function \"b\")"]);
}

#[test]
fn a_workspace_output_cannot_be_another_artifacts_requirements_through_a_symlink() {
    // The workspace check resolves each output and requirements file once
    // (not once a pair): through a symlinked directory, a's zip is still
    // seen to be b's requirements file.
    let p = TestProject::empty();
    let handler = "def handler(event, context):\n    return 1\n";
    p.write("src/a/app.py", handler);
    p.write("src/b/app.py", handler);
    p.write("deps/b.zip", "# none\n");
    symlink("deps", p.path().join("alias")).unwrap();
    p.write(
        "lambda.toml",
        "[defaults]\nruntime = \"python3.12\"\nsources = { root = \"src\" }\n\n\
         [functions.a]\nhandler = \"a.app.handler\"\n\
         sources = { include = [\"a/**/*.py\"] }\n\
         output = { path = \"alias/b.zip\" }\n\n\
         [functions.b]\nhandler = \"b.app.handler\"\n\
         sources = { include = [\"b/**/*.py\"] }\n\
         dependencies = { requirements = \"deps/b.zip\" }\n",
    );
    fails_with(
        &p,
        &[
            "alias/b.zip is the requirements file",
            "deps/b.zip",
            "(an input of function \"b\")",
        ],
    );
    assert_eq!(
        std::fs::read(p.path().join("deps/b.zip")).unwrap(),
        b"# none\n"
    );
}

#[test]
fn two_artifacts_cannot_write_one_zip_through_a_symlinked_directory() {
    // Regression: outputs were compared as written, so `out/a.zip` with
    // `out -> dist` passed as another file than `dist/a.zip`: function b's
    // zip replaced function a's, and a's CodeSha256 was printed for b's
    // bytes.
    let p = TestProject::empty();
    let handler = "def handler(event, context):\n    return 1\n";
    p.write("src/a/app.py", handler);
    p.write("src/b/app.py", handler);
    std::fs::create_dir(p.path().join("dist")).unwrap();
    symlink("dist", p.path().join("out")).unwrap();
    p.write(
        "lambda.toml",
        "[defaults]\nruntime = \"python3.12\"\nsources = { root = \"src\" }\n\n\
         [functions.a]\nhandler = \"a.app.handler\"\n\
         sources = { include = [\"a/**/*.py\"] }\n\n\
         [functions.b]\nhandler = \"b.app.handler\"\n\
         sources = { include = [\"b/**/*.py\"] }\n\
         output = { path = \"out/a.zip\" }\n",
    );
    fails_with(
        &p,
        &[
            "lambda.toml:12:19:",
            "function \"a\" and function \"b\" both write",
            "out/a.zip",
            "the same file as",
            "dist/a.zip",
        ],
    );
    assert_eq!(std::fs::read_dir(p.path().join("dist")).unwrap().count(), 0);
}

#[test]
fn output_cannot_overwrite_an_existing_file_that_is_not_a_zip() {
    // Regression: `path = "docs/DESIGN.md"` (no input, so no other check
    // caught it) replaced the document with the zip, and `lbuild clean`
    // then deleted it.
    let p = TestProject::hello();
    p.write("docs/DESIGN.md", "# Design\n");
    p.write("lambda.toml", &with_output("docs/DESIGN.md"));
    fails_with(
        &p,
        &[
            "lambda.toml:10:8:",
            "docs/DESIGN.md",
            "exists and is not a zip",
        ],
    );
    assert!(!p.run(&["clean"]).status.success());
    assert_eq!(
        std::fs::read_to_string(p.path().join("docs/DESIGN.md")).unwrap(),
        "# Design\n"
    );
    // A zip there (the last build's) is replaced as usual, whatever its name.
    p.write("lambda.toml", &with_output("docs/hello.bin"));
    p.build_json();
    p.write("app.py", "def handler(event, context):\n    return 2\n");
    p.build_json();
    unzip_test(&p.path().join("docs/hello.bin"));
}
