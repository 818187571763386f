//! Lockfiles as the dependency source (`[dependencies] lock = ...`), end to
//! end and hermetic: the wheels are written into `wheels/` (the deps
//! tests' wheelhouse plus a few of our own), the installers find them
//! through `find_links` with `no_index`, and the locks are written in each
//! tool's documented format (and, for uv.lock, by the real `uv lock`).
//!
//! The packages and their markers, the same in every lock:
//! - `purepkg`, `nativepkg` (cp312 wheels for x86_64 and aarch64; marker
//!   `python_version >= '3.12'`, false on a 3.11 host);
//! - `armonly`, marker `platform_machine == 'aarch64'`;
//! - `oldpy`, marker `python_version < '3.12'` (true on a 3.11 host);
//! - `devpkg` in the `dev` group, `extrapkg` in the `email` extra.

use std::collections::BTreeMap;
use std::process::Output;

use crate::common::{TestProject, box_installers, entry_names, sha256_hex, stage_details};
use crate::deps::{Wheel, write_wheelhouse};

const EXTRA_WHEELS: [&str; 4] = ["armonly", "oldpy", "devpkg", "extrapkg"];

struct LockProject {
    p: TestProject,
    caches: tempfile::TempDir,
}

impl LockProject {
    fn new() -> Self {
        let p = TestProject::empty();
        p.write(
            "app.py",
            "import purepkg\n\ndef handler(event, context):\n    return 'ok'\n",
        );
        let wheels = p.path().join("wheels");
        write_wheelhouse(&wheels);
        for name in EXTRA_WHEELS {
            Wheel {
                name,
                version: "1.0",
                tag: "py3-none-any",
                files: vec![(format!("{name}/__init__.py"), b"X = 1\n".to_vec(), false)],
                entry_points: None,
            }
            .write_into(&wheels);
        }
        p.write("pyproject.toml", PYPROJECT);
        LockProject {
            p,
            caches: tempfile::Builder::new()
                .prefix("lbuild-caches-")
                .tempdir()
                .unwrap(),
        }
    }

    /// `[dependencies]` with the wheelhouse and `deps` (e.g. `lock = "uv.lock"`).
    fn manifest(&self, arch: &str, deps: &str) {
        self.p.write(
            "lambda.toml",
            &format!(
                r#"[function]
name = "fn"
handler = "app.handler"
runtime = "python3.12"
architecture = "{arch}"

[dependencies]
find_links = ["wheels"]
no_index = true
{deps}
"#
            ),
        );
    }

    /// sha256 of each wheel file, by file name.
    fn hashes(&self) -> BTreeMap<String, String> {
        std::fs::read_dir(self.p.path().join("wheels"))
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    sha256_hex(&std::fs::read(e.path()).unwrap()),
                )
            })
            .collect()
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut cmd = self.p.cmd();
        box_installers(&mut cmd, self.caches.path());
        cmd.args(args).output().unwrap()
    }

    fn build(&self) -> serde_json::Value {
        let out = self.run(&["--json"]);
        crate::common::assert_success(&out);
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn fail(&self) -> String {
        let out = self.run(&[]);
        assert!(
            !out.status.success(),
            "lbuild unexpectedly succeeded:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    fn zip_bytes(&self) -> Vec<u8> {
        self.p.zip_bytes("fn")
    }

    /// The top-level package directories in the zip.
    fn packages(&self) -> Vec<String> {
        let mut names: Vec<String> = entry_names(&self.p.zip_path("fn"))
            .into_iter()
            .filter(|n| n.ends_with("/__init__.py"))
            .map(|n| n.split('/').next().unwrap().to_string())
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

const PYPROJECT: &str = r#"[project]
name = "app"
version = "0.1.0"
requires-python = ">=3.9"
dependencies = [
    "purepkg==1.0",
    "nativepkg==1.0; python_version >= '3.12'",
    "armonly; platform_machine == 'aarch64'",
    "oldpy; python_version < '3.12'",
]

[project.optional-dependencies]
email = ["extrapkg"]

[dependency-groups]
dev = ["devpkg"]
"#;

/// The wheels of `name` in the wheelhouse, with their hashes.
fn wheels_of<'a>(
    hashes: &'a BTreeMap<String, String>,
    name: &'a str,
) -> impl Iterator<Item = (&'a String, &'a String)> {
    hashes
        .iter()
        .filter(move |(f, _)| f.starts_with(&format!("{name}-1.0-")))
}

/// A uv.lock as uv writes it for a project resolved against PyPI.
fn uv_lock(hashes: &BTreeMap<String, String>) -> String {
    let mut s = String::from(
        r#"version = 1
revision = 2
requires-python = ">=3.9"
resolution-markers = [
    "python_full_version >= '3.12'",
    "python_full_version < '3.12'",
]

[[package]]
name = "app"
version = "0.1.0"
source = { virtual = "." }
dependencies = [
    { name = "armonly", marker = "platform_machine == 'aarch64'" },
    { name = "nativepkg", marker = "python_full_version >= '3.12'" },
    { name = "oldpy", marker = "python_full_version < '3.12'" },
    { name = "purepkg" },
]

[package.optional-dependencies]
email = [
    { name = "extrapkg" },
]

[package.dev-dependencies]
dev = [
    { name = "devpkg" },
]

[package.metadata]
requires-dist = [
    { name = "armonly", marker = "platform_machine == 'aarch64'" },
    { name = "extrapkg", marker = "extra == 'email'" },
    { name = "nativepkg", marker = "python_full_version >= '3.12'", specifier = "==1.0" },
    { name = "oldpy", marker = "python_full_version < '3.12'" },
    { name = "purepkg", specifier = "==1.0" },
]
provides-extras = ["email"]

[package.metadata.requires-dev]
dev = [{ name = "devpkg" }]
"#,
    );
    for name in [
        "armonly",
        "devpkg",
        "extrapkg",
        "nativepkg",
        "oldpy",
        "purepkg",
    ] {
        s.push_str(&format!(
            "\n[[package]]\nname = \"{name}\"\nversion = \"1.0\"\nsource = {{ registry = \"https://pypi.org/simple\" }}\nwheels = [\n"
        ));
        for (file, hash) in wheels_of(hashes, name) {
            s.push_str(&format!(
                "    {{ url = \"https://files.pythonhosted.org/packages/ab/cd/{file}\", hash = \"sha256:{hash}\", size = 1000 }},\n"
            ));
        }
        s.push_str("]\n");
    }
    s
}

/// A poetry.lock as Poetry 2 writes it (lock-version 2.1).
fn poetry_lock(hashes: &BTreeMap<String, String>) -> String {
    let mut s = String::from(
        "# This file is automatically @generated by Poetry 2.1.3 and should not be changed by hand.\n",
    );
    let packages: [(&str, &str, &str, bool); 6] = [
        (
            "armonly",
            "main",
            r#"markers = "platform_machine == \"aarch64\"""#,
            false,
        ),
        ("devpkg", "dev", "", false),
        (
            "extrapkg",
            "main",
            r#"markers = "extra == \"email\"""#,
            true,
        ),
        (
            "nativepkg",
            "main",
            r#"markers = "python_version >= \"3.12\"""#,
            false,
        ),
        (
            "oldpy",
            "main",
            r#"markers = "python_version < \"3.12\"""#,
            false,
        ),
        ("purepkg", "main", "", false),
    ];
    for (name, group, markers, optional) in packages {
        s.push_str(&format!(
            "\n[[package]]\nname = \"{name}\"\nversion = \"1.0\"\ndescription = \"\"\noptional = {optional}\npython-versions = \"*\"\ngroups = [\"{group}\"]\n{markers}\nfiles = [\n"
        ));
        for (file, hash) in wheels_of(hashes, name) {
            s.push_str(&format!(
                "    {{file = \"{file}\", hash = \"sha256:{hash}\"}},\n"
            ));
        }
        s.push_str("]\n");
    }
    s.push_str(
        "\n[extras]\nemail = [\"extrapkg\"]\n\n[metadata]\nlock-version = \"2.1\"\npython-versions = \">=3.9\"\ncontent-hash = \"0000\"\n",
    );
    s
}

/// A pylock.toml as `uv export --format pylock.toml` writes it (no dev
/// group, no extras: chosen at export).
fn pylock(hashes: &BTreeMap<String, String>) -> String {
    let mut s =
        String::from("lock-version = \"1.0\"\ncreated-by = \"uv\"\nrequires-python = \">=3.9\"\n");
    let packages = [
        ("armonly", Some("platform_machine == 'aarch64'")),
        ("nativepkg", Some("python_full_version >= '3.12'")),
        ("oldpy", Some("python_full_version < '3.12'")),
        ("purepkg", None),
    ];
    for (name, marker) in packages {
        s.push_str(&format!(
            "\n[[packages]]\nname = \"{name}\"\nversion = \"1.0\"\n"
        ));
        if let Some(m) = marker {
            s.push_str(&format!("marker = \"{m}\"\n"));
        }
        s.push_str("index = \"https://pypi.org/simple\"\nwheels = [\n");
        for (file, hash) in wheels_of(hashes, name) {
            s.push_str(&format!(
                "    {{ url = \"https://files.pythonhosted.org/packages/ab/cd/{file}\", hashes = {{ sha256 = \"{hash}\" }} }},\n"
            ));
        }
        s.push_str("]\n");
    }
    s
}

/// Writes all three locks.
fn write_locks(d: &LockProject) {
    let h = d.hashes();
    d.p.write("uv.lock", &uv_lock(&h));
    d.p.write("poetry.lock", &poetry_lock(&h));
    d.p.write("pylock.toml", &pylock(&h));
}

const KINDS: [&str; 3] = ["uv.lock", "poetry.lock", "pylock.toml"];

#[test]
fn each_lock_gives_the_zip_of_the_equivalent_pinned_requirements_per_architecture() {
    let d = LockProject::new();
    write_locks(&d);
    for (arch, pins, expected) in [
        (
            "x86_64",
            "nativepkg==1.0\npurepkg==1.0\n",
            vec!["nativepkg", "purepkg"],
        ),
        (
            "arm64",
            "armonly==1.0\nnativepkg==1.0\npurepkg==1.0\n",
            vec!["armonly", "nativepkg", "purepkg"],
        ),
    ] {
        d.p.write("requirements.txt", pins);
        d.manifest(arch, "");
        d.build();
        let want = d.zip_bytes();
        assert_eq!(d.packages(), expected, "{arch} from requirements.txt");
        for kind in KINDS {
            d.manifest(arch, &format!("lock = \"{kind}\""));
            let json = d.build();
            assert_eq!(
                d.packages(),
                expected,
                "{kind} for {arch}: the host (python 3.11) must not decide the markers"
            );
            assert!(
                d.zip_bytes() == want,
                "{kind} for {arch}: the zip differs from the pinned requirements.txt one"
            );
            assert_eq!(
                stage_details(&json, "deps")["distributions"],
                expected.len()
            );
        }
    }
}

#[test]
fn dev_group_and_extras_only_when_asked() {
    let d = LockProject::new();
    write_locks(&d);
    for kind in ["uv.lock", "poetry.lock"] {
        d.manifest("x86_64", &format!("lock = \"{kind}\""));
        d.build();
        assert_eq!(d.packages(), ["nativepkg", "purepkg"], "{kind} default");
        d.manifest("x86_64", &format!("lock = \"{kind}\"\ngroups = [\"dev\"]"));
        d.build();
        assert_eq!(
            d.packages(),
            ["devpkg", "nativepkg", "purepkg"],
            "{kind} with the dev group"
        );
        d.manifest(
            "x86_64",
            &format!("lock = \"{kind}\"\nextras = [\"email\"]"),
        );
        d.build();
        assert_eq!(
            d.packages(),
            ["extrapkg", "nativepkg", "purepkg"],
            "{kind} with the email extra"
        );
        d.manifest("x86_64", &format!("lock = \"{kind}\"\ngroups = [\"nope\"]"));
        let err = d.fail();
        assert!(err.contains("\"nope\""), "{kind}: {err}");
    }
}

#[test]
fn a_real_uv_lock_against_a_local_index_installs_like_its_pins() {
    let d = LockProject::new();
    let mut cmd = std::process::Command::new("uv");
    box_installers(&mut cmd, d.caches.path());
    let out = cmd
        .args(["lock", "--offline", "--no-index", "--find-links", "wheels"])
        .current_dir(d.p.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "uv lock: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lock = std::fs::read_to_string(d.p.path().join("uv.lock")).unwrap();
    assert!(lock.contains("source = { virtual = \".\" }"), "{lock}");
    d.p.write("requirements.txt", "nativepkg==1.0\npurepkg==1.0\n");
    d.manifest("x86_64", "");
    d.build();
    let want = d.zip_bytes();
    d.manifest("x86_64", "lock = \"uv.lock\"");
    d.build();
    assert!(
        d.zip_bytes() == want,
        "uv lock's own file: {:?}",
        d.packages()
    );
}

#[test]
fn a_hash_mismatch_is_an_error_naming_the_package_and_both_hashes() {
    let d = LockProject::new();
    write_locks(&d);
    d.manifest("x86_64", "lock = \"uv.lock\"");
    d.build();
    let good = d.zip_bytes();
    let h = d.hashes();
    let real = h["purepkg-1.0-py3-none-any.whl"].clone();
    let wrong = "0".repeat(64);
    for kind in KINDS {
        let text = std::fs::read_to_string(d.p.path().join(kind)).unwrap();
        d.p.write(kind, &text.replace(&real, &wrong));
        d.manifest("x86_64", &format!("lock = \"{kind}\""));
        let err = d.fail();
        assert!(err.contains("purepkg"), "{kind}: {err}");
        assert!(err.contains(&real) && err.contains(&wrong), "{kind}: {err}");
        assert!(
            err.contains("could not install purepkg==1.0 (from ") && err.contains("re-lock"),
            "{kind}: {err}"
        );
        assert_eq!(d.zip_bytes(), good, "{kind}: the last good zip was touched");
    }
}

#[test]
fn a_malformed_lock_is_an_error_at_its_line_and_keeps_the_last_zip() {
    let d = LockProject::new();
    write_locks(&d);
    d.manifest("x86_64", "lock = \"uv.lock\"");
    d.build();
    let good = d.zip_bytes();
    for kind in KINDS {
        d.p.write(kind, "# a lock\n\n[[package]\nname = \"x\"\n");
        d.manifest("x86_64", &format!("lock = \"{kind}\""));
        let err = d.fail();
        assert!(err.contains(&format!("{kind}:3:")), "{kind}: {err}");
        assert_eq!(d.zip_bytes(), good, "{kind}: the last good zip was touched");
    }
}

#[test]
fn a_locked_package_the_index_lacks_is_an_error_naming_it() {
    let d = LockProject::new();
    write_locks(&d);
    d.manifest("x86_64", "lock = \"uv.lock\"");
    d.build();
    let good = d.zip_bytes();
    std::fs::remove_file(d.p.path().join("wheels/purepkg-1.0-py3-none-any.whl")).unwrap();
    // A key input changed (the find-links listing): deps run again.
    let err = d.fail();
    assert!(err.contains("purepkg"), "{err}");
    assert_eq!(d.zip_bytes(), good);
}

#[test]
fn requirements_and_lock_together_is_an_error_at_the_key() {
    let d = LockProject::new();
    write_locks(&d);
    d.p.write("requirements.txt", "purepkg==1.0\n");
    d.manifest(
        "x86_64",
        "requirements = \"requirements.txt\"\nlock = \"uv.lock\"",
    );
    let err = d.fail();
    assert!(err.contains("lambda.toml:10:"), "{err}");
    assert!(err.contains("both requirements"), "{err}");
    d.manifest("x86_64", "lock = \"Pipfile.lock\"");
    let err = d.fail();
    assert!(
        err.contains("lambda.toml:10:") && err.contains("Pipfile.lock"),
        "{err}"
    );
    d.manifest("x86_64", "lock = \"pylock.toml\"\ngroups = [\"dev\"]");
    let err = d.fail();
    assert!(err.contains("lambda.toml:11:"), "{err}");
}

#[test]
fn the_deps_key_is_the_lock_not_pyproject() {
    let d = LockProject::new();
    write_locks(&d);
    d.manifest("x86_64", "lock = \"uv.lock\"");
    let first = d.build();
    assert_eq!(stage_details(&first, "deps")["installer_ran"], true);
    // pyproject edited (in a way the lock still matches): nothing reruns.
    d.p.write("pyproject.toml", &format!("{PYPROJECT}\n# a comment\n"));
    let again = d.build();
    assert_eq!(
        crate::common::status_of(&again, "deps"),
        "cached",
        "{again}"
    );
    // The lock changes: deps run again.
    let text = std::fs::read_to_string(d.p.path().join("uv.lock")).unwrap();
    d.p.write("uv.lock", &format!("{text}\n"));
    let relocked = d.build();
    assert_eq!(crate::common::status_of(&relocked, "deps"), "ran");
}

#[test]
fn an_out_of_date_lock_warns_and_with_locked_fails_keeping_the_last_zip() {
    let d = LockProject::new();
    write_locks(&d);
    d.manifest("x86_64", "lock = \"uv.lock\"");
    let out = d.run(&[]);
    crate::common::assert_success(&out);
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("out of date"),
        "a current lock is not out of date: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let good = d.zip_bytes();
    d.p.write(
        "pyproject.toml",
        &PYPROJECT.replace("\"purepkg==1.0\",", "\"purepkg==1.0\",\n    \"newglibc\","),
    );
    // The lock changed nothing for the key: touch it so deps run.
    let text = std::fs::read_to_string(d.p.path().join("uv.lock")).unwrap();
    d.p.write("uv.lock", &format!("{text}\n"));
    let out = d.run(&[]);
    crate::common::assert_success(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("out of date") && stderr.contains("newglibc"),
        "{stderr}"
    );
    d.p.write("uv.lock", &format!("{text}\n\n"));
    d.manifest("x86_64", "lock = \"uv.lock\"\nlocked = true");
    let err = d.fail();
    assert!(
        err.contains("out of date") && err.contains("newglibc"),
        "{err}"
    );
    assert_eq!(d.zip_bytes(), good);
}

/// A PEP 517 build backend in the package's own tree (`backend-path`),
/// with no build requirements: building it needs no index, so the test
/// stays offline whatever build backends this machine has.
const IN_TREE_BACKEND: &str = r#"import base64, hashlib, os, zipfile

NAME, VERSION = "locallib", "0.1.0"
DIST = f"{NAME}-{VERSION}.dist-info"


def _files():
    out = []
    for root, dirs, files in os.walk(NAME):
        dirs.sort()
        for f in sorted(files):
            p = os.path.join(root, f)
            with open(p, "rb") as fh:
                out.append((p.replace(os.sep, "/"), fh.read()))
    out.append((f"{DIST}/METADATA", f"Metadata-Version: 2.1\nName: {NAME}\nVersion: {VERSION}\n".encode()))
    out.append((f"{DIST}/WHEEL", b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"))
    return out


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    name = f"{NAME}-{VERSION}-py3-none-any.whl"
    record = []
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as z:
        for n, data in _files():
            z.writestr(zipfile.ZipInfo(n, (1980, 1, 1, 0, 0, 0)), data)
            h = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{n},sha256={h},{len(data)}")
        record.append(f"{DIST}/RECORD,,")
        z.writestr(zipfile.ZipInfo(f"{DIST}/RECORD", (1980, 1, 1, 0, 0, 0)), "\n".join(record) + "\n")
    return name
"#;

/// `lib/`: the pure-Python package `locallib` with its own build backend.
fn write_local_lib(d: &LockProject) {
    d.p.write(
        "lib/pyproject.toml",
        "[build-system]\nrequires = []\nbuild-backend = \"backend\"\nbackend-path = [\"_backend\"]\n\n[project]\nname = \"locallib\"\nversion = \"0.1.0\"\n",
    );
    d.p.write("lib/_backend/backend.py", IN_TREE_BACKEND);
    d.p.write("lib/locallib/__init__.py", "X = 1\n");
}

/// The project (itself a package with a build backend, so uv locks it as
/// `editable = "."`) depending on purepkg and on `lib/` by path.
const PATH_PYPROJECT: &str = r#"[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "app"
version = "0.1.0"
requires-python = ">=3.9"
dependencies = ["purepkg==1.0", "locallib"]

[tool.uv.sources]
locallib = { path = "lib" }
"#;

fn uv_lock_offline(d: &LockProject) -> String {
    let mut cmd = std::process::Command::new("uv");
    box_installers(&mut cmd, d.caches.path());
    let out = cmd
        .args(["lock", "--offline", "--no-index", "--find-links", "wheels"])
        .current_dir(d.p.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "uv lock: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(d.p.path().join("uv.lock")).unwrap()
}

#[test]
fn a_pure_python_path_dependency_is_built_and_packaged_and_the_project_root_is_not() {
    let d = LockProject::new();
    write_local_lib(&d);
    d.p.write("pyproject.toml", PATH_PYPROJECT);
    let lock = uv_lock_offline(&d);
    assert!(lock.contains("source = { editable = \".\" }"), "{lock}");
    assert!(lock.contains("source = { directory = \"lib\" }"), "{lock}");
    // lib/ is not the function's own code (the sources walk would take it).
    let manifest = |lock: &str| {
        d.manifest(
            "x86_64",
            &format!("lock = \"{lock}\"\n\n[sources]\nexclude = [\"lib/**\", \"wheels/**\"]"),
        )
    };
    manifest("uv.lock");
    let json = d.build();
    assert_eq!(d.packages(), ["locallib", "purepkg"]);
    assert_eq!(stage_details(&json, "deps")["distributions"], 2);
    let names = entry_names(&d.p.zip_path("fn"));
    assert!(
        names
            .iter()
            .any(|n| n == "locallib-0.1.0.dist-info/METADATA"),
        "{names:?}"
    );
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("app-") || n.starts_with("lib/")),
        "the project root is never installed: {names:?}"
    );
    // The build never writes into the package's directory.
    let mut listed: Vec<String> = std::fs::read_dir(d.p.path().join("lib"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    listed.sort();
    assert_eq!(listed, ["_backend", "locallib", "pyproject.toml"]);

    // Nothing changed: cached. An edit inside the package: built again.
    assert_eq!(crate::common::status_of(&d.build(), "deps"), "cached");
    d.p.write("lib/locallib/__init__.py", "X = 2\n");
    let again = d.build();
    assert_eq!(crate::common::status_of(&again, "deps"), "ran");
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, zipfile; print(zipfile.ZipFile(sys.argv[1]).read('locallib/__init__.py').decode(), end='')",
        ])
        .arg(d.p.zip_path("fn"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "X = 2\n");

    // The same package through poetry.lock and pylock.toml gives the same zip.
    let want = d.zip_bytes();
    let h = d.hashes();
    let purepkg_files: String = wheels_of(&h, "purepkg")
        .map(|(f, hash)| format!("    {{file = \"{f}\", hash = \"sha256:{hash}\"}},\n"))
        .collect();
    d.p.write(
        "poetry.lock",
        &format!(
            "[[package]]\nname = \"locallib\"\nversion = \"0.1.0\"\ndescription = \"\"\noptional = false\npython-versions = \"*\"\ngroups = [\"main\"]\nfiles = []\ndevelop = false\n\n[package.source]\ntype = \"directory\"\nurl = \"lib\"\n\n[[package]]\nname = \"purepkg\"\nversion = \"1.0\"\ndescription = \"\"\noptional = false\npython-versions = \"*\"\ngroups = [\"main\"]\nfiles = [\n{purepkg_files}]\n\n[metadata]\nlock-version = \"2.1\"\npython-versions = \">=3.9\"\ncontent-hash = \"0000\"\n"
        ),
    );
    manifest("poetry.lock");
    d.build();
    assert!(d.zip_bytes() == want, "poetry.lock: {:?}", d.packages());
    let pure = wheels_of(&h, "purepkg").next().unwrap().1.clone();
    d.p.write(
        "pylock.toml",
        &format!(
            "lock-version = \"1.0\"\ncreated-by = \"uv\"\n\n[[packages]]\nname = \"app\"\ndirectory = {{ path = \".\", editable = true }}\n\n[[packages]]\nname = \"locallib\"\ndirectory = {{ path = \"lib\", editable = false }}\n\n[[packages]]\nname = \"purepkg\"\nversion = \"1.0\"\nwheels = [{{ url = \"https://files.pythonhosted.org/packages/ab/cd/purepkg-1.0-py3-none-any.whl\", hashes = {{ sha256 = \"{pure}\" }} }}]\n"
        ),
    );
    manifest("pylock.toml");
    d.build();
    assert!(d.zip_bytes() == want, "pylock.toml: {:?}", d.packages());
}

#[test]
fn a_path_dependency_that_needs_compilation_is_an_error_saying_so() {
    let d = LockProject::new();
    write_locks(&d);
    d.manifest("x86_64", "lock = \"pylock.toml\"");
    d.build();
    let good = d.zip_bytes();
    d.p.write(
        "native/pyproject.toml",
        "[build-system]\nrequires = [\"maturin>=1,<2\"]\nbuild-backend = \"maturin\"\n\n[project]\nname = \"native\"\nversion = \"0.1.0\"\n",
    );
    let text = std::fs::read_to_string(d.p.path().join("pylock.toml")).unwrap();
    d.p.write(
        "pylock.toml",
        &format!("{text}\n[[packages]]\nname = \"native\"\ndirectory = {{ path = \"native\" }}\n"),
    );
    let err = d.fail();
    assert!(
        err.contains("native") && err.contains("needs compilation") && err.contains("maturin"),
        "{err}"
    );
    assert_eq!(d.zip_bytes(), good);
}

#[test]
fn pyproject_dependencies_are_resolved_for_the_target_with_a_warning_that_they_are_not_pinned() {
    let d = LockProject::new();
    for (arch, pins, expected) in [
        (
            "x86_64",
            "nativepkg==1.0\npurepkg==1.0\n",
            vec!["nativepkg", "purepkg"],
        ),
        (
            "arm64",
            "armonly==1.0\nnativepkg==1.0\npurepkg==1.0\n",
            vec!["armonly", "nativepkg", "purepkg"],
        ),
    ] {
        d.p.write("requirements.txt", pins);
        d.manifest(arch, "");
        d.build();
        let want = d.zip_bytes();
        d.manifest(arch, "pyproject = \"pyproject.toml\"");
        let out = d.run(&[]);
        crate::common::assert_success(&out);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("not pinned") && stderr.contains("drift"),
            "{stderr}"
        );
        assert_eq!(d.packages(), expected, "{arch}: the host must not decide");
        assert!(d.zip_bytes() == want, "{arch}: differs from the pins' zip");
    }
    d.manifest(
        "x86_64",
        "pyproject = \"pyproject.toml\"\ngroups = [\"dev\"]\nextras = [\"email\"]",
    );
    d.build();
    assert_eq!(d.packages(), ["devpkg", "extrapkg", "nativepkg", "purepkg"]);
    // The key is the dependency lists: another description changes nothing.
    d.p.write(
        "pyproject.toml",
        &PYPROJECT.replace(
            "version = \"0.1.0\"",
            "version = \"0.1.0\"\ndescription = \"x\"",
        ),
    );
    assert_eq!(crate::common::status_of(&d.build(), "deps"), "cached");
    d.p.write(
        "pyproject.toml",
        &PYPROJECT.replace("dev = [\"devpkg\"]", "dev = []"),
    );
    assert_eq!(crate::common::status_of(&d.build(), "deps"), "ran");
    assert_eq!(d.packages(), ["extrapkg", "nativepkg", "purepkg"]);
    // One source of packages.
    d.manifest(
        "x86_64",
        "pyproject = \"pyproject.toml\"\nlock = \"uv.lock\"",
    );
    let err = d.fail();
    assert!(
        err.contains("both lock") && err.contains("pyproject"),
        "{err}"
    );
}

/// Poetry's content-hash of `pyproject.toml`, computed by Python itself
/// (tomllib + json.dumps, as `Locker._get_content_hash` does); with
/// `groups`, as Poetry 2.3 and later hash it (`[dependency-groups]` too).
fn poetry_content_hash_by_python(dir: &std::path::Path, groups: bool) -> String {
    let script = r#"
import hashlib, json, sys, tomllib
data = tomllib.load(open(sys.argv[1], "rb"))
project = data.get("project", {})
poetry = data.get("tool", {}).get("poetry", {})
groups = data.get("dependency-groups", {}) if sys.argv[2] == "1" else {}
legacy = ["dependencies", "source", "extras", "dev-dependencies"]
rp = {k: project[k] for k in ["requires-python", "dependencies", "optional-dependencies"] if project.get(k) is not None}
rt = {}
for k in legacy + ["group"]:
    v = poetry.get(k)
    if v is None and (k not in legacy or rp or groups):
        continue
    rt[k] = v
content = {}
if rp:
    content["project"] = rp
if groups:
    content["dependency-groups"] = groups
if content:
    content["tool"] = {"poetry": rt}
else:
    content = rt
print(hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest())
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(dir.join("pyproject.toml"))
        .arg(if groups { "1" } else { "0" })
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn an_out_of_date_poetry_lock_by_its_content_hash_warns_and_with_locked_fails() {
    let d = LockProject::new();
    // A pyproject with [project] and [tool.poetry] parts, non-ASCII and
    // escapes included, as Poetry 2 projects have.
    let pyproject = format!(
        "{PYPROJECT}\n[tool.poetry]\npackage-mode = false\n\n[tool.poetry.group.test.dependencies]\npytest = {{ version = \"^8\", markers = \"sys_platform != 'win32'\" }}\n\"naïve\" = \"*\"\n\n[[tool.poetry.source]]\nname = \"corp\"\nurl = \"https://pypi.example.com/simple\\\\x\"\npriority = \"supplemental\"\n"
    );
    d.p.write("pyproject.toml", &pyproject);
    let h = d.hashes();
    let hash = poetry_content_hash_by_python(d.p.path(), false);
    let current = poetry_lock(&h).replace(
        "content-hash = \"0000\"",
        &format!("content-hash = \"{hash}\""),
    );
    d.p.write("poetry.lock", &current);
    d.manifest("x86_64", "lock = \"poetry.lock\"\nlocked = true");
    let out = d.run(&[]);
    crate::common::assert_success(&out);
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("out of date"),
        "the content-hash Poetry computes must match: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let good = d.zip_bytes();
    // A dependency added to pyproject, the lock not redone.
    d.p.write(
        "pyproject.toml",
        &pyproject.replace("\"purepkg==1.0\",", "\"purepkg==1.0\",\n    \"newglibc\","),
    );
    d.p.write("poetry.lock", &format!("{current}\n"));
    let err = d.fail();
    assert!(
        err.contains("out of date") && err.contains("content-hash") && err.contains("poetry lock"),
        "{err}"
    );
    assert_eq!(d.zip_bytes(), good);
    d.manifest("x86_64", "lock = \"poetry.lock\"");
    let out = d.run(&[]);
    crate::common::assert_success(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("out of date"));
    // A Poetry 1 style pyproject (no [project]): the legacy keys, null
    // when absent, at the top level.
    d.p.write(
        "pyproject.toml",
        "[tool.poetry]\nname = \"app\"\nversion = \"0.1.0\"\n\n[tool.poetry.dependencies]\npython = \"^3.9\"\npurepkg = \"1.0\"\n",
    );
    let hash = poetry_content_hash_by_python(d.p.path(), false);
    d.p.write(
        "poetry.lock",
        &poetry_lock(&h).replace(
            "content-hash = \"0000\"",
            &format!("content-hash = \"{hash}\""),
        ),
    );
    d.manifest("x86_64", "lock = \"poetry.lock\"\nlocked = true");
    let out = d.run(&[]);
    crate::common::assert_success(&out);
}

/// A uv.lock or poetry.lock whose pyproject.toml cannot be read (broken,
/// or gone) is not taken as current: the build fails naming both files,
/// exit 2, and the last zip stays.
#[test]
fn a_lock_whose_pyproject_cannot_be_read_is_an_error_not_current() {
    let d = LockProject::new();
    write_locks(&d);
    for lock in ["uv.lock", "poetry.lock"] {
        d.manifest("x86_64", &format!("lock = \"{lock}\""));
        d.p.write("pyproject.toml", PYPROJECT);
        d.build();
        let good = d.zip_bytes();
        for broken in [Some("[project\nname = \"app\"\n"), None] {
            match broken {
                Some(text) => d.p.write("pyproject.toml", text),
                None => d.p.remove("pyproject.toml"),
            }
            // Touched so that deps run (the key reads only the lock).
            let text = std::fs::read_to_string(d.p.path().join(lock)).unwrap();
            d.p.write(lock, &format!("{text}\n"));
            let out = d.run(&[]);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{lock} {broken:?}: {err}");
            assert!(
                err.contains(&format!("cannot check {}", d.p.path().join(lock).display()))
                    && err.contains("pyproject.toml"),
                "{err}"
            );
            assert_eq!(d.zip_bytes(), good);
            d.p.write(lock, &text);
        }
    }
}

/// Poetry 2.3 and later hash `[dependency-groups]` too: a lock it wrote
/// is out of date when a group changes. A lock written before 2.3 is
/// compared without them, as Poetry itself does (it cannot tell).
#[test]
fn a_poetry_2_3_lock_covers_dependency_groups_and_an_older_one_is_judged_as_poetry_does() {
    let d = LockProject::new();
    let h = d.hashes();
    let lock_by = |version: &str, hash: &str| {
        poetry_lock(&h)
            .replace("Poetry 2.1.3", &format!("Poetry {version}"))
            .replace(
                "content-hash = \"0000\"",
                &format!("content-hash = \"{hash}\""),
            )
    };
    d.manifest("x86_64", "lock = \"poetry.lock\"\nlocked = true");
    let current = lock_by("2.3.1", &poetry_content_hash_by_python(d.p.path(), true));
    d.p.write("poetry.lock", &current);
    let out = d.run(&[]);
    crate::common::assert_success(&out);
    let good = d.zip_bytes();
    // A dependency group changed, the lock not redone.
    d.p.write(
        "pyproject.toml",
        &PYPROJECT.replace("dev = [\"devpkg\"]", "dev = [\"devpkg\", \"pytest\"]"),
    );
    d.p.write("poetry.lock", &format!("{current}\n"));
    let err = d.fail();
    assert!(
        err.contains("out of date") && err.contains("content-hash"),
        "{err}"
    );
    assert_eq!(d.zip_bytes(), good);
    // The hash without groups: current for a lock by Poetry 2.1.3, not
    // for one by 2.3.1.
    let without = poetry_content_hash_by_python(d.p.path(), false);
    d.p.write("poetry.lock", &lock_by("2.1.3", &without));
    crate::common::assert_success(&d.run(&[]));
    d.p.write("poetry.lock", &lock_by("2.3.1", &without));
    let err = d.fail();
    assert!(err.contains("out of date"), "{err}");
}
