//! Checking what a source found before any of it reaches the zip: a
//! record of a zip lbuild wrote against the digest recorded with it
//! ([`raw_digest`]), a one-entry zip from the machine or remote store, or a
//! dependency tree's whole zip, against what [`prepare`](super::compress::prepare)
//! would have made (every header field, then a full inflate to the content
//! hash). Does not find anything (`sources.rs`) nor decide what is done
//! with a failure (`write.rs`).

use std::fs::File;
use std::io::{Cursor, Read, Seek, Write};
use std::path::Path;

use zip::{CompressionMethod, ZipArchive, ZipWriter};

use super::ArchiveError;
use super::format::{
    DIGEST_BUF, MiniZip, Prepared, STREAM_THRESHOLD, Settings, raw_digest, raw_digest_header,
};
use super::io::PReader;
use crate::cache::Hash;
use crate::entry::Entry;

/// Raw-copies entry `index` of the store when its record is intact and
/// describes `e`; returns false (copying nothing) otherwise.
pub(super) fn copy_if_intact<R: Read + Seek, W: Write + Seek>(
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

pub(super) fn open_stored_entry(
    mut file: File,
    e: &Entry,
    settings: &Settings,
    buf: &mut [u8],
) -> Option<Prepared> {
    let len = file.metadata().ok()?.len();
    let mut mini_zip = if e.size <= STREAM_THRESHOLD && len <= STREAM_THRESHOLD + 4096 {
        let mut bytes = Vec::with_capacity(len as usize);
        file.read_to_end(&mut bytes).ok()?;
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

/// Checks a dependency tree's zip (from the remote store) against the
/// files it must hold, in order: entry `i` is named `files[i].name`, has
/// the header [`prepare`] writes for it, and inflates (CRC checked) to its
/// content hash. Returns the raw digest of each entry, or the name of the
/// first entry that fails (None: the zip itself is unreadable). On every
/// core, each worker with a reader of its own.
pub(crate) fn verify_tree_zip(
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
    let workers = crate::process::cores().min(files.len().max(1));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::dos_time_from_unix;
    use crate::archive::testing::{entries_in, noise};
    use crate::archive::write_zip;

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
        let report = write_zip(&File::create(&path).unwrap(), &entries, &settings, &[]).unwrap();
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
        let mut bytes = fs_err::read(&path).unwrap();
        let mut zip = ZipArchive::new(Cursor::new(&bytes[..])).unwrap();
        let at = zip.by_name("text.txt").unwrap().data_start().unwrap() as usize + 10;
        drop(zip);
        bytes[at] ^= 0xff;
        fs_err::write(&path, &bytes).unwrap();
        assert_eq!(
            verify_tree_zip(&path, &entries, &settings),
            Err(Some("text.txt".to_string()))
        );
    }
}
