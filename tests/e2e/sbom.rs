//! `build --sbom`, `lbuild sbom`, `build --provenance` and `lbuild verify`:
//! real builds of a project with two wheels the test writes (installed from
//! a local wheelhouse through a pylock.toml that records their hashes), the
//! documents read back and the SBOM validated against the vendored
//! CycloneDX 1.6 JSON schema with Python's `jsonschema`; verify against a
//! zip with one byte changed, and against moto's GetFunction.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output};

use base64::Engine;
use sha2::Digest;

use crate::common::{TestProject, assert_success, box_installers, sha256_hex};

/// A wheel with a licence in its METADATA.
fn write_wheel(dir: &Path, name: &str, version: &str, license: &str, module: &str) -> String {
    let info = format!("{name}-{version}.dist-info");
    let mut files: Vec<(String, Vec<u8>)> = vec![
        (
            format!("{module}/__init__.py"),
            format!("VERSION = {version:?}\n").into_bytes(),
        ),
        (
            format!("{info}/METADATA"),
            format!("Metadata-Version: 2.4\nName: {name}\nVersion: {version}\n{license}\n")
                .into_bytes(),
        ),
        (
            format!("{info}/WHEEL"),
            b"Wheel-Version: 1.0\nGenerator: lbuild-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
                .to_vec(),
        ),
    ];
    let mut record = String::new();
    for (path, data) in &files {
        let b64 =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(data));
        record.push_str(&format!("{path},sha256={b64},{}\n", data.len()));
    }
    record.push_str(&format!("{info}/RECORD,,\n"));
    files.push((format!("{info}/RECORD"), record.into_bytes()));
    let file = dir.join(format!("{name}-{version}-py3-none-any.whl"));
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&file).unwrap());
    for (path, data) in &files {
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .last_modified_time(zip::DateTime::default())
            .unix_permissions(0o644);
        zip.start_file(path.as_str(), opts).unwrap();
        zip.write_all(data).unwrap();
    }
    zip.finish().unwrap();
    sha256_hex(&std::fs::read(&file).unwrap())
}

struct Project {
    p: TestProject,
    caches: tempfile::TempDir,
    /// sha256 of each wheel file: alpha_lib, then Beta.Pkg.
    wheel_hashes: [String; 2],
}

impl Project {
    fn new() -> Project {
        let p = TestProject::empty();
        let wheels = p.path().join("wheels");
        std::fs::create_dir_all(&wheels).unwrap();
        let a = write_wheel(
            &wheels,
            "alpha_lib",
            "1.2.0",
            "License-Expression: MIT OR Apache-2.0",
            "alpha_lib",
        );
        let b = write_wheel(
            &wheels,
            "Beta.Pkg",
            "0.3",
            "License: BSD-3-Clause\nClassifier: License :: OSI Approved :: BSD License",
            "beta_pkg",
        );
        p.write(
            "pylock.toml",
            &format!(
                "lock-version = \"1.0\"\ncreated-by = \"uv\"\nrequires-python = \">=3.9\"\n\n\
                 [[packages]]\nname = \"alpha-lib\"\nversion = \"1.2.0\"\nindex = \"https://pypi.org/simple\"\n\
                 wheels = [{{ url = \"https://files.pythonhosted.org/packages/ab/cd/alpha_lib-1.2.0-py3-none-any.whl\", hashes = {{ sha256 = \"{a}\" }} }}]\n\n\
                 [[packages]]\nname = \"beta-pkg\"\nversion = \"0.3\"\nindex = \"https://pypi.org/simple\"\n\
                 wheels = [{{ url = \"https://files.pythonhosted.org/packages/ab/cd/Beta.Pkg-0.3-py3-none-any.whl\", hashes = {{ sha256 = \"{b}\" }} }}]\n"
            ),
        );
        p.write(
            "lambda.toml",
            "[function]\nname = \"fn\"\nhandler = \"app.handler\"\nruntime = \"python3.12\"\n\n\
             [dependencies]\nlock = \"pylock.toml\"\nfind_links = [\"wheels\"]\nno_index = true\n",
        );
        p.write(
            "app.py",
            "import alpha_lib, beta_pkg\n\ndef handler(event, context):\n    return 'ok'\n",
        );
        Project {
            p,
            caches: tempfile::Builder::new()
                .prefix("lbuild-caches-")
                .tempdir()
                .unwrap(),
            wheel_hashes: [a, b],
        }
    }

    fn cmd(&self) -> Command {
        let mut cmd = self.p.cmd();
        box_installers(&mut cmd, self.caches.path());
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    fn read(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.p.path().join(rel)).unwrap()
    }
}

/// Validates `doc` against the vendored CycloneDX 1.6 schema; the
/// validator's messages on failure.
fn validate_cyclonedx(doc: &[u8]) -> Result<(), String> {
    const SCRIPT: &str = r#"
import json, pathlib, sys
from jsonschema import Draft7Validator
from referencing import Registry, Resource
d = pathlib.Path(sys.argv[1])
load = lambda f: json.loads((d / f).read_text())
registry = Registry()
for f in ["spdx.SNAPSHOT.schema.json", "jsf-0.82.SNAPSHOT.schema.json"]:
    registry = registry.with_resource("http://cyclonedx.org/schema/" + f, Resource.from_contents(load(f)))
v = Draft7Validator(load("bom-1.6.SNAPSHOT.schema.json"), registry=registry,
                    format_checker=Draft7Validator.FORMAT_CHECKER)
errors = sorted(v.iter_errors(json.load(sys.stdin)), key=str)
for e in errors[:10]:
    print(list(e.absolute_path), e.message[:300])
sys.exit(1 if errors else 0)
"#;
    let schemas = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/schemas/cyclonedx");
    let mut child = Command::new("python3")
        .args(["-c", SCRIPT])
        .arg(&schemas)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(doc).unwrap();
    let out = child.wait_with_output().unwrap();
    match out.status.code() {
        Some(0) => Ok(()),
        Some(1) => Err(String::from_utf8_lossy(&out.stdout).into_owned()),
        _ => panic!(
            "the schema validator did not run (python3 -m pip install jsonschema): {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

fn component<'a>(doc: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    doc["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no component {name} in {doc:#}"))
}

/// The SHA-256 a component lists for its nested file `name`.
fn file_hash(c: &serde_json::Value, name: &str) -> String {
    c["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no file {name} in {c:#}"))["hashes"][0]["content"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn the_sbom_lists_both_wheels_validates_against_cyclonedx_1_6_and_is_reproducible() {
    let d = Project::new();
    let out = d.run(&["build", "--sbom"]);
    assert_success(&out);
    let zip = d.read("dist/fn.zip");
    let first = d.read("dist/fn.cdx.json");
    let doc: serde_json::Value = serde_json::from_slice(&first).unwrap();

    assert_eq!(doc["bomFormat"], "CycloneDX");
    assert_eq!(doc["specVersion"], "1.6");
    // The zip is the main component, with its SHA-256; the serial number
    // comes from it; no timestamp without SOURCE_DATE_EPOCH.
    let zip_sha = sha256_hex(&zip);
    let main = &doc["metadata"]["component"];
    assert_eq!(main["name"], "fn");
    assert_eq!(main["hashes"][0]["alg"], "SHA-256");
    assert_eq!(main["hashes"][0]["content"], zip_sha.as_str());
    let serial = doc["serialNumber"].as_str().unwrap();
    assert_eq!(&serial[9..17], &zip_sha[..8], "{serial}");
    assert!(doc["metadata"].get("timestamp").is_none(), "{doc:#}");
    assert_eq!(file_hash(main, "app.py"), sha256_hex(&d.read("app.py")));

    // Both distributions: version, purl (PEP 503 name), licence, the
    // lock's wheel hash, and their files' hashes.
    let alpha = component(&doc, "alpha_lib");
    assert_eq!(alpha["version"], "1.2.0");
    assert_eq!(alpha["purl"], "pkg:pypi/alpha-lib@1.2.0");
    assert_eq!(alpha["licenses"][0]["expression"], "MIT OR Apache-2.0");
    assert_eq!(alpha["hashes"][0]["content"], d.wheel_hashes[0].as_str());
    assert_eq!(
        file_hash(alpha, "alpha_lib/__init__.py"),
        sha256_hex(b"VERSION = \"1.2.0\"\n")
    );
    let beta = component(&doc, "Beta.Pkg");
    assert_eq!(beta["version"], "0.3");
    assert_eq!(beta["purl"], "pkg:pypi/beta-pkg@0.3");
    assert_eq!(beta["licenses"][0]["license"]["name"], "BSD-3-Clause");
    assert_eq!(beta["licenses"][1]["license"]["name"], "BSD License");
    assert_eq!(beta["hashes"][0]["content"], d.wheel_hashes[1].as_str());
    assert_eq!(
        file_hash(beta, "beta_pkg/__init__.py"),
        sha256_hex(b"VERSION = \"0.3\"\n")
    );
    assert_eq!(doc["components"].as_array().unwrap().len(), 2, "{doc:#}");

    // Valid CycloneDX 1.6; and the validator does reject a broken document.
    validate_cyclonedx(&first).unwrap_or_else(|e| panic!("{e}\n{doc:#}"));
    let mut broken = doc.clone();
    broken["components"][0]["hashes"][0]["content"] = "not hex".into();
    assert!(validate_cyclonedx(&serde_json::to_vec(&broken).unwrap()).is_err());

    // Byte-identical from a cold rebuild; `lbuild sbom` prints the same.
    assert_success(&d.run(&["clean"]));
    assert_success(&d.run(&["build", "--sbom"]));
    assert_eq!(d.read("dist/fn.zip"), zip);
    assert!(
        d.read("dist/fn.cdx.json") == first,
        "the SBOM changed between builds"
    );
    let printed = d.run(&["sbom"]);
    assert_success(&printed);
    assert!(printed.stdout == first, "lbuild sbom differs from --sbom");

    // SOURCE_DATE_EPOCH gives the document a timestamp.
    let out = d
        .cmd()
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .arg("sbom")
        .output()
        .unwrap();
    assert_success(&out);
    let dated: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(dated["metadata"]["timestamp"], "2023-11-14T22:13:20Z");
    validate_cyclonedx(&out.stdout).unwrap();

    // SPDX 2.3: the same distributions.
    let out = d.run(&["sbom", "--format", "spdx"]);
    assert_success(&out);
    let spdx: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(spdx["spdxVersion"], "SPDX-2.3");
    let purls: Vec<&str> = spdx["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["externalRefs"][0]["referenceLocator"].as_str())
        .collect();
    assert_eq!(purls, ["pkg:pypi/alpha-lib@1.2.0", "pkg:pypi/beta-pkg@0.3"]);
    assert_eq!(
        spdx["packages"][0]["checksums"][0]["checksumValue"],
        zip_sha.as_str()
    );
}

#[test]
fn provenance_names_the_zip_and_its_inputs_and_is_reproducible() {
    let d = Project::new();
    assert_success(&d.run(&["build", "--provenance"]));
    let first = d.read("dist/fn.intoto.json");
    let st: serde_json::Value = serde_json::from_slice(&first).unwrap();
    assert_eq!(st["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(st["predicateType"], "https://slsa.dev/provenance/v1");
    assert_eq!(st["subject"][0]["name"], "fn.zip");
    assert_eq!(
        st["subject"][0]["digest"]["sha256"],
        sha256_hex(&d.read("dist/fn.zip")).as_str()
    );
    let def = &st["predicate"]["buildDefinition"];
    assert_eq!(def["externalParameters"]["manifest"], "lambda.toml");
    let deps = def["resolvedDependencies"].as_array().unwrap();
    let by_name = |n: &str| deps.iter().find(|r| r["name"] == n).unwrap();
    assert_eq!(
        by_name("manifest")["digest"]["sha256"],
        sha256_hex(&d.read("lambda.toml")).as_str()
    );
    assert_eq!(by_name("lock")["uri"], "file:pylock.toml");
    assert_eq!(
        by_name("lock")["digest"]["sha256"],
        sha256_hex(&d.read("pylock.toml")).as_str()
    );
    // The sources digest is `sha256sum` of the function's own files.
    let line = format!("{}  app.py\n", sha256_hex(&d.read("app.py")));
    assert_eq!(
        by_name("sources")["digest"]["sha256"],
        sha256_hex(line.as_bytes()).as_str()
    );
    assert_eq!(by_name("runtime")["annotations"]["runtime"], "python3.12");
    assert_eq!(by_name("runtime")["annotations"]["architecture"], "x86_64");
    assert_eq!(
        st["predicate"]["runDetails"]["builder"]["id"],
        format!("pkg:cargo/lbuild@{}", env!("CARGO_PKG_VERSION")).as_str()
    );
    assert_success(&d.run(&["clean"]));
    assert_success(&d.run(&["build", "--provenance"]));
    assert!(d.read("dist/fn.intoto.json") == first, "provenance changed");
    // Written beside the zip, it is no source of the next build, even for
    // globs that select JSON files everywhere (else: a file in the output
    // directory, an error).
    let manifest = String::from_utf8(d.read("lambda.toml")).unwrap();
    d.p.write(
        "lambda.toml",
        &manifest.replace(
            "[dependencies]",
            "[sources]\ninclude = [\"**/*.py\", \"**/*.json\"]\n\n[dependencies]",
        ),
    );
    let json = d.run(&["--json", "build", "--sbom", "--provenance"]);
    assert_success(&json);
    let o: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(o["entries"], 9, "{o:#}");
}

/// Flips one byte inside the stored or deflated data of entry `name`.
fn flip_byte_in(zip: &[u8], name: &str) -> Vec<u8> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
    let e = archive.by_name(name).unwrap();
    let at = e.data_start().unwrap() as usize + e.compressed_size() as usize / 2;
    let mut bytes = zip.to_vec();
    bytes[at] ^= 0x20;
    bytes
}

#[test]
fn verify_passes_on_the_built_zip_and_names_the_entry_a_changed_byte_is_in() {
    let p = TestProject::hello();
    assert_success(&p.run(&[]));
    let zip = p.zip_bytes("hello");
    // Nothing of the project's cache or store is used or touched.
    std::fs::remove_dir_all(p.path().join(".lbuild")).unwrap();
    let store_before = std::fs::read_dir(p.store.path()).unwrap().count();

    let ok = p.run(&["verify"]);
    assert_success(&ok);
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(stdout.contains("function hello: same as"), "{stdout}");
    assert!(
        !p.path().join(".lbuild").exists(),
        "verify used the project's cache"
    );
    assert_eq!(
        std::fs::read_dir(p.store.path()).unwrap().count(),
        store_before
    );
    assert_eq!(p.zip_bytes("hello"), zip);

    // One byte changed in util.py's data: exit 1, naming the entry.
    let tampered = flip_byte_in(&zip, "util.py");
    p.write_bytes("dist/hello.zip", &tampered);
    let out = p.run(&["verify"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("changed: util.py (content)"), "{stdout}");
    assert!(
        stdout.contains("in the local header and data of util.py"),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("1 of 1 artifacts differ"), "{stderr}");
    // verify never rewrites the zip it checks.
    assert_eq!(p.zip_bytes("hello"), tampered);

    // --zip: any path; --json says which entry.
    let copy = p.path().join("copy.zip");
    std::fs::write(&copy, &zip).unwrap();
    assert_success(&p.run(&["verify", "--zip", copy.to_str().unwrap()]));
    let out = p.run(&["--json", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value =
        serde_json::from_slice(out.stdout.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(doc["verified"], false);
    assert_eq!(doc["artifacts"][0]["diff"]["changed"][0]["name"], "util.py");

    // A missing --zip is bad input.
    assert_eq!(
        p.run(&["verify", "--zip", "nope.zip"]).status.code(),
        Some(2)
    );
}

#[cfg(feature = "aws")]
#[test]
fn verify_deployed_compares_with_the_functions_code_sha256() {
    use crate::moto::Moto;
    let moto = Moto::start();
    moto.create_function("hello", "python3.12", "x86_64");
    let p = TestProject::hello();
    let verify = |p: &TestProject| {
        let mut cmd = p.cmd();
        moto.aws_env(&mut cmd).args(["verify", "--deployed"]);
        cmd.output().unwrap()
    };
    // moto's placeholder code is not what the manifest builds.
    let out = verify(&p);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let placeholder = moto.function("hello")["CodeSha256"]
        .as_str()
        .unwrap()
        .to_string();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("found {placeholder}")), "{stdout}");

    let mut deploy = p.cmd();
    moto.aws_env(&mut deploy).arg("deploy");
    assert_success(&deploy.output().unwrap());
    moto.reset_recording();
    let out = verify(&p);
    assert_success(&out);
    assert_eq!(moto.writes().len(), 0, "{:?}", moto.writes());
    let code = base64::engine::general_purpose::STANDARD
        .encode(sha2::Sha256::digest(p.zip_bytes("hello")));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("same as function hello"), "{stdout}");
    assert!(stdout.contains(&code), "{stdout}");

    // The source changes after the deploy: the rebuild no longer matches.
    p.write("util.py", "def greet():\n    return 'changed'\n");
    let out = verify(&p);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("function hello: differs from function hello") && stdout.contains(&code),
        "{stdout}"
    );
}
