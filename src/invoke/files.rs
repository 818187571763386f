//! Files `lbuild invoke` prepares: each zip extracted once per sha256 under
//! the invoke scratch directory, the native code check, and the runtime's
//! SDK (boto3 and its dependencies linked alone from the interpreter's
//! site-packages). Does not run anything but the interpreter's lookup.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::InvokeError;
use crate::manifest::Architecture;

/// Extracts `zip` into `scratch/SHA256/` once; later calls reuse it.
pub(super) fn extract_once(
    zip: &Path,
    sha256: &str,
    scratch: &Path,
) -> Result<PathBuf, InvokeError> {
    let dest = scratch.join(sha256);
    if dest.join(".complete").is_file() {
        return Ok(dest);
    }
    let err = |message: String| InvokeError::Extract {
        zip: zip.to_path_buf(),
        message,
    };
    fs_err::create_dir_all(scratch)?;
    let tmp = tempfile::Builder::new()
        .prefix(".extract-")
        .tempdir_in(scratch)?;
    let file = fs_err::File::open(zip)?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| err(e.to_string()))?;
    // `extract` refuses names that would leave the directory.
    archive
        .extract(tmp.path())
        .map_err(|e| err(e.to_string()))?;
    fs_err::File::create(tmp.path().join(".complete"))?;
    let tmp = tmp.keep();
    match fs_err::rename(&tmp, &dest) {
        Ok(()) => Ok(dest),
        // Another invoke extracted the same zip meanwhile.
        Err(_) if dest.join(".complete").is_file() => {
            let _ = fs_err::remove_dir_all(&tmp);
            Ok(dest)
        }
        Err(e) => Err(e.into()),
    }
}

/// Native code in an extracted tree, with the architecture it is for.
pub(super) fn native_architecture(root: &Path) -> Option<(Architecture, String)> {
    for entry in walkdir::WalkDir::new(root).into_iter().flatten() {
        let name = entry.file_name().to_string_lossy();
        if !entry.file_type().is_file() || !(name.ends_with(".so") || name.contains(".so.")) {
            continue;
        }
        let mut head = [0u8; 20];
        let Ok(mut f) = std::fs::File::open(entry.path()) else {
            continue;
        };
        if f.read_exact(&mut head).is_err() || &head[..4] != b"\x7fELF" {
            continue;
        }
        // e_machine, little-endian: 0x3e x86-64, 0xb7 AArch64.
        let machine = u16::from_le_bytes([head[18], head[19]]);
        let arch = match machine {
            0x3e => Architecture::X86_64,
            0xb7 => Architecture::Arm64,
            _ => continue,
        };
        let rel = entry
            .path()
            .strip_prefix(root)
            .unwrap_or(entry.path())
            .display()
            .to_string();
        return Some((arch, rel));
    }
    None
}

/// What Lambda's Python runtimes put on `sys.path` after the function's
/// code and layers (`/var/runtime`): the AWS SDK and what it imports.
const RUNTIME_PACKAGES: &[&str] = &[
    "boto3",
    "botocore",
    "s3transfer",
    "jmespath",
    "dateutil",
    "urllib3",
    "six",
];

/// Prints, as JSON, where `python` (with its site-packages) finds each of
/// the runtime's packages: a package's directory or a module's file.
const FIND_RUNTIME_PACKAGES: &str = r#"
import importlib.util, json, sys
found = {}
for name in sys.argv[1:]:
    try:
        spec = importlib.util.find_spec(name)
    except Exception:
        spec = None
    if spec is None:
        continue
    if spec.submodule_search_locations:
        found[name] = list(spec.submodule_search_locations)[0]
    elif spec.origin and spec.origin.endswith(".py"):
        found[name] = spec.origin
print(json.dumps(found, sort_keys=True))
"#;

/// A directory holding only the runtime's packages (boto3 and its
/// dependencies), linked from `python`'s own site-packages when installed
/// there; `None` when boto3 is not. The rest of the machine's packages stay
/// out of reach, as on Lambda. Kept per set of paths under `scratch`.
pub(super) fn runtime_sdk(python: &Path, scratch: &Path) -> Option<PathBuf> {
    let out = Command::new(python)
        .args(["-I", "-B", "-c", FIND_RUNTIME_PACKAGES])
        .args(RUNTIME_PACKAGES)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let found: std::collections::BTreeMap<String, PathBuf> =
        serde_json::from_slice(&out.stdout).ok()?;
    if !found.contains_key("boto3") {
        return None;
    }
    let id = blake3::hash(&out.stdout).to_hex();
    let dir = scratch.join(format!("runtime-sdk-{}", &id[..16]));
    if dir.is_dir() {
        return Some(dir);
    }
    let tmp = tempfile::Builder::new()
        .prefix(".runtime-sdk-")
        .tempdir_in(scratch)
        .ok()?;
    for (name, target) in &found {
        let link = match target.extension() {
            Some(ext) if target.is_file() => tmp.path().join(name).with_extension(ext),
            _ => tmp.path().join(name),
        };
        std::os::unix::fs::symlink(target, link).ok()?;
    }
    let tmp = tmp.keep();
    match fs_err::rename(&tmp, &dir) {
        Ok(()) => Some(dir),
        // Another invoke made it meanwhile: theirs is as good.
        Err(_) => {
            let _ = fs_err::remove_dir_all(&tmp);
            dir.is_dir().then_some(dir)
        }
    }
}
