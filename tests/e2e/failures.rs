//! A failed or killed build never changes the output, the cache only ever
//! makes builds slower, and lbuild removes only what it created: the store
//! digest, in-place edits of the output, write ordering, corrupt caches,
//! `clean`, temp files, locks, and SIGKILL at many points of a build.

use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;

/// The zip a cold build of `p`'s inputs (copied without dist/ and
/// .lbuild/ to a fresh directory) gives.
fn cold_zip(p: &TestProject, name: &str) -> Vec<u8> {
    cold_zip_timed(p, name).0
}

/// [`cold_zip`], and how long the cold build took.
fn cold_zip_timed(p: &TestProject, name: &str) -> (Vec<u8>, Duration) {
    let cold = TestProject::empty();
    let status = Command::new("sh")
        .arg("-c")
        .arg("tar -C \"$0\" --exclude=./dist --exclude=./.lbuild -cf - . | tar -C \"$1\" --warning=no-timestamp -xf -")
        .arg(p.path())
        .arg(cold.path())
        .status()
        .unwrap();
    assert!(status.success());
    let started = Instant::now();
    cold.build_json();
    (cold.zip_bytes(name), started.elapsed())
}

fn warnings(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .collect()
}

pub(crate) fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn store_digest_covers_the_low_bits_of_external_attributes() {
    // Regression: the store record's digest left out the DOS half of the
    // external attributes, so a flipped byte there was copied into every
    // later incremental zip (incremental != cold).
    let p = TestProject::hello();
    p.build_json();
    let store = p.path().join(".lbuild/store.zip");
    let script = r#"
import struct, sys
path, target = sys.argv[1], sys.argv[2].encode()
data = bytearray(open(path, 'rb').read())
eocd = data.rfind(b'PK\x05\x06')
count, size, offset = struct.unpack('<HII', data[eocd + 10:eocd + 20])
pos, flipped = offset, 0
for _ in range(count):
    assert data[pos:pos + 4] == b'PK\x01\x02'
    n, m, k = struct.unpack('<HHH', data[pos + 28:pos + 34])
    if data[pos + 46:pos + 46 + n] == target:
        data[pos + 38] ^= 0x01  # low 16 bits of the external attributes
        flipped += 1
    pos += 46 + n + m + k
assert flipped == 1, flipped
open(path, 'r+b').write(data)
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(&store)
        .arg("util.py")
        .output()
        .unwrap();
    assert_success(&out);

    p.write(
        "app.py",
        "from util import greet\n\ndef handler(event, context):\n    return greet() + '!'\n",
    );
    let json = p.build_json();
    let d = stage_details(&json, "package");
    assert_eq!(d["rejected"], 1, "{d}");
    assert_eq!(p.zip_bytes("hello"), cold_zip(&p, "hello"));
    unzip_test(&p.zip_path("hello"));
}

#[test]
fn an_in_place_edit_of_the_zip_restoring_size_and_mtime_is_noticed() {
    // Regression: "still in place" compared size, mtime and inode only, so
    // `dd conv=notrunc` + `touch -r` left a zip whose CRC fails "Up to date".
    let p = TestProject::hello();
    p.build_json();
    let zip = p.zip_path("hello");
    let good = p.zip_bytes("hello");
    let before = std::fs::metadata(&zip).unwrap();
    let mtime = before.modified().unwrap();
    // Byte 40 lies in the first entry's compressed data.
    loop {
        let mut f = std::fs::OpenOptions::new().write(true).open(&zip).unwrap();
        f.seek(SeekFrom::Start(40)).unwrap();
        f.write_all(&[good[40] ^ 0xff]).unwrap();
        f.set_modified(mtime).unwrap();
        drop(f);
        let after = std::fs::metadata(&zip).unwrap();
        assert_eq!((after.len(), after.ino()), (before.len(), before.ino()));
        assert_eq!(after.modified().unwrap(), mtime);
        // The case under test needs a ctime that moved: on a coarse clock,
        // write again until it has.
        if (after.ctime(), after.ctime_nsec()) != (before.ctime(), before.ctime_nsec()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = p.run(&[]);
    assert_success(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("Up to date"), "{stderr}");
    assert_eq!(p.zip_bytes("hello"), good);
    unzip_test(&zip);
}

#[test]
fn a_store_that_cannot_be_written_is_a_warning_and_the_zip_is_still_right() {
    // Regression: the zip was renamed into place before the store was
    // refreshed, so a failing store exited 1 with the output changed.
    let p = TestProject::hello();
    p.build_json();
    let store = p.path().join(".lbuild/store.zip");
    std::fs::remove_file(&store).unwrap();
    // A non-empty directory where the store goes: the rename onto it fails
    // (for root too, unlike a read-only directory).
    p.write(".lbuild/store.zip/keep", "x");
    p.write(
        "app.py",
        "from util import greet\n\ndef handler(event, context):\n    return greet() + '?'\n",
    );
    let out = p.run(&[]);
    assert_success(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let w = warnings(&stderr);
    assert_eq!(w.len(), 1, "{stderr}");
    assert!(w[0].contains("reuse store"), "{stderr}");
    assert_eq!(p.zip_bytes("hello"), cold_zip(&p, "hello"));
    // Nothing staged is left behind.
    assert!(!p.path().join(".lbuild/store.zip.new").exists());
    assert_eq!(names_in(&p.path().join("dist")), ["hello.zip"]);
    // And the next build is up to date.
    let json = p.build_json();
    assert_eq!(status_of(&json, "package"), "cached", "{json}");
}

/// Runs `lbuild` in `p` with the file-size limit at `limit` bytes (SIGXFSZ
/// ignored, so a write past it fails with EFBIG): a full disk, for root too.
fn run_with_file_size_limit(p: &TestProject, limit: u64) -> std::process::Output {
    use std::os::unix::process::CommandExt;
    let mut cmd = p.cmd();
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let lim = libc::rlimit {
                rlim_cur: limit as libc::rlim_t,
                rlim_max: limit as libc::rlim_t,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.output().unwrap()
}

#[test]
fn cache_records_that_cannot_be_written_are_a_warning_not_a_failure() {
    // Regression: a full cache file system failed the build after the zip
    // had changed. Now records are best effort: exit 0, one warning, the
    // right zip, and a correct (if slower) next build. With the WAL emptied
    // after each build even opening it needs space: the build goes on with
    // a cache in memory.
    let p = TestProject::hello();
    p.build_json();
    // A record needs at least one 4 KiB database page (in the WAL, then
    // the database); the zip and the reuse store are far smaller.
    let limit = 4096;
    for small in [p.zip_path("hello"), p.path().join(".lbuild/store.zip")] {
        let size = std::fs::metadata(&small).unwrap().len();
        assert!(2 * size < limit, "{} is {size} bytes", small.display());
    }
    p.write(
        "app.py",
        "from util import greet\n\ndef handler(event, context):\n    return greet() + '#'\n",
    );
    // Enough for the zip, too little for the cache to grow.
    builds_under_file_size_limit_with_one_warning(&p, limit, "building without the cache");
}

#[test]
fn cache_writes_failing_mid_build_are_a_warning_not_a_failure() {
    // The cache opens, then runs out of room while recording: the zip is
    // still right, one warning says so, and the next build is quiet.
    // Long names with empty bodies: the records (path, fingerprint, inputs
    // and store index per file) outgrow the zip several times over.
    let p = TestProject::hello();
    let long = "m".repeat(150);
    let write_all = |body: &str| {
        for i in 0..100 {
            p.write(&format!("pkg/{long}_{i}.py"), body);
        }
    };
    write_all("");
    p.build_json();
    write_all("#\n");
    let limit = 64 * 1024;
    for small in [p.zip_path("hello"), p.path().join(".lbuild/store.zip")] {
        let size = std::fs::metadata(&small).unwrap().len();
        assert!(size < limit, "{} is {size} bytes", small.display());
    }
    builds_under_file_size_limit_with_one_warning(&p, limit, "could not write to the cache");
}

/// Builds `p` under a file-size limit of `limit` bytes: exit 0, exactly one
/// warning, containing `warning`, a zip equal to a cold build's; then an
/// unlimited build is quiet and gives the same zip.
fn builds_under_file_size_limit_with_one_warning(p: &TestProject, limit: u64, warning: &str) {
    let out = run_with_file_size_limit(p, limit);
    assert_success(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let w = warnings(&stderr);
    assert_eq!(w.len(), 1, "{stderr}");
    assert!(w[0].contains(warning), "{stderr}");
    let cold = cold_zip(p, "hello");
    assert_eq!(p.zip_bytes("hello"), cold);
    let out = p.run(&[]);
    assert_success(&out);
    assert!(warnings(&String::from_utf8_lossy(&out.stderr)).is_empty());
    assert_eq!(p.zip_bytes("hello"), cold);
}

/// Builds, damages the cache with `damage`, edits the handler, and checks
/// the build heals: exit 0, one warning, the database moved aside, the
/// right zip, and a quiet build after.
fn corrupt_cache_heals(damage: impl FnOnce(&Path)) {
    let p = TestProject::hello();
    p.build_json();
    damage(&p.path().join(".lbuild/cache.sqlite"));
    p.write(
        "app.py",
        "from util import greet\n\ndef handler(event, context):\n    return greet() * 2\n",
    );
    let out = p.run(&[]);
    assert_success(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let w = warnings(&stderr);
    assert_eq!(w.len(), 1, "{stderr}");
    assert!(w[0].contains("corrupt"), "{stderr}");
    assert!(p.path().join(".lbuild/cache.sqlite.corrupt-1").exists());
    assert_eq!(p.zip_bytes("hello"), cold_zip(&p, "hello"));
    let out = p.run(&["--json"]);
    assert_success(&out);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status_of(&json, "package"), "cached", "{json}");
}

/// Folds the WAL into the database, so damage to the file is what SQLite
/// reads.
fn checkpoint(db: &Path) {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute('PRAGMA wal_checkpoint(TRUNCATE)'); c.close()",
        ])
        .arg(db)
        .output()
        .unwrap();
    assert_success(&out);
}

#[test]
fn a_truncated_cache_database_is_moved_aside_and_rebuilt() {
    corrupt_cache_heals(|db| {
        checkpoint(db);
        let len = std::fs::metadata(db).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(db).unwrap();
        f.set_len(len / 2).unwrap();
    });
}

#[test]
fn a_garbled_cache_database_is_moved_aside_and_rebuilt() {
    corrupt_cache_heals(|db| {
        checkpoint(db);
        let mut f = std::fs::OpenOptions::new().write(true).open(db).unwrap();
        f.write_all(&[0xab; 4096]).unwrap();
    });
}

#[test]
fn a_cache_database_missing_a_table_is_moved_aside_and_rebuilt() {
    corrupt_cache_heals(|db| {
        let out = Command::new("python3")
            .args([
                "-c",
                "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute('DROP TABLE stages'); c.commit(); c.close()",
            ])
            .arg(db)
            .output()
            .unwrap();
        assert_success(&out);
    });
}

#[test]
fn clean_refuses_a_directory_lbuild_did_not_mark() {
    // Regression: with LBUILD_CACHE_DIR=. `clean` deleted src/, lambda.toml
    // and .git/.
    let p = TestProject::hello();
    p.build_json();
    let out = p
        .cmd()
        .env("LBUILD_CACHE_DIR", ".")
        .arg("clean")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("CACHEDIR.TAG"), "{stderr}");
    assert!(stderr.contains("hint:"), "{stderr}");
    for kept in ["lambda.toml", "app.py", "util.py", "config/settings.json"] {
        assert!(p.path().join(kept).exists(), "{kept} removed");
    }
    assert!(p.zip_path("hello").exists());
}

#[test]
fn clean_removes_only_what_lbuild_put_in_its_cache_directory() {
    let p = TestProject::hello();
    p.build_json();
    assert!(
        std::fs::read_to_string(p.path().join(".lbuild/CACHEDIR.TAG"))
            .unwrap()
            .starts_with("Signature: 8a477f597d28d172789f06886806bc55")
    );
    p.write(".lbuild/notes.txt", "mine");
    assert_success(&p.run(&["clean"]));
    assert_eq!(
        names_in(&p.path().join(".lbuild")),
        ["CACHEDIR.TAG", "lock", "notes.txt"]
    );
    assert!(!p.zip_path("hello").exists());

    // A cache directory lbuild created elsewhere is marked, and cleaned.
    let elsewhere = TestProject::empty();
    let cache = elsewhere.path().join("c");
    let with_cache = |args: &[&str]| {
        p.cmd()
            .env("LBUILD_CACHE_DIR", &cache)
            .args(args)
            .output()
            .unwrap()
    };
    assert_success(&with_cache(&["--json"]));
    assert!(cache.join("CACHEDIR.TAG").exists());
    assert_success(&with_cache(&["clean"]));
    assert_eq!(names_in(&cache), ["CACHEDIR.TAG", "lock"]);
}

#[test]
fn a_temp_zip_of_a_live_process_is_left_alone() {
    // Regression: each build deleted every temp zip of its output, though
    // another build (another cache directory, so another lock) may be
    // writing one.
    let p = TestProject::hello();
    let live = format!("dist/.lbuild-hello.zip-{}-busy01.tmp", std::process::id());
    p.write(&live, "being written");
    p.build_json();
    assert_eq!(
        names_in(&p.path().join("dist")),
        [live.trim_start_matches("dist/"), "hello.zip"]
    );
}

#[test]
fn a_held_lock_names_its_holder_and_times_out() {
    let p = TestProject::hello();
    p.build_json();
    // lbuild writes its pid and command line into the lock it holds.
    let text = std::fs::read_to_string(p.path().join(".lbuild/lock")).unwrap();
    let mut lines = text.lines();
    assert!(lines.next().unwrap().parse::<u32>().is_ok(), "{text}");
    assert!(lines.next().unwrap().starts_with("lbuild"), "{text}");

    // This process holds it, as a watcher would.
    let lock = std::fs::OpenOptions::new()
        .write(true)
        .open(p.path().join(".lbuild/lock"))
        .unwrap();
    lock.lock().unwrap();
    lock.set_len(0).unwrap();
    (&lock)
        .write_all(format!("{}\nlbuild watch\n", std::process::id()).as_bytes())
        .unwrap();
    let out = p.cmd().env("LBUILD_LOCK_TIMEOUT", "0.3").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let holder = format!("pid {} (lbuild watch)", std::process::id());
    assert!(
        stderr.contains("waiting for lock") && stderr.contains(&holder),
        "{stderr}"
    );
    assert!(stderr.contains("still locked by"), "{stderr}");
    assert!(stderr.contains("LBUILD_LOCK_TIMEOUT"), "{stderr}");

    // Released: the next build runs at once.
    drop(lock);
    assert_success(&p.run(&[]));
}

#[test]
fn two_cache_directories_for_one_project_take_turns() {
    // The project itself is locked too, so a build with another cache
    // directory waits rather than racing on the output.
    let p = TestProject::hello();
    let project = std::fs::File::open(p.path()).unwrap();
    project.lock().unwrap();
    let other = TestProject::empty();
    let out = p
        .cmd()
        .env("LBUILD_CACHE_DIR", other.path().join("c"))
        .env("LBUILD_LOCK_TIMEOUT", "0.3")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("another lbuild of this project"),
        "{stderr}"
    );
    assert!(!p.zip_path("hello").exists());
    drop(project);
    assert_success(
        &p.cmd()
            .env("LBUILD_CACHE_DIR", other.path().join("c"))
            .output()
            .unwrap(),
    );
}

/// A project of `files` modules of about `size` bytes each (text that
/// deflate works on), the handler and one config file.
fn big_project(files: usize, size: usize) -> TestProject {
    let p = TestProject::hello();
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for i in 0..files {
        let mut text = String::with_capacity(size + 64);
        while text.len() < size {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            text.push_str(&format!("V_{:x} = {}\n", x % 4099, x % 1_000_003));
        }
        p.write(&format!("pkg/m{i:03}.py"), &text);
    }
    p
}

#[test]
fn a_build_killed_at_any_point_leaves_the_old_zip_or_the_new_one() {
    let p = big_project(200, 10_000);
    let zip = p.zip_path("hello");
    let edit = |v: usize| {
        p.write(
            "app.py",
            &format!(
                "from util import greet\n\ndef handler(event, context):\n    return greet() + '{v}'\n"
            ),
        )
    };
    // Both versions' cold zips, and how long a cold build takes.
    edit(1);
    let cold_1 = cold_zip(&p, "hello");
    edit(0);
    let (cold_0, cold_time) = cold_zip_timed(&p, "hello");
    let colds = [cold_0, cold_1];

    // Kill points spread over each kind of build's duration: cold rounds
    // (no cache, no zip) over a cold build's, incremental rounds (one
    // edit, the other version's zip in place) over the last incremental's.
    let points: u32 = 20;
    let mut incremental_time = cold_time / 3;
    let mut previous: Option<Vec<u8>> = None;
    let mut killed = 0;
    for k in 0..points {
        let version = (k % 2) as usize;
        edit(version);
        let cold = k % 2 == 0;
        let span = if cold {
            let _ = std::fs::remove_dir_all(p.path().join(".lbuild"));
            let _ = std::fs::remove_file(&zip);
            previous = None;
            cold_time
        } else {
            incremental_time
        };
        let mut child = p.cmd().stderr(std::process::Stdio::null()).spawn().unwrap();
        std::thread::sleep(span * (k / 2 + 1) / (points / 2 + 1));
        let _ = child.kill(); // SIGKILL
        if child.wait().unwrap().code().is_none() {
            killed += 1;
        }

        let now = std::fs::read(&zip).ok();
        let ok = match &now {
            None => previous.is_none(),
            Some(bytes) => Some(bytes) == previous.as_ref() || *bytes == colds[version],
        };
        assert!(
            ok,
            "kill point {k}: the zip is neither the old one nor the new one"
        );

        let started = Instant::now();
        let out = p.run(&[]);
        if !cold {
            incremental_time = started.elapsed();
        }
        assert_success(&out);
        assert_eq!(p.zip_bytes("hello"), colds[version], "after kill point {k}");
        assert_eq!(names_in(&p.path().join("dist")), ["hello.zip"]);
        assert!(!p.path().join(".lbuild/store.zip.new").exists());
        previous = Some(colds[version].clone());
    }
    // How many kills hit a running build (not asserted: it depends on
    // the machine's speed).
    eprintln!("{killed} of {points} kills hit a running build");
    unzip_test(&zip);
}

/// `len` bytes that deflate cannot shrink, different for each `seed`.
fn noise(len: usize, seed: u32) -> Vec<u8> {
    let mut noise = Vec::with_capacity(len);
    let mut x: u32 = seed;
    for _ in 0..len {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        noise.push((x >> 16) as u8);
    }
    noise
}

#[test]
fn a_full_disk_in_the_middle_of_the_zip_prints_one_clear_error() {
    // Regression: a write that failed before the zip's end dropped the zip
    // writer unfinished; its destructor tried to finish it (writing the
    // central directory into a full buffer), failed again and printed
    // `ZipWriter::drop: failed to finalize archive: Io(Os {..})` (no
    // newline) before lbuild's own error.
    let p = TestProject::hello();
    p.build_json();
    let good = p.zip_bytes("hello");
    // Small entries fill the 1 MiB write buffer to the brim before the
    // write that fails; their central directory does not fit after it.
    for i in 0..1500 {
        p.write_bytes(&format!("pkg/module_{i:04}.py"), &noise(1024, i));
    }
    let out = run_with_file_size_limit(&p, 256 * 1024);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot write the new zip"), "{err}");
    assert!(!err.contains("ZipWriter"), "{err}");
    assert!(!err.contains("Io("), "no debug representation: {err}");
    assert_eq!(p.zip_bytes("hello"), good, "the last good zip is untouched");
    assert_eq!(names_in(&p.path().join("dist")), ["hello.zip"]);
}

#[test]
fn a_full_temp_disk_while_streaming_a_large_file_prints_one_clear_error() {
    // Regression: a file over 32 MiB is deflated into a one-entry zip in a
    // temp file; when that write failed, the dropped zip writer tried to
    // finish it and printed `ZipWriter::drop: failed to finalize archive`.
    let p = TestProject::hello();
    p.build_json();
    let good = p.zip_bytes("hello");
    p.write_bytes("big.py", &noise(33 << 20, 7));
    let out = run_with_file_size_limit(&p, 1 << 20);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("ZipWriter"), "{err}");
    assert!(!err.contains("Io("), "no debug representation: {err}");
    assert_eq!(p.zip_bytes("hello"), good, "the last good zip is untouched");
}

#[test]
fn a_full_disk_while_writing_the_zip_names_the_file_and_keeps_the_last_zip() {
    // Regression: disk full printed the zip library's debug representation
    // and named no path.
    let p = TestProject::hello();
    p.build_json();
    let good = p.zip_bytes("hello");
    // Incompressible content larger than the limit: the zip cannot fit.
    let mut noise = Vec::with_capacity(256 * 1024);
    let mut x: u32 = 12345;
    for _ in 0..256 * 1024 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        noise.push((x >> 16) as u8);
    }
    p.write_bytes("blob.py", &noise);
    let out = run_with_file_size_limit(&p, 64 * 1024);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot write the new zip"), "{err}");
    assert!(
        err.contains(".lbuild-hello.zip-"),
        "names the temp file: {err}"
    );
    assert!(!err.contains("Io("), "no debug representation: {err}");
    assert_eq!(p.zip_bytes("hello"), good, "the last good zip is untouched");
    assert_eq!(
        names_in(&p.path().join("dist")),
        ["hello.zip"],
        "no temp file left"
    );
}
