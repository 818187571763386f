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
use std::io::{Cursor, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

use sha2::{Digest, Sha256};

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipArchive, ZipWriter};

use crate::cache::{Hash, PackedEntry};
use crate::entry::Entry;

/// Bumped whenever the bytes lbuild writes for the same inputs change.
/// Part of every stage key.
pub const FORMAT_VERSION: u32 = 2;

/// The deflate implementation and its exact version (from Cargo.lock, see
/// build.rs): a different backend gives different bytes.
pub const DEFLATE_BACKEND: &str = concat!("zlib-rs ", env!("LBUILD_ZLIB_RS_VERSION"));

/// Uncompressed bytes that may be read and compressed ahead of the writer.
const IN_FLIGHT_BUDGET: u64 = 48 * 1024 * 1024;

/// Files larger than this are compressed as a stream into a temporary file
/// instead of in memory, so memory stays bounded whatever one file weighs
/// (a bundled model, a large .so). Same bytes either way.
const STREAM_THRESHOLD: u64 = 8 * 1024 * 1024;

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
}

impl ArchiveError {
    pub fn hint(&self) -> Option<String> {
        match self {
            ArchiveError::ChangedDuringBuild { .. } => {
                Some("run lbuild again (lbuild watch does so by itself)".into())
            }
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
            .and_then(|f| ZipArchive::new(PReader::new(f).ok()?).ok()),
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
            let settings_id = settings.id();
            let mut buf = vec![0u8; DIGEST_BUF];
            let mut zip = ZipWriter::new(HashingWriter::new(out)?);
            for (i, e) in entries.iter().enumerate() {
                let prepared = match reuse[i] {
                    Some((index, digest)) => {
                        let zip_in = store_zip.as_mut().expect("reuse implies a store");
                        if copy_if_intact(zip_in, index, digest, e, &mut zip, &mut buf)? {
                            report.reused += 1;
                            report.packed.push(packed(e, settings_id, digest));
                            continue;
                        }
                        report.rejected += 1;
                        prepare(e, settings, &mut buf)?
                    }
                    None => pipeline.take(i)?,
                };
                report.compressed += 1;
                prepared.mini_zip.copy_into(&mut zip, &e.name)?;
                report.packed.push(packed(e, settings_id, prepared.digest));
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
    loop {
        let n = file.read(buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize())
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

/// Reads, checks and compresses one entry into a one-entry zip: in memory,
/// or for a file above [`STREAM_THRESHOLD`] streamed into a temporary file.
/// Deflate is fed in fixed [`DEFLATE_CHUNK`] pieces either way: zlib-rs's
/// output depends on how its input is cut, so the cut is part of the format.
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
    let data = if e.size <= threshold {
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
        Some(data)
    } else {
        None
    };
    let mut build = |method: CompressionMethod| match &data {
        Some(data) => {
            let sink = Cursor::new(Vec::with_capacity(data.len() / 2 + 128));
            let mut mini = ZipWriter::new(sink);
            mini.start_file("x", entry_options(e, settings, method))?;
            for chunk in data.chunks(DEFLATE_CHUNK) {
                mini.write_all(chunk)?;
            }
            Ok(MiniZip::Memory(mini.finish()?.into_inner()))
        }
        None => stream_into_mini_zip(e, settings, method, buf).map(MiniZip::File),
    };
    let method = if settings.level == 0 {
        CompressionMethod::Stored
    } else {
        CompressionMethod::Deflated
    };
    let mut mini_zip = build(method)?;
    // Stored when deflate does not make it smaller: a rule on bytes alone.
    if method == CompressionMethod::Deflated && mini_zip.compressed_size()? >= e.size {
        mini_zip = build(CompressionMethod::Stored)?;
    }
    let digest = mini_zip.digest(buf)?;
    Ok(Prepared { mini_zip, digest })
}

/// Bytes handed to the compressor per write.
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
    let mut mini = ZipWriter::new(std::io::BufWriter::new(tempfile::tempfile()?));
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
    let mut file = mini
        .finish()?
        .into_inner()
        .map_err(|e| ArchiveError::Write(e.into_error()))?;
    file.rewind()?;
    Ok(file)
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
        })
    }

    fn flush_buf(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.out.write_all(&self.buf)?;
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
        if self.buf.len() + data.len() > Self::CAPACITY {
            self.flush_buf()?;
        }
        if data.len() >= Self::CAPACITY {
            self.out.write_all(data)?;
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

    fn work(&self, settings: &Settings) {
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
            let result = prepare(&self.entries[i], settings, &mut buf);
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

    #[test]
    fn large_files_streamed_give_the_same_bytes_as_in_memory() {
        // Above STREAM_THRESHOLD a file is deflated as a stream into a
        // temporary zip: the entry must be byte for byte what the in-memory
        // path makes, for deflated and stored (incompressible) files.
        let dir = tempfile::tempdir().unwrap();
        let noise = noise(STREAM_THRESHOLD as usize + 4096, 7);
        let text: Vec<u8> = (0..(STREAM_THRESHOLD as u32 / 3))
            .flat_map(|i| format!("{}\n", i % 977).into_bytes())
            .collect();
        assert!(text.len() as u64 > STREAM_THRESHOLD);
        let entries = entries_in(dir.path(), &[("noise.bin", noise), ("text.txt", text)]);
        for level in [0, 6] {
            let settings = Settings {
                level,
                time: dos_time_from_unix(0),
            };
            for e in &entries {
                let mut buf = vec![0u8; 64 * 1024];
                let streamed = prepare(e, &settings, &mut buf).unwrap();
                assert!(matches!(streamed.mini_zip, MiniZip::File(_)));
                let in_memory = prepare_streaming_above(e, &settings, &mut buf, u64::MAX).unwrap();
                assert!(matches!(in_memory.mini_zip, MiniZip::Memory(_)));
                assert_eq!(
                    streamed.digest, in_memory.digest,
                    "{} at level {level}",
                    e.name
                );
                let bytes = |p: Prepared| {
                    let out = tempfile::tempfile().unwrap();
                    let mut zip = ZipWriter::new(&out);
                    p.mini_zip.copy_into(&mut zip, &e.name).unwrap();
                    zip.finish().unwrap();
                    let mut v = Vec::new();
                    let mut r = &out;
                    r.rewind().unwrap();
                    r.read_to_end(&mut v).unwrap();
                    v
                };
                assert_eq!(
                    bytes(streamed),
                    bytes(in_memory),
                    "{} at level {level}",
                    e.name
                );
            }
        }
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
            let report = write_zip(&f, entries, &settings, store).unwrap();
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
        let store = Store::new(&store_path, first.packed, &settings).unwrap();
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
