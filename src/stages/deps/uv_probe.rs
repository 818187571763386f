//! Finding a uv that works in the project's directory, and its version
//! (part of the deps key) without paying `uv --version` on every build:
//! a real binary's answer is remembered by its identity (canonical path
//! and stat), a version manager's shim (pyenv, asdf, mise) is followed to
//! the binary it runs in that directory, or its answer remembered by what
//! decides it (its variables and version files). A shim that fails here
//! is a [`UvProblem::Failing`], which `installer::detect` reports. Running
//! installs is `installer.rs`'s.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::installer::{Installer, Kind, find_on_path};
use crate::cache::Cache;
use crate::report::Reporter;

/// The cache "stage" under which `uv --version` answers are remembered.
const UV_VERSION_MEMO: &str = "uv-version";

/// Identifies one installed binary: its canonical path and stat data.
/// None for a script (a version manager's shim, say) or a binary under
/// another name than uv's (mise's shims are links to mise): their stat
/// does not change when the uv they run is upgraded.
fn binary_fingerprint(program: &Path) -> Option<crate::entry::Hash> {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let real = program.canonicalize().ok()?;
    if !real
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("uv"))
    {
        return None;
    }
    let mut magic = [0u8; 2];
    std::fs::File::open(&real)
        .ok()?
        .read_exact(&mut magic)
        .ok()?;
    if &magic == b"#!" {
        return None;
    }
    let m = fs_err::metadata(&real).ok()?;
    let text = format!(
        "{}\n{} {} {} {} {}",
        real.display(),
        m.len(),
        m.mtime(),
        m.mtime_nsec(),
        m.ino(),
        m.ctime_nsec()
    );
    Some(blake3::hash(text.as_bytes()))
}

/// Why uv cannot be used.
#[derive(Debug)]
pub(super) enum UvProblem {
    /// Not on PATH: `installer = "auto"` quietly takes pip, as documented.
    Missing(String),
    /// On PATH but failing here (a version manager's shim whose version
    /// has no uv, say): `auto` still takes pip, but says so and why.
    Failing { program: PathBuf, reason: String },
}

impl UvProblem {
    pub(super) fn reason(&self) -> String {
        match self {
            UvProblem::Missing(r) | UvProblem::Failing { reason: r, .. } => r.clone(),
        }
    }
}

/// The cache "stage" under which the version a shim's uv gave is
/// remembered (see [`ShimMemo`]).
const UV_SHIM_MEMO: &str = "uv-shim-version";

/// How long a shim's answer is trusted when the real binary behind it
/// could not be found (no `pyenv which` / `asdf which` / `mise which`):
/// an upgrade of uv behind such a shim reaches the key within this time.
const SHIM_MEMO_SECS: u64 = 3600;

/// What a shim's uv said, remembered under [`shim_key`], with the real
/// binary it runs (when its version manager says) so that an upgrade of
/// that binary is noticed by its stat.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct ShimMemo {
    version: String,
    /// The binary behind the shim and its [`binary_fingerprint`] (hex).
    real: Option<(PathBuf, String)>,
    /// Unix seconds when uv was asked.
    at: u64,
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A small file's bytes (a version file), or nothing.
fn small_file(path: &Path) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut buf = Vec::new();
    std::fs::File::open(path)
        .ok()?
        .take(64 << 10)
        .read_to_end(&mut buf)
        .ok()?;
    Some(buf)
}

/// Version managers' environment variables that choose the program a shim
/// runs.
const SHIM_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "PYENV_VERSION",
    "PYENV_ROOT",
    "PYENV_DIR",
    "ASDF_PYTHON_VERSION",
    "ASDF_UV_VERSION",
    "ASDF_DATA_DIR",
    "ASDF_DEFAULT_TOOL_VERSIONS_FILENAME",
    "MISE_PYTHON_VERSION",
    "MISE_UV_VERSION",
    "MISE_ENV",
];

/// Version files shims read, the nearest of each from `cwd` upwards.
const SHIM_FILES: &[&str] = &[
    ".python-version",
    ".tool-versions",
    "mise.toml",
    ".mise.toml",
    "mise.local.toml",
    ".mise.local.toml",
];

/// What decides which uv the shim `program` runs in `cwd`, as far as
/// lbuild can see without running it: the shim itself (path and stat),
/// the version managers' variables, and the nearest version files from
/// `cwd` up (with the global ones of pyenv and asdf). A record under this
/// key is checked further by [`ShimMemo`] (the real binary's stat, or its
/// age).
fn shim_key(program: &Path, real: &Path, cwd: &Path) -> Option<crate::entry::Hash> {
    use std::os::unix::fs::MetadataExt;
    let m = fs_err::metadata(real).ok()?;
    let mut h = blake3::Hasher::new();
    let mut add = |label: &str, bytes: &[u8]| {
        h.update(label.as_bytes());
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    add("shim", program.as_os_str().as_encoded_bytes());
    add("real", real.as_os_str().as_encoded_bytes());
    let stat = format!(
        "{} {} {} {} {}",
        m.len(),
        m.mtime(),
        m.mtime_nsec(),
        m.ino(),
        m.ctime_nsec()
    );
    add("stat", stat.as_bytes());
    for var in SHIM_ENV {
        if let Some(v) = std::env::var_os(var) {
            add(var, v.as_encoded_bytes());
        }
    }
    for name in SHIM_FILES {
        if let Some(file) = cwd.ancestors().map(|d| d.join(name)).find(|f| f.is_file()) {
            add(
                &file.to_string_lossy(),
                &small_file(&file).unwrap_or_default(),
            );
        }
    }
    if let Some(home) = std::env::var_os("HOME").map(PathBuf::from) {
        let pyenv_root = std::env::var_os("PYENV_ROOT")
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join(".pyenv"));
        for global in [pyenv_root.join("version"), home.join(".tool-versions")] {
            if let Some(bytes) = small_file(&global) {
                add(&global.to_string_lossy(), &bytes);
            }
        }
    }
    Some(h.finalize())
}

/// The binary a shim runs in `cwd`, asked of its version manager (`pyenv
/// which uv`, `asdf which uv`, `mise which uv`), if it is one lbuild knows
/// and the answer is a binary.
fn shim_target(real: &Path, cwd: &Path) -> Option<PathBuf> {
    let text = small_file(real).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let is_named = |n: &str| real.file_name().is_some_and(|f| f == n);
    let manager = if is_named("mise") {
        real.to_path_buf()
    } else if text.starts_with("#!") && text.contains("pyenv") {
        // pyenv's shims run `exec "PYENV_ROOT/libexec/pyenv" exec ...`.
        text.split('"')
            .find(|w| w.starts_with('/') && w.ends_with("/pyenv"))
            .map(PathBuf::from)
            .or_else(|| find_on_path("pyenv"))?
    } else if text.starts_with("#!") && text.contains("asdf") {
        find_on_path("asdf")?
    } else {
        return None;
    };
    let out = Command::new(manager)
        .args(["which", "uv"])
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).lines().next()?.trim());
    (out.status.success() && path.is_absolute() && binary_fingerprint(&path).is_some())
        .then_some(path)
}

/// `s` with control characters escaped, for text another program wrote
/// that reaches the terminal; lines joined with " / ".
fn escape_controls(s: &str) -> String {
    let joined = s
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" / ");
    crate::sanitize::escape_controls(&joined)
}

/// `uv --version` run in `cwd`.
fn ask_uv_version(program: &Path, cwd: &Path) -> Result<String, UvProblem> {
    let out = Command::new(program)
        .arg("--version")
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| UvProblem::Failing {
            program: program.to_path_buf(),
            reason: format!("cannot run {}: {e}", program.display()),
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text.lines().next().unwrap_or("").trim().to_string();
    if !out.status.success() || !version.starts_with("uv ") {
        let said = escape_controls(&String::from_utf8_lossy(&out.stderr));
        return Err(UvProblem::Failing {
            program: program.to_path_buf(),
            reason: format!(
                "`{} --version` failed in {} ({}){}",
                program.display(),
                cwd.display(),
                out.status
                    .code()
                    .map_or_else(|| "killed by a signal".into(), |c| format!("exit {c}")),
                if said.is_empty() {
                    String::new()
                } else {
                    format!(": {said}")
                }
            ),
        });
    }
    Ok(escape_controls(&version))
}

pub(super) fn uv(cache: &Cache, cwd: &Path, reporter: &Reporter) -> Result<Installer, UvProblem> {
    let program = find_on_path("uv").ok_or(UvProblem::Missing("uv is not on PATH".into()))?;
    let found = |version| {
        Ok(Installer {
            kind: Kind::Uv,
            program: program.clone(),
            version,
            host_python: None,
        })
    };
    // `uv --version` costs ~50 ms (~150 ms through a shim), most of a
    // no-op build: remember the answer for this exact binary (an upgrade
    // replaces the file, so its stat changes and uv is asked again).
    if let Some(k) = binary_fingerprint(&program) {
        if let Some(version) = cache.stage_output(UV_VERSION_MEMO, &k).ok().flatten() {
            return found(version);
        }
        let version = ask_uv_version(&program, cwd)?;
        cache.record_stage(UV_VERSION_MEMO, &k, &version);
        return found(version);
    }
    // A shim (a script, or a version manager's binary under uv's name):
    // its own stat does not change when the uv it runs does. Remembered
    // under what chooses that uv, checked by the real binary's stat when
    // the version manager names it, else for an hour.
    let real = program.canonicalize().unwrap_or_else(|_| program.clone());
    let key = shim_key(&program, &real, cwd);
    let memo = key
        .as_ref()
        .and_then(|k| cache.stage_output(UV_SHIM_MEMO, k).ok().flatten())
        .and_then(|s| serde_json::from_str::<ShimMemo>(&s).ok());
    if let Some(m) = memo {
        let fresh = match &m.real {
            Some((path, fp)) => {
                binary_fingerprint(path).is_some_and(|now| now.to_hex().as_str() == fp)
            }
            None => now_s().abs_diff(m.at) < SHIM_MEMO_SECS,
        };
        if fresh {
            return found(m.version);
        }
    }
    // Asked in parallel: the version (which also shows the shim works
    // here) and the binary behind the shim.
    let (version, target) = std::thread::scope(|s| {
        let target = s.spawn(|| shim_target(&real, cwd));
        let version = ask_uv_version(&program, cwd);
        (version, target.join().ok().flatten())
    });
    let version = version?;
    let real_fp =
        target.and_then(|t| binary_fingerprint(&t).map(|fp| (t, fp.to_hex().to_string())));
    if real_fp.is_none() {
        reporter.detail(format!(
            "{} is a shim lbuild cannot see through: uv is asked for its version again after an hour or when a version file changes; put the real uv binary first on PATH to skip that",
            program.display()
        ));
    }
    if let Some(k) = &key {
        let memo = ShimMemo {
            version: version.clone(),
            real: real_fp,
            at: now_s(),
        };
        cache.record_stage(
            UV_SHIM_MEMO,
            k,
            &serde_json::to_string(&memo).unwrap_or_default(),
        );
    }
    found(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_memo_is_keyed_on_binaries_never_on_shim_scripts() {
        let d = tempfile::tempdir().unwrap();
        let shim = d.path().join("uv");
        fs_err::write(&shim, "#!/usr/bin/env bash\nexec real-uv \"$@\"\n").unwrap();
        assert_eq!(binary_fingerprint(&shim), None);
        let bin = d.path().join("uv-bin");
        fs_err::write(&bin, b"\x7fELF\x02\x01\x01").unwrap();
        let first = binary_fingerprint(&bin).expect("a binary is fingerprinted");
        fs_err::write(&bin, b"\x7fELF\x02\x01\x01 upgraded").unwrap();
        assert_ne!(
            binary_fingerprint(&bin),
            Some(first),
            "an upgrade changes the key"
        );
    }

    /// A pyenv shim is seen through with pyenv's own `which` (the pyenv
    /// named in the shim, in the project's directory), so the memo can
    /// follow the real binary's stat; an unknown script is not.
    #[test]
    fn a_pyenv_shim_is_followed_to_its_binary() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        let exe = |p: &Path, text: &[u8]| {
            fs_err::create_dir_all(p.parent().unwrap()).unwrap();
            fs_err::write(p, text).unwrap();
            fs_err::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        let real = root.join("versions/3.12.1/bin/uv");
        exe(&real, b"\x7fELF\x02\x01\x01");
        let pyenv = root.join("libexec/pyenv");
        exe(
            &pyenv,
            format!(
                "#!/bin/sh\n[ \"$1 $2\" = 'which uv' ] && [ -f .python-version ] && echo '{}'\n",
                real.display()
            )
            .as_bytes(),
        );
        let shim = root.join("shims/uv");
        exe(
            &shim,
            format!(
                "#!/usr/bin/env bash\nprogram=\"${{0##*/}}\"\nexec \"{}\" exec \"$program\" \"$@\"\n",
                pyenv.display()
            )
            .as_bytes(),
        );
        let project = root.join("project");
        fs_err::create_dir_all(&project).unwrap();
        assert_eq!(shim_target(&shim, &project), None, "asked in the project");
        fs_err::write(project.join(".python-version"), "3.12.1\n").unwrap();
        assert_eq!(shim_target(&shim, &project), Some(real));
        let other = root.join("other-shim/uv");
        exe(&other, b"#!/bin/sh\nexec uv-somewhere \"$@\"\n");
        assert_eq!(shim_target(&other, &project), None);
    }
}
