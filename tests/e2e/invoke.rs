//! `lbuild invoke`: the built zip's handler run by the runtime's local
//! Python (python3.11 here), the result on stdout.

use std::io::Write;
use std::process::{Output, Stdio};

use crate::common::{TestProject, assert_success};

const MANIFEST: &str = r#"[function]
name = "hello"
handler = "app.handler"
runtime = "python3.11"
"#;

fn project(app: &str) -> TestProject {
    let p = TestProject::empty();
    p.write("lambda.toml", MANIFEST);
    p.write("app.py", app);
    p
}

fn invoke(p: &TestProject, args: &[&str]) -> Output {
    p.run(&[&["invoke"], args].concat())
}

#[test]
fn invoke_prints_the_handler_result_as_json() {
    let p = project(
        r#"import os
from util import greet

def handler(event, context):
    print("a log line")
    return {
        "greeting": greet(event["who"]),
        "function": context.function_name,
        "memory": context.memory_limit_in_mb,
        "time_left": context.get_remaining_time_in_millis() > 0,
        "env": os.environ.get("STAGE"),
        "task_root": os.environ["LAMBDA_TASK_ROOT"] == os.getcwd(),
    }
"#,
    );
    p.write("util.py", "def greet(who):\n    return 'hi ' + who\n");
    p.write("event.json", r#"{"who": "ann"}"#);
    let out = invoke(
        &p,
        &[
            "--event",
            "event.json",
            "--env",
            "STAGE=dev",
            "--memory",
            "256",
        ],
    );
    assert_success(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    // stdout is the result alone; the handler's prints go to stderr.
    let v: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("stdout is not one JSON value ({e}): {stdout}"));
    assert_eq!(
        v,
        serde_json::json!({
            "greeting": "hi ann", "function": "hello", "memory": "256",
            "time_left": true, "env": "dev", "task_root": true,
        })
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("a log line"));
}

#[test]
fn invoke_reads_the_event_from_stdin() {
    let p = project("def handler(event, context):\n    return event['id'] * 2\n");
    let mut child = p
        .cmd()
        .args(["invoke", "--event", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"id": 21}"#)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_success(&out);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42");

    // Not JSON: refused before the build.
    let mut child = p
        .cmd()
        .args(["invoke", "--event", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"{oops").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not valid JSON"));
}

#[test]
fn invoke_exception_exits_nonzero_with_the_traceback() {
    let p = project("def handler(event, context):\n    raise ValueError('no such order')\n");
    let out = invoke(&p, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "no result on stdout");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Traceback (most recent call last)"),
        "{stderr}"
    );
    assert!(stderr.contains("ValueError: no such order"), "{stderr}");
    assert!(
        stderr.contains("the handler app.handler failed"),
        "{stderr}"
    );
}

#[test]
fn invoke_missing_dependency_shows_the_import_error() {
    let p = project("import not_in_the_zip\n\ndef handler(event, context):\n    return 1\n");
    let out = invoke(&p, &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Unable to import module 'app': No module named 'not_in_the_zip'"),
        "{stderr}"
    );
    assert!(stderr.contains("could not be imported"), "{stderr}");
    assert!(stderr.contains("requirements.txt"), "{stderr}");
}

/// A module installed on this machine (moto, which the deploy tests need)
/// but not in the zip must not import: Lambda would not have it.
#[test]
fn invoke_does_not_see_the_machines_site_packages() {
    let p = project("import moto\n\ndef handler(event, context):\n    return 1\n");
    let out = invoke(&p, &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("No module named 'moto'"), "{stderr}");
}

/// Lambda's runtime provides boto3 (after the code and layers on
/// sys.path): a handler importing it without vendoring it runs, with this
/// machine's boto3 (moto's dependency, installed for the deploy tests),
/// and nothing else of the machine's comes along (see above).
#[test]
fn invoke_provides_the_runtimes_boto3_after_the_zip() {
    let p = project(
        "import boto3, botocore\n\ndef handler(event, context):\n    return [boto3.__name__, botocore.__name__]\n",
    );
    let out = invoke(&p, &[]);
    assert_success(&out);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        r#"["boto3", "botocore"]"#
    );
    // The zip's own copy wins, as on Lambda.
    p.write("boto3/__init__.py", "VENDORED = True\n");
    p.write(
        "app.py",
        "import boto3\n\ndef handler(event, context):\n    return boto3.VENDORED\n",
    );
    let out = invoke(&p, &[]);
    assert_success(&out);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "true");
}

#[test]
fn invoke_stops_the_handler_at_the_timeout() {
    let p = project("import time\n\ndef handler(event, context):\n    time.sleep(60)\n");
    let out = invoke(&p, &["--timeout", "1"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Task timed out after 1.00 seconds"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}
