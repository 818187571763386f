//! Lockfiles as the dependency source: `uv.lock`, `poetry.lock` and
//! `pylock.toml` (PEP 751), read with serde and resolved for the Lambda
//! target, never the host.
//!
//! [`select`] picks the packages the target needs: every marker is
//! evaluated by `pep508_rs` in the target's environment ([`marker_env`]:
//! the function's Python, its machine, Linux, CPython), then the choice is
//! written as a pinned requirements file (`name==version --hash=...`, see
//! [`Selection::requirements_text`]) that the installer takes with
//! `--no-deps` (the lock already resolved everything) and, when the lock
//! records a hash for every package, `--require-hashes`.
//!
//! - uv.lock: a walk from the project root (the package whose source is
//!   `editable = "."` or `virtual = "."`, itself never installed) through
//!   `dependencies`, the `optional-dependencies` of the extras asked for
//!   (and of the extras dependencies ask for), and the `dev-dependencies`
//!   of the groups named (the `dev` group only when named).
//! - poetry.lock (lock-version 2.1, Poetry 2): each package records the
//!   groups that need it and, per group, the markers under which it does;
//!   a package is taken when one of its groups is `main` or named and that
//!   group's marker holds (with the extras asked for).
//! - pylock.toml: the packages whose `marker` holds (the groups and extras
//!   were chosen when it was written).
//!
//! The lock alone decides (so editing pyproject.toml without re-locking
//! changes nothing); [`out_of_date`] compares a uv.lock with its
//! pyproject.toml (a poetry.lock by Poetry's `content-hash`,
//! [`poetry_content_hash`]) for the `locked` check.
//!
//! Path dependencies (a uv workspace member or path source, a Poetry
//! directory/file source, a pylock `directory`) are [`local_paths`], keyed
//! by their files ([`local_package_files`]) and built into a pure-Python
//! wheel by [`build_local`]; the project root (the lock's directory) never
//! is. `pyproject = "pyproject.toml"` (LockKind::Pyproject) is not a lock:
//! [`pyproject_requirements`] hands its dependency lists to the installer
//! to resolve, keyed by [`pyproject_key`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use pep508_rs::{ExtraName, MarkerEnvironment, MarkerEnvironmentBuilder, MarkerTree};
use serde::Deserialize;

use super::DepsError;
use super::installer::Target;
use super::normalize::canonical_name;
use crate::manifest::{LockKind, LockPlan};

/// One package to install, pinned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pinned {
    pub name: String,
    pub version: String,
    /// `sha256:HEX` (or another algorithm), as the installers take them.
    pub hashes: Vec<String>,
    /// A local package (a path dependency: a directory to build, or a
    /// wheel / sdist file), absolute; `None` for one from an index.
    pub local: Option<PathBuf>,
}

/// The packages the target needs, sorted by canonical name.
#[derive(Debug, Default)]
pub struct Selection {
    pub pinned: Vec<Pinned>,
}

impl Selection {
    /// Every indexed package has at least one hash: the install can
    /// require them (local packages are hashed when built).
    pub fn all_hashed(&self) -> bool {
        self.pinned
            .iter()
            .all(|p| p.local.is_some() || !p.hashes.is_empty())
    }

    /// The indexed packages without a recorded hash.
    pub fn unhashed(&self) -> Vec<&str> {
        self.pinned
            .iter()
            .filter(|p| p.local.is_none() && p.hashes.is_empty())
            .map(|p| p.name.as_str())
            .collect()
    }

    /// A requirements file: `name==version` per line (a local package: the
    /// wheel built from it, by path), with `--hash=` options when
    /// `with_hashes` (pip and uv both check them).
    pub fn requirements_text(&self, with_hashes: bool) -> String {
        let mut out = String::new();
        for p in &self.pinned {
            match &p.local {
                Some(wheel) => out.push_str(&wheel.display().to_string()),
                None => out.push_str(&format!("{}=={}", p.name, p.version)),
            }
            if with_hashes {
                for h in &p.hashes {
                    out.push_str(&format!(" --hash={h}"));
                }
            }
            out.push('\n');
        }
        out
    }
}

/// The environment markers see on Lambda: the function's Python (as
/// `3.X.0`), its machine, Linux, CPython.
pub fn marker_env(target: Target) -> MarkerEnvironment {
    let version = target.runtime.version();
    let full = format!("{version}.0");
    MarkerEnvironment::try_from(MarkerEnvironmentBuilder {
        implementation_name: "cpython",
        implementation_version: &full,
        os_name: "posix",
        platform_machine: target.arch.manylinux_machine(),
        platform_python_implementation: "CPython",
        platform_release: "",
        platform_system: "Linux",
        platform_version: "",
        python_full_version: &full,
        python_version: &version,
        sys_platform: "linux",
    })
    .expect("3.X and 3.X.0 are valid versions")
}

/// PEP 503 / 685 normal form of a package, extra or group name.
fn norm(name: &str) -> String {
    canonical_name(name)
}

/// Reads the lock and selects what `target` needs.
pub fn select(lock: &LockPlan, target: Target) -> Result<Selection, DepsError> {
    let bytes = super::requirements::read_regular_file(&lock.path, None)?;
    let text = String::from_utf8(bytes).map_err(|e| DepsError::Lockfile {
        path: lock.path.clone(),
        line: 1,
        message: format!("not UTF-8 text ({e})"),
    })?;
    let env = marker_env(target);
    let ctx = Ctx {
        path: &lock.path,
        text: &text,
        env: &env,
    };
    let mut pinned = match lock.kind {
        LockKind::Uv => uv(&ctx, lock)?,
        LockKind::Poetry => poetry(&ctx, lock)?,
        LockKind::Pylock => pylock(&ctx)?,
        LockKind::Pyproject => {
            return Err(ctx.refused(
                format!("{} is not a lock", lock.path.display()),
                "resolve it with `pyproject_requirements`",
            ));
        }
    };
    pinned.sort_by_key(|p| norm(&p.name));
    pinned.dedup_by(|a, b| norm(&a.name) == norm(&b.name) && a.version == b.version);
    if let Some(w) = pinned
        .windows(2)
        .find(|w| norm(&w[0].name) == norm(&w[1].name))
    {
        return Err(ctx.refused(
            format!(
                "{} selects two versions of {} for {} ({} and {})",
                lock.path.display(),
                w[0].name,
                target.describe(),
                w[0].version,
                w[1].version
            ),
            "re-lock (the lock should pick one version per environment)",
        ));
    }
    Ok(Selection { pinned })
}

struct Ctx<'a> {
    path: &'a Path,
    text: &'a str,
    env: &'a MarkerEnvironment,
}

impl Ctx<'_> {
    fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, DepsError> {
        toml::from_str(self.text).map_err(|e| {
            let line = e.span().map_or(1, |s| {
                self.text[..s.start.min(self.text.len())]
                    .matches('\n')
                    .count()
                    + 1
            });
            DepsError::Lockfile {
                path: self.path.to_path_buf(),
                line,
                message: e.message().trim().to_string(),
            }
        })
    }

    /// A marker as written; `None` or empty holds everywhere.
    fn marker(&self, written: Option<&str>, package: &str) -> Result<MarkerTree, DepsError> {
        match written.map(str::trim).filter(|m| !m.is_empty()) {
            None => Ok(MarkerTree::TRUE),
            Some(m) => MarkerTree::from_str(m).map_err(|e| {
                self.refused(
                    format!(
                        "{}: package {package}: cannot read the marker {m:?}: {e}",
                        self.path.display()
                    ),
                    "re-lock with a current uv / Poetry; lbuild reads PEP 508 markers (not PEP 751's `extras` / `dependency_groups` ones)",
                )
            }),
        }
    }

    fn holds(
        &self,
        written: Option<&str>,
        package: &str,
        extras: &[ExtraName],
    ) -> Result<bool, DepsError> {
        Ok(self.marker(written, package)?.evaluate(self.env, extras))
    }

    /// A local package's path (relative to the lock's directory), made
    /// absolute; `None` for the lock's own directory: the project root,
    /// never installed (its code comes through `[sources]`).
    fn local(&self, written: &str) -> Option<PathBuf> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let path = crate::manifest::normalize(&dir.join(written));
        (path != crate::manifest::normalize(dir)).then_some(path)
    }

    fn refused(&self, message: String, hint: &str) -> DepsError {
        DepsError::Refused {
            message,
            hint: hint.to_string(),
        }
    }

    fn missing(&self, what: &str, name: &str, have: &BTreeSet<String>, hint: &str) -> DepsError {
        let have: Vec<&str> = have.iter().map(String::as_str).collect();
        self.refused(
            format!(
                "{} has no {what} {name:?} (it has: {})",
                self.path.display(),
                if have.is_empty() {
                    "none".to_string()
                } else {
                    have.join(", ")
                }
            ),
            hint,
        )
    }
}

fn extra_names(extras: &BTreeSet<String>) -> Vec<ExtraName> {
    extras
        .iter()
        .filter_map(|e| ExtraName::new(e.clone()).ok())
        .collect()
}

/// Every local package the lock names (path dependencies, whatever the
/// target), absolute and sorted: their content joins the deps key. A
/// lock naming none (the common case) is only scanned, not parsed, so a
/// no-op build stays cheap.
pub fn local_paths(lock: &LockPlan) -> Result<Vec<PathBuf>, DepsError> {
    let bytes = super::requirements::read_regular_file(&lock.path, None)?;
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return Ok(Vec::new()); // the install says why
    };
    let mentions = |needles: &[&str]| needles.iter().any(|n| text.contains(n));
    let maybe = match lock.kind {
        LockKind::Uv => text
            .lines()
            .filter(|l| l.starts_with("source = {"))
            .any(|l| {
                l.contains("directory =")
                    || l.contains("path =")
                    || (l.contains("editable =") && !l.contains("editable = \".\""))
            }),
        LockKind::Poetry => mentions(&["type = \"directory\"", "type = \"file\""]),
        LockKind::Pylock => mentions(&["path ="]),
        LockKind::Pyproject => false,
    };
    if !maybe {
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
pub fn needs_compilation(dir: &Path) -> Option<String> {
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
    if let Ok(text) = std::fs::read_to_string(dir.join("pyproject.toml"))
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
    if let Ok(text) = std::fs::read_to_string(dir.join("setup.py")) {
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
pub fn local_package_files(dir: &Path) -> crate::Result<Vec<(String, PathBuf)>> {
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
pub fn build_local(
    p: &mut Pinned,
    lock: &LockPlan,
    installer: &super::installer::Installer,
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

// ------------------------------------------------------------ uv.lock

#[derive(Deserialize)]
struct UvLock {
    #[serde(default)]
    package: Vec<UvPackage>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct UvPackage {
    name: String,
    version: Option<String>,
    #[serde(default)]
    source: BTreeMap<String, toml::Value>,
    #[serde(default)]
    dependencies: Vec<UvDep>,
    #[serde(default)]
    optional_dependencies: BTreeMap<String, Vec<UvDep>>,
    #[serde(default)]
    dev_dependencies: BTreeMap<String, Vec<UvDep>>,
    #[serde(default)]
    wheels: Vec<UvWheel>,
}

#[derive(Deserialize)]
struct UvDep {
    name: String,
    version: Option<String>,
    marker: Option<String>,
    #[serde(default)]
    extra: Vec<String>,
}

#[derive(Deserialize)]
struct UvWheel {
    hash: Option<String>,
}

impl UvPackage {
    fn is_root(&self) -> bool {
        ["editable", "virtual"]
            .iter()
            .any(|k| self.source.get(*k).and_then(|v| v.as_str()) == Some("."))
    }
    /// A path dependency (a workspace member, `{ path = ... }`, editable or
    /// not): the path as written, relative to the lock's directory.
    fn local_source(&self) -> Option<&str> {
        ["directory", "editable", "path"]
            .iter()
            .find_map(|k| self.source.get(*k).and_then(|v| v.as_str()))
    }
    /// `registry = ...`: installable from an index by name and version.
    fn is_indexed(&self) -> bool {
        self.source.contains_key("registry")
    }
}

fn uv(ctx: &Ctx, lock: &LockPlan) -> Result<Vec<Pinned>, DepsError> {
    let parsed: UvLock = ctx.parse()?;
    let packages = &parsed.package;
    let Some(root) = packages.iter().position(UvPackage::is_root) else {
        return Err(ctx.refused(
            format!(
                "{} has no project root (a package with source = {{ editable = \".\" }} or {{ virtual = \".\" }})",
                ctx.path.display()
            ),
            "point lock at the uv.lock beside the project's pyproject.toml, and re-lock with `uv lock`",
        ));
    };
    let find = |dep: &UvDep| -> Result<usize, DepsError> {
        let name = norm(&dep.name);
        let found: Vec<usize> = packages
            .iter()
            .enumerate()
            .filter(|(_, p)| norm(&p.name) == name)
            .filter(|(_, p)| dep.version.is_none() || p.version == dep.version)
            .map(|(i, _)| i)
            .collect();
        match found.as_slice() {
            [one] => Ok(*one),
            [] => Err(ctx.refused(
                format!(
                    "{}: a dependency on {} has no [[package]] entry",
                    ctx.path.display(),
                    dep.name
                ),
                "the lock is incomplete: re-lock with `uv lock`",
            )),
            _ => Err(ctx.refused(
                format!(
                    "{}: a dependency on {} does not say which of its versions it means",
                    ctx.path.display(),
                    dep.name
                ),
                "re-lock with `uv lock`",
            )),
        }
    };

    // The root's own lists: dependencies, the extras and groups asked for.
    let r = &packages[root];
    let mut start: Vec<&UvDep> = r.dependencies.iter().collect();
    // Each extra or group asked for, by its normalised name.
    fn add_lists<'p>(
        start: &mut Vec<&'p UvDep>,
        ctx: &Ctx,
        lists: &'p BTreeMap<String, Vec<UvDep>>,
        wanted: &[String],
        what: &str,
        hint: &str,
    ) -> Result<(), DepsError> {
        let have: BTreeSet<String> = lists.keys().cloned().collect();
        for w in wanted {
            let (_, list) = lists
                .iter()
                .find(|(k, _)| norm(k) == norm(w))
                .ok_or_else(|| ctx.missing(what, w, &have, hint))?;
            start.extend(list);
        }
        Ok(())
    }
    add_lists(
        &mut start,
        ctx,
        &r.optional_dependencies,
        &lock.extras,
        "extra",
        "name one of the project's [project.optional-dependencies], and re-lock if you just added it",
    )?;
    add_lists(
        &mut start,
        ctx,
        &r.dev_dependencies,
        &lock.groups,
        "dependency group",
        "name one of the project's [dependency-groups], and re-lock if you just added it",
    )?;

    // (package, extra) pairs reached; None = the package itself.
    let mut seen: BTreeSet<(usize, Option<String>)> = BTreeSet::new();
    let mut queue: Vec<(usize, Option<String>)> = Vec::new();
    let follow = |deps: &[&UvDep], queue: &mut Vec<(usize, Option<String>)>| {
        for d in deps {
            if !ctx.holds(d.marker.as_deref(), &d.name, &[])? {
                continue;
            }
            let i = find(d)?;
            queue.push((i, None));
            for e in &d.extra {
                queue.push((i, Some(norm(e))));
            }
        }
        Ok::<(), DepsError>(())
    };
    follow(&start, &mut queue)?;
    while let Some(item) = queue.pop() {
        if !seen.insert(item.clone()) {
            continue;
        }
        let p = &packages[item.0];
        let deps: Vec<&UvDep> = match &item.1 {
            None => p.dependencies.iter().collect(),
            Some(e) => p
                .optional_dependencies
                .iter()
                .filter(|(k, _)| norm(k) == *e)
                .flat_map(|(_, v)| v)
                .collect(),
        };
        follow(&deps, &mut queue)?;
    }
    let chosen: BTreeSet<usize> = seen.into_iter().map(|(i, _)| i).collect();
    let mut out = Vec::new();
    for i in chosen {
        let p = &packages[i];
        if i == root {
            continue; // the project's code comes through [sources]
        }
        if let Some(rel) = p.local_source() {
            match ctx.local(rel) {
                Some(path) => out.push(Pinned {
                    name: p.name.clone(),
                    version: p.version.clone().unwrap_or_default(),
                    hashes: Vec::new(),
                    local: Some(path),
                }),
                None => continue, // the project root, under another name
            }
            continue;
        }
        if !p.is_indexed() {
            let source = toml::to_string(&p.source).unwrap_or_default();
            return Err(ctx.refused(
                format!(
                    "{}: {} comes from {} , not from a package index: lbuild installs only indexed wheels from a lock for now",
                    ctx.path.display(),
                    p.name,
                    source.trim().replace('\n', ", ")
                ),
                "publish it to an index (or a find_links directory as a wheel) and re-lock, or list its wheel in a requirements file",
            ));
        }
        let version = p.version.clone().ok_or_else(|| {
            ctx.refused(
                format!("{}: {} has no version", ctx.path.display(), p.name),
                "re-lock with `uv lock`",
            )
        })?;
        out.push(Pinned {
            name: p.name.clone(),
            version,
            hashes: p.wheels.iter().filter_map(|w| w.hash.clone()).collect(),
            local: None,
        });
    }
    Ok(out)
}

// ------------------------------------------------------------ poetry.lock

#[derive(Deserialize)]
struct PoetryLock {
    #[serde(default)]
    package: Vec<PoetryPackage>,
    #[serde(default)]
    metadata: PoetryMetadata,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
struct PoetryMetadata {
    lock_version: Option<String>,
    /// Lock-version 1.x kept the files here, by package name.
    #[serde(default)]
    files: BTreeMap<String, Vec<PoetryFile>>,
}

#[derive(Deserialize)]
struct PoetryPackage {
    name: String,
    version: String,
    #[serde(default)]
    optional: bool,
    groups: Option<Vec<String>>,
    markers: Option<PoetryMarkers>,
    #[serde(default)]
    files: Vec<PoetryFile>,
    source: Option<PoetrySource>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum PoetryMarkers {
    All(String),
    PerGroup(BTreeMap<String, String>),
}

#[derive(Deserialize)]
struct PoetryFile {
    hash: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct PoetrySource {
    #[serde(rename = "type")]
    kind: String,
    url: Option<String>,
}

fn poetry(ctx: &Ctx, lock: &LockPlan) -> Result<Vec<Pinned>, DepsError> {
    let parsed: PoetryLock = ctx.parse()?;
    let mut wanted: BTreeSet<String> = BTreeSet::from(["main".to_string()]);
    let all_groups: BTreeSet<String> = parsed
        .package
        .iter()
        .flat_map(|p| p.groups.iter().flatten().map(|g| norm(g)))
        .collect();
    for g in &lock.groups {
        if !all_groups.contains(&norm(g)) {
            return Err(ctx.missing(
                "group",
                g,
                &all_groups,
                "name a group of [tool.poetry.group.NAME.dependencies] that has packages, and re-lock if you just added it",
            ));
        }
        wanted.insert(norm(g));
    }
    let extras: BTreeSet<String> = lock.extras.iter().map(|e| norm(e)).collect();
    let extra_names = extra_names(&extras);
    let mut out = Vec::new();
    for p in &parsed.package {
        let Some(groups) = &p.groups else {
            return Err(ctx.refused(
                format!(
                    "{} (lock-version {}) does not record which groups need each package",
                    ctx.path.display(),
                    parsed.metadata.lock_version.as_deref().unwrap_or("unknown")
                ),
                "re-lock with Poetry 2 (`poetry lock`), which writes lock-version 2.1",
            ));
        };
        let mut needed = false;
        for g in groups.iter().filter(|g| wanted.contains(&norm(g))) {
            let marker = match &p.markers {
                None => None,
                Some(PoetryMarkers::All(m)) => Some(m.as_str()),
                Some(PoetryMarkers::PerGroup(m)) => m.get(g).map(String::as_str),
            };
            if ctx.holds(marker, &p.name, &extra_names)? {
                needed = true;
                break;
            }
        }
        // An optional package comes only with an extra that names it.
        if !needed || (p.optional && extras.is_empty()) {
            continue;
        }
        if let Some(s) = &p.source
            && matches!(s.kind.as_str(), "directory" | "file")
        {
            if let Some(path) = s.url.as_deref().and_then(|u| ctx.local(u)) {
                out.push(Pinned {
                    name: p.name.clone(),
                    version: p.version.clone(),
                    hashes: Vec::new(),
                    local: Some(path),
                });
            }
            continue;
        }
        if let Some(s) = &p.source
            && !matches!(s.kind.as_str(), "legacy" | "pypi")
        {
            return Err(ctx.refused(
                format!(
                    "{}: {} comes from a {} source{}, not from a package index: lbuild installs only indexed wheels from a lock for now",
                    ctx.path.display(),
                    p.name,
                    s.kind,
                    s.url.as_deref().map(|u| format!(" ({u})")).unwrap_or_default()
                ),
                "publish it to an index (or a find_links directory as a wheel) and re-lock",
            ));
        }
        let files = if p.files.is_empty() {
            parsed
                .metadata
                .files
                .iter()
                .find(|(k, _)| norm(k) == norm(&p.name))
                .map(|(_, v)| v.as_slice())
                .unwrap_or(&[])
        } else {
            &p.files
        };
        out.push(Pinned {
            name: p.name.clone(),
            version: p.version.clone(),
            hashes: files.iter().map(|f| f.hash.clone()).collect(),
            local: None,
        });
    }
    Ok(out)
}

// ------------------------------------------------------------ pylock.toml

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Pylock {
    lock_version: Option<String>,
    #[serde(default)]
    packages: Vec<PylockPackage>,
}

#[derive(Deserialize)]
struct PylockPackage {
    name: String,
    version: Option<String>,
    marker: Option<String>,
    #[serde(default)]
    wheels: Vec<PylockFile>,
    directory: Option<toml::Value>,
    vcs: Option<toml::Value>,
    archive: Option<toml::Value>,
}

impl PylockPackage {
    /// `directory = { path = ... }` or a local `archive = { path = ... }`.
    fn local_path(&self) -> Option<&str> {
        [&self.directory, &self.archive]
            .into_iter()
            .flatten()
            .find_map(|v| v.get("path").and_then(|p| p.as_str()))
    }
}

#[derive(Deserialize)]
struct PylockFile {
    #[serde(default)]
    hashes: BTreeMap<String, String>,
}

fn pylock(ctx: &Ctx) -> Result<Vec<Pinned>, DepsError> {
    let parsed: Pylock = ctx.parse()?;
    if parsed
        .lock_version
        .as_deref()
        .is_some_and(|v| !v.starts_with("1."))
    {
        return Err(ctx.refused(
            format!(
                "{}: lock-version {} is not one lbuild reads (1.x)",
                ctx.path.display(),
                parsed.lock_version.as_deref().unwrap_or_default()
            ),
            "export it again with a tool that writes PEP 751 lock-version 1.0",
        ));
    }
    let mut out = Vec::new();
    for p in &parsed.packages {
        if !ctx.holds(p.marker.as_deref(), &p.name, &[])? {
            continue;
        }
        if let Some(written) = p.local_path() {
            if let Some(path) = ctx.local(written) {
                out.push(Pinned {
                    name: p.name.clone(),
                    version: p.version.clone().unwrap_or_default(),
                    hashes: Vec::new(),
                    local: Some(path),
                });
            }
            continue;
        }
        if p.directory.is_some() || p.vcs.is_some() || p.archive.is_some() {
            return Err(ctx.refused(
                format!(
                    "{}: {} comes from a directory, VCS or archive, not from a package index: lbuild installs only indexed wheels from a lock for now",
                    ctx.path.display(),
                    p.name
                ),
                "publish it to an index (or a find_links directory as a wheel) and export again",
            ));
        }
        let Some(version) = &p.version else {
            return Err(ctx.refused(
                format!("{}: {} has no version", ctx.path.display(), p.name),
                "export the lock again",
            ));
        };
        let mut hashes = Vec::new();
        for w in &p.wheels {
            for (alg, hex) in &w.hashes {
                hashes.push(format!("{alg}:{hex}"));
            }
        }
        out.push(Pinned {
            name: p.name.clone(),
            version: version.clone(),
            hashes,
            local: None,
        });
    }
    Ok(out)
}

// ------------------------------------------------------------ pyproject.toml

/// The pyproject's dependency lists this build reads, in a canonical
/// text: `[project.dependencies]`, the `optional-dependencies` of the
/// extras named and the `[dependency-groups]` named (include-groups
/// followed). What the deps key takes for `pyproject = ...` (so editing
/// the description reruns nothing), and what [`pyproject_requirements`]
/// installs.
fn pyproject_lists(lock: &LockPlan) -> Result<Vec<String>, DepsError> {
    let bytes = super::requirements::read_regular_file(&lock.path, None)?;
    let text = String::from_utf8(bytes).map_err(|e| DepsError::Lockfile {
        path: lock.path.clone(),
        line: 1,
        message: format!("not UTF-8 text ({e})"),
    })?;
    let env = marker_env(Target {
        runtime: crate::manifest::Runtime::parse("python3.12").expect("a runtime"),
        arch: crate::manifest::Architecture::X86_64,
    });
    let ctx = Ctx {
        path: &lock.path,
        text: &text,
        env: &env,
    };
    #[derive(Deserialize)]
    #[serde(rename_all = "kebab-case")]
    struct Full {
        project: Option<FullProject>,
        #[serde(default)]
        dependency_groups: BTreeMap<String, Vec<toml::Value>>,
        tool: Option<toml::Table>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "kebab-case")]
    struct FullProject {
        name: Option<String>,
        #[serde(default)]
        dependencies: Vec<String>,
        #[serde(default)]
        optional_dependencies: BTreeMap<String, Vec<String>>,
        #[serde(default)]
        dynamic: Vec<String>,
    }
    let parsed: Full = ctx.parse()?;
    let poetry_deps = parsed
        .tool
        .as_ref()
        .and_then(|t| t.get("poetry"))
        .and_then(|p| p.get("dependencies"))
        .is_some();
    let Some(project) = parsed.project else {
        return Err(ctx.refused(
            format!("{} has no [project] table", lock.path.display()),
            if poetry_deps {
                "a Poetry 1 project keeps its dependencies in [tool.poetry.dependencies]: lock it (`poetry lock`) and set lock = \"poetry.lock\""
            } else {
                "declare [project] dependencies (PEP 621), or use lock / requirements"
            },
        ));
    };
    if project.dynamic.iter().any(|d| d == "dependencies") {
        return Err(ctx.refused(
            format!(
                "{}: [project] declares its dependencies dynamic, so only its build backend knows them",
                lock.path.display()
            ),
            "lock the project (`uv lock`, `poetry lock`) and set lock = ..., or list the dependencies in [project]",
        ));
    }
    let mut out = project.dependencies.clone();
    let have: BTreeSet<String> = project.optional_dependencies.keys().cloned().collect();
    for e in &lock.extras {
        let (_, list) = project
            .optional_dependencies
            .iter()
            .find(|(k, _)| norm(k) == norm(e))
            .ok_or_else(|| {
                ctx.missing(
                    "extra",
                    e,
                    &have,
                    "name one of the project's [project.optional-dependencies]",
                )
            })?;
        out.extend(list.iter().cloned());
    }
    let groups: BTreeMap<String, &Vec<toml::Value>> = parsed
        .dependency_groups
        .iter()
        .map(|(k, v)| (norm(k), v))
        .collect();
    let have: BTreeSet<String> = parsed.dependency_groups.keys().cloned().collect();
    let mut pending: Vec<String> = lock.groups.iter().map(|g| norm(g)).collect();
    let mut seen = BTreeSet::new();
    while let Some(g) = pending.pop() {
        if !seen.insert(g.clone()) {
            continue;
        }
        let list = groups.get(&g).ok_or_else(|| {
            ctx.missing(
                "dependency group",
                &g,
                &have,
                "name one of the project's [dependency-groups]",
            )
        })?;
        for item in list.iter() {
            match item {
                toml::Value::String(r) => out.push(r.clone()),
                toml::Value::Table(t) => {
                    if let Some(inc) = t.get("include-group").and_then(|v| v.as_str()) {
                        pending.push(norm(inc));
                    }
                }
                _ => {}
            }
        }
    }
    // The project naming itself (`app[email]` in a group) adds its extras.
    let own = project.name.as_deref().map(norm);
    let mut expanded = Vec::new();
    for r in out {
        match pep508_rs::Requirement::<pep508_rs::VerbatimUrl>::from_str(&r) {
            Ok(req) if Some(norm(req.name.as_ref())) == own => {
                for e in &req.extras {
                    if let Some((_, l)) = project
                        .optional_dependencies
                        .iter()
                        .find(|(k, _)| norm(k) == norm(e.as_ref()))
                    {
                        expanded.extend(l.iter().cloned());
                    }
                }
            }
            _ => expanded.push(r),
        }
    }
    Ok(expanded)
}

/// What the deps key takes for `pyproject = ...`: the lists it reads.
pub fn pyproject_key(lock: &LockPlan) -> Result<String, DepsError> {
    let mut lists = pyproject_lists(lock)?;
    lists.sort();
    Ok(lists.join("\n"))
}

/// The requirements to resolve for `target` (each marker evaluated for
/// the target, then dropped), one per line; how many.
pub fn pyproject_requirements(
    lock: &LockPlan,
    target: Target,
) -> Result<(String, usize), DepsError> {
    let env = marker_env(target);
    let extras = extra_names(&lock.extras.iter().map(|e| norm(e)).collect());
    let mut out = String::new();
    let mut count = 0;
    for r in pyproject_lists(lock)? {
        let mut req =
            pep508_rs::Requirement::<pep508_rs::VerbatimUrl>::from_str(&r).map_err(|e| {
                DepsError::Refused {
                    message: format!(
                        "{}: cannot read the requirement {r:?}: {e}",
                        lock.path.display()
                    ),
                    hint: "write it as PEP 508 says (`name[extra]>=1.0; marker`)".into(),
                }
            })?;
        if !req.marker.evaluate(&env, &extras) {
            continue;
        }
        req.marker = MarkerTree::TRUE;
        out.push_str(&req.to_string());
        out.push('\n');
        count += 1;
    }
    Ok((out, count))
}

// ------------------------------------------------------------ out of date

#[derive(Deserialize)]
struct UvLockMeta {
    #[serde(default)]
    package: Vec<UvPackageMeta>,
}

#[derive(Deserialize)]
struct UvPackageMeta {
    #[serde(default)]
    source: BTreeMap<String, toml::Value>,
    #[serde(default)]
    metadata: UvMetadata,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
struct UvMetadata {
    #[serde(default)]
    requires_dist: Vec<UvRequirement>,
    #[serde(default)]
    requires_dev: BTreeMap<String, Vec<UvRequirement>>,
}

#[derive(Deserialize)]
struct UvRequirement {
    name: String,
    specifier: Option<String>,
    marker: Option<String>,
    #[serde(default)]
    extras: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Pyproject {
    #[serde(default)]
    project: PyprojectProject,
    #[serde(default)]
    dependency_groups: BTreeMap<String, Vec<toml::Value>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
struct PyprojectProject {
    #[serde(default)]
    dependencies: Vec<String>,
    #[serde(default)]
    optional_dependencies: BTreeMap<String, Vec<String>>,
}

/// One requirement in a comparable form: name, extras, specifiers, marker.
type Comparable = (String, Vec<String>, Vec<String>, String);

fn comparable(
    name: &str,
    extras: &[String],
    specifier: Option<&str>,
    marker: &MarkerTree,
) -> Comparable {
    let mut extras: Vec<String> = extras.iter().map(|e| norm(e)).collect();
    extras.sort();
    let mut specs: Vec<String> = specifier
        .unwrap_or_default()
        .split(',')
        .map(|s| s.chars().filter(|c| !c.is_whitespace()).collect::<String>())
        .filter(|s| !s.is_empty())
        .collect();
    specs.sort();
    let marker = marker.contents().map(|c| c.to_string()).unwrap_or_default();
    (norm(name), extras, specs, marker)
}

fn from_pep508(text: &str, extra: Option<&str>) -> Option<Comparable> {
    let r = pep508_rs::Requirement::<pep508_rs::VerbatimUrl>::from_str(text).ok()?;
    let mut marker = r.marker.clone();
    if let Some(e) = extra {
        let e = MarkerTree::from_str(&format!("extra == '{e}'")).ok()?;
        marker.and(e);
    }
    let spec = match &r.version_or_url {
        Some(pep508_rs::VersionOrUrl::VersionSpecifier(s)) => Some(s.to_string()),
        _ => None,
    };
    let extras: Vec<String> = r.extras.iter().map(|e| e.to_string()).collect();
    Some(comparable(
        r.name.as_ref(),
        &extras,
        spec.as_deref(),
        &marker,
    ))
}

/// Python's `json.dumps(value, sort_keys=True)` (default separators,
/// `ensure_ascii`), over a TOML value as `tomllib` loads it: what Poetry
/// hashes for `content-hash`.
fn python_json(v: Option<&toml::Value>, out: &mut String) {
    use std::fmt::Write;
    let Some(v) = v else {
        out.push_str("null");
        return;
    };
    match v {
        toml::Value::String(s) => {
            out.push('"');
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    '\u{8}' => out.push_str("\\b"),
                    '\u{c}' => out.push_str("\\f"),
                    c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                        let mut buf = [0u16; 2];
                        for unit in c.encode_utf16(&mut buf) {
                            let _ = write!(out, "\\u{unit:04x}");
                        }
                    }
                    c => out.push(c),
                }
            }
            out.push('"');
        }
        toml::Value::Integer(i) => {
            let _ = write!(out, "{i}");
        }
        toml::Value::Float(f) => {
            // Python's repr for the floats a pyproject holds (1.0, 0.5).
            if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e16 {
                let _ = write!(out, "{f:.1}");
            } else {
                let _ = write!(out, "{f}");
            }
        }
        toml::Value::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
        toml::Value::Datetime(d) => {
            let _ = write!(out, "\"{d}\"");
        }
        toml::Value::Array(a) => {
            out.push('[');
            for (i, item) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                python_json(Some(item), out);
            }
            out.push(']');
        }
        toml::Value::Table(t) => {
            out.push('{');
            let mut keys: Vec<&String> = t.keys().collect();
            keys.sort();
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                python_json(Some(&toml::Value::String(k.clone())), out);
                out.push_str(": ");
                python_json(t.get(k), out);
            }
            out.push('}');
        }
    }
}

/// Poetry 2's `content-hash` of a pyproject (`Locker._get_content_hash`):
/// sha256 over `json.dumps(relevant, sort_keys=True)`, where `relevant`
/// is `requires-python`, `dependencies` and `optional-dependencies` of
/// `[project]` (those present) and `dependencies`, `source`, `extras`,
/// `dev-dependencies`, `group` of `[tool.poetry]` (those present; the
/// first four as null when absent and `[project]` has none of its three),
/// nested as `{"project": ..., "tool": {"poetry": ...}}` when `[project]`
/// has any, else the `[tool.poetry]` part alone.
pub fn poetry_content_hash(pyproject: &toml::Table) -> String {
    const LEGACY: [&str; 4] = ["dependencies", "source", "extras", "dev-dependencies"];
    const PROJECT: [&str; 3] = ["requires-python", "dependencies", "optional-dependencies"];
    let empty = toml::Table::new();
    let project = pyproject
        .get("project")
        .and_then(|p| p.as_table())
        .unwrap_or(&empty);
    let poetry = pyproject
        .get("tool")
        .and_then(|t| t.get("poetry"))
        .and_then(|p| p.as_table())
        .unwrap_or(&empty);
    let relevant_project: Vec<(&str, &toml::Value)> = PROJECT
        .iter()
        .filter_map(|k| project.get(*k).map(|v| (*k, v)))
        .collect();
    // (key, value or None for null), sorted as json.dumps sorts.
    let mut relevant_poetry: Vec<(&str, Option<&toml::Value>)> = LEGACY
        .iter()
        .chain(&["group"])
        .filter_map(|k| match poetry.get(*k) {
            Some(v) => Some((*k, Some(v))),
            None if LEGACY.contains(k) && relevant_project.is_empty() => Some((*k, None)),
            None => None,
        })
        .collect();
    relevant_poetry.sort_by_key(|(k, _)| *k);
    let mut poetry_json = String::from("{");
    for (i, (k, v)) in relevant_poetry.iter().enumerate() {
        if i > 0 {
            poetry_json.push_str(", ");
        }
        python_json(Some(&toml::Value::String(k.to_string())), &mut poetry_json);
        poetry_json.push_str(": ");
        python_json(*v, &mut poetry_json);
    }
    poetry_json.push('}');
    let text = if relevant_project.is_empty() {
        poetry_json
    } else {
        let mut t = toml::Table::new();
        for (k, v) in &relevant_project {
            t.insert(k.to_string(), (*v).clone());
        }
        let mut project_json = String::new();
        python_json(Some(&toml::Value::Table(t)), &mut project_json);
        format!("{{\"project\": {project_json}, \"tool\": {{\"poetry\": {poetry_json}}}}}")
    };
    use sha2::Digest;
    crate::entry::hex(&sha2::Sha256::digest(text.as_bytes()))
}

/// Is the poetry.lock at `lock` out of date with the pyproject.toml beside
/// it, by Poetry's own rule (its recorded `content-hash`)?
fn poetry_out_of_date(lock: &LockPlan) -> Option<String> {
    #[derive(Deserialize)]
    struct Meta {
        metadata: Option<MetaInner>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "kebab-case")]
    struct MetaInner {
        content_hash: Option<String>,
    }
    let pyproject_path = lock.path.parent()?.join("pyproject.toml");
    let lock_text = std::fs::read_to_string(&lock.path).ok()?;
    let recorded = toml::from_str::<Meta>(&lock_text)
        .ok()?
        .metadata?
        .content_hash?;
    let py: toml::Table = toml::from_str(&std::fs::read_to_string(&pyproject_path).ok()?).ok()?;
    let computed = poetry_content_hash(&py);
    (computed != recorded).then(|| {
        format!(
            "{} is out of date with {}: its content-hash ({}) is not the hash of pyproject.toml's dependency sections now ({}), so they changed since `poetry lock`",
            lock.path.display(),
            pyproject_path.display(),
            short(&recorded),
            short(&computed)
        )
    })
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

/// Is the uv.lock at `lock` out of date with the pyproject.toml beside
/// it (or a poetry.lock with its, by Poetry's content-hash)? Returns the
/// message saying how (None when it is current, or when the kind of lock
/// records nothing to tell: a pylock.toml). A warning, or an error with
/// `locked = true`.
pub fn out_of_date(lock: &LockPlan) -> Option<String> {
    if lock.kind == LockKind::Poetry {
        return poetry_out_of_date(lock);
    }
    if lock.kind != LockKind::Uv {
        return None;
    }
    let pyproject_path = lock.path.parent()?.join("pyproject.toml");
    let lock_text = std::fs::read_to_string(&lock.path).ok()?;
    let py_text = std::fs::read_to_string(&pyproject_path).ok()?;
    let parsed: UvLockMeta = toml::from_str(&lock_text).ok()?;
    let py: Pyproject = toml::from_str(&py_text).ok()?;
    let root = parsed.package.iter().find(|p| {
        ["editable", "virtual"]
            .iter()
            .any(|k| p.source.get(*k).and_then(|v| v.as_str()) == Some("."))
    })?;
    let from_lock = |list: &[UvRequirement]| -> BTreeSet<Comparable> {
        list.iter()
            .map(|r| {
                let m = r
                    .marker
                    .as_deref()
                    .and_then(|m| MarkerTree::from_str(m).ok())
                    .unwrap_or(MarkerTree::TRUE);
                comparable(&r.name, &r.extras, r.specifier.as_deref(), &m)
            })
            .collect()
    };
    let locked = from_lock(&root.metadata.requires_dist);
    let mut declared: BTreeSet<Comparable> = py
        .project
        .dependencies
        .iter()
        .filter_map(|d| from_pep508(d, None))
        .collect();
    for (extra, list) in &py.project.optional_dependencies {
        declared.extend(
            list.iter()
                .filter_map(|d| from_pep508(d, Some(&norm(extra)))),
        );
    }
    let shown = |set: &BTreeSet<Comparable>| -> String {
        set.iter()
            .map(|c| c.0.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
            .join(", ")
    };
    let name = |p: &Path| p.display().to_string();
    if locked != declared {
        let added: BTreeSet<Comparable> = declared.difference(&locked).cloned().collect();
        let removed: BTreeSet<Comparable> = locked.difference(&declared).cloned().collect();
        return Some(format!(
            "{} is out of date with {}: the project's dependencies changed since it was locked (in pyproject.toml, not in the lock: {}; in the lock, not in pyproject.toml: {})",
            name(&lock.path),
            name(&pyproject_path),
            if added.is_empty() {
                "none".into()
            } else {
                shown(&added)
            },
            if removed.is_empty() {
                "none".into()
            } else {
                shown(&removed)
            },
        ));
    }
    let locked_groups: BTreeMap<String, BTreeSet<Comparable>> = root
        .metadata
        .requires_dev
        .iter()
        .map(|(g, l)| (norm(g), from_lock(l)))
        .collect();
    let declared_groups: BTreeMap<String, BTreeSet<Comparable>> = py
        .dependency_groups
        .iter()
        .map(|(g, l)| {
            let set = l
                .iter()
                .filter_map(|v| v.as_str())
                .filter_map(|d| from_pep508(d, None))
                .collect();
            (norm(g), set)
        })
        .collect();
    // uv records only groups with entries; include-group tables are skipped.
    let nonempty = |m: BTreeMap<String, BTreeSet<Comparable>>| -> BTreeMap<_, _> {
        m.into_iter().filter(|(_, s)| !s.is_empty()).collect()
    };
    if nonempty(locked_groups) != nonempty(declared_groups) {
        return Some(format!(
            "{} is out of date with {}: [dependency-groups] changed since it was locked",
            name(&lock.path),
            name(&pyproject_path)
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Architecture, Runtime};

    #[test]
    fn markers_are_evaluated_for_the_target_not_the_host() {
        let t = Target {
            runtime: Runtime::parse("python3.12").unwrap(),
            arch: Architecture::Arm64,
        };
        let env = marker_env(t);
        let holds = |m: &str| MarkerTree::from_str(m).unwrap().evaluate(&env, &[]);
        assert!(holds("platform_machine == 'aarch64'"));
        assert!(!holds("python_version < '3.11'"));
        assert!(holds("python_full_version >= '3.12'"));
        assert!(holds(
            "sys_platform == 'linux' and platform_system == 'Linux'"
        ));
        assert!(holds(
            "implementation_name == 'cpython' and os_name == 'posix'"
        ));
        assert!(!holds("sys_platform == 'darwin'"));
    }

    #[test]
    fn a_workspace_layer_takes_a_lock_without_inheriting_the_default_requirements() {
        let d = tempfile::tempdir().unwrap();
        let w = |name: &str, text: &str| std::fs::write(d.path().join(name), text).unwrap();
        w("requirements.txt", "purepkg==1.0\n");
        w("uv.lock", "");
        w(
            "lambda.toml",
            r#"[defaults]
dependencies = { requirements = "requirements.txt", no_index = true }

[layers.common]
dependencies = { lock = "uv.lock", groups = ["dev"] }

[functions.api]
handler = "app.handler"
layers = ["common"]
dependencies = { requirements = "requirements.txt" }
"#,
        );
        let ws = crate::manifest::load_workspace(&d.path().join("lambda.toml")).unwrap();
        let deps = |name: &str| {
            ws.artifacts
                .iter()
                .find(|a| a.name == name)
                .unwrap()
                .deps
                .clone()
                .unwrap()
        };
        let layer = deps("common");
        let lock = layer.lock.expect("the layer's lock");
        assert_eq!(lock.kind, LockKind::Uv);
        assert_eq!(lock.groups, ["dev"]);
        assert_eq!(layer.requirements, lock.path);
        assert!(layer.no_index, "the other defaults are inherited");
        let api = deps("api");
        assert!(api.lock.is_none());
        assert!(api.requirements.ends_with("requirements.txt"));
    }

    #[test]
    fn lock_kinds_come_from_the_file_name() {
        assert_eq!(LockKind::from_file_name("uv.lock"), Some(LockKind::Uv));
        assert_eq!(
            LockKind::from_file_name("poetry.lock"),
            Some(LockKind::Poetry)
        );
        assert_eq!(
            LockKind::from_file_name("pylock.toml"),
            Some(LockKind::Pylock)
        );
        assert_eq!(
            LockKind::from_file_name("pylock.lambda.toml"),
            Some(LockKind::Pylock)
        );
        assert_eq!(LockKind::from_file_name("pylock..toml"), None);
        assert_eq!(LockKind::from_file_name("requirements.txt"), None);
    }
}
