//! The deps stage: requirements.txt (or a lockfile) -> binary wheels for
//! the Lambda target, installed into a tree in the machine store under
//! `deps/KEY/`.
//!
//! This file owns the stage itself: choosing the tree among its four
//! sources (this project's record, another project's tree in the machine
//! store, the remote store, a fresh install) and, when the zip must be
//! written, checking a cached tree ([`ready`]). It does not compute the key
//! ([`key`]), install ([`install`]), keep trees in the machine store
//! ([`tree_store`]) or move them to and from the remote store
//! ([`remote_tree`]).
//!
//! The key covers everything that can change the installed tree (see
//! [`key`]); trees of several keys stay side by side, so switching branches
//! back reinstalls nothing. An install goes to a temporary directory of the
//! store, is normalised ([`normalize`]) and only then renamed into place;
//! the stage is recorded with its list of entries, so a build whose key is
//! cached stats the tree instead of hashing it. The other rooms:
//! [`requirements`] (reading the files), [`lockfile`] (uv.lock,
//! poetry.lock, pylock.toml, pyproject.toml), [`installer`] (uv / pip and
//! the target's platform tags; finding uv and its version cheaply is
//! `uv_probe`), [`find_links`] (listings for the key),
//! [`watch_roots`] (what `lbuild watch` watches), [`error`].

mod error;
mod find_links;
mod install;
pub(crate) mod installer;
mod key;
pub(crate) mod lockfile;
pub(crate) mod normalize;
mod remote_tree;
pub(crate) mod requirements;
pub(crate) mod suspect;
mod tree_store;
mod uv_probe;
mod watch_roots;

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::{Entry, StageReport, Status};
use crate::cache::{Cache, Hash};
use crate::context::BuildContext;
use crate::manifest::Plan;
use crate::store::TREE_RECORD;
use install::{Installed, index_args, install};
use installer::{Kind, Target};
use key::{lock_requirements, stage_key};
use remote_tree::fetch_remote;
use tree_store::{
    Record, installed_tree_zip, may_keep, read_shared, record_shared, recorded_files,
    still_installed, usable,
};

pub(crate) use error::{DepsError, InstallFailure};
pub(crate) use remote_tree::upload_remote;
pub(crate) use tree_store::{keep_tree_zip, key_dir, tree_dir};
pub(crate) use watch_roots::watch_roots;

pub(crate) const NAME: &str = "deps";

/// Bump when [`normalize`] changes what it leaves in a tree: installed
/// trees of older versions are then not reused. 2: a wheel's `.env*`
/// files are kept.
const NORMALIZE_VERSION: u32 = 2;

/// The deps stage's result, for the package key and (when the zip must be
/// written) its entries.
#[derive(Debug)]
pub(crate) enum DepsTree {
    /// The function has no `[dependencies]`.
    None,
    /// Entries known: just installed (under deps key `key`).
    Ready {
        digest: Hash,
        entries: Vec<Entry>,
        key: Hash,
    },
    /// A cached tree, known by its recorded digest, not yet checked against
    /// its record (a build whose zip is cached never needs to).
    Unverified {
        digest: Hash,
        tree: PathBuf,
        key: Hash,
        /// Adopted from the machine store by this build (another project
        /// installed it): this project's reuse store has none of its
        /// entries yet.
        adopted: bool,
    },
}

impl DepsTree {
    /// What the package key takes: the tree's digest (None without deps).
    pub(crate) fn digest(&self) -> Option<Hash> {
        match self {
            DepsTree::None => None,
            DepsTree::Ready { digest, .. } | DepsTree::Unverified { digest, .. } => Some(*digest),
        }
    }
}

/// The deps tree with its entries, ready to be packaged.
#[derive(Debug, Default)]
pub(crate) struct ReadyDeps {
    /// None when the function has no `[dependencies]`.
    pub digest: Option<Hash>,
    pub entries: Vec<Entry>,
    /// A tree kept as the zip it came in from the remote store: its
    /// entries are copied out of it (their paths name files that are not
    /// on disk).
    pub tree_zip: Option<crate::archive::TreeZip>,
    /// An installed tree, to be kept also as a zip after packaging (see
    /// [`keep_tree_zip`]) when it has none for these archive settings or
    /// the one it has turned out damaged.
    pub keep: Option<KeepTree>,
}

/// An installed machine-store tree that [`keep_tree_zip`] may keep as a zip.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeepTree {
    key: Hash,
    /// A kept zip was found and used as this build's tree zip.
    kept: bool,
}

/// Makes `tree` ready to package: a cached tree is checked file by file
/// against its record and, if it changed since it was installed, installed
/// again (the returned report then replaces the stage's, and the digest
/// may differ: the caller keys the package on the returned one).
pub(crate) fn ready(
    tree: DepsTree,
    plan: &Plan,
    cache: &mut Cache,
    cx: &BuildContext,
) -> crate::Result<(ReadyDeps, Option<StageReport>)> {
    let reporter = cx.reporter;
    let (digest, tree, key, adopted) = match tree {
        DepsTree::None => return Ok((ReadyDeps::default(), None)),
        DepsTree::Ready {
            digest,
            entries,
            key,
        } => {
            let digest = Some(digest);
            let ready = ReadyDeps {
                digest,
                entries,
                tree_zip: None,
                keep: Some(KeepTree { key, kept: false }),
            };
            return Ok((ready, None));
        }
        DepsTree::Unverified {
            digest,
            tree,
            key,
            adopted,
        } => (digest, tree, key, adopted),
    };
    if let Some(entries) =
        recorded_files(cache, &key)?.and_then(|files| still_installed(&tree, &files))
    {
        // Last use, for `lbuild gc --max-size` on the machine store.
        if let Some(dir) = tree.parent() {
            crate::store::touch(&dir.join(TREE_RECORD));
        }
        // Installed, and perhaps also kept as a zip (by the project that
        // installed it): its entries are then copied, not compressed.
        let (tree_zip, keep) = installed_tree_zip(plan, &cx.store, &key, &digest, adopted);
        let digest = Some(digest);
        let ready = ReadyDeps {
            digest,
            entries,
            tree_zip,
            keep,
        };
        return Ok((ready, None));
    }
    // The machine store's tree may have been replaced since this project
    // recorded it (trimmed by gc, then installed again by another project),
    // or be kept as the zip it was fetched as: its own record says what it
    // holds now.
    let root = cx.store.root();
    let settings = crate::stages::package::settings(plan)?;
    let now = read_shared(root, &key).filter(|s| s.record.digest == digest);
    if let Some(shared) = now
        && let Some((entries, tree_zip, installed)) = usable(root, &key, &shared, &settings)
    {
        if installed {
            record_shared(cache, &key, &shared);
        }
        crate::store::touch(&key_dir(root, &key).join(TREE_RECORD));
        let keep = (installed && (tree_zip.is_some() || may_keep(&shared, &settings))).then_some(
            KeepTree {
                key,
                kept: tree_zip.is_some(),
            },
        );
        let digest = Some(digest);
        let ready = ReadyDeps {
            digest,
            entries,
            tree_zip,
            keep,
        };
        return Ok((ready, None));
    }
    // Gone (trimmed by gc): the remote store may have it.
    if !tree.exists()
        && let Some(remote) = cx.remote.as_deref()
        && let Some(shared) = fetch_remote(remote, plan, &cx.store, &key, reporter)?
        && shared.record.digest == digest
        && let Some((entries, tree_zip, _)) = usable(root, &key, &shared, &settings)
    {
        record_shared(cache, &key, &shared);
        let digest = Some(digest);
        let ready = ReadyDeps {
            digest,
            entries,
            tree_zip,
            keep: None,
        };
        return Ok((ready, None));
    }
    reporter.info(if tree.exists() {
        format!(
            "the dependency tree {} changed since it was installed; installing again",
            tree.display()
        )
    } else {
        format!(
            "the dependency tree {} is gone (lbuild gc --max-size?); installing again",
            tree.display()
        )
    });
    let (installed, report) = stage(plan, cache, cx, true)?;
    match installed {
        DepsTree::Ready {
            digest,
            entries,
            key,
        } => {
            let digest = Some(digest);
            let ready = ReadyDeps {
                digest,
                entries,
                tree_zip: None,
                keep: Some(KeepTree { key, kept: false }),
            };
            Ok((ready, Some(report)))
        }
        // `stage` with `reinstall` only ever returns a fresh tree.
        DepsTree::None | DepsTree::Unverified { .. } => Err(crate::Error::Io {
            context: "no dependency tree was installed in",
            path: tree,
            source: std::io::Error::other("the deps stage did not install"),
        }),
    }
}

/// Installs the tree again, whatever is recorded or stored (the one found
/// was suspect, see [`suspect`]).
pub(crate) fn install_again(
    plan: &Plan,
    cache: &mut Cache,
    cx: &BuildContext,
) -> crate::Result<(ReadyDeps, StageReport)> {
    match stage(plan, cache, cx, true)? {
        (
            DepsTree::Ready {
                digest,
                entries,
                key,
            },
            report,
        ) => Ok((
            ReadyDeps {
                digest: Some(digest),
                entries,
                tree_zip: None,
                keep: Some(KeepTree { key, kept: false }),
            },
            report,
        )),
        // `stage` with `reinstall` only ever returns a fresh tree.
        _ => Err(DepsError::Io {
            context: "no dependency tree was installed",
            source: std::io::Error::other("the deps stage did not install"),
        }
        .into()),
    }
}

/// Runs the deps stage: installs the tree unless its key is recorded, in
/// which case the tree is returned unverified (see [`ready`]).
pub(crate) fn run(
    plan: &Plan,
    cache: &mut Cache,
    cx: &BuildContext,
) -> crate::Result<(DepsTree, StageReport)> {
    stage(plan, cache, cx, false)
}

/// The stage itself; with `reinstall`, a recorded tree is installed again
/// (it was found changed).
fn stage(
    plan: &Plan,
    cache: &mut Cache,
    cx: &BuildContext,
    reinstall: bool,
) -> crate::Result<(DepsTree, StageReport)> {
    let reporter = cx.reporter;
    let started = Instant::now();
    let Some(deps) = &plan.deps else {
        return Ok((
            DepsTree::None,
            StageReport {
                name: NAME,
                status: Status::Skipped,
                key: String::new(),
                ms: started.elapsed().as_millis() as u64,
                details: serde_json::json!({}),
                explain: Vec::new(),
                reasons: Vec::new(),
            },
        ));
    };
    let reqs = match &deps.lock {
        // Keyed by the lock's bytes; read and resolved only to install.
        Some(l) => lock_requirements(l)?,
        None => requirements::read(&deps.requirements)?,
    };
    if deps.lock.is_none() && reqs.count == 0 {
        // On every build, cached or not: it is a state, not an event.
        reporter.warn(format!(
            "{} lists no requirements: the zip has no dependencies; add pinned requirements (`name==version`), or remove [dependencies] from {} if the function needs none",
            relative(&plan.project_dir, &deps.requirements),
            relative(&plan.project_dir, &plan.manifest_path),
        ));
    }
    let installer = installer::detect(deps.installer, cache, &plan.project_dir, reporter)?;
    let target = Target {
        runtime: plan.runtime,
        arch: plan.architecture,
    };
    let index_args = index_args(deps);

    let key = stage_key(plan, deps, &reqs, &installer, target, cache, cx.explain)?;
    let (key_hash, explain) = key.finish();
    let store = &cx.store;
    let tree = tree_dir(store.root(), &key_hash);
    // This build's inputs, when they differ from the artifact's last
    // build (kept by `key` under -v, fed again otherwise).
    let inputs = if crate::explain::needs_inputs(cache, plan, NAME, &key_hash)? {
        match key.inputs() {
            Some(i) => Some(i),
            None => stage_key(plan, deps, &reqs, &installer, target, cache, true)?.inputs(),
        }
    } else {
        None
    };

    let details = |ran: bool, record: &Record| {
        let mut d = serde_json::json!({
            "installer": installer.name(),
            "installer_version": installer.version,
            "installer_ran": ran,
            "target": target.describe(),
            "distributions": record.distributions.len(),
            "files": record.files,
        });
        if !record.excluded.is_empty() {
            d["excluded"] = serde_json::json!(record.excluded);
        }
        d
    };

    let recorded = cache
        .stage_output(NAME, &key_hash)?
        .and_then(|s| serde_json::from_str::<Record>(&s).ok());
    if let Some(record) = recorded.filter(|_| !reinstall) {
        for w in &record.warnings {
            reporter.warn(format!("{} (cached)", crate::sanitize::escape_controls(w)));
        }
        let mut report = StageReport::new(
            NAME,
            Status::Cached,
            &key_hash,
            started,
            details(false, &record),
            explain,
        );
        report.reasons =
            super::settle_inputs(cache, plan, NAME, &key_hash, false, inputs, cx.reasons)?;
        let out = DepsTree::Unverified {
            digest: record.digest,
            tree,
            key: key_hash,
            adopted: false,
        };
        return Ok((out, report));
    }
    // Not recorded in this project: another project on this machine (or
    // the remote store) may have installed the same tree.
    let mut from = "store";
    let mut found = if reinstall {
        None
    } else {
        read_shared(store.root(), &key_hash)
    };
    // A key directory whose record cannot be read (torn, garbage, a
    // directory in its place) would make every install's rename fail:
    // moved aside once, with a warning.
    let key_path = key_dir(store.root(), &key_hash);
    if found.is_none() && key_path.exists() && read_shared(store.root(), &key_hash).is_none() {
        reporter.warn(format!(
            "the machine store's dependency tree {} has an unreadable {TREE_RECORD}; moved aside, installing again",
            key_path.display()
        ));
        if let Err(e) = crate::store::move_aside(&key_path) {
            reporter.warn(format!("could not move {} aside: {e}", key_path.display()));
        }
    }
    if !reinstall
        && found.is_none()
        && let Some(remote) = cx.remote.as_deref()
        && let Some(shared) = fetch_remote(remote, plan, store, &key_hash, reporter)?
    {
        from = "remote";
        found = Some(shared);
    }
    if let Some(shared) = found {
        cache.record_stage_with_detail(
            NAME,
            &key_hash,
            &serde_json::to_string(&shared.record).unwrap_or_default(),
            &serde_json::to_string(&shared.files).unwrap_or_default(),
        );
        crate::store::touch(&key_dir(store.root(), &key_hash).join(TREE_RECORD));
        for w in &shared.record.warnings {
            reporter.warn(format!("{} (cached)", crate::sanitize::escape_controls(w)));
        }
        let mut d = details(false, &shared.record);
        d["from"] = serde_json::json!(from);
        let mut report = StageReport::new(NAME, Status::Cached, &key_hash, started, d, explain);
        report.reasons =
            super::settle_inputs(cache, plan, NAME, &key_hash, false, inputs, cx.reasons)?;
        let out = DepsTree::Unverified {
            digest: shared.record.digest,
            tree,
            key: key_hash,
            adopted: true,
        };
        return Ok((out, report));
    }

    // What this install warns about is kept with its record and replayed
    // whenever the tree is used again (a cached tree drifts no less).
    let mut warnings: Vec<String> = Vec::new();
    let mut warn = |w: String| {
        reporter.warn(&w);
        warnings.push(w);
    };
    // About to install: this is when loose pins drift.
    for u in &reqs.unpinned {
        warn(format!(
            "{}:{}: {:?} is not pinned with == (builds will drift as new versions appear); pin it, e.g. with the version `pip freeze` shows",
            relative(&plan.project_dir, &u.path),
            u.line,
            u.requirement
        ));
    }
    if installer.kind == Kind::Pip
        && reqs.count > 0
        && installer.host_python.as_deref() != Some(plan.runtime.version().as_str())
    {
        warn(format!(
            "pip evaluates dependency markers (python_version, ...) with the Python running it ({}), not the target {}: a dependency declared only for some Python versions may be wrongly added or left out; install uv (`python3 -m pip install uv`) for exact results",
            installer.host_python.as_deref().unwrap_or("unknown"),
            plan.runtime.name()
        ));
    }

    let prior = warnings.len();
    let installing = reporter.holding_warnings();
    let installed = install(
        plan,
        store,
        deps,
        &installer,
        target,
        &index_args,
        &reqs,
        &key_hash,
        cache,
        reinstall,
        &installing,
        warnings,
    );
    // What the install itself warned about was kept in its record; show it
    // now (and on a failure, what came before it).
    let installed = match installed {
        Ok(i) => {
            for w in i.shared.record.warnings.iter().skip(prior) {
                reporter.warn(w);
            }
            i
        }
        Err(e) => {
            for w in installing.take_warnings() {
                reporter.warn(&w);
            }
            return Err(e);
        }
    };
    let Installed {
        ran,
        shared,
        entries,
        unmatched_excludes,
    } = installed;
    for name in &unmatched_excludes {
        // Often deliberate (boto3 "just in case"), so only shown with -v.
        reporter.detail(format!(
            "[dependencies] exclude: no installed distribution is named {name:?}; nothing removed"
        ));
    }
    cache.record_stage_with_detail(
        NAME,
        &key_hash,
        &serde_json::to_string(&shared.record).unwrap_or_default(),
        &serde_json::to_string(&shared.files).unwrap_or_default(),
    );
    let mut report = StageReport::new(
        NAME,
        Status::Ran,
        &key_hash,
        started,
        details(ran, &shared.record),
        explain,
    );
    report.reasons = super::settle_inputs(cache, plan, NAME, &key_hash, true, inputs, cx.reasons)?;
    let out = DepsTree::Ready {
        digest: shared.record.digest,
        entries,
        key: key_hash,
    };
    Ok((out, report))
}

/// `path` relative to `base` when inside it, for stable, readable keys.
fn relative(base: &Path, path: &Path) -> String {
    path.strip_prefix(base)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}
