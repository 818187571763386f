//! The reproducible-ZIP contract (SPEC.md), item by item, read back with
//! Python's zipfile and `unzip -t`.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::common::*;

/// A project exercising every contract item: nested packages, an
/// executable, a non-ASCII name, an empty file, byte-code and secrets that
/// must stay out, and a file that deflate cannot shrink.
fn rich_project() -> TestProject {
    let p = TestProject::hello();
    p.write(
        "lambda.toml",
        r#"[function]
name = "hello"
handler = "app.handler"

[sources]
include = ["**/*.py", "**/*.bin", "bin/*"]
exclude = ["tests/**"]

[config]
files = ["config/*.json"]
"#,
    );
    p.write("pkg/__init__.py", "");
    p.write("pkg/sub/mod.py", "VALUE = 42\n");
    p.write("pkg.py.bak", "not included\n");
    p.write("café.py", "# non-ascii name\n");
    p.write("bin/run", "#!/bin/sh\necho hi\n");
    std::fs::set_permissions(
        p.path().join("bin/run"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    p.write("pkg/__pycache__/mod.cpython-312.pyc", "bytecode");
    p.write("stale.pyc", "bytecode");
    p.write(".env", "SECRET=1\n");
    p.write(".git/config", "[core]\n");
    p.write("tests/test_app.py", "def test(): pass\n");
    p.write_bytes("noise.bin", &noise(4096));
    p
}

/// Deterministic incompressible bytes.
fn noise(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn every_contract_item_holds_when_read_back() {
    let p = rich_project();
    p.build_json();
    let zip = p.zip_path("hello");
    unzip_test(&zip);
    let entries = python_entries(&zip);
    let names: Vec<&str> = entries
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();

    // 1, 8: regular files only; byte-code, VCS, secrets, excluded tests stay out.
    assert_eq!(
        names,
        [
            "app.py",
            "bin/run",
            "café.py",
            "config/settings.json",
            "noise.bin",
            "pkg/__init__.py",
            "pkg/sub/mod.py",
            "util.py"
        ]
    );
    // 3: sorted by name bytes; central directory in the same order as the data.
    let mut sorted = names.clone();
    sorted.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    assert_eq!(names, sorted);
    let offsets: Vec<u64> = entries
        .iter()
        .map(|e| e["header_offset"].as_u64().unwrap())
        .collect();
    assert!(
        offsets.windows(2).all(|w| w[0] < w[1]),
        "central directory order differs from data order: {offsets:?}"
    );

    for e in &entries {
        let name = e["name"].as_str().unwrap();
        assert_eq!(e["is_dir"], false);
        // 2: names relative, no '..', no empty segments; bit 11 exactly when non-ASCII.
        assert!(!name.starts_with('/') && !name.split('/').any(|s| s.is_empty() || s == ".."));
        let flags = e["flag_bits"].as_u64().unwrap();
        assert_eq!(flags & 0x800 != 0, !name.is_ascii(), "UTF-8 flag of {name}");
        // 6: no data descriptor, no extra fields, no comments.
        assert_eq!(flags & 0x8, 0, "{name} uses a data descriptor");
        assert_eq!(e["extra"], "", "{name} has extra fields");
        assert_eq!(e["comment"], "");
        // 4: one fixed time.
        assert_eq!(
            e["date_time"],
            serde_json::json!([1980, 1, 1, 0, 0, 0]),
            "{name}"
        );
        // 5: made by Unix, 0644 or 0755 regular files.
        assert_eq!(e["create_system"], 3);
        let mode = e["external_attr"].as_u64().unwrap() >> 16;
        let want = if name == "bin/run" {
            0o100755
        } else {
            0o100644
        };
        assert_eq!(mode, want, "mode of {name}: {mode:o}");
        // 7: deflate only where it shrinks the entry.
        let (size, csize) = (
            e["file_size"].as_u64().unwrap(),
            e["compress_size"].as_u64().unwrap(),
        );
        match e["compress_type"].as_u64().unwrap() {
            8 => assert!(csize < size, "{name} deflated but not smaller"),
            0 => assert_eq!(csize, size),
            other => panic!("{name}: compression method {other}"),
        }
    }
    let method =
        |n: &str| entries.iter().find(|e| e["name"] == n).unwrap()["compress_type"].clone();
    assert_eq!(method("noise.bin"), 0, "incompressible file must be stored");
    assert_eq!(method("app.py"), 8);
    assert_eq!(method("pkg/__init__.py"), 0, "empty file must be stored");

    // The zip itself is an ordinary readable file.
    let mode = std::fs::metadata(&zip).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644);
}

#[test]
fn source_date_epoch_sets_every_time_and_fixed_ignores_it() {
    let p = TestProject::hello();
    let out = p
        .cmd()
        .env("SOURCE_DATE_EPOCH", "1700000001")
        .arg("--json")
        .output()
        .unwrap();
    assert_success(&out);
    for e in python_entries(&p.zip_path("hello")) {
        // 2023-11-14T22:13:21Z, rounded down to an even second.
        assert_eq!(
            e["date_time"],
            serde_json::json!([2023, 11, 14, 22, 13, 20])
        );
    }

    p.write(
        "lambda.toml",
        &format!("{HELLO_MANIFEST}\n[output]\nmtime = \"fixed\"\n"),
    );
    let out = p
        .cmd()
        .env("SOURCE_DATE_EPOCH", "1700000001")
        .arg("--json")
        .output()
        .unwrap();
    assert!(out.status.success());
    for e in python_entries(&p.zip_path("hello")) {
        assert_eq!(e["date_time"], serde_json::json!([1980, 1, 1, 0, 0, 0]));
    }

    // Before 1980 clamps to the DOS epoch.
    p.write(
        "lambda.toml",
        &format!("{HELLO_MANIFEST}\n[output]\nmtime = \"source-date-epoch\"\n"),
    );
    let out = p
        .cmd()
        .env("SOURCE_DATE_EPOCH", "5")
        .arg("--json")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        python_entries(&p.zip_path("hello"))[0]["date_time"],
        serde_json::json!([1980, 1, 1, 0, 0, 0])
    );
    let err = p.fail(&[]);
    assert!(err.contains("SOURCE_DATE_EPOCH is not set"), "{err}");
}

#[test]
fn git_mtime_uses_last_commit_time() {
    let p = TestProject::hello();
    p.write(
        "lambda.toml",
        &format!("{HELLO_MANIFEST}\n[output]\nmtime = \"git\"\n"),
    );
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(args)
            .current_dir(p.path())
            .env("GIT_AUTHOR_DATE", "@1700000001 +0000")
            .env("GIT_COMMITTER_DATE", "@1700000001 +0000")
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    git(&["init", "-q"]);
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "x"]);
    p.build_json();
    assert_eq!(
        python_entries(&p.zip_path("hello"))[0]["date_time"],
        serde_json::json!([2023, 11, 14, 22, 13, 20])
    );
}

/// Builds the rich project in a fresh directory with the given variations.
fn build_variant(
    reverse_order: bool,
    mode: u32,
    mtime: u64,
    umask: &str,
    tz: &str,
    lc: &str,
) -> (Vec<u8>, String) {
    let p = TestProject::empty();
    let src = rich_project();
    // Recreate the files in a chosen order, with chosen modes and mtimes.
    let mut files: Vec<_> = walkdir(src.path());
    if reverse_order {
        files.reverse();
    }
    for rel in &files {
        let bytes = std::fs::read(src.path().join(rel)).unwrap();
        p.write_bytes(rel, &bytes);
        let exec = rel == "bin/run";
        let m = if exec { mode | 0o111 } else { mode };
        std::fs::set_permissions(p.path().join(rel), std::fs::Permissions::from_mode(m)).unwrap();
        p.set_mtime(rel, mtime);
    }
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("umask {umask} && exec \"$0\" --json"))
        .arg(lbuild_bin())
        .current_dir(p.path())
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("LBUILD_CACHE_DIR")
        .env("TZ", tz)
        .env("LC_ALL", lc)
        .output()
        .unwrap();
    assert_success(&out);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    (
        p.zip_bytes("hello"),
        json["sha256"].as_str().unwrap().to_string(),
    )
}

fn walkdir(root: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push(
                    e.path()
                        .strip_prefix(root)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    out.sort();
    out
}

#[test]
fn same_inputs_same_bytes_across_paths_umask_mtimes_order_tz_and_locale() {
    let (a, sha_a) = build_variant(false, 0o644, 1_000_000_000, "022", "UTC", "C");
    let (b, sha_b) = build_variant(
        true,
        0o600,
        1_600_000_000,
        "077",
        "Asia/Kolkata",
        "de_DE.UTF-8",
    );
    let (c, _) = build_variant(
        false,
        0o664,
        1_300_000_000,
        "002",
        "America/New_York",
        "C.UTF-8",
    );
    assert_eq!(sha_a, sha_b);
    assert_eq!(sha_a, sha256_hex(&a));
    assert!(a == b && b == c, "zip bytes differ between environments");
}

/// Any change to these bytes must be deliberate: bump FORMAT_VERSION in
/// src/archive.rs and update the hash here.
#[test]
fn golden_zip_hash() {
    let p = TestProject::empty();
    p.write(
        "lambda.toml",
        "[function]\nname = \"golden\"\nhandler = \"app.handler\"\n\n[config]\nfiles = [\"config.json\"]\n",
    );
    p.write(
        "app.py",
        "import json\n\n\ndef handler(event, context):\n    return {\"ok\": True}\n",
    );
    p.write("lib/__init__.py", "");
    p.write(
        "lib/text.py",
        &"def words():\n    return 'lorem ipsum dolor sit amet'\n".repeat(20),
    );
    p.write("config.json", "{\"stage\": \"prod\"}\n");
    // Larger than 64 KiB: several deflate blocks from libdeflate.
    let table: String = (0..20_000u32)
        .map(|i| format!("ROW_{i} = {}\n", i.wrapping_mul(2_654_435_761) % 9973))
        .collect();
    p.write("lib/table.py", &table);
    let json = p.build_json();
    assert_eq!(json["entries"], 5);
    assert_eq!(
        json["sha256"].as_str().unwrap(),
        "ed2bc2a169f97d72717eaeb69661d3b0cc64452cd0fa56b4f6754f0b5bc6dd9e",
        "output bytes changed: if deliberate, bump FORMAT_VERSION and update this hash"
    );
    assert_eq!(
        sha256_hex(&p.zip_bytes("golden")),
        json["sha256"].as_str().unwrap()
    );
}

#[test]
fn code_sha256_is_base64_of_the_zip_sha256() {
    let p = TestProject::hello();
    let json = p.build_json();
    let out = Command::new("python3")
        .arg("-c")
        .arg("import base64,hashlib,sys;print(base64.b64encode(hashlib.sha256(open(sys.argv[1],'rb').read()).digest()).decode())")
        .arg(p.zip_path("hello"))
        .output()
        .unwrap();
    assert_eq!(
        json["code_sha256"].as_str().unwrap(),
        String::from_utf8_lossy(&out.stdout).trim()
    );
    assert_eq!(json["function"], "hello");
    assert_eq!(
        json["size"].as_u64().unwrap(),
        std::fs::metadata(p.zip_path("hello")).unwrap().len()
    );
}

#[test]
fn symlink_inside_root_is_followed() {
    let p = TestProject::hello();
    p.write("shared/common.py", "X = 1\n");
    std::os::unix::fs::symlink("shared/common.py", p.path().join("common.py")).unwrap();
    p.build_json();
    let entries = python_entries(&p.zip_path("hello"));
    let common = entries
        .iter()
        .find(|e| e["name"] == "common.py")
        .expect("link packaged");
    assert_eq!(common["data"], "X = 1\n");
    assert_eq!(common["external_attr"].as_u64().unwrap() >> 16, 0o100644);
}

/// Bytes shaped like machine code (for the streamed path's size check): a
/// skewed choice among 4,000 short random "instructions", some followed by
/// a random 3-byte operand. Compresses to about half, as a real extension
/// module does, and is not plain text (on which zlib's level 9 is larger
/// than its own level 6).
fn machine_code_like(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let vocab: Vec<Vec<u8>> = (0..4000)
        .map(|_| {
            let n = 2 + next() % 10;
            (0..n).map(|_| next() as u8).collect()
        })
        .collect();
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        let r = next();
        let k = (r >> 8) % 4000;
        out.extend_from_slice(&vocab[(k * k / 4000) as usize]);
        if r & 7 == 0 {
            out.extend_from_slice(&(r >> 40).to_le_bytes()[..3]);
        }
    }
    out.truncate(len);
    out
}

/// Two compressors write entries: libdeflate in memory up to 32 MiB, zlib-rs
/// in pieces above. A zip holding both kinds reads back with zipfile and
/// `unzip -t`, the large entry is no larger than C zlib's level 6 makes
/// it (issue 20: a big extension module came out larger than `zip -6`'s),
/// and a rebuild that copies the large entry from the store gives the bytes
/// of a cold build.
#[test]
fn large_streamed_and_small_entries_read_back_and_rebuild_as_cold() {
    let p = TestProject::hello();
    // Just above the 32 MiB streaming threshold.
    let big = machine_code_like((32 << 20) + 300_000);
    p.write(
        "lambda.toml",
        &format!("{HELLO_MANIFEST}\n[sources]\ninclude = [\"**/*.py\", \"lib/*.so\"]\n"),
    );
    p.write_bytes("lib/native.so", &big);
    p.write("lib/small.py", &"X = 'small'\n".repeat(100));
    let first = p.build_json();
    let zip = p.zip_path("hello");
    unzip_test(&zip);
    let entries = python_entries(&zip);
    let entry = |n: &str| entries.iter().find(|e| e["name"] == n).unwrap().clone();
    for name in ["lib/native.so", "lib/small.py", "app.py"] {
        let e = entry(name);
        assert_eq!(e["compress_type"], 8, "{name} deflated");
        assert!(e["compress_size"].as_u64() < e["file_size"].as_u64());
    }
    assert_eq!(entry("lib/small.py")["data"], "X = 'small'\n".repeat(100));
    // Read back byte for byte, and C zlib's raw deflate at level 6 (what
    // `zip -6` writes) as the size to beat.
    let script = r#"
import sys, zipfile, zlib
data = open(sys.argv[2], 'rb').read()
assert zipfile.ZipFile(sys.argv[1]).read('lib/native.so') == data
c = zlib.compressobj(6, zlib.DEFLATED, -15)
print(len(c.compress(data) + c.flush()))
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(&zip)
        .arg(p.path().join("lib/native.so"))
        .output()
        .unwrap();
    assert_success(&out);
    let zlib6: u64 = String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let ours = entry("lib/native.so")["compress_size"].as_u64().unwrap();
    assert!(
        ours <= zlib6,
        "streamed entry {ours} bytes, larger than zlib -6's {zlib6}"
    );

    // Edit a small file: the large entry is copied from the store.
    p.write("lib/small.py", "X = 'edited'\n");
    let edited = p.build_json();
    assert_ne!(edited["sha256"], first["sha256"]);
    assert!(
        stage_details(&edited, "package")["reused"]
            .as_u64()
            .unwrap()
            >= 1
    );
    unzip_test(&zip);
    std::fs::remove_dir_all(p.path().join(".lbuild")).unwrap();
    std::fs::remove_dir_all(p.path().join("dist")).unwrap();
    // And the machine store, so the large entry is deflated again: on one
    // CPU this time (the first this process may run on), so its pieces go
    // through one thread where the builds above used every core, and the
    // bytes must not differ.
    for e in std::fs::read_dir(p.store.path()).unwrap() {
        let path = e.unwrap().path();
        if path.is_dir() {
            std::fs::remove_dir_all(&path).unwrap();
        } else {
            std::fs::remove_file(&path).unwrap();
        }
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let allowed = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim();
    let first_cpu = allowed.split([',', '-']).next().unwrap();
    let mut pinned = Command::new("taskset");
    pinned
        .args(["-c", first_cpu])
        .arg(lbuild_bin())
        .arg("--json");
    hermetic(&mut pinned)
        .current_dir(p.path())
        .env("LBUILD_STORE", p.store.path());
    let out = pinned.output().unwrap();
    assert_success(&out);
    let cold: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let details = stage_details(&cold, "package");
    assert_eq!(details["reused"], 0);
    assert_eq!(
        details["compressed"].as_u64().unwrap(),
        details["entries"].as_u64().unwrap(),
        "every entry compressed afresh: {details}"
    );
    assert_eq!(
        cold["sha256"], edited["sha256"],
        "incremental differs from cold on one CPU"
    );
}

/// `level` runs over libdeflate's range: 12 builds (and reads back), 13 is
/// refused with the range in the hint.
#[test]
fn level_12_builds_and_13_is_refused() {
    let p = TestProject::hello();
    p.write(
        "lambda.toml",
        &format!("{HELLO_MANIFEST}\n[output]\nlevel = 12\n"),
    );
    p.write(
        "lib/text.py",
        &"def f():\n    return 'lorem ipsum'\n".repeat(40),
    );
    p.build_json();
    let entries = python_entries(&p.zip_path("hello"));
    let text = entries.iter().find(|e| e["name"] == "lib/text.py").unwrap();
    assert_eq!(text["compress_type"], 8);

    p.write(
        "lambda.toml",
        &format!("{HELLO_MANIFEST}\n[output]\nlevel = 13\n"),
    );
    let err = p.fail(&[]);
    assert!(
        err.contains("compression level 13 is out of range"),
        "{err}"
    );
    assert!(err.contains("0 (store) to 12"), "{err}");
}
