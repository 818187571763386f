//! Deflating one large file on several threads into one deflate stream, as
//! pigz does: the file is cut at fixed offsets into [`CHUNK`]-byte pieces,
//! each deflated by zlib-rs with the 32 KiB before it as its dictionary and
//! ended with a sync flush (an empty stored block, so the next piece starts
//! on a byte boundary), the last one finished. The pieces concatenate into
//! a stream whose bytes depend only on the file and the level: cuts are
//! byte offsets, never thread counts or timing. Memory stays bounded: at
//! most [`lookahead`] pieces are read ahead of the one being written.
//! Does not write zip headers (`format.rs`) nor decide which files take
//! this path (`compress.rs`).

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::sync::{Condvar, Mutex};

use flate2::{Compress, Compression, FlushCompress, Status};

/// Bytes per piece. Part of the format: a piece's end is a flush point.
/// 1 MiB costs about 0.01% against one stream (a 177 MB extension module:
/// 51,952,404 bytes against 51,949,216) while two pieces per thread in
/// flight stay a few MiB.
pub(super) const CHUNK: usize = 1024 * 1024;

/// Deflate's window: the dictionary each piece is primed with.
const WINDOW: usize = 32 * 1024;

/// Threads one file is deflated on, at most: with [`lookahead`] that keeps
/// at most 16 pieces (about 34 MiB: each piece's input and its output) in
/// memory, near the 32 MiB the archive writer counts for a streamed entry,
/// however many cores the machine has.
const MAX_THREADS: usize = 8;

/// Pieces read or deflated but not yet written, at most (two per thread, so
/// no thread waits for the writer while another finishes).
fn lookahead(threads: usize) -> usize {
    2 * threads
}

/// What deflating the file gave.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Deflated {
    pub(super) crc: u32,
    pub(super) compressed: u64,
    /// blake3 of the bytes read, checked by the caller against the entry.
    pub(super) hash: blake3::Hash,
}

#[derive(Debug, thiserror::Error)]
pub(super) enum ChunkError {
    #[error("{0}")]
    Read(std::io::Error),
    /// The file ended early, or a piece's dictionary no longer matches the
    /// bytes before it (the file was written to meanwhile).
    #[error("the file changed while it was read")]
    Changed,
    #[error("{0}")]
    Write(std::io::Error),
}

/// One piece read and deflated: its input (dictionary first) and output.
struct Piece {
    input: Vec<u8>,
    dict: usize,
    output: Vec<u8>,
}

/// Deflates the first `size` bytes of `file` at zlib `level` (1..=9) on
/// `threads` threads (at most [`MAX_THREADS`]) into `out`, as one raw
/// deflate stream.
pub(super) fn deflate_chunked(
    file: &File,
    size: u64,
    level: u32,
    threads: usize,
    out: &mut impl Write,
) -> Result<Deflated, ChunkError> {
    let pieces = (size as usize).div_ceil(CHUNK).max(1);
    let threads = threads.clamp(1, pieces.min(MAX_THREADS));
    let shared = Shared {
        state: Mutex::new(State::default()),
        cond: Condvar::new(),
    };
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| shared.work(file, size, level, pieces, lookahead(threads)));
        }
        let written = write_in_order(&shared, pieces, out);
        if written.is_err() {
            let mut st = shared.state.lock().expect("poisoned");
            st.failed = true;
            shared.cond.notify_all();
        }
        written
    })
}

#[derive(Default)]
struct State {
    next: usize,
    written: usize,
    done: HashMap<usize, Result<Piece, ChunkError>>,
    failed: bool,
}

struct Shared {
    state: Mutex<State>,
    cond: Condvar,
}

impl Shared {
    fn work(&self, file: &File, size: u64, level: u32, pieces: usize, ahead: usize) {
        let mut compress = Compress::new(Compression::new(level), false);
        loop {
            let k = {
                let mut st = self.state.lock().expect("poisoned");
                loop {
                    if st.failed || st.next >= pieces {
                        return;
                    }
                    if st.next < st.written + ahead {
                        st.next += 1;
                        break st.next - 1;
                    }
                    st = self.cond.wait(st).expect("poisoned");
                }
            };
            // A panic would leave the writer waiting: it becomes an error.
            let piece = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                deflate_piece(&mut compress, file, size, k, pieces)
            }))
            .unwrap_or_else(|_| {
                Err(ChunkError::Write(std::io::Error::other(
                    "deflating a piece panicked (a bug in lbuild)",
                )))
            });
            let mut st = self.state.lock().expect("poisoned");
            st.done.insert(k, piece);
            self.cond.notify_all();
        }
    }
}

/// Reads piece `k` (with the window before it) and deflates it.
fn deflate_piece(
    compress: &mut Compress,
    file: &File,
    size: u64,
    k: usize,
    pieces: usize,
) -> Result<Piece, ChunkError> {
    let start = k * CHUNK;
    let end = (start + CHUNK).min(size as usize);
    let from = start.saturating_sub(WINDOW);
    let mut input = vec![0u8; end - from];
    file.read_exact_at(&mut input, from as u64)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => ChunkError::Changed,
            _ => ChunkError::Read(e),
        })?;
    let dict = start - from;
    compress.reset();
    if dict > 0 {
        compress
            .set_dictionary(&input[..dict])
            .map_err(|e| ChunkError::Write(std::io::Error::other(e)))?;
    }
    let last = k + 1 == pieces;
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    let mut rest = &input[dict..];
    let mut output = Vec::with_capacity(rest.len() + rest.len() / 8 + 1024);
    loop {
        if output.capacity() - output.len() < 1024 {
            output.reserve(64 * 1024);
        }
        let before = compress.total_in();
        let status = compress
            .compress_vec(rest, &mut output, flush)
            .map_err(|e| ChunkError::Write(std::io::Error::other(e)))?;
        rest = &rest[(compress.total_in() - before) as usize..];
        // Done when everything is in and the flush left room unused (zlib's
        // rule: output space left over means the flush completed).
        let complete = if last {
            status == Status::StreamEnd
        } else {
            rest.is_empty() && output.len() < output.capacity()
        };
        if complete {
            break;
        }
    }
    Ok(Piece {
        input,
        dict,
        output,
    })
}

/// Takes the pieces in order: checks each one's dictionary against the
/// bytes before it, hashes its bytes and writes its output.
fn write_in_order(
    shared: &Shared,
    pieces: usize,
    out: &mut impl Write,
) -> Result<Deflated, ChunkError> {
    let mut crc = libdeflater::Crc::new();
    let mut hasher = blake3::Hasher::new();
    let mut compressed = 0u64;
    let mut tail: Vec<u8> = Vec::with_capacity(WINDOW);
    for k in 0..pieces {
        let piece = {
            let mut st = shared.state.lock().expect("poisoned");
            loop {
                if let Some(p) = st.done.remove(&k) {
                    break p;
                }
                st = shared.cond.wait(st).expect("poisoned");
            }
        }?;
        // The dictionary was read separately from the piece before: bytes
        // that differ would make the stream inflate to neither.
        if piece.input[..piece.dict] != tail[tail.len() - piece.dict..] {
            return Err(ChunkError::Changed);
        }
        let data = &piece.input[piece.dict..];
        crc.update(data);
        hasher.update(data);
        out.write_all(&piece.output).map_err(ChunkError::Write)?;
        compressed += piece.output.len() as u64;
        tail.clear();
        tail.extend_from_slice(&data[data.len().saturating_sub(WINDOW)..]);
        let mut st = shared.state.lock().expect("poisoned");
        st.written = k + 1;
        shared.cond.notify_all();
    }
    Ok(Deflated {
        crc: crc.sum(),
        compressed,
        hash: hasher.finalize(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::testing::noise;
    use std::io::Read;

    fn inflate(deflated: &[u8]) -> Vec<u8> {
        let mut back = Vec::new();
        flate2::read::DeflateDecoder::new(deflated)
            .read_to_end(&mut back)
            .unwrap();
        back
    }

    #[test]
    fn pieces_make_one_stream_whatever_the_number_of_threads() {
        // Text with long-range repeats (so dictionaries matter), noise,
        // and sizes on, around and below the piece size: the stream
        // inflates to the file, CRC, hash and size are right, and the
        // bytes are the same on 1, 2 and 3 threads.
        let dir = tempfile::tempdir().unwrap();
        let text: Vec<u8> = (0..200_000u32)
            .flat_map(|i| format!("R{:07} = {}\n", i % 50_000, i % 997).into_bytes())
            .collect();
        let mut mixed = noise(CHUNK + 17, 5);
        mixed.extend_from_slice(&text[..CHUNK + 5000]);
        for (name, data) in [
            ("empty", Vec::new()),
            ("small", text[..1000].to_vec()),
            ("exact", text[..2 * CHUNK].to_vec()),
            ("text", text.clone()),
            ("mixed", mixed),
        ] {
            let path = dir.path().join(name);
            fs_err::write(&path, &data).unwrap();
            let file = File::open(&path).unwrap();
            let mut first: Option<(Vec<u8>, Deflated)> = None;
            for threads in [1, 2, 3] {
                let mut out = Vec::new();
                let d = deflate_chunked(&file, data.len() as u64, 9, threads, &mut out).unwrap();
                assert_eq!(inflate(&out), data, "{name} on {threads} threads");
                assert_eq!(d.crc, libdeflater::crc32(&data), "{name}");
                assert_eq!(d.hash, blake3::hash(&data), "{name}");
                assert_eq!(d.compressed, out.len() as u64, "{name}");
                match &first {
                    None => first = Some((out, d)),
                    Some((bytes, d1)) => {
                        assert!(
                            *bytes == out && *d1 == d,
                            "{name}: {threads} threads differ"
                        )
                    }
                }
            }
        }
    }

    #[test]
    fn a_file_shorter_than_its_size_is_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs_err::write(&path, vec![b'a'; 3 * CHUNK]).unwrap();
        let file = File::open(&path).unwrap();
        let err = deflate_chunked(&file, 4 * CHUNK as u64, 6, 2, &mut Vec::new()).unwrap_err();
        assert!(matches!(err, ChunkError::Changed), "{err:?}");
    }
}
