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

/// A handler that starts three sleeping processes: a `subprocess.Popen`
/// child, one in a session of its own (outside the handler's process
/// group), and an `os.fork()` child; it writes their pids to
/// `event["pids"]` (checking they are alive), then returns or sleeps past
/// the timeout.
const SPAWNER: &str = r#"import json, os, subprocess, time

def handler(event, context):
    quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pids = {
        "popen": subprocess.Popen(["sleep", "300"], **quiet).pid,
        "new session": subprocess.Popen(["sleep", "300"], start_new_session=True, **quiet).pid,
    }
    child = os.fork()
    if child == 0:
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 1)
        os.dup2(null, 2)
        time.sleep(300)
        os._exit(0)
    pids["fork"] = child
    for pid in pids.values():
        os.kill(pid, 0)
    with open(event["pids"], "w") as f:
        json.dump(pids, f)
    if event["wait"]:
        time.sleep(60)
    return pids
"#;

fn spawner_event(p: &TestProject, wait: bool) -> std::path::PathBuf {
    let pids = p.path().join("pids.json");
    let _ = std::fs::remove_file(&pids);
    let event = serde_json::json!({"pids": pids, "wait": wait});
    p.write("event.json", &event.to_string());
    pids
}

/// Reads the pids the handler wrote and asserts each process is gone (not
/// even a zombie: lbuild reaps what it kills). Survivors are killed before
/// the assertion fails, so a failure leaves nothing behind either.
fn assert_all_gone(pids_file: &std::path::Path) {
    let text = std::fs::read_to_string(pids_file)
        .unwrap_or_else(|e| panic!("the handler wrote no pids ({e})"));
    let pids: std::collections::BTreeMap<String, u32> = serde_json::from_str(&text).unwrap();
    assert_eq!(pids.len(), 3, "{text}");
    let survivors: Vec<String> = pids
        .iter()
        .filter_map(|(what, pid)| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            Some(format!("{what} ({pid}): {}", stat.trim()))
        })
        .collect();
    for pid in pids.values() {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .stderr(Stdio::null())
            .status();
    }
    assert!(
        survivors.is_empty(),
        "processes of the handler outlived the invocation: {survivors:?}"
    );
}

#[test]
fn invoke_leaves_no_process_of_the_handler_behind() {
    let p = project(SPAWNER);
    // Returning normally.
    let pids = spawner_event(&p, false);
    let started = std::time::Instant::now();
    let out = invoke(&p, &["--event", "event.json", "--timeout", "30"]);
    assert_success(&out);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(25),
        "invoke waited for the handler's children"
    );
    assert_all_gone(&pids);

    // Stopped at the timeout.
    let pids = spawner_event(&p, true);
    let out = invoke(&p, &["--event", "event.json", "--timeout", "2"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Task timed out after 2.00 seconds"),
        "{stderr}"
    );
    assert_all_gone(&pids);
}

/// Ctrl-C reaches lbuild only (the handler has its own process group):
/// lbuild stops the handler and all it started, then fails.
#[test]
fn invoke_interrupted_stops_the_handlers_processes() {
    let p = project(SPAWNER);
    let pids = spawner_event(&p, true);
    let child = p
        .cmd()
        .args(["invoke", "--event", "event.json", "--timeout", "60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !pids.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the handler never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let sent = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("interrupted by SIGINT"), "{stderr}");
    assert!(out.stdout.is_empty());
    assert_all_gone(&pids);
}

/// 1 MB would not fit in one argument (Linux caps one at 128 KiB): the
/// event travels on stdin, and no command line shows it.
#[test]
fn invoke_takes_a_large_event_and_keeps_it_off_the_command_line() {
    let p = project(
        r#"def handler(event, context):
    with open("/proc/self/cmdline", "rb") as f:
        cmdline = f.read()
    return {"length": len(event["data"]), "in_cmdline": b"xxxxxxxx" in cmdline}
"#,
    );
    let event = serde_json::json!({"data": "x".repeat(1_000_000)});
    p.write("event.json", &event.to_string());
    let out = invoke(&p, &["--event", "event.json"]);
    assert_success(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"length": 1_000_000, "in_cmdline": false})
    );

    // Over Lambda's 6 MB: bad input, refused before the build.
    let event = serde_json::json!({"data": "x".repeat(6 * 1024 * 1024)});
    p.write("big.json", &event.to_string());
    let _ = std::fs::remove_dir_all(p.path().join("dist"));
    let out = invoke(&p, &["--event", "big.json"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the event big.json is larger than 6291456 bytes"),
        "{stderr}"
    );
    assert!(!p.zip_path("hello").exists(), "built despite the bad event");
}

#[test]
fn invoke_leaving_the_interpreter_is_an_error_naming_the_status() {
    for (code, expected) in [
        ("sys.exit(0)", "exit status 0"),
        ("os._exit(3)", "exit status 3"),
        ("os.kill(os.getpid(), signal.SIGKILL)", "signal 9 (SIGKILL)"),
    ] {
        let p = project(&format!(
            "import os, signal, sys\n\ndef handler(event, context):\n    {code}\n"
        ));
        let out = invoke(&p, &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{code}: {stderr}");
        assert!(out.stdout.is_empty(), "{code}");
        assert!(
            stderr.contains(&format!(
                "the handler app.handler ended the Python process ({expected}) instead of returning"
            )),
            "{code}: {stderr}"
        );
        assert!(stderr.contains("Runtime.ExitError"), "{code}: {stderr}");
        assert!(!stderr.contains("traceback is above"), "{code}: {stderr}");
    }
}

/// The handler sees Lambda's variables, the caller's AWS credentials and
/// the function's own variables; another variable of the host only when
/// `--pass-env` names it.
#[test]
fn invoke_gives_the_handler_lambdas_environment_only() {
    let p = project("import os\n\ndef handler(event, context):\n    return dict(os.environ)\n");
    let home = tempfile::tempdir().unwrap();
    let run = |extra: &[&str]| {
        let mut cmd = p.cmd();
        // Only the AWS variables this test sets.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("AWS_") {
                cmd.env_remove(k);
            }
        }
        let out = cmd
            .args([&["invoke", "--env", "STAGE=dev"], extra].concat())
            .env("HOME", home.path())
            .env("LBUILD_TEST_SECRET", "s3cret")
            .env("AWS_ACCESS_KEY_ID", "AKIDTEST")
            .env("AWS_SECRET_ACCESS_KEY", "secret-key")
            .env("AWS_REGION", "eu-central-1")
            .output()
            .unwrap();
        assert_success(&out);
        serde_json::from_slice::<std::collections::BTreeMap<String, String>>(&out.stdout).unwrap()
    };
    let env = run(&[]);
    let keys: Vec<&str> = env.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "AWS_ACCESS_KEY_ID",
            "AWS_DEFAULT_REGION",
            "AWS_EXECUTION_ENV",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
            "AWS_LAMBDA_FUNCTION_NAME",
            "AWS_LAMBDA_FUNCTION_VERSION",
            "AWS_LAMBDA_LOG_GROUP_NAME",
            "AWS_LAMBDA_LOG_STREAM_NAME",
            "AWS_REGION",
            "AWS_SECRET_ACCESS_KEY",
            "LAMBDA_RUNTIME_DIR",
            "LAMBDA_TASK_ROOT",
            "LANG",
            "LD_LIBRARY_PATH",
            "PATH",
            "PYTHONPATH",
            "STAGE",
            "TZ",
            "_HANDLER",
        ],
        "{env:#?}"
    );
    assert_eq!(env["TZ"], ":UTC");
    assert_eq!(env["AWS_REGION"], "eu-central-1");
    assert_eq!(env["AWS_DEFAULT_REGION"], "eu-central-1");
    assert_eq!(env["AWS_ACCESS_KEY_ID"], "AKIDTEST");
    assert_eq!(env["AWS_EXECUTION_ENV"], "AWS_Lambda_python3.11");
    assert_eq!(env["AWS_LAMBDA_FUNCTION_NAME"], "hello");
    assert_eq!(env["AWS_LAMBDA_LOG_GROUP_NAME"], "/aws/lambda/hello");
    assert_eq!(env["_HANDLER"], "app.handler");
    assert_eq!(env["STAGE"], "dev");

    let env = run(&["--pass-env", "LBUILD_TEST_SECRET"]);
    assert_eq!(
        env.get("LBUILD_TEST_SECRET").map(String::as_str),
        Some("s3cret")
    );
}

#[test]
fn invoke_refuses_a_non_utf8_event_as_bad_input() {
    let p = project("def handler(event, context):\n    return event\n");
    p.write_bytes("event.json", b"{\"name\": \"caf\xe9\"}");
    let out = invoke(&p, &["--event", "event.json"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the event event.json is not UTF-8 text (invalid byte at offset 13)"),
        "{stderr}"
    );
    assert!(!p.zip_path("hello").exists(), "built despite the bad event");
}

/// Lambda's response rules: JSON (else Runtime.MarshalError), at most 6 MB.
#[test]
fn invoke_refuses_a_response_lambda_would_not_return() {
    let p = project("def handler(event, context):\n    return object()\n");
    let out = invoke(&p, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Runtime.MarshalError"), "{stderr}");
    assert!(stderr.contains("its return value is not JSON"), "{stderr}");

    // A JSON string of 6 MB + 1 byte, quotes included.
    p.write(
        "app.py",
        "def handler(event, context):\n    return 'x' * (6 * 1024 * 1024 - 1)\n",
    );
    let out = invoke(&p, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "no partial result");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("returned 6291457 bytes of JSON, over Lambda's limit of 6291456 bytes"),
        "{stderr}"
    );
    // Exactly the limit is returned whole.
    p.write(
        "app.py",
        "def handler(event, context):\n    return 'x' * (6 * 1024 * 1024 - 2)\n",
    );
    let out = invoke(&p, &[]);
    assert_success(&out);
    assert_eq!(
        out.stdout.len(),
        6 * 1024 * 1024 + 1,
        "the JSON and a newline"
    );
}

/// A function that names a public layer by ARN: without a local copy, a
/// missing module is said to maybe come from that layer (not "add it to
/// requirements.txt"); `local_layers` maps the ARN to a directory or a
/// zip, which is then on the path as Lambda puts layers.
#[test]
fn invoke_maps_external_layers_to_local_copies_or_names_them() {
    const ARN: &str = "arn:aws:lambda:eu-west-1:017000801446:layer:Stub:3";
    let p = TestProject::empty();
    let manifest = |local: &str| {
        format!(
            "[defaults]\nruntime = \"python3.11\"\n\n[functions.f]\nhandler = \"app.handler\"\nsources = {{ include = [\"app.py\"] }}\nlayers = [\"{ARN}\"]\n{local}"
        )
    };
    p.write("lambda.toml", &manifest(""));
    p.write(
        "app.py",
        "import layer_stub\n\ndef handler(event, context):\n    return layer_stub.WHERE\n",
    );
    let out = invoke(&p, &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("No module named 'layer_stub'"), "{stderr}");
    assert!(
        stderr.contains(&format!("the missing module may come from the layer {ARN}")),
        "{stderr}"
    );
    assert!(stderr.contains("local_layers"), "{stderr}");
    assert!(!stderr.contains("add the missing distribution"), "{stderr}");

    // A directory laid out as the layer's zip.
    p.write("vendor/stub/python/layer_stub.py", "WHERE = 'dir'\n");
    p.write(
        "lambda.toml",
        &manifest(&format!(
            "local_layers = {{ \"{ARN}\" = \"vendor/stub\" }}\n"
        )),
    );
    let out = invoke(&p, &[]);
    assert_success(&out);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "\"dir\"");

    // The layer's zip.
    {
        let file = std::fs::File::create(p.path().join("vendor/stub.zip")).unwrap();
        let mut zip = zip::ZipWriter::new(file);
        zip.start_file(
            "python/layer_stub.py",
            zip::write::SimpleFileOptions::default(),
        )
        .unwrap();
        zip.write_all(b"WHERE = 'zip'\n").unwrap();
        zip.finish().unwrap();
    }
    p.write(
        "lambda.toml",
        &manifest(&format!(
            "local_layers = {{ \"{ARN}\" = \"vendor/stub.zip\" }}\n"
        )),
    );
    let out = invoke(&p, &[]);
    assert_success(&out);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "\"zip\"");

    // A path that is not there; an ARN the function does not name.
    p.write(
        "lambda.toml",
        &manifest(&format!(
            "local_layers = {{ \"{ARN}\" = \"vendor/nothing\" }}\n"
        )),
    );
    let out = invoke(&p, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("vendor/nothing, which does not exist"),
        "{stderr}"
    );
    let other = ARN.replace(":3", ":4");
    p.write(
        "lambda.toml",
        &manifest(&format!(
            "local_layers = {{ \"{other}\" = \"vendor/stub\" }}\n"
        )),
    );
    let out = invoke(&p, &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("lambda.toml:8:18:"), "{stderr}");
    assert!(
        stderr.contains("not a layer version ARN in its layers"),
        "{stderr}"
    );
}
