//! The deterministic zip writer: the reproducible-ZIP contract of SPEC.md.
//!
//! Owns everything that reaches the archive's bytes: entry metadata (one
//! DOS time, Unix "made by", 0o100644/0o100755, no extra fields), the
//! stored-if-not-smaller rule, compression on all cores with output in the
//! sorted order, and raw reuse of entries compressed by an earlier build.
//! It does not decide which files go in (stages do) nor where the zip ends
//! up (the package stage writes to a temp file and renames).
//!
//! Every entry reaches the output the same way, whether new or reused: as a
//! raw copy out of a zip we wrote ourselves (a one-entry zip made in memory
//! by a worker thread, or the store of the previous build). So the local
//! header, the central directory record and the data are produced by one
//! code path, and an incremental build cannot differ from a cold one.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::File;
use std::io::{Cursor, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

use sha2::{Digest, Sha256};

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipArchive, ZipWriter};

use crate::cache::{Hash, PackedEntry};
use crate::entry::Entry;
use crate::store::MachineStore;

/// Bumped whenever the bytes lbuild writes for the same inputs change.
/// Part of every stage key.
pub const FORMAT_VERSION: u32 = 3;

/// The deflate implementations and their exact versions (from Cargo.lock,
/// see build.rs): a different backend gives different bytes. libdeflate
/// compresses every entry up to [`STREAM_THRESHOLD`] as one buffer; zlib-rs
/// streams the larger ones.
pub const DEFLATE_BACKEND: &str = concat!(
    "libdeflate-sys ",
    env!("LBUILD_LIBDEFLATE_VERSION"),
    " + zlib-rs ",
    env!("LBUILD_ZLIB_RS_VERSION"),
    " above 32 MiB"
);

/// Uncompressed bytes that may be read and compressed ahead of the writer.
const IN_FLIGHT_BUDGET: u64 = 48 * 1024 * 1024;

/// Files up to this size are read whole and compressed by libdeflate (which
/// only takes whole buffers); larger ones are deflated as a stream by
/// zlib-rs into a temporary file, so memory stays bounded whatever one file
/// weighs (a bundled model, a large .so). 32 MiB keeps the shared libraries
/// of common packages (numpy's 25 MB OpenBLAS) on libdeflate, which makes
/// them smaller than zlib-rs does, while one entry in memory (its bytes and
/// its compressed bytes) stays under 64 MiB. Part of the format: a file's
/// size decides its compressor.
const STREAM_THRESHOLD: u64 = 32 * 1024 * 1024;

/// zlib-rs's highest level: the streamed path's level for lbuild levels
/// above it (libdeflate's 10..=12 have no zlib equivalent).
const ZLIB_MAX_LEVEL: u32 = 9;

/// What an entry costs of the in-flight budget: its bytes in memory.
fn budget_cost(size: u64) -> u64 {
    size.min(STREAM_THRESHOLD)
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} changed while the zip was being written")]
    ChangedDuringBuild { path: PathBuf },
    #[error("cannot write the zip: {0}")]
    Write(#[from] std::io::Error),
    #[error("zip format error: {0}")]
    Zip(#[from] zip::result::ZipError),
    /// An entry of a dependency tree kept as its zip ([`TreeZip`]) no
    /// longer matches the digest taken when it was checked, and its file
    /// was never unpacked.
    #[error("the dependency tree {path} is damaged")]
    DamagedTree { path: PathBuf },
}

impl ArchiveError {
    pub fn hint(&self) -> Option<String> {
        match self {
            ArchiveError::ChangedDuringBuild { .. } => {
                Some("run lbuild again (lbuild watch does so by itself)".into())
            }
            ArchiveError::DamagedTree { .. } => Some(
                "run lbuild again: the damaged tree was removed from the machine store and will be fetched or installed again".into(),
            ),
            _ => None,
        }
    }
}

/// Compression settings shared by every entry of one archive.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub level: u32,
    pub time: DateTime,
}

impl Settings {
    /// Identifies the bytes these settings produce, for the reuse store.
    pub fn id(&self) -> Hash {
        let mut h = blake3::Hasher::new();
        h.update(
            format!(
                "lbuild-format {FORMAT_VERSION}\n{DEFLATE_BACKEND}\nlevel {}\n",
                self.level
            )
            .as_bytes(),
        );
        h.update(&self.time.datepart().to_le_bytes());
        h.update(&self.time.timepart().to_le_bytes());
        h.finalize()
    }

    fn options(&self, executable: bool, method: CompressionMethod) -> SimpleFileOptions {
        let level = (method == CompressionMethod::Deflated)
            .then_some(self.level.min(ZLIB_MAX_LEVEL) as i64);
        SimpleFileOptions::default()
            .compression_method(method)
            .compression_level(level)
            .last_modified_time(self.time)
            .system(zip::System::Unix)
            .unix_permissions(if executable { 0o755 } else { 0o644 })
    }
}

/// Converts seconds since the Unix epoch (UTC) to a DOS date/time: clamped
/// to the DOS range (1980-01-01 .. 2107-12-31) and rounded down to an even
/// second, as the format can only hold those.
pub fn dos_time_from_unix(secs: i64) -> DateTime {
    const MIN: i64 = 315_532_800; // 1980-01-01T00:00:00Z
    const MAX: i64 = 4_354_819_198; // 2107-12-31T23:59:58Z
    let secs = secs.clamp(MIN, MAX);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let (hh, mm, ss) = (rem / 3600, (rem / 60) % 60, rem % 60);
    DateTime::from_date_and_time(
        y as u16,
        m as u8,
        d as u8,
        hh as u8,
        mm as u8,
        (ss - ss % 2) as u8,
    )
    .unwrap_or_default()
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Entries of an earlier build's zip that may be copied without deflating.
pub struct Store {
    /// The store zips (every artifact of a workspace keeps one).
    paths: Vec<PathBuf>,
    /// (content, executable) -> (index into `paths`, entry name, digest).
    by_content: HashMap<(Hash, bool), (usize, String, Hash)>,
    /// The same for a dependency tree's zip ([`TreeZip`]): second choice,
    /// after the reuse stores.
    tree: HashMap<(Hash, bool), (usize, String, Hash)>,
    /// Its index in `paths`.
    tree_path: Option<usize>,
}

impl Store {
    /// The stores in `dir` that `packed` names, restricted to entries
    /// written with `settings`: a file compressed for one artifact is
    /// copied, not compressed again, into any other. Where several stores
    /// hold an entry, `own` (this artifact's store) wins: an incremental
    /// build then opens one zip, not every artifact's.
    pub fn new(
        dir: &Path,
        packed: Vec<PackedEntry>,
        settings: &Settings,
        own: &str,
    ) -> Option<Store> {
        let id = settings.id();
        let mut paths: Vec<PathBuf> = Vec::new();
        let mut by_content = HashMap::new();
        let (mine, others): (Vec<PackedEntry>, Vec<PackedEntry>) = packed
            .into_iter()
            .filter(|p| p.settings == id)
            .partition(|p| p.store == own);
        for p in others.into_iter().chain(mine) {
            let path = dir.join(&p.store);
            let i = match paths.iter().position(|q| *q == path) {
                Some(i) => i,
                None if path.is_file() => {
                    paths.push(path);
                    paths.len() - 1
                }
                None => continue,
            };
            by_content.insert((p.content_hash, p.executable), (i, p.name, p.raw_hash));
        }
        (!by_content.is_empty()).then_some(Store {
            paths,
            by_content,
            tree: HashMap::new(),
            tree_path: None,
        })
    }

    /// `store` (if any) with a dependency tree's zip as second choice.
    pub fn with_tree(store: Option<Store>, tree: Option<&TreeZip>) -> Option<Store> {
        let Some(tree) = tree.filter(|t| !t.entries.is_empty()) else {
            return store;
        };
        let mut s = store.unwrap_or(Store {
            paths: Vec::new(),
            by_content: HashMap::new(),
            tree: HashMap::new(),
            tree_path: None,
        });
        s.paths.push(tree.path.clone());
        let i = s.paths.len() - 1;
        s.tree_path = Some(i);
        for p in &tree.entries {
            s.tree.insert(
                (p.content_hash, p.executable),
                (i, p.name.clone(), p.raw_hash),
            );
        }
        Some(s)
    }

    /// Whether the store holds an entry for this content and mode.
    pub fn has(&self, content: &Hash, executable: bool) -> bool {
        self.by_content.contains_key(&(*content, executable))
            || self.tree.contains_key(&(*content, executable))
    }
}

/// Where an entry of `e`'s content is in `map`'s zips: (zip, index, digest),
/// opening the zip (its central directory read) on first use.
fn locate(
    s: &Store,
    map: &HashMap<(Hash, bool), (usize, String, Hash)>,
    zips: &mut [Option<Option<ZipArchive<PReader>>>],
    e: &Entry,
) -> Option<(usize, usize, Hash)> {
    let (z, name, digest) = map.get(&(e.hash, e.executable))?;
    let zip = zips
        .get_mut(*z)?
        .get_or_insert_with(|| {
            File::open(&s.paths[*z])
                .ok()
                .and_then(|f| ZipArchive::new(PReader::new(f).ok()?).ok())
        })
        .as_ref()?;
    Some((*z, zip.index_for_name(name)?, *digest))
}

/// What writing the archive did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct WriteReport {
    pub entries: usize,
    /// Copied as raw compressed bytes from the store.
    pub reused: usize,
    /// Read and deflated (or stored) afresh.
    pub compressed: usize,
    /// Store entries whose bytes did not match their record: compressed again.
    pub rejected: usize,
    /// Copied out of the machine store (compressed by an earlier build of
    /// any project on this machine, or fetched from the remote store).
    pub from_store: usize,
    /// Machine-store entries that failed verification: compressed again.
    pub store_rejected: usize,
    /// Copied out of a dependency tree's zip ([`TreeZip`]).
    pub from_tree: usize,
    #[serde(skip)]
    pub packed: Vec<PackedEntry>,
    /// SHA-256 and size of the zip, hashed as it was written (None when the
    /// writer had to seek back, so the file must be read to hash it).
    #[serde(skip)]
    pub sha256: Option<([u8; 32], u64)>,
}

/// A compressed entry as a one-entry zip in memory, plus the digest of its
/// raw record (see [`raw_digest`]).
struct Prepared {
    mini_zip: MiniZip,
    digest: Hash,
    /// Found in the machine store (not compressed by this build).
    from_store: bool,
    /// A machine-store entry was there but did not verify.
    store_rejected: bool,
}

/// Where a compressed entry's one-entry zip lives.
enum MiniZip {
    Memory(Vec<u8>),
    /// An anonymous temporary file (entries above [`STREAM_THRESHOLD`]).
    File(File),
}

impl MiniZip {
    fn compressed_size(&mut self) -> Result<u64, ArchiveError> {
        Ok(match self {
            MiniZip::Memory(bytes) => ZipArchive::new(Cursor::new(&bytes[..]))?
                .by_index_raw(0)?
                .compressed_size(),
            MiniZip::File(file) => {
                file.rewind()?;
                ZipArchive::new(std::io::BufReader::new(&*file))?
                    .by_index_raw(0)?
                    .compressed_size()
            }
        })
    }

    fn digest(&mut self, buf: &mut [u8]) -> Result<Hash, ArchiveError> {
        match self {
            MiniZip::Memory(bytes) => raw_digest(
                &mut ZipArchive::new(Cursor::new(&bytes[..]))?.by_index_raw(0)?,
                buf,
            ),
            MiniZip::File(file) => {
                file.rewind()?;
                let digest = raw_digest(
                    &mut ZipArchive::new(std::io::BufReader::new(&*file))?.by_index_raw(0)?,
                    buf,
                );
                file.rewind()?;
                digest
            }
        }
    }

    /// Raw-copies the one entry into `zip` under `name`.
    fn copy_into<W: Write + Seek>(
        self,
        zip: &mut ZipWriter<W>,
        name: &str,
    ) -> Result<(), ArchiveError> {
        match self {
            MiniZip::Memory(bytes) => {
                let mut mini = ZipArchive::new(Cursor::new(bytes))?;
                zip.raw_copy_file_rename(mini.by_index_raw(0)?, name)?;
            }
            MiniZip::File(file) => {
                let mut mini = ZipArchive::new(std::io::BufReader::new(file))?;
                zip.raw_copy_file_rename(mini.by_index_raw(0)?, name)?;
            }
        }
        Ok(())
    }
}

/// Entries of the zip being written that are already in it, for the
/// packaging progress line. A process writes one zip at a time (workspace
/// artifacts build in turn), so one counter is enough.
pub static ENTRIES_DONE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Writes `entries` (already sorted by name) to `out`.
pub fn write_zip(
    out: &File,
    entries: &[Entry],
    settings: &Settings,
    store: Option<&Store>,
    machine: Option<&MachineStore>,
) -> Result<WriteReport, ArchiveError> {
    debug_assert!(
        entries
            .windows(2)
            .all(|w| w[0].name.as_bytes() < w[1].name.as_bytes())
    );
    // Store zips are opened (their central directory read) only when an
    // entry is found in them.
    let mut store_zips: Vec<Option<Option<ZipArchive<PReader>>>> = match store {
        Some(s) => s.paths.iter().map(|_| None).collect(),
        None => Vec::new(),
    };
    // Decide up front which entries come from a store, so the workers
    // compress only the rest.
    let mut reuse: Vec<Option<(usize, usize, Hash)>> = Vec::with_capacity(entries.len());
    for e in entries {
        reuse.push(store.and_then(|s| {
            locate(s, &s.by_content, &mut store_zips, e)
                .or_else(|| locate(s, &s.tree, &mut store_zips, e))
        }));
    }
    let jobs: Vec<usize> = (0..entries.len()).filter(|&i| reuse[i].is_none()).collect();

    let mut report = WriteReport {
        entries: entries.len(),
        ..WriteReport::default()
    };
    let pipeline = Pipeline::new(entries, &jobs);
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(jobs.len().max(1));

    let written = std::thread::scope(|scope| -> Result<(), ArchiveError> {
        for _ in 0..threads {
            scope.spawn(|| pipeline.work(settings, machine));
        }
        let result = (|| {
            let settings_id = settings.id();
            let mut buf = vec![0u8; DIGEST_BUF];
            let writer = HashingWriter::new(out)?;
            let discard = writer.discard_switch();
            let mut zip = ZipWriter::new(writer);
            let copied_all = (|| -> Result<(), ArchiveError> {
                for (i, e) in entries.iter().enumerate() {
                    ENTRIES_DONE.store(i, std::sync::atomic::Ordering::Relaxed);
                    let prepared = match reuse[i] {
                        Some(first) => {
                            // The reuse store's copy, else the tree's (also
                            // when the reuse store's did not verify).
                            let tree_path = store.and_then(|s| s.tree_path);
                            let mut candidate = Some(first);
                            let mut copied = false;
                            let mut tree_rejected = false;
                            while let Some((z, index, digest)) = candidate.take() {
                                let zip_in = store_zips[z]
                                    .as_mut()
                                    .and_then(Option::as_mut)
                                    .expect("reuse implies an open store");
                                if copy_if_intact(zip_in, index, digest, e, &mut zip, &mut buf)? {
                                    if Some(z) == tree_path {
                                        report.from_tree += 1;
                                    } else {
                                        report.reused += 1;
                                    }
                                    report.packed.push(packed(e, settings_id, digest));
                                    copied = true;
                                    break;
                                }
                                report.rejected += 1;
                                tree_rejected |= Some(z) == tree_path;
                                if Some(z) != tree_path
                                    && let Some(s) = store
                                {
                                    candidate = locate(s, &s.tree, &mut store_zips, e);
                                }
                            }
                            if copied {
                                continue;
                            }
                            match prepare_via(e, settings, &mut buf, machine) {
                                // Not unpacked: the damaged zip was its only copy.
                                Err(ArchiveError::Read { source, .. })
                                    if tree_rejected
                                        && source.kind() == std::io::ErrorKind::NotFound =>
                                {
                                    let s = store.expect("a tree implies a store");
                                    let path = s.paths[s.tree_path.expect("tree")].clone();
                                    return Err(ArchiveError::DamagedTree { path });
                                }
                                other => other?,
                            }
                        }
                        None => pipeline.take(i)?,
                    };
                    report.store_rejected += prepared.store_rejected as usize;
                    if prepared.from_store {
                        report.from_store += 1;
                    } else {
                        report.compressed += 1;
                    }
                    prepared.mini_zip.copy_into(&mut zip, &e.name)?;
                    report.packed.push(packed(e, settings_id, prepared.digest));
                }
                Ok(())
            })();
            if let Err(e) = copied_all {
                // Abandoned before it is dropped: its destructor would
                // finish it (and print its own error if that failed).
                discard.set(true);
                return Err(e);
            }
            let mut w = zip.finish()?;
            w.flush()?;
            report.sha256 = w.finish();
            Ok(())
        })();
        if result.is_err() {
            pipeline.abort();
        }
        result
    });
    written?;
    Ok(report)
}

fn packed(e: &Entry, settings_id: Hash, digest: Hash) -> PackedEntry {
    PackedEntry {
        store: String::new(),
        name: e.name.clone(),
        content_hash: e.hash,
        executable: e.executable,
        settings: settings_id,
        raw_hash: digest,
    }
}

/// Read buffer for [`raw_digest`], allocated once per thread, not per entry.
const DIGEST_BUF: usize = 256 * 1024;

/// Digest of an entry's raw record: its compressed bytes plus every header
/// fact a raw copy carries over (CRC, sizes, method, time, system, all 32
/// bits of the external attributes, the flags a copy keeps, comment and
/// extra fields). A store entry is reused only when this matches what was
/// recorded when it was written, so no corrupted byte of the store can reach
/// the zip. (The name is not copied: the copy is renamed, and the language
/// encoding flag is derived from the new name.)
fn raw_digest<R: Read>(
    file: &mut zip::read::ZipFile<'_, R>,
    buf: &mut [u8],
) -> Result<Hash, ArchiveError> {
    let mut h = raw_digest_header(file);
    loop {
        let n = file.read(buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize())
}

/// [`raw_digest`]'s hasher fed every header fact, before the data.
fn raw_digest_header<R: Read>(file: &zip::read::ZipFile<'_, R>) -> blake3::Hasher {
    /// Bit 11: derived from the copy's own name, not copied.
    const LANGUAGE_ENCODING: u16 = 1 << 11;
    let mut h = blake3::Hasher::new();
    h.update(&file.crc32().to_le_bytes());
    h.update(&file.compressed_size().to_le_bytes());
    h.update(&file.size().to_le_bytes());
    h.update(format!("{:?}", file.compression()).as_bytes());
    h.update(&file.unix_mode().unwrap_or(0).to_le_bytes());
    if let Some(t) = file.last_modified() {
        h.update(&t.datepart().to_le_bytes());
        h.update(&t.timepart().to_le_bytes());
    }
    h.update(&[u8::from(file.system()), file.encrypted() as u8]);
    h.update(&file.external_attributes().to_le_bytes());
    h.update(&(file.flags().as_u16() & !LANGUAGE_ENCODING).to_le_bytes());
    let comment = file.comment_raw();
    h.update(&(comment.len() as u64).to_le_bytes());
    h.update(comment);
    // Our own entries carry none; any extra field (whose bytes a copy would
    // carry) makes the record differ from what was recorded.
    let extra =
        file.extra_data_fields().count() as u64 + file.extra_data().map_or(0, |d| d.len() as u64);
    h.update(&extra.to_le_bytes());
    h
}

/// Raw-copies entry `index` of the store when its record is intact and
/// describes `e`; returns false (copying nothing) otherwise.
fn copy_if_intact<R: Read + Seek, W: Write + Seek>(
    store: &mut ZipArchive<R>,
    index: usize,
    digest: Hash,
    e: &Entry,
    zip: &mut ZipWriter<W>,
    buf: &mut [u8],
) -> Result<bool, ArchiveError> {
    let intact = match store.by_index_raw(index) {
        Ok(mut f) => f.size() == e.size && raw_digest(&mut f, buf).ok() == Some(digest),
        Err(_) => false,
    };
    if intact {
        zip.raw_copy_file_rename(store.by_index_raw(index)?, &e.name)?;
    }
    Ok(intact)
}

/// Reads, checks and compresses one entry into a one-entry zip: in memory
/// with libdeflate, or for a file above [`STREAM_THRESHOLD`] streamed by
/// zlib-rs into a temporary file. Stored when deflate does not make it
/// smaller (a rule on bytes alone).
fn prepare(e: &Entry, settings: &Settings, buf: &mut [u8]) -> Result<Prepared, ArchiveError> {
    prepare_streaming_above(e, settings, buf, STREAM_THRESHOLD)
}

/// [`prepare`] with the streaming threshold as a parameter (tests force
/// either path with it).
fn prepare_streaming_above(
    e: &Entry,
    settings: &Settings,
    buf: &mut [u8],
    threshold: u64,
) -> Result<Prepared, ArchiveError> {
    let mut mini_zip = if e.size <= threshold {
        let data = std::fs::read(&e.path).map_err(|source| ArchiveError::Read {
            path: e.path.clone(),
            source,
        })?;
        // The key was computed from the hash: bytes that differ now would
        // make the zip disagree with its key (and with a cold build).
        if blake3::hash(&data) != e.hash {
            return Err(ArchiveError::ChangedDuringBuild {
                path: e.path.clone(),
            });
        }
        let deflated = (settings.level > 0)
            .then(|| deflate_if_smaller(&data, settings.level))
            .flatten();
        MiniZip::Memory(one_entry_zip(e, settings, &data, deflated.as_deref()))
    } else {
        let method = if settings.level == 0 {
            CompressionMethod::Stored
        } else {
            CompressionMethod::Deflated
        };
        let mut mini_zip = MiniZip::File(stream_into_mini_zip(e, settings, method, buf)?);
        if method == CompressionMethod::Deflated && mini_zip.compressed_size()? >= e.size {
            mini_zip = MiniZip::File(stream_into_mini_zip(
                e,
                settings,
                CompressionMethod::Stored,
                buf,
            )?);
        }
        mini_zip
    };
    let digest = mini_zip.digest(buf)?;
    Ok(Prepared {
        mini_zip,
        digest,
        from_store: false,
        store_rejected: false,
    })
}

/// Entries below this size are compressed, never looked up in or put into
/// the machine store: creating a file costs more than deflating a few KiB
/// (measured on ext4: a cold build of the 4,600-file corpus took 2.3 s
/// instead of 1.0 s when every entry was also put in the store), while the
/// large files, a fraction of the count, carry most of the compression time.
pub const MACHINE_MIN_ENTRY: u64 = 64 * 1024;

/// [`prepare`], through the machine store: a verified entry found there is
/// used as it is; otherwise the entry is compressed and the result put
/// there (best effort: a failed write only costs a later build time).
fn prepare_via(
    e: &Entry,
    settings: &Settings,
    buf: &mut [u8],
    machine: Option<&MachineStore>,
) -> Result<Prepared, ArchiveError> {
    let Some(machine) = machine.filter(|_| e.size >= MACHINE_MIN_ENTRY) else {
        return prepare(e, settings, buf);
    };
    let path = machine.entry_path(&e.hash, e.executable, &settings.id());
    let mut store_rejected = false;
    if let Ok(file) = File::open(&path) {
        match open_stored_entry(file, e, settings, buf) {
            Some(p) => {
                crate::store::touch(&path);
                return Ok(p);
            }
            None => {
                store_rejected = true;
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    let mut p = prepare(e, settings, buf)?;
    p.store_rejected = store_rejected;
    let _ = match &mut p.mini_zip {
        MiniZip::Memory(bytes) => machine.put_bytes(&path, bytes),
        MiniZip::File(f) => machine.put_with(&path, |out| {
            f.rewind()?;
            std::io::copy(f, out)?;
            f.rewind()?;
            Ok(())
        }),
    };
    Ok(p)
}

fn open_stored_entry(
    mut file: File,
    e: &Entry,
    settings: &Settings,
    buf: &mut [u8],
) -> Option<Prepared> {
    let len = file.metadata().ok()?.len();
    let mut mini_zip = if e.size <= STREAM_THRESHOLD && len <= STREAM_THRESHOLD + 4096 {
        let mut bytes = Vec::with_capacity(len as usize);
        file.read_to_end(&mut bytes).ok()?;
        // Verified in this run already (fetched): the same bytes, and
        // their digest known.
        let known = VERIFIED
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&blake3::hash(&bytes))
            .copied();
        if let Some(digest) = known {
            return Some(Prepared {
                mini_zip: MiniZip::Memory(bytes),
                digest,
                from_store: true,
                store_rejected: false,
            });
        }
        if !entry_is(Cursor::new(&bytes[..]), e, settings, buf) {
            return None;
        }
        MiniZip::Memory(bytes)
    } else {
        if !entry_is(std::io::BufReader::new(&file), e, settings, buf) {
            return None;
        }
        file.rewind().ok()?;
        MiniZip::File(file)
    };
    let digest = mini_zip.digest(buf).ok()?;
    Some(Prepared {
        mini_zip,
        digest,
        from_store: true,
        store_rejected: false,
    })
}

/// The content of a one-entry zip fetched from elsewhere (the remote
/// store), if it is exactly what [`prepare`] would make of `e` (as
/// `open_stored_entry` checks), in one pass: inflated once, hashed as
/// it is. The one-entry zip is then remembered as verified (by the hash of
/// its bytes), so copying it out of the machine store later in this run
/// does not inflate it again.
pub fn stored_entry_content(bytes: &[u8], e: &Entry, settings: &Settings) -> Option<Vec<u8>> {
    let mut zip = ZipArchive::new(Cursor::new(bytes)).ok()?;
    if zip.len() != 1 || !zip.comment().is_empty() {
        return None;
    }
    if !header_is(&zip.by_index_raw(0).ok()?, e, settings) {
        return None;
    }
    let mut data = Vec::with_capacity(e.size.min(1 << 30) as usize);
    zip.by_index(0).ok()?.read_to_end(&mut data).ok()?;
    if data.len() as u64 != e.size || blake3::hash(&data) != e.hash {
        return None;
    }
    let mut buf = vec![0u8; DIGEST_BUF];
    let digest = raw_digest(&mut zip.by_index_raw(0).ok()?, &mut buf).ok()?;
    VERIFIED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(blake3::hash(bytes), digest);
    Some(data)
}

/// A dependency tree kept as its zip of compressed entries (fetched from
/// the remote store, every entry checked when it arrived): a raw-copy
/// source like the reuse store, second in line after it.
#[derive(Debug, Clone)]
pub struct TreeZip {
    pub path: PathBuf,
    /// Each entry by content, with the digest of its raw record taken when
    /// it was checked (`store` unused).
    pub entries: Vec<PackedEntry>,
}

/// Checks a dependency tree's zip (from the remote store) against the
/// files it must hold, in order: entry `i` is named `files[i].name`, has
/// the header [`prepare`] writes for it, and inflates (CRC checked) to its
/// content hash. Returns the raw digest of each entry, or the name of the
/// first entry that fails (None: the zip itself is unreadable). On every
/// core, each worker with a reader of its own.
pub fn verify_tree_zip(
    path: &Path,
    files: &[Entry],
    settings: &Settings,
) -> Result<Vec<Hash>, Option<String>> {
    let open = || -> Option<ZipArchive<PReader>> {
        ZipArchive::new(PReader::new(File::open(path).ok()?).ok()?).ok()
    };
    let zip = open().ok_or(None)?;
    if zip.len() != files.len() || !zip.comment().is_empty() {
        return Err(None);
    }
    drop(zip);
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(files.len().max(1));
    // (index, raw digest) of the entries a worker checked, or the failure.
    type Checked = Result<Vec<(usize, Hash)>, Option<String>>;
    let check = |k: usize| -> Checked {
        let mut zip = open().ok_or(None)?;
        let mut buf = vec![0u8; DIGEST_BUF];
        let mut inflater = libdeflater::Decompressor::new();
        let mut out = Vec::new();
        for (i, e) in files.iter().enumerate().skip(k).step_by(workers) {
            let bad = || Some(e.name.clone());
            let mut f = zip.by_index_raw(i).map_err(|_| bad())?;
            if !f.name().is_ok_and(|n| n == e.name) || !header_is(&f, e, settings) {
                return Err(bad());
            }
            if e.size > STREAM_THRESHOLD {
                // Streamed: the zip crate inflates and checks the CRC.
                drop(f);
                let mut h = blake3::Hasher::new();
                let mut f = zip.by_index(i).map_err(|_| bad())?;
                loop {
                    match f.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            h.update(&buf[..n]);
                        }
                        // A CRC mismatch or a broken deflate stream.
                        Err(_) => return Err(bad()),
                    }
                }
                drop(f);
                if h.finalize() != e.hash {
                    return Err(bad());
                }
                let digest = raw_digest(&mut zip.by_index_raw(i).map_err(|_| bad())?, &mut buf)
                    .map_err(|_| bad())?;
                out.push((i, digest));
                continue;
            }
            // In memory: the compressed bytes read once, for the raw digest
            // and for libdeflate (several times faster than a stream).
            let mut digest = raw_digest_header(&f);
            let (crc, method) = (f.crc32(), f.compression());
            let mut raw = Vec::with_capacity(f.compressed_size().min(STREAM_THRESHOLD) as usize);
            f.read_to_end(&mut raw).map_err(|_| bad())?;
            drop(f);
            digest.update(&raw);
            let inflated;
            let data: &[u8] = match method {
                CompressionMethod::Stored => &raw,
                _ => {
                    let mut data = vec![0u8; e.size as usize];
                    match inflater.deflate_decompress(&raw, &mut data) {
                        Ok(n) if n as u64 == e.size => {}
                        _ => return Err(bad()),
                    }
                    inflated = data;
                    &inflated
                }
            };
            if data.len() as u64 != e.size
                || libdeflater::crc32(data) != crc
                || blake3::hash(data) != e.hash
            {
                return Err(bad());
            }
            out.push((i, digest.finalize()));
        }
        Ok(out)
    };
    let parts: Vec<Checked> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|k| scope.spawn(move || check(k)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(Err(None)))
            .collect()
    });
    let mut digests = vec![Hash::from([0; 32]); files.len()];
    for part in parts {
        for (i, d) in part? {
            digests[i] = d;
        }
    }
    Ok(digests)
}

/// One-entry zips verified in this process: hash of their bytes -> raw
/// digest.
static VERIFIED: std::sync::LazyLock<Mutex<HashMap<Hash, Hash>>> =
    std::sync::LazyLock::new(|| Mutex::new(HashMap::new()));

/// Whether a stored entry's header is what these settings write for `e`.
fn header_is<R: Read>(f: &zip::read::ZipFile<'_, R>, e: &Entry, settings: &Settings) -> bool {
    let mode = 0o100000 | if e.executable { 0o755 } else { 0o644 };
    let method_ok = match f.compression() {
        CompressionMethod::Stored => true,
        CompressionMethod::Deflated => settings.level > 0,
        _ => false,
    };
    let extra = f.extra_data_fields().count() + f.extra_data().map_or(0, |d| d.len());
    // No flag but the language encoding (derived from a copy's own name):
    // a data descriptor or encryption bit would travel with a raw copy.
    let flags_ok = f.flags().as_u16() & !(1 << 11) == 0;
    method_ok
        && flags_ok
        && f.size() == e.size
        && f.unix_mode() == Some(mode)
        && f.system() == zip::System::Unix
        && !f.encrypted()
        && f.comment().is_empty()
        && f.last_modified() == Some(settings.time)
        && (extra == 0 || e.size >= u32::MAX as u64)
        && f.external_attributes() == mode << 16
}

fn entry_is<R: Read + Seek>(reader: R, e: &Entry, settings: &Settings, buf: &mut [u8]) -> bool {
    let Ok(mut zip) = ZipArchive::new(reader) else {
        return false;
    };
    if zip.len() != 1 || !zip.comment().is_empty() {
        return false;
    }
    match zip.by_index_raw(0) {
        Ok(f) if header_is(&f, e, settings) => {}
        _ => return false,
    }
    let Ok(mut f) = zip.by_index(0) else {
        return false;
    };
    let mut h = blake3::Hasher::new();
    loop {
        match f.read(buf) {
            Ok(0) => break,
            Ok(n) => {
                h.update(&buf[..n]);
            }
            // A CRC mismatch or broken deflate stream.
            Err(_) => return false,
        }
    }
    h.finalize() == e.hash
}

thread_local! {
    /// One libdeflate compressor per thread and level: its tables are
    /// allocated once, not per entry. Its output does not depend on earlier
    /// calls (libdeflate resets its state for each buffer).
    static COMPRESSOR: RefCell<Option<(u32, libdeflater::Compressor)>> =
        const { RefCell::new(None) };
}

/// `data` as raw deflate at `level` (1..=12), or None when that is not
/// smaller than `data`. libdeflate's output depends only on the input, the
/// level and its version (not on the size of the output buffer, which only
/// decides whether the result fits).
fn deflate_if_smaller(data: &[u8], level: u32) -> Option<Vec<u8>> {
    debug_assert!((1..=12).contains(&level), "level {level}");
    COMPRESSOR.with_borrow_mut(|slot| {
        let compressor = match slot {
            Some((l, c)) if *l == level => c,
            _ => {
                let lvl = libdeflater::CompressionLvl::new(level.clamp(1, 12) as i32)
                    .expect("1..=12 is libdeflate's range");
                &mut slot.insert((level, libdeflater::Compressor::new(lvl))).1
            }
        };
        // Room for one byte less than the input: a result that does not fit
        // is not smaller, and the entry is stored. (Zeroed pages are only
        // mapped when written, so the unused room costs no memory.)
        let mut out = vec![0u8; data.len().saturating_sub(1)];
        let n = compressor.deflate_compress(data, &mut out).ok()?;
        out.truncate(n);
        Some(out)
    })
}

/// Writes the one-entry zip the zip crate would write for `e` (local header,
/// data, central directory, end record; no extra fields, no data
/// descriptor), with `deflated` as its data when given, else `data` stored.
/// The zip crate cannot take data compressed elsewhere, and a raw copy out
/// of this zip is how the entry reaches the archive, as every other one.
/// Only for entries up to [`STREAM_THRESHOLD`] (no ZIP64).
fn one_entry_zip(e: &Entry, settings: &Settings, data: &[u8], deflated: Option<&[u8]>) -> Vec<u8> {
    const NAME: &[u8] = b"x";
    debug_assert!(data.len() < u32::MAX as usize);
    let (method, body): (u16, &[u8]) = match deflated {
        Some(d) => (8, d),
        None => (0, data),
    };
    let crc = libdeflater::crc32(data);
    let mode: u32 = 0o100000 | if e.executable { 0o755 } else { 0o644 };
    let (date, time) = (settings.time.datepart(), settings.time.timepart());
    let version_needed: u16 = if method == 8 { 20 } else { 10 };
    // Made by: Unix (3), the version zip's writer declares.
    let made_by: u16 = (3 << 8) | 20;
    // Sizes and the offset fit 32 bits: callers hold at most STREAM_THRESHOLD.
    let (csize, size) = (body.len() as u32, data.len() as u32);
    let put16 = |v: &mut Vec<u8>, x: u16| v.extend_from_slice(&x.to_le_bytes());
    let put32 = |v: &mut Vec<u8>, x: u32| v.extend_from_slice(&x.to_le_bytes());
    let mut z = Vec::with_capacity(body.len() + 30 + 46 + 22 + 2 * NAME.len());
    // Local file header.
    put32(&mut z, 0x0403_4b50);
    for x in [version_needed, 0, method, time, date] {
        put16(&mut z, x);
    }
    for x in [crc, csize, size] {
        put32(&mut z, x);
    }
    put16(&mut z, NAME.len() as u16);
    put16(&mut z, 0);
    z.extend_from_slice(NAME);
    z.extend_from_slice(body);
    // Central directory.
    let cd_start = z.len() as u32;
    put32(&mut z, 0x0201_4b50);
    for x in [made_by, version_needed, 0, method, time, date] {
        put16(&mut z, x);
    }
    for x in [crc, csize, size] {
        put32(&mut z, x);
    }
    // Name length, extra, comment, disk, internal attributes.
    for x in [NAME.len() as u16, 0, 0, 0, 0] {
        put16(&mut z, x);
    }
    put32(&mut z, mode << 16);
    put32(&mut z, 0); // local header offset
    z.extend_from_slice(NAME);
    let cd_len = z.len() as u32 - cd_start;
    // End of central directory.
    put32(&mut z, 0x0605_4b50);
    for x in [0, 0, 1, 1] {
        put16(&mut z, x);
    }
    put32(&mut z, cd_len);
    put32(&mut z, cd_start);
    put16(&mut z, 0);
    z
}

/// Bytes handed to zlib-rs per write on the streamed path: its output
/// depends on how its input is cut, so the cut is part of the format.
const DEFLATE_CHUNK: usize = 64 * 1024;

fn entry_options(e: &Entry, settings: &Settings, method: CompressionMethod) -> SimpleFileOptions {
    settings
        .options(e.executable, method)
        .large_file(e.size >= u32::MAX as u64)
}

/// Streams `e` into a one-entry zip in an anonymous temporary file,
/// checking its hash on the way.
fn stream_into_mini_zip(
    e: &Entry,
    settings: &Settings,
    method: CompressionMethod,
    buf: &mut [u8],
) -> Result<File, ArchiveError> {
    let read_err = |source| ArchiveError::Read {
        path: e.path.clone(),
        source,
    };
    let mut input = File::open(&e.path).map_err(read_err)?;
    let sink = Abandonable::new(std::io::BufWriter::new(tempfile::tempfile()?));
    let abandon = sink.switch();
    let mut mini = ZipWriter::new(sink);
    let streamed = (|| -> Result<(), ArchiveError> {
        mini.start_file("x", entry_options(e, settings, method))?;
        let mut hasher = blake3::Hasher::new();
        let chunk = &mut buf[..DEFLATE_CHUNK];
        loop {
            // Fill the chunk completely (short reads must not move the cuts).
            let mut filled = 0;
            while filled < chunk.len() {
                match input.read(&mut chunk[filled..]).map_err(read_err)? {
                    0 => break,
                    n => filled += n,
                }
            }
            if filled == 0 {
                break;
            }
            hasher.update(&chunk[..filled]);
            mini.write_all(&chunk[..filled])?;
        }
        if hasher.finalize() != e.hash {
            return Err(ArchiveError::ChangedDuringBuild {
                path: e.path.clone(),
            });
        }
        Ok(())
    })();
    if let Err(err) = streamed {
        // Dropped unfinished, the zip writer would finish it (and print
        // its own error if the temp file's disk is full).
        abandon.set(true);
        return Err(err);
    }
    let mut file = mini
        .finish()?
        .inner
        .into_inner()
        .map_err(|e| ArchiveError::Write(e.into_error()))?;
    file.rewind()?;
    Ok(file)
}

/// A writer that can be told to swallow everything from then on, so a zip
/// writer dropped after a failure has nothing left to finish. It keeps the
/// position itself: the zip writer still seeks while it "finishes".
struct Abandonable<W> {
    inner: W,
    abandoned: std::rc::Rc<std::cell::Cell<bool>>,
    pos: u64,
    len: u64,
}

impl<W> Abandonable<W> {
    fn new(inner: W) -> Self {
        Abandonable {
            inner,
            abandoned: Default::default(),
            pos: 0,
            len: 0,
        }
    }

    fn switch(&self) -> std::rc::Rc<std::cell::Cell<bool>> {
        self.abandoned.clone()
    }

    fn moved_to(&mut self, pos: u64) -> u64 {
        self.pos = pos;
        self.len = self.len.max(pos);
        pos
    }
}

impl<W: Write> Write for Abandonable<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = if self.abandoned.get() {
            data.len()
        } else {
            self.inner.write(data)?
        };
        self.moved_to(self.pos + n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.abandoned.get() {
            return Ok(());
        }
        self.inner.flush()
    }
}

impl<W: Seek> Seek for Abandonable<W> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        if !self.abandoned.get() {
            let pos = self.inner.seek(to)?;
            return Ok(self.moved_to(pos));
        }
        let base = match to {
            SeekFrom::Start(n) => return Ok(self.moved_to(n)),
            SeekFrom::Current(d) => (self.pos, d),
            SeekFrom::End(d) => (self.len, d),
        };
        Ok(self.moved_to(base.0.saturating_add_signed(base.1)))
    }
}

/// The zip's output: buffered, and hashed (SHA-256) as it is written.
///
/// The zip writer asks for its position twice per entry; `BufWriter` would
/// flush and `lseek` each time. This writer knows its position, so only a
/// real move costs a flush and a seek, and a move also turns the running hash
/// off (bytes may then be overwritten): the caller reads the file instead.
/// Full buffers are hashed on a helper thread, off the writer's path.
struct HashingWriter<'a> {
    out: &'a File,
    buf: Vec<u8>,
    /// Logical position (what the zip writer sees).
    pos: u64,
    /// Logical length of the file.
    len: u64,
    /// Running hash of every byte, while they were only ever appended.
    sha: Option<BackgroundSha>,
    /// Set once the zip is abandoned (a write failed, or the caller gave
    /// up): every later write, flush and seek is a no-op that succeeds, so
    /// the zip writer's destructor, which finishes an unfinished archive,
    /// neither writes more nor prints its own error to stderr.
    discard: std::rc::Rc<std::cell::Cell<bool>>,
}

/// SHA-256 on a helper thread, fed the buffers the writer flushes (a
/// bounded queue, so memory stays a few buffers whatever the zip's size).
struct BackgroundSha {
    chunks: std::sync::mpsc::SyncSender<Vec<u8>>,
    spare: std::sync::mpsc::Receiver<Vec<u8>>,
    thread: std::thread::JoinHandle<[u8; 32]>,
}

impl BackgroundSha {
    fn start() -> Self {
        let (chunks, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
        let (back, spare) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let mut h = Sha256::new();
            for chunk in rx {
                h.update(&chunk);
                let _ = back.send(chunk);
            }
            h.finalize().into()
        });
        BackgroundSha {
            chunks,
            spare,
            thread,
        }
    }

    /// An empty buffer: one the hasher is done with, or a new one.
    fn buffer(&self) -> Vec<u8> {
        match self.spare.try_recv() {
            Ok(mut b) => {
                b.clear();
                b
            }
            Err(_) => Vec::with_capacity(HashingWriter::CAPACITY),
        }
    }

    /// Queues bytes to hash; false if the hasher is gone.
    fn send(&self, chunk: Vec<u8>) -> bool {
        self.chunks.send(chunk).is_ok()
    }

    fn finish(self) -> Option<[u8; 32]> {
        drop(self.chunks);
        self.thread.join().ok()
    }
}

impl<'a> HashingWriter<'a> {
    const CAPACITY: usize = 1 << 20;

    fn new(mut out: &'a File) -> std::io::Result<Self> {
        let pos = out.stream_position()?;
        let len = out.metadata()?.len();
        Ok(HashingWriter {
            out,
            buf: Vec::with_capacity(Self::CAPACITY),
            pos,
            len,
            sha: (pos == 0 && len == 0).then(BackgroundSha::start),
            discard: Default::default(),
        })
    }

    /// Setting it abandons the zip (see [`HashingWriter::discard`]).
    fn discard_switch(&self) -> std::rc::Rc<std::cell::Cell<bool>> {
        self.discard.clone()
    }

    /// Writes to the file; a failure abandons the zip.
    fn write_out(&mut self, data: &[u8]) -> std::io::Result<()> {
        let mut out = self.out;
        out.write_all(data).inspect_err(|_| self.discard.set(true))
    }

    fn flush_buf(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let buf = std::mem::take(&mut self.buf);
        let written = self.write_out(&buf);
        self.buf = buf;
        written?;
        match &self.sha {
            Some(sha) => {
                let full = std::mem::replace(&mut self.buf, sha.buffer());
                if !sha.send(full) {
                    self.sha = None;
                }
            }
            None => self.buf.clear(),
        }
        Ok(())
    }

    /// The SHA-256 and size of the file, if every byte was appended in order.
    fn finish(self) -> Option<([u8; 32], u64)> {
        debug_assert!(self.buf.is_empty(), "flushed before finish");
        let len = self.len;
        self.sha?.finish().map(|h| (h, len))
    }
}

impl Write for HashingWriter<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.discard.get() {
            return Ok(data.len());
        }
        if self.buf.len() + data.len() > Self::CAPACITY {
            self.flush_buf()?;
        }
        if data.len() >= Self::CAPACITY {
            self.write_out(data)?;
            if let Some(sha) = &self.sha
                && !sha.send(data.to_vec())
            {
                self.sha = None;
            }
        } else {
            self.buf.extend_from_slice(data);
        }
        self.pos += data.len() as u64;
        self.len = self.len.max(self.pos);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.discard.get() {
            return Ok(());
        }
        self.flush_buf()?;
        self.out.flush()
    }
}

impl Seek for HashingWriter<'_> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let target = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
        };
        if target == Some(self.pos) {
            return Ok(self.pos);
        }
        if self.discard.get() {
            self.pos = target.unwrap_or(self.pos);
            return Ok(self.pos);
        }
        self.flush_buf()?;
        self.sha = None;
        self.pos = self.out.seek(to)?;
        Ok(self.pos)
    }
}

/// The store, read with `pread` through a buffer that survives seeks: the
/// zip reader seeks before every entry, which makes `BufReader` drop its
/// buffer (and `lseek`) each time although the entries are read in order.
struct PReader {
    file: File,
    len: u64,
    pos: u64,
    buf: Box<[u8]>,
    buf_start: u64,
    buf_len: usize,
}

impl PReader {
    fn new(file: File) -> std::io::Result<Self> {
        let len = file.metadata()?.len();
        Ok(PReader {
            file,
            len,
            pos: 0,
            buf: vec![0u8; 256 * 1024].into_boxed_slice(),
            buf_start: 0,
            buf_len: 0,
        })
    }
}

impl Read for PReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let in_buf = self.pos >= self.buf_start && self.pos < self.buf_start + self.buf_len as u64;
        if !in_buf {
            if out.len() >= self.buf.len() {
                let n = self.file.read_at(out, self.pos)?;
                self.pos += n as u64;
                return Ok(n);
            }
            self.buf_len = self.file.read_at(&mut self.buf, self.pos)?;
            self.buf_start = self.pos;
            if self.buf_len == 0 {
                return Ok(0);
            }
        }
        let from = (self.pos - self.buf_start) as usize;
        let n = out.len().min(self.buf_len - from);
        out[..n].copy_from_slice(&self.buf[from..from + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for PReader {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let target = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
        };
        self.pos = target.ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek before the start")
        })?;
        Ok(self.pos)
    }
}

/// Compression workers feeding an in-order writer. Jobs are admitted in
/// order under a byte budget, so memory stays bounded whatever the corpus,
/// and admission order guarantees the entry the writer waits for is always
/// admitted (no deadlock).
struct Pipeline<'a> {
    entries: &'a [Entry],
    jobs: &'a [usize],
    state: Mutex<PipelineState>,
    cond: Condvar,
}

#[derive(Default)]
struct PipelineState {
    next_job: usize,
    in_flight: u64,
    done: HashMap<usize, Result<Prepared, ArchiveError>>,
    aborted: bool,
}

impl<'a> Pipeline<'a> {
    fn new(entries: &'a [Entry], jobs: &'a [usize]) -> Self {
        Pipeline {
            entries,
            jobs,
            state: Mutex::new(PipelineState::default()),
            cond: Condvar::new(),
        }
    }

    fn work(&self, settings: &Settings, machine: Option<&MachineStore>) {
        let mut buf = vec![0u8; DIGEST_BUF];
        loop {
            let i = {
                let mut st = self.state.lock().expect("poisoned");
                loop {
                    if st.aborted || st.next_job >= self.jobs.len() {
                        return;
                    }
                    let i = self.jobs[st.next_job];
                    let size = budget_cost(self.entries[i].size);
                    if st.in_flight == 0 || st.in_flight + size <= IN_FLIGHT_BUDGET {
                        st.next_job += 1;
                        st.in_flight += size;
                        break i;
                    }
                    st = self.cond.wait(st).expect("poisoned");
                }
            };
            // A worker that panicked would leave the writer waiting for its
            // entry forever: its panic becomes that entry's error.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                prepare_via(&self.entries[i], settings, &mut buf, machine)
            }))
            .unwrap_or_else(|_| {
                Err(ArchiveError::Write(std::io::Error::other(format!(
                    "compressing {} failed (a bug in lbuild: please report it with the message above)",
                    self.entries[i].path.display()
                ))))
            });
            let mut st = self.state.lock().expect("poisoned");
            st.done.insert(i, result);
            self.cond.notify_all();
        }
    }

    /// Blocks until entry `i` is compressed, and releases its budget.
    fn take(&self, i: usize) -> Result<Prepared, ArchiveError> {
        let mut st = self.state.lock().expect("poisoned");
        loop {
            if let Some(r) = st.done.remove(&i) {
                st.in_flight -= budget_cost(self.entries[i].size);
                self.cond.notify_all();
                return r;
            }
            st = self.cond.wait(st).expect("poisoned");
        }
    }

    fn abort(&self) {
        let mut st = self.state.lock().expect("poisoned");
        st.aborted = true;
        self.cond.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dos_time_defaults_clamps_and_rounds() {
        let t = dos_time_from_unix(0);
        assert_eq!((t.year(), t.month(), t.day(), t.hour()), (1980, 1, 1, 0));
        let t = dos_time_from_unix(1_700_000_001); // 2023-11-14T22:13:21Z
        assert_eq!(
            (
                t.year(),
                t.month(),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            ),
            (2023, 11, 14, 22, 13, 20)
        );
        let t = dos_time_from_unix(i64::MAX / 2);
        assert_eq!(t.year(), 2107);
    }

    fn entries_in(dir: &Path, files: &[(&str, Vec<u8>)]) -> Vec<Entry> {
        let mut out: Vec<Entry> = files
            .iter()
            .map(|(name, data)| {
                let path = dir.join(name);
                std::fs::write(&path, data).unwrap();
                Entry {
                    name: name.to_string(),
                    path,
                    hash: blake3::hash(data),
                    size: data.len() as u64,
                    executable: false,
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
        out
    }

    /// Deterministic incompressible bytes (xorshift).
    fn noise(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// The bytes of a zip holding `p`'s one entry, raw-copied as `name`.
    fn copied(p: Prepared, name: &str) -> Vec<u8> {
        let out = tempfile::tempfile().unwrap();
        let mut zip = ZipWriter::new(&out);
        p.mini_zip.copy_into(&mut zip, name).unwrap();
        zip.finish().unwrap();
        let mut v = Vec::new();
        let mut r = &out;
        r.rewind().unwrap();
        r.read_to_end(&mut v).unwrap();
        v
    }

    #[test]
    fn hand_written_one_entry_zip_copies_like_the_zip_crates_own() {
        // The in-memory path writes its one-entry zip itself (the zip crate
        // cannot take libdeflate's output): a raw copy of it must give the
        // very bytes a raw copy of the zip crate's own one-entry zip gives.
        // Stored entries compare whole (same data either way).
        for executable in [false, true] {
            for data in [&b""[..], b"print('hi')\n", &noise(5000, 3)] {
                let settings = Settings {
                    level: 0,
                    time: dos_time_from_unix(1_700_000_001),
                };
                let e = Entry {
                    name: "pkg/caf\u{e9}.py".into(),
                    path: PathBuf::new(),
                    hash: blake3::hash(data),
                    size: data.len() as u64,
                    executable,
                };
                let ours = MiniZip::Memory(one_entry_zip(&e, &settings, data, None));
                let mut theirs = ZipWriter::new(Cursor::new(Vec::new()));
                theirs
                    .start_file("x", entry_options(&e, &settings, CompressionMethod::Stored))
                    .unwrap();
                theirs.write_all(data).unwrap();
                let theirs = MiniZip::Memory(theirs.finish().unwrap().into_inner());
                let digest = Hash::from([0; 32]);
                let ours = copied(
                    Prepared {
                        mini_zip: ours,
                        digest,
                        from_store: false,
                        store_rejected: false,
                    },
                    &e.name,
                );
                let theirs = copied(
                    Prepared {
                        mini_zip: theirs,
                        digest,
                        from_store: false,
                        store_rejected: false,
                    },
                    &e.name,
                );
                assert_eq!(
                    ours,
                    theirs,
                    "{} bytes, executable {executable}",
                    data.len()
                );
            }
        }
    }

    #[test]
    fn both_paths_read_back_deflate_only_what_shrinks_and_repeat_their_bytes() {
        // In memory (libdeflate) and streamed (zlib-rs, forced here with a
        // small threshold): every entry reads back as its content, deflated
        // exactly when that is smaller, and preparing it again gives the
        // same bytes.
        let dir = tempfile::tempdir().unwrap();
        let text: Vec<u8> = (0..40_000u32)
            .flat_map(|i| format!("{}\n", i % 977).into_bytes())
            .collect();
        let entries = entries_in(
            dir.path(),
            &[
                ("empty", Vec::new()),
                ("noise.bin", noise(200_000, 7)),
                ("text.txt", text),
            ],
        );
        for threshold in [u64::MAX, 64 * 1024] {
            for level in [0, 1, 6, 9, 12] {
                let settings = Settings {
                    level,
                    time: dos_time_from_unix(0),
                };
                let mut buf = vec![0u8; DIGEST_BUF];
                for e in &entries {
                    let what = format!("{} at level {level}, threshold {threshold}", e.name);
                    let p = prepare_streaming_above(e, &settings, &mut buf, threshold).unwrap();
                    let streamed = matches!(p.mini_zip, MiniZip::File(_));
                    assert_eq!(streamed, e.size > threshold, "{what}");
                    let again = prepare_streaming_above(e, &settings, &mut buf, threshold).unwrap();
                    assert_eq!(p.digest, again.digest, "{what}");
                    let bytes = copied(p, &e.name);
                    assert_eq!(bytes, copied(again, &e.name), "{what}");
                    let mut zip = ZipArchive::new(Cursor::new(bytes)).unwrap();
                    let mut f = zip.by_index(0).unwrap();
                    let mut content = Vec::new();
                    f.read_to_end(&mut content).unwrap();
                    assert_eq!(content, std::fs::read(&e.path).unwrap(), "{what}");
                    let deflated = f.compression() == CompressionMethod::Deflated;
                    assert_eq!(deflated, level > 0 && e.name == "text.txt", "{what}");
                    assert!(!deflated || f.compressed_size() < f.size(), "{what}");
                }
            }
        }
    }

    #[test]
    fn libdeflate_levels_trade_size_for_time() {
        // Higher is smaller (or equal): level keeps its meaning on 1..=12.
        let text: Vec<u8> = (0..60_000u32)
            .flat_map(|i| {
                format!("row {} = {}\n", i, i.wrapping_mul(2_654_435_761) % 9973).into_bytes()
            })
            .collect();
        let sizes: Vec<usize> = [1, 6, 9, 12]
            .iter()
            .map(|&l| deflate_if_smaller(&text, l).unwrap().len())
            .collect();
        assert!(sizes.windows(2).all(|w| w[0] >= w[1]), "{sizes:?}");
        assert!(sizes[0] > sizes[3], "{sizes:?}");
    }

    fn sha_of(path: &Path) -> [u8; 32] {
        Sha256::digest(std::fs::read(path).unwrap()).into()
    }

    #[test]
    fn reused_entries_give_the_cold_bytes_and_the_running_hash_is_the_files() {
        let dir = tempfile::tempdir().unwrap();
        // Pseudo-random (incompressible, stored), text, and one entry
        // larger than the writer's buffer (written past it).
        let noise = noise(70_000, 1);
        let big: Vec<u8> = (0..3_000_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let mut files = vec![
            ("a.py", b"print('a')\n".repeat(50)),
            ("noise.bin", noise),
            ("big.bin", big),
            ("z.txt", b"zzz".to_vec()),
        ];
        let settings = Settings {
            level: 6,
            time: dos_time_from_unix(0),
        };
        let build = |entries: &[Entry], store: Option<&Store>, out: &Path| {
            let f = File::create(out).unwrap();
            let report = write_zip(&f, entries, &settings, store, None).unwrap();
            assert_eq!(
                report.sha256,
                Some((sha_of(out), f.metadata().unwrap().len()))
            );
            report
        };

        let entries = entries_in(dir.path(), &files);
        let store_path = dir.path().join("store.zip");
        let first = build(&entries, None, &store_path);
        assert_eq!((first.compressed, first.reused), (4, 0));

        // One entry edited: the others are copied raw from the store.
        files[0].1.extend_from_slice(b"# edit\n");
        let entries = entries_in(dir.path(), &files);
        let packed = first
            .packed
            .into_iter()
            .map(|p| PackedEntry {
                store: "store.zip".into(),
                ..p
            })
            .collect();
        let store = Store::new(dir.path(), packed, &settings, "store.zip").unwrap();
        let incremental = dir.path().join("incremental.zip");
        let report = build(&entries, Some(&store), &incremental);
        assert_eq!((report.compressed, report.reused), (1, 3));

        let cold = dir.path().join("cold.zip");
        build(&entries, None, &cold);
        assert_eq!(
            std::fs::read(&incremental).unwrap(),
            std::fs::read(&cold).unwrap()
        );
    }

    fn sha_of_file(mut f: &File) -> [u8; 32] {
        let mut all = Vec::new();
        f.seek(SeekFrom::Start(0)).unwrap();
        f.read_to_end(&mut all).unwrap();
        Sha256::digest(all).into()
    }

    #[test]
    fn hashing_writer_drops_its_hash_after_a_real_seek() {
        let f = tempfile::tempfile().unwrap();
        let mut w = HashingWriter::new(&f).unwrap();
        let big: Vec<u8> = (0..(3 << 20) as u32).map(|i| (i % 251) as u8).collect();
        let mut expect = Sha256::new();
        // Small writes, one spanning several buffers, then small again.
        for part in [&b"he"[..], &big, b"llo"] {
            w.write_all(part).unwrap();
            expect.update(part);
        }
        let len = big.len() as u64 + 5;
        assert_eq!(w.stream_position().unwrap(), len);
        assert_eq!(w.seek(SeekFrom::End(0)).unwrap(), len);
        w.flush().unwrap();
        assert_eq!(w.finish(), Some((expect.finalize().into(), len)));
        let whole: [u8; 32] = Sha256::digest([&b"he"[..], &big, b"llo"].concat()).into();
        assert_eq!(sha_of_file(&f), whole);
        f.set_len(0).unwrap();
        (&f).seek(SeekFrom::Start(0)).unwrap();
        (&f).write_all(b"hello").unwrap();

        let mut w = HashingWriter::new(&f).unwrap();
        assert!(
            w.sha.is_none(),
            "not a fresh file: cannot hash from the start"
        );
        w.seek(SeekFrom::Start(0)).unwrap();
        w.write_all(b"J").unwrap();
        w.flush().unwrap();
        assert_eq!(w.finish(), None);
        let mut back = String::new();
        (&f).seek(SeekFrom::Start(0)).unwrap();
        (&f).read_to_string(&mut back).unwrap();
        assert_eq!(back, "Jello");
    }

    #[test]
    fn a_tree_zip_verifies_with_the_digests_a_copy_checks_and_a_flipped_byte_fails() {
        let dir = tempfile::tempdir().unwrap();
        let text: Vec<u8> = (0..30_000u32)
            .flat_map(|i| format!("{}\n", i % 613).into_bytes())
            .collect();
        let entries = entries_in(
            dir.path(),
            &[
                ("empty", Vec::new()),
                ("noise.bin", noise(100_000, 5)),
                ("text.txt", text),
            ],
        );
        let settings = Settings {
            level: 6,
            time: dos_time_from_unix(0),
        };
        let path = dir.path().join("tree.zip");
        let report = write_zip(
            &File::create(&path).unwrap(),
            &entries,
            &settings,
            None,
            None,
        )
        .unwrap();
        let digests = verify_tree_zip(&path, &entries, &settings).unwrap();
        let recorded: Vec<Hash> = report.packed.iter().map(|p| p.raw_hash).collect();
        assert_eq!(digests, recorded);
        // Another time, another file list: refused. (The level leaves no
        // trace in a header: the object's name carries the settings id.)
        let other = Settings {
            time: dos_time_from_unix(1_700_000_000),
            ..settings
        };
        assert!(verify_tree_zip(&path, &entries, &other).is_err());
        assert!(verify_tree_zip(&path, &entries[..2], &settings).is_err());
        // One byte of the deflated entry's data flipped.
        let mut bytes = std::fs::read(&path).unwrap();
        let mut zip = ZipArchive::new(Cursor::new(&bytes[..])).unwrap();
        let at = zip.by_name("text.txt").unwrap().data_start().unwrap() as usize + 10;
        drop(zip);
        bytes[at] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(
            verify_tree_zip(&path, &entries, &settings),
            Err(Some("text.txt".to_string()))
        );
    }

    #[test]
    fn preader_reads_like_a_plain_file_across_seeks() {
        let mut f = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..600_000u32).map(|i| (i % 253) as u8).collect();
        f.write_all(&data).unwrap();
        let mut r = PReader::new(f).unwrap();
        let mut buf = vec![0u8; 1000];
        for &at in &[0u64, 10, 5, 300_000, 262_143, 599_500, 1] {
            r.seek(SeekFrom::Start(at)).unwrap();
            let n = r.read(&mut buf).unwrap();
            assert!(n > 0);
            assert_eq!(&buf[..n], &data[at as usize..at as usize + n]);
        }
        r.seek(SeekFrom::End(-3)).unwrap();
        let mut tail = Vec::new();
        r.read_to_end(&mut tail).unwrap();
        assert_eq!(tail, &data[data.len() - 3..]);
        let mut all = Vec::new();
        r.seek(SeekFrom::Start(0)).unwrap();
        r.read_to_end(&mut all).unwrap();
        assert_eq!(all, data);
    }
}
