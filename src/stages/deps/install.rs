//! Installing a tree: the installer run into a staging directory of the
//! machine store (from requirements files, a lock's pinned selection, or a
//! pyproject's dependency lists), normalised, hashed, recorded and
//! published under its key. Does not decide whether to install (the stage,
//! [`super`]) nor compute the key ([`super::key`]).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::installer::{Installer, Target};
use super::tree_store::{Record, RecordedFile, SharedTree, publish, staging_dir};
use super::{DepsError, lockfile, normalize, relative, requirements};
use crate::cache::{Cache, Hash};
use crate::manifest::{DepsPlan, Plan};
use crate::report::Reporter;
use crate::stages::{Entry, hash_entries};
use crate::store::{MachineStore, TREE_RECORD};
use crate::walk;

/// What [`install`] left in the store.
pub(super) struct Installed {
    pub(super) ran: bool,
    pub(super) shared: SharedTree,
    pub(super) entries: Vec<Entry>,
    pub(super) unmatched_excludes: Vec<String>,
}

/// Installs into a temporary directory of the machine store, normalises
/// it, hashes it and writes its record beside it, then renames the whole
/// key directory into place in one step: a failure at any point leaves
/// nothing under the key, and a reader never sees a tree without its
/// record. When another build put the same key in place first, its tree is
/// used and ours dropped (same key, same files); a reinstall (the tree was
/// found changed) swaps the old one out.
#[allow(clippy::too_many_arguments)]
pub(super) fn install(
    plan: &Plan,
    store: &MachineStore,
    deps: &DepsPlan,
    installer: &Installer,
    target: Target,
    index_args: &[String],
    reqs: &requirements::Requirements,
    key: &Hash,
    cache: &mut Cache,
    reinstall: bool,
    reporter: &Reporter,
    mut warnings: Vec<String>,
) -> crate::Result<Installed> {
    let deps_dir = store.deps_dir();
    let io = DepsError::io;
    let tmp = staging_dir(&deps_dir, "cannot install dependencies")?;
    let staging = tmp.path().join("tree");
    let ran = match &deps.lock {
        None => {
            let ran = reqs.count > 0;
            if ran {
                installer.install(
                    target,
                    &deps.requirements,
                    index_args,
                    &staging,
                    &plan.project_dir,
                    reporter,
                )?;
            }
            ran
        }
        Some(l) => install_locked(
            l,
            installer,
            target,
            index_args,
            &staging,
            tmp.path(),
            plan,
            reporter,
        )?,
    };
    fs_err::create_dir_all(&staging).map_err(io("cannot install dependencies"))?;
    let normalized = normalize::normalize(&staging, &deps.exclude)?;
    // The tree's own directories: ordinary permissions, whatever the umask.
    let _ = fs_err::set_permissions(&staging, std::fs::Permissions::from_mode(0o755));
    // Scratch files of a lock install are not part of the tree.
    for item in fs_err::read_dir(tmp.path()).into_iter().flatten().flatten() {
        if item.file_name() != "tree" {
            let _ = fs_err::remove_file(item.path());
        }
    }
    let files = walk::files_under(&staging, &staging, &staging, &[], |_| true)?;
    let (entries, _) = hash_entries(cache, files)?;
    let recorded: Vec<RecordedFile> = entries
        .iter()
        .map(|e| {
            let mtime_ns = fs_err::metadata(&e.path)
                .map(|m| crate::entry::mtime_ns(&m))
                .unwrap_or(0);
            RecordedFile {
                name: e.name.clone(),
                hash: e.hash,
                size: e.size,
                executable: e.executable,
                mtime_ns,
            }
        })
        .collect();
    let shared = SharedTree {
        record: Record {
            digest: crate::entry::entries_digest(&entries),
            installer: installer.version.clone(),
            distributions: normalized.distributions,
            excluded: normalized.excluded,
            files: recorded.len(),
            warnings: {
                warnings.extend(reporter.take_warnings());
                warnings
            },
        },
        files: recorded,
        zip: None,
    };
    fs_err::write(
        tmp.path().join(TREE_RECORD),
        serde_json::to_string(&shared).unwrap_or_default(),
    )
    .map_err(io("cannot record the installed deps tree"))?;
    let staged = tmp.keep();
    let (shared, entries) = publish(store.root(), &staged, key, shared, entries, reinstall)?;
    Ok(Installed {
        ran,
        shared,
        entries,
        unmatched_excludes: normalized.unmatched_excludes,
    })
}

/// The manifest's index options as installer arguments (identical for uv
/// and pip). Relative `find_links` are relative to lambda.toml's directory.
pub(super) fn index_args(deps: &DepsPlan) -> Vec<String> {
    let raw = deps;
    let mut args = Vec::new();
    if let Some(url) = &raw.index_url {
        args.push(format!("--index-url={url}"));
    }
    for url in &raw.extra_index_urls {
        args.push(format!("--extra-index-url={url}"));
    }
    for link in &raw.find_links {
        args.push(format!("--find-links={}", link.as_arg()));
    }
    if raw.no_index {
        args.push("--no-index".into());
    }
    args
}

/// Resolves the lock for the target, writes the pinned requirements (with
/// hashes when the lock records one for every package) into `scratch`, and
/// installs them with `--no-deps` (the lock already resolved everything).
#[allow(clippy::too_many_arguments)]
pub(super) fn install_locked(
    lock: &crate::manifest::LockPlan,
    installer: &Installer,
    target: Target,
    index_args: &[String],
    staging: &Path,
    scratch: &Path,
    plan: &Plan,
    reporter: &Reporter,
) -> crate::Result<bool> {
    if lock.kind == crate::manifest::LockKind::Pyproject {
        return install_pyproject(
            lock, installer, target, index_args, staging, scratch, plan, reporter,
        );
    }
    if let Some(message) = lockfile::out_of_date(lock)? {
        let relock = if lock.kind == crate::manifest::LockKind::Poetry {
            "`poetry lock`"
        } else {
            "`uv lock`"
        };
        if lock.locked {
            return Err(DepsError::Refused {
                message,
                hint: format!(
                    "re-lock ({relock}), or remove locked = true to build from the lock as it is"
                ),
            }
            .into());
        }
        reporter.warn(format!(
            "{message}; building from the lock as it is (re-lock with {relock})"
        ));
    }
    let mut selection = lockfile::select(lock, target)?;
    // The project root is never installed, whatever the lock calls it.
    selection
        .pinned
        .retain(|p| p.local.as_deref() != Some(plan.project_dir.as_path()));
    if selection.pinned.is_empty() {
        return Ok(false);
    }
    for p in selection.pinned.iter_mut().filter(|p| p.local.is_some()) {
        let spinner = reporter.spinner(&format!("building the path dependency {}", p.name));
        lockfile::build_local(p, lock, installer, index_args, scratch, &plan.project_dir)?;
        drop(spinner);
    }
    let hashed = selection.all_hashed();
    if !hashed {
        reporter.detail(format!(
            "{} records no hash for {}: their wheels are installed unchecked",
            relative(&plan.project_dir, &lock.path),
            selection.unhashed().join(", ")
        ));
    }
    let file = scratch.join(format!("{}-requirements.txt", lock.kind.name()));
    fs_err::write(&file, selection.requirements_text(hashed))
        .map_err(DepsError::io("cannot write the pinned requirements"))?;
    let mut args = vec!["--no-deps".to_string()];
    if hashed {
        args.push("--require-hashes".into());
    }
    args.extend(index_args.iter().cloned());
    installer
        .install(target, &file, &args, staging, &plan.project_dir, reporter)
        .map_err(|e| match e {
            // Name the lock, not the pinned file written from it.
            DepsError::Install(mut f) => {
                let written = file.strip_prefix(&plan.project_dir).unwrap_or(&file);
                f.what = f.what.replace(
                    &written.display().to_string(),
                    &relative(&plan.project_dir, &lock.path),
                );
                DepsError::Install(f)
            }
            other => other,
        })?;
    Ok(true)
}

/// `pyproject = ...`: the dependency lists, markers evaluated for the
/// target, resolved by the installer now (not pinned: a warning says so).
#[allow(clippy::too_many_arguments)]
pub(super) fn install_pyproject(
    lock: &crate::manifest::LockPlan,
    installer: &Installer,
    target: Target,
    index_args: &[String],
    staging: &Path,
    scratch: &Path,
    plan: &Plan,
    reporter: &Reporter,
) -> crate::Result<bool> {
    let (text, count) = lockfile::pyproject_requirements(lock, target)?;
    let shown = relative(&plan.project_dir, &lock.path);
    if count == 0 {
        reporter.warn(format!(
            "{shown} declares no dependencies for {}: the zip has no dependencies",
            target.describe()
        ));
        return Ok(false);
    }
    reporter.warn(format!(
        "{shown}'s dependencies are resolved now, not pinned: builds will drift as new versions appear (like unpinned requirements), and a rebuild reruns only when those lists change; lock them (`uv lock`) and set lock = \"uv.lock\" for reproducible builds"
    ));
    let file = scratch.join("pyproject-requirements.txt");
    fs_err::write(&file, text).map_err(DepsError::io("cannot write the requirements"))?;
    installer
        .install(
            target,
            &file,
            index_args,
            staging,
            &plan.project_dir,
            reporter,
        )
        .map_err(|e| match e {
            DepsError::Install(mut f) => {
                let written = file.strip_prefix(&plan.project_dir).unwrap_or(&file);
                f.what = f.what.replace(&written.display().to_string(), &shown);
                DepsError::Install(f)
            }
            other => other,
        })?;
    Ok(true)
}
