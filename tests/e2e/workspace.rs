//! Workspaces: two functions sharing code and one dependency layer in one
//! lambda.toml, built together on one cache; Lambda's size quotas;
//! `lbuild size` and `lbuild terraform`.

use std::io::Write;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Instant;

use crate::common::*;
use crate::deps::write_wheelhouse;
use crate::failures::names_in;

/// The defaults and the one layer every workspace here starts from.
macro_rules! defaults_and_layer {
    () => {
        r#"
[defaults]
runtime = "python3.12"
architecture = "x86_64"
sources = { root = "src" }
dependencies = { find_links = ["wheels"], no_index = true }

[layers.common]
requirements = "requirements.txt"
"#
    };
}

const WORKSPACE: &str = concat!(
    defaults_and_layer!(),
    r#"
[functions.orders]
handler = "orders.app.handler"
layers = ["common"]
sources = { include = ["orders/**/*.py", "shared/**/*.py"] }
config = { files = ["config/orders/*.json"] }

[functions.billing]
handler = "billing.app.handler"
sources = { include = ["billing/**/*.py", "shared/**/*.py"] }
dependencies = { requirements = "src/billing/requirements.txt" }
"#
);

struct Ws {
    p: TestProject,
    caches: tempfile::TempDir,
}

impl Ws {
    fn new() -> Ws {
        let p = TestProject::empty();
        p.write("lambda.toml", WORKSPACE);
        p.write("requirements.txt", "purepkg==1.0\n");
        p.write("src/billing/requirements.txt", "purepkg==1.0\n");
        p.write("src/orders/__init__.py", "");
        p.write(
            "src/orders/app.py",
            "from shared.money import cents\n\ndef handler(event, context):\n    return cents(1)\n",
        );
        p.write("src/billing/__init__.py", "");
        p.write(
            "src/billing/app.py",
            "from shared.money import cents\n\ndef handler(event, context):\n    return cents(2)\n",
        );
        p.write("src/shared/__init__.py", "");
        p.write("src/shared/money.py", "def cents(x):\n    return x * 100\n");
        p.write("config/orders/settings.json", "{\"currency\": \"EUR\"}\n");
        write_wheelhouse(&p.path().join("wheels"));
        Ws {
            p,
            caches: tempfile::Builder::new()
                .prefix("lbuild-caches-")
                .tempdir()
                .unwrap(),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut cmd = self.p.cmd();
        box_installers(&mut cmd, self.caches.path());
        cmd.args(args).output().unwrap()
    }

    fn build(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.run(&all);
        assert_success(&out);
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn zip(&self, rel: &str) -> std::path::PathBuf {
        self.p.path().join(rel)
    }
}

/// The artifact named `name` in a workspace `--json` document.
fn artifact<'a>(json: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    json["artifacts"]
        .as_array()
        .unwrap_or_else(|| panic!("no artifacts list: {json}"))
        .iter()
        .find(|a| a["name"] == name)
        .unwrap_or_else(|| panic!("no artifact {name}: {json}"))
}

fn package_ran(json: &serde_json::Value, name: &str) -> bool {
    artifact(json, name)["stages"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["name"] == "package" && s["status"] == "ran")
}

fn mtime_ns(path: &Path) -> i128 {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).unwrap();
    m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128
}

#[test]
fn each_zip_holds_exactly_its_artifact() {
    let ws = Ws::new();
    let json = ws.build(&[]);
    assert_eq!(json["artifacts"].as_array().unwrap().len(), 3, "{json}");
    assert_eq!(artifact(&json, "common")["kind"], "layer");
    assert_eq!(artifact(&json, "orders")["kind"], "function");

    let layer = entry_names(&ws.zip("dist/layers/common.zip"));
    assert!(!layer.is_empty());
    assert!(layer.iter().all(|n| n.starts_with("python/")), "{layer:?}");
    assert!(layer.contains(&"python/purepkg/__init__.py".to_string()));
    assert!(
        layer.iter().any(|n| n.ends_with(".dist-info/RECORD")),
        "{layer:?}"
    );

    let orders = entry_names(&ws.zip("dist/orders.zip"));
    assert_eq!(
        orders,
        [
            "config/orders/settings.json",
            "orders/__init__.py",
            "orders/app.py",
            "shared/__init__.py",
            "shared/money.py",
        ],
        "orders takes its dependencies from the layer"
    );
    let billing = entry_names(&ws.zip("dist/billing.zip"));
    assert!(
        billing.contains(&"purepkg/__init__.py".to_string()),
        "{billing:?}"
    );
    assert!(
        billing.contains(&"billing/app.py".to_string()),
        "{billing:?}"
    );
    assert!(
        !billing.iter().any(|n| n.starts_with("orders/")),
        "{billing:?}"
    );
    for zip in [
        "dist/layers/common.zip",
        "dist/orders.zip",
        "dist/billing.zip",
    ] {
        unzip_test(&ws.zip(zip));
    }
    // Unzipped sizes are reported per artifact.
    let unzipped = artifact(&json, "orders")["unzipped_size"].as_u64().unwrap();
    assert!(unzipped > 0 && unzipped < 1000, "{json}");
}

#[test]
fn every_artifact_equals_building_it_alone_in_a_fresh_copy() {
    let ws = Ws::new();
    let json = ws.build(&[]);
    for (name, zip) in [
        ("orders", "dist/orders.zip"),
        ("billing", "dist/billing.zip"),
    ] {
        let alone = Ws::new();
        let j = alone.build(&["--function", name]);
        let names: Vec<&str> = j["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap())
            .collect();
        if name == "orders" {
            assert_eq!(
                names,
                ["common", "orders"],
                "a function builds with its layers"
            );
        } else {
            assert_eq!(names, ["billing"]);
        }
        assert_eq!(
            std::fs::read(alone.zip(zip)).unwrap(),
            std::fs::read(ws.zip(zip)).unwrap(),
            "{name} built alone differs"
        );
        assert_eq!(
            artifact(&j, name)["sha256"],
            artifact(&json, name)["sha256"]
        );
    }
}

#[test]
fn an_edit_rebuilds_exactly_the_artifacts_that_include_the_file() {
    let ws = Ws::new();
    ws.build(&[]);
    let zips = [
        "dist/layers/common.zip",
        "dist/orders.zip",
        "dist/billing.zip",
    ];
    let before: Vec<i128> = zips.iter().map(|z| mtime_ns(&ws.zip(z))).collect();

    // Nothing changed: nothing runs, nothing is rewritten.
    let json = ws.build(&[]);
    for name in ["common", "orders", "billing"] {
        assert!(!package_ran(&json, name), "{name} ran on a no-op: {json}");
    }

    ws.p.write(
        "src/shared/money.py",
        "def cents(x):\n    return x * 1000\n",
    );
    let json = ws.build(&[]);
    assert!(package_ran(&json, "orders"));
    assert!(package_ran(&json, "billing"));
    assert!(
        !package_ran(&json, "common"),
        "the layer has no shared code"
    );
    assert_eq!(
        mtime_ns(&ws.zip(zips[0])),
        before[0],
        "the layer zip was rewritten"
    );

    let billing_before = std::fs::read(ws.zip("dist/billing.zip")).unwrap();
    let billing_mtime = mtime_ns(&ws.zip("dist/billing.zip"));
    ws.p.write(
        "src/orders/app.py",
        "def handler(event, context):\n    return 3\n",
    );
    let json = ws.build(&[]);
    assert!(package_ran(&json, "orders"));
    assert!(!package_ran(&json, "billing"));
    assert!(!package_ran(&json, "common"));
    assert_eq!(
        std::fs::read(ws.zip("dist/billing.zip")).unwrap(),
        billing_before
    );
    assert_eq!(mtime_ns(&ws.zip("dist/billing.zip")), billing_mtime);
}

/// Every file under `dir`, recursively, dated `secs` after the epoch (well
/// past the racy window, so their fingerprints are trusted).
fn backdate_all(dir: &Path, secs: u64) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            backdate_all(&path, secs);
        } else {
            std::fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
                .unwrap();
        }
    }
}

/// A no-op build of a workspace writes nothing to the cache (the database
/// and its WAL are byte for byte as the last build left them) and logs one
/// hit line per artifact, as `lbuild cache stats` expects.
#[test]
fn a_no_op_workspace_build_writes_nothing_to_the_cache_and_one_hit_line_per_artifact() {
    let ws = Ws::new();
    backdate_all(ws.p.path(), 1_600_000_000);
    ws.build(&[]);
    let db = ws.p.path().join(".lbuild/cache.sqlite");
    let wal = ws.p.path().join(".lbuild/cache.sqlite-wal");
    let log = ws.p.store.path().join("hits.jsonl");
    let state = || {
        (
            std::fs::read(&db).unwrap(),
            std::fs::read(&wal).unwrap_or_default(),
        )
    };
    let after_first = state();
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 3);

    let json = ws.build(&[]);
    for name in ["common", "orders", "billing"] {
        for stage in artifact(&json, name)["stages"].as_array().unwrap() {
            assert_ne!(stage["status"], "ran", "{name} ran on a no-op: {json}");
        }
    }
    assert!(state() == after_first, "a no-op build wrote to the cache");
    let log_text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = log_text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines.len(),
        6,
        "one line per artifact and build: {log_text}"
    );
    for line in &lines[3..] {
        assert_eq!(
            (&line["builds"], &line["zips_cached"]),
            (&1.into(), &1.into())
        );
    }
    let out = ws.run(&["cache", "stats", "--json"]);
    assert_success(&out);
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["hits"]["builds"], 6, "{stats}");
    assert_eq!(stats["hits"]["zips_cached"], 3, "{stats}");
}

#[test]
fn a_second_function_over_the_same_dependencies_compresses_only_its_own_files() {
    let ws = Ws::new();
    // The layer holds purepkg under python/; billing holds the same files at
    // the top: the store is by content, so billing deflates only its code.
    ws.build(&["--function", "orders"]);
    let json = ws.build(&["--function", "billing"]);
    let billing = artifact(&json, "billing");
    let package = billing["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "package")
        .unwrap();
    // New to the store: billing/__init__.py and billing/app.py (shared/ and
    // purepkg's files were compressed for orders and the layer).
    let compressed = package["details"]["compressed"].as_u64().unwrap();
    let reused = package["details"]["reused"].as_u64().unwrap();
    assert!(reused > 0, "nothing reused: {package}");
    assert!(
        compressed <= 2,
        "billing compressed {compressed} entries; only its own sources are new: {package}"
    );
}

#[test]
fn over_the_unzipped_quota_fails_and_keeps_the_last_zip() {
    let ws = Ws::new();
    ws.build(&[]);
    let good = std::fs::read(ws.zip("dist/orders.zip")).unwrap();
    // 262,144,000 bytes is Lambda's limit: zeros cost almost nothing zipped.
    let mut f = std::fs::File::create(ws.p.path().join("src/orders/blob.py")).unwrap();
    let chunk = vec![b'#'; 1 << 20];
    for _ in 0..251 {
        f.write_all(&chunk).unwrap();
    }
    drop(f);
    let out = ws.run(&[]);
    // Input to fix: exit code 2, as for a manifest error.
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("262,144,000") || err.contains("262144000"),
        "{err}"
    );
    assert!(err.contains("orders"), "{err}");
    // Where the bytes are, in the one unit system (issue 20).
    assert!(err.contains("(orders/ 251.0 MiB, "), "{err}");
    assert!(!err.contains(" MB"), "{err}");
    assert_eq!(std::fs::read(ws.zip("dist/orders.zip")).unwrap(), good);
    // The other artifacts still built.
    assert!(ws.zip("dist/billing.zip").is_file());

    // The manifest can make it a warning.
    let relaxed = WORKSPACE.replace(
        "[functions.orders]\n",
        "[functions.orders]\noutput = { size_limit = \"warn\" }\n",
    );
    ws.p.write("lambda.toml", &relaxed);
    let out = ws.run(&[]);
    assert_success(&out);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("warning"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn size_lists_the_largest_distribution_first() {
    let ws = Ws::new();
    ws.p.write(
        "src/billing/app.py",
        &format!(
            "# {}\ndef handler(event, context):\n    return 1\n",
            "x".repeat(5000)
        ),
    );
    ws.build(&[]);
    let out = ws.run(&["size", "--function", "billing", "--json"]);
    assert_success(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let b = &v["artifacts"][0];
    assert_eq!(b["name"], "billing", "{v}");
    let dists = b["distributions"].as_array().unwrap();
    assert_eq!(dists[0]["name"], "(not from a distribution)", "{v}");
    assert_eq!(dists[1]["name"], "purepkg", "{v}");
    let out = ws.run(&["size", "--function", "billing"]);
    assert_success(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("purepkg"), "{text}");
    assert!(text.contains("headroom"), "{text}");
    // One unit system: binary units, limits in bytes as AWS writes them.
    assert!(text.contains("KiB"), "{text}");
    assert!(!text.contains(" MB"), "{text}");
    assert!(text.contains("50,000,000 bytes (47.7 MiB)"), "{text}");
}

fn terraform(ws: &Ws, query: &str) -> Output {
    let mut cmd = ws.p.cmd();
    box_installers(&mut cmd, ws.caches.path());
    let mut child = cmd
        .arg("terraform")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(query.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn terraform_external_data_source_round_trip() {
    let ws = Ws::new();
    let manifest = ws.p.path().join("lambda.toml");
    let out = terraform(
        &ws,
        &serde_json::json!({"function": "orders", "manifest": manifest}).to_string(),
    );
    assert_success(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let obj = v.as_object().unwrap();
    assert!(obj.values().all(|x| x.is_string()), "{v}");
    let zip = Path::new(obj["zip"].as_str().unwrap());
    assert_eq!(zip, ws.zip("dist/orders.zip").canonicalize().unwrap());
    let bytes = std::fs::read(zip).unwrap();
    assert_eq!(obj["sha256"], sha256_hex(&bytes));
    assert_eq!(obj["size"], bytes.len().to_string());
    assert!(!obj["code_sha256"].as_str().unwrap().is_empty());

    let out = terraform(&ws, r#"{"layer": "common"}"#);
    assert_success(&out);

    // Errors: message on stderr, nothing on stdout, non-zero exit.
    for bad in [r#"{"function": "nope"}"#, "not json"] {
        let out = terraform(&ws, bad);
        assert!(!out.status.success(), "{bad}");
        assert!(
            out.stdout.is_empty(),
            "{bad}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(!out.stderr.is_empty());
    }
}

/// Writes a manifest and returns the failing build's stderr.
#[test]
fn an_artifacts_empty_list_overrides_the_default_rather_than_inheriting_it() {
    // Regression: `exclude = []` counted as unset, so a function could not
    // clear a default exclude (nor `allow_outside_project = false` a
    // default `true`).
    let p = TestProject::empty();
    p.write(
        "lambda.toml",
        r#"
[defaults]
runtime = "python3.12"
sources = { root = "src", exclude = ["**/test_*.py"] }

[functions.a]
handler = "a.handler"
sources = { include = ["a.py", "test_a.py"] }

[functions.b]
handler = "b.handler"
sources = { include = ["b.py", "test_b.py"], exclude = [] }
"#,
    );
    for f in ["a.py", "test_a.py", "b.py", "test_b.py"] {
        p.write(
            &format!("src/{f}"),
            "def handler(event, context):\n    return 1\n",
        );
    }
    assert_success(&p.run(&[]));
    assert_eq!(entry_names(&p.path().join("dist/a.zip")), ["a.py"]);
    assert_eq!(
        entry_names(&p.path().join("dist/b.zip")),
        ["b.py", "test_b.py"]
    );
}

#[test]
fn an_empty_layer_is_built_with_a_warning() {
    // Regression: a layer that selected nothing gave an empty zip, silently.
    let p = TestProject::empty();
    p.write(
        "lambda.toml",
        "[defaults]\nruntime = \"python3.12\"\n\n[layers.common]\n\n[functions.f]\nhandler = \"app.handler\"\nlayers = [\"common\"]\n",
    );
    p.write("app.py", "def handler(event, context):\n    return 1\n");
    let out = p.run(&[]);
    assert_success(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0].contains("layer common has no files"),
        "{stderr}"
    );
    assert!(stderr.contains("1 entry"), "{stderr}");
}

fn manifest_error(manifest: &str) -> String {
    let ws = Ws::new();
    ws.p.write("lambda.toml", manifest);
    let out = ws.run(&[]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_workspaces_are_errors_with_positions() {
    let err = manifest_error(&WORKSPACE.replace("layers = [\"common\"]", "layers = [\"comon\"]"));
    assert!(err.contains("lambda.toml:13:11:"), "{err}");
    assert!(err.contains("\"comon\""), "{err}");
    assert!(err.contains("layers defined: common"), "{err}");

    let err = manifest_error(&WORKSPACE.replace(
        "[functions.billing]\n",
        "[functions.billing]\noutput = { path = \"dist/orders.zip\" }\n",
    ));
    assert!(
        err.contains("function \"billing\" and function \"orders\" both write"),
        "{err}"
    );
    assert!(err.contains("dist/orders.zip"), "{err}");

    let err = manifest_error(&format!("{WORKSPACE}\n[sources]\nroot = \"src\"\n"));
    assert!(err.contains("unknown field `sources`"), "{err}");
    assert!(err.contains("[functions.NAME]"), "{err}");

    let err = manifest_error("[defaults]\nruntime = \"python3.12\"\n\n[functions]\n");
    assert!(err.contains("lambda.toml:4:"), "{err}");
    assert!(err.contains("defines no function"), "{err}");

    let six: Vec<String> = (0..6).map(|i| format!("[layers.l{i}]\n")).collect();
    let err = manifest_error(&format!(
        "{}\n[functions.f]\nhandler = \"orders.app.handler\"\nsources = {{ root = \"src\" }}\nlayers = [\"l0\", \"l1\", \"l2\", \"l3\", \"l4\", \"l5\"]\n",
        six.join("")
    ));
    assert!(err.contains("at most 5"), "{err}");
}

#[test]
fn layer_version_arns_are_declared_checked_and_counted() {
    const PUBLIC: &str =
        "arn:aws:lambda:eu-west-1:017000801446:layer:AWSLambdaPowertoolsPythonV3:7";
    // An ARN next to a managed layer builds (nothing to build for it).
    let ws = Ws::new();
    ws.p.write(
        "lambda.toml",
        &WORKSPACE.replace(
            "layers = [\"common\"]",
            &format!("layers = [\"{PUBLIC}\", \"common\"]"),
        ),
    );
    assert_success(&ws.run(&[]));

    // The same layer twice: an error at the second one.
    let err = manifest_error(
        &WORKSPACE.replace("layers = [\"common\"]", "layers = [\"common\", \"common\"]"),
    );
    assert!(err.contains("lambda.toml:13:21:"), "{err}");
    assert!(err.contains("names layer \"common\" twice"), "{err}");

    // Not the shape of a layer version ARN (no version): said why.
    let err = manifest_error(&WORKSPACE.replace(
        "layers = [\"common\"]",
        "layers = [\"arn:aws:lambda:eu-west-1:017000801446:layer:Powertools\"]",
    ));
    assert!(err.contains("lambda.toml:13:11:"), "{err}");
    assert!(err.contains("is not a layer version ARN"), "{err}");
    assert!(
        err.contains("arn:aws:lambda:REGION:ACCOUNT:layer:NAME:VERSION"),
        "{err}"
    );

    // ARNs count toward Lambda's five.
    let arns: Vec<String> = (1..=5)
        .map(|v| format!("\"{}\"", PUBLIC.replace(":7", &format!(":{v}"))))
        .collect();
    let err = manifest_error(&WORKSPACE.replace(
        "layers = [\"common\"]",
        &format!("layers = [\"common\", {}]", arns.join(", ")),
    ));
    assert!(
        err.contains("uses 6 layers") && err.contains("at most 5"),
        "{err}"
    );
}

#[test]
fn the_single_function_form_keeps_its_json_shape() {
    let p = TestProject::hello();
    let json = p.build_json();
    assert!(json.get("artifacts").is_none(), "{json}");
    assert!(json["sha256"].is_string(), "{json}");
    assert!(json["code_sha256"].is_string(), "{json}");
}

#[test]
fn init_lists_several_handler_packages_and_writes_a_workspace_that_builds() {
    let p = TestProject::empty();
    for f in ["orders", "billing"] {
        p.write(&format!("src/{f}/__init__.py"), "");
        p.write(
            &format!("src/{f}/app.py"),
            "from shared.util import twice\n\ndef handler(event, context):\n    return twice(1)\n",
        );
    }
    p.write("src/shared/__init__.py", "");
    p.write("src/shared/util.py", "def twice(x):\n    return 2 * x\n");

    // Without --workspace: the candidates listed, --handler or
    // --workspace asked for, nothing written.
    let out = p.run(&["init"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("billing.app.handler"), "{err}");
    assert!(err.contains("orders.app.handler"), "{err}");
    assert!(err.contains("--workspace"), "{err}");
    assert!(!p.path().join("lambda.toml").exists());

    let out = p.run(&["init", "--workspace", "--force"]);
    assert_success(&out);
    let text = std::fs::read_to_string(p.path().join("lambda.toml")).unwrap();
    assert!(text.contains("[functions.orders]"), "{text}");
    assert!(text.contains("[functions.billing]"), "{text}");
    let json = p.build_json();
    assert_eq!(json["artifacts"].as_array().unwrap().len(), 2, "{json}");
    assert_eq!(
        entry_names(&p.zip_path("orders")),
        [
            "orders/__init__.py",
            "orders/app.py",
            "shared/__init__.py",
            "shared/util.py"
        ]
    );
}

#[test]
fn temp_zips_of_dead_builds_go_from_every_output_directory_and_live_ones_stay() {
    // Each output directory is read once per build, for every output's
    // temp zips: a killed build's of any artifact (or of one since removed
    // from the manifest) goes; a live writer's stays.
    let ws = Ws::new();
    let mut dead = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = dead.id();
    dead.wait().unwrap();
    let live = std::process::id();
    for (rel, pid) in [
        ("dist/.lbuild-orders.zip-{pid}-a1b2c3.tmp", dead_pid),
        ("dist/.lbuild-billing.zip-{pid}-d4e5f6.tmp", dead_pid),
        ("dist/.lbuild-gone-fn.zip-{pid}-g7h8i9.tmp", dead_pid),
        ("dist/layers/.lbuild-common.zip-{pid}-j1k2l3.tmp", dead_pid),
        ("dist/.lbuild-billing.zip-{pid}-busy01.tmp", live),
    ] {
        ws.p.write(&rel.replace("{pid}", &pid.to_string()), "partial");
    }
    ws.build(&[]);
    assert_eq!(
        names_in(&ws.zip("dist")),
        [
            format!(".lbuild-billing.zip-{live}-busy01.tmp").as_str(),
            "billing.zip",
            "layers",
            "orders.zip",
        ]
    );
    assert_eq!(names_in(&ws.zip("dist/layers")), ["common.zip"]);
}

/// A workspace of one layer and `n` functions sharing code, `broken` of
/// them with a handler module that does not exist.
fn many_functions(n: usize, broken: &[usize], layer_requirements: &str) -> Ws {
    let ws = Ws::new();
    let mut manifest = String::from(defaults_and_layer!());
    for i in 0..n {
        let module = if broken.contains(&i) {
            "missing"
        } else {
            "app"
        };
        manifest.push_str(&format!(
            "\n[functions.fn{i}]\nhandler = \"fn{i}.{module}.handler\"\nlayers = [\"common\"]\nsources = {{ include = [\"fn{i}/**/*.py\", \"shared/**/*.py\"] }}\n"
        ));
        ws.p.write(&format!("src/fn{i}/__init__.py"), "");
        ws.p.write(
            &format!("src/fn{i}/app.py"),
            &format!("from shared.money import cents\n\ndef handler(event, context):\n    return cents({i})\n"),
        );
    }
    ws.p.write("lambda.toml", &manifest);
    ws.p.write("requirements.txt", layer_requirements);
    ws
}

fn names_of(json: &serde_json::Value) -> Vec<String> {
    json["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_workspace_built_at_once_equals_each_function_built_alone_in_the_same_order_every_time() {
    let n = 6;
    let ws = many_functions(n, &[], "purepkg==1.0\n");
    let order: Vec<String> = std::iter::once("common".to_string())
        .chain((0..n).map(|i| format!("fn{i}")))
        .collect();
    let mut zips = Vec::new();
    let mut human = None;
    for round in 0..3 {
        // From scratch each time, so every function is written (side by
        // side) rather than found up to date.
        let _ = std::fs::remove_dir_all(ws.zip(".lbuild"));
        let _ = std::fs::remove_dir_all(ws.zip("dist"));
        let json = ws.build(&[]);
        assert_eq!(names_of(&json), order, "round {round}: {json}");
        for i in 0..n {
            assert!(package_ran(&json, &format!("fn{i}")), "{json}");
        }
        let these: Vec<Vec<u8>> = (0..n)
            .map(|i| std::fs::read(ws.zip(&format!("dist/fn{i}.zip"))).unwrap())
            .collect();
        if round > 0 {
            assert_eq!(these, zips, "round {round} wrote other bytes");
        }
        zips = these;
        // The human lines, paths aside, in the same order too.
        let _ = std::fs::remove_dir_all(ws.zip(".lbuild"));
        let out = ws.run(&[]);
        assert_success(&out);
        let lines: Vec<String> = String::from_utf8_lossy(&out.stderr)
            .lines()
            .chain(String::from_utf8_lossy(&out.stdout).lines())
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .collect();
        // (Progress lines, printed only past some seconds, aside.)
        let built: Vec<String> = lines
            .into_iter()
            .filter(|l| l.starts_with("Built") || l.starts_with("Up"))
            .collect();
        assert_eq!(built.len(), n + 1, "{built:?}");
        assert!(
            built
                .iter()
                .zip(&order)
                .all(|(l, name)| l.starts_with("Built") && l.ends_with(name.as_str())),
            "{built:?}"
        );
        match &human {
            None => human = Some(built),
            Some(first) => assert_eq!(&built, first, "round {round}"),
        }
    }
    for i in [0, n / 2, n - 1] {
        let alone = many_functions(n, &[], "purepkg==1.0\n");
        alone.build(&["--function", &format!("fn{i}")]);
        assert_eq!(
            std::fs::read(alone.zip(&format!("dist/fn{i}.zip"))).unwrap(),
            zips[i],
            "fn{i} built alone differs"
        );
        unzip_test(&alone.zip(&format!("dist/fn{i}.zip")));
    }
}

#[test]
fn a_failing_function_among_many_fails_alone_with_its_name() {
    let n = 6;
    let ws = many_functions(n, &[2, 4], "purepkg==1.0\n");
    let out = ws.run(&["--json"]);
    assert!(!out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let order: Vec<String> = std::iter::once("common".to_string())
        .chain((0..n).map(|i| format!("fn{i}")))
        .collect();
    assert_eq!(names_of(&json), order, "{json}");
    // stderr says why too, not only that 2 of 7 failed.
    let err = String::from_utf8_lossy(&out.stderr);
    for name in ["function fn2: ", "function fn4: "] {
        assert!(err.contains(name) && err.contains("missing"), "{err}");
    }
    for i in 0..n {
        let a = artifact(&json, &format!("fn{i}"));
        let zip = ws.zip(&format!("dist/fn{i}.zip"));
        if i == 2 || i == 4 {
            let error = a["error"].as_str().unwrap_or_else(|| panic!("{a}"));
            assert!(error.contains("missing"), "{error}");
            assert!(!zip.exists());
        } else {
            assert!(a["error"].is_null(), "{a}");
            assert_eq!(
                a["sha256"].as_str().unwrap(),
                sha256_hex(&std::fs::read(&zip).unwrap())
            );
            unzip_test(&zip);
        }
    }
    // The zips are moved into place when the build ends: the failed
    // functions' temp zips are gone, the others' are published.
    let mut expected: Vec<String> = [0, 1, 3, 5].map(|i| format!("fn{i}.zip")).to_vec();
    expected.push("layers".into());
    assert_eq!(names_in(&ws.zip("dist")), expected);
    // In human mode each failure is named.
    let out = ws.run(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    for name in ["function fn2", "function fn4"] {
        assert!(err.contains(name), "{err}");
    }
}

#[test]
fn functions_whose_layer_failed_are_not_built() {
    let ws = many_functions(3, &[], "nosuchpkg==1.0\n");
    let out = ws.run(&["--json"]);
    assert!(!out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(artifact(&json, "common")["error"].is_string(), "{json}");
    for i in 0..3 {
        let a = artifact(&json, &format!("fn{i}"));
        let error = a["error"].as_str().unwrap_or_else(|| panic!("{a}"));
        assert!(
            error.contains(&format!(
                "\"fn{i}\" was not built: its layer \"common\" failed"
            )),
            "{error}"
        );
        assert!(!ws.zip(&format!("dist/fn{i}.zip")).exists());
    }
}

#[test]
fn a_workspace_build_killed_at_any_point_leaves_each_zip_old_or_new() {
    let n = 4;
    let ws = many_functions(n, &[], "purepkg==1.0\n");
    // Enough shared code that writing the zips takes a while.
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for k in 0..250 {
        let mut text = String::new();
        while text.len() < 8000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            text.push_str(&format!("V_{:x} = {}\n", x % 4099, x % 1_000_003));
        }
        ws.p.write(&format!("src/shared/m{k:03}.py"), &text);
    }
    let version = |v: usize| {
        ws.p.write(
            "src/shared/money.py",
            &format!("def cents(x):\n    return x * {}\n", 100 + v),
        )
    };
    let zips = || -> Vec<Option<Vec<u8>>> {
        (0..n)
            .map(|i| std::fs::read(ws.zip(&format!("dist/fn{i}.zip"))).ok())
            .collect()
    };
    // Each version's zips, and how long an edit of the shared code takes
    // to build (every function is written again).
    let mut colds = Vec::new();
    for v in 0..2 {
        version(v);
        let _ = std::fs::remove_dir_all(ws.zip(".lbuild"));
        ws.build(&[]);
        colds.push(zips());
    }
    version(0);
    let started = Instant::now();
    ws.build(&[]);
    let span = started.elapsed();
    let mut previous = colds[0].clone();
    let points = 12;
    for k in 0..points {
        let v = (k + 1) % 2;
        version(v);
        let mut cmd = ws.p.cmd();
        box_installers(&mut cmd, ws.caches.path());
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(span * (k as u32 + 1) / (points as u32 + 1));
        let _ = child.kill(); // SIGKILL
        child.wait().unwrap();
        for (i, now) in zips().iter().enumerate() {
            assert!(
                *now == previous[i] || *now == colds[v][i],
                "kill point {k}: fn{i}.zip is neither the old zip nor the new one"
            );
        }
        assert_success(&ws.run(&[]));
        assert_eq!(zips(), colds[v], "after kill point {k}");
        let mut expected: Vec<String> = (0..n).map(|i| format!("fn{i}.zip")).collect();
        expected.push("layers".into());
        assert_eq!(names_in(&ws.zip("dist")), expected, "temp zips left");
        previous = colds[v].clone();
    }
}

#[test]
fn a_warning_two_artifacts_share_is_printed_once_and_kept_in_each_outcome() {
    let ws = Ws::new();
    // billing reads the layer's requirements file, which pins nothing.
    ws.p.write(
        "lambda.toml",
        &WORKSPACE.replace("src/billing/requirements.txt", "requirements.txt"),
    );
    ws.p.write("requirements.txt", "purepkg\n");
    let warning = "requirements.txt:1: \"purepkg\" is not pinned with ==";
    let out = ws.run(&[]);
    assert_success(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches(warning).count(), 1, "{stderr}");

    // Each artifact's outcome still carries it.
    ws.p.write(
        "src/shared/money.py",
        "def cents(x):\n    return x * 1000\n",
    );
    let out = ws.run(&["--json"]);
    assert_success(&out);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for name in ["common", "billing"] {
        let said = artifact(&json, name)["warnings"].to_string();
        assert!(said.contains("is not pinned with =="), "{name}: {json}");
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.matches(warning).count() <= 1, "{stderr}");
}

#[test]
fn a_glob_shared_by_functions_is_an_error_where_each_writes_it() {
    // The globs of a load are compiled once each; the error still points
    // at the function at fault, in its own column.
    let manifest = |b_include: &str| {
        format!(
            "[defaults]\nruntime = \"python3.12\"\n\n\
             [functions.a]\nhandler = \"a.handler\"\nsources = {{ include = [\"shared/**/*.py\", \"*.py\"] }}\n\n\
             [functions.b]\nhandler = \"b.handler\"\nsources = {{ include = {b_include} }}\n"
        )
    };
    let err = manifest_error(&manifest(r#"["*.py", "shared/**/*.py", "b/[z"]"#));
    assert!(err.contains("lambda.toml:10:50:"), "{err}");
    assert!(err.contains("include glob \"b/[z\""), "{err}");
    let err = manifest_error(&manifest(r#"["../shared/**/*.py", "shared/**/*.py"]"#));
    assert!(err.contains("lambda.toml:10:24:"), "{err}");
    assert!(err.contains("outside the root"), "{err}");
}
