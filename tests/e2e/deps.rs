//! The deps stage end to end, hermetic: the tests write their own wheels
//! into a wheelhouse inside the project (`find_links = ["wheels"]`,
//! `no_index = true`), give uv and pip caches of their own, and read the
//! zips back. uv must be installed (`python3 -m pip install uv`; `.ci/run`
//! does it): these tests fail rather than skip without it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Output;

use base64::Engine;
use sha2::Digest;

use crate::common::{
    TestProject, box_installers, entry_names, python_entries, stage_details, status_of,
};

// ------------------------------------------------------------ wheels

/// A wheel is a zip: the package's files plus `NAME-VER.dist-info/`
/// with METADATA, WHEEL and RECORD (and entry_points.txt if given).
pub(crate) struct Wheel {
    pub(crate) name: &'static str,
    pub(crate) version: &'static str,
    pub(crate) tag: &'static str,
    /// (path, contents, executable)
    pub(crate) files: Vec<(String, Vec<u8>, bool)>,
    pub(crate) entry_points: Option<&'static str>,
}

impl Wheel {
    pub(crate) fn write_into(&self, dir: &Path) -> PathBuf {
        let info = format!("{}-{}.dist-info", self.name, self.version);
        let pure = self.tag.ends_with("none-any");
        let mut files = self.files.clone();
        files.push((
            format!("{info}/METADATA"),
            format!(
                "Metadata-Version: 2.1\nName: {}\nVersion: {}\n",
                self.name, self.version
            )
            .into_bytes(),
            false,
        ));
        files.push((
            format!("{info}/WHEEL"),
            format!(
                "Wheel-Version: 1.0\nGenerator: lbuild-tests\nRoot-Is-Purelib: {pure}\nTag: {}\n",
                self.tag
            )
            .into_bytes(),
            false,
        ));
        if let Some(ep) = self.entry_points {
            files.push((
                format!("{info}/entry_points.txt"),
                ep.as_bytes().to_vec(),
                false,
            ));
        }
        let mut record = String::new();
        for (path, data, _) in &files {
            let digest = sha2::Sha256::digest(data);
            let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest);
            record.push_str(&format!("{path},sha256={b64},{}\n", data.len()));
        }
        record.push_str(&format!("{info}/RECORD,,\n"));
        files.push((format!("{info}/RECORD"), record.into_bytes(), false));

        let path = dir.join(format!("{}-{}-{}.whl", self.name, self.version, self.tag));
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
        for (name, data, exec) in &files {
            let opts = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Stored)
                .last_modified_time(zip::DateTime::default())
                .unix_permissions(if *exec { 0o755 } else { 0o644 });
            zip.start_file(name.as_str(), opts).unwrap();
            zip.write_all(data).unwrap();
        }
        zip.finish().unwrap();
        path
    }
}

/// The wheelhouse every test uses:
/// - `purepkg 1.0` pure Python with a console script (`bin/purecli`);
/// - `nativepkg 1.0` twice, `cp312-cp312-manylinux2014_{x86_64,aarch64}`,
///   each with an executable `.so`-named file holding its machine's name;
/// - `newglibc 1.0`, tagged only `py3-none-manylinux_2_28_x86_64` (so only
///   the glibc level decides whether it fits).
pub(crate) fn write_wheelhouse(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    Wheel {
        name: "purepkg",
        version: "1.0",
        tag: "py3-none-any",
        files: vec![(
            "purepkg/__init__.py".into(),
            b"def main():\n    print('hi')\n".to_vec(),
            false,
        )],
        entry_points: Some("[console_scripts]\npurecli = purepkg:main\n"),
    }
    .write_into(dir);
    for (tag, machine) in [
        ("cp312-cp312-manylinux2014_x86_64", "x86_64"),
        ("cp312-cp312-manylinux2014_aarch64", "aarch64"),
    ] {
        Wheel {
            name: "nativepkg",
            version: "1.0",
            tag,
            files: vec![
                (
                    "nativepkg/__init__.py".into(),
                    b"from ._native import *\n".to_vec(),
                    false,
                ),
                (
                    format!("nativepkg/_native.cpython-312-{machine}-linux-gnu.so"),
                    format!("fake ELF for {machine}\n").into_bytes(),
                    true,
                ),
            ],
            entry_points: None,
        }
        .write_into(dir);
    }
    Wheel {
        name: "newglibc",
        version: "1.0",
        tag: "py3-none-manylinux_2_28_x86_64",
        files: vec![("newglibc/__init__.py".into(), b"NEW = 1\n".to_vec(), false)],
        entry_points: None,
    }
    .write_into(dir);
}

// ------------------------------------------------------------ projects

/// A project with a wheelhouse under `wheels/` and installer caches in a
/// temp dir of their own (outside the project: uv's cache holds .py files
/// the sources globs would otherwise pick up).
pub(crate) struct DepsProject {
    pub(crate) p: TestProject,
    pub(crate) caches: tempfile::TempDir,
}

fn manifest(installer: &str, runtime: &str, arch: &str, extra: &str) -> String {
    format!(
        r#"[function]
name = "fn"
handler = "app.handler"
runtime = "{runtime}"
architecture = "{arch}"

[dependencies]
installer = "{installer}"
find_links = ["wheels"]
no_index = true
{extra}
"#
    )
}

fn require_uv() {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("uv").is_file()))
        .unwrap_or(false);
    assert!(
        on_path,
        "uv is required by the deps tests (both installers are exercised): install it with `python3 -m pip install uv`"
    );
}

impl DepsProject {
    pub(crate) fn new(installer: &str, runtime: &str, arch: &str, requirements: &str) -> Self {
        require_uv();
        let p = TestProject::empty();
        p.write("lambda.toml", &manifest(installer, runtime, arch, ""));
        p.write(
            "app.py",
            "import purepkg\n\ndef handler(event, context):\n    return 'ok'\n",
        );
        p.write("requirements.txt", requirements);
        write_wheelhouse(&p.path().join("wheels"));
        DepsProject {
            p,
            caches: tempfile::Builder::new()
                .prefix("lbuild-caches-")
                .tempdir()
                .unwrap(),
        }
    }

    fn set_manifest(&self, installer: &str, runtime: &str, arch: &str, extra: &str) {
        self.p
            .write("lambda.toml", &manifest(installer, runtime, arch, extra));
    }

    /// lbuild with the installers boxed in: own caches, no user config,
    /// no index settings from the environment, no Python downloads.
    pub(crate) fn run(&self, args: &[&str]) -> Output {
        let mut cmd = self.p.cmd();
        box_installers(&mut cmd, self.caches.path());
        cmd.args(args).output().unwrap()
    }

    pub(crate) fn build(&self) -> serde_json::Value {
        let out = self.run(&["--json"]);
        crate::common::assert_success(&out);
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Runs a build expected to fail; returns (exit code, stderr).
    fn fail(&self) -> (i32, String) {
        let out = self.run(&[]);
        assert!(
            !out.status.success(),
            "lbuild unexpectedly succeeded:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn zip(&self) -> PathBuf {
        self.p.zip_path("fn")
    }

    pub(crate) fn zip_bytes(&self) -> Vec<u8> {
        self.p.zip_bytes("fn")
    }

    /// The contents of one zip entry, read back with Python's zipfile.
    pub(crate) fn entry(&self, name: &str) -> Option<String> {
        python_entries(&self.zip())
            .into_iter()
            .find(|e| e["name"] == name)
            .map(|e| e["data"].as_str().unwrap().to_string())
    }
}

pub(crate) fn deps_ran(json: &serde_json::Value) -> bool {
    stage_details(json, "deps")["installer_ran"]
        .as_bool()
        .unwrap_or_else(|| panic!("no installer_ran in {json}"))
}

fn deps_key(json: &serde_json::Value) -> String {
    json["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "deps")
        .unwrap()["key"]
        .as_str()
        .unwrap()
        .to_string()
}

fn host_python() -> String {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Names no installer leftovers may have in a zip.
fn assert_no_leftovers(names: &[String]) {
    for n in names {
        let base = n.rsplit('/').next().unwrap();
        assert!(!n.starts_with("bin/"), "console script packaged: {n}");
        assert!(
            !n.contains("__pycache__") && !n.ends_with(".pyc"),
            "byte-code packaged: {n}"
        );
        assert!(
            !matches!(
                base,
                "direct_url.json" | "INSTALLER" | "REQUESTED" | "uv_cache.json" | ".lock"
            ),
            "installer leftover packaged: {n}"
        );
    }
}

// ------------------------------------------------------------ tests

const ALL: &str = "purepkg==1.0\nnativepkg==1.0\n";

/// For each installer: the x86_64 and aarch64 builds of the same
/// requirements get their own machine's wheel, a cp311 host gets cp312
/// wheels, and switching architectures back reinstalls nothing.
fn right_platform_wheel_per_architecture(installer: &str) {
    let d = DepsProject::new(installer, "python3.12", "x86_64", ALL);
    let x86 = d.build();
    assert_eq!(status_of(&x86, "deps"), "ran");
    assert!(deps_ran(&x86));
    assert_eq!(stage_details(&x86, "deps")["installer"], installer);
    assert_eq!(
        stage_details(&x86, "deps")["target"],
        "python3.12 x86_64 manylinux_2_34"
    );
    let names = entry_names(&d.zip());
    assert!(
        names.contains(&"nativepkg/_native.cpython-312-x86_64-linux-gnu.so".to_string()),
        "{names:?}"
    );
    assert!(!names.iter().any(|n| n.contains("aarch64")), "{names:?}");
    assert_no_leftovers(&names);
    let x86_zip = d.zip_bytes();

    d.set_manifest(installer, "python3.12", "arm64", "");
    let arm = d.build();
    assert_eq!(status_of(&arm, "deps"), "ran");
    assert_eq!(
        stage_details(&arm, "deps")["target"],
        "python3.12 arm64 manylinux_2_34"
    );
    assert_eq!(
        d.entry("nativepkg/_native.cpython-312-aarch64-linux-gnu.so")
            .as_deref(),
        Some("fake ELF for aarch64\n")
    );
    assert!(!entry_names(&d.zip()).iter().any(|n| n.contains("x86_64")));

    // Back to x86_64: both keys stayed cached.
    d.set_manifest(installer, "python3.12", "x86_64", "");
    let again = d.build();
    assert_eq!(status_of(&again, "deps"), "cached");
    assert!(!deps_ran(&again));
    assert_eq!(d.zip_bytes(), x86_zip, "incremental must equal cold");
}

#[test]
fn uv_installs_the_wheel_of_each_architecture_and_cp312_on_any_host() {
    // The point of the test on this machine: the host is not python3.12.
    eprintln!("host python3 is {}", host_python());
    right_platform_wheel_per_architecture("uv");
}

#[test]
fn pip_installs_the_wheel_of_each_architecture_and_cp312_on_any_host() {
    right_platform_wheel_per_architecture("pip");
}

/// `newglibc` exists only as manylinux_2_28: python3.12 (glibc 2.34) takes
/// it, python3.11 (glibc 2.26) must refuse it with a clear error.
fn manylinux_2_28_only_fits_python312(installer: &str) {
    let d = DepsProject::new(installer, "python3.12", "x86_64", "newglibc==1.0\n");
    d.build();
    assert_eq!(
        d.entry("newglibc/__init__.py").as_deref(),
        Some("NEW = 1\n")
    );

    d.set_manifest(installer, "python3.11", "x86_64", "");
    let (code, err) = d.fail();
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("newglibc"), "package not named:\n{err}");
    assert!(
        err.contains("for python3.11 x86_64 manylinux_2_26"),
        "target not named:\n{err}"
    );
    assert!(
        err.contains("  | "),
        "installer's own message missing:\n{err}"
    );
    assert!(err.contains("hint:"), "{err}");
}

#[test]
fn uv_takes_a_manylinux_2_28_wheel_for_python312_and_refuses_it_for_python311() {
    manylinux_2_28_only_fits_python312("uv");
}

#[test]
fn pip_takes_a_manylinux_2_28_wheel_for_python312_and_refuses_it_for_python311() {
    manylinux_2_28_only_fits_python312("pip");
}

/// The same wheels through uv and through pip, and through uv again in a
/// project at another path: byte-identical zips, no installer leftovers,
/// RECORD rewritten to what is packaged, the `.so`'s execute bit kept.
#[test]
fn pip_and_uv_give_byte_identical_zips_without_installer_leftovers() {
    let reqs = "purepkg==1.0\nnativepkg==1.0\nnewglibc==1.0\n";
    let d = DepsProject::new("uv", "python3.12", "x86_64", reqs);
    d.build();
    let uv_zip = d.zip_bytes();
    let entries = python_entries(&d.zip());
    let names: Vec<String> = entries
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect();
    assert_no_leftovers(&names);
    assert!(names.contains(&"purepkg-1.0.dist-info/entry_points.txt".to_string()));
    let so = entries
        .iter()
        .find(|e| e["name"] == "nativepkg/_native.cpython-312-x86_64-linux-gnu.so")
        .expect(".so packaged");
    assert_eq!(so["external_attr"], 0o100755u64 << 16, "execute bit lost");
    let record = d.entry("purepkg-1.0.dist-info/RECORD").unwrap();
    assert_eq!(
        record
            .lines()
            .map(|l| l.split(',').next().unwrap())
            .collect::<Vec<_>>(),
        [
            "purepkg-1.0.dist-info/METADATA",
            "purepkg-1.0.dist-info/RECORD",
            "purepkg-1.0.dist-info/WHEEL",
            "purepkg-1.0.dist-info/entry_points.txt",
            "purepkg/__init__.py",
        ],
        "RECORD lists exactly the packaged files:\n{record}"
    );

    d.set_manifest("pip", "python3.12", "x86_64", "");
    let pip = d.build();
    assert!(deps_ran(&pip), "a different installer is a different key");
    assert_eq!(stage_details(&pip, "deps")["installer"], "pip");
    assert_eq!(
        d.zip_bytes(),
        uv_zip,
        "pip and uv zips differ: {:?} vs {:?}",
        entry_names(&d.zip()),
        names
    );

    let elsewhere = DepsProject::new("uv", "python3.12", "x86_64", reqs);
    elsewhere.build();
    assert_eq!(
        elsewhere.zip_bytes(),
        uv_zip,
        "the project's path leaked into the zip"
    );
}

#[test]
fn deps_rerun_only_when_requirements_change_and_a_revert_reuses_the_tree() {
    let d = DepsProject::new("uv", "python3.12", "x86_64", "-r base.txt\n");
    d.p.write("base.txt", "purepkg==1.0\n");
    let first = d.build();
    assert!(deps_ran(&first));
    let first_zip = d.zip_bytes();

    // Handler edit: deps untouched.
    d.p.write(
        "app.py",
        "def handler(event, context):\n    return 'edited'\n",
    );
    let edited = d.build();
    assert_eq!(status_of(&edited, "deps"), "cached");
    assert!(!deps_ran(&edited));
    assert_eq!(status_of(&edited, "sources"), "ran");

    // Nothing changed: everything cached.
    let noop = d.build();
    assert_eq!(status_of(&noop, "deps"), "cached");
    assert_eq!(status_of(&noop, "package"), "cached");

    // An included file changes: deps run again.
    d.p.write("base.txt", "purepkg==1.0\nnativepkg==1.0\n");
    let more = d.build();
    assert_eq!(status_of(&more, "deps"), "ran");
    assert!(deps_ran(&more));
    assert!(entry_names(&d.zip()).contains(&"nativepkg/__init__.py".to_string()));

    // Revert both: the first deps tree is reused, no installer run, and the
    // zip is the one a cold build gives.
    d.p.write("base.txt", "purepkg==1.0\n");
    d.p.write(
        "app.py",
        "import purepkg\n\ndef handler(event, context):\n    return 'ok'\n",
    );
    let reverted = d.build();
    assert_eq!(status_of(&reverted, "deps"), "cached");
    assert!(!deps_ran(&reverted));
    assert_eq!(deps_key(&reverted), deps_key(&first));
    assert_eq!(d.zip_bytes(), first_zip);
}

#[test]
fn an_editable_requirement_is_refused_rather_than_linked_to_this_machine() {
    // Regression: `-e ./mylib` went to the installer, which put
    // `__editable__.mylib.pth` holding this machine's absolute path to
    // mylib into the zip: a zip that depends on the path, and a package
    // Lambda cannot import.
    let d = DepsProject::new("uv", "python3.12", "x86_64", "purepkg==1.0\n");
    d.build();
    let good = d.zip_bytes();
    d.p.write(
        "mylib/pyproject.toml",
        "[project]\nname = \"mylib\"\nversion = \"0.1\"\n",
    );
    d.p.write("mylib/mylib/__init__.py", "X = 1\n");
    for line in ["-e ./mylib", "--editable=./mylib"] {
        d.p.write("requirements.txt", &format!("purepkg==1.0\n{line}\n"));
        let (code, err) = d.fail();
        assert_eq!(code, 2, "{err}");
        for expect in [
            "requirements.txt:2: error:",
            line,
            "editable install",
            &d.p.path().join("mylib").display().to_string(),
            "hint: drop the -e",
        ] {
            assert!(err.contains(expect), "stderr lacks {expect:?}:\n{err}");
        }
        assert_eq!(d.zip_bytes(), good, "the last good zip was touched");
    }
}

#[test]
fn a_missing_wheel_for_the_target_fails_clearly_and_keeps_the_last_zip() {
    let d = DepsProject::new("uv", "python3.12", "x86_64", "newglibc==1.0\n");
    d.build();
    let good = d.zip_bytes();
    let deps_dir = d.p.store.path().join("deps");
    let trees_before = std::fs::read_dir(&deps_dir).unwrap().count();

    // newglibc has no aarch64 wheel.
    d.set_manifest("uv", "python3.12", "arm64", "");
    let (code, err) = d.fail();
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("could not install newglibc"), "{err}");
    assert!(err.contains("for python3.12 arm64 manylinux_2_34"), "{err}");
    assert!(
        err.contains("  | "),
        "installer's own message missing:\n{err}"
    );
    assert_eq!(d.zip_bytes(), good, "the last good zip was touched");
    let left: Vec<String> = std::fs::read_dir(&deps_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left.len(), trees_before, "half-written tree left: {left:?}");

    // A second failure is not "cached": the installer runs (and fails) again.
    assert_eq!(d.fail().0, 1);
}

#[test]
fn exclude_drops_distributions_with_their_files_by_pep503_name() {
    let d = DepsProject::new("uv", "python3.12", "x86_64", ALL);
    d.set_manifest(
        "uv",
        "python3.12",
        "x86_64",
        "exclude = [\"PurePkg\", \"not_installed\"]",
    );
    let out = d.run(&["--json", "-v"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        stage_details(&json, "deps")["excluded"],
        serde_json::json!(["purepkg==1.0"])
    );
    let names = entry_names(&d.zip());
    assert!(!names.iter().any(|n| n.starts_with("purepkg")), "{names:?}");
    assert!(names.contains(&"nativepkg/__init__.py".to_string()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("\"not-installed\""),
        "-v says when an exclude matches nothing:\n{stderr}"
    );
}

#[test]
fn unpinned_requirements_are_warned_about() {
    let d = DepsProject::new("uv", "python3.12", "x86_64", "purepkg\nnativepkg==1.0\n");
    let out = d.run(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning: requirements.txt:1: \"purepkg\" is not pinned with =="),
        "{stderr}"
    );
    assert!(
        !stderr.contains("nativepkg==1.0\" is not pinned"),
        "{stderr}"
    );
}

#[test]
fn a_forced_installer_that_is_missing_says_how_to_install_it() {
    let d = DepsProject::new("uv", "python3.12", "x86_64", ALL);
    let empty = tempfile::tempdir().unwrap();
    let out = d.p.cmd().env("PATH", empty.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("uv is not on PATH"), "{err}");
    assert!(err.contains("pip install uv"), "{err}");
    assert!(!d.zip().exists());
}

/// An index nobody listens on (connections refused at once; retries off):
/// the error names the package, the target and says the index is
/// unreachable, for both installers.
#[test]
fn an_unreachable_index_is_reported_with_package_and_target() {
    for installer in ["uv", "pip"] {
        let d = DepsProject::new(installer, "python3.12", "x86_64", "purepkg==1.0\n");
        d.p.write(
            "lambda.toml",
            &format!(
                "[function]\nname = \"fn\"\nhandler = \"app.handler\"\n\n[dependencies]\ninstaller = \"{installer}\"\nindex_url = \"http://127.0.0.1:9/simple\"\n"
            ),
        );
        let out =
            d.p.cmd()
                .env("UV_CACHE_DIR", d.caches.path().join("uv"))
                .env("PIP_CACHE_DIR", d.caches.path().join("pip"))
                .env("UV_HTTP_RETRIES", "0")
                // pip names the connection error only when it retries.
                .env("PIP_RETRIES", "1")
                .env("PIP_TIMEOUT", "2")
                .env("UV_NO_CONFIG", "1")
                .env("UV_PYTHON_DOWNLOADS", "never")
                .env("PIP_CONFIG_FILE", "/dev/null")
                .env_remove("PIP_FIND_LINKS")
                .env_remove("UV_FIND_LINKS")
                .output()
                .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{installer}: {err}");
        assert!(
            err.contains("could not install purepkg"),
            "{installer}: {err}"
        );
        assert!(err.contains("python3.12 x86_64 manylinux_2_34"), "{err}");
        assert!(err.contains("could not be reached"), "{installer}: {err}");
    }
}

#[test]
fn requirements_without_requirements_install_nothing() {
    let d = DepsProject::new("uv", "python3.12", "x86_64", "# nothing yet\n");
    let json = d.build();
    assert_eq!(status_of(&json, "deps"), "ran");
    assert!(!deps_ran(&json), "no installer run for an empty list");
    assert_eq!(entry_names(&d.zip()), ["app.py"]);
}

#[test]
fn a_deps_tree_changed_behind_lbuilds_back_is_reinstalled_when_the_zip_needs_it() {
    let d = DepsProject::new("uv", "python3.12", "x86_64", "purepkg==1.0\n");
    let first = d.build();
    let key = deps_key(&first);
    let tree = d.p.store.path().join("deps").join(&key).join("tree");
    let init = std::fs::read_dir(tree.join("purepkg"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.ends_with("__init__.py"))
        .expect("purepkg/__init__.py in the tree");
    std::fs::write(&init, "tampered = True\n").unwrap();

    // Nothing the zip depends on changed: the tree is not even looked at.
    let noop = d.build();
    assert_eq!(status_of(&noop, "package"), "cached");

    // The zip must be written again (handler edit, and no reuse store):
    // the tampered tree is noticed and reinstalled, never packaged.
    std::fs::remove_file(d.p.path().join(".lbuild/store.zip")).unwrap();
    let _ = std::fs::remove_dir_all(d.p.store.path().join("entries"));
    d.p.write("app.py", "def handler(event, context):\n    return 2\n");
    let rebuilt = d.build();
    assert!(deps_ran(&rebuilt), "{rebuilt}");
    let data = d.entry("purepkg/__init__.py").unwrap();
    assert!(!data.contains("tampered"), "tampered file packaged: {data}");
}

#[test]
fn a_local_wheel_rebuilt_under_the_same_name_reruns_deps() {
    // Regression: only the requirements text was keyed, so a rebuilt
    // ./local/x.whl left every stage cached and the zip stale.
    let write = |value: &str, d: &DepsProject| {
        std::fs::create_dir_all(d.p.path().join("local")).unwrap();
        Wheel {
            name: "localpkg",
            version: "1.0",
            tag: "py3-none-any",
            files: vec![(
                "localpkg/__init__.py".into(),
                format!("VALUE = {value:?}\n").into_bytes(),
                false,
            )],
            entry_points: None,
        }
        .write_into(&d.p.path().join("local"))
    };
    let d = DepsProject::new("uv", "python3.12", "x86_64", "");
    let wheel = write("one", &d);
    let name = wheel.file_name().unwrap().to_string_lossy().into_owned();
    d.p.write("requirements.txt", &format!("./local/{name}\n"));
    d.build();
    assert_eq!(
        d.entry("localpkg/__init__.py").unwrap(),
        "VALUE = \"one\"\n"
    );

    write("two", &d);
    let json = d.build();
    assert_eq!(status_of(&json, "deps"), "ran", "{json}");
    assert_eq!(
        d.entry("localpkg/__init__.py").unwrap(),
        "VALUE = \"two\"\n"
    );
}

/// A one-module pure wheel `localpkg 1.0` in `dir` whose `__init__.py`
/// holds `VALUE = value`.
fn write_local_wheel(dir: &Path, value: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    Wheel {
        name: "localpkg",
        version: "1.0",
        tag: "py3-none-any",
        files: vec![(
            "localpkg/__init__.py".into(),
            format!("VALUE = {value:?}\n").into_bytes(),
            false,
        )],
        entry_points: None,
    }
    .write_into(dir)
}

#[test]
fn a_wheel_named_by_a_spaceless_pep508_file_url_is_keyed_by_content() {
    // Regression: `name@file:///...` (valid PEP 508, no spaces) was not
    // seen as a local wheel, so rebuilding the wheel left the zip stale.
    // The wheel lives outside the project and outside find_links.
    let d = DepsProject::new("uv", "python3.12", "x86_64", "");
    let outside = d.caches.path().join("built");
    let wheel = write_local_wheel(&outside, "one");
    d.p.write(
        "requirements.txt",
        &format!("localpkg@file://{}\n", wheel.display()),
    );
    d.build();
    assert_eq!(
        d.entry("localpkg/__init__.py").unwrap(),
        "VALUE = \"one\"\n"
    );

    write_local_wheel(&outside, "two");
    let json = d.build();
    assert_eq!(status_of(&json, "deps"), "ran", "{json}");
    assert_eq!(
        d.entry("localpkg/__init__.py").unwrap(),
        "VALUE = \"two\"\n"
    );
}

/// Runs lbuild, killing it if it has not finished within a minute (a hang
/// must fail the test, not the suite), with at most `max_address_space`
/// bytes of memory if given (a runaway read must fail, not swap the
/// machine). Returns (exit code, stderr).
fn run_bounded(d: &DepsProject, max_address_space: Option<u64>) -> (Option<i32>, String) {
    use std::os::unix::process::CommandExt;
    use std::process::Stdio;
    let mut cmd = d.p.cmd();
    box_installers(&mut cmd, d.caches.path());
    if let Some(max) = max_address_space {
        let limit = libc::rlimit {
            rlim_cur: max,
            rlim_max: max,
        };
        // SAFETY: setrlimit is async-signal-safe and touches no memory of
        // the parent.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setrlimit(libc::RLIMIT_AS, &limit) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
    }
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut s).unwrap();
        s
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("lbuild hung (killed after 60 s)");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    (status.code(), reader.join().unwrap())
}

#[test]
fn an_include_of_dev_zero_is_refused_without_reading_it() {
    // Regression: `-r /dev/zero` grew memory without bound.
    let d = DepsProject::new("uv", "python3.12", "x86_64", "purepkg==1.0\n-r /dev/zero\n");
    let (code, err) = run_bounded(&d, Some(2 << 30));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("requirements.txt:2"), "{err}");
    assert!(err.contains("/dev/zero"), "{err}");
    assert!(err.contains("a character device"), "{err}");
    assert!(err.contains("hint:"), "{err}");
}

#[test]
fn an_include_of_a_fifo_is_refused_without_blocking() {
    // Regression: `-r fifo` blocked forever waiting for a writer.
    let d = DepsProject::new("uv", "python3.12", "x86_64", "purepkg==1.0\n-r pipe.txt\n");
    let made = std::process::Command::new("mkfifo")
        .arg(d.p.path().join("pipe.txt"))
        .status()
        .unwrap();
    assert!(made.success());
    let (code, err) = run_bounded(&d, None);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("pipe.txt"), "{err}");
    assert!(err.contains("a named pipe (fifo)"), "{err}");
    assert!(err.contains("hint:"), "{err}");
}

#[test]
fn an_oversized_include_is_refused_with_the_cap_named() {
    let d = DepsProject::new("uv", "python3.12", "x86_64", "-r big.txt\n");
    std::fs::File::create(d.p.path().join("big.txt"))
        .unwrap()
        .set_len(17 << 20)
        .unwrap();
    let (code, err) = run_bounded(&d, None);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("big.txt is larger than 16 MiB"), "{err}");
    assert!(err.contains("hint:"), "{err}");
}

#[test]
fn find_links_at_proc_costs_a_listing_not_a_hash_of_everything() {
    // Regression: `--find-links /proc` hashed /proc/kcore and friends and
    // never finished. Only distributions at the top level are hashed.
    let d = DepsProject::new("uv", "python3.12", "x86_64", "purepkg==1.0\n");
    d.set_manifest("uv", "python3.12", "x86_64", "");
    d.p.write(
        "lambda.toml",
        &manifest("uv", "python3.12", "x86_64", "").replace(
            "find_links = [\"wheels\"]",
            "find_links = [\"wheels\", \"/proc\"]",
        ),
    );
    let (code, err) = run_bounded(&d, None);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        d.entry("purepkg/__init__.py").as_deref(),
        Some("def main():\n    print('hi')\n")
    );
}

#[test]
fn a_find_links_directory_with_too_many_entries_is_refused_with_a_hint() {
    let d = DepsProject::new(
        "uv",
        "python3.12",
        "x86_64",
        "purepkg==1.0\n--find-links ./many\n",
    );
    let many = d.p.path().join("many");
    std::fs::create_dir(&many).unwrap();
    for i in 0..10_001 {
        std::fs::write(many.join(format!("f{i}")), "").unwrap();
    }
    let (code, err) = run_bounded(&d, None);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("more than 10000 entries"), "{err}");
    assert!(
        err.contains("hint: point find_links at a directory"),
        "{err}"
    );
}

#[test]
fn a_package_without_a_wheel_under_uv_gets_both_fixes_named_in_the_hint() {
    // Regression (issue 14): uv's "has no usable wheels" fell through to
    // "adjust the pins", which names neither the package nor a fix.
    let d = DepsProject::new("uv", "python3.12", "x86_64", "sdistonly==1.0\n");
    // Only a source distribution: lbuild never builds one.
    d.p.write_bytes("wheels/sdistonly-1.0.tar.gz", b"not built here");
    let (code, err) = d.fail();
    assert_eq!(code, 1, "{err}");
    let hint = err
        .lines()
        .find(|l| l.trim_start().starts_with("hint:"))
        .unwrap_or_else(|| panic!("no hint:\n{err}"));
    assert!(!hint.contains("adjust the pins"), "{hint}");
    assert!(
        hint.contains("no binary wheel of \"sdistonly\" fits python3.12 x86_64 manylinux_2_34"),
        "{hint}"
    );
    assert!(
        hint.contains("pin a version of \"sdistonly\" that publishes a wheel"),
        "{hint}"
    );
    assert!(hint.contains("build the wheel yourself"), "{hint}");
    assert!(hint.contains("find_links"), "{hint}");
}

/// The real uv on PATH, for a shim to run.
fn real_uv() -> PathBuf {
    require_uv();
    std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|d| d.join("uv"))
        .find(|p| p.is_file())
        .unwrap()
}

/// Writes an executable script `name` into `dir`.
fn write_script(dir: &Path, name: &str, text: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// `dir` first on PATH.
fn path_with(dir: &Path) -> std::ffi::OsString {
    let mut dirs = vec![dir.to_path_buf()];
    dirs.extend(std::env::split_paths(&std::env::var_os("PATH").unwrap()));
    std::env::join_paths(dirs).unwrap()
}

/// pyenv's shim in a directory whose .python-version names a Python
/// without uv fails there and only there. lbuild runs the installer in the
/// project's directory, so it must ask there too (here lbuild is started
/// from elsewhere, where the shim works): `auto` then installs with pip
/// and says why, naming the shim, with the shim's text escaped; a forced
/// `uv` fails naming it.
#[test]
fn a_uv_shim_failing_in_the_project_is_named_and_auto_falls_back_to_pip() {
    let d = DepsProject::new("auto", "python3.12", "x86_64", "purepkg==1.0\n");
    d.p.write(".python-version", "3.9.1\n");
    let shims = tempfile::tempdir().unwrap();
    let shim = write_script(
        shims.path(),
        "uv",
        &format!(
            "#!/bin/sh\nif [ -f .python-version ]; then\n  printf 'pyenv: version `3.9.1'\\'' is not installed (set by %s/.python-version)\\033[31m\\n' \"$PWD\" >&2\n  exit 1\nfi\nexec '{}' \"$@\"\n",
            real_uv().display()
        ),
    );
    let elsewhere = tempfile::tempdir().unwrap();
    let run = || {
        let mut cmd = d.p.cmd();
        box_installers(&mut cmd, d.caches.path());
        cmd.current_dir(elsewhere.path())
            .env("PATH", path_with(shims.path()))
            .arg("--manifest")
            .arg(d.p.path().join("lambda.toml"))
            .arg("--json")
            .output()
            .unwrap()
    };
    let out = run();
    crate::common::assert_success(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stage_details(&json, "deps")["installer"], "pip", "{json}");
    let warning = stderr
        .lines()
        .find(|l| l.contains("installing with pip, not uv"))
        .unwrap_or_else(|| panic!("no fallback warning:\n{stderr}"));
    assert!(warning.contains(&shim.display().to_string()), "{warning}");
    assert!(warning.contains("is not installed (set by"), "{warning}");
    assert!(
        !stderr.contains('\u{1b}') && warning.contains("\\x1b"),
        "the shim's control characters reach the terminal escaped: {warning}"
    );
    assert!(d.entry("purepkg/__init__.py").is_some());

    d.set_manifest("uv", "python3.12", "x86_64", "");
    let out = run();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{} --version` failed in", shim.display()))
            && stderr.contains("is not installed"),
        "{stderr}"
    );
}

/// Through a working shim (a script: its stat says nothing about the uv
/// it runs), uv is asked for its version once, not once per artifact nor
/// on a no-op; a new .python-version (which may choose another uv) asks
/// again.
#[test]
fn a_working_uv_shim_is_asked_its_version_once_not_per_artifact_or_no_op() {
    let d = DepsProject::new("uv", "python3.12", "x86_64", "purepkg==1.0\n");
    d.p.write(
        "lambda.toml",
        r#"[defaults]
runtime = "python3.12"
architecture = "x86_64"
dependencies = { requirements = "requirements.txt", installer = "uv", find_links = ["wheels"], no_index = true }

[functions.a]
handler = "app.handler"

[functions.b]
handler = "app.handler"
"#,
    );
    let shims = tempfile::tempdir().unwrap();
    let log = shims.path().join("calls.log");
    write_script(
        shims.path(),
        "uv",
        &format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\nexec '{}' \"$@\"\n",
            log.display(),
            real_uv().display()
        ),
    );
    let build = || {
        let mut cmd = d.p.cmd();
        box_installers(&mut cmd, d.caches.path());
        let out = cmd
            .env("PATH", path_with(shims.path()))
            .arg("--json")
            .output()
            .unwrap();
        crate::common::assert_success(&out);
    };
    let asked = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter(|l| *l == "--version")
            .count()
    };
    build();
    assert_eq!(asked(), 1, "two artifacts, one question");
    assert!(d.p.zip_path("a").exists() && d.p.zip_path("b").exists());
    build();
    assert_eq!(asked(), 1, "a no-op asks nothing");
    d.p.write(".python-version", "3.12\n");
    build();
    assert_eq!(asked(), 2, "a new .python-version may choose another uv");
}

/// A wheel's `.env*` files are its data and reach the zip (listed in the
/// rewritten RECORD); its byte-code does not, and the project's own `.env`
/// stays out.
#[test]
fn a_wheels_env_files_are_packaged_but_not_its_byte_code_nor_the_projects_secrets() {
    let d = DepsProject::new("uv", "python3.12", "x86_64", "envpkg==1.0\n");
    Wheel {
        name: "envpkg",
        version: "1.0",
        tag: "py3-none-any",
        files: vec![
            ("envpkg/__init__.py".into(), b"X = 1\n".to_vec(), false),
            (
                "envpkg/templates/.env.example".into(),
                b"DATABASE_URL=sqlite://\n".to_vec(),
                false,
            ),
            (
                "envpkg/__pycache__/__init__.cpython-312.pyc".into(),
                b"\x00host byte-code".to_vec(),
                false,
            ),
        ],
        entry_points: None,
    }
    .write_into(&d.p.path().join("wheels"));
    d.p.write(".env", "AWS_SECRET_ACCESS_KEY=do-not-ship\n");
    d.build();
    let names = entry_names(&d.zip());
    assert_eq!(
        d.entry("envpkg/templates/.env.example").as_deref(),
        Some("DATABASE_URL=sqlite://\n"),
        "{names:?}"
    );
    assert!(
        !names.iter().any(|n| n.contains("__pycache__")),
        "{names:?}"
    );
    assert!(!names.iter().any(|n| n == ".env"), "{names:?}");
    let record = d.entry("envpkg-1.0.dist-info/RECORD").unwrap();
    assert!(
        record.contains("envpkg/templates/.env.example,sha256="),
        "{record}"
    );
    assert!(!record.contains("__pycache__"), "{record}");
}

/// `${VAR}` in a requirements file is expanded by the installer (pip on
/// every line; uv only in URLs and paths): the key takes the expanded
/// text, so changing the variable installs again, and the value (a token,
/// often) never appears in `-v`'s explanation.
#[test]
fn a_requirements_variable_is_keyed_by_its_value_and_never_shown() {
    let d = DepsProject::new(
        "pip",
        "python3.12",
        "x86_64",
        "purepkg==${PUREPKG_VERSION}\n",
    );
    Wheel {
        name: "purepkg",
        version: "2.0",
        tag: "py3-none-any",
        files: vec![("purepkg/__init__.py".into(), b"V = 2\n".to_vec(), false)],
        entry_points: None,
    }
    .write_into(&d.p.path().join("wheels"));
    let build = |version: &str| {
        let mut cmd = d.p.cmd();
        box_installers(&mut cmd, d.caches.path());
        let out = cmd
            .env("PUREPKG_VERSION", version)
            .args(["--json", "-v"])
            .output()
            .unwrap();
        crate::common::assert_success(&out);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (json, stderr)
    };
    let (first, _) = build("1.0");
    assert!(deps_ran(&first));
    assert!(
        d.entry("purepkg/__init__.py")
            .unwrap()
            .contains("print('hi')")
    );
    let (again, _) = build("1.0");
    assert_eq!(status_of(&again, "deps"), "cached");
    let (second, stderr) = build("2.0");
    assert!(deps_ran(&second), "a new value installs again: {second}");
    assert_eq!(d.entry("purepkg/__init__.py").as_deref(), Some("V = 2\n"));
    assert!(!stderr.contains("purepkg==2.0"), "{stderr}");
}
