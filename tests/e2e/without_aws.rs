//! An lbuild built without the `aws` feature (`cargo test
//! --no-default-features`): it packages as always, and deploying or a
//! remote cache — from the command line, the environment or lambda.toml —
//! is refused with exit 2 before anything is built, with a message saying
//! this build lacks AWS support and a hint how to get a full build. The
//! last good zip is left alone.

use crate::common::TestProject;

/// Runs `args` expecting the "built without AWS" refusal; returns stderr.
fn refused(p: &TestProject, args: &[&str], env: &[(&str, &str)]) -> String {
    let mut cmd = p.cmd();
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(
        stderr.contains("needs AWS support, and this lbuild was built without it"),
        "{args:?}: {stderr}"
    );
    assert!(
        stderr.contains("hint: use a full build: `cargo install --locked --path .`"),
        "{args:?}: {stderr}"
    );
    stderr
}

#[test]
fn deploy_and_watch_deploy_say_this_build_lacks_them_before_building() {
    let p = TestProject::hello();
    let stderr = refused(&p, &["deploy"], &[]);
    assert!(
        stderr.contains("`lbuild deploy` needs AWS support"),
        "{stderr}"
    );
    let stderr = refused(&p, &["deploy", "--plan", "--name-suffix", "-dev"], &[]);
    assert!(stderr.contains("`lbuild deploy`"), "{stderr}");
    // Refused before the watch starts (it would otherwise run until killed).
    let stderr = refused(&p, &["watch", "--deploy"], &[]);
    assert!(stderr.contains("`lbuild watch --deploy`"), "{stderr}");
    assert!(stderr.contains("or watch without --deploy"), "{stderr}");
    let stderr = refused(&p, &["verify", "--deployed"], &[]);
    assert!(
        stderr.contains("`lbuild verify --deployed` needs AWS support"),
        "{stderr}"
    );
    assert!(!p.zip_path("hello").exists(), "nothing was built");

    // --json: the refusal in the usual error shape on stdout.
    let out = p.run(&["deploy", "--json"]);
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["exit_code"], 2);
    assert!(
        v["error"].as_str().unwrap().contains("built without it"),
        "{v}"
    );
    assert!(v["hint"].as_str().unwrap().contains("cargo install"), "{v}");
}

#[test]
fn a_build_packages_and_invokes_without_aws() {
    let p = TestProject::hello();
    let json = p.build_json();
    assert_eq!(json["name"], "hello", "{json}");
    crate::common::unzip_test(&p.zip_path("hello"));
    // explain and size run too (they build).
    assert!(p.run(&["explain"]).status.success());
    assert!(p.run(&["size"]).status.success());
}

#[test]
fn a_remote_cache_from_the_flag_the_environment_or_the_manifest_is_refused_and_the_zip_kept() {
    let p = TestProject::hello();
    p.build_json();
    let good = p.zip_bytes("hello");
    // A change the refused builds must not package.
    p.write("util.py", "def greet():\n    return 'edited'\n");
    let stderr = refused(&p, &["--remote-cache", "s3://b/team"], &[]);
    assert!(
        stderr.contains("the remote cache s3://b/team needs AWS support"),
        "{stderr}"
    );
    assert!(stderr.contains("drop --remote-cache"), "{stderr}");
    refused(&p, &[], &[("LBUILD_REMOTE_CACHE", "s3://b/env")]);
    let manifest = std::fs::read_to_string(p.path().join("lambda.toml")).unwrap();
    p.write(
        "lambda.toml",
        &format!("[cache]\nremote = \"s3://b/toml\"\n\n{manifest}"),
    );
    let stderr = refused(&p, &["build"], &[]);
    assert!(stderr.contains("the remote cache s3://b/toml"), "{stderr}");
    assert_eq!(p.zip_bytes("hello"), good, "the last good zip is untouched");
}
