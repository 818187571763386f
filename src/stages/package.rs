//! The package stage: every entry of deps, sources and config into one
//! reproducible zip, written atomically to the output path.
//!
//! Owns the merge (one archive path, one claimant), the archive settings
//! (level, the single DOS time), the zip written to a temp file (which
//! [`Outputs`] puts in place with the build's others at its end) and the
//! reuse store
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

use super::outputs::Outputs;
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
    pub(crate) stat: (i64, u64, i64),
}

pub(crate) fn stat_of(meta: &std::fs::Metadata) -> (i64, u64, i64) {
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
    let tmp = outputs.temp_zip(out)?;

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
    outputs.queue(tmp, key.hash, info.clone());
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
