//! A lock's path dependencies (a uv workspace member or path source, a
//! Poetry directory/file source, a pylock `directory` or local archive):
//! finding them for the key, listing their files, and building each into a
//! pure-Python wheel. The project root (the lock's directory) never is one.

use std::path::{Path, PathBuf};

use pep508_rs::{MarkerEnvironment, MarkerEnvironmentBuilder};
use serde::Deserialize;

use super::poetry::PoetryLock;
use super::pylock::Pylock;
use super::uv::UvLock;
use super::{Ctx, Pinned, norm};
use crate::manifest::{LockKind, LockPlan};
use crate::stages::deps::DepsError;

/// Every local package the lock names (path dependencies, whatever the
/// target), absolute and sorted: their content joins the deps key. The
/// lock is parsed, not scanned for a spelling (`source = { directory =
/// ... }` is also `[package.source]` with `directory = ...`); the key
/// remembers the answer per lock content, so a no-op does not parse.
pub(crate) fn local_paths(lock: &LockPlan) -> Result<Vec<PathBuf>, DepsError> {
    let bytes = crate::stages::deps::requirements::read_regular_file(&lock.path, None)?;
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return Ok(Vec::new()); // the install says why
    };
    if lock.kind == LockKind::Pyproject {
        return Ok(Vec::new());
    }
    let env = MarkerEnvironment::try_from(MarkerEnvironmentBuilder {
        implementation_name: "",
        implementation_version: "3.0",
        os_name: "",
        platform_machine: "",
        platform_python_implementation: "",
        platform_release: "",
        platform_system: "",
        platform_version: "",
        python_full_version: "3.0",
        python_version: "3.0",
        sys_platform: "",
    })
    .expect("3.0 is a valid version");
    let ctx = Ctx {
        path: &lock.path,
        text,
        env: &env,
    };
    let mut out: Vec<PathBuf> = match lock.kind {
        LockKind::Uv => {
            let parsed: UvLock = ctx.parse()?;
            parsed
                .package
                .iter()
                .filter(|p| !p.is_root())
                .filter_map(|p| p.local_source().and_then(|w| ctx.local(w)))
                .collect()
        }
        LockKind::Poetry => {
            let parsed: PoetryLock = ctx.parse()?;
            parsed
                .package
                .iter()
                .filter_map(|p| p.source.as_ref())
                .filter(|s| matches!(s.kind.as_str(), "directory" | "file"))
                .filter_map(|s| s.url.as_deref().and_then(|u| ctx.local(u)))
                .collect()
        }
        LockKind::Pylock => {
            let parsed: Pylock = ctx.parse()?;
            parsed
                .packages
                .iter()
                .filter_map(|p| p.local_path().and_then(|w| ctx.local(w)))
                .collect()
        }
        LockKind::Pyproject => Vec::new(),
    };
    out.sort();
    out.dedup();
    Ok(out)
}

/// Build backends (and build requirements) that compile: a path
/// dependency built with one of them would hold binaries for the host,
/// not for Lambda.
const COMPILING_BACKENDS: &[&str] = &[
    "scikit-build",
    "scikit_build",
    "maturin",
    "mesonpy",
    "meson-python",
    "meson_python",
    "setuptools-rust",
    "setuptools_rust",
    "cython",
    "pybind11",
    "cffi",
    "py-build-cmake",
    "py_build_cmake",
    "enscons",
    "hatch-cython",
    "cmake",
];

/// Why the package in `dir` needs compilation, if it visibly does: a
/// compiling build backend or build requirement in pyproject.toml, or
/// extension modules in setup.py.
pub(super) fn needs_compilation(dir: &Path) -> Option<String> {
    #[derive(Deserialize, Default)]
    #[serde(rename_all = "kebab-case")]
    struct BuildSystem {
        #[serde(default)]
        requires: Vec<String>,
        build_backend: Option<String>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "kebab-case")]
    struct Py {
        #[serde(default)]
        build_system: BuildSystem,
    }
    if let Ok(text) = fs_err::read_to_string(dir.join("pyproject.toml"))
        && let Ok(py) = toml::from_str::<Py>(&text)
    {
        let b = &py.build_system;
        let named = b.build_backend.iter().chain(&b.requires).find_map(|w| {
            let lower = w.to_ascii_lowercase();
            COMPILING_BACKENDS
                .iter()
                .find(|c| {
                    lower
                        .split(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_' || ch == '-'))
                        .any(|word| word == **c)
                })
                .map(|_| w.clone())
        });
        if let Some(w) = named {
            return Some(format!("its [build-system] uses {w:?}"));
        }
    }
    if let Ok(text) = fs_err::read_to_string(dir.join("setup.py")) {
        for needle in ["ext_modules", "cffi_modules", "rust_extensions"] {
            if text.contains(needle) {
                return Some(format!("its setup.py declares {needle}"));
            }
        }
    }
    None
}

/// The files of a local package directory, as (name, path): what its
/// key covers and what is copied out to build it. Its ignore files are
/// honoured; VCS and tool directories, virtualenvs, byte-code and earlier
/// build output (top-level `build/`, `dist/`, `*.egg-info/`) are left out.
pub(crate) fn local_package_files(dir: &Path) -> crate::Result<Vec<(String, PathBuf)>> {
    let walk = crate::walk::Walk {
        dir,
        names_from: dir,
        root: dir,
        skip: &[],
        output: None,
        ignores_from: Some(dir),
    };
    let built =
        |d: &str| d == "build" || d == "dist" || (!d.contains('/') && d.ends_with(".egg-info"));
    Ok(crate::walk::files(
        &walk,
        |n| !crate::exclusions::excluded_by_default(n),
        built,
    )?)
}

/// Turns the local package `p` into a wheel in `scratch` and points `p`
/// at it with its sha256: a wheel file is taken as it is; a directory
/// (copied first, so the build never writes into the project and builds
/// exactly the files keyed) or an sdist is built by `installer` with the
/// package's own build backend. Only pure-Python packages: one that needs
/// compilation would be built for the host, not for Lambda.
pub(crate) fn build_local(
    p: &mut Pinned,
    lock: &LockPlan,
    installer: &crate::stages::deps::installer::Installer,
    index_args: &[String],
    scratch: &Path,
    cwd: &Path,
) -> crate::Result<()> {
    let Some(src) = p.local.clone() else {
        return Ok(());
    };
    let io = DepsError::io;
    let hint_binary = format!(
        "build its wheel for the Lambda target yourself (in a manylinux container for the function's Python and architecture), put it in a find_links directory and depend on {} by version (then re-lock)",
        p.name
    );
    let compiled = |why: String| DepsError::Refused {
        message: format!(
            "{}: the path dependency {} ({}) needs compilation ({why}): lbuild builds only pure-Python path dependencies, since a build here would hold binaries for this machine, not for Lambda",
            lock.path.display(),
            p.name,
            src.display()
        ),
        hint: hint_binary.clone(),
    };
    let meta = fs_err::metadata(&src).map_err(|e| DepsError::Refused {
        message: format!(
            "{}: the path dependency {} is not there: {e}",
            lock.path.display(),
            p.name
        ),
        hint: "restore it, or re-lock after removing the dependency".into(),
    })?;
    let file_name = |path: &Path| {
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let wheel = if meta.is_file() && file_name(&src).ends_with(".whl") {
        src.clone()
    } else {
        let slot = scratch.join(format!("local-{}", norm(&p.name)));
        let out = slot.join("wheel");
        fs_err::create_dir_all(&out).map_err(io("cannot build a path dependency"))?;
        let from = if meta.is_dir() {
            if let Some(why) = needs_compilation(&src) {
                return Err(compiled(why).into());
            }
            let copy = slot.join("src");
            for (name, path) in local_package_files(&src)? {
                let to = copy.join(&name);
                if let Some(parent) = to.parent() {
                    fs_err::create_dir_all(parent).map_err(io("cannot copy a path dependency"))?;
                }
                fs_err::copy(&path, &to).map_err(io("cannot copy a path dependency"))?;
            }
            copy
        } else {
            src.clone()
        };
        let output = installer
            .build_wheel_command(&from, &out, index_args)
            .current_dir(cwd)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(io("cannot run the installer to build a path dependency"))?;
        if !output.status.success() {
            let text = String::from_utf8_lossy(&output.stderr).into_owned()
                + &String::from_utf8_lossy(&output.stdout);
            let lines: Vec<&str> = text.lines().collect();
            let tail: String = lines[lines.len().saturating_sub(40)..]
                .iter()
                .map(|l| format!("  | {l}\n"))
                .collect();
            return Err(DepsError::Refused {
                message: format!(
                    "{}: cannot build the path dependency {} ({}) into a wheel ({}); {} said:\n{tail}",
                    lock.path.display(),
                    p.name,
                    src.display(),
                    output
                        .status
                        .code()
                        .map_or_else(|| "killed by a signal".into(), |c| format!("exit {c}")),
                    installer.name()
                ),
                hint: "fix the package's build (try `uv build --wheel` in its directory); its build backend must be installable from the indexes in lambda.toml".into(),
            }
            .into());
        }
        let built: Vec<PathBuf> = fs_err::read_dir(&out)
            .map_err(io("cannot list the built wheel"))?
            .flatten()
            .map(|e| e.path())
            .filter(|f| file_name(f).ends_with(".whl"))
            .collect();
        match built.as_slice() {
            [one] => one.clone(),
            _ => {
                return Err(DepsError::Refused {
                    message: format!(
                        "{}: building the path dependency {} ({}) gave {} wheels, not one",
                        lock.path.display(),
                        p.name,
                        src.display(),
                        built.len()
                    ),
                    hint: "check the package's build backend".into(),
                }
                .into());
            }
        }
    };
    let name = file_name(&wheel);
    if !name.ends_with("-none-any.whl") {
        let tag = name
            .trim_end_matches(".whl")
            .splitn(3, '-')
            .nth(2)
            .unwrap_or(&name);
        return Err(compiled(format!(
            "its wheel {name} is tagged {tag}, not pure Python (none-any)"
        ))
        .into());
    }
    let bytes = fs_err::read(&wheel).map_err(io("cannot read the built wheel"))?;
    use sha2::Digest;
    let hex = crate::entry::hex(&sha2::Sha256::digest(&bytes));
    p.local = Some(wheel);
    p.hashes = vec![format!("sha256:{hex}")];
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A path dependency is found however the lock spells its source: an
    /// inline table on one line, without spaces, or a `[package.source]`
    /// table (the root, `editable = "."`, is never one).
    #[test]
    fn path_dependencies_are_found_whatever_the_formatting() {
        let d = tempfile::tempdir().unwrap();
        let lock = LockPlan {
            path: d.path().join("uv.lock"),
            kind: LockKind::Uv,
            groups: Vec::new(),
            extras: Vec::new(),
            locked: false,
        };
        for text in [
            "[[package]]\nname = \"app\"\nversion = \"0.1.0\"\nsource = { editable = \".\" }\n\n[[package]]\nname = \"lib\"\nversion = \"0.1.0\"\nsource = { directory = \"lib\" }\n",
            "[[package]]\nname=\"app\"\nsource={editable=\".\"}\n\n[[package]]\nname=\"lib\"\nsource={directory=\"lib\"}\n",
            "[[package]]\nname = \"app\"\n\n[package.source]\neditable = \".\"\n\n[[package]]\nname = \"lib\"\n\n[package.source]\ndirectory = \"lib\"\n",
            "  [[package]]\n  name = \"lib\"\n  source = { path = \"lib\" }\n",
        ] {
            fs_err::write(&lock.path, text).unwrap();
            assert_eq!(
                local_paths(&lock).unwrap(),
                [d.path().join("lib")],
                "{text}"
            );
        }
        fs_err::write(
            &lock.path,
            "[[package]]\nname = \"app\"\n\n[package.source]\neditable = \".\"\n",
        )
        .unwrap();
        assert!(local_paths(&lock).unwrap().is_empty());
    }
}
