//! `lbuild deploy` against moto's Lambda, IAM and S3 APIs on loopback: the
//! real binary with AWS_ENDPOINT_URL and dummy credentials; moto's request
//! recording tells which calls were made.

use std::process::Output;

use crate::common::{TestProject, assert_success, sha256_hex};
use crate::moto::{Moto, REGION, no_aws_env, silent_endpoint};

const MANIFEST: &str = r#"[function]
name = "hello"
handler = "app.handler"
runtime = "python3.11"
"#;

fn project() -> TestProject {
    let p = TestProject::empty();
    p.write("lambda.toml", MANIFEST);
    p.write("app.py", "def handler(event, context):\n    return 'v1'\n");
    p
}

fn deploy(p: &TestProject, moto: &Moto, args: &[&str]) -> Output {
    let mut cmd = p.cmd();
    moto.aws_env(&mut cmd).arg("deploy").args(args);
    cmd.output().unwrap()
}

/// `lbuild deploy --json ARGS`, expecting success: the one function object.
fn deploy_json(p: &TestProject, moto: &Moto, args: &[&str]) -> serde_json::Value {
    let out = deploy(p, moto, &[&["--json"], args].concat());
    assert_success(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "one object per function: {text}");
    serde_json::from_str(lines[0]).unwrap()
}

fn local_code_sha256(p: &TestProject, name: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    let digest = sha2::Sha256::digest(p.zip_bytes(name));
    base64::engine::general_purpose::STANDARD.encode(digest)
}

#[test]
fn deploy_updates_only_when_code_changed_and_plan_changes_nothing() {
    let moto = Moto::start();
    moto.create_function("hello", "python3.11", "x86_64");
    let placeholder = moto.function("hello")["CodeSha256"].clone();
    let p = project();

    // First deploy: the placeholder is replaced.
    moto.reset_recording();
    let first = deploy_json(&p, &moto, &[]);
    let writes = moto.writes();
    assert_eq!(first["status"], "updated", "{first}");
    assert_eq!(first["old_code_sha256"], placeholder);
    let local = local_code_sha256(&p, "hello");
    assert_eq!(first["new_code_sha256"], local.as_str());
    assert_eq!(moto.function("hello")["CodeSha256"], local.as_str());
    let paths: Vec<String> = writes.iter().map(|r| r.to_string()).collect();
    assert_eq!(paths, ["PUT /2015-03-31/functions/hello/code"], "{paths:?}");

    // Second deploy: same bytes, so no write call at all.
    let before = moto.function("hello");
    moto.reset_recording();
    let second = deploy_json(&p, &moto, &[]);
    assert_eq!(moto.writes().len(), 0, "{:?}", moto.writes());
    assert_eq!(second["status"], "unchanged", "{second}");
    let after = moto.function("hello");
    assert_eq!(before["LastModified"], after["LastModified"]);
    assert_eq!(before["RevisionId"], after["RevisionId"]);

    // --plan after an edit: says it would update, writes nothing.
    p.write("app.py", "def handler(event, context):\n    return 'v2'\n");
    moto.reset_recording();
    let plan = deploy_json(&p, &moto, &["--plan"]);
    assert_eq!(moto.writes().len(), 0, "{:?}", moto.writes());
    assert_eq!(plan["status"], "would-update", "{plan}");
    assert_eq!(moto.function("hello")["CodeSha256"], local.as_str());

    // The edit deployed: one update, to the new hash.
    moto.reset_recording();
    let third = deploy_json(&p, &moto, &[]);
    assert_eq!(moto.writes().len(), 1, "{:?}", moto.writes());
    assert_eq!(third["status"], "updated");
    assert_eq!(third["old_code_sha256"], local.as_str());
    let edited = local_code_sha256(&p, "hello");
    assert_ne!(edited, local);
    assert_eq!(moto.function("hello")["CodeSha256"], edited.as_str());

    // Human output names the function and the status.
    let out = deploy(&p, &moto, &[]);
    assert_success(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("hello") && stdout.contains("unchanged"),
        "{stdout}"
    );
}

#[test]
fn deploy_names_stages_and_checks_the_architecture() {
    let moto = Moto::start();
    moto.create_function("dev-hello-eu", "python3.11", "arm64");
    let p = project();

    // --strict: the x86_64 zip is refused for the arm64 function, before any write.
    moto.reset_recording();
    let out = deploy(
        &p,
        &moto,
        &["--name-prefix", "dev-", "--name-suffix", "-eu", "--strict"],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "dev-hello-eu: the function's architecture is arm64 but lambda.toml says x86_64"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("hint:"), "{stderr}");
    assert_eq!(moto.writes().len(), 0, "{:?}", moto.writes());

    // Without --strict: a warning, then the update.
    let out = deploy(
        &p,
        &moto,
        &["--name-prefix", "dev-", "--name-suffix", "-eu"],
    );
    assert_success(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning:") && stderr.contains("architecture"),
        "{stderr}"
    );
    assert_eq!(
        moto.function("dev-hello-eu")["CodeSha256"],
        local_code_sha256(&p, "hello").as_str()
    );

    // --name replaces the manifest's name.
    moto.create_function("greeter", "python3.11", "x86_64");
    let v = deploy_json(&p, &moto, &["--name", "greeter"]);
    assert_eq!(v["aws_name"], "greeter");
    assert_eq!(v["name"], "hello");
    assert_eq!(v["status"], "updated");
}

#[test]
fn deploy_to_a_missing_function_says_how_to_create_it() {
    let moto = Moto::start();
    let p = project();
    moto.reset_recording();
    let out = deploy(&p, &moto, &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "the Lambda function hello does not exist in {REGION}"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("aws lambda create-function --function-name hello --runtime python3.11"),
        "{stderr}"
    );
    assert!(
        stderr.contains("Terraform") && stderr.contains("SAM"),
        "{stderr}"
    );
    assert_eq!(moto.writes().len(), 0, "{:?}", moto.writes());
}

#[test]
fn deploy_access_denied_names_the_missing_action() {
    let moto = Moto::start_unrecorded();
    moto.create_function("hello", "python3.11", "x86_64");
    // GetFunction goes through unchecked (see restricted_user); the
    // update is checked against a policy that allows only reads.
    let (key, secret) = moto.restricted_user(&["lambda:GetFunction"], 1);
    let p = project();
    let mut cmd = p.cmd();
    moto.aws_env(&mut cmd)
        .env("AWS_ACCESS_KEY_ID", key)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .arg("deploy");
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("access denied: lambda:UpdateFunctionCode on hello"),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: allow lambda:UpdateFunctionCode"),
        "{stderr}"
    );
}

#[test]
fn deploy_without_credentials_fails_before_any_call() {
    let p = project();
    let home = tempfile::tempdir().unwrap();
    let mut cmd = p.cmd();
    no_aws_env(&mut cmd, home.path())
        .env("HOME", home.path())
        .env("AWS_REGION", REGION)
        // Nothing listens here: a call would fail with another message.
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .arg("deploy");
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no AWS credentials found"), "{stderr}");
    assert!(stderr.contains("AWS_PROFILE"), "{stderr}");

    // No region: said as such.
    let mut cmd = p.cmd();
    no_aws_env(&mut cmd, home.path())
        .env("HOME", home.path())
        .arg("deploy");
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no AWS region is configured"), "{stderr}");
}

/// Deterministic incompressible bytes (xorshift64*).
fn random_bytes(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        out.extend_from_slice(&seed.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

#[test]
fn deploy_large_zip_goes_through_s3_once() {
    let moto = Moto::start();
    moto.create_function("hello", "python3.11", "x86_64");
    moto.create_bucket("builds");
    let p = project();
    p.write(
        "lambda.toml",
        &format!("{MANIFEST}\n[sources]\ninclude = [\"*.py\", \"*.bin\"]\n\n[output]\nlevel = 0\n"),
    );
    p.write_bytes("model.bin", &random_bytes(51_000_000, 0x5eed));

    // Without a bucket: refused before any call.
    moto.reset_recording();
    let out = deploy(&p, &moto, &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no S3 bucket is set"), "{stderr}");
    assert!(stderr.contains("--s3-bucket"), "{stderr}");
    assert!(moto.requests().is_empty(), "{:?}", moto.requests());
    let sha256 = sha256_hex(&p.zip_bytes("hello"));
    assert!(p.zip_bytes("hello").len() > 50_000_000);

    // With one: uploaded under its sha256, deployed from there.
    moto.reset_recording();
    let first = deploy_json(&p, &moto, &["--s3-bucket", "builds", "--s3-prefix", "fn"]);
    let key = format!("fn/{sha256}.zip");
    let writes: Vec<String> = moto.writes().iter().map(|r| r.to_string()).collect();
    assert_eq!(
        writes,
        [
            format!("PUT /builds/{key}"),
            "PUT /2015-03-31/functions/hello/code".to_string()
        ],
        "{writes:?}"
    );
    assert_eq!(first["status"], "updated");
    assert_eq!(first["s3"]["key"], key.as_str());
    assert_eq!(first["s3"]["existed"], false);
    assert_eq!(moto.keys("builds"), std::slice::from_ref(&key));
    let local = local_code_sha256(&p, "hello");
    assert_eq!(moto.function("hello")["CodeSha256"], local.as_str());

    // Someone deploys other code; lbuild's next deploy updates the
    // function from the object already in the bucket, without uploading.
    moto.boto3(
        "buf = io.BytesIO()\nwith zipfile.ZipFile(buf, 'w') as z:\n    z.writestr('x.py', '')\n\
         lam.update_function_code(FunctionName='hello', ZipFile=buf.getvalue())",
        &[],
    );
    moto.reset_recording();
    let second = deploy_json(&p, &moto, &["--s3-bucket", "builds", "--s3-prefix", "fn"]);
    let writes: Vec<String> = moto.writes().iter().map(|r| r.to_string()).collect();
    assert_eq!(
        writes,
        ["PUT /2015-03-31/functions/hello/code"],
        "{writes:?}"
    );
    assert_eq!(second["status"], "updated");
    assert_eq!(second["s3"]["existed"], true);
    assert_eq!(moto.function("hello")["CodeSha256"], local.as_str());

    // Someone plants other bytes at the staging key (same size even, and
    // then other code on the function): never deployed, uploaded over.
    moto.boto3(
        "s3.put_object(Bucket='builds', Key=sys.argv[1], Body=b'\\0' * int(sys.argv[2]))\n\
         buf = io.BytesIO()\nwith zipfile.ZipFile(buf, 'w') as z:\n    z.writestr('x.py', '')\n\
         lam.update_function_code(FunctionName='hello', ZipFile=buf.getvalue())",
        &[&key, &p.zip_bytes("hello").len().to_string()],
    );
    moto.reset_recording();
    let out = deploy(
        &p,
        &moto,
        &["--json", "--s3-bucket", "builds", "--s3-prefix", "fn"],
    );
    assert_success(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("holds other bytes"), "{stderr}");
    let third: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    let writes: Vec<String> = moto.writes().iter().map(|r| r.to_string()).collect();
    assert_eq!(
        writes,
        [
            format!("PUT /builds/{key}"),
            "PUT /2015-03-31/functions/hello/code".to_string()
        ],
        "{writes:?}"
    );
    assert_eq!(third["s3"]["existed"], false);
    assert_eq!(third["s3"]["replaced"], true);
    assert_eq!(moto.function("hello")["CodeSha256"], local.as_str());
}

/// A zip of `files` written to `dir/name`, as a deploy artifact's fields.
fn zip_artifact(
    dir: &std::path::Path,
    name: &str,
    files: &[(&str, &str)],
) -> (std::path::PathBuf, String, String, u64) {
    use base64::Engine;
    use sha2::Digest;
    use std::io::Write;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (path, text) in files {
        w.start_file(*path, zip::write::SimpleFileOptions::default())
            .unwrap();
        w.write_all(text.as_bytes()).unwrap();
    }
    let bytes = w.finish().unwrap().into_inner();
    let path = dir.join(name);
    std::fs::write(&path, &bytes).unwrap();
    let code_sha256 =
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(&bytes));
    (path, sha256_hex(&bytes), code_sha256, bytes.len() as u64)
}

#[test]
fn layers_are_published_once_and_functions_point_at_them() {
    use lbuild::deploy::{
        DeployOptions, Deployer, FunctionArtifact, LayerArtifact, LayerRef, Status,
    };
    use lbuild::{Architecture, Runtime};
    let moto = Moto::start();
    moto.create_function("orders", "python3.11", "x86_64");
    moto.create_function("billing", "python3.11", "x86_64");
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::parse("python3.11").unwrap();
    let layer = |files: &[(&str, &str)], file: &str| {
        let (zip, sha256, code_sha256, size) = zip_artifact(dir.path(), file, files);
        LayerArtifact {
            name: "shared".into(),
            aws_name: "shared".into(),
            zip,
            sha256,
            code_sha256,
            size,
            runtimes: vec![runtime],
            architectures: vec![Architecture::X86_64],
        }
    };
    let function = |name: &str| {
        let (zip, sha256, code_sha256, size) = zip_artifact(
            dir.path(),
            &format!("{name}.zip"),
            &[("app.py", &format!("NAME = {name:?}\n"))],
        );
        FunctionArtifact {
            name: name.into(),
            aws_name: name.into(),
            zip,
            sha256,
            code_sha256,
            size,
            handler: "app.handler".into(),
            runtime,
            architecture: Architecture::X86_64,
            layers: Some(vec![LayerRef::Managed {
                name: "shared".into(),
                aws_name: "shared".into(),
            }]),
        }
    };
    let v1 = layer(&[("python/shared.py", "V = 1\n")], "shared-v1.zip");
    let functions = [function("orders"), function("billing")];

    // The user's Terraform published this content already (no lbuild
    // description): lbuild finds it by CodeSha256 instead of publishing.
    moto.boto3(
        "lam.publish_layer_version(LayerName='shared', Content={'ZipFile': open(sys.argv[1], 'rb').read()})",
        &[v1.zip.to_str().unwrap()],
    );
    let loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .endpoint_url(moto.endpoint())
        .credentials_provider(aws_sdk_lambda::config::Credentials::new(
            "test", "test", None, None, "test",
        ));
    let deployer = Deployer::connect_with(loader).unwrap();
    let opts = DeployOptions::default();
    let quiet = lbuild::Reporter::silent();
    let layer_versions = || {
        moto.boto3(
            "print(json.dumps([v['LayerVersionArn'] for v in lam.list_layer_versions(LayerName='shared')['LayerVersions']]))",
            &[],
        )
        .as_array()
        .unwrap()
        .len()
    };
    let layers_of = |name: &str| moto.function(name)["Layers"].clone();

    moto.reset_recording();
    let report = deployer
        .deploy(&functions, std::slice::from_ref(&v1), &opts, &quiet)
        .unwrap();
    let writes: Vec<String> = moto.writes().iter().map(|r| r.to_string()).collect();
    assert!(
        !writes.iter().any(|w| w.contains("/layers/")),
        "no publish: {writes:?}"
    );
    assert_eq!(report.layers[0].status, Status::Unchanged);
    let arn1 = report.layers[0].version_arn.clone().unwrap();
    assert!(arn1.ends_with(":layer:shared:1"), "{arn1}");
    for f in &report.functions {
        assert_eq!(f.status, Status::Updated);
        assert_eq!(f.layers.as_ref().unwrap().status, Status::Updated);
    }
    assert_eq!(layers_of("orders")[0]["Arn"], arn1.as_str());
    assert_eq!(layers_of("billing")[0]["Arn"], arn1.as_str());

    // New layer content: published once, both functions repointed, their
    // code left alone.
    let v2 = layer(&[("python/shared.py", "V = 2\n")], "shared-v2.zip");
    moto.reset_recording();
    let report = deployer
        .deploy(&functions, std::slice::from_ref(&v2), &opts, &quiet)
        .unwrap();
    let writes: Vec<String> = moto.writes().iter().map(|r| r.to_string()).collect();
    assert_eq!(
        writes,
        [
            "POST /2018-10-31/layers/shared/versions",
            "PUT /2015-03-31/functions/orders/configuration",
            "PUT /2015-03-31/functions/billing/configuration",
        ],
        "{writes:?}"
    );
    assert_eq!(report.layers[0].status, Status::Published);
    let arn2 = report.layers[0].version_arn.clone().unwrap();
    assert!(arn2.ends_with(":layer:shared:2"), "{arn2}");
    assert!(
        report
            .functions
            .iter()
            .all(|f| f.status == Status::Unchanged)
    );
    assert_eq!(layers_of("orders")[0]["Arn"], arn2.as_str());
    assert_eq!(layer_versions(), 2);

    // Again: nothing to write.
    moto.reset_recording();
    let report = deployer
        .deploy(&functions, std::slice::from_ref(&v2), &opts, &quiet)
        .unwrap();
    assert_eq!(moto.writes().len(), 0, "{:?}", moto.writes());
    assert_eq!(report.layers[0].status, Status::Unchanged);
    assert_eq!(report.layers[0].version_arn.as_deref(), Some(arn2.as_str()));

    // Back to the first content: version 1 matches, nothing is published.
    moto.reset_recording();
    let report = deployer
        .deploy(&functions, std::slice::from_ref(&v1), &opts, &quiet)
        .unwrap();
    let writes: Vec<String> = moto.writes().iter().map(|r| r.to_string()).collect();
    assert!(
        !writes.iter().any(|w| w.contains("/layers/")),
        "no publish: {writes:?}"
    );
    assert_eq!(report.layers[0].version_arn.as_deref(), Some(arn1.as_str()));
    assert_eq!(layers_of("billing")[0]["Arn"], arn1.as_str());
    assert_eq!(layer_versions(), 2);
}

/// A workspace whose function names a public layer by ARN and a layer of
/// its own.
fn layered_project(layers: &str) -> TestProject {
    let p = TestProject::empty();
    p.write(
        "lambda.toml",
        &format!(
            "[defaults]\nruntime = \"python3.11\"\n\n[layers.common]\n\n[functions.f]\nhandler = \"app.handler\"\nlayers = {layers}\n"
        ),
    );
    p.write("app.py", "def handler(event, context):\n    return 1\n");
    p
}

#[test]
fn deploy_sets_declared_layers_in_order_and_keeps_the_ones_it_does_not_manage() {
    let moto = Moto::start();
    moto.create_function("f", "python3.11", "x86_64");
    // Layers of other tools: one attached by SAM, one public the manifest names.
    let arns = moto.boto3(
        "buf = io.BytesIO()\nwith zipfile.ZipFile(buf, 'w') as z:\n    z.writestr('python/x.py', '')\n\
         arns = [lam.publish_layer_version(LayerName=n, Content={'ZipFile': buf.getvalue()})['LayerVersionArn'] for n in ('sam-shared', 'public')]\n\
         lam.update_function_configuration(FunctionName='f', Layers=[arns[0]])\n\
         print(json.dumps(arns))",
        &[],
    );
    let (sam, public) = (arns[0].as_str().unwrap(), arns[1].as_str().unwrap());
    let p = layered_project(&format!("[\"{public}\", \"common\"]"));
    let layers_of = || -> Vec<String> {
        moto.function("f")["Layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["Arn"].as_str().unwrap().to_string())
            .collect()
    };

    // The plan shows before -> after and writes nothing.
    moto.reset_recording();
    let out = deploy(&p, &moto, &["--plan"]);
    assert_success(&out);
    assert!(moto.writes().is_empty(), "{:?}", moto.writes());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "layers would update: [{sam}] -> [{sam}, {public}, common:(new version)]"
        )),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "keeps layer {sam}, attached on AWS but not named in lambda.toml"
        )),
        "{stderr}"
    );

    // The deploy: the attached layer stays where it was, the declared ones
    // follow in the manifest's order.
    let out = deploy(&p, &moto, &[]);
    assert_success(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("keeps layer {sam}")), "{stderr}");
    let common = layers_of()[2].clone();
    assert!(common.ends_with(":layer:common:1"), "{common}");
    assert_eq!(layers_of(), [sam, public, common.as_str()]);

    // Asked to, the unmanaged layer goes; the plan marks the removal.
    let out = deploy(&p, &moto, &["--plan", "--remove-unmanaged-layers"]);
    assert_success(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("- removes {sam}")), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "[{sam}, {public}, {common}] -> [{public}, {common}]"
        )),
        "{stdout}"
    );
    assert_success(&deploy(&p, &moto, &["--remove-unmanaged-layers"]));
    assert_eq!(layers_of(), [public, common.as_str()]);

    // Declared in another order: set in that order, nothing removed.
    p.write(
        "lambda.toml",
        &std::fs::read_to_string(p.path().join("lambda.toml"))
            .unwrap()
            .replace(
                &format!("[\"{public}\", \"common\"]"),
                &format!("[\"common\", \"{public}\"]"),
            ),
    );
    let out = deploy(&p, &moto, &["--plan"]);
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("removes"),
        "{out:?}"
    );
    assert_success(&deploy(&p, &moto, &[]));
    assert_eq!(layers_of(), [common.as_str(), public]);
}

#[test]
fn a_silent_endpoint_fails_the_deploy_within_the_bound_with_a_short_error() {
    let p = project();
    assert_success(&p.run(&[]));
    let endpoint = silent_endpoint();
    let mut cmd = p.cmd();
    no_aws_env(&mut cmd, p.path())
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", REGION)
        .env("AWS_ENDPOINT_URL", &endpoint)
        .env("LBUILD_AWS_TIMEOUT", "2")
        .arg("deploy");
    let started = std::time::Instant::now();
    let out = cmd.output().unwrap();
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    // Three attempts' worth (2 s each) bound the call; well under a minute.
    assert!(
        took < std::time::Duration::from_secs(20),
        "took {took:?}: {stderr}"
    );
    assert!(
        took >= std::time::Duration::from_secs(2),
        "took {took:?}: {stderr}"
    );
    assert!(
        stderr.contains("lambda:GetFunction hello failed: no answer in time"),
        "{stderr}"
    );
    assert!(stderr.contains("LBUILD_AWS_TIMEOUT"), "{stderr}");
    let error_line = stderr.lines().find(|l| l.contains("GetFunction")).unwrap();
    assert!(error_line.len() < 200, "no SDK dump: {error_line}");

    // A bound that is not a number is bad input, refused before any call.
    let mut cmd = p.cmd();
    no_aws_env(&mut cmd, p.path())
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", REGION)
        .env("AWS_ENDPOINT_URL", &endpoint)
        .env("LBUILD_AWS_TIMEOUT", "soon")
        .arg("deploy");
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("LBUILD_AWS_TIMEOUT=\"soon\""));
}

#[test]
fn a_failure_after_the_code_update_says_what_state_the_function_is_in() {
    let moto = Moto::start_unrecorded();
    moto.create_function("f", "python3.11", "x86_64");
    let public = moto.boto3(
        "buf = io.BytesIO()\nwith zipfile.ZipFile(buf, 'w') as z:\n    z.writestr('python/x.py', '')\n\
         print(json.dumps(lam.publish_layer_version(LayerName='public', Content={'ZipFile': buf.getvalue()})['LayerVersionArn']))",
        &[],
    );
    let public = public.as_str().unwrap();
    let p = TestProject::empty();
    p.write(
        "lambda.toml",
        &format!(
            "[defaults]\nruntime = \"python3.11\"\n\n[functions.f]\nhandler = \"app.handler\"\nlayers = [\"{public}\"]\n"
        ),
    );
    p.write("app.py", "def handler(event, context):\n    return 1\n");
    // GetFunction, UpdateFunctionCode and the wait go through unchecked;
    // UpdateFunctionConfiguration is denied.
    let (key, secret) = moto.restricted_user(&["lambda:GetFunction"], 3);
    let mut cmd = p.cmd();
    moto.aws_env(&mut cmd)
        .env("AWS_ACCESS_KEY_ID", key)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .arg("deploy");
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("access denied: lambda:UpdateFunctionConfiguration on f"),
        "{stderr}"
    );
    assert!(
        stderr.contains("f is left with its new code but its previous layer list"),
        "{stderr}"
    );
    assert!(stderr.contains("deploy again: it converges"), "{stderr}");
    moto.unrestrict();
    assert_eq!(
        moto.function("f")["CodeSha256"],
        local_code_sha256(&p, "f").as_str()
    );
    assert!(
        moto.function("f")
            .get("Layers")
            .is_none_or(|l| l.as_array().unwrap().is_empty())
    );

    // Deploying again converges: the code is there, the layers are set.
    let out = deploy(&p, &moto, &["--json"]);
    assert_success(&out);
    let v: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    assert_eq!(v["status"], "unchanged", "{v}");
    assert_eq!(v["layers"]["status"], "updated", "{v}");
    assert_eq!(moto.function("f")["Layers"][0]["Arn"], public);
}
