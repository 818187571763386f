//! `TestProject`: a temp project directory with helpers to write files, run
//! lbuild hermetically and read the zip back.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub(crate) const HELLO_MANIFEST: &str = r#"[function]
name = "hello"
handler = "app.handler"
runtime = "python3.12"

[config]
files = ["config/*.json"]
"#;

pub(crate) struct TestProject {
    pub dir: tempfile::TempDir,
    /// This project's own machine store (`LBUILD_STORE`), so tests never
    /// share compressed entries or trees unless they ask to.
    pub store: tempfile::TempDir,
}

/// The lbuild binary under test.
pub(crate) fn lbuild_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_lbuild"))
}

/// A command with a scrubbed environment: no user config, fixed locale and
/// time zone, no SOURCE_DATE_EPOCH, no cache dir override.
pub(crate) fn hermetic(cmd: &mut Command) -> &mut Command {
    // Never the user's machine store (a TestProject sets its own); under
    // cargo's scratch directory for tests, not left in the system's /tmp.
    let store = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("lbuild-test-store-{}", std::process::id()));
    cmd.env_remove("SOURCE_DATE_EPOCH")
        .env_remove("LBUILD_CACHE_DIR")
        .env_remove("LBUILD_REMOTE_CACHE")
        .env_remove("LBUILD_TRUSTED_KEYS")
        .env_remove("LBUILD_SIGNING_KEY")
        .env_remove("LBUILD_REMOTE_TRUST")
        .env_remove("LBUILD_REMOTE_DEADLINE")
        .env_remove("CI")
        .env("LBUILD_STORE", store)
        .env("TZ", "UTC")
        .env("LC_ALL", "C")
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        .env("PIP_NO_INPUT", "1")
}

/// Boxes the installers in: caches under `caches`, no user config, no
/// Python downloads, and no index or resolution settings from the machine's
/// environment (this machine sets PIP_FIND_LINKS, for one).
pub(crate) fn box_installers<'a>(cmd: &'a mut Command, caches: &Path) -> &'a mut Command {
    cmd.env("UV_CACHE_DIR", caches.join("uv"))
        .env("PIP_CACHE_DIR", caches.join("pip"))
        .env("UV_NO_CONFIG", "1")
        .env("UV_PYTHON_DOWNLOADS", "never")
        .env("PIP_CONFIG_FILE", "/dev/null");
    // Every variable lbuild keys on, so the machine's settings (this one
    // sets PIP_FIND_LINKS) neither change the install nor the key.
    use lbuild::{PIP_KEYED_ENV, UV_KEYED_ENV};
    for var in UV_KEYED_ENV.iter().chain(PIP_KEYED_ENV) {
        cmd.env_remove(var);
    }
    cmd
}

impl TestProject {
    /// An empty project.
    pub(crate) fn empty() -> Self {
        TestProject {
            dir: tempfile::Builder::new()
                .prefix("lbuild-test-")
                .tempdir()
                .unwrap(),
            store: tempfile::Builder::new()
                .prefix("lbuild-test-store-")
                .tempdir()
                .unwrap(),
        }
    }

    /// The hello project: handler, helper module and one config file.
    pub(crate) fn hello() -> Self {
        let p = Self::empty();
        p.write("lambda.toml", HELLO_MANIFEST);
        p.write(
            "app.py",
            "from util import greet\n\ndef handler(event, context):\n    return greet()\n",
        );
        p.write("util.py", "def greet():\n    return 'hi'\n");
        p.write("config/settings.json", "{\"a\": 1}\n");
        p
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn write(&self, rel: &str, contents: &str) {
        self.write_bytes(rel, contents.as_bytes())
    }

    pub(crate) fn write_bytes(&self, rel: &str, contents: &[u8]) {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, contents).unwrap();
    }

    pub(crate) fn remove(&self, rel: &str) {
        std::fs::remove_file(self.path().join(rel)).unwrap();
    }

    /// Sets a file's mtime to `secs` after the epoch.
    pub(crate) fn set_mtime(&self, rel: &str, secs: u64) {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
        std::fs::File::options()
            .write(true)
            .open(self.path().join(rel))
            .unwrap()
            .set_modified(t)
            .unwrap();
    }

    pub(crate) fn cmd(&self) -> Command {
        let mut c = Command::new(lbuild_bin());
        hermetic(&mut c)
            .current_dir(self.path())
            .env("LBUILD_STORE", self.store.path());
        c
    }

    /// Runs lbuild with `args`, returning the raw output.
    pub(crate) fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// Runs `lbuild --json` and expects success; returns the parsed JSON.
    pub(crate) fn build_json(&self) -> serde_json::Value {
        let out = self.run(&["--json"]);
        assert_success(&out);
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("bad JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
    }

    /// Runs lbuild expecting failure; returns stderr.
    pub(crate) fn fail(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "lbuild unexpectedly succeeded:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    pub(crate) fn zip_path(&self, name: &str) -> PathBuf {
        self.path().join("dist").join(format!("{name}.zip"))
    }

    pub(crate) fn zip_bytes(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.zip_path(name)).unwrap()
    }
}

/// Stage statuses from a `--json` build, by name: "ran" | "cached" | "skipped".
pub(crate) fn statuses(json: &serde_json::Value) -> Vec<(String, String)> {
    json["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

pub(crate) fn status_of(json: &serde_json::Value, stage: &str) -> String {
    statuses(json)
        .into_iter()
        .find(|(n, _)| n == stage)
        .map(|(_, s)| s)
        .unwrap_or_else(|| panic!("no stage {stage} in {json}"))
}

pub(crate) fn stage_details<'a>(json: &'a serde_json::Value, stage: &str) -> &'a serde_json::Value {
    &json["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == stage)
        .unwrap()["details"]
}

/// Reads a zip back with Python's zipfile: one JSON object per entry.
pub(crate) fn python_entries(zip: &Path) -> Vec<serde_json::Value> {
    let script = r#"
import json, sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
assert z.testzip() is None
out = []
for i in z.infolist():
    out.append(dict(name=i.filename, date_time=list(i.date_time), external_attr=i.external_attr,
                    extra=i.extra.hex(), flag_bits=i.flag_bits, create_system=i.create_system,
                    compress_type=i.compress_type, comment=i.comment.hex(), is_dir=i.is_dir(),
                    file_size=i.file_size, compress_size=i.compress_size, header_offset=i.header_offset,
                    data=z.read(i).decode('latin-1')))
print(json.dumps(dict(entries=out, comment=z.comment.hex())))
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(zip)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python zipfile failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["comment"], "", "archive comment must be empty");
    v["entries"].as_array().unwrap().clone()
}

pub(crate) fn entry_names(zip: &Path) -> Vec<String> {
    python_entries(zip)
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect()
}

/// Asserts a command succeeded, showing its stderr if not.
pub(crate) fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "command failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `unzip -t` must report no errors.
pub(crate) fn unzip_test(zip: &Path) {
    let out = Command::new("unzip").arg("-t").arg(zip).output().unwrap();
    assert!(
        out.status.success(),
        "unzip -t failed:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Runs lbuild in `p` as an unprivileged user (root reads every file and
/// directory whatever its mode): through `setpriv` when the tests run as
/// root, with a machine store under the project that user can write.
pub(crate) fn run_unprivileged(p: &TestProject) -> Output {
    use std::os::unix::fs::MetadataExt;
    let euid = std::fs::metadata("/proc/self").unwrap().uid();
    let store = p.path().join(".store");
    std::fs::create_dir_all(&store).unwrap();
    let mut cmd = if euid == 0 {
        let chown = Command::new("chown")
            .args(["-R", "65534:65534"])
            .arg(p.path())
            .status()
            .unwrap();
        assert!(chown.success());
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(lbuild_bin());
        c
    } else {
        Command::new(lbuild_bin())
    };
    hermetic(&mut cmd)
        .env("LBUILD_STORE", &store)
        .current_dir(p.path())
        .output()
        .unwrap()
}
