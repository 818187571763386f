//! Compressing one entry into its one-entry zip: libdeflate on the whole
//! file in memory up to [`STREAM_THRESHOLD`], zlib-rs in pieces on every
//! core into a temporary file above it (`chunked.rs`; memory stays
//! bounded), stored when deflate does not make it smaller. Checks the bytes read against the entry's content
//! hash. Does not look anything up (`sources.rs`) nor decide what is
//! compressed (`write.rs`).

use std::cell::RefCell;
use std::fs::File;
use std::io::{Read, Seek, Write};

use zip::{CompressionMethod, ZipWriter};

use super::ArchiveError;
use super::chunked::{ChunkError, deflate_chunked};
use super::format::{
    BodyFacts, MiniZip, Prepared, STREAM_THRESHOLD, Settings, entry_options, one_entry_frame,
    one_entry_zip, streamed_level,
};
use super::io::Abandonable;
use crate::entry::Entry;

/// Reads, checks and compresses one entry into a one-entry zip: in memory
/// with libdeflate, or for a file above [`STREAM_THRESHOLD`] deflated in
/// pieces by zlib-rs into a temporary file. Stored when deflate does not make it
/// smaller (a rule on bytes alone).
pub(super) fn prepare(
    e: &Entry,
    settings: &Settings,
    buf: &mut [u8],
) -> Result<Prepared, ArchiveError> {
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
        let data = fs_err::read(&e.path).map_err(|source| ArchiveError::Read {
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
    } else if settings.level > 0 && e.size < FRAME_LIMIT {
        match deflate_into_mini_zip(e, settings)? {
            Some(file) => MiniZip::File(file),
            None => MiniZip::File(stream_into_mini_zip(
                e,
                settings,
                CompressionMethod::Stored,
                buf,
            )?),
        }
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
pub(super) fn deflate_if_smaller(data: &[u8], level: u32) -> Option<Vec<u8>> {
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

/// Above this a one-entry zip needs ZIP64, which [`one_entry_frame`] does
/// not write: such files (16 times Lambda's unzipped limit) are streamed
/// by the zip crate through zlib-rs in one stream.
const FRAME_LIMIT: u64 = 0xFFFF_0000;

/// Deflates `e` in pieces on every core ([`deflate_chunked`]) into a
/// one-entry zip in an anonymous temporary file, checking its hash on the
/// way; None when deflate does not make it smaller (the caller stores it).
fn deflate_into_mini_zip(e: &Entry, settings: &Settings) -> Result<Option<File>, ArchiveError> {
    let read_err = |source| ArchiveError::Read {
        path: e.path.clone(),
        source,
    };
    let input = File::open(&e.path).map_err(read_err)?;
    let threads = crate::process::cores();
    let blank = BodyFacts {
        deflated: true,
        crc: 0,
        size: 0,
        compressed: 0,
    };
    let header_len = one_entry_frame(e, settings, &blank).0.len();
    let mut sink = std::io::BufWriter::new(tempfile::tempfile()?);
    // The local header's room, filled in once CRC and sizes are known.
    sink.write_all(&vec![0u8; header_len])?;
    let level = streamed_level(settings.level);
    let deflated = match deflate_chunked(&input, e.size, level, threads, &mut sink) {
        Ok(d) => d,
        Err(ChunkError::Read(source)) => return Err(read_err(source)),
        Err(ChunkError::Write(err)) => return Err(ArchiveError::Write(err)),
        Err(ChunkError::Changed) => {
            return Err(ArchiveError::ChangedDuringBuild {
                path: e.path.clone(),
            });
        }
    };
    if deflated.hash != e.hash {
        return Err(ArchiveError::ChangedDuringBuild {
            path: e.path.clone(),
        });
    }
    if deflated.compressed >= e.size {
        return Ok(None);
    }
    let facts = BodyFacts {
        deflated: true,
        crc: deflated.crc,
        size: e.size as u32,
        compressed: deflated.compressed as u32,
    };
    let (header, tail) = one_entry_frame(e, settings, &facts);
    sink.write_all(&tail)?;
    let mut file = sink
        .into_inner()
        .map_err(|e| ArchiveError::Write(e.into_error()))?;
    file.rewind()?;
    file.write_all(&header)?;
    file.rewind()?;
    Ok(Some(file))
}

/// Bytes handed to zlib-rs per write on the streamed path: its output
/// depends on how its input is cut, so the cut is part of the format.
const DEFLATE_CHUNK: usize = 64 * 1024;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::dos_time_from_unix;
    use crate::archive::format::DIGEST_BUF;
    use crate::archive::testing::{copied, entries_in, noise};
    use std::io::Cursor;
    use zip::ZipArchive;

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
                    assert_eq!(content, fs_err::read(&e.path).unwrap(), "{what}");
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
}
