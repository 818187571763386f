//! Trusting the remote store (moto's S3 on loopback) and the machine store:
//! signatures, byte-exact entries, bounded fetches, healing, escaped text.
//! A shared bucket may make builds faster, never different.

use std::io::{Read, Write};
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use crate::common::stage_details;
use crate::deps::{DepsProject, deps_ran};
use crate::moto::Moto;
use crate::store::{
    BUCKET_URL, bucket, json_of, kept_trees, remote_project, run_in, uv_that_must_not_install,
    warnings,
};

/// A fixed key pair for the tests (made with `lbuild cache keygen test-ci`).
pub(crate) const CI_PUBLIC: &str = "test-ci:dX4EkSEIMSnOEVhU2S7uFO0gA2yDm6jQVOUaNrs+tNg=";
pub(crate) const CI_SECRET: &str = "test-ci:NlxtR51IKtmuVj5sXWAgYps66q9dSY4PnM6h7hBVQqJ1fgSRIQgxKc4RWFTZLu4U7SADbIObqNBU5Ro2uz602A==";
/// Another writer's key, trusted by nobody here.
const OTHER_SECRET: &str = "test-other:3uSTIs1XJRKeh6JR2TJGz4hN4CKVZ+hrMbwD60YCU+X2cJup5Q7jv3dhYdN6ZKJI6RzU/QQP7ApNSPwoKXjj4g==";

/// `d`'s lbuild against the bucket at `endpoint`, with exactly `env` as
/// the trust settings (nothing trusted, nothing signed, unless given).
fn run(
    d: &DepsProject,
    endpoint: &str,
    bin: Option<&Path>,
    env: &[(&str, &str)],
    args: &[&str],
) -> Output {
    let mut cmd = d.p.cmd();
    crate::common::box_installers(&mut cmd, d.caches.path());
    cmd.env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE");
    if let Some(bin) = bin {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut dirs = vec![bin.to_path_buf()];
        dirs.extend(std::env::split_paths(&path));
        cmd.env("PATH", std::env::join_paths(dirs).unwrap());
    }
    cmd.args(["--remote-cache", BUCKET_URL]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.args(args).output().unwrap()
}

const WRITE_SIGNED: &[(&str, &str)] = &[
    ("LBUILD_REMOTE_CACHE_MODE", "read-write"),
    ("LBUILD_SIGNING_KEY", CI_SECRET),
];
const READ_TRUSTING_CI: &[(&str, &str)] = &[("LBUILD_TRUSTED_KEYS", CI_PUBLIC)];

/// The bucket's object names under the test prefix, sorted.
fn objects(moto: &Moto) -> Vec<String> {
    let mut v: Vec<String> = moto
        .keys("lbuild-cache")
        .into_iter()
        .filter_map(|k| k.strip_prefix("team/").map(str::to_string))
        .collect();
    v.sort();
    v
}

/// Copies bucket object `from` over `to`.
fn copy_object(moto: &Moto, from: &str, to: &str) {
    moto.boto3(
        "import sys\n\
         b = s3.get_object(Bucket='lbuild-cache', Key='team/' + sys.argv[1])['Body'].read()\n\
         s3.put_object(Bucket='lbuild-cache', Key='team/' + sys.argv[2], Body=b)\n\
         print('1')\n",
        &[from, to],
    );
}

/// (record, tree zip) object names of the one tree in `names` not in `not`.
fn tree_objects(names: &[String], not: &[String]) -> (String, String) {
    let fresh: Vec<&String> = names
        .iter()
        .filter(|n| n.starts_with("deps/") && !not.contains(n))
        .collect();
    let json = fresh.iter().find(|n| n.ends_with(".json")).unwrap();
    let zip = fresh.iter().find(|n| n.ends_with(".zip")).unwrap();
    (json.to_string(), zip.to_string())
}

#[test]
fn a_reader_with_only_the_public_key_gets_the_writers_tree_signed_and_identical() {
    let moto = Moto::start();
    bucket(&moto);
    let a = remote_project();
    let first = json_of(&run(&a, &moto.endpoint(), None, WRITE_SIGNED, &["--json"]));
    assert!(deps_ran(&first));
    // Every object carries the CI key's signature.
    let body = moto.boto3(
        "r = []\n\
         for o in s3.list_objects_v2(Bucket='lbuild-cache')['Contents']:\n\
         \x20   if o['Key'].endswith('.json') or '/entries/' in o['Key']:\n\
         \x20       b = s3.get_object(Bucket='lbuild-cache', Key=o['Key'])['Body'].read()\n\
         \x20       r.append(b.rstrip(b'\\n').rsplit(b'\\n', 1)[-1].startswith(b'lbuild-sig 1 test-ci '))\n\
         print(json.dumps(r))\n",
        &[],
    );
    let signed: Vec<bool> = serde_json::from_value(body).unwrap();
    assert_eq!(signed.len(), 6, "a record and 5 entries: {signed:?}");
    assert!(signed.iter().all(|s| *s), "{signed:?}");

    let b = remote_project();
    let (bin, marker) = uv_that_must_not_install();
    let out = run(
        &b,
        &moto.endpoint(),
        Some(bin.path()),
        READ_TRUSTING_CI,
        &["--json"],
    );
    let json = json_of(&out);
    assert!(warnings(&out).is_empty(), "{:?}", warnings(&out));
    assert_eq!(stage_details(&json, "deps")["from"], "remote", "{json}");
    assert!(!marker.exists(), "the installer ran");
    assert_eq!(stage_details(&json, "package")["from_store"], 5, "{json}");
    assert_eq!(b.zip_bytes(), a.zip_bytes());
}

#[test]
fn another_projects_tree_copied_over_a_key_never_reaches_a_zip_nor_the_store() {
    // Project A's tree (purepkg) and project P's (nativepkg) in one bucket;
    // P's record and zip are then copied over A's names: signed by another
    // key, unsigned, and signed by the trusted key itself (a replay under
    // another name).
    for (case, p_env) in [
        (
            "other key",
            vec![
                ("LBUILD_REMOTE_CACHE_MODE", "read-write"),
                ("LBUILD_SIGNING_KEY", OTHER_SECRET),
            ],
        ),
        ("unsigned", vec![("LBUILD_REMOTE_CACHE_MODE", "read-write")]),
        ("replayed", WRITE_SIGNED.to_vec()),
    ] {
        let moto = Moto::start();
        bucket(&moto);
        let a = remote_project();
        json_of(&run(&a, &moto.endpoint(), None, WRITE_SIGNED, &["--json"]));
        let a_names = objects(&moto);
        let (a_json, a_zip) = tree_objects(&a_names, &[]);
        let p = DepsProject::new("uv", "python3.12", "x86_64", "nativepkg==1.0\n");
        json_of(&run(&p, &moto.endpoint(), None, &p_env, &["--json"]));
        let (p_json, p_zip) = tree_objects(&objects(&moto), &a_names);
        copy_object(&moto, &p_json, &a_json);
        copy_object(&moto, &p_zip, &a_zip);

        let b = remote_project();
        let out = run(&b, &moto.endpoint(), None, READ_TRUSTING_CI, &["--json"]);
        let json = json_of(&out);
        assert!(
            deps_ran(&json),
            "{case}: the poisoned tree was used: {json}"
        );
        let w = warnings(&out);
        assert!(
            w.iter()
                .any(|l| l.contains(&a_json) && l.contains("discarded")),
            "{case}: {w:?}"
        );
        assert_eq!(b.zip_bytes(), a.zip_bytes(), "{case}");
        assert!(b.entry("nativepkg/__init__.py").is_none(), "{case}");
        // Nothing fetched was kept: the one tree is the one installed here.
        let (_, unpacked) = kept_trees(b.p.store.path());
        assert_eq!(unpacked, 1, "{case}");
        // And without the remote, the store still gives A's zip.
        let again = json_of(&run_in(&b, b.p.store.path(), None, &["--json"]));
        assert!(!deps_ran(&again), "{case}");
        assert_eq!(b.zip_bytes(), a.zip_bytes(), "{case}");
    }
}

#[test]
fn unsigned_objects_are_ignored_unless_the_bucket_is_trusted() {
    let moto = Moto::start();
    bucket(&moto);
    let a = remote_project();
    // Written without a key: unsigned objects, said once.
    let out = run(
        &a,
        &moto.endpoint(),
        None,
        &[("LBUILD_REMOTE_CACHE_MODE", "read-write")],
        &["--json"],
    );
    json_of(&out);
    let w = warnings(&out);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("uploading unsigned objects") && w[0].contains("LBUILD_SIGNING_KEY"),
        "{w:?}"
    );

    let b = remote_project();
    let out = run(&b, &moto.endpoint(), None, READ_TRUSTING_CI, &["--json"]);
    let json = json_of(&out);
    assert!(deps_ran(&json), "{json}");
    let w = warnings(&out);
    assert!(
        w.iter()
            .any(|l| l.contains("is not signed") && l.contains("trust = \"bucket\"")),
        "{w:?}"
    );
    assert_eq!(stage_details(&json, "package")["from_store"], 0, "{json}");
    assert_eq!(b.zip_bytes(), a.zip_bytes());

    let c = remote_project();
    let (bin, marker) = uv_that_must_not_install();
    let out = run(
        &c,
        &moto.endpoint(),
        Some(bin.path()),
        &[("LBUILD_REMOTE_TRUST", "bucket")],
        &["--json"],
    );
    let json = json_of(&out);
    assert_eq!(stage_details(&json, "deps")["from"], "remote", "{json}");
    assert!(!marker.exists());
    let w = warnings(&out);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("whoever can write the bucket decides"),
        "{w:?}"
    );
    assert_eq!(c.zip_bytes(), a.zip_bytes());
}

#[test]
fn an_entry_recompressed_at_another_level_is_refused_and_compressed_here() {
    let moto = Moto::start();
    bucket(&moto);
    let a = remote_project();
    json_of(&run(&a, &moto.endpoint(), None, WRITE_SIGNED, &["--json"]));
    // Every entry object rewritten as the same file deflated at level 1
    // (its signature trailer kept: it no longer matches the bytes).
    let n = moto.boto3(
        "n = 0\n\
         for o in s3.list_objects_v2(Bucket='lbuild-cache')['Contents']:\n\
         \x20   if '/entries/' not in o['Key']:\n\
         \x20       continue\n\
         \x20   b = s3.get_object(Bucket='lbuild-cache', Key=o['Key'])['Body'].read()\n\
         \x20   body, _, trailer = b.rstrip(b'\\n').rpartition(b'\\n')\n\
         \x20   z = zipfile.ZipFile(io.BytesIO(body))\n\
         \x20   i = z.infolist()[0]\n\
         \x20   out = io.BytesIO()\n\
         \x20   w = zipfile.ZipFile(out, 'w')\n\
         \x20   w.writestr(i, z.read(i), compress_type=zipfile.ZIP_DEFLATED, compresslevel=1)\n\
         \x20   w.close()\n\
         \x20   s3.put_object(Bucket='lbuild-cache', Key=o['Key'], Body=out.getvalue() + b'\\n' + trailer + b'\\n')\n\
         \x20   n += 1\n\
         print(json.dumps(n))\n",
        &[],
    );
    assert_eq!(n, 5);
    let b = remote_project();
    let out = run(&b, &moto.endpoint(), None, READ_TRUSTING_CI, &["--json"]);
    let json = json_of(&out);
    let package = stage_details(&json, "package");
    assert_eq!(package["from_store"], 0, "{package}");
    let w = warnings(&out);
    assert!(
        w.iter()
            .any(|l| l.contains("5 remote cache object(s) refused") && l.contains("does not match")),
        "{w:?}"
    );
    assert_eq!(b.zip_bytes(), a.zip_bytes());
}

/// A TCP proxy to `to` on a loopback port: for each connection,
/// `up(client, server)` carries the requests and `down(server, client)` the
/// answers, each on a thread of its own.
fn proxy(
    to: u16,
    up: fn(std::net::TcpStream, std::net::TcpStream),
    down: fn(std::net::TcpStream, std::net::TcpStream),
) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", to)) else {
                continue;
            };
            let (c_read, s_write) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || up(c_read, s_write));
            std::thread::spawn(move || down(server, client));
        }
    });
    port
}

fn pass(mut from: std::net::TcpStream, mut to: std::net::TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
}

/// A proxy to `to` that passes requests through and drips responses back
/// one byte every 200 ms: a bucket that answers, slowly.
fn drip_proxy(to: u16) -> u16 {
    proxy(to, pass, |mut s_read, mut c_write| {
        let mut b = [0u8; 1];
        while s_read.read(&mut b).is_ok_and(|n| n == 1) {
            if c_write.write_all(&b).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    })
}

/// A proxy to `to` that passes every request but uploads: a connection
/// whose next request is a PUT is held open and never answered.
fn put_black_hole(to: u16) -> u16 {
    proxy(
        to,
        |mut c_read, mut s_write| {
            let mut b = vec![0u8; 64 * 1024];
            while let Ok(n) = c_read.read(&mut b) {
                if n == 0 || b[..n].starts_with(b"PUT ") {
                    // Held: the client waits for an answer forever.
                    std::thread::sleep(Duration::from_secs(600));
                    break;
                }
                if s_write.write_all(&b[..n]).is_err() {
                    break;
                }
            }
        },
        pass,
    )
}

/// `d`'s `--json` build against the bucket behind the proxy at `port`,
/// with the remote deadline `deadline` (seconds) added to `env`: it must
/// install locally and say one warning, returned with the time it took.
fn one_warning_through(
    d: &DepsProject,
    port: u16,
    env: &[(&'static str, &'static str)],
    deadline: &'static str,
) -> (String, Duration) {
    let mut env = env.to_vec();
    env.push(("LBUILD_REMOTE_DEADLINE", deadline));
    let t = Instant::now();
    let out = run(
        d,
        &format!("http://127.0.0.1:{port}"),
        None,
        &env,
        &["--json"],
    );
    let took = t.elapsed();
    let json = json_of(&out);
    assert!(deps_ran(&json), "{json}");
    let w = warnings(&out);
    assert_eq!(w.len(), 1, "{w:?}");
    (w[0].clone(), took)
}

#[test]
fn a_bucket_that_never_answers_uploads_costs_a_bounded_wait_and_one_warning() {
    let moto = Moto::start();
    bucket(&moto);
    let port = put_black_hole(moto.port);
    let a = remote_project();
    let (w, took) = one_warning_through(&a, port, WRITE_SIGNED, "1");
    assert!(w.contains("uploads took longer than"), "{w}");
    // The deadline plus a second per MiB uploaded (the tree is small),
    // the build itself, and slack for a loaded machine.
    assert!(took < Duration::from_secs(40), "took {took:?}");
    // Nothing was stored, and the zip is the one a local build makes.
    assert!(objects(&moto).is_empty(), "{:?}", objects(&moto));
    let local = remote_project();
    json_of(&run_in(&local, local.p.store.path(), None, &["--json"]));
    assert_eq!(a.zip_bytes(), local.zip_bytes());
}

#[test]
fn a_bucket_that_drips_costs_at_most_the_deadline() {
    let moto = Moto::start();
    bucket(&moto);
    let a = remote_project();
    json_of(&run(&a, &moto.endpoint(), None, WRITE_SIGNED, &["--json"]));
    // A cold local build, for scale.
    let cold = remote_project();
    let t = Instant::now();
    json_of(&run_in(&cold, cold.p.store.path(), None, &["--json"]));
    let local = t.elapsed();

    let port = drip_proxy(moto.port);
    let b = remote_project();
    let (w, took) = one_warning_through(&b, port, READ_TRUSTING_CI, "2");
    assert!(w.contains("LBUILD_REMOTE_DEADLINE"), "{w}");
    // The deadline, the local build, and slack for a loaded machine; the
    // record alone would take over a minute to drip through.
    assert!(
        took < Duration::from_secs(2) + local * 2 + Duration::from_secs(5),
        "took {took:?} (local build {local:?})"
    );
    assert_eq!(b.zip_bytes(), a.zip_bytes());
}

#[test]
fn a_huge_record_is_cut_off_at_its_cap_without_growing_memory() {
    let moto = Moto::start();
    bucket(&moto);
    let a = remote_project();
    json_of(&run(&a, &moto.endpoint(), None, WRITE_SIGNED, &["--json"]));
    let (json_name, _) = tree_objects(&objects(&moto), &[]);
    // 160 MB where the record should be.
    moto.boto3(
        "import sys\n\
         s3.put_object(Bucket='lbuild-cache', Key='team/' + sys.argv[1], Body=b' ' * (160 << 20))\n\
         print('1')\n",
        &[&json_name],
    );
    let b = remote_project();
    let rss = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = b.p.cmd();
    crate::common::box_installers(&mut cmd, b.caches.path());
    moto.aws_env(&mut cmd);
    // The same lbuild under GNU time, which reports its peak RSS (KiB).
    let program = cmd.get_program().to_owned();
    let mut timed = std::process::Command::new("/usr/bin/time");
    timed
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(rss.path())
        .arg(program)
        .args(cmd.get_args())
        .current_dir(b.p.path());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => timed.env(k, v),
            None => timed.env_remove(k),
        };
    }
    timed
        .env("LBUILD_TRUSTED_KEYS", CI_PUBLIC)
        .args(["--remote-cache", BUCKET_URL, "--json"]);
    let out = timed.output().unwrap();
    let json = json_of(&out);
    assert!(deps_ran(&json));
    let peak_kib: u64 = std::fs::read_to_string(rss.path())
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(peak_kib < 100 * 1024, "peak RSS {peak_kib} KiB");
    let w = warnings(&out);
    assert!(w.iter().any(|l| l.contains("larger than")), "{w:?}");
    assert_eq!(b.zip_bytes(), a.zip_bytes());
}

/// The machine store's one tree record (`deps/KEY/tree.json`).
fn tree_record(store: &Path) -> std::path::PathBuf {
    let dir = std::fs::read_dir(store.join("deps"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.join("tree.json").exists() || p.join("tree").is_dir())
        .unwrap();
    dir.join("tree.json")
}

#[test]
fn a_torn_tree_record_is_one_warning_and_a_correct_zip_then_none() {
    for tear in ["truncated", "garbage", "directory"] {
        let a = DepsProject::new("uv", "python3.12", "x86_64", "purepkg==1.0\n");
        let cold = a.build();
        assert!(deps_ran(&cold));
        let good = a.zip_bytes();
        let store = a.p.store.path();
        let record = tree_record(store);
        match tear {
            "truncated" => {
                let text = std::fs::read(&record).unwrap();
                std::fs::write(&record, &text[..text.len() / 2]).unwrap();
            }
            "garbage" => std::fs::write(&record, b"\x00\xffnot json").unwrap(),
            _ => {
                std::fs::remove_file(&record).unwrap();
                std::fs::create_dir_all(record.join("x")).unwrap();
            }
        }
        // Another project with the same deps on this store.
        let b = DepsProject::new("uv", "python3.12", "x86_64", "purepkg==1.0\n");
        let out = run_in(&b, store, None, &["--json"]);
        json_of(&out);
        let w = warnings(&out);
        assert_eq!(w.len(), 1, "{tear}: {w:?}");
        assert!(w[0].contains("unreadable tree.json"), "{tear}: {w:?}");
        assert_eq!(b.zip_bytes(), good, "{tear}");
        // Healed: a third project adopts the tree, without a word.
        let c = DepsProject::new("uv", "python3.12", "x86_64", "purepkg==1.0\n");
        let out = run_in(&c, store, None, &["--json"]);
        let json = json_of(&out);
        assert!(warnings(&out).is_empty(), "{tear}: {:?}", warnings(&out));
        assert_eq!(stage_details(&json, "deps")["from"], "store", "{tear}");
        assert_eq!(c.zip_bytes(), good, "{tear}");
    }
}

#[test]
fn warnings_from_a_store_record_reach_the_terminal_escaped() {
    let a = DepsProject::new("uv", "python3.12", "x86_64", "purepkg==1.0\n");
    a.build();
    let store = a.p.store.path();
    let record = tree_record(store);
    let mut doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
    doc["record"]["warnings"] =
        serde_json::json!(["\u{1b}[2Jwiped\nwarning: forged\u{1b}]0;title\u{7}"]);
    std::fs::write(&record, serde_json::to_vec(&doc).unwrap()).unwrap();
    let b = DepsProject::new("uv", "python3.12", "x86_64", "purepkg==1.0\n");
    // Printed to the terminal: escaped.
    let out = run_in(&b, store, None, &[]);
    crate::common::assert_success(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains('\u{1b}') && !err.contains('\u{7}'), "{err:?}");
    assert!(
        err.contains("\\x1b[2Jwiped\\x0awarning: forged\\x1b]0;title\\x07 (cached)"),
        "{err}"
    );
    // Into --json: escaped the same way (no control character to decode).
    b.p.remove("dist/fn.zip");
    let out = run_in(&b, store, None, &["--json"]);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!all.contains("\\u001b") && !all.contains('\u{1b}'), "{all}");
    assert!(all.contains("wiped"), "{all}");
}

#[test]
fn gc_with_the_store_at_a_directory_lbuild_did_not_make_deletes_nothing() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    std::fs::create_dir_all(h.join("entries/2024")).unwrap();
    std::fs::write(h.join("entries/2024/holiday.zip"), b"photos").unwrap();
    std::fs::create_dir_all(h.join("deps/myproject")).unwrap();
    std::fs::write(h.join("deps/myproject/notes.txt"), b"mine").unwrap();
    // A build pointed there uses it, but does not claim it.
    let p = crate::common::TestProject::hello();
    p.write("big.py", &"X = 1\n".repeat(20_000));
    let out = p.cmd().env("LBUILD_STORE", h).output().unwrap();
    crate::common::assert_success(&out);
    assert!(!h.join("CACHEDIR.TAG").exists() && !h.join("lbuild-store").exists());

    let out = p
        .cmd()
        .env("LBUILD_STORE", h)
        .args(["gc", "--max-size", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is not an lbuild machine store") && err.contains("nothing was removed"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(h.join("entries/2024/holiday.zip")).unwrap(),
        b"photos"
    );
    assert_eq!(
        std::fs::read(h.join("deps/myproject/notes.txt")).unwrap(),
        b"mine"
    );

    // A store lbuild made (an empty directory) is marked and trimmed.
    let fresh = tempfile::tempdir().unwrap();
    let out = p.cmd().env("LBUILD_STORE", fresh.path()).output().unwrap();
    crate::common::assert_success(&out);
    assert!(fresh.path().join("CACHEDIR.TAG").is_file());
    assert!(fresh.path().join("lbuild-store").is_file());
    let out = p
        .cmd()
        .env("LBUILD_STORE", fresh.path())
        .args(["gc", "--max-size", "1"])
        .output()
        .unwrap();
    crate::common::assert_success(&out);
}

#[test]
fn a_store_tree_claiming_a_source_path_is_installed_again_not_an_error() {
    let a = DepsProject::new("uv", "python3.12", "x86_64", "purepkg==1.0\n");
    a.build();
    let good = a.zip_bytes();
    let store = a.p.store.path();
    // Forge the machine store's tree: it now also "holds" app.py.
    let record = tree_record(store);
    let tree = record.parent().unwrap().join("tree");
    std::fs::write(
        tree.join("app.py"),
        "def handler(e, c):\n    return 'forged'\n",
    )
    .unwrap();
    let m = std::fs::metadata(tree.join("app.py")).unwrap();
    use std::os::unix::fs::MetadataExt;
    let mut doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
    let files = doc["files"].as_array_mut().unwrap();
    files.insert(
        0,
        serde_json::json!({
            "name": "app.py",
            "hash": "00".repeat(32),
            "size": m.len(),
            "executable": false,
            "mtime_ns": m.mtime() * 1_000_000_000 + m.mtime_nsec(),
        }),
    );
    doc["record"]["files"] = serde_json::json!(files.len());
    doc.as_object_mut().unwrap().remove("zip");
    std::fs::write(&record, serde_json::to_vec(&doc).unwrap()).unwrap();

    for round in 0..2 {
        // A project adopting the store's tree: one warning, the right zip.
        let b = DepsProject::new("uv", "python3.12", "x86_64", "purepkg==1.0\n");
        let out = run_in(&b, store, None, &["--json"]);
        let json = json_of(&out);
        let w = warnings(&out);
        if round == 0 {
            assert_eq!(w.len(), 1, "{w:?}");
            assert!(w[0].contains("claims app.py"), "{w:?}");
            assert!(deps_ran(&json), "{json}");
        } else {
            assert!(w.is_empty(), "healed, yet: {w:?}");
            assert_eq!(stage_details(&json, "deps")["from"], "store", "{json}");
        }
        assert_eq!(b.zip_bytes(), good, "round {round}");
        assert!(b.entry("app.py").unwrap().contains("'ok'"));
    }
}
