//! The deps stage: requirements.txt -> binary wheels for the Lambda target,
//! installed into a cached tree under `.lbuild/deps/KEY/`.
//!
//! The key covers everything that can change the installed tree: the
//! requirements files (and what they include with `-r`/`-c`), the target
//! (runtime, architecture, glibc), the installer and its version, the index
//! options (manifest, requirements files, the installer's environment
//! variables, and the distributions in local `find_links` directories, by
//! content), the local wheels the requirements name (by content), the
//! `exclude` list, and lbuild's output-format version. What keying may
//! cost is bounded: a find-links directory is listed at its top level
//! only, up to 10,000 entries and 4 GiB of distributions. Trees of several keys
//! stay side by side, so switching branches back reinstalls nothing.
//!
//! An install goes to a temporary directory inside `.lbuild/deps/`, is
//! normalised ([`normalize`]) and only then renamed into place; the stage is
//! recorded with its list of entries, so a build whose key is cached stats
//! the tree instead of hashing it. Submodules: [`requirements`] (reading
//! the files), [`installer`] (uv / pip and the target's platform tags),
//! [`normalize`] (what stays in the tree).

pub mod installer;
pub mod lock;
pub mod normalize;
pub mod requirements;
pub mod suspect;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::{Entry, KeyBuilder, StageReport, Status, hash_entries};
use crate::cache::{Cache, Hash};
use crate::context::BuildContext;
use crate::manifest::{DepsPlan, FindLinks, Plan, relative_path};
use crate::remote::RemoteStore;
use crate::report::Reporter;
use crate::store::MachineStore;
use crate::store::TREE_RECORD;
use crate::walk;
use installer::{Installer, Kind, Target};

pub const NAME: &str = "deps";

/// Bump when [`normalize`] changes what it leaves in a tree: installed
/// trees of older versions are then not reused.
const NORMALIZE_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum DepsError {
    #[error("cannot use {installer} to install dependencies: {reason}")]
    InstallerMissing {
        installer: &'static str,
        reason: String,
        hint: &'static str,
    },
    #[error(transparent)]
    Install(Box<InstallFailure>),
    #[error("{path}:{line}: {message}")]
    Requirements {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// An `-e` line: installed into the target directory, an editable
    /// install is a `.pth` file holding this machine's absolute path to the
    /// package, not its code.
    #[error(
        "{path}:{line}: `{requirement}` is an editable install: the zip would hold a link to {target} on this machine instead of the package"
    )]
    Editable {
        path: PathBuf,
        line: usize,
        requirement: String,
        /// The package's directory (absolute), or the URL as written.
        target: String,
    },
    /// A lockfile that is not valid TOML (or not of its kind's shape).
    #[error("{path}:{line}: {message}")]
    Lockfile {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// An input lbuild will not read: not a regular file, too large, or a
    /// find-links directory too big to key.
    #[error("{message}")]
    Refused { message: String, hint: String },
    /// `source` comes from `fs_err` (or names its path itself).
    #[error("{context}: {source}")]
    Io {
        context: &'static str,
        source: std::io::Error,
    },
}

impl DepsError {
    pub fn hint(&self) -> Option<String> {
        match self {
            DepsError::InstallerMissing { hint, .. } => Some(hint.to_string()),
            DepsError::Install(f) => Some(f.hint.clone()),
            DepsError::Requirements { .. } => Some(
                "fix the line; included files are relative to the file that includes them".into(),
            ),
            DepsError::Editable { .. } => Some(
                "drop the -e: the path alone installs the package's files into the zip".into(),
            ),
            DepsError::Lockfile { .. } => Some(
                "fix the line, or write the lock again (`uv lock`, `poetry lock`, `uv export --format pylock.toml`)".into(),
            ),
            DepsError::Refused { hint, .. } => Some(hint.clone()),
            DepsError::Io { .. } => None,
        }
    }

    /// Wraps an I/O error (from `fs_err`, so it names its path).
    pub(crate) fn io(context: &'static str) -> impl FnOnce(std::io::Error) -> DepsError {
        move |source| DepsError::Io { context, source }
    }
}

/// A failed install: the package (best effort), the target, and the
/// installer's own message.
#[derive(Debug, thiserror::Error)]
#[error("{installer} could not install {what} for {target} ({status}); it said:\n{output}")]
pub struct InstallFailure {
    pub installer: String,
    pub what: String,
    pub target: String,
    pub status: String,
    pub output: String,
    pub hint: String,
}

/// What the cache records for one deps key (the file list, with the stat
/// facts that say the tree is still as installed, is the stage detail).
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    /// [`crate::entry::entries_digest`] of the tree: what the package key uses.
    #[serde(with = "crate::entry::hash_hex")]
    digest: Hash,
    installer: String,
    distributions: Vec<String>,
    excluded: Vec<String>,
    /// How many files the tree holds (their list is the stage detail).
    files: usize,
    /// The warnings the install gave (an unpinned requirement...),
    /// replayed whenever this tree is used again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct RecordedFile {
    name: String,
    #[serde(with = "crate::entry::hash_hex")]
    hash: Hash,
    size: u64,
    executable: bool,
    mtime_ns: i64,
}

/// The deps stage's result, for the package key and (when the zip must be
/// written) its entries.
#[derive(Debug)]
pub enum DepsTree {
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
    pub fn digest(&self) -> Option<Hash> {
        match self {
            DepsTree::None => None,
            DepsTree::Ready { digest, .. } | DepsTree::Unverified { digest, .. } => Some(*digest),
        }
    }
}

/// The deps tree with its entries, ready to be packaged.
#[derive(Debug, Default)]
pub struct ReadyDeps {
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
pub struct KeepTree {
    key: Hash,
    /// A kept zip was found and used as this build's tree zip.
    kept: bool,
}

/// Makes `tree` ready to package: a cached tree is checked file by file
/// against its record and, if it changed since it was installed, installed
/// again (the returned report then replaces the stage's, and the digest
/// may differ: the caller keys the package on the returned one).
pub fn ready(
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
pub fn install_again(
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
pub fn run(
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
    let installer = installer::detect(deps.installer, cache, reporter)?;
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

/// Records a machine-store tree as this project's deps stage for `key`.
fn record_shared(cache: &Cache, key: &Hash, shared: &SharedTree) {
    cache.record_stage_with_detail(
        NAME,
        key,
        &serde_json::to_string(&shared.record).unwrap_or_default(),
        &serde_json::to_string(&shared.files).unwrap_or_default(),
    );
}

/// A tree's record and file list as kept in the machine store beside the
/// tree (`deps/KEY/tree.json`), from which a project's stage record is
/// made without installing anything.
#[derive(Debug, Serialize, Deserialize)]
struct SharedTree {
    record: Record,
    files: Vec<RecordedFile>,
    /// Set when the tree is kept as the zip it was fetched as (then the
    /// files' times are 0 and `tree/` is absent). Machine-store only:
    /// never taken from, nor sent to, the remote store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    zip: Option<TreeZipRecord>,
}

/// A dependency tree kept as its zip of compressed entries, as fetched
/// from the remote store: every entry was checked on arrival (name, header,
/// content hash through a full inflate) and its raw record's digest kept
/// here, so a later raw copy out of it is checked like one out of a reuse
/// store, without unpacking ~5,000 files into the store first.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TreeZipRecord {
    /// Its file name in the key directory (`tree-SETTINGS16.zip`).
    file: String,
    /// The archive settings its entries were compressed with.
    #[serde(with = "crate::entry::hash_hex")]
    settings: Hash,
    /// Size and mtime of the file when checked.
    size: u64,
    mtime_ns: i64,
    /// Each entry's raw-record digest (hex), in the order of `files`.
    raw: Vec<String>,
}

/// A fresh directory in the store's `deps/` to build a tree in before it
/// is renamed into place, after clearing dead builds' leftovers there.
fn staging_dir(deps_dir: &Path, context: &'static str) -> Result<tempfile::TempDir, DepsError> {
    let io = DepsError::io;
    fs_err::create_dir_all(deps_dir).map_err(io(context))?;
    crate::store::remove_dead_temporaries(deps_dir);
    let dir = tempfile::Builder::new()
        .prefix(&crate::store::temp_prefix())
        .tempdir_in(deps_dir)
        // tempfile's error names the path.
        .map_err(io(context))?;
    crate::store::lease(dir.path());
    Ok(dir)
}

/// The entries of a machine-store tree at their paths under `tree/`.
fn at_tree(root: &Path, key: &Hash, files: &[RecordedFile]) -> Vec<Entry> {
    let tree = tree_dir(root, key);
    files
        .iter()
        .map(|f| Entry {
            name: f.name.clone(),
            path: tree.join(&f.name),
            hash: f.hash,
            size: f.size,
            executable: f.executable,
        })
        .collect()
}

/// The zip a tree is kept as, if it is still the file that was checked
/// and holds entries for these archive settings.
fn tree_zip_of(
    root: &Path,
    key: &Hash,
    shared: &SharedTree,
    settings: &crate::archive::Settings,
) -> Option<crate::archive::TreeZip> {
    let z = shared.zip.as_ref()?;
    if z.settings != settings.id() || z.raw.len() != shared.files.len() || !safe_name(&z.file) {
        return None;
    }
    let path = key_dir(root, key).join(&z.file);
    let m = std::fs::metadata(&path).ok()?;
    if !m.is_file() || m.len() != z.size || crate::entry::mtime_ns(&m) != z.mtime_ns {
        return None;
    }
    let entries = shared
        .files
        .iter()
        .zip(&z.raw)
        .map(|(f, raw)| {
            Some(crate::cache::PackedEntry {
                store: String::new(),
                name: f.name.clone(),
                content_hash: f.hash,
                executable: f.executable,
                settings: z.settings,
                raw_hash: Hash::from_hex(raw).ok()?,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(crate::archive::TreeZip::new(path, entries))
}

/// A machine-store tree's entries, if it can be packaged: installed and
/// unchanged (by stat; its kept zip, if any, copied from, a damaged entry
/// compressed from the installed file), or not installed but kept as a
/// checked zip for these settings. The flag says whether it is installed.
fn usable(
    root: &Path,
    key: &Hash,
    shared: &SharedTree,
    settings: &crate::archive::Settings,
) -> Option<(Vec<Entry>, Option<crate::archive::TreeZip>, bool)> {
    let tree = tree_dir(root, key);
    if tree.is_dir() {
        // Installed: packaged only as installed. A tree changed behind
        // lbuild's back is installed again, not packaged around (an entry
        // its zip fails would be read from the changed file).
        let entries = still_installed(&tree, &shared.files)?;
        return Some((entries, tree_zip_of(root, key, shared, settings), true));
    }
    let zip = tree_zip_of(root, key, shared, settings)?;
    Some((at_tree(root, key, &shared.files), Some(zip), false))
}

/// Whether a tree's record leaves room for a kept zip for these settings:
/// none kept yet, or one for these settings that no longer matches its
/// record (two builds raced to keep it): made again. A zip kept for other
/// settings stays.
fn may_keep(shared: &SharedTree, settings: &crate::archive::Settings) -> bool {
    shared
        .zip
        .as_ref()
        .is_none_or(|z| z.settings == settings.id())
}

/// For a tree installed in the machine store and recorded in the project
/// under `digest`: its kept zip (usable for this plan's settings), and
/// whether to keep one after packaging. Reads the tree's record only when
/// a zip is there and the tree was `adopted` by this build (one directory
/// listing otherwise): a project that packaged this tree before copies
/// its entries out of its own reuse store, and an edit build should not
/// parse the tree's record (~1 MB for 4,600 files) for nothing.
fn installed_tree_zip(
    plan: &Plan,
    store: &MachineStore,
    key: &Hash,
    digest: &Hash,
    adopted: bool,
) -> (Option<crate::archive::TreeZip>, Option<KeepTree>) {
    let root = store.root();
    let any_zip = std::fs::read_dir(key_dir(root, key)).is_ok_and(|rd| {
        rd.flatten().any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with("tree-") && name.ends_with(".zip")
        })
    });
    let keep = |kept| KeepTree { key: *key, kept };
    if !any_zip {
        return (None, Some(keep(false)));
    }
    if !adopted {
        return (None, None);
    }
    let (Some(shared), Ok(settings)) = (
        read_shared(root, key),
        crate::stages::package::settings(plan),
    ) else {
        return (None, None);
    };
    // Another tree under this key (installed again since): its zip pairs
    // its own files with their compressed entries, not this project's.
    if shared.record.digest != *digest {
        return (None, None);
    }
    match tree_zip_of(root, key, &shared, &settings) {
        Some(z) => (Some(z), Some(keep(true))),
        None => (None, may_keep(&shared, &settings).then_some(keep(false))),
    }
}

/// The tree of `key` in the machine store, if one is there.
fn read_shared(root: &Path, key: &Hash) -> Option<SharedTree> {
    let text = std::fs::read_to_string(key_dir(root, key).join(TREE_RECORD)).ok()?;
    serde_json::from_str(&text).ok()
}

/// What [`install`] left in the store.
struct Installed {
    ran: bool,
    shared: SharedTree,
    entries: Vec<Entry>,
    unmatched_excludes: Vec<String>,
}

/// The deps key: everything that can change the installed tree (see the
/// module docs), each input also listed for `lbuild -v`.
fn stage_key(
    plan: &Plan,
    deps: &DepsPlan,
    reqs: &requirements::Requirements,
    installer: &Installer,
    target: Target,
    cache: &mut Cache,
    explain: bool,
) -> crate::Result<KeyBuilder> {
    let mut key = KeyBuilder::new(NAME, explain);
    key.add("normalize", NORMALIZE_VERSION)
        .add("target", target.describe())
        .add("installer", &installer.version);
    for f in &reqs.files {
        let name = relative(&plan.project_dir, &f.path);
        key.add(&format!("requirements {name}"), f.hash.to_hex());
        // Recorded, not hashed: for "requirements.txt changed (x 1 → 2)".
        key.note(&format!("pins {name}"), || {
            crate::explain::pinned_lines(&std::fs::read_to_string(&f.path).unwrap_or_default())
        });
    }
    for o in &reqs.index_options {
        key.add("requirements option", keyed_secret(o));
    }
    if let Some(l) = &deps.lock {
        let mut groups: Vec<String> = l
            .groups
            .iter()
            .map(|g| normalize::canonical_name(g))
            .collect();
        groups.sort();
        groups.dedup();
        let mut extras: Vec<String> = l
            .extras
            .iter()
            .map(|g| normalize::canonical_name(g))
            .collect();
        extras.sort();
        extras.dedup();
        key.add("lock groups", groups.join(","))
            .add("lock extras", extras.join(","))
            .add("lock install", LOCK_INSTALL_VERSION);
        add_local_packages(&mut key, cache, plan, l)?;
    }
    // As written (relative find_links stay relative: the key does not
    // change when the project moves); local directories' listings follow.
    let raw = deps;
    if let Some(url) = &raw.index_url {
        key.add("index_url", keyed_secret(url));
    }
    for url in &raw.extra_index_urls {
        key.add("extra_index_url", keyed_secret(url));
    }
    for link in &raw.find_links {
        let written = match link {
            FindLinks::Url(u) => u.clone(),
            FindLinks::Dir(d) => relative_path(&plan.project_dir, d)
                .to_string_lossy()
                .into_owned(),
        };
        key.add("find_links", keyed_secret(&written));
    }
    key.add("no_index", raw.no_index);
    for var in installer.index_env_vars() {
        if let Some(v) = std::env::var_os(var) {
            key.add(var, keyed_secret(&v.to_string_lossy()));
        }
    }
    // Local find-links (paths and `file:` URLs), manifest first.
    let local_links = raw
        .find_links
        .iter()
        .filter_map(|l| match l {
            FindLinks::Dir(d) => Some(d.clone()),
            // A `file:` URL is a local directory too.
            FindLinks::Url(u) => requirements::local_link(u, &plan.project_dir),
        })
        .chain(reqs.local_find_links.iter().cloned());
    for dir in local_links {
        add_listing(&mut key, cache, &plan.project_dir, &dir)?;
    }
    add_local_artifacts(&mut key, cache, &plan.project_dir, &reqs.local_artifacts)?;
    let mut exclude: Vec<String> = deps
        .exclude
        .iter()
        .map(|n| normalize::canonical_name(n))
        .collect();
    exclude.sort();
    exclude.dedup();
    key.add("exclude", exclude.join(","));
    Ok(key)
}

/// Installs into a temporary directory of the machine store, normalises
/// it, hashes it and writes its record beside it, then renames the whole
/// key directory into place in one step: a failure at any point leaves
/// nothing under the key, and a reader never sees a tree without its
/// record. When another build put the same key in place first, its tree is
/// used and ours dropped (same key, same files); a reinstall (the tree was
/// found changed) swaps the old one out.
#[allow(clippy::too_many_arguments)]
fn install(
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
    for item in std::fs::read_dir(tmp.path())
        .into_iter()
        .flatten()
        .flatten()
    {
        if item.file_name() != "tree" {
            let _ = std::fs::remove_file(item.path());
        }
    }
    let files = walk::files_under(&staging, &staging, &staging, &[], |_| true)?;
    let (entries, _) = hash_entries(cache, files)?;
    let recorded: Vec<RecordedFile> = entries
        .iter()
        .map(|e| {
            let mtime_ns = std::fs::metadata(&e.path)
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

/// Renames a staged key directory (`tree/` and its record) into place in
/// the store. When another build put the same key in place first, its tree
/// is used and ours dropped (same key, same files); with `replace` (the
/// tree was found changed) the old one is swapped out. Returns the tree's
/// record and its entries at their final paths.
fn publish(
    root: &Path,
    staged: &Path,
    key: &Hash,
    shared: SharedTree,
    entries: Vec<Entry>,
    replace: bool,
) -> crate::Result<(SharedTree, Vec<Entry>)> {
    let io = DepsError::io;
    let final_dir = key_dir(root, key);
    let at_final = |files: &[RecordedFile]| at_tree(root, key, files);
    drop(entries);
    if replace && final_dir.exists() {
        let aside = root
            .join("deps")
            .join(format!(".tmp-{}-old", std::process::id()));
        let _ = fs_err::remove_dir_all(&aside);
        fs_err::rename(&final_dir, &aside)
            .map_err(io("cannot move the changed deps tree aside"))?;
        let _ = std::fs::remove_dir_all(&aside);
    }
    match std::fs::rename(staged, &final_dir) {
        Ok(()) => {
            let entries = at_final(&shared.files);
            Ok((shared, entries))
        }
        Err(e) if final_dir.join(TREE_RECORD).is_file() => {
            // Another build installed the same key first: use its tree.
            let _ = std::fs::remove_dir_all(staged);
            let theirs = read_shared(root, key).ok_or_else(|| DepsError::Io {
                context: "cannot use the deps tree another build installed",
                source: std::io::Error::new(e.kind(), format!("{}: {e}", final_dir.display())),
            })?;
            let entries = at_final(&theirs.files);
            Ok((theirs, entries))
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(staged);
            Err(DepsError::Io {
                context: "cannot move the installed deps tree into place",
                source: std::io::Error::new(
                    e.kind(),
                    format!("{} -> {}: {e}", staged.display(), final_dir.display()),
                ),
            }
            .into())
        }
    }
}

/// The names of a tree's objects in the remote store: its record (files,
/// hashes, modes; no times) and its files as compressed entries for these
/// archive settings.
pub fn remote_names(key: &Hash, settings: &crate::archive::Settings) -> (String, String) {
    let hex = key.to_hex();
    (
        format!("deps/{hex}.json"),
        format!("deps/{hex}-{}.zip", &settings.id().to_hex()[..16]),
    )
}

/// A file name from a fetched record: relative, `/`-separated, no `..`.
fn safe_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('/')
        && name
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
        && !name.contains('\0')
}

/// The tree of `key` from the remote store: its record, then its zip of
/// compressed entries, streamed to a file in the machine store. The
/// record is checked against its digest, and every entry of the zip
/// against the record (name, the header lbuild writes, content hash by a
/// full inflate) before the tree is published: kept as that zip (see
/// [`TreeZipRecord`]), not unpacked, since the package is made by copying
/// its entries raw. None when the remote store does not have it, is down,
/// or sent something that does not verify (with a warning).
fn fetch_remote(
    remote: &dyn RemoteStore,
    plan: &Plan,
    store: &MachineStore,
    key: &Hash,
    reporter: &Reporter,
) -> crate::Result<Option<SharedTree>> {
    let settings = crate::stages::package::settings(plan)?;
    let (json_name, zip_name) = remote_names(key, &settings);
    let deps_dir = store.deps_dir();
    let bad = |why: &str| {
        reporter.warn(format!(
            "remote cache object {zip_name} {why}; discarded, installing locally"
        ));
        Ok(None)
    };
    // Signed (or read with trust = "bucket") before anything else is read
    // from it: nothing unsigned reaches the machine store.
    let (json, facts) =
        match crate::remote::objects::fetch_record(remote, &json_name, &deps_dir, reporter) {
            Ok(Some(got)) => got,
            Ok(None) => return Ok(None),
            Err(why) => {
                reporter.warn(format!("remote cache object {json_name} {why}"));
                return Ok(None);
            }
        };
    let Ok(mut shared) = serde_json::from_slice::<SharedTree>(&json) else {
        return bad("has an unreadable record");
    };
    // What the machine store knows about its own copy is never taken
    // from the bucket.
    shared.zip = None;
    let listed: Vec<Entry> = shared
        .files
        .iter()
        .map(|f| Entry {
            name: f.name.clone(),
            path: PathBuf::new(),
            hash: f.hash,
            size: f.size,
            executable: f.executable,
        })
        .collect();
    // A tree no zip may hold (Lambda's unzipped quota) is not worth
    // fetching: installing says what is wrong with it, if anything.
    if listed.iter().map(|e| e.size).sum::<u64>() > crate::limits::UNZIPPED_LIMIT {
        return bad("lists more bytes than Lambda unpacks");
    }
    if shared.record.files != listed.len()
        || crate::entry::entries_digest(&listed) != shared.record.digest
        || !listed.iter().all(|e| safe_name(&e.name))
        || !listed
            .windows(2)
            .all(|w| w[0].name.as_bytes() < w[1].name.as_bytes())
    {
        return bad("has a record that does not match its digest");
    }
    let io = DepsError::io;
    let tmp = staging_dir(&deps_dir, "cannot fetch dependencies")?;
    let id = settings.id();
    let file = format!("tree-{}.zip", &id.to_hex()[..16]);
    let zip_path = tmp.path().join(&file);
    match crate::remote::objects::fetch_tree_zip(remote, &zip_name, facts, &zip_path, reporter) {
        Ok(true) => {}
        Ok(false) => return Ok(None),
        Err(why) => return bad(&why),
    }
    let raw = match crate::archive::verify_tree_zip(&zip_path, &listed, &settings) {
        Ok(raw) => raw,
        Err(Some(name)) => {
            return bad(&format!(
                "holds {name} with other bytes than its content hash"
            ));
        }
        Err(None) => return bad("does not hold the files its record lists"),
    };
    let meta = fs_err::metadata(&zip_path).map_err(io("cannot fetch dependencies"))?;
    for f in &mut shared.files {
        f.mtime_ns = 0;
    }
    shared.zip = Some(TreeZipRecord {
        file,
        settings: id,
        size: meta.len(),
        mtime_ns: crate::entry::mtime_ns(&meta),
        raw: raw.iter().map(|h| h.to_hex().to_string()).collect(),
    });
    fs_err::write(
        tmp.path().join(TREE_RECORD),
        serde_json::to_string(&shared).unwrap_or_default(),
    )
    .map_err(io("cannot record the fetched deps tree"))?;
    let staged = tmp.keep();
    publish(store.root(), &staged, key, shared, Vec::new(), false).map(|(shared, _)| Some(shared))
}

/// After a build that wrote a zip (read-write mode): puts the tree of
/// `key` in the remote store unless it is there, as its record (times
/// left out) and a zip of its files written by lbuild's own writer from
/// the machine store's compressed entries (so nothing is compressed
/// again). Best effort.
pub fn upload_remote(
    remote: &dyn RemoteStore,
    plan: &Plan,
    store: &MachineStore,
    key: &Hash,
    entries: &[Entry],
    reporter: &Reporter,
) -> crate::Result<bool> {
    let settings = crate::stages::package::settings(plan)?;
    let (json_name, zip_name) = remote_names(key, &settings);
    // Known to be there (uploaded, or seen): no request at all.
    let marker = key_dir(store.root(), key).join(format!(
        "remote-{}",
        blake3::hash(format!("{}\n{zip_name}", remote.config().url).as_bytes()).to_hex()
    ));
    if marker.exists() {
        return Ok(false);
    }
    match remote.exists(&zip_name, reporter) {
        Some(false) => {}
        Some(true) => {
            let _ = std::fs::write(&marker, "");
            return Ok(false);
        }
        None => return Ok(false),
    }
    let Some(mut shared) = read_shared(store.root(), key) else {
        return Ok(false);
    };
    // A tree kept as the zip it was fetched as is sent as it is (every
    // entry was checked on arrival, and is checked again by whoever
    // fetches it); an installed one is zipped by lbuild's writer from the
    // machine store's compressed entries.
    let kept = tree_zip_of(store.root(), key, &shared, &settings);
    shared.zip = None;
    for f in &mut shared.files {
        f.mtime_ns = 0;
    }
    let written;
    let zip_path = match &kept {
        Some(z) => z.path(),
        None => {
            let Ok(file) = tempfile::NamedTempFile::new() else {
                return Ok(false);
            };
            if crate::archive::write_zip(file.as_file(), entries, &settings, &[store]).is_err() {
                return Ok(false);
            }
            written = file;
            written.path()
        }
    };
    // The record names the zip's digest and size, and is signed with the
    // key this build was given (if any): one signature covers both.
    let Ok(json) = crate::remote::objects::seal_record(
        &remote.config().trust,
        &json_name,
        serde_json::to_value(&shared).unwrap_or_default(),
        zip_path,
    ) else {
        return Ok(false);
    };
    // The zip first: a record without its zip is never used.
    let done = remote.put_file(&zip_name, zip_path, reporter)
        && remote.put_many(vec![(json_name, json)], reporter) > 0;
    if done {
        let _ = std::fs::write(&marker, "");
    }
    Ok(done)
}

/// After a build that packaged the installed tree of `key` (`entries`,
/// without any layer prefix): keeps the tree in the machine store also as
/// its zip of compressed entries (`deps/KEY/tree-SETTINGS16.zip`, raw
/// digests in `tree.json`), copied raw out of the project's reuse store
/// just written, so nothing is compressed again; a second project with
/// the same tree then copies every dependency entry out of it. Written
/// under a temporary name and renamed, the record after the zip, so a
/// concurrent build sees the old record or the new one, never a partial
/// file. Best effort: a failure is one warning.
///
/// `package` is the package stage's details: a kept zip this build used
/// is made again when an entry was rejected (it may be the one damaged).
pub fn keep_tree_zip(
    plan: &Plan,
    store: &MachineStore,
    cache: &Cache,
    keep: KeepTree,
    entries: &[Entry],
    package: &serde_json::Value,
    reporter: &Reporter,
) {
    let rejected = package["rejected"].as_u64().unwrap_or(0) > 0;
    if keep.kept && !rejected {
        return;
    }
    let key = &keep.key;
    if let Err(why) = try_keep_tree_zip(plan, store, cache, key, entries, keep.kept) {
        reporter.warn(format!(
            "could not keep the dependency tree as a zip in {} ({why}); the zip is fine, another project with these dependencies compresses them again",
            key_dir(store.root(), key).display()
        ));
    }
}

/// With `again`, a kept zip that still matches its record by stat is
/// replaced too (its bytes did not verify).
fn try_keep_tree_zip(
    plan: &Plan,
    store: &MachineStore,
    cache: &Cache,
    key: &Hash,
    entries: &[Entry],
    again: bool,
) -> Result<(), String> {
    let root = store.root();
    let dir = key_dir(root, key);
    let digest = crate::entry::entries_digest(entries);
    // Only for the tree these entries are (its record may have been
    // replaced since, or the tree trimmed by gc).
    let current = |shared: &SharedTree| shared.record.digest == digest;
    let Some(shared) = read_shared(root, key).filter(current) else {
        return Ok(());
    };
    let settings = crate::stages::package::settings(plan).map_err(|e| e.to_string())?;
    if (!again && tree_zip_of(root, key, &shared, &settings).is_some())
        || !may_keep(&shared, &settings)
    {
        return Ok(());
    }
    let wanted: Vec<(Hash, bool)> = entries.iter().map(|e| (e.hash, e.executable)).collect();
    let packed = cache
        .packed_lookup(&plan.store_file, &wanted)
        .map_err(|e| e.to_string())?;
    let reuse =
        crate::archive::ReuseStore::new(&plan.cache_dir, packed, &settings, &plan.store_file);
    crate::store::remove_dead_temporaries(&dir);
    let tmp = tempfile::Builder::new()
        .prefix(&crate::store::temp_prefix())
        .suffix(".zip")
        .tempfile_in(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    crate::store::lease(tmp.path());
    let mut chain: Vec<&dyn crate::archive::EntrySource> = Vec::new();
    if let Some(r) = &reuse {
        chain.push(r);
    }
    chain.push(store);
    let written = crate::archive::write_zip(tmp.as_file(), entries, &settings, &chain)
        .map_err(|e| e.to_string())?;
    if written.packed.len() != shared.files.len()
        || !written
            .packed
            .iter()
            .zip(&shared.files)
            .all(|(p, f)| p.name == f.name && p.content_hash == f.hash)
    {
        return Ok(());
    }
    let raw = written
        .packed
        .iter()
        .map(|p| p.raw_hash.to_hex().to_string())
        .collect();
    let _ = std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644));
    let file = format!("tree-{}.zip", &settings.id().to_hex()[..16]);
    let path = dir.join(&file);
    tmp.persist(&path)
        .map_err(|e| format!("{}: {}", path.display(), e.error))?;
    let meta = fs_err::metadata(&path).map_err(|e| e.to_string())?;
    // Read again just before it is replaced: another build may have
    // replaced the tree meanwhile.
    let Some(mut shared) = read_shared(root, key).filter(current) else {
        return Ok(());
    };
    shared.zip = Some(TreeZipRecord {
        file,
        settings: settings.id(),
        size: meta.len(),
        mtime_ns: crate::entry::mtime_ns(&meta),
        raw,
    });
    let json = serde_json::to_vec(&shared).map_err(|e| e.to_string())?;
    store
        .put_bytes(&dir.join(TREE_RECORD), &json)
        .map_err(|e| e.to_string())
}

/// Bump when what a lock turns into (the pinned file, the installer's
/// flags) changes.
const LOCK_INSTALL_VERSION: u32 = 1;

/// What the key and the pinning warning need from a lockfile: the file by
/// its bytes (groups, extras and target join the key beside it); from a
/// pyproject.toml, only the dependency lists it reads.
fn lock_requirements(
    lock: &crate::manifest::LockPlan,
) -> Result<requirements::Requirements, DepsError> {
    let hash = if lock.kind == crate::manifest::LockKind::Pyproject {
        blake3::hash(lock::pyproject_key(lock)?.as_bytes())
    } else {
        blake3::hash(&requirements::read_regular_file(&lock.path, None)?)
    };
    Ok(requirements::Requirements {
        files: vec![requirements::RequirementsFile {
            path: lock.path.clone(),
            hash,
        }],
        ..Default::default()
    })
}

/// `pyproject = ...`: the dependency lists, markers evaluated for the
/// target, resolved by the installer now (not pinned: a warning says so).
#[allow(clippy::too_many_arguments)]
fn install_pyproject(
    lock: &crate::manifest::LockPlan,
    installer: &Installer,
    target: Target,
    index_args: &[String],
    staging: &Path,
    scratch: &Path,
    plan: &Plan,
    reporter: &Reporter,
) -> crate::Result<bool> {
    let (text, count) = lock::pyproject_requirements(lock, target)?;
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

/// Resolves the lock for the target, writes the pinned requirements (with
/// hashes when the lock records one for every package) into `scratch`, and
/// installs them with `--no-deps` (the lock already resolved everything).
#[allow(clippy::too_many_arguments)]
fn install_locked(
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
    if let Some(message) = lock::out_of_date(lock) {
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
    let mut selection = lock::select(lock, target)?;
    // The project root is never installed, whatever the lock calls it.
    selection
        .pinned
        .retain(|p| p.local.as_deref() != Some(plan.project_dir.as_path()));
    if selection.pinned.is_empty() {
        return Ok(false);
    }
    for p in selection.pinned.iter_mut().filter(|p| p.local.is_some()) {
        let spinner = reporter.spinner(&format!("building the path dependency {}", p.name));
        lock::build_local(p, lock, installer, index_args, scratch, &plan.project_dir)?;
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

/// The lock's path dependencies join the key by content (every file, as
/// the build copies them, through the fingerprint cache), so an edit in
/// one builds and installs it again. The project root never does.
fn add_local_packages(
    key: &mut KeyBuilder,
    cache: &mut Cache,
    plan: &Plan,
    lock: &crate::manifest::LockPlan,
) -> crate::Result<()> {
    for path in lock::local_paths(lock)? {
        if path == plan.project_dir {
            continue;
        }
        let label = format!(
            "local package {}",
            relative_path(&plan.project_dir, &path).display()
        );
        match fs_err::metadata(&path) {
            Ok(m) if m.is_dir() => {
                let files = lock::local_package_files(&path)?;
                let (entries, _) = hash_entries(cache, files)?;
                key.add(&label, entries.len());
                for e in &entries {
                    key.add(
                        &format!("  {}", e.name),
                        format!("{} {}", e.hash.to_hex(), e.executable),
                    );
                }
            }
            Ok(m) if m.is_file() => {
                let (entries, _) = hash_entries(cache, vec![(label.clone(), path.clone())])?;
                key.add(&label, entries[0].hash.to_hex());
            }
            _ => {
                key.add(&label, "missing");
            }
        }
    }
    Ok(())
}

/// The file list recorded with the tree of `key` (kept apart from the
/// record so that a cached build does not parse it).
fn recorded_files(cache: &Cache, key: &Hash) -> crate::Result<Option<Vec<RecordedFile>>> {
    Ok(cache
        .stage_detail(NAME, key)?
        .and_then(|d| serde_json::from_str(&d).ok()))
}

/// The recorded entries, if every file is still there as installed
/// (size, mtime, mode): a stat per file, no hashing.
fn still_installed(tree: &Path, files: &[RecordedFile]) -> Option<Vec<Entry>> {
    if !tree.is_dir() {
        return None;
    }
    files
        .iter()
        .map(|f| {
            let path = tree.join(&f.name);
            let m = std::fs::symlink_metadata(&path).ok()?;
            let same = m.is_file()
                && m.len() == f.size
                && crate::entry::mtime_ns(&m) == f.mtime_ns
                && (m.mode() & 0o111 != 0) == f.executable;
            same.then(|| Entry {
                name: f.name.clone(),
                path,
                hash: f.hash,
                size: f.size,
                executable: f.executable,
            })
        })
        .collect()
}

/// The manifest's index options as installer arguments (identical for uv
/// and pip). Relative `find_links` are relative to lambda.toml's directory.
fn index_args(deps: &DepsPlan) -> Vec<String> {
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

/// Local files named as requirements join the key by content (through
/// the fingerprint cache, so a no-op only stats them); a directory or a
/// missing path by what it is (the installer reports a missing one).
fn add_local_artifacts(
    key: &mut KeyBuilder,
    cache: &mut Cache,
    project_dir: &Path,
    artifacts: &[PathBuf],
) -> crate::Result<()> {
    let mut files = Vec::new();
    for path in artifacts {
        let name = relative(project_dir, path);
        match fs_err::metadata(path) {
            Ok(m) if m.is_file() => files.push((name, path.clone())),
            Ok(m) => {
                key.add(
                    &format!("local requirement {name}"),
                    requirements::file_kind(&m.file_type()),
                );
            }
            Err(_) => {
                key.add(&format!("local requirement {name}"), "missing");
            }
        }
    }
    let (files, _) = hash_entries(cache, files)?;
    for f in &files {
        key.add(&format!("local requirement {}", f.name), f.hash.to_hex());
    }
    Ok(())
}

/// The most entries a local find-links directory may hold: its listing is
/// read on every build (`--find-links /proc` or `/` must fail fast).
const FIND_LINKS_MAX_ENTRIES: usize = 10_000;
/// The most bytes of distributions in one find-links directory that are
/// hashed for the key (each hash is remembered, but the first build reads
/// them all).
const FIND_LINKS_MAX_BYTES: u64 = 4 << 30;

/// What installers take from a find-links directory.
fn is_distribution(name: &str) -> bool {
    [".whl", ".tar.gz", ".zip"]
        .iter()
        .any(|s| name.ends_with(s))
}

/// Adds what a local find-links path offers: for a directory, its
/// distributions (top level only, as installers read it: names and
/// content hashes); for a file (an HTML page of links), its content.
fn add_listing(
    key: &mut KeyBuilder,
    cache: &mut Cache,
    project_dir: &Path,
    path: &Path,
) -> crate::Result<()> {
    let shown = relative(project_dir, path);
    let label = format!("find-links {shown}");
    let refuse = |problem: String, hint: &str| DepsError::Refused {
        message: format!("find-links {}: {problem}", path.display()),
        hint: hint.to_string(),
    };
    let Ok(meta) = fs_err::metadata(path) else {
        key.add(&label, "missing");
        return Ok(());
    };
    if meta.is_file() {
        if meta.len() > requirements::MAX_FILE_BYTES {
            return Err(refuse(
                format!(
                    "a page of links larger than {} MiB",
                    requirements::MAX_FILE_BYTES >> 20
                ),
                "point find_links at a directory of wheels or a small HTML page of links",
            )
            .into());
        }
        let (page, _) = hash_entries(cache, vec![(shown, path.to_path_buf())])?;
        key.add(&label, page[0].hash.to_hex());
        return Ok(());
    }
    if !meta.is_dir() {
        return Err(refuse(
            format!("it is {}", requirements::file_kind(&meta.file_type())),
            "find_links takes a directory of wheels, a page of links, or a URL",
        )
        .into());
    }
    let too_big =
        "point find_links at a directory that holds only the wheels this function installs";
    let rd = fs_err::read_dir(path).map_err(DepsError::io("cannot list a find-links directory"))?;
    let mut files = Vec::new();
    let mut bytes = 0u64;
    for (i, item) in rd.enumerate() {
        if i == FIND_LINKS_MAX_ENTRIES {
            return Err(refuse(
                format!(
                    "more than {FIND_LINKS_MAX_ENTRIES} entries, more than lbuild lists on every build"
                ),
                too_big,
            )
            .into());
        }
        let item = item.map_err(DepsError::io("cannot list a find-links directory"))?;
        let name = item.file_name();
        let Some(name) = name.to_str().filter(|n| is_distribution(n)) else {
            continue;
        };
        let file = item.path();
        // Followed, as installers follow it; a fifo or device is skipped.
        match fs_err::metadata(&file) {
            Ok(m) if m.is_file() => bytes += m.len(),
            _ => continue,
        }
        if bytes > FIND_LINKS_MAX_BYTES {
            return Err(refuse(
                format!(
                    "its distributions exceed {} GiB, more than lbuild hashes for the deps key",
                    FIND_LINKS_MAX_BYTES >> 30
                ),
                too_big,
            )
            .into());
        }
        files.push((name.to_string(), file));
    }
    files.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let (entries, _) = hash_entries(cache, files)?;
    key.add(&label, entries.len());
    for e in &entries {
        key.add(&format!("  {}", e.name), e.hash.to_hex());
    }
    Ok(())
}

/// A value for the key whose readable form (`lbuild -v`) hides URL
/// credentials; the hash still covers the whole value.
fn keyed_secret(value: &str) -> String {
    let redacted = redact_url_credentials(value);
    if redacted == value {
        value.to_string()
    } else {
        let h = blake3::hash(value.as_bytes());
        format!("{redacted} #{}", &h.to_hex()[..16])
    }
}

/// `https://user:token@host/x` -> `https://***@host/x` (each URL in `s`).
fn redact_url_credentials(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c == '/' || c.is_whitespace())
            .unwrap_or(tail.len());
        match tail[..end].rfind('@') {
            Some(at) => {
                out.push_str("***");
                out.push_str(&tail[at..end]);
            }
            None => out.push_str(&tail[..end]),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// `path` relative to `base` when inside it, for stable, readable keys.
fn relative(base: &Path, path: &Path) -> String {
    path.strip_prefix(base)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

/// What this stage reads, for `lbuild watch`: requirements.txt and the
/// files it includes (read by the stage's own reader; edits re-plan, as
/// they may name other files), local `find_links` directories (manifest
/// and requirements files), and the local wheels the requirements name.
/// When the requirements cannot be read, the build says why; the top file
/// is watched until it is fixed.
pub fn watch_roots(plan: &Plan) -> Vec<crate::watch_root::WatchRoot> {
    use crate::manifest::normalize;
    use crate::watch_root::{WatchInputs, WatchRoot};
    let Some(deps) = &plan.deps else {
        return Vec::new();
    };
    let in_dir = |file: &Path, inputs: WatchInputs| WatchRoot {
        dir: file.parent().map(Path::to_path_buf).unwrap_or_default(),
        recursive: false,
        skip: Vec::new(),
        inputs,
    };
    let (files, mut links, artifacts) = match &deps.lock {
        // The lockfile itself (pyproject.toml is read for the out-of-date
        // check only when installing; the key never reads it).
        Some(l) => (vec![l.path.clone()], Vec::new(), Vec::new()),
        None => match requirements::read(&deps.requirements) {
            Ok(r) => (
                r.files.into_iter().map(|f| f.path).collect(),
                r.local_find_links,
                r.local_artifacts,
            ),
            Err(_) => (vec![deps.requirements.clone()], Vec::new(), Vec::new()),
        },
    };
    links.extend(
        deps.find_links
            .iter()
            .filter_map(|l| l.dir().map(Path::to_path_buf)),
    );
    let mut roots: Vec<WatchRoot> = files
        .iter()
        .map(|f| {
            let f = normalize(f);
            in_dir(
                &f,
                WatchInputs::Files {
                    files: vec![f.clone()],
                    replan: true,
                },
            )
        })
        .collect();
    roots.extend(artifacts.iter().map(|a| {
        let a = normalize(a);
        in_dir(
            &a,
            WatchInputs::Files {
                files: vec![a.clone()],
                replan: false,
            },
        )
    }));
    // A lock's path dependencies: every file in them is keyed.
    if let Some(l) = &deps.lock {
        let everything = |glob: Option<&str>| {
            let mut b = globset::GlobSetBuilder::new();
            if let Some(g) = glob.and_then(|g| globset::Glob::new(g).ok()) {
                b.add(g);
            }
            b.build().unwrap_or_else(|_| globset::GlobSet::empty())
        };
        for dir in lock::local_paths(l).unwrap_or_default() {
            let dir = normalize(&dir);
            if dir == normalize(&plan.project_dir) {
                continue;
            }
            roots.push(if dir.is_dir() {
                WatchRoot {
                    dir: dir.clone(),
                    recursive: true,
                    skip: Vec::new(),
                    inputs: WatchInputs::Globs {
                        base: dir,
                        include: everything(Some("**")),
                        exclude: everything(None),
                    },
                }
            } else {
                in_dir(
                    &dir,
                    WatchInputs::Files {
                        files: vec![dir.clone()],
                        replan: false,
                    },
                )
            });
        }
    }
    roots.extend(links.iter().map(|dir| WatchRoot {
        dir: normalize(dir),
        recursive: false,
        skip: Vec::new(),
        inputs: WatchInputs::Listing,
    }));
    roots
}

/// The directory of deps key `key` in a store rooted at `root`: the tree
/// (`tree/`) and its record ([`TREE_RECORD`]).
pub fn key_dir(root: &Path, key: &Hash) -> PathBuf {
    root.join("deps").join(key.to_hex().as_str())
}

/// Where the tree installed for deps key `key` lives.
pub fn tree_dir(root: &Path, key: &Hash) -> PathBuf {
    key_dir(root, key).join("tree")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_reach_the_readable_key() {
        assert_eq!(
            redact_url_credentials("--index-url https://me:s3cret@pypi.example.com/simple"),
            "--index-url https://***@pypi.example.com/simple"
        );
        assert_eq!(
            redact_url_credentials("https://pypi.org/simple"),
            "https://pypi.org/simple"
        );
        let k = keyed_secret("https://me:s3cret@host/simple");
        assert!(!k.contains("s3cret") && k.starts_with("https://***@host/simple #"));
        assert_ne!(k, keyed_secret("https://me:other@host/simple"));
    }
}
