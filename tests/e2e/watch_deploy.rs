//! `lbuild watch --deploy` against moto (see `moto.rs`): after each
//! rebuild, the artifacts whose zip changed are deployed, one deploy at a
//! time, each reported on its own `--json` line (`{"time", "deploy": {...}}`)
//! after the build's line. moto's request recording tells which calls were
//! made. Every wait is for the next line (see `watch.rs`); deploys run on a
//! thread of their own, one at a time, and a deploy's line is printed after
//! its calls, so once it is read its calls are all recorded.

use serde_json::Value;

use crate::common::TestProject;
use crate::moto::{Moto, REGION, no_aws_env, silent_endpoint};
use crate::watch::{Watch, changed};

const WORKSPACE: &str = r#"
[defaults]
runtime = "python3.11"
sources = { root = "src" }

[functions.orders]
handler = "orders.handler"
sources = { include = ["orders.py"] }

[functions.billing]
handler = "billing.handler"
sources = { include = ["billing.py"] }
"#;

fn watch_deploy(p: &TestProject, moto: &Moto, extra: &[&str]) -> Watch {
    let mut cmd = p.cmd();
    moto.aws_env(&mut cmd)
        .args(["watch", "--deploy", "--json"])
        .args(extra);
    Watch::spawn(cmd)
}

/// The next line, which must be a deploy line; its `deploy` object.
fn deploy_line(w: &Watch, what: &str) -> Value {
    let v = w.next(what);
    assert!(
        v.get("deploy").is_some(),
        "{what}: expected a deploy line, got {v}\nstderr:\n{}",
        w.stderr()
    );
    v["deploy"].clone()
}

/// The next line, which must be a build line (not a deploy's).
fn build_line(w: &Watch, what: &str) -> Value {
    let v = w.build(what);
    assert!(
        v.get("sha256").is_some(),
        "{what}: expected a build, got {v}"
    );
    v
}

/// Paths of every request (reads too) that named `function`.
fn calls_about(moto: &Moto, function: &str) -> Vec<String> {
    moto.requests()
        .iter()
        .filter(|r| r.path.contains(&format!("/functions/{function}/")))
        .map(|r| r.to_string())
        .collect()
}

fn writes(moto: &Moto) -> Vec<String> {
    moto.writes().iter().map(|r| r.to_string()).collect()
}

fn code_sha256(bytes: &[u8]) -> String {
    use base64::Engine;
    use sha2::Digest;
    base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(bytes))
}

#[test]
fn watch_deploy_updates_exactly_the_edited_function_once() {
    let moto = Moto::start();
    moto.create_function("orders", "python3.11", "x86_64");
    moto.create_function("billing", "python3.11", "x86_64");
    let p = TestProject::empty();
    p.write("lambda.toml", WORKSPACE);
    p.write("src/orders.py", "def handler(e, c):\n    return 1\n");
    p.write("src/billing.py", "def handler(e, c):\n    return 2\n");
    let w = watch_deploy(&p, &moto, &[]);

    // The initial build: a line per artifact, then both functions
    // deployed (they hold moto's placeholder code).
    for what in [
        "the initial build of billing",
        "the initial build of orders",
    ] {
        build_line(&w, what);
    }
    let mut initial: Vec<(String, String)> = (0..2)
        .map(|_| {
            let d = deploy_line(&w, "the initial deploy");
            (
                d["name"].as_str().unwrap().to_string(),
                d["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    initial.sort();
    assert_eq!(
        initial,
        [
            ("billing".to_string(), "updated".to_string()),
            ("orders".to_string(), "updated".to_string())
        ]
    );
    let billing_code = moto.function("billing")["CodeSha256"].clone();

    // One edit of orders' handler: one build line, one deploy, one write.
    moto.reset_recording();
    p.write("src/orders.py", "def handler(e, c):\n    return 10\n");
    let v = build_line(&w, "the edit of orders");
    assert_eq!(v["name"], "orders", "{v}");
    assert_eq!(changed(&v), ["src/orders.py"]);
    let d = deploy_line(&w, "the deploy of the edit");
    assert_eq!(d["kind"], "function", "{d}");
    assert_eq!(d["name"], "orders", "{d}");
    assert_eq!(d["status"], "updated", "{d}");
    let local = code_sha256(&p.zip_bytes("orders"));
    assert_eq!(d["new_code_sha256"], local.as_str(), "{d}");
    assert_eq!(
        writes(&moto),
        ["PUT /2015-03-31/functions/orders/code"],
        "exactly one update, of orders"
    );
    assert_eq!(calls_about(&moto, "billing"), Vec::<String>::new());
    assert_eq!(moto.function("orders")["CodeSha256"], local.as_str());
    assert_eq!(moto.function("billing")["CodeSha256"], billing_code);

    // Saving orders.py unchanged changes nothing in the zip: no line, no
    // call. The edit of billing after it is the probe: its build and its
    // deploy come next, and the only write is billing's.
    moto.reset_recording();
    p.write("src/orders.py", "def handler(e, c):\n    return 10\n");
    p.write("src/billing.py", "def handler(e, c):\n    return 20\n");
    let v = build_line(&w, "the probe edit of billing");
    assert_eq!(v["name"], "billing", "{v}");
    let d = deploy_line(&w, "the deploy of the probe");
    assert_eq!(d["name"], "billing", "{d}");
    assert_eq!(d["status"], "updated", "{d}");
    assert_eq!(
        writes(&moto),
        ["PUT /2015-03-31/functions/billing/code"],
        "no write for the unchanged save of orders"
    );
    assert_eq!(calls_about(&moto, "orders"), Vec::<String>::new());
    assert_eq!(moto.function("orders")["CodeSha256"], local.as_str());
}

#[test]
fn watch_deploy_failure_is_reported_and_the_next_save_deploys() {
    let moto = Moto::start();
    let p = TestProject::empty();
    p.write(
        "lambda.toml",
        "[function]\nname = \"hello\"\nhandler = \"app.handler\"\nruntime = \"python3.11\"\n",
    );
    p.write("app.py", "def handler(event, context):\n    return 'v1'\n");
    // --name-suffix reaches the deploy: the function is hello-dev.
    let mut w = watch_deploy(&p, &moto, &["--name-suffix", "-dev"]);
    build_line(&w, "the initial build");
    // The function does not exist yet: the deploy fails, the watch goes on.
    let d = deploy_line(&w, "the failed initial deploy");
    assert_eq!(d["status"], "failed", "{d}");
    assert_eq!(d["functions"], serde_json::json!(["hello-dev"]), "{d}");
    let error = d["error"].as_str().unwrap();
    assert!(
        error.contains("the Lambda function hello-dev does not exist"),
        "{d}"
    );
    assert!(
        d["hint"]
            .as_str()
            .unwrap()
            .contains("aws lambda create-function"),
        "{d}"
    );

    // Created (as Terraform would); the next save deploys.
    moto.create_function("hello-dev", "python3.11", "x86_64");
    moto.reset_recording();
    p.write("app.py", "def handler(event, context):\n    return 'v2'\n");
    build_line(&w, "the edit");
    let d = deploy_line(&w, "the deploy after the edit");
    assert_eq!(d["aws_name"], "hello-dev", "{d}");
    assert_eq!(d["status"], "updated", "{d}");
    assert_eq!(writes(&moto), ["PUT /2015-03-31/functions/hello-dev/code"]);
    assert_eq!(
        moto.function("hello-dev")["CodeSha256"],
        code_sha256(&p.zip_bytes("hello")).as_str()
    );
    let stderr = w.finish();
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn watch_deploy_a_missing_function_does_not_hold_back_the_others() {
    // Regression: the deploy after a rebuild was one all-or-nothing batch,
    // so billing (not created yet) kept orders from ever being deployed.
    let moto = Moto::start();
    moto.create_function("orders", "python3.11", "x86_64");
    let p = TestProject::empty();
    p.write("lambda.toml", WORKSPACE);
    p.write("src/orders.py", "def handler(e, c):\n    return 1\n");
    p.write("src/billing.py", "def handler(e, c):\n    return 2\n");
    let mut w = watch_deploy(&p, &moto, &[]);
    for what in [
        "the initial build of billing",
        "the initial build of orders",
    ] {
        build_line(&w, what);
    }
    let mut initial: Vec<(String, String)> = (0..2)
        .map(|_| {
            let d = deploy_line(&w, "the initial deploy");
            let name = match d["name"].as_str() {
                Some(n) => n.to_string(),
                None => d["functions"][0].as_str().unwrap().to_string(),
            };
            (name, d["status"].as_str().unwrap().to_string())
        })
        .collect();
    initial.sort();
    assert_eq!(
        initial,
        [
            ("billing".to_string(), "failed".to_string()),
            ("orders".to_string(), "updated".to_string())
        ]
    );
    assert_eq!(
        moto.function("orders")["CodeSha256"],
        code_sha256(&p.zip_bytes("orders")).as_str()
    );

    // An edit of orders deploys it; billing, still missing, is tried
    // again (a save is also how one retries) and fails again, alone.
    moto.reset_recording();
    p.write("src/orders.py", "def handler(e, c):\n    return 10\n");
    build_line(&w, "the edit of orders");
    let mut after = (0..2)
        .map(|_| deploy_line(&w, "the deploy of the edit"))
        .collect::<Vec<_>>();
    after.sort_by_key(|d| d["status"].as_str().unwrap().to_string());
    assert_eq!(after[0]["status"], "failed", "{after:?}");
    assert_eq!(after[0]["functions"], serde_json::json!(["billing"]));
    assert_eq!(after[1]["name"], "orders", "{after:?}");
    assert_eq!(after[1]["status"], "updated", "{after:?}");
    assert_eq!(writes(&moto), ["PUT /2015-03-31/functions/orders/code"]);
    assert_eq!(
        moto.function("orders")["CodeSha256"],
        code_sha256(&p.zip_bytes("orders")).as_str()
    );
    let stderr = w.finish();
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn watch_deploy_keeps_building_while_a_deploy_hangs_and_stops_on_sigterm() {
    let p = TestProject::empty();
    p.write(
        "lambda.toml",
        "[function]\nname = \"hello\"\nhandler = \"app.handler\"\nruntime = \"python3.11\"\n",
    );
    p.write("app.py", "def handler(event, context):\n    return 1\n");
    let mut cmd = p.cmd();
    no_aws_env(&mut cmd, p.path())
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", REGION)
        // An endpoint that accepts and never answers, with a bound far
        // longer than the test: the deploy hangs for all of it.
        .env("AWS_ENDPOINT_URL", silent_endpoint())
        .env("LBUILD_AWS_TIMEOUT", "600")
        .args(["watch", "--deploy", "--json"]);
    let mut w = Watch::spawn(cmd);
    build_line(&w, "the first build");
    // Its deploy is waiting on the silent endpoint; saves still build.
    p.write("app.py", "def handler(event, context):\n    return 2\n");
    let v = build_line(&w, "a save while the deploy hangs");
    assert_eq!(changed(&v), ["app.py"], "{v}");
    p.write("app.py", "def handler(event, context):\n    return 3\n");
    let v = build_line(&w, "a second save while the deploy hangs");
    assert_eq!(changed(&v), ["app.py"], "{v}");

    let started = std::time::Instant::now();
    let stderr = w.finish();
    let took = started.elapsed();
    assert!(
        took < std::time::Duration::from_secs(5),
        "took {took:?}: {stderr}"
    );
    assert!(
        stderr.contains("stopped with a deploy in progress: it was abandoned"),
        "{stderr}"
    );
}
