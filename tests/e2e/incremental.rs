//! Incremental builds: what reruns after which edit, reuse of compressed
//! entries, and the invariant that makes caching safe — an incremental zip
//! is byte-identical to a zip built from an empty cache.

use std::process::Command;

use crate::common::*;

/// Copies the project's inputs (not dist/ or .lbuild/) to a fresh directory,
/// builds there from an empty cache and asserts the bytes match.
fn assert_matches_cold(p: &TestProject, name: &str) {
    let cold = TestProject::empty();
    let status = Command::new("sh")
        .arg("-c")
        .arg("tar -C \"$0\" --exclude=./dist --exclude=./.lbuild -cf - . | tar -C \"$1\" --warning=no-timestamp -xf -")
        .arg(p.path())
        .arg(cold.path())
        .status()
        .unwrap();
    assert!(status.success());
    let json = cold.build_json();
    assert!(
        statuses(&json).iter().all(|(_, s)| s != "cached"),
        "cold build hit a cache: {json}"
    );
    assert_eq!(
        sha256_hex(&p.zip_bytes(name)),
        json["sha256"].as_str().unwrap(),
        "incremental zip differs from a cold build"
    );
    unzip_test(&p.zip_path(name));
}

fn hello_with_level(level: u32) -> String {
    format!("{HELLO_MANIFEST}\n[output]\nlevel = {level}\n")
}

#[test]
fn second_run_is_all_cached_and_rewrites_nothing() {
    let p = TestProject::hello();
    let first = p.build_json();
    assert_eq!(status_of(&first, "sources"), "ran");
    assert_eq!(status_of(&first, "package"), "ran");
    assert_eq!(status_of(&first, "deps"), "skipped");
    let mtime = std::fs::metadata(p.zip_path("hello"))
        .unwrap()
        .modified()
        .unwrap();
    let bytes = p.zip_bytes("hello");

    let second = p.build_json();
    for stage in ["sources", "config", "package"] {
        assert_eq!(status_of(&second, stage), "cached", "{stage}: {second}");
    }
    assert_eq!(second["sha256"], first["sha256"]);
    assert_eq!(p.zip_bytes("hello"), bytes);
    assert_eq!(
        std::fs::metadata(p.zip_path("hello"))
            .unwrap()
            .modified()
            .unwrap(),
        mtime
    );
}

#[test]
fn handler_edit_reruns_sources_and_package_and_reuses_the_rest() {
    let p = TestProject::hello();
    p.build_json();
    p.write(
        "app.py",
        "from util import greet\n\ndef handler(event, context):\n    return greet() + '!'\n",
    );
    let json = p.build_json();
    assert_eq!(status_of(&json, "sources"), "ran");
    assert_eq!(status_of(&json, "config"), "cached");
    assert_eq!(status_of(&json, "package"), "ran");
    // Only the handler was compressed; the rest was raw-copied.
    let d = stage_details(&json, "package");
    assert_eq!(
        (d["compressed"].as_u64(), d["reused"].as_u64()),
        (Some(1), Some(2)),
        "{d}"
    );
    assert_matches_cold(&p, "hello");
}

#[test]
fn config_edit_reruns_config_and_package_only() {
    let p = TestProject::hello();
    p.build_json();
    p.write("config/settings.json", "{\"a\": 2}\n");
    let json = p.build_json();
    assert_eq!(status_of(&json, "sources"), "cached");
    assert_eq!(status_of(&json, "config"), "ran");
    assert_eq!(status_of(&json, "package"), "ran");
    assert_matches_cold(&p, "hello");
}

#[test]
fn incremental_equals_cold_after_every_kind_of_edit() {
    let p = TestProject::hello();
    p.build_json();
    type Edit = Box<dyn Fn(&TestProject)>;
    let steps: Vec<(&str, Edit)> = vec![
        (
            "handler edit",
            Box::new(|p| {
                p.write(
                    "app.py",
                    "from util import greet\n\ndef handler(e, c):\n    return 2\n",
                )
            }),
        ),
        (
            "config edit",
            Box::new(|p| p.write("config/settings.json", "{\"b\": true}\n")),
        ),
        (
            "file added",
            Box::new(|p| p.write("pkg/new_module.py", &"x = 'some text'\n".repeat(50))),
        ),
        (
            "file added in config",
            Box::new(|p| p.write("config/more.json", "[1, 2, 3]\n")),
        ),
        ("file deleted", Box::new(|p| p.remove("config/more.json"))),
        (
            "file renamed",
            Box::new(|p| {
                std::fs::rename(
                    p.path().join("pkg/new_module.py"),
                    p.path().join("pkg/renamed.py"),
                )
                .unwrap()
            }),
        ),
        (
            "level change",
            Box::new(|p| p.write("lambda.toml", &hello_with_level(9))),
        ),
        (
            "store level",
            Box::new(|p| p.write("lambda.toml", &hello_with_level(0))),
        ),
        (
            "back to default",
            Box::new(|p| p.write("lambda.toml", HELLO_MANIFEST)),
        ),
    ];
    for (what, edit) in steps {
        edit(&p);
        let json = p.build_json();
        assert_eq!(status_of(&json, "package"), "ran", "{what}: {json}");
        assert_matches_cold(&p, "hello");
    }
}

#[test]
fn reverting_an_edit_gives_the_first_bytes_again() {
    let p = TestProject::hello();
    let first = p.build_json();
    p.write("util.py", "def greet():\n    return 'changed'\n");
    let changed = p.build_json();
    assert_ne!(changed["sha256"], first["sha256"]);
    p.write("util.py", "def greet():\n    return 'hi'\n");
    let reverted = p.build_json();
    assert_eq!(reverted["sha256"], first["sha256"]);
}

#[test]
fn noop_build_reads_no_file_contents() {
    let p = TestProject::hello();
    // Files older than the racy window: their fingerprints can be trusted.
    for f in ["app.py", "util.py", "config/settings.json", "lambda.toml"] {
        p.set_mtime(f, 1_500_000_000);
    }
    p.build_json();
    let json = p.build_json();
    for stage in ["sources", "config"] {
        assert_eq!(
            stage_details(&json, stage)["hashed"],
            0,
            "{stage} re-read files: {json}"
        );
        assert_eq!(status_of(&json, stage), "cached");
    }
}

/// A WAL left behind is replayed in full by every later process (no-ops
/// included) when it opens the cache: a build empties it before exiting,
/// and a no-op writes nothing to it.
#[test]
fn builds_leave_no_write_ahead_log_to_replay() {
    let p = TestProject::hello();
    let wal = p.path().join(".lbuild/cache.sqlite-wal");
    let wal_len = || std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    p.build_json();
    assert_eq!(wal_len(), 0, "the cold build left its WAL behind");
    let db = std::fs::read(p.path().join(".lbuild/cache.sqlite")).unwrap();
    p.write("app.py", "def handler(event, context):\n    return 2\n");
    p.build_json();
    assert_eq!(wal_len(), 0, "the edit build left its WAL behind");
    assert_ne!(
        std::fs::read(p.path().join(".lbuild/cache.sqlite")).unwrap(),
        db,
        "the edit's records never reached the database"
    );
    let json = p.build_json();
    assert_eq!(status_of(&json, "package"), "cached");
    assert_eq!(wal_len(), 0, "a no-op wrote to the cache");
}

#[test]
fn an_edit_keeping_size_and_mtime_is_still_seen() {
    // Content changes, same size, mtime forced back to the recorded value:
    // the fingerprint must not vouch for it (here ctime and the racy window
    // both refuse it; the racy window alone is unit-tested in
    // cache/fingerprint.rs, where ctime cannot help).
    let p = TestProject::hello();
    p.set_mtime("util.py", 2_000_000_000); // in the future: always racy
    let first = p.build_json();
    p.write("util.py", "def greet():\n    return 'ho'\n");
    p.set_mtime("util.py", 2_000_000_000);
    let second = p.build_json();
    assert_eq!(status_of(&second, "sources"), "ran");
    assert_ne!(second["sha256"], first["sha256"]);
    assert_matches_cold(&p, "hello");
}

#[test]
fn corrupted_store_entry_is_detected_and_recompressed() {
    let p = TestProject::hello();
    p.write(
        "util.py",
        &"def greet():\n    return 'hi there'\n".repeat(40),
    );
    p.build_json();
    // Flip a byte inside util.py's compressed data in the reuse store.
    let store = p.path().join(".lbuild/store.zip");
    let script = r#"
import sys, zipfile
path = sys.argv[1]
info = zipfile.ZipFile(path).getinfo('util.py')
with open(path, 'r+b') as f:
    f.seek(info.header_offset + 26)
    n, m = int.from_bytes(f.read(2), 'little'), int.from_bytes(f.read(2), 'little')
    pos = info.header_offset + 30 + n + m + info.compress_size // 2
    f.seek(pos); b = f.read(1); f.seek(pos); f.write(bytes([b[0] ^ 0xff]))
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&store)
        .output()
        .unwrap();
    assert_success(&out);

    p.write(
        "app.py",
        "from util import greet\n\ndef handler(event, context):\n    return 3\n",
    );
    let json = p.build_json();
    let d = stage_details(&json, "package");
    assert_eq!(d["rejected"], 1, "{d}");
    // Both small (below what the machine store keeps): compressed.
    assert_eq!(d["compressed"], 2, "{d}");
    assert_matches_cold(&p, "hello");
}

#[test]
fn deleted_or_tampered_zip_is_rebuilt_from_the_store() {
    let p = TestProject::hello();
    let first = p.build_json();
    p.remove("dist/hello.zip");
    let json = p.build_json();
    assert_eq!(status_of(&json, "package"), "ran");
    assert_eq!(stage_details(&json, "package")["compressed"], 0);
    assert_eq!(json["sha256"], first["sha256"]);

    // Overwritten with other bytes (not in place: the store stays intact).
    std::fs::remove_file(p.zip_path("hello")).unwrap();
    std::fs::write(p.zip_path("hello"), b"not a zip").unwrap();
    let json = p.build_json();
    assert_eq!(status_of(&json, "package"), "ran");
    assert_eq!(json["sha256"], first["sha256"]);
}

#[test]
fn manifest_is_found_from_a_subdirectory_and_with_manifest_flag() {
    let p = TestProject::hello();
    let out = p
        .cmd()
        .current_dir(p.path().join("config"))
        .arg("--json")
        .output()
        .unwrap();
    assert_success(&out);
    let elsewhere = TestProject::empty();
    let out = elsewhere
        .cmd()
        .args(["--json", "--manifest"])
        .arg(p.path().join("lambda.toml"))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(p.zip_path("hello").exists());
}

#[test]
fn init_writes_a_buildable_manifest_and_clean_removes_outputs() {
    let p = TestProject::empty();
    p.write(
        "lambda_function.py",
        "def lambda_handler(event, context):\n    return 1\n",
    );
    let out = p.run(&["init"]);
    assert_success(&out);
    let text = std::fs::read_to_string(p.path().join("lambda.toml")).unwrap();
    assert!(
        text.contains("handler = \"lambda_function.lambda_handler\""),
        "{text}"
    );
    let err = p.fail(&["init"]);
    assert!(err.contains("--force"), "{err}");

    let json = p.build_json();
    let zip = std::path::PathBuf::from(json["zip"].as_str().unwrap());
    assert_eq!(entry_names(&zip), ["lambda_function.py"]);
    let out = p.run(&["clean"]);
    assert!(out.status.success());
    assert!(!zip.exists());
    // The cache is emptied; only the (held) lock file and the mark stay.
    let mut left: Vec<_> = std::fs::read_dir(p.path().join(".lbuild"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, ["CACHEDIR.TAG", "lock"]);
    // And the next build starts from nothing.
    let json = p.build_json();
    assert_eq!(status_of(&json, "sources"), "ran");
}

#[test]
fn cache_dir_override_is_honoured() {
    let p = TestProject::hello();
    let cache = TestProject::empty();
    let out = p
        .cmd()
        .env("LBUILD_CACHE_DIR", cache.path())
        .arg("--json")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(cache.path().join("cache.sqlite").exists());
    assert!(!p.path().join(".lbuild").exists());
}

#[test]
fn temp_zip_left_by_a_killed_build_is_cleaned_up() {
    let p = TestProject::hello();
    // Temp files carry their writer's pid: one whose process is gone is
    // a leftover (a live writer's is left alone, see safety.rs).
    p.write(
        &format!("dist/.lbuild-hello.zip-{}-abc123.tmp", dead_pid()),
        "partial",
    );
    // Another function's temp file in a shared output dir is not ours.
    p.write("dist/.lbuild-other.zip-def456.tmp", "busy");
    p.build_json();
    assert_eq!(
        dir_names(&p.path().join("dist")),
        [".lbuild-other.zip-def456.tmp", "hello.zip"]
    );
}

/// The pid of a process that has exited.
fn dead_pid() -> u32 {
    let mut dead = std::process::Command::new("true").spawn().unwrap();
    let pid = dead.id();
    dead.wait().unwrap();
    pid
}

/// The names in `dir`, sorted.
fn dir_names(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// A build killed after its zips were written but before they were
/// published leaves temp files; the next build may have nothing to write
/// (the inputs went back to what the zip in place was built from, or the
/// killed build's work was not needed): its no-op removes them all the same.
#[test]
fn temp_zip_left_by_a_killed_build_is_cleaned_up_by_a_no_op() {
    let p = TestProject::hello();
    p.build_json();
    p.write(
        &format!("dist/.lbuild-hello.zip-{}-abc123.tmp", dead_pid()),
        "partial",
    );
    let json = p.build_json();
    assert_eq!(status_of(&json, "package"), "cached", "{json}");
    assert_eq!(dir_names(&p.path().join("dist")), ["hello.zip"]);
}

#[test]
fn verbose_explains_what_each_key_is_made_of() {
    let p = TestProject::hello();
    let out = p.run(&["-v"]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "include = **/*.py",
        "app.py = ",
        "deflate = libdeflate",
        "level = 7",
        "lbuild-format = ",
    ] {
        assert!(err.contains(needle), "-v output lacks {needle:?}:\n{err}");
    }
}

#[test]
fn gc_with_an_absurd_day_count_keeps_everything() {
    // Regression: days * 86400 wrapped around and gc forgot every stage.
    let p = TestProject::hello();
    p.build_json();
    let out = p.run(&["gc", "--days", "18446744073709551615"]);
    assert_success(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("removed 0"));
    let json = p.build_json();
    for stage in ["sources", "config", "package"] {
        assert_eq!(status_of(&json, stage), "cached", "{json}");
    }
}

/// `lbuild cache stats` reports what builds found ready: zips already up
/// to date, entries copied rather than compressed again.
#[test]
fn cache_stats_counts_hits_over_builds() {
    let p = TestProject::hello();
    p.build_json(); // cold: 3 entries compressed
    p.build_json(); // no-op: the zip is up to date
    p.write(
        "app.py",
        "from util import greet\n\ndef handler(event, context):\n    return greet() * 2\n",
    );
    p.build_json(); // the edit: app.py compressed, 2 entries copied
    let out = p.run(&["cache", "stats", "--json"]);
    assert_success(&out);
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let hits = &stats["hits"];
    assert_eq!(hits["builds"], 3, "{stats}");
    assert_eq!(hits["zips_cached"], 1, "{stats}");
    assert_eq!(hits["entries_compressed"], 4, "{stats}");
    assert_eq!(hits["entries_copied"], 2, "{stats}");
    assert_eq!(hits["trees_installed"], 0, "{stats}");
    let human = p.run(&["cache", "stats"]);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(text.contains("zips     1/3 (33%)"), "{text}");
    assert!(text.contains("entries  2/6 (33%)"), "{text}");
}
