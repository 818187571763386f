//! The archive's I/O adapters: what the writer writes through and reads
//! the stores with. Owns buffering, position keeping and the running
//! SHA-256 of the output; knows nothing of zip entries or where files live.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;

use sha2::{Digest, Sha256};

/// A writer that can be told to swallow everything from then on, so a zip
/// writer dropped after a failure has nothing left to finish. It keeps the
/// position itself: the zip writer still seeks while it "finishes".
pub(super) struct Abandonable<W> {
    pub(super) inner: W,
    abandoned: std::rc::Rc<std::cell::Cell<bool>>,
    pos: u64,
    len: u64,
}

impl<W> Abandonable<W> {
    pub(super) fn new(inner: W) -> Self {
        Abandonable {
            inner,
            abandoned: Default::default(),
            pos: 0,
            len: 0,
        }
    }

    pub(super) fn switch(&self) -> std::rc::Rc<std::cell::Cell<bool>> {
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
pub(super) struct HashingWriter<'a> {
    out: &'a File,
    buf: Vec<u8>,
    /// Logical position (what the zip writer sees).
    pos: u64,
    /// Logical length of the file.
    len: u64,
    /// Running hash of every byte, while they were only ever appended.
    sha: Option<RunningSha>,
    /// Set once the zip is abandoned (a write failed, or the caller gave
    /// up): every later write, flush and seek is a no-op that succeeds, so
    /// the zip writer's destructor, which finishes an unfinished archive,
    /// neither writes more nor prints its own error to stderr.
    discard: std::rc::Rc<std::cell::Cell<bool>>,
}

/// The running SHA-256 of the zip: on the writer's thread until its first
/// full buffer, then on a helper thread. Most zips of a workspace are a few
/// kilobytes: a thread started and joined for each cost more than hashing
/// them where they are.
enum RunningSha {
    Here(Sha256),
    Helper(BackgroundSha),
}

impl RunningSha {
    /// Hashes `chunk`, on the helper thread if `full` (started then, from
    /// the hash so far); false if the helper is gone.
    fn add(&mut self, chunk: Vec<u8>, full: bool) -> Option<Vec<u8>> {
        if let RunningSha::Here(h) = self
            && full
        {
            *self = RunningSha::Helper(BackgroundSha::start(std::mem::take(h)));
        }
        match self {
            RunningSha::Here(h) => {
                h.update(&chunk);
                Some(chunk)
            }
            RunningSha::Helper(sha) => {
                let spare = sha.buffer();
                sha.send(chunk).then_some(spare)
            }
        }
    }

    fn finish(self) -> Option<[u8; 32]> {
        match self {
            RunningSha::Here(h) => Some(h.finalize().into()),
            RunningSha::Helper(sha) => sha.finish(),
        }
    }
}

/// SHA-256 on a helper thread, fed the buffers the writer flushes (a
/// bounded queue, so memory stays a few buffers whatever the zip's size).
struct BackgroundSha {
    chunks: std::sync::mpsc::SyncSender<Vec<u8>>,
    spare: std::sync::mpsc::Receiver<Vec<u8>>,
    thread: std::thread::JoinHandle<[u8; 32]>,
}

impl BackgroundSha {
    /// Continues `h` on a new thread.
    fn start(mut h: Sha256) -> Self {
        let (chunks, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
        let (back, spare) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
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

    pub(super) fn new(mut out: &'a File) -> std::io::Result<Self> {
        let pos = out.stream_position()?;
        let len = out.metadata()?.len();
        Ok(HashingWriter {
            out,
            buf: Vec::with_capacity(Self::CAPACITY),
            pos,
            len,
            sha: (pos == 0 && len == 0).then(|| RunningSha::Here(Sha256::new())),
            discard: Default::default(),
        })
    }

    /// Setting it abandons the zip (see [`HashingWriter::discard`]).
    pub(super) fn discard_switch(&self) -> std::rc::Rc<std::cell::Cell<bool>> {
        self.discard.clone()
    }

    /// Writes to the file; a failure abandons the zip.
    fn write_out(&mut self, data: &[u8]) -> std::io::Result<()> {
        let mut out = self.out;
        out.write_all(data).inspect_err(|_| self.discard.set(true))
    }

    /// Writes the buffer out; `full`: it is full (more is coming).
    fn flush_buf(&mut self, full: bool) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let buf = std::mem::take(&mut self.buf);
        let written = self.write_out(&buf);
        self.buf = buf;
        written?;
        if let Some(sha) = &mut self.sha {
            match sha.add(std::mem::take(&mut self.buf), full) {
                Some(spare) => self.buf = spare,
                None => self.sha = None,
            }
        }
        self.buf.clear();
        if self.buf.capacity() == 0 {
            self.buf.reserve(Self::CAPACITY);
        }
        Ok(())
    }

    /// The SHA-256 and size of the file, if every byte was appended in order.
    pub(super) fn finish(self) -> Option<([u8; 32], u64)> {
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
            self.flush_buf(true)?;
        }
        if data.len() >= Self::CAPACITY {
            self.write_out(data)?;
            if let Some(sha) = &mut self.sha
                && sha.add(data.to_vec(), true).is_none()
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
        self.flush_buf(false)?;
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
        self.flush_buf(false)?;
        self.sha = None;
        self.pos = self.out.seek(to)?;
        Ok(self.pos)
    }
}

/// The store, read with `pread` through a buffer that survives seeks: the
/// zip reader seeks before every entry, which makes `BufReader` drop its
/// buffer (and `lseek`) each time although the entries are read in order.
pub(super) struct PReader {
    file: File,
    len: u64,
    pos: u64,
    buf: Box<[u8]>,
    buf_start: u64,
    buf_len: usize,
}

impl PReader {
    pub(super) fn new(file: File) -> std::io::Result<Self> {
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

#[cfg(test)]
mod tests {
    use super::*;

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

    /// The running SHA-256 is the file's whether the zip stays under one
    /// buffer (hashed on the writer's thread) or grows past it (continued
    /// on the helper thread), by small writes or one larger than a buffer.
    #[test]
    fn the_running_hash_is_the_files_small_or_large() {
        use sha2::Digest;
        let chunk = |n: usize, seed: u8| -> Vec<u8> {
            (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect()
        };
        let cap = HashingWriter::CAPACITY;
        let cases: Vec<Vec<Vec<u8>>> = vec![
            vec![chunk(100, 1), chunk(5000, 2)],
            (0..40).map(|k| chunk(cap / 16, k)).collect(),
            vec![
                chunk(7, 3),
                chunk(cap + 17, 4),
                chunk(300, 5),
                chunk(cap, 6),
            ],
        ];
        for (k, writes) in cases.iter().enumerate() {
            let file = tempfile::tempfile().unwrap();
            let mut w = HashingWriter::new(&file).unwrap();
            for data in writes {
                w.write_all(data).unwrap();
            }
            w.flush().unwrap();
            let (sha, len) = w.finish().expect("appended in order");
            let mut bytes = Vec::new();
            let mut f = &file;
            f.seek(SeekFrom::Start(0)).unwrap();
            f.read_to_end(&mut bytes).unwrap();
            assert_eq!(len, bytes.len() as u64, "case {k}");
            assert_eq!(
                sha,
                <[u8; 32]>::from(sha2::Sha256::digest(&bytes)),
                "case {k}"
            );
        }
    }
}
