//! What the bytes are: the format version and deflate backends in every
//! key, the archive [`Settings`] (level, the one DOS time) and each entry's
//! metadata, the one-entry zip every entry travels in ([`MiniZip`], written
//! by hand for in-memory entries) and the digest that identifies an entry's
//! raw record. Does not compress (`compress.rs`), check (`verify.rs`) or
//! write the archive (`write.rs`).

use std::fs::File;
use std::io::{Cursor, Read, Seek, Write};

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipArchive, ZipWriter};

use super::ArchiveError;
use crate::cache::Hash;
use crate::entry::Entry;

/// Bumped whenever the bytes lbuild writes for the same inputs change.
/// Part of every stage key.
pub(crate) const FORMAT_VERSION: u32 = 5;

/// The deflate implementations and their exact versions (from Cargo.lock,
/// see build.rs): a different backend gives different bytes. libdeflate
/// compresses every entry up to [`STREAM_THRESHOLD`] as one buffer; zlib-rs
/// streams the larger ones.
pub(crate) const DEFLATE_BACKEND: &str = concat!(
    "libdeflate-sys ",
    env!("LBUILD_LIBDEFLATE_VERSION"),
    " + zlib-rs ",
    env!("LBUILD_ZLIB_RS_VERSION"),
    " above 32 MiB in 1 MiB pieces"
);

/// Files up to this size are read whole and compressed by libdeflate (which
/// only takes whole buffers); larger ones are deflated by zlib-rs in
/// pieces (`chunked.rs`) into a temporary file, so memory stays bounded
/// whatever one file weighs (a bundled model, a large .so). 32 MiB keeps
/// the shared libraries of common packages (numpy's 25 MB OpenBLAS) on
/// libdeflate, which makes them smaller than zlib-rs does, while one entry
/// in memory (its bytes and its compressed bytes) stays under 64 MiB. Part
/// of the format: a file's size decides its compressor.
pub(super) const STREAM_THRESHOLD: u64 = 32 * 1024 * 1024;

/// The streamed path's zlib-rs level for a given lbuild level: 9 from
/// level 6 up. zlib-rs at 6 or 7 compresses about 2% worse than libdeflate
/// at the same level, so a large extension module (125 MB) came out
/// larger than `zip -6`'s; 9 is zlib's best (libdeflate's 10..=12 have no
/// zlib equivalent) and makes a 177.6 MB one 1.2% smaller than `zip -6`
/// does. Below 6 the user asked for speed: kept.
pub(super) fn streamed_level(level: u32) -> u32 {
    if level >= 6 { 9 } else { level }
}

/// Compression settings shared by every entry of one archive.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub level: u32,
    pub time: DateTime,
}

impl Settings {
    /// Identifies the bytes these settings produce, for the reuse store.
    pub(crate) fn id(&self) -> Hash {
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

    pub(super) fn options(&self, executable: bool, method: CompressionMethod) -> SimpleFileOptions {
        let level =
            (method == CompressionMethod::Deflated).then_some(streamed_level(self.level) as i64);
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
pub(crate) fn dos_time_from_unix(secs: i64) -> DateTime {
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

/// A compressed entry as a one-entry zip in memory, plus the digest of its
/// raw record (see [`raw_digest`]).
pub(super) struct Prepared {
    pub(super) mini_zip: MiniZip,
    pub(super) digest: Hash,
    /// Found in the machine store (not compressed by this build).
    pub(super) from_store: bool,
    /// A machine-store entry was there but did not verify.
    pub(super) store_rejected: bool,
}

/// Where a compressed entry's one-entry zip lives.
pub(super) enum MiniZip {
    Memory(Vec<u8>),
    /// An anonymous temporary file (entries above [`STREAM_THRESHOLD`]).
    File(File),
}

impl MiniZip {
    pub(super) fn compressed_size(&mut self) -> Result<u64, ArchiveError> {
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

    pub(super) fn digest(&mut self, buf: &mut [u8]) -> Result<Hash, ArchiveError> {
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
    pub(super) fn copy_into<W: Write + Seek>(
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

/// Read buffer for [`raw_digest`], allocated once per thread, not per entry.
pub(super) const DIGEST_BUF: usize = 256 * 1024;

/// Digest of an entry's raw record: its compressed bytes plus every header
/// fact a raw copy carries over (CRC, sizes, method, time, system, all 32
/// bits of the external attributes, the flags a copy keeps, comment and
/// extra fields). A store entry is reused only when this matches what was
/// recorded when it was written, so no corrupted byte of the store can reach
/// the zip. (The name is not copied: the copy is renamed, and the language
/// encoding flag is derived from the new name.)
pub(super) fn raw_digest<R: Read>(
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
pub(super) fn raw_digest_header<R: Read>(file: &zip::read::ZipFile<'_, R>) -> blake3::Hasher {
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

/// Writes the one-entry zip the zip crate would write for `e` (local header,
/// data, central directory, end record; no extra fields, no data
/// descriptor), with `deflated` as its data when given, else `data` stored.
/// The zip crate cannot take data compressed elsewhere, and a raw copy out
/// of this zip is how the entry reaches the archive, as every other one.
/// Only for entries up to [`STREAM_THRESHOLD`] (no ZIP64).
pub(super) fn one_entry_zip(
    e: &Entry,
    settings: &Settings,
    data: &[u8],
    deflated: Option<&[u8]>,
) -> Vec<u8> {
    debug_assert!(data.len() < u32::MAX as usize);
    let (method, body): (u16, &[u8]) = match deflated {
        Some(d) => (8, d),
        None => (0, data),
    };
    let facts = BodyFacts {
        deflated: method == 8,
        crc: libdeflater::crc32(data),
        size: data.len() as u32,
        compressed: body.len() as u32,
    };
    let (header, tail) = one_entry_frame(e, settings, &facts);
    let mut z = Vec::with_capacity(header.len() + body.len() + tail.len());
    z.extend_from_slice(&header);
    z.extend_from_slice(body);
    z.extend_from_slice(&tail);
    z
}

/// What the headers of a one-entry zip say about its data.
pub(super) struct BodyFacts {
    pub(super) deflated: bool,
    pub(super) crc: u32,
    pub(super) size: u32,
    pub(super) compressed: u32,
}

/// The bytes of a one-entry zip before its data (the local header, of a
/// fixed length) and after it (central directory and end record), as the
/// zip crate would write them for `e` with no extra fields: the streamed
/// path writes its data between them without holding it.
pub(super) fn one_entry_frame(
    e: &Entry,
    settings: &Settings,
    facts: &BodyFacts,
) -> (Vec<u8>, Vec<u8>) {
    const NAME: &[u8] = b"x";
    let method: u16 = if facts.deflated { 8 } else { 0 };
    let (crc, csize, size) = (facts.crc, facts.compressed, facts.size);
    let mode: u32 = 0o100000 | if e.executable { 0o755 } else { 0o644 };
    let (date, time) = (settings.time.datepart(), settings.time.timepart());
    let version_needed: u16 = if method == 8 { 20 } else { 10 };
    // Made by: Unix (3), the version zip's writer declares.
    let made_by: u16 = (3 << 8) | 20;
    let put16 = |v: &mut Vec<u8>, x: u16| v.extend_from_slice(&x.to_le_bytes());
    let put32 = |v: &mut Vec<u8>, x: u32| v.extend_from_slice(&x.to_le_bytes());
    // Local file header.
    let mut header = Vec::with_capacity(30 + NAME.len());
    put32(&mut header, 0x0403_4b50);
    for x in [version_needed, 0, method, time, date] {
        put16(&mut header, x);
    }
    for x in [crc, csize, size] {
        put32(&mut header, x);
    }
    put16(&mut header, NAME.len() as u16);
    put16(&mut header, 0);
    header.extend_from_slice(NAME);
    // Central directory, just after the data.
    let cd_start = header.len() as u32 + csize;
    let mut z = Vec::with_capacity(46 + 22 + NAME.len());
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
    let cd_len = z.len() as u32;
    // End of central directory.
    put32(&mut z, 0x0605_4b50);
    for x in [0, 0, 1, 1] {
        put16(&mut z, x);
    }
    put32(&mut z, cd_len);
    put32(&mut z, cd_start);
    put16(&mut z, 0);
    (header, z)
}

pub(super) fn entry_options(
    e: &Entry,
    settings: &Settings,
    method: CompressionMethod,
) -> SimpleFileOptions {
    settings
        .options(e.executable, method)
        .large_file(e.size >= u32::MAX as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::testing::{copied, noise};
    use std::path::PathBuf;

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
}
