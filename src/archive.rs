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

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Cursor, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipArchive, ZipWriter};

use crate::cache::{Hash, PackedEntry};
use crate::stages::Entry;

/// Bumped whenever the bytes lbuild writes for the same inputs change.
/// Part of every stage key.
pub const FORMAT_VERSION: u32 = 1;

/// The deflate implementation and its exact version (from Cargo.lock, see
/// build.rs): a different backend gives different bytes.
pub const DEFLATE_BACKEND: &str = concat!("zlib-rs ", env!("LBUILD_ZLIB_RS_VERSION"));

/// Uncompressed bytes that may be read and compressed ahead of the writer.
const IN_FLIGHT_BUDGET: u64 = 48 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} changed while the zip was being written\n  hint: run lbuild again (lbuild watch does so by itself)"
    )]
    ChangedDuringBuild { path: PathBuf },
    #[error("cannot write the zip: {0}")]
    Write(#[from] std::io::Error),
    #[error("zip format error: {0}")]
    Zip(#[from] zip::result::ZipError),
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
        *h.finalize().as_bytes()
    }

    fn options(&self, executable: bool, method: CompressionMethod) -> SimpleFileOptions {
        let level = (method == CompressionMethod::Deflated).then_some(self.level as i64);
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
    path: PathBuf,
    by_content: HashMap<(Hash, bool), (String, Hash)>,
}

impl Store {
    /// The store at `path`, restricted to entries written with `settings`.
    pub fn new(path: &Path, packed: Vec<PackedEntry>, settings: &Settings) -> Option<Store> {
        if !path.is_file() {
            return None;
        }
        let id = settings.id();
        let by_content = packed
            .into_iter()
            .filter(|p| p.settings == id)
            .map(|p| ((p.content_hash, p.executable), (p.name, p.raw_hash)))
            .collect::<HashMap<_, _>>();
        (!by_content.is_empty()).then(|| Store {
            path: path.to_path_buf(),
            by_content,
        })
    }
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
    #[serde(skip)]
    pub packed: Vec<PackedEntry>,
}

/// A compressed entry as a one-entry zip in memory, plus the digest of its
/// raw record (see [`raw_digest`]).
struct Prepared {
    mini_zip: Vec<u8>,
    digest: Hash,
}

/// Writes `entries` (already sorted by name) to `out`.
pub fn write_zip(
    out: &File,
    entries: &[Entry],
    settings: &Settings,
    store: Option<&Store>,
) -> Result<WriteReport, ArchiveError> {
    debug_assert!(
        entries
            .windows(2)
            .all(|w| w[0].name.as_bytes() < w[1].name.as_bytes())
    );
    let mut store_zip = match store {
        Some(s) => File::open(&s.path)
            .ok()
            .and_then(|f| ZipArchive::new(BufReader::new(f)).ok()),
        None => None,
    };
    // Decide up front which entries come from the store, so the workers
    // compress only the rest.
    let reuse: Vec<Option<(usize, Hash)>> = entries
        .iter()
        .map(|e| {
            let (s, zip) = (store?, store_zip.as_ref()?);
            let (name, digest) = s.by_content.get(&(e.hash, e.executable))?;
            Some((zip.index_for_name(name)?, *digest))
        })
        .collect();
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
            scope.spawn(|| pipeline.work(settings));
        }
        let result = (|| {
            let mut zip = ZipWriter::new(BufWriter::with_capacity(1 << 20, out));
            for (i, e) in entries.iter().enumerate() {
                let prepared = match reuse[i] {
                    Some((index, digest)) => {
                        let zip_in = store_zip.as_mut().expect("reuse implies a store");
                        if copy_if_intact(zip_in, index, digest, e, &mut zip)? {
                            report.reused += 1;
                            report.packed.push(packed(e, settings, digest));
                            continue;
                        }
                        report.rejected += 1;
                        prepare(e, settings)?
                    }
                    None => pipeline.take(i)?,
                };
                report.compressed += 1;
                let mut mini = ZipArchive::new(Cursor::new(prepared.mini_zip))?;
                zip.raw_copy_file_rename(mini.by_index_raw(0)?, &e.name)?;
                report.packed.push(packed(e, settings, prepared.digest));
            }
            let mut w = zip.finish()?;
            w.flush()?;
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

fn packed(e: &Entry, settings: &Settings, digest: Hash) -> PackedEntry {
    PackedEntry {
        name: e.name.clone(),
        content_hash: e.hash,
        executable: e.executable,
        settings: settings.id(),
        raw_hash: digest,
    }
}

/// Digest of an entry's raw record: its compressed bytes plus the header
/// facts a raw copy carries over (CRC, sizes, method, time, mode). A store
/// entry is reused only when this matches what was recorded when it was
/// written, so a corrupted store never reaches the zip.
fn raw_digest<R: Read>(file: &mut zip::read::ZipFile<'_, R>) -> Result<Hash, ArchiveError> {
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
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(*h.finalize().as_bytes())
}

/// Raw-copies entry `index` of the store when its record is intact and
/// describes `e`; returns false (copying nothing) otherwise.
fn copy_if_intact<R: Read + Seek, W: Write + Seek>(
    store: &mut ZipArchive<R>,
    index: usize,
    digest: Hash,
    e: &Entry,
    zip: &mut ZipWriter<W>,
) -> Result<bool, ArchiveError> {
    let intact = match store.by_index_raw(index) {
        Ok(mut f) => f.size() == e.size && raw_digest(&mut f).ok() == Some(digest),
        Err(_) => false,
    };
    if intact {
        zip.raw_copy_file_rename(store.by_index_raw(index)?, &e.name)?;
    }
    Ok(intact)
}

/// Reads, checks and compresses one entry into a one-entry zip in memory.
fn prepare(e: &Entry, settings: &Settings) -> Result<Prepared, ArchiveError> {
    let data = std::fs::read(&e.path).map_err(|source| ArchiveError::Read {
        path: e.path.clone(),
        source,
    })?;
    // The key was computed from the hash: bytes that differ now would make
    // the zip disagree with its key (and with a cold build).
    if blake3::hash(&data).as_bytes() != &e.hash {
        return Err(ArchiveError::ChangedDuringBuild {
            path: e.path.clone(),
        });
    }
    let method = if settings.level == 0 {
        CompressionMethod::Stored
    } else {
        CompressionMethod::Deflated
    };
    let mut prepared =
        zip::write::PreparedZipFile::from_data("x", settings.options(e.executable, method), &data)?;
    // Stored when deflate does not make it smaller: a rule on bytes alone.
    if method == CompressionMethod::Deflated && prepared.compressed_size() >= data.len() as u64 {
        prepared = zip::write::PreparedZipFile::from_data(
            "x",
            settings.options(e.executable, CompressionMethod::Stored),
            &data,
        )?;
    }
    drop(data);
    let mut mini = ZipWriter::new(Cursor::new(Vec::with_capacity(
        prepared.compressed_size() as usize + 128,
    )));
    mini.add_prepared_file(prepared)?;
    let mini_zip = mini.finish()?.into_inner();
    let mut archive = ZipArchive::new(Cursor::new(&mini_zip[..]))?;
    let digest = raw_digest(&mut archive.by_index_raw(0)?)?;
    drop(archive);
    Ok(Prepared { mini_zip, digest })
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

    fn work(&self, settings: &Settings) {
        loop {
            let i = {
                let mut st = self.state.lock().expect("poisoned");
                loop {
                    if st.aborted || st.next_job >= self.jobs.len() {
                        return;
                    }
                    let i = self.jobs[st.next_job];
                    let size = self.entries[i].size;
                    if st.in_flight == 0 || st.in_flight + size <= IN_FLIGHT_BUDGET {
                        st.next_job += 1;
                        st.in_flight += size;
                        break i;
                    }
                    st = self.cond.wait(st).expect("poisoned");
                }
            };
            let result = prepare(&self.entries[i], settings);
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
                st.in_flight -= self.entries[i].size;
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
}
