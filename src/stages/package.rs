//! The package stage: every entry of deps, sources and config into one
//! reproducible zip, written atomically to the output path.
//!
//! Owns the merge (one archive path, one claimant), the archive settings
//! (level, the single DOS time), the atomic write (each zip to a temp
//! file, all of a build's flushed and renamed into place at its end:
//! [`Outputs`]) and the reuse store
//! (`.lbuild/store.zip`, a hard link to the last zip built, indexed in the
//! cache so unchanged entries are copied, not deflated again), and the
//! chain of [`EntrySource`]s the writer asks before compressing (the reuse
//! stores, a kept tree zip, the machine store, the remote store's bulk
//! fetch into it).

use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Entry, KeyBuilder, StageReport, Status};
use crate::Error;
use crate::archive::{self, EntrySource, ReuseStore, Settings};
use crate::cache::{Cache, Hash};
use crate::context::BuildContext;
use crate::manifest::{MtimeMode, Plan};
use crate::report::Reporter;

pub(crate) const NAME: &str = "package";

/// The zip a build produced (or found already in place).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ZipInfo {
    pub path: PathBuf,
    pub sha256: String,
    pub code_sha256: String,
    pub size: u64,
    pub entries: usize,
    /// Sum of the entries' uncompressed sizes: what Lambda's quota counts.
    #[serde(default)]
    pub unzipped: u64,
    /// (mtime_ns, inode, ctime_ns) of the file when recorded: a match
    /// means it is still the file lbuild wrote. The ctime moves on any
    /// write, even one that restores size and mtime (`touch -r`).
    stat: (i64, u64, i64),
}

fn stat_of(meta: &std::fs::Metadata) -> (i64, u64, i64) {
    (
        crate::entry::mtime_ns(meta),
        meta.ino(),
        crate::entry::ctime_ns(meta),
    )
}

/// Entries of one input stage, with the stage's name for error messages.
pub(crate) struct Input<'a> {
    pub stage: &'static str,
    pub entries: &'a [Entry],
}

/// The package key and what it was made from. The deps tree enters by its
/// digest (a function of its entries, recorded at install), so a build
/// whose package is cached never loads or stats the tree.
pub(crate) struct PackageKey {
    hash: Hash,
    explain: Vec<String>,
    /// The inputs, when the key was built keeping them (`crate::explain`).
    inputs: Option<super::Inputs>,
    settings: Settings,
    started: Instant,
}

/// The archive settings of a plan (level and the one DOS time).
pub(crate) fn settings(plan: &Plan) -> crate::Result<Settings> {
    Ok(Settings {
        level: plan.output.level,
        time: archive::dos_time_from_unix(zip_time(plan)?),
    })
}

impl PackageKey {
    pub(crate) fn inputs(&self) -> Option<super::Inputs> {
        self.inputs.clone()
    }
}

pub(crate) fn key(
    plan: &Plan,
    deps_digest: Option<Hash>,
    sources: &[Entry],
    config: &[Entry],
    explain: bool,
) -> crate::Result<PackageKey> {
    let started = Instant::now();
    let settings = Settings {
        level: plan.output.level,
        time: archive::dos_time_from_unix(zip_time(plan)?),
    };
    let mut key = KeyBuilder::new(NAME, explain);
    // Two artifacts with the same inputs write different zips: each has
    // its own record.
    let output = crate::manifest::relative_path(&plan.project_dir, &plan.output.path);
    key.add_backend()
        .add("output", output.display())
        .add("prefix", plan.archive_prefix())
        .add("level", settings.level)
        .add(
            "time",
            format!(
                "{:04x}{:04x}",
                settings.time.datepart(),
                settings.time.timepart()
            ),
        )
        .add(
            "deps",
            deps_digest
                .map(|d| d.to_hex().to_string())
                .unwrap_or_default(),
        )
        .add("sources", sources.len())
        .add_entries(sources)
        .add("config", config.len())
        .add_entries(config);
    let (hash, explain) = key.finish();
    Ok(PackageKey {
        hash,
        explain,
        inputs: key.inputs(),
        settings,
        started,
    })
}

/// The zip recorded under `key`, if it is still at the output path.
pub(crate) fn cached(
    plan: &Plan,
    cache: &Cache,
    key: &PackageKey,
) -> crate::Result<Option<(ZipInfo, StageReport)>> {
    let recorded = cache
        .stage_output(NAME, &key.hash)?
        .and_then(|s| serde_json::from_str::<ZipInfo>(&s).ok());
    let Some(recorded) = recorded else {
        return Ok(None);
    };
    let before = recorded.stat;
    let Some(info) = still_in_place(recorded, &plan.output.path) else {
        return Ok(None);
    };
    if info.stat != before {
        // Same bytes, new inode or mtime (copied back, touched): remember
        // the new stat so the next build need not hash the zip again.
        cache.record_stage(
            NAME,
            &key.hash,
            &serde_json::to_string(&info).unwrap_or_default(),
        );
    }
    let details = serde_json::json!({"entries": info.entries});
    let report = StageReport::new(
        NAME,
        Status::Cached,
        &key.hash,
        key.started,
        details,
        key.explain.clone(),
    );
    Ok(Some((info, report)))
}

/// Writes the zip for `key` from `inputs` (deps, sources, config) to a
/// temp file beside the output, and hands it to `outputs`, which moves it
/// into place when the build ends ([`Outputs::publish`]).
///
/// The order is what makes a failed build leave the output as it was: the
/// zip is written to the temp file, the reuse store is refreshed from it
/// (best effort), and only at the end of the build is it flushed to disk
/// and renamed into place, the last steps that can fail. What follows (the
/// directory fsync, the cache record) can only make the next build slower.
pub(crate) fn build(
    plan: &Plan,
    cache: &mut Cache,
    cx: &BuildContext,
    key: PackageKey,
    inputs: &[Input<'_>],
    tree: Option<&archive::TreeZip>,
    outputs: &Outputs,
) -> crate::Result<(ZipInfo, StageReport)> {
    let reporter = cx.reporter;
    let entries = merge(inputs)?;
    let settings = key.settings;
    let out = &plan.output.path;
    let out_dir = out.parent().unwrap_or(Path::new("."));
    fs_err::create_dir_all(out_dir)
        .map_err(Error::io("cannot create the output directory", out_dir))?;
    // Named after the output and this process: several functions (and
    // several builds of one function, with other cache directories) may
    // share an output directory; only temp files of dead builds are removed.
    let tmp_prefix = temp_prefix(out);
    outputs.prepare(out_dir);
    let tmp = tempfile::Builder::new()
        .prefix(&format!("{tmp_prefix}{}-", std::process::id()))
        .suffix(".tmp")
        .tempfile_in(out_dir)
        .map_err(Error::io("cannot create a temporary file in", out_dir))?;

    let store_path = plan.cache_dir.join(&plan.store_file);
    let reuse = ReuseStore::new(
        &plan.cache_dir,
        cache.packed_lookup(
            &plan.store_file,
            &settings.id(),
            &entries
                .iter()
                .map(|e| (e.hash, e.executable))
                .collect::<Vec<_>>(),
        )?,
        &settings,
        &plan.store_file,
    );
    let spinner = reporter.spinner("packaging");
    spinner.set_message(format!("{} entries", entries.len()));
    let machine = &cx.store;
    let remote = cx.remote.as_deref();
    let remote_entries = remote.map(|r| RemoteEntries::new(r, machine, reporter));
    let chain = sources(reuse.as_ref(), tree, machine, remote_entries.as_ref());
    archive::ENTRIES_DONE.store(0, std::sync::atomic::Ordering::Relaxed);
    let writing = std::sync::atomic::AtomicBool::new(true);
    let written = std::thread::scope(|scope| {
        // "1200/4652 entries" on the progress line while the zip is written.
        let ticker = spinner.is_shown().then(|| {
            scope.spawn(|| {
                while writing.load(std::sync::atomic::Ordering::Relaxed) {
                    let done = archive::ENTRIES_DONE.load(std::sync::atomic::Ordering::Relaxed);
                    spinner.set_message(format!("{done}/{} entries", entries.len()));
                    std::thread::park_timeout(std::time::Duration::from_millis(200));
                }
            })
        });
        let written = archive::write_zip(tmp.as_file(), &entries, &settings, &chain);
        writing.store(false, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = ticker {
            t.thread().unpark();
        }
        written
    })
    .map_err(|e| match e {
        // A write that failed (disk full) is about the file being
        // written: name it, with the OS's words, not the zip crate's.
        archive::ArchiveError::Write(io)
        | archive::ArchiveError::Zip(zip::result::ZipError::Io(io)) => {
            Error::io(crate::error::WRITE_ZIP, tmp.path())(io)
        }
        archive::ArchiveError::DamagedTree { path } => {
            // Its key directory goes: the next build fetches or installs
            // the tree again instead of finding the same damage.
            if let Some(dir) = path.parent() {
                let _ = fs_err::remove_dir_all(dir);
            }
            archive::ArchiveError::DamagedTree { path }.into()
        }
        other => other.into(),
    })?;
    drop(spinner);

    // Hashed while it was written, unless the writer had to seek back.
    let (sha256, size) = match written.sha256 {
        Some(hashed) => hashed,
        None => sha256_of(tmp.path())?,
    };
    // tempfile makes 0600 files; a deployment artifact is world-readable.
    fs_err::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644))
        .map_err(Error::io("cannot set permissions on", tmp.path()))?;
    // Its flush to disk (at the end of the build) then mostly waits for
    // writes already done.
    start_writeback(tmp.as_file());

    if let Err(why) = refresh_store(
        cache,
        tmp.path(),
        &store_path,
        &plan.store_file,
        &written.packed,
    ) {
        reporter.warn(format!(
            "could not update the reuse store ({why}); the zip is fine, the next build compresses everything again"
        ));
    }

    // After a successful build: what the remote store lacked, from the
    // machine store (read-write mode only).
    let remote_missing = remote_entries
        .as_ref()
        .map(RemoteEntries::missing)
        .unwrap_or_default();
    let mut uploaded = 0;
    if let Some(r) = remote.filter(|r| r.can_write()) {
        // Each entry sealed: signed over its name and exact bytes when
        // this build has a signing key.
        let trust = &r.config().trust;
        let items: Vec<(String, Vec<u8>)> = remote_missing
            .iter()
            .filter_map(|(rel, path)| {
                Some((rel.clone(), trust.seal(rel, &fs_err::read(path).ok()?)))
            })
            .collect();
        let n = items.len();
        if r.put_many(items, reporter) > 0 {
            uploaded = n;
        }
    }

    let info = ZipInfo {
        path: out.clone(),
        code_sha256: base64::engine::general_purpose::STANDARD.encode(sha256),
        sha256: crate::entry::hex(&sha256),
        size,
        entries: entries.len(),
        unzipped: entries.iter().map(|e| e.size).sum(),
        // Stated when it is in place (the rename moves the ctime).
        stat: (0, 0, 0),
    };
    outputs.queue(Pending {
        tmp: tmp.into_temp_path(),
        key: key.hash,
        info: info.clone(),
    });
    let details = serde_json::json!({
        "entries": written.entries,
        "reused": written.reused,
        "compressed": written.compressed,
        "rejected": written.rejected,
        "from_store": written.from_store,
        "store_rejected": written.store_rejected,
        "from_tree": written.from_tree,
    });
    let mut details = details;
    if let Some(r) = remote {
        details["remote_missing"] = serde_json::json!(remote_missing.len());
        details["uploaded"] = serde_json::json!(uploaded);
        details["remote_down"] = serde_json::json!(r.is_down());
    }
    let report = StageReport::new(
        NAME,
        Status::Ran,
        &key.hash,
        key.started,
        details,
        key.explain,
    );
    Ok((info, report))
}

/// Smaller entries are neither fetched from nor uploaded to the remote
/// store one by one: deflating them takes less than a round trip, and an
/// edit-build loop with a remote store configured should not wait on the
/// network for its one changed file. (Dependency files of any size travel
/// in their tree's zip.)
const REMOTE_MIN_ENTRY: u64 = 64 * 1024;

/// The chain of sources the zip writer asks before it compresses an entry,
/// in order: the reuse stores (this artifact's and its workspace's), the
/// dependency tree's kept zip (a tree fetched from the remote store is
/// packaged from it, not unpacked), the machine store, the remote store
/// (which fetches into the machine store).
fn sources<'a>(
    reuse: Option<&'a ReuseStore>,
    tree: Option<&'a archive::TreeZip>,
    machine: &'a crate::store::MachineStore,
    remote: Option<&'a RemoteEntries<'a>>,
) -> Vec<&'a dyn EntrySource> {
    let mut chain: Vec<&dyn EntrySource> = Vec::with_capacity(4);
    if let Some(r) = reuse {
        chain.push(r);
    }
    if let Some(t) = tree.filter(|t| !t.entries.is_empty()) {
        chain.push(t);
    }
    chain.push(machine);
    if let Some(r) = remote {
        chain.push(r);
    }
    chain
}

/// The remote store as an entry source: before the writer looks anything
/// up in the machine store, it fetches the compressed entries that no
/// reuse store holds and the machine store lacks, verifies each (a bad one
/// is discarded with a warning) and puts it in the machine store, where
/// the writer then finds it. Remembers the objects the remote store lacked
/// (name, machine-store path), to upload after the build.
struct RemoteEntries<'a> {
    remote: &'a dyn crate::remote::RemoteStore,
    machine: &'a crate::store::MachineStore,
    reporter: &'a Reporter,
    missing: std::sync::Mutex<Vec<(String, PathBuf)>>,
}

impl<'a> RemoteEntries<'a> {
    fn new(
        remote: &'a dyn crate::remote::RemoteStore,
        machine: &'a crate::store::MachineStore,
        reporter: &'a Reporter,
    ) -> Self {
        RemoteEntries {
            remote,
            machine,
            reporter,
            missing: Default::default(),
        }
    }

    fn missing(&self) -> Vec<(String, PathBuf)> {
        std::mem::take(&mut *self.missing.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl EntrySource for RemoteEntries<'_> {
    fn kind(&self) -> archive::SourceKind {
        archive::SourceKind::Store
    }

    fn prefetch(&self, entries: &[&Entry], settings: &Settings) {
        let (remote, machine, reporter) = (self.remote, self.machine, self.reporter);
        let id = settings.id();
        let mut seen = std::collections::HashSet::new();
        let wanted: Vec<(&Entry, PathBuf)> = entries
            .iter()
            .copied()
            .filter(|e| e.size >= REMOTE_MIN_ENTRY)
            .filter(|e| seen.insert((e.hash, e.executable)))
            .map(|e| (e, machine.entry_path(&e.hash, e.executable, &id)))
            .filter(|(_, path)| !path.exists())
            .collect();
        let rels: Vec<String> = wanted
            .iter()
            .map(|(e, _)| {
                format!(
                    "entries/{}",
                    crate::store::entry_name(&e.hash, e.executable, &id)
                )
            })
            .collect();
        let asked: Vec<crate::remote::objects::EntryWanted> = wanted
            .iter()
            .zip(&rels)
            .map(|((e, path), rel)| crate::remote::objects::EntryWanted {
                rel: rel.clone(),
                size: e.size,
                path: path.clone(),
            })
            .collect();
        // Signed (or trust = "bucket") objects only reach the machine
        // store; the writer then checks each against its content hash.
        let put = crate::remote::objects::fetch_entries(remote, &asked, reporter);
        if remote.is_down() {
            return;
        }
        let missing = asked
            .into_iter()
            .zip(put)
            .filter(|(_, put)| !put)
            .map(|(w, _)| (w.rel, w.path))
            .collect();
        *self.missing.lock().unwrap_or_else(|p| p.into_inner()) = missing;
    }
}

/// `.lbuild-NAME.zip-`: what every temp file of this output starts with
/// (then the writing process's pid, `-`, a random part, `.tmp`).
fn temp_prefix(out: &Path) -> String {
    format!(
        ".lbuild-{}-",
        out.file_name().unwrap_or_default().to_string_lossy()
    )
}

/// What one build (one `lbuild` run, or one watch rebuild) owes its
/// outputs, done once for all its artifacts rather than once per artifact:
/// reading each output directory for dead temp files, flushing the new
/// zips to disk, renaming them into place, and the fsync that makes the
/// renames durable. Shared by the artifacts of a workspace.
///
/// The zips are published together when the build ends ([`Outputs::publish`]):
/// one flush of every new zip costs about what one zip's own flush did
/// (measured on ext4: a cold workspace of 40 functions over a warm store
/// spent 29 of its 156 ms in one fsync per zip). A zip is never renamed
/// before it is on disk, so after a power cut each output is its old zip
/// or its new one, never a torn one; a build killed before the end leaves
/// every output as it was, and its temp files (named after its dead pid)
/// are removed by the next build ([`Outputs::prepare`]).
#[derive(Debug, Default)]
pub(crate) struct Outputs {
    /// Directories already cleaned of dead temp files.
    prepared: std::sync::Mutex<std::collections::HashSet<PathBuf>>,
    /// The zips written, in the order their artifacts were built.
    pending: std::sync::Mutex<Vec<Pending>>,
}

/// A zip written to its temp file beside the output, not yet flushed nor
/// in place. Dropped (a failed build, a publish that failed), its temp
/// file is removed.
#[derive(Debug)]
struct Pending {
    tmp: tempfile::TempPath,
    /// The package key it is recorded under once in place.
    key: Hash,
    info: ZipInfo,
}

impl Outputs {
    /// Before the first temp file of this build in `dir`, and for an
    /// output found already in place: removes the temp zips of dead
    /// builds there (a build killed before it published, followed by a
    /// build with nothing to write, would otherwise leave them forever).
    pub(crate) fn prepare(&self, dir: &Path) {
        let first = lock(&self.prepared).insert(dir.to_path_buf());
        if first {
            remove_dead_temp_files(dir);
        }
    }

    /// Keeps a written zip for [`Outputs::publish`]. One built again for
    /// the same output in this build (an artifact retried after its cache
    /// was found corrupt) replaces the first.
    fn queue(&self, zip: Pending) {
        let mut pending = lock(&self.pending);
        pending.retain(|p| p.info.path != zip.info.path);
        pending.push(zip);
    }

    /// Puts the zips of this build in place: every temp file flushed to
    /// disk, then each renamed over its output and recorded in `cache`
    /// (the build's cache), then one fsync per output directory (a failure
    /// there is a warning: the zips are in place). Returns the outputs
    /// whose zip could not be flushed or renamed, each with its error:
    /// those stay their old zip (the temp file is removed), the others are
    /// published all the same.
    ///
    /// Until the directory fsync a power cut may undo a rename, which
    /// leaves that output its old zip, as if its build had not run; the
    /// cache's record of the new zip is checked against the file
    /// (`still_in_place`) before it is trusted. Measured on ext4 a
    /// directory fsync costs 0.4-6 ms.
    pub(crate) fn publish(
        &self,
        cache: Option<&Cache>,
        reporter: &Reporter,
    ) -> Vec<(PathBuf, Error)> {
        let pending = std::mem::take(&mut *lock(&self.pending));
        let mut failed = Vec::new();
        // All flushed before any is renamed: the file system commits its
        // journal for the first and finds the others' changes already
        // committed (each zip's writeback was started when it was written).
        let flushed: Vec<Pending> = pending
            .into_iter()
            .filter_map(
                |p| match std::fs::File::open(&p.tmp).and_then(|f| f.sync_all()) {
                    Ok(()) => Some(p),
                    Err(e) => {
                        let error = Error::io(crate::error::WRITE_ZIP, p.tmp.to_path_buf())(e);
                        failed.push((p.info.path.clone(), error));
                        None
                    }
                },
            )
            .collect();
        let mut dirs = std::collections::BTreeSet::new();
        for Pending { tmp, key, mut info } in flushed {
            let out = info.path.clone();
            if let Err(e) = tmp.persist(&out) {
                let error = Error::io("cannot move the new zip into place at", &out)(e.error);
                failed.push((out, error));
                continue;
            }
            dirs.insert(out.parent().unwrap_or(Path::new(".")).to_path_buf());
            // Stat after the store's link and the rename (both move the
            // ctime).
            if let Some(cache) = cache
                && let Ok(meta) = fs_err::metadata(&out)
            {
                info.stat = stat_of(&meta);
                cache.record_stage(
                    NAME,
                    &key,
                    &serde_json::to_string(&info).unwrap_or_default(),
                );
            }
        }
        for dir in dirs {
            if let Err(e) = fs_err::File::open(&dir).and_then(|d| d.sync_all()) {
                reporter.warn(format!("cannot flush the output directory to disk: {e}"));
            }
        }
        failed
    }
}

/// Starts writing `file`'s dirty pages to disk without waiting for them
/// (Linux's `sync_file_range`; elsewhere nothing): the build goes on with
/// the next artifact while the disk works. Only a hint: the fsync in
/// [`Outputs::publish`] is what makes the zip durable.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn start_writeback(file: &std::fs::File) {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is open (borrowed from `file` for the call)
    // and the call touches no memory of this process.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &std::fs::File) {}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Removes the temp zips in `dir` (of any output: several functions may
/// share an output directory) whose writer is dead (a killed build). A
/// temp file of a live process is never touched: it may be another build
/// of the same project, with another cache directory and so another lock,
/// writing its zip right now.
///
/// One named after this process is a dead build's too: this build has
/// no temp file in `dir` yet (see [`Outputs::prepare`]), and a build in a
/// container is often the same low pid every run (pid 1 as the
/// entrypoint), so its killed predecessor's temp files carry its own pid.
fn remove_dead_temp_files(dir: &Path) {
    let Ok(read) = fs_err::read_dir(dir) else {
        return;
    };
    let me = std::process::id();
    for entry in read.flatten() {
        let name = entry.file_name();
        let Some(pid) = temp_file_pid(&name.to_string_lossy()) else {
            continue;
        };
        if pid == me || !crate::process::process_alive(pid) {
            let _ = fs_err::remove_file(entry.path());
        }
    }
}

/// The writer's pid of a temp zip named `.lbuild-NAME.zip-PID-RANDOM.tmp`
/// (NAME may hold `-`; tempfile's random part is alphanumeric).
fn temp_file_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(".lbuild-")?.strip_suffix(".tmp")?;
    let mut parts = rest.rsplitn(3, '-');
    let random = parts.next()?;
    let pid = parts.next()?;
    let output = parts.next()?;
    let random_ok = !random.is_empty() && random.bytes().all(|b| b.is_ascii_alphanumeric());
    (random_ok && !output.is_empty())
        .then(|| pid.parse().ok())
        .flatten()
}

/// All entries sorted by archive name; an archive path claimed twice is an
/// error naming both claimants.
fn merge(inputs: &[Input<'_>]) -> crate::Result<Vec<Entry>> {
    let mut all: Vec<(&'static str, &Entry)> = inputs
        .iter()
        .flat_map(|i| i.entries.iter().map(move |e| (i.stage, e)))
        .collect();
    all.sort_by(|a, b| a.1.name.as_bytes().cmp(b.1.name.as_bytes()));
    for w in all.windows(2) {
        if w[0].1.name == w[1].1.name {
            return Err(Error::Input {
                message: format!(
                    "archive path {:?} is claimed twice: by {} ({}) and by {} ({})",
                    w[0].1.name,
                    w[0].0,
                    w[0].1.path.display(),
                    w[1].0,
                    w[1].1.path.display()
                ),
                hint:
                    "exclude one of them (sources exclude, config files, or dependencies exclude)"
                        .into(),
            });
        }
    }
    Ok(all.into_iter().map(|(_, e)| e.clone()).collect())
}

/// The instant every entry is stamped with, in seconds since the epoch.
fn zip_time(plan: &Plan) -> crate::Result<i64> {
    let from_env = || -> crate::Result<Option<i64>> {
        match plan.env.source_date_epoch.as_deref() {
            Some(v) if !v.trim().is_empty() => {
                v.trim().parse::<i64>().map(Some).map_err(|_| Error::Input {
                    message: format!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds"),
                    hint: "set it to an integer, e.g. $(git log -1 --format=%ct), or unset it"
                        .into(),
                })
            }
            _ => Ok(None),
        }
    };
    match plan.output.mtime {
        // Unset: honour the reproducible-builds convention when present.
        None => Ok(from_env()?.unwrap_or(0)),
        Some(MtimeMode::Fixed) => Ok(0),
        Some(MtimeMode::SourceDateEpoch) => from_env()?.ok_or_else(|| Error::Input {
            message: "[output] mtime = \"source-date-epoch\" but SOURCE_DATE_EPOCH is not set"
                .into(),
            hint: "export SOURCE_DATE_EPOCH (seconds since 1970), or use mtime = \"fixed\"".into(),
        }),
        Some(MtimeMode::Git) => git_commit_time(&plan.project_dir),
    }
}

fn git_commit_time(dir: &Path) -> crate::Result<i64> {
    let out = std::process::Command::new("git")
        .args(["log", "-1", "--format=%ct"])
        .current_dir(dir)
        .output();
    let text = out
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    text.parse().map_err(|_| Error::Input {
        message: format!(
            "[output] mtime = \"git\" but {} has no git commit to read a time from",
            dir.display()
        ),
        hint: "commit first, or use mtime = \"fixed\"".into(),
    })
}

/// The recorded zip if the file at `path` is still it: same size, mtime,
/// inode and ctime, or else the same bytes.
fn still_in_place(mut info: ZipInfo, path: &Path) -> Option<ZipInfo> {
    if info.path != path {
        return None;
    }
    let meta = fs_err::metadata(path).ok()?;
    let stat = stat_of(&meta);
    if meta.len() == info.size && stat == info.stat {
        return Some(info);
    }
    // Touched, copied over or edited in place: trust it only if its bytes
    // are still ours.
    let (sha, _) = sha256_of(path).ok()?;
    let sha = crate::entry::hex(&sha);
    (sha == info.sha256).then(|| {
        info.stat = stat;
        info
    })
}

fn sha256_of(path: &Path) -> crate::Result<([u8; 32], u64)> {
    let mut f = std::fs::File::open(path).map_err(Error::io("cannot read", path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(Error::io("cannot read", path))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        h.update(&buf[..n]);
    }
    Ok((h.finalize().into(), size))
}

/// Makes the zip just written the reuse store for the next build: a hard
/// link (no extra disk), or a copy across file systems, staged as
/// `store.zip.new` and renamed. On failure nothing staged is left behind
/// and the previous store and its index stay (they still agree); the caller
/// warns, since a missing store only makes the next build slower.
fn refresh_store(
    cache: &mut Cache,
    zip: &Path,
    store: &Path,
    store_name: &str,
    packed: &[crate::cache::PackedEntry],
) -> Result<(), String> {
    let staging = store.with_extension("zip.new");
    let staged = (|| -> std::io::Result<()> {
        match fs_err::remove_file(&staging) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        if fs_err::hard_link(zip, &staging).is_err() {
            fs_err::copy(zip, &staging)?;
        }
        fs_err::rename(&staging, store)
    })();
    if let Err(e) = staged {
        let _ = fs_err::remove_file(&staging);
        return Err(e.to_string());
    }
    cache.replace_packed(store_name, packed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The zips of a build are put in place at its end, each flushed first;
    /// one that cannot be renamed stays its old self (its temp file goes)
    /// and the others are published and recorded all the same.
    #[test]
    fn publish_puts_every_zip_in_place_but_one_that_cannot_be_moved() {
        let dir = tempfile::tempdir().unwrap();
        let out_dir = dir.path().join("dist");
        fs_err::create_dir_all(out_dir.join("blocked.zip/inside")).unwrap();
        fs_err::write(out_dir.join("b.zip"), "old b").unwrap();
        let cache = Cache::open(&dir.path().join(".lbuild")).unwrap();
        let outputs = Outputs::default();
        let write = |name: &str, bytes: &str, key: u8| {
            let out = out_dir.join(name);
            outputs.prepare(&out_dir);
            let tmp = tempfile::Builder::new()
                .prefix(&format!("{}{}-", temp_prefix(&out), std::process::id()))
                .suffix(".tmp")
                .tempfile_in(&out_dir)
                .unwrap();
            fs_err::write(tmp.path(), bytes).unwrap();
            start_writeback(tmp.as_file());
            let info = ZipInfo {
                path: out,
                sha256: String::new(),
                code_sha256: String::new(),
                size: bytes.len() as u64,
                entries: 1,
                unzipped: 1,
                stat: (0, 0, 0),
            };
            outputs.queue(Pending {
                tmp: tmp.into_temp_path(),
                key: Hash::from_bytes([key; 32]),
                info,
            });
        };
        write("a.zip", "first a", 1);
        write("b.zip", "new b", 2);
        write("blocked.zip", "never", 3);
        // Built again in the same build (a retried artifact): the last wins.
        write("a.zip", "new a", 4);
        // Nothing is in place before the build's end.
        assert!(!out_dir.join("a.zip").exists());
        assert_eq!(
            fs_err::read_to_string(out_dir.join("b.zip")).unwrap(),
            "old b"
        );

        let reporter = Reporter::new(crate::report::Mode::Quiet, false);
        let failed = outputs.publish(Some(&cache), &reporter);
        assert_eq!(failed.len(), 1, "{failed:?}");
        assert_eq!(failed[0].0, out_dir.join("blocked.zip"));
        assert!(
            failed[0]
                .1
                .to_string()
                .contains("cannot move the new zip into place"),
            "{}",
            failed[0].1
        );
        assert_eq!(
            fs_err::read_to_string(out_dir.join("a.zip")).unwrap(),
            "new a"
        );
        assert_eq!(
            fs_err::read_to_string(out_dir.join("b.zip")).unwrap(),
            "new b"
        );
        assert!(out_dir.join("blocked.zip/inside").is_dir());
        let mut names: Vec<String> = fs_err::read_dir(&out_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["a.zip", "b.zip", "blocked.zip"], "temp files left");
        // Each zip in place is recorded with the stat it has there, so the
        // next build finds it without reading it; the others are not.
        for (key, name) in [(4, "a.zip"), (2, "b.zip")] {
            let recorded: ZipInfo = serde_json::from_str(
                &cache
                    .stage_output(NAME, &Hash::from_bytes([key; 32]))
                    .unwrap()
                    .unwrap(),
            )
            .unwrap();
            let meta = fs_err::metadata(out_dir.join(name)).unwrap();
            assert_eq!(recorded.stat, stat_of(&meta), "{name}");
        }
        for key in [1, 3] {
            let found = cache.stage_output(NAME, &Hash::from_bytes([key; 32]));
            assert!(found.unwrap().is_none(), "key {key}");
        }
        // Published once: a second call has nothing left to do.
        assert!(outputs.publish(Some(&cache), &reporter).is_empty());
    }

    /// A killed build in a container left temp zips under the pid the
    /// next build runs as (pid 1 again): they are a dead build's, removed;
    /// a live process's stay.
    #[test]
    fn temp_files_under_this_process_pid_are_a_dead_builds() {
        let dir = tempfile::tempdir().unwrap();
        let mine = format!(".lbuild-a.zip-{}-AbC1.tmp", std::process::id());
        let mut live = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let theirs = format!(".lbuild-b.zip-{}-XyZ2.tmp", live.id());
        fs_err::write(dir.path().join(&mine), "partial").unwrap();
        fs_err::write(dir.path().join(&theirs), "being written").unwrap();
        Outputs::default().prepare(dir.path());
        let left: Vec<_> = fs_err::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        live.kill().unwrap();
        live.wait().unwrap();
        assert_eq!(left, [theirs]);
    }

    #[test]
    fn temp_file_pid_reads_the_writer_of_any_outputs_temp_file() {
        let out = Path::new("dist/my-fn-2.zip");
        let name = format!("{}4242-AbC123.tmp", temp_prefix(out));
        assert_eq!(temp_file_pid(&name), Some(4242));
        assert_eq!(temp_file_pid(".lbuild-a.zip-17-x9.tmp"), Some(17));
        for other in [
            "my-fn-2.zip",
            ".lbuild-a.zip-17-x9",
            ".lbuild-a.zip-notapid-x9.tmp",
            ".lbuild-17-x9.tmp",
            ".lbuild-a.zip-17-x-9.tmp",
        ] {
            assert_eq!(temp_file_pid(other), None, "{other}");
        }
    }
}
