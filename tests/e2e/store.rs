//! The machine store (`LBUILD_STORE`): installed trees and compressed
//! entries shared by every project on the machine; its housekeeping.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{assert_success, stage_details, status_of};
use crate::deps::{DepsProject, deps_ran};

/// A directory holding a `uv` that answers `--version` like the real one
/// (so the deps key is the same) and otherwise records that it ran and
/// fails: the witness that a build installed nothing.
pub(crate) fn uv_that_must_not_install() -> (tempfile::TempDir, PathBuf) {
    let real = std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("uv"))
                .find(|u| u.is_file())
        })
        .expect("uv on PATH");
    let dir = tempfile::Builder::new()
        .prefix("lbuild-fake-uv-")
        .tempdir()
        .unwrap();
    let marker = dir.path().join("ran");
    let script = format!(
        "#!/bin/sh\nif [ \"$1\" = \"--version\" ] || [ \"$1\" = \"-V\" ]; then exec '{}' \"$@\"; fi\necho \"$@\" >> '{}'\nexit 1\n",
        real.display(),
        marker.display()
    );
    let uv = dir.path().join("uv");
    std::fs::write(&uv, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&uv, std::fs::Permissions::from_mode(0o755)).unwrap();
    (dir, marker)
}

/// `d`'s lbuild with the machine store at `store` (and PATH led by `bin`).
pub(crate) fn run_in(d: &DepsProject, store: &Path, bin: Option<&Path>, args: &[&str]) -> Output {
    let mut cmd = d.p.cmd();
    crate::common::box_installers(&mut cmd, d.caches.path());
    cmd.env("LBUILD_STORE", store);
    if let Some(bin) = bin {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut dirs = vec![bin.to_path_buf()];
        dirs.extend(std::env::split_paths(&path));
        cmd.env("PATH", std::env::join_paths(dirs).unwrap());
    }
    cmd.args(args).output().unwrap()
}

pub(crate) fn json_of(out: &Output) -> serde_json::Value {
    assert_success(out);
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_second_project_with_the_same_requirements_installs_nothing_and_copies_large_entries() {
    let big = "DATA = 1\n".repeat(10_000);
    let a = DepsProject::new("uv", "python3.12", "x86_64", "purepkg==1.0\n");
    a.p.write("big.py", &big);
    let first = a.build();
    assert!(deps_ran(&first));
    let store = a.p.store.path();

    let b = DepsProject::new("uv", "python3.12", "x86_64", "purepkg==1.0\n");
    b.p.write("big.py", &big);
    let (bin, marker) = uv_that_must_not_install();
    let second = json_of(&run_in(&b, store, Some(bin.path()), &["--json"]));
    let deps = stage_details(&second, "deps");
    assert_eq!(deps["from"], "store", "{second}");
    assert!(!deps_ran(&second), "{second}");
    assert!(!marker.exists(), "the installer ran");
    // The large file comes compressed; small ones (below 64 KiB) are
    // deflated again, cheaper than a file of their own in the store.
    let package = stage_details(&second, "package");
    assert_eq!(package["from_store"], 1, "{package}");
    assert_eq!(b.zip_bytes(), a.zip_bytes());

    // One tree in the store, none in either project.
    let trees: Vec<_> = std::fs::read_dir(store.join("deps"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(trees.len(), 1, "{trees:?}");
    for p in [&a.p, &b.p] {
        assert!(!p.path().join(".lbuild/deps").exists());
    }
    // A second build of B is an ordinary no-op.
    let again = json_of(&run_in(&b, store, Some(bin.path()), &["--json"]));
    assert_eq!(status_of(&again, "package"), "cached");
}

#[test]
fn two_projects_building_at_once_on_one_store_both_succeed() {
    let a = DepsProject::new("uv", "python3.12", "x86_64", "purepkg==1.0\n");
    let b = DepsProject::new("uv", "python3.12", "x86_64", "purepkg==1.0\n");
    b.p.write(
        "app.py",
        "import purepkg\n\ndef handler(event, context):\n    return 'b'\n",
    );
    for i in 0..30 {
        let body = format!("X = {i}\n").repeat(200);
        a.p.write(&format!("mods/m{i}.py"), &body);
        b.p.write(&format!("mods/m{i}.py"), &body);
    }
    let shared = tempfile::Builder::new()
        .prefix("lbuild-shared-store-")
        .tempdir()
        .unwrap();
    let spawn = |d: &DepsProject| {
        let mut cmd = d.p.cmd();
        crate::common::box_installers(&mut cmd, d.caches.path());
        cmd.env("LBUILD_STORE", shared.path())
            .arg("--json")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (ca, cb) = (spawn(&a), spawn(&b));
    let (oa, ob) = (
        ca.wait_with_output().unwrap(),
        cb.wait_with_output().unwrap(),
    );
    json_of(&oa);
    json_of(&ob);
    // Each zip is what a build with a store of its own makes.
    for d in [&a, &b] {
        let together = d.zip_bytes();
        d.p.remove("dist/fn.zip");
        std::fs::remove_dir_all(d.p.path().join(".lbuild")).unwrap();
        let alone = json_of(&run_in(d, d.p.store.path(), None, &["--json"]));
        assert!(deps_ran(&alone));
        assert_eq!(d.zip_bytes(), together);
    }
    assert!(
        b.entry("app.py").unwrap().contains("'b'"),
        "b's own handler"
    );
    assert!(b.entry("purepkg/__init__.py").is_some());
}

fn stats(d: &DepsProject, store: &Path) -> serde_json::Value {
    json_of(&run_in(d, store, None, &["cache", "stats", "--json"]))
}

#[test]
fn gc_max_size_keeps_the_store_under_budget_and_waits_for_running_builds() {
    let a = DepsProject::new("uv", "python3.12", "x86_64", "purepkg==1.0\n");
    for i in 0..20 {
        a.p.write(
            &format!("mods/m{i}.py"),
            &format!("Y = {i:05}\n").repeat(8000),
        );
    }
    a.build();
    let store = a.p.store.path();
    let before = stats(&a, store);
    let total = before["bytes"].as_u64().unwrap();
    assert!(before["trees"].as_u64().unwrap() == 1, "{before}");
    assert!(before["entries"].as_u64().unwrap() >= 20, "{before}");

    // A build holds the store shared: gc waits, then gives up untouched.
    let holder = Command::new("python3")
        .arg("-c")
        .arg("import fcntl,sys,time; f=open(sys.argv[1],'a'); fcntl.flock(f, fcntl.LOCK_SH); print('held', flush=True); time.sleep(60)")
        .arg(store.join("store.lock"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut holder = holder;
    {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(holder.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "held");
    }
    let mut cmd = a.p.cmd();
    cmd.env("LBUILD_STORE", store)
        .env("LBUILD_LOCK_TIMEOUT", "1")
        .args(["gc", "--max-size", "0"]);
    let out = cmd.output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by a running build"), "{err}");
    assert_eq!(stats(&a, store)["bytes"], total);
    holder.kill().unwrap();
    holder.wait().unwrap();

    let budget = total / 2;
    let out = run_in(
        &a,
        store,
        None,
        &["gc", "--max-size", &budget.to_string(), "--json"],
    );
    let gc = json_of(&out);
    assert!(gc["removed"].as_u64().unwrap() > 0, "{gc}");
    let after = stats(&a, store)["bytes"].as_u64().unwrap();
    assert!(after <= budget, "{after} > {budget}");

    // The project still builds, the same bytes, after a total trim.
    let zip = a.zip_bytes();
    json_of(&run_in(
        &a,
        store,
        None,
        &["gc", "--max-size", "0", "--json"],
    ));
    assert_eq!(stats(&a, store)["bytes"], 0);
    a.p.write(
        "app.py",
        "import purepkg\n\ndef handler(event, context):\n    return 'ok'\n\n",
    );
    a.build();
    a.p.write(
        "app.py",
        "import purepkg\n\ndef handler(event, context):\n    return 'ok'\n",
    );
    a.build();
    assert_eq!(a.zip_bytes(), zip);
}

// ------------------------------------------------------------ remote store

#[cfg(feature = "aws")]
use crate::moto::Moto;

#[cfg(feature = "aws")]
pub(crate) const BUCKET_URL: &str = "s3://lbuild-cache/team";

/// `d`'s lbuild against moto's S3, with the remote store at [`BUCKET_URL`].
#[cfg(feature = "aws")]
pub(crate) fn run_remote(
    d: &DepsProject,
    moto: &Moto,
    bin: Option<&Path>,
    mode: Option<&str>,
    args: &[&str],
) -> Output {
    let mut cmd = d.p.cmd();
    crate::common::box_installers(&mut cmd, d.caches.path());
    moto.aws_env(&mut cmd);
    if let Some(bin) = bin {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut dirs = vec![bin.to_path_buf()];
        dirs.extend(std::env::split_paths(&path));
        cmd.env("PATH", std::env::join_paths(dirs).unwrap());
    }
    cmd.args(["--remote-cache", BUCKET_URL]);
    // Readers trust the CI key; only a writer holds its secret half.
    cmd.env("LBUILD_TRUSTED_KEYS", crate::trust::CI_PUBLIC);
    if mode == Some("read-write") {
        cmd.env("LBUILD_SIGNING_KEY", crate::trust::CI_SECRET);
    }
    if let Some(mode) = mode {
        cmd.args(["--remote-cache-mode", mode]);
    }
    cmd.args(args).output().unwrap()
}

#[cfg(feature = "aws")]
pub(crate) fn bucket(moto: &Moto) {
    moto.boto3("s3.create_bucket(Bucket='lbuild-cache')", &[]);
}

/// A project with dependencies and a few sources worth compressing.
#[cfg(feature = "aws")]
pub(crate) fn remote_project() -> DepsProject {
    let d = DepsProject::new("uv", "python3.12", "x86_64", "purepkg==1.0\n");
    // Above the size below which entries are compressed rather than
    // fetched one by one (64 KiB).
    for i in 0..5 {
        d.p.write(
            &format!("mods/m{i}.py"),
            &format!("Z = {i:05}\n").repeat(8000),
        );
    }
    d
}

#[cfg(feature = "aws")]
pub(crate) fn warnings(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.contains("warning"))
        .map(str::to_string)
        .collect()
}

#[cfg(feature = "aws")]
#[test]
fn a_fresh_clone_with_a_warm_remote_installs_nothing_and_copies_large_entries() {
    let moto = Moto::start();
    bucket(&moto);
    let a = remote_project();
    let first = json_of(&run_remote(
        &a,
        &moto,
        None,
        Some("read-write"),
        &["--json"],
    ));
    assert!(deps_ran(&first));
    assert_eq!(stage_details(&first, "deps")["uploaded"], true, "{first}");
    let up = stage_details(&first, "package");
    assert_eq!(up["uploaded"], 5, "{up}");

    // B: a copy with an empty machine store, read-only, and a uv that
    // fails if asked to install anything.
    let b = remote_project();
    let (bin, marker) = uv_that_must_not_install();
    let out = run_remote(&b, &moto, Some(bin.path()), None, &["--json"]);
    let second = json_of(&out);
    assert!(warnings(&out).is_empty(), "{:?}", warnings(&out));
    assert_eq!(stage_details(&second, "deps")["from"], "remote", "{second}");
    assert!(!deps_ran(&second));
    assert!(!marker.exists(), "the installer ran");
    let package = stage_details(&second, "package");
    // Only app.py (small: deflating it is cheaper than a round trip); the
    // large sources came compressed one by one, the dependencies as their
    // tree's zip, copied raw without being unpacked.
    assert_eq!(package["compressed"], 1, "{package}");
    assert_eq!(package["from_store"], 5, "{package}");
    assert_eq!(
        package["from_tree"].as_u64().unwrap(),
        package["entries"].as_u64().unwrap() - 6,
        "{package}"
    );
    let (kept, unpacked) = kept_trees(b.p.store.path());
    assert_eq!((kept.len(), unpacked), (1, 0), "{kept:?}");
    assert_eq!(
        package["uploaded"], 0,
        "read-only uploads nothing: {package}"
    );
    assert_eq!(b.zip_bytes(), a.zip_bytes());

    // The no-op path never calls the bucket: with the endpoint gone, no
    // warning.
    drop(moto);
    let down = Moto::start_unrecorded();
    let port = down.port;
    drop(down);
    let mut cmd = b.p.cmd();
    crate::common::box_installers(&mut cmd, b.caches.path());
    cmd.env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"))
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .args(["--remote-cache", BUCKET_URL, "--json"]);
    let out = cmd.output().unwrap();
    let noop = json_of(&out);
    assert_eq!(status_of(&noop, "package"), "cached");
    assert!(warnings(&out).is_empty(), "{:?}", warnings(&out));
}

#[cfg(feature = "aws")]
#[test]
fn tampered_remote_objects_are_rejected_and_rebuilt_locally() {
    let moto = Moto::start();
    bucket(&moto);
    let a = remote_project();
    json_of(&run_remote(
        &a,
        &moto,
        None,
        Some("read-write"),
        &["--json"],
    ));
    // Flip one byte in the compressed data of every zip in the bucket
    // (of its largest entry).
    let flipped = moto.boto3(
        "n = 0\n\
         for o in s3.list_objects_v2(Bucket='lbuild-cache')['Contents']:\n\
         \x20   if not o['Key'].endswith('.zip'):\n\
         \x20       continue\n\
         \x20   b = bytearray(s3.get_object(Bucket='lbuild-cache', Key=o['Key'])['Body'].read())\n\
         \x20   info = max(zipfile.ZipFile(io.BytesIO(bytes(b))).infolist(), key=lambda i: i.compress_size)\n\
         \x20   h = info.header_offset\n\
         \x20   start = h + 30 + int.from_bytes(b[h+26:h+28], 'little') + int.from_bytes(b[h+28:h+30], 'little')\n\
         \x20   b[start + info.compress_size // 2] ^= 0xff\n\
         \x20   s3.put_object(Bucket='lbuild-cache', Key=o['Key'], Body=bytes(b))\n\
         \x20   n += 1\n\
         print(json.dumps(n))\n",
        &[],
    );
    assert!(flipped.as_u64().unwrap() >= 6, "{flipped}");

    let b = remote_project();
    let out = run_remote(&b, &moto, None, None, &["--json"]);
    let json = json_of(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("discarded"), "{err}");
    assert!(deps_ran(&json), "the tampered tree was not used: {json}");
    let package = stage_details(&json, "package");
    // Every fetched entry was discarded: all compressed here (a duplicate
    // content is compressed once and then found in the machine store).
    assert_eq!(
        package["compressed"].as_u64().unwrap() + package["from_store"].as_u64().unwrap(),
        package["entries"].as_u64().unwrap(),
        "{package}"
    );
    assert!(package["compressed"].as_u64().unwrap() >= 6, "{package}");
    assert_eq!(b.zip_bytes(), a.zip_bytes());
    crate::common::unzip_test(&b.p.zip_path("fn"));
}

#[cfg(feature = "aws")]
#[test]
fn an_unreachable_bucket_is_one_warning_and_a_local_build() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let d = remote_project();
    // The manifest's [cache] key and the environment's mode, this time.
    let manifest = std::fs::read_to_string(d.p.path().join("lambda.toml")).unwrap();
    d.p.write(
        "lambda.toml",
        &format!("[cache]\nremote = \"{BUCKET_URL}\"\n\n{manifest}"),
    );
    let mut cmd = d.p.cmd();
    crate::common::box_installers(&mut cmd, d.caches.path());
    cmd.env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"))
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("LBUILD_REMOTE_CACHE_MODE", "read-write")
        .arg("--json");
    let out = cmd.output().unwrap();
    let json = json_of(&out);
    assert!(deps_ran(&json));
    let w = warnings(&out);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("remote cache s3://lbuild-cache/team is not usable"),
        "{w:?}"
    );
    assert!(d.entry("purepkg/__init__.py").is_some());
}

#[test]
fn a_corrupt_machine_store_entry_is_recompressed_never_packaged() {
    let p = crate::common::TestProject::hello();
    // Above the size the machine store keeps (64 KiB).
    p.write(
        "util.py",
        &"def greet():\n    return 'hi there'\n".repeat(2500),
    );
    let first = p.build_json();
    let cold = p.zip_bytes("hello");
    // Flip a byte in the middle of every stored entry, and drop the
    // project's own reuse store so the machine store is asked.
    let mut n = 0;
    for shard in std::fs::read_dir(p.store.path().join("entries")).unwrap() {
        for f in std::fs::read_dir(shard.unwrap().path()).unwrap() {
            let path = f.unwrap().path();
            let mut b = std::fs::read(&path).unwrap();
            let i = 30 + 1 + (b.len() - 30 - 1 - 46 - 1 - 22) / 2;
            b[i] ^= 0xff;
            std::fs::write(&path, b).unwrap();
            n += 1;
        }
    }
    assert_eq!(n, 1, "{first}");
    std::fs::remove_file(p.path().join(".lbuild/store.zip")).unwrap();
    p.remove("dist/hello.zip");
    let json = p.build_json();
    let d = stage_details(&json, "package");
    assert_eq!(d["store_rejected"], 1, "{d}");
    assert_eq!(d["compressed"], 3, "{d}");
    assert_eq!(p.zip_bytes("hello"), cold);
}

#[cfg(feature = "aws")]
#[test]
fn an_edit_build_with_a_remote_store_makes_no_request() {
    let moto = Moto::start();
    bucket(&moto);
    let a = remote_project();
    json_of(&run_remote(
        &a,
        &moto,
        None,
        Some("read-write"),
        &["--json"],
    ));
    assert!(
        moto.keys("lbuild-cache")
            .iter()
            .all(|k| k.starts_with("team/entries/") || k.starts_with("team/deps/")),
        "{:?}",
        moto.keys("lbuild-cache")
    );
    assert!(!moto.requests().is_empty(), "the recording works");
    // A handler edit: the small file is compressed here (no round trip),
    // the tree is known to be in the bucket (no HEAD), nothing to upload.
    moto.reset_recording();
    a.p.write(
        "app.py",
        "import purepkg\n\ndef handler(event, context):\n    return 'edited'\n",
    );
    let edited = json_of(&run_remote(
        &a,
        &moto,
        None,
        Some("read-write"),
        &["--json"],
    ));
    assert_eq!(stage_details(&edited, "package")["compressed"], 1);
    assert!(moto.requests().is_empty(), "{:?}", moto.requests());
    // And a no-op makes none either.
    json_of(&run_remote(
        &a,
        &moto,
        None,
        Some("read-write"),
        &["--json"],
    ));
    assert!(moto.requests().is_empty(), "{:?}", moto.requests());
}

#[cfg(feature = "aws")]
#[test]
fn a_bucket_that_denies_access_is_one_warning_and_a_local_build() {
    let moto = Moto::start_unrecorded();
    bucket(&moto);
    let (key, secret) = moto.restricted_user(&["lambda:GetFunction"], 0);
    let d = remote_project();
    let mut cmd = d.p.cmd();
    crate::common::box_installers(&mut cmd, d.caches.path());
    moto.aws_env(&mut cmd)
        .env("AWS_ACCESS_KEY_ID", key)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .args([
            "--remote-cache",
            BUCKET_URL,
            "--remote-cache-mode",
            "read-write",
            "--json",
        ]);
    let out = cmd.output().unwrap();
    let json = json_of(&out);
    assert!(deps_ran(&json));
    let w = warnings(&out);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("is not usable"), "{w:?}");
    crate::common::unzip_test(&d.p.zip_path("fn"));
}

#[test]
fn a_tree_installed_again_by_another_project_after_gc_is_adopted_not_reinstalled() {
    let a = DepsProject::new("uv", "python3.12", "x86_64", "purepkg==1.0\n");
    let b = DepsProject::new("uv", "python3.12", "x86_64", "purepkg==1.0\n");
    let store = a.p.store.path();
    a.build();
    let zip = a.zip_bytes();
    json_of(&run_in(
        &a,
        store,
        None,
        &["gc", "--max-size", "0", "--json"],
    ));
    // B installs the same key again: the same files, new times.
    assert!(deps_ran(&json_of(&run_in(&b, store, None, &["--json"]))));
    // A's record no longer matches the tree's stat facts; the store's own
    // record does: A uses the tree as it is.
    let (bin, marker) = uv_that_must_not_install();
    a.p.write(
        "app.py",
        "import purepkg\n\ndef handler(event, context):\n    return 'ok'\n\n",
    );
    let edited = json_of(&run_in(&a, store, Some(bin.path()), &["--json"]));
    assert!(!deps_ran(&edited), "{edited}");
    assert!(!marker.exists(), "the installer ran");
    a.p.write(
        "app.py",
        "import purepkg\n\ndef handler(event, context):\n    return 'ok'\n",
    );
    json_of(&run_in(&a, store, Some(bin.path()), &["--json"]));
    assert_eq!(a.zip_bytes(), zip);
}

/// The dependency trees a machine store keeps as their zips
/// (`deps/KEY/tree-*.zip`), and how many it holds unpacked (`deps/KEY/tree/`).
pub(crate) fn kept_trees(store: &Path) -> (Vec<PathBuf>, usize) {
    let mut zips = Vec::new();
    let mut unpacked = 0;
    for key in std::fs::read_dir(store.join("deps")).unwrap() {
        let key = key.unwrap().path();
        if !key.is_dir() {
            continue;
        }
        unpacked += key.join("tree").is_dir() as usize;
        for f in std::fs::read_dir(&key).unwrap() {
            let f = f.unwrap().path();
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with("tree-") && name.ends_with(".zip") {
                zips.push(f);
            }
        }
    }
    (zips, unpacked)
}

/// Flips one byte in the middle of the compressed data of `zip`'s largest
/// entry, leaving its size and mtime as they were (so only the entry's
/// digest can tell).
fn flip_a_compressed_byte(zip: &Path) {
    let mtime = std::fs::metadata(zip).unwrap().modified().unwrap();
    let at = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import sys, zipfile\n\
             i = max(zipfile.ZipFile(sys.argv[1]).infolist(), key=lambda i: i.compress_size)\n\
             b = open(sys.argv[1], 'rb').read()\n\
             h = i.header_offset\n\
             print(h + 30 + int.from_bytes(b[h+26:h+28], 'little') + int.from_bytes(b[h+28:h+30], 'little') + i.compress_size // 2)",
        )
        .arg(zip)
        .output()
        .unwrap();
    let at: usize = String::from_utf8_lossy(&at.stdout).trim().parse().unwrap();
    let mut bytes = std::fs::read(zip).unwrap();
    bytes[at] ^= 0xff;
    std::fs::write(zip, &bytes).unwrap();
    std::fs::File::options()
        .write(true)
        .open(zip)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
}

/// A project warmed into the bucket (read-write), as a CI build would.
#[cfg(feature = "aws")]
fn warmed(moto: &Moto) -> DepsProject {
    bucket(moto);
    let a = remote_project();
    assert!(deps_ran(&json_of(&run_remote(
        &a,
        moto,
        None,
        Some("read-write"),
        &["--json"],
    ))));
    a
}

#[cfg(feature = "aws")]
const EDITED: &str = "import purepkg\n\ndef handler(event, context):\n    return 'edited'\n";

#[cfg(feature = "aws")]
#[test]
fn a_clone_built_from_the_remote_tree_zip_stays_equal_to_cold_through_edits() {
    let moto = Moto::start();
    let a = warmed(&moto);
    let b = remote_project();
    let (bin, marker) = uv_that_must_not_install();
    let first = json_of(&run_remote(&b, &moto, Some(bin.path()), None, &["--json"]));
    assert_eq!(stage_details(&first, "deps")["from"], "remote", "{first}");
    assert_eq!(b.zip_bytes(), a.zip_bytes());

    // An edit: the same bytes as a cold build of the edited project
    // (installed, no remote), and still nothing installed here.
    let cold = remote_project();
    cold.p.write("app.py", EDITED);
    cold.build();
    b.p.write("app.py", EDITED);
    let edited = json_of(&run_remote(&b, &moto, Some(bin.path()), None, &["--json"]));
    assert!(!deps_ran(&edited), "{edited}");
    assert_eq!(stage_details(&edited, "package")["compressed"], 1);
    assert_eq!(b.zip_bytes(), cold.zip_bytes());

    // Without the project's reuse store, the dependencies come out of the
    // kept tree zip again (checked by its recorded digests), still never
    // unpacked.
    std::fs::remove_file(b.p.path().join(".lbuild/store.zip")).unwrap();
    b.p.remove("dist/fn.zip");
    let again = json_of(&run_remote(&b, &moto, Some(bin.path()), None, &["--json"]));
    let package = stage_details(&again, "package");
    assert_eq!(
        package["from_tree"].as_u64().unwrap(),
        package["entries"].as_u64().unwrap() - 6,
        "{package}"
    );
    assert_eq!(b.zip_bytes(), cold.zip_bytes());
    assert!(!marker.exists(), "the installer ran");
    let (kept, unpacked) = kept_trees(b.p.store.path());
    assert_eq!((kept.len(), unpacked), (1, 0), "{kept:?}");
    crate::common::unzip_test(&b.p.zip_path("fn"));
}

#[cfg(feature = "aws")]
#[test]
fn a_remote_tree_zip_with_a_wrong_crc_or_cut_short_is_discarded_and_the_zip_equals_cold() {
    let moto = Moto::start();
    let a = warmed(&moto);
    // The first entry's CRC in the central directory: its data intact, so
    // only the CRC check can tell (a raw copy would carry the wrong CRC).
    let deps_zip = "k = [o['Key'] for o in s3.list_objects_v2(Bucket='lbuild-cache')['Contents'] if '/deps/' in o['Key'] and o['Key'].endswith('.zip')][0]\n\
                    b = bytearray(s3.get_object(Bucket='lbuild-cache', Key=k)['Body'].read())\n";
    moto.boto3(
        &format!(
            "{deps_zip}\
             e = b.rindex(b'PK\\x05\\x06')\n\
             cd = int.from_bytes(b[e+16:e+20], 'little')\n\
             b[cd + 16] ^= 0x01\n\
             s3.put_object(Bucket='lbuild-cache', Key=k, Body=bytes(b))\n"
        ),
        &[],
    );
    let b = remote_project();
    let out = run_remote(&b, &moto, None, None, &["--json"]);
    let json = json_of(&out);
    let w = warnings(&out);
    assert!(
        w.len() == 1 && w[0].contains("discarded, installing locally"),
        "{w:?}"
    );
    assert!(deps_ran(&json), "{json}");
    assert_eq!(b.zip_bytes(), a.zip_bytes());

    // Cut short: not a zip at all.
    moto.boto3(
        &format!(
            "{deps_zip}s3.put_object(Bucket='lbuild-cache', Key=k, Body=bytes(b[:len(b)//2]))\n"
        ),
        &[],
    );
    let c = remote_project();
    let out = run_remote(&c, &moto, None, None, &["--json"]);
    let json = json_of(&out);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("discarded"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(deps_ran(&json), "{json}");
    assert_eq!(c.zip_bytes(), a.zip_bytes());
}

#[cfg(feature = "aws")]
#[test]
fn a_kept_tree_zip_damaged_on_disk_never_reaches_the_zip_and_is_fetched_again() {
    let moto = Moto::start();
    let a = warmed(&moto);
    let b = remote_project();
    json_of(&run_remote(&b, &moto, None, None, &["--json"]));
    let (kept, _) = kept_trees(b.p.store.path());
    flip_a_compressed_byte(&kept[0]);
    std::fs::remove_file(b.p.path().join(".lbuild/store.zip")).unwrap();
    b.p.remove("dist/fn.zip");
    let out = run_remote(&b, &moto, None, None, &["--json"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is damaged") && err.contains("run lbuild again"),
        "{err}"
    );
    assert!(!b.p.zip_path("fn").exists());
    // The damaged copy is gone: the next build fetches it again.
    let healed = json_of(&run_remote(&b, &moto, None, None, &["--json"]));
    assert!(!deps_ran(&healed), "{healed}");
    assert_eq!(b.zip_bytes(), a.zip_bytes());
}

/// A project with `purepkg` and a handler of its own (`tag`), every file
/// small (below the machine store's entry threshold).
fn tagged_project(tag: &str) -> DepsProject {
    let d = DepsProject::new("uv", "python3.12", "x86_64", "purepkg==1.0\n");
    d.p.write(
        "app.py",
        &format!("import purepkg\n\ndef handler(event, context):\n    return '{tag}'\n"),
    );
    d
}

/// (deps files, package details) of a build's JSON report.
fn deps_and_package(json: &serde_json::Value) -> (u64, serde_json::Value) {
    let files = stage_details(json, "deps")["files"].as_u64().unwrap();
    (files, stage_details(json, "package").clone())
}

#[test]
fn a_second_project_copies_every_dependency_entry_from_the_kept_tree_zip_and_equals_cold() {
    let a = tagged_project("a");
    assert!(deps_ran(&a.build()));
    let store = a.p.store.path();
    // The installing build kept its tree also as a zip, nothing of the
    // project in it: only the dependency's files.
    let (kept, unpacked) = kept_trees(store);
    assert_eq!((kept.len(), unpacked), (1, 1), "{kept:?}");
    let names = crate::common::entry_names(&kept[0]);
    assert!(
        !names.is_empty() && names.iter().all(|n| n.starts_with("purepkg")),
        "{names:?}"
    );
    crate::common::unzip_test(&kept[0]);
    let a_path = a.p.path().to_string_lossy().into_owned();
    let kept_bytes = std::fs::read(&kept[0]).unwrap();
    let record = std::fs::read(kept[0].parent().unwrap().join("tree.json")).unwrap();
    for bytes in [&kept_bytes, &record] {
        assert!(
            !String::from_utf8_lossy(bytes).contains(&a_path),
            "the project's path leaked into the store"
        );
    }
    // gc counts it with its tree.
    let st = stats(&a, store);
    assert!(
        st["tree_bytes"].as_u64().unwrap() > kept_bytes.len() as u64,
        "{st}"
    );

    let b = tagged_project("b");
    let (bin, marker) = uv_that_must_not_install();
    let second = json_of(&run_in(&b, store, Some(bin.path()), &["--json"]));
    assert_eq!(stage_details(&second, "deps")["from"], "store", "{second}");
    assert!(!marker.exists(), "the installer ran");
    let (files, package) = deps_and_package(&second);
    // Every dependency entry copied; only b's own files compressed.
    assert_eq!(package["from_tree"].as_u64().unwrap(), files, "{package}");
    assert_eq!(
        package["compressed"].as_u64().unwrap(),
        package["entries"].as_u64().unwrap() - files,
        "{package}"
    );
    assert_eq!(package["rejected"], 0, "{package}");

    // Byte for byte what b's own cold build (a store of its own) makes.
    let cold = tagged_project("b");
    assert!(deps_ran(&cold.build()));
    assert_eq!(b.zip_bytes(), cold.zip_bytes());
    crate::common::unzip_test(&b.p.zip_path("fn"));

    // Removing every kept zip is harmless: the next project compresses.
    json_of(&run_in(
        &a,
        store,
        None,
        &["gc", "--max-size", "0", "--json"],
    ));
    assert_eq!(kept_trees(store).0.len(), 0);
}

#[test]
fn a_damaged_kept_tree_zip_of_an_installed_tree_is_compressed_around_and_made_again() {
    let a = tagged_project("a");
    a.build();
    let store = a.p.store.path();
    let (kept, _) = kept_trees(store);
    flip_a_compressed_byte(&kept[0]);

    // The damaged entry is compressed from the installed file instead;
    // the zip is b's cold zip.
    let b = tagged_project("b");
    let out = json_of(&run_in(&b, store, None, &["--json"]));
    let (files, package) = deps_and_package(&out);
    assert_eq!(package["rejected"], 1, "{package}");
    assert_eq!(
        package["from_tree"].as_u64().unwrap(),
        files - 1,
        "{package}"
    );
    let cold = tagged_project("b");
    cold.build();
    assert_eq!(b.zip_bytes(), cold.zip_bytes());

    // The kept zip was made again: the next project copies everything.
    let c = tagged_project("b");
    let out = json_of(&run_in(&c, store, None, &["--json"]));
    let (files, package) = deps_and_package(&out);
    assert_eq!(package["rejected"], 0, "{package}");
    assert_eq!(package["from_tree"].as_u64().unwrap(), files, "{package}");
    assert_eq!(c.zip_bytes(), cold.zip_bytes());
}
