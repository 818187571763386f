//! Lockfiles as the dependency source: `uv.lock`, `poetry.lock` and
//! `pylock.toml` (PEP 751), read with serde and resolved for the Lambda
//! target, never the host; and `pyproject = "pyproject.toml"`, which is
//! not a lock. One file per format ([`uv`], [`poetry`], [`pylock`],
//! [`pyproject`]), path dependencies in [`local`], the out-of-date checks
//! in [`fresh`]. This file owns what they share: the selection, the
//! target's marker environment and the parse context. Installing the
//! selection is `super::install`'s.
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
//! [`fresh::poetry_content_hash`], `[dependency-groups]` included as Poetry
//! 2.3 does) for the `locked` check.
//!
//! Path dependencies (a uv workspace member or path source, a Poetry
//! directory/file source, a pylock `directory`) are [`local_paths`], keyed
//! by their files ([`local_package_files`]) and built into a pure-Python
//! wheel by [`build_local`]; the project root (the lock's directory) never
//! is. `pyproject = "pyproject.toml"` (LockKind::Pyproject) is not a lock:
//! [`pyproject_requirements`] hands its dependency lists to the installer
//! to resolve, keyed by [`pyproject_key`].

mod fresh;
mod local;
mod poetry;
mod pylock;
mod pyproject;
mod uv;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use pep508_rs::{ExtraName, MarkerEnvironment, MarkerEnvironmentBuilder, MarkerTree};

use super::DepsError;
use super::installer::Target;
use super::normalize::canonical_name;
use crate::manifest::{LockKind, LockPlan};

pub(crate) use fresh::out_of_date;
pub(crate) use local::{build_local, local_package_files, local_paths};
pub(crate) use pyproject::{pyproject_key, pyproject_requirements};

/// One package to install, pinned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pinned {
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
pub(crate) struct Selection {
    pub pinned: Vec<Pinned>,
}

impl Selection {
    /// Every indexed package has at least one hash: the install can
    /// require them (local packages are hashed when built).
    pub(crate) fn all_hashed(&self) -> bool {
        self.pinned
            .iter()
            .all(|p| p.local.is_some() || !p.hashes.is_empty())
    }

    /// The indexed packages without a recorded hash.
    pub(crate) fn unhashed(&self) -> Vec<&str> {
        self.pinned
            .iter()
            .filter(|p| p.local.is_none() && p.hashes.is_empty())
            .map(|p| p.name.as_str())
            .collect()
    }

    /// A requirements file: `name==version` per line (a local package: the
    /// wheel built from it, by path), with `--hash=` options when
    /// `with_hashes` (pip and uv both check them).
    pub(crate) fn requirements_text(&self, with_hashes: bool) -> String {
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
pub(crate) fn marker_env(target: Target) -> MarkerEnvironment {
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
pub(crate) fn select(lock: &LockPlan, target: Target) -> Result<Selection, DepsError> {
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
        LockKind::Uv => uv::uv(&ctx, lock)?,
        LockKind::Poetry => poetry::poetry(&ctx, lock)?,
        LockKind::Pylock => pylock::pylock(&ctx)?,
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
        let w = |name: &str, text: &str| fs_err::write(d.path().join(name), text).unwrap();
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
