//! `lbuild watch`: the real binary watching a real temp project, read back
//! through its `--json` lines (one per rebuild). Every wait is for an event
//! (the next line, a condition), bounded by [`WAIT`]; none sleeps a fixed
//! time. "Nothing else happened" is checked with a sentinel: a further edit
//! whose line must come next and name only that edit
//! ([`Watch::assert_next_is_probe`], or with `-v`, which prints re-checks
//! that found nothing new, [`Watch::assert_next_is_recheck`]).

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{self, TestProject, python_entries, status_of, unzip_test};

/// The longest a rebuild line may take to arrive (a loaded 2-core CI box).
pub(crate) const WAIT: Duration = Duration::from_secs(20);

/// A running `lbuild watch --json`, killed when dropped.
pub(crate) struct Watch {
    child: Child,
    lines: Receiver<Value>,
    stderr: Arc<Mutex<String>>,
    /// Reads stderr until the process closes it.
    stderr_reader: Option<JoinHandle<()>>,
}

impl Watch {
    fn start(p: &TestProject, extra: &[&str]) -> Watch {
        let mut cmd = p.cmd();
        cmd.args(["watch", "--json"]).args(extra);
        Watch::spawn(cmd)
    }

    pub(crate) fn spawn(mut cmd: Command) -> Watch {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut stderr_pipe = child.stderr.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        let stderr_reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Watch {
            child,
            lines,
            stderr,
            stderr_reader: Some(stderr_reader),
        }
    }

    pub(crate) fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The next line, within [`WAIT`].
    pub(crate) fn next(&self, what: &str) -> Value {
        match self.lines.recv_timeout(WAIT) {
            Ok(v) => v,
            Err(RecvTimeoutError::Timeout) => panic!(
                "no line for {what} within {WAIT:?}; stderr:\n{}",
                self.stderr()
            ),
            Err(RecvTimeoutError::Disconnected) => panic!(
                "lbuild watch ended before {what}; stderr:\n{}",
                self.stderr()
            ),
        }
    }

    /// The next line, which must be a successful build.
    pub(crate) fn build(&self, what: &str) -> Value {
        let v = self.next(what);
        assert!(
            v.get("error").is_none(),
            "{what}: expected a build, got {v}\nstderr:\n{}",
            self.stderr()
        );
        v
    }

    /// Nothing was printed after the last line: writes `probe`, a new
    /// source file (so a stage runs and a line is due), and expects the next
    /// line to be its build and to name it alone. A line left over from what
    /// came before arrives first and fails; a late event of it that joins the
    /// probe's batch shows in `changed` (when it is an input).
    fn assert_next_is_probe(&self, p: &TestProject, probe: &str, after: &str) {
        p.write(probe, &format!("# probe after {after}\n"));
        let v = self.next(&format!("the probe after {after}"));
        assert!(
            v.get("error").is_none() && changed(&v) == [probe],
            "after {after}: expected only the probe {probe}, got {v}\nstderr:\n{}",
            self.stderr()
        );
    }

    /// With `-v`, where every re-check prints a line: writes `file`, which
    /// no build reads, and expects the next line to be its re-check, naming
    /// it alone (a batch of no input files names all of its paths, so an
    /// event that was not dropped shows, on its own line or joined with
    /// this one). Returns the line.
    fn assert_next_is_recheck(&self, p: &TestProject, file: &str, after: &str) -> Value {
        p.write(file, "x");
        let v = self.next(&format!("the re-check after {after}"));
        assert!(
            changed(&v) == [file],
            "after {after}: expected only the re-check for {file}, got {v}\nstderr:\n{}",
            self.stderr()
        );
        v
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits (bounded) for the process to exit.
    fn wait_exit(&mut self) -> ExitStatus {
        let until = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < until, "lbuild watch did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the watcher (SIGTERM) and returns all it wrote on stderr.
    pub(crate) fn finish(&mut self) -> String {
        self.signal("-TERM");
        let status = self.wait_exit();
        assert!(status.success(), "{status}\n{}", self.stderr());
        if let Some(reader) = self.stderr_reader.take() {
            reader.join().unwrap();
        }
        self.stderr()
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(sig)
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} failed");
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn changed(v: &Value) -> Vec<String> {
    v["changed"]
        .as_array()
        .unwrap_or_else(|| panic!("no `changed` in {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// The text of archive entry `name` in the project's zip, if present.
fn zip_text(p: &TestProject, zip: &str, name: &str) -> Option<String> {
    python_entries(&p.zip_path(zip))
        .into_iter()
        .find(|e| e["name"] == name)
        .map(|e| e["data"].as_str().unwrap().to_string())
}

fn rename(p: &TestProject, from: &str, to: &str) {
    std::fs::rename(p.path().join(from), p.path().join(to)).unwrap();
}

#[test]
fn edit_source_rebuilds_once_with_the_edit() {
    let p = TestProject::hello();
    let w = Watch::start(&p, &[]);
    let first = w.build("the initial build");
    assert_eq!(changed(&first), Vec::<String>::new());
    // RFC 3339 with the local offset (TZ=UTC in the tests), milliseconds.
    let time = first["time"].as_str().unwrap();
    assert!(time.parse::<jiff::Timestamp>().is_ok(), "{first}");
    assert_eq!(time.len(), "2026-11-25T17:45:01.123+00:00".len(), "{first}");
    assert!(time.ends_with("+00:00"), "{first}");

    p.write("util.py", "def greet():\n    return 'edited'\n");
    let v = w.build("the edit");
    assert_eq!(changed(&v), ["util.py"]);
    assert_eq!(status_of(&v, "sources"), "ran");
    assert_eq!(status_of(&v, "config"), "cached");
    assert_eq!(status_of(&v, "package"), "ran");
    assert_ne!(v["sha256"], first["sha256"]);
    assert_eq!(
        v["sha256"].as_str().unwrap(),
        common::sha256_hex(&p.zip_bytes("hello"))
    );
    assert!(zip_text(&p, "hello", "util.py").unwrap().contains("edited"));
    w.assert_next_is_probe(&p, "probe.py", "one edit");
}

#[test]
fn rename_over_saves_are_one_rebuild_each() {
    let p = TestProject::hello();
    let w = Watch::start(&p, &[]);
    w.build("the initial build");

    // JetBrains "safe write": the file is briefly absent.
    p.write(
        "app.py___jb_tmp___",
        "def handler(e, c):\n    return 'jb'\n",
    );
    rename(&p, "app.py", "app.py___jb_old___");
    rename(&p, "app.py___jb_tmp___", "app.py");
    p.remove("app.py___jb_old___");
    let v = w.build("a JetBrains save");
    assert_eq!(changed(&v), ["app.py"]);
    assert!(zip_text(&p, "hello", "app.py").unwrap().contains("'jb'"));
    w.assert_next_is_probe(&p, "probe1.py", "a JetBrains save");

    // vim (backupcopy=no): a write test, the original renamed to a backup,
    // the new file written, the backup deleted.
    p.write("4913", "");
    p.remove("4913");
    rename(&p, "app.py", "app.py~");
    p.write("app.py", "def handler(e, c):\n    return 'vim'\n");
    p.remove("app.py~");
    let v = w.build("a vim save");
    assert_eq!(changed(&v), ["app.py"]);
    assert!(zip_text(&p, "hello", "app.py").unwrap().contains("'vim'"));
    w.assert_next_is_probe(&p, "probe2.py", "a vim save");

    // Plain write-to-temp then rename over.
    p.write("app.py.tmp", "def handler(e, c):\n    return 'renamed'\n");
    rename(&p, "app.py.tmp", "app.py");
    let v = w.build("a rename-over save");
    assert_eq!(changed(&v), ["app.py"]);
    assert!(
        zip_text(&p, "hello", "app.py")
            .unwrap()
            .contains("'renamed'")
    );
    w.assert_next_is_probe(&p, "probe3.py", "a rename-over save");
}

#[test]
fn created_files_and_directories_enter_the_zip_and_deleted_ones_leave() {
    let p = TestProject::hello();
    let w = Watch::start(&p, &[]);
    w.build("the initial build");

    p.write("extra.py", "X = 1\n");
    let v = w.build("a new file");
    assert_eq!(changed(&v), ["extra.py"]);
    assert!(zip_text(&p, "hello", "extra.py").is_some());

    // A new directory (its file may land before the directory is watched).
    p.write("pkg/sub/mod.py", "Y = 1\n");
    w.build("a new directory");
    assert_eq!(zip_text(&p, "hello", "pkg/sub/mod.py").unwrap(), "Y = 1\n");
    // ...and it is watched from now on.
    p.write("pkg/sub/mod.py", "Y = 2\n");
    let v = w.build("an edit in the new directory");
    assert_eq!(changed(&v), ["pkg/sub/mod.py"]);
    assert_eq!(zip_text(&p, "hello", "pkg/sub/mod.py").unwrap(), "Y = 2\n");

    p.remove("extra.py");
    let v = w.build("a deleted file");
    assert_eq!(changed(&v), ["extra.py"]);
    assert!(zip_text(&p, "hello", "extra.py").is_none());

    std::fs::remove_dir_all(p.path().join("pkg")).unwrap();
    w.build("a deleted directory");
    assert!(zip_text(&p, "hello", "pkg/sub/mod.py").is_none());
    // Recreated under the same name: watched again.
    p.write("pkg/sub/mod.py", "Y = 3\n");
    w.build("a recreated directory");
    p.write("pkg/sub/mod.py", "Y = 4\n");
    w.build("an edit in the recreated directory");
    assert_eq!(zip_text(&p, "hello", "pkg/sub/mod.py").unwrap(), "Y = 4\n");

    // A renamed directory: its files move in the zip, and it stays watched.
    rename(&p, "pkg", "moved");
    w.build("a renamed directory");
    assert!(zip_text(&p, "hello", "pkg/sub/mod.py").is_none());
    p.write("moved/sub/mod.py", "Y = 5\n");
    let v = w.build("an edit in the renamed directory");
    assert_eq!(changed(&v), ["moved/sub/mod.py"]);
    assert_eq!(
        zip_text(&p, "hello", "moved/sub/mod.py").unwrap(),
        "Y = 5\n"
    );
}

#[test]
fn config_edit_reruns_config_and_package() {
    let p = TestProject::hello();
    let w = Watch::start(&p, &[]);
    w.build("the initial build");
    p.write("config/settings.json", "{\"a\": 2}\n");
    let v = w.build("a config edit");
    assert_eq!(changed(&v), ["config/settings.json"]);
    assert_eq!(status_of(&v, "sources"), "cached");
    assert_eq!(status_of(&v, "config"), "ran");
    assert_eq!(status_of(&v, "package"), "ran");
    assert_eq!(
        zip_text(&p, "hello", "config/settings.json").unwrap(),
        "{\"a\": 2}\n"
    );
    w.assert_next_is_probe(&p, "probe.py", "a config edit");
}

const SRC_MANIFEST: &str = r#"[function]
name = "m"
handler = "app.handler"

[sources]
root = "src"

[config]
files = ["config/*.json"]
"#;

#[test]
fn manifest_edits_replan_the_watch_and_errors_keep_it_alive() {
    let p = TestProject::empty();
    p.write("lambda.toml", SRC_MANIFEST);
    p.write("src/app.py", "def handler(e, c):\n    return 1\n");
    p.write("config/a.json", "{}\n");
    p.write("conf2/b.json", "{\"b\": 1}\n");
    let mut w = Watch::start(&p, &[]);
    w.build("the initial build");
    assert!(zip_text(&p, "m", "conf2/b.json").is_none());

    // A valid change: one more config glob, in a directory not watched so far.
    let wider = SRC_MANIFEST.replace(
        "files = [\"config/*.json\"]",
        "files = [\"config/*.json\", \"conf2/*.json\"]",
    );
    p.write("lambda.toml", &wider);
    let v = w.build("a manifest edit");
    assert_eq!(changed(&v), ["lambda.toml"]);
    assert_eq!(status_of(&v, "config"), "ran");
    assert_eq!(zip_text(&p, "m", "conf2/b.json").unwrap(), "{\"b\": 1}\n");
    // The re-planned watch covers conf2/.
    p.write("conf2/b.json", "{\"b\": 2}\n");
    let v = w.build("an edit in a newly watched directory");
    assert_eq!(changed(&v), ["conf2/b.json"]);
    assert_eq!(zip_text(&p, "m", "conf2/b.json").unwrap(), "{\"b\": 2}\n");
    let good_sha = v["sha256"].clone();

    // A syntax error: reported, the watcher lives on, the zip stays.
    p.write("lambda.toml", "[function\nname = \"m\"\n");
    let v = w.next("a broken manifest");
    let err = v["error"].as_str().unwrap_or_else(|| panic!("{v}"));
    assert!(err.contains("lambda.toml:1:"), "{err}");
    assert_eq!(changed(&v), ["lambda.toml"]);
    assert!(w.alive());
    assert_eq!(
        common::sha256_hex(&p.zip_bytes("m")),
        good_sha.as_str().unwrap()
    );
    // Saving a source meanwhile reports the same error again, still alive.
    p.write("src/app.py", "def handler(e, c):\n    return 2\n");
    let v = w.next("a source edit while the manifest is broken");
    assert!(v["error"].as_str().is_some(), "{v}");
    assert!(w.alive());

    // Fixed: a normal build again, with the source edit.
    p.write("lambda.toml", &wider);
    let v = w.build("the fixed manifest");
    assert_eq!(changed(&v), ["lambda.toml"]);
    assert!(zip_text(&p, "m", "app.py").unwrap().contains("return 2"));
    w.assert_next_is_probe(&p, "src/probe.py", "the fixed manifest");
}

#[test]
fn writes_to_outputs_cache_vcs_and_editor_temps_trigger_nothing() {
    let p = TestProject::hello();
    // -v: a re-check that finds nothing new prints a line too.
    let w = Watch::start(&p, &["-v"]);
    w.build("the initial build");
    for junk in [
        "dist/junk.txt",
        "dist/sub/deeper.zip",
        ".lbuild/junk",
        ".git/HEAD",
        "__pycache__/app.cpython-312.pyc",
        "stale.pyc",
        ".app.py.swp",
        "app.py~",
        "#app.py#",
        ".#app.py",
        "4913",
        "app.py___jb_tmp___",
    ] {
        p.write(junk, "x");
    }
    // Had any of them been kept, its re-check (or its path joined with the
    // next one's) would come first.
    let v = w.assert_next_is_recheck(&p, "notes.txt", "writes to ignored paths");
    assert_eq!(status_of(&v, "package"), "cached");

    p.write("app.py", "def handler(e, c):\n    return 'real'\n");
    let v = w.build("a real edit");
    assert_eq!(changed(&v), ["app.py"]);
}

#[test]
fn twenty_concurrent_builds_beside_watch_agree() {
    let p = TestProject::hello();
    let w = Watch::start(&p, &["-v"]);
    let first = w.build("the initial build");

    let run_many = || -> Vec<String> {
        let children: Vec<Child> = (0..20)
            .map(|_| {
                p.cmd()
                    .arg("--json")
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        children
            .into_iter()
            .map(|c| {
                let out = c.wait_with_output().unwrap();
                let stderr = String::from_utf8_lossy(&out.stderr);
                assert!(out.status.success(), "lbuild failed: {stderr}");
                assert!(!stderr.contains("locked"), "{stderr}");
                let v: Value = serde_json::from_slice(&out.stdout).unwrap();
                v["sha256"].as_str().unwrap().to_string()
            })
            .collect()
    };

    let shas = run_many();
    assert!(shas.iter().all(|s| *s == first["sha256"]), "{shas:?}");
    w.assert_next_is_recheck(&p, "notes.txt", "concurrent builds with nothing changed");

    // An edit, then 20 builds racing the watcher's rebuild.
    p.write("util.py", "def greet():\n    return 'raced'\n");
    let shas = run_many();
    let v = w.build("the edit raced by 20 builds");
    assert!(shas.iter().all(|s| *s == v["sha256"]), "{shas:?} vs {v}");
    assert_eq!(
        v["sha256"].as_str().unwrap(),
        common::sha256_hex(&p.zip_bytes("hello"))
    );
    assert!(!w.stderr().contains("locked"), "{}", w.stderr());
    unzip_test(&p.zip_path("hello"));
}

#[test]
fn sigterm_and_sigint_stop_cleanly() {
    for sig in ["-TERM", "-INT"] {
        let p = TestProject::hello();
        let mut w = Watch::start(&p, &[]);
        let v = w.build("the initial build");
        w.signal(sig);
        let status = w.wait_exit();
        assert!(status.success(), "{sig}: {status}\n{}", w.stderr());
        assert_eq!(
            common::sha256_hex(&p.zip_bytes("hello")),
            v["sha256"].as_str().unwrap()
        );
        let leftovers: Vec<_> = std::fs::read_dir(p.path().join("dist"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, ["hello.zip"], "{sig}");
        // The cache is intact: a one-shot build finds everything cached.
        let again = p.build_json();
        assert_eq!(status_of(&again, "package"), "cached");
    }
}

#[test]
fn poll_mode_sees_edits_saves_creations_and_deletions() {
    let p = TestProject::hello();
    let w = Watch::start(&p, &["--poll"]);
    w.build("the initial build");
    p.write("util.py", "def greet():\n    return 'polled'\n");
    let v = w.build("an edit seen by polling");
    assert_eq!(changed(&v), ["util.py"]);
    // At once again, same size: possibly the same file-time tick.
    p.write("util.py", "def greet():\n    return 'Polled'\n");
    let v = w.build("a second edit right after");
    assert_eq!(changed(&v), ["util.py"]);
    assert!(zip_text(&p, "hello", "util.py").unwrap().contains("Polled"));
    w.assert_next_is_probe(&p, "probe1.py", "polled edits");

    p.write("pkg/mod.py", "Z = 1\n");
    w.build("a new directory");
    p.write("pkg/mod.py", "Z = 2\n");
    let v = w.build("an edit in the new directory");
    assert_eq!(changed(&v), ["pkg/mod.py"]);
    assert_eq!(zip_text(&p, "hello", "pkg/mod.py").unwrap(), "Z = 2\n");

    p.write(
        "app.py___jb_tmp___",
        "def handler(e, c):\n    return 'jb'\n",
    );
    rename(&p, "app.py", "app.py___jb_old___");
    rename(&p, "app.py___jb_tmp___", "app.py");
    p.remove("app.py___jb_old___");
    let v = w.build("a JetBrains save");
    assert_eq!(changed(&v), ["app.py"]);

    p.remove("pkg/mod.py");
    let v = w.build("a deleted file");
    assert_eq!(changed(&v), ["pkg/mod.py"]);
    assert!(zip_text(&p, "hello", "pkg/mod.py").is_none());
    w.assert_next_is_probe(&p, "probe2.py", "polled changes");
}

#[test]
fn logging_into_the_project_does_not_loop() {
    // `lbuild watch -v > watch.log 2> watch.err` inside the watched
    // directory: every line written is a change event there.
    let p = TestProject::hello();
    p.write("config/settings.json", "{}\n");
    // A glob matching nothing warns on every build.
    p.write(
        "lambda.toml",
        &common::HELLO_MANIFEST.replace(
            "files = [\"config/*.json\"]",
            "required = false\nfiles = [\"config/*.json\", \"none/*.yml\"]",
        ),
    );
    let log = std::fs::File::create(p.path().join("watch.log")).unwrap();
    let err = std::fs::File::create(p.path().join("watch.err")).unwrap();
    let child = p
        .cmd()
        .args(["watch", "-v"])
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .spawn()
        .unwrap();
    let w = Watch {
        child,
        lines: std::sync::mpsc::channel().1,
        stderr: Arc::default(),
        stderr_reader: None,
    };
    let lines = || -> Vec<String> {
        std::fs::read_to_string(p.path().join("watch.log"))
            .unwrap()
            .lines()
            .map(String::from)
            .collect()
    };
    let wait_for = |n: usize| -> Vec<String> {
        let until = Instant::now() + WAIT;
        loop {
            let now = lines();
            if now.len() >= n {
                return now;
            }
            assert!(Instant::now() < until, "expected {n} log lines: {now:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_for(1);
    p.write("app.py", "def handler(e, c):\n    return 'logged'\n");
    assert!(wait_for(2)[1].contains("  app.py  "), "{:?}", lines());
    // The sentinel: a file no build reads. With -v its re-check prints
    // "no change" and names every path of its batch, so had writing the
    // lines above (or the warnings on stderr) triggered a re-check, that
    // would show as a line of its own or as watch.log / watch.err here.
    p.write("notes.txt", "x");
    let third = wait_for(3).remove(2);
    assert!(
        third.ends_with("  notes.txt  no change"),
        "{third:?}\nlog:\n{}\nerr:\n{}",
        std::fs::read_to_string(p.path().join("watch.log")).unwrap(),
        std::fs::read_to_string(p.path().join("watch.err")).unwrap()
    );
    drop(w);
}

#[test]
fn requirements_edit_reruns_deps_and_package_only() {
    let p = TestProject::empty();
    p.write(
        "lambda.toml",
        r#"[function]
name = "fn"
handler = "app.handler"

[dependencies]
installer = "uv"
find_links = ["wheels"]
no_index = true
"#,
    );
    p.write(
        "app.py",
        "import purepkg\n\ndef handler(event, context):\n    return 'ok'\n",
    );
    p.write("requirements.txt", "-r base.txt\n");
    p.write("base.txt", "purepkg==1.0\n");
    crate::deps::write_wheelhouse(&p.path().join("wheels"));
    // The installers boxed in as in the deps tests.
    let caches = tempfile::tempdir().unwrap();
    let mut cmd = p.cmd();
    crate::common::box_installers(&mut cmd, caches.path());
    cmd.args(["watch", "--json"]);
    let w = Watch::spawn(cmd);
    let first = w.build("the initial build");
    assert_eq!(status_of(&first, "deps"), "ran");
    assert!(zip_text(&p, "fn", "nativepkg/__init__.py").is_none());

    // An included requirements file changes: deps and package rerun.
    p.write("base.txt", "purepkg==1.0\nnativepkg==1.0\n");
    let v = w.build("a requirements edit");
    assert_eq!(changed(&v), ["base.txt"]);
    assert_eq!(status_of(&v, "deps"), "ran");
    assert_eq!(status_of(&v, "sources"), "cached");
    assert_eq!(status_of(&v, "config"), "cached");
    assert_eq!(status_of(&v, "package"), "ran");
    assert!(zip_text(&p, "fn", "nativepkg/__init__.py").is_some());
    w.assert_next_is_probe(&p, "probe.py", "a requirements edit");
}

#[test]
fn warnings_come_with_their_rebuild_not_with_every_recheck() {
    let p = TestProject::hello();
    p.write(
        "lambda.toml",
        &common::HELLO_MANIFEST.replace(
            "files = [\"config/*.json\"]",
            "required = false\nfiles = [\"config/*.json\", \"none/*.yml\"]",
        ),
    );
    // -v: the re-check that finds nothing new prints its line too.
    let mut w = Watch::start(&p, &["-v"]);
    let v = w.build("the initial build");
    assert!(
        v["warnings"][0].as_str().unwrap().contains("none/*.yml"),
        "{v}"
    );

    // Not an input: a re-check that changed nothing, without the warning.
    let v = w.assert_next_is_recheck(&p, "notes.txt", "the initial build");
    assert!(v.get("warnings").is_none(), "{v}");

    p.write("app.py", "def handler(e, c):\n    return 'w'\n");
    let v = w.build("an edit");
    assert_eq!(changed(&v), ["app.py"]);
    assert!(
        v["warnings"][0].as_str().unwrap().contains("none/*.yml"),
        "{v}"
    );
    // On stderr too: once per build that warned, not for the re-check.
    let stderr = w.finish();
    assert_eq!(stderr.matches("matches no file").count(), 2, "{stderr}");
}

/// Set to `1` to skip [`the_inotify_watch_limit_is_an_error_with_a_hint`]
/// on purpose where unprivileged user namespaces are off.
const SKIP_UNSHARE: &str = "LBUILD_TEST_SKIP_UNSHARE";

#[test]
fn the_inotify_watch_limit_is_an_error_with_a_hint() {
    // The limit is per user namespace: lower it in a namespace of our own
    // rather than for the whole machine. Where that is impossible the test
    // fails rather than pass unchecked, unless skipping was asked for.
    let probe = Command::new("unshare")
        .args([
            "-U",
            "-r",
            "sh",
            "-c",
            "echo 2 > /proc/sys/user/max_inotify_watches",
        ])
        .output();
    let usable = probe.as_ref().is_ok_and(|o| o.status.success());
    if !usable {
        let why = match &probe {
            Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
            Err(e) => format!("cannot run unshare: {e}"),
        };
        if std::env::var_os(SKIP_UNSHARE).is_some_and(|v| v == "1") {
            eprintln!(
                "skipped on request ({SKIP_UNSHARE}=1): `unshare -U -r` is not usable: {why}"
            );
            return;
        }
        panic!(
            "this test needs unprivileged user namespaces (`unshare -U -r`) to lower the \
             inotify limit, and they are not usable here: {why}\n\
             enable them (e.g. `sysctl kernel.unprivileged_userns_clone=1`, or \
             `kernel.apparmor_restrict_unprivileged_userns=0`), or set {SKIP_UNSHARE}=1 \
             to skip this test on purpose"
        );
    }
    let p = TestProject::hello();
    p.write("pkg/a/mod.py", "");
    p.write("pkg/b/mod.py", "");
    let mut cmd = Command::new("unshare");
    common::hermetic(&mut cmd)
        .current_dir(p.path())
        .args(["-U", "-r", "sh", "-c"])
        .arg("echo 2 > /proc/sys/user/max_inotify_watches && exec \"$0\" watch --json")
        .arg(common::lbuild_bin());
    let mut w = Watch::spawn(cmd);
    let v = w.next("the limit error");
    let err = v["error"].as_str().unwrap_or_else(|| panic!("{v}"));
    assert!(err.contains("inotify watch limit"), "{err}");
    // The hint is a field of its own, not text glued to the message.
    let hint = v["hint"].as_str().unwrap_or_else(|| panic!("{v}"));
    assert!(hint.contains("max_user_watches"), "{hint}");
    assert!(hint.contains("--poll"), "{hint}");
    assert_eq!(w.wait_exit().code(), Some(1));
}

#[test]
fn json_time_is_rfc3339_in_the_local_time_zone() {
    let p = TestProject::hello();
    let mut cmd = p.cmd();
    // A POSIX TZ rule: one hour east of UTC, no time zone database needed.
    cmd.env("TZ", "LBT-1").args(["watch", "--json"]);
    let w = Watch::spawn(cmd);
    let v = w.build("the initial build");
    let time = v["time"].as_str().unwrap();
    assert!(time.ends_with("+01:00"), "{v}");
    assert!(time.parse::<jiff::Timestamp>().is_ok(), "{v}");
}

/// A workspace of two functions, billing and orders, each with its own
/// package and the shared one under `src`.
fn write_billing_and_orders(p: &TestProject) {
    p.write(
        "lambda.toml",
        "[defaults]\nsources = { root = \"src\" }\n\n\
         [functions.billing]\nhandler = \"billing.app.handler\"\n\
         sources = { include = [\"billing/**/*.py\", \"shared/**/*.py\"] }\n\n\
         [functions.orders]\nhandler = \"orders.app.handler\"\n\
         sources = { include = [\"orders/**/*.py\", \"shared/**/*.py\"] }\n",
    );
}

#[test]
fn in_a_workspace_an_edit_rebuilds_exactly_the_artifacts_that_include_it() {
    let p = TestProject::empty();
    write_billing_and_orders(&p);
    for f in ["billing", "orders"] {
        p.write(&format!("src/{f}/__init__.py"), "");
        p.write(
            &format!("src/{f}/app.py"),
            "def handler(event, context):\n    return 1\n",
        );
    }
    p.write("src/shared/__init__.py", "");
    p.write("src/shared/util.py", "X = 1\n");
    let w = Watch::start(&p, &[]);
    let names = |n: usize, what: &str| -> Vec<String> {
        (0..n)
            .map(|_| w.build(what)["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(2, "the initial build"), ["billing", "orders"]);

    p.write("src/shared/util.py", "X = 2\n");
    assert_eq!(names(2, "the shared edit"), ["billing", "orders"]);

    p.write(
        "src/orders/app.py",
        "def handler(event, context):\n    return 2\n",
    );
    let v = w.build("the orders edit");
    assert_eq!(v["name"], "orders", "{v}");
    assert_eq!(changed(&v), ["src/orders/app.py"]);
    // Had the orders edit also printed a billing line, it would come now.
    p.write(
        "src/billing/app.py",
        "def handler(event, context):\n    return 3\n",
    );
    let v = w.build("the billing edit");
    assert_eq!(v["name"], "billing", "{v}");
    assert_eq!(changed(&v), ["src/billing/app.py"]);
}

/// A save to one function builds that function (and its layers) only: a
/// sibling's standing failure is neither rebuilt nor said again, and a
/// shared file or lambda.toml still concerns every artifact.
#[test]
fn in_a_workspace_a_save_to_one_function_leaves_the_others_alone() {
    let p = TestProject::empty();
    write_billing_and_orders(&p);
    p.write("src/billing/__init__.py", "");
    p.write("src/orders/__init__.py", "");
    p.write(
        "src/orders/app.py",
        "def handler(event, context):\n    return 1\n",
    );
    p.write("src/shared/__init__.py", "");
    p.write("src/shared/util.py", "X = 1\n");
    let w = Watch::start(&p, &[]);
    // billing has no handler module: it fails, orders builds.
    let first = w.next("billing's failure");
    assert_eq!(first["artifact"], "function billing", "{first}");
    assert!(first.get("error").is_some(), "{first}");
    assert_eq!(w.build("the initial build")["name"], "orders");

    // Rebuilding billing would say its failure again (an input was saved),
    // before the orders line.
    p.write(
        "src/orders/app.py",
        "def handler(event, context):\n    return 2\n",
    );
    let v = w.build("the orders edit");
    assert_eq!(v["name"], "orders", "{v}");

    p.write(
        "src/billing/app.py",
        "def handler(event, context):\n    return 3\n",
    );
    let v = w.build("the billing fix");
    assert_eq!(v["name"], "billing", "{v}");
    assert_eq!(changed(&v), ["src/billing/app.py"]);

    // A shared edit concerns both.
    p.write("src/shared/util.py", "X = 2\n");
    let names: Vec<String> = (0..2)
        .map(|_| {
            w.build("the shared edit")["name"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(names, ["billing", "orders"]);
}

/// An auto-saving editor: a save every 150 ms for 20 s, each a rewrite in
/// place of a 1 MB module, so saves land while zips are being written.
/// Interrupted rebuilds are retried, not reported: every line is a zip,
/// zips keep coming, and the last save ends up in the zip.
#[test]
fn continuous_saves_every_150_ms_keep_producing_zips() {
    let p = TestProject::hello();
    let module = |i: usize| {
        let mut text = format!("def greet():\n    return {i}\n");
        for line in 0..20_000 {
            text.push_str(&format!(
                "# {i} padding line {line} of an auto-saved module\n"
            ));
        }
        text
    };
    p.write("util.py", &module(0));
    let w = Watch::start(&p, &[]);
    w.build("the initial build");

    let path = p.path().join("util.py");
    let writer = std::thread::spawn(move || {
        let started = Instant::now();
        let mut i = 0;
        while started.elapsed() < Duration::from_secs(20) {
            i += 1;
            std::fs::write(&path, module(i)).unwrap();
            std::thread::sleep(Duration::from_millis(150));
        }
        i
    });
    let started = Instant::now();
    let mut last = started;
    let mut gaps = Vec::new();
    let mut errors = Vec::new();
    let mut builds = 0;
    while !writer.is_finished() {
        match w.lines.recv_timeout(Duration::from_millis(200)) {
            Ok(v) if v.get("error").is_some() => errors.push(v),
            Ok(_) => {
                builds += 1;
                gaps.push(last.elapsed());
                last = Instant::now();
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => panic!("watch ended: {}", w.stderr()),
        }
    }
    gaps.push(last.elapsed());
    let saves = writer.join().unwrap();
    assert!(errors.is_empty(), "{errors:?}\nstderr:\n{}", w.stderr());
    let longest = gaps.iter().max().unwrap();
    eprintln!("{saves} saves, {builds} zips, longest wait for a zip {longest:?}");
    assert!(builds >= 10, "{builds} zips for {saves} saves");
    assert!(
        *longest < Duration::from_secs(4),
        "waited {longest:?} for a zip"
    );
    // Once the saves stop, the zip settles on the last one.
    let want = format!("return {saves}\n");
    let until = Instant::now() + WAIT;
    while !zip_text(&p, "hello", "util.py").is_some_and(|t| t.contains(&want)) {
        assert!(
            Instant::now() < until,
            "the last save never reached the zip"
        );
        w.build("the last save");
    }
    assert!(!w.stderr().contains("changed while"), "{}", w.stderr());
}

/// The project directory moved while watched: the next save ends the
/// watch with an error that says so, instead of failing every save with
/// "cannot open .../lambda.toml".
#[test]
fn a_moved_project_ends_the_watch_with_a_clear_error() {
    let p = TestProject::hello();
    let mut w = Watch::start(&p, &[]);
    w.build("the initial build");
    let name = p.path().file_name().unwrap().to_str().unwrap().to_string();
    let moved = p.path().with_file_name(format!("{name}-moved"));
    std::fs::rename(p.path(), &moved).unwrap();
    std::fs::write(moved.join("util.py"), "def greet():\n    return 'moved'\n").unwrap();
    let until = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = w.child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > until {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // Back where the temp dir is removed from.
    std::fs::rename(&moved, p.path()).unwrap();
    let status = status.unwrap_or_else(|| panic!("watch did not end: {}", w.stderr()));
    if let Some(reader) = w.stderr_reader.take() {
        reader.join().unwrap();
    }
    let stderr = w.stderr();
    assert!(!status.success(), "{status}: {stderr}");
    assert!(
        stderr.contains(&format!(
            "the project directory {} was moved or deleted: stopped watching",
            p.path().display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("start `lbuild watch` again where the project is now"),
        "{stderr}"
    );
    assert!(!stderr.contains("failed to open"), "{stderr}");
}
