//! Writing the archive: entries in sorted order, each a raw copy of a
//! verified record from the [`EntrySource`] chain or of a one-entry zip a
//! worker made (a one-entry zip from a source, or compressed), workers
//! admitted in entry order under an in-flight byte budget so memory is
//! bounded and the output never depends on scheduling. Does not know what
//! a source is (a store, a remote: the chain is handed in) nor where the
//! zip ends up (the package stage writes a temp file and renames it).

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::sync::{Condvar, Mutex};

use zip::{ZipArchive, ZipWriter};

use super::ArchiveError;
use super::compress::prepare;
use super::format::{DIGEST_BUF, Prepared, STREAM_THRESHOLD, Settings};
use super::io::{HashingWriter, PReader};
use super::sources::{Compressed, EntrySource, SourceKind};
use super::verify::{copy_if_intact, open_stored_entry};
use crate::cache::{Hash, PackedEntry};
use crate::entry::Entry;

/// Uncompressed bytes that may be read and compressed ahead of the writer.
const IN_FLIGHT_BUDGET: u64 = 48 * 1024 * 1024;

/// Below this many bytes to compress, the writer compresses them itself:
/// starting and joining worker threads (~50 µs each) would cost more than
/// they save (libdeflate does ~100 MB/s at level 6). A function of a
/// workspace built over a warm store compresses only its few small files.
const INLINE_MAX: u64 = 64 * 1024;

/// What an entry costs of the in-flight budget: its bytes in memory.
fn budget_cost(size: u64) -> u64 {
    size.min(STREAM_THRESHOLD)
}

/// What writing the archive did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub(crate) struct WriteReport {
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

/// Entries of the zip being written that are already in it, for the
/// packaging progress line. A process writes one zip at a time (workspace
/// artifacts build in turn), so one counter is enough.
pub(crate) static ENTRIES_DONE: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(0);

/// Where an entry's record is: (source in the chain, zip of that source,
/// index in the zip, recorded digest).
#[derive(Clone, Copy)]
struct Located {
    source: usize,
    zip: usize,
    index: usize,
    digest: Hash,
}

/// The zips of every source's records, each opened (its central directory
/// read) only when an entry is found in it.
type OpenZips = Vec<Vec<Option<Option<ZipArchive<PReader>>>>>;

/// The first record of `e` among `chain[from..]` that is in a zip that
/// opens and holds its name.
fn locate(
    chain: &[&dyn EntrySource],
    zips: &mut OpenZips,
    e: &Entry,
    from: usize,
) -> Option<Located> {
    for (k, s) in chain.iter().enumerate().skip(from) {
        let Some(r) = s.record(e) else {
            continue;
        };
        let Some(slot) = zips[k].get_mut(r.zip) else {
            continue;
        };
        let zip = slot.get_or_insert_with(|| {
            File::open(&s.zips()[r.zip])
                .ok()
                .and_then(|f| ZipArchive::new(PReader::new(f).ok()?).ok())
        });
        if let Some(index) = zip.as_ref().and_then(|z| z.index_for_name(r.name)) {
            return Some(Located {
                source: k,
                zip: r.zip,
                index,
                digest: r.digest,
            });
        }
    }
    None
}

/// Writes `entries` (already sorted by name) to `out`, each copied from
/// the first source of `chain` that holds it intact, else compressed.
pub(crate) fn write_zip(
    out: &File,
    entries: &[Entry],
    settings: &Settings,
    chain: &[&dyn EntrySource],
) -> Result<WriteReport, ArchiveError> {
    debug_assert!(
        entries
            .windows(2)
            .all(|w| w[0].name.as_bytes() < w[1].name.as_bytes())
    );
    let mut zips: OpenZips = chain
        .iter()
        .map(|s| s.zips().iter().map(|_| None).collect())
        .collect();
    // Decide up front which entries have a record, so the workers compress
    // only the rest.
    let mut reuse: Vec<Option<Located>> = Vec::with_capacity(entries.len());
    for e in entries {
        reuse.push(locate(chain, &mut zips, e, 0));
    }
    let jobs: Vec<usize> = (0..entries.len()).filter(|&i| reuse[i].is_none()).collect();
    if !chain.is_empty() && !jobs.is_empty() {
        let wanted: Vec<&Entry> = jobs.iter().map(|&i| &entries[i]).collect();
        for s in chain {
            s.prefetch(&wanted, settings);
        }
    }

    let mut report = WriteReport {
        entries: entries.len(),
        ..WriteReport::default()
    };
    let pipeline = Pipeline::new(entries, &jobs);
    let inline = jobs.iter().map(|&i| entries[i].size).sum::<u64>() < INLINE_MAX;
    let threads = if inline {
        0
    } else {
        crate::process::cores().min(jobs.len())
    };

    let written = std::thread::scope(|scope| -> Result<(), ArchiveError> {
        for _ in 0..threads {
            scope.spawn(|| pipeline.work(settings, chain));
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
                            // The first record's copy, else the next
                            // source's (when one did not verify).
                            let mut candidate = Some(first);
                            let mut copied = false;
                            let mut tree_rejected = None;
                            while let Some(at) = candidate.take() {
                                let zip_in = zips[at.source][at.zip]
                                    .as_mut()
                                    .and_then(Option::as_mut)
                                    .expect("located implies an open zip");
                                let kind = chain[at.source].kind();
                                if copy_if_intact(
                                    zip_in, at.index, at.digest, e, &mut zip, &mut buf,
                                )? {
                                    if kind == SourceKind::Tree {
                                        report.from_tree += 1;
                                    } else {
                                        report.reused += 1;
                                    }
                                    report.packed.push(packed(e, settings_id, at.digest));
                                    copied = true;
                                    break;
                                }
                                report.rejected += 1;
                                if kind == SourceKind::Tree {
                                    tree_rejected = Some(at);
                                }
                                candidate = locate(chain, &mut zips, e, at.source + 1);
                            }
                            if copied {
                                continue;
                            }
                            match ready_or_compress(chain, e, settings, &settings_id, &mut buf) {
                                // Not unpacked: the damaged zip was its only copy.
                                Err(ArchiveError::Read { source, .. })
                                    if source.kind() == std::io::ErrorKind::NotFound
                                        && let Some(at) = tree_rejected =>
                                {
                                    let path = chain[at.source].zips()[at.zip].clone();
                                    return Err(ArchiveError::DamagedTree { path });
                                }
                                other => other?,
                            }
                        }
                        None if inline => {
                            ready_or_compress(chain, e, settings, &settings_id, &mut buf)?
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

/// An entry no record served: the first one-entry zip of the chain that
/// checks out, else compressed and offered to every source to keep.
fn ready_or_compress(
    chain: &[&dyn EntrySource],
    e: &Entry,
    settings: &Settings,
    settings_id: &Hash,
    buf: &mut [u8],
) -> Result<Prepared, ArchiveError> {
    let mut store_rejected = false;
    for s in chain {
        let Some(found) = s.one_entry(e, settings_id) else {
            continue;
        };
        match open_stored_entry(found.file, e, settings, buf) {
            Some(p) => {
                s.used(&found.path);
                return Ok(p);
            }
            None => {
                store_rejected = true;
                s.rejected(&found.path);
            }
        }
    }
    let mut p = prepare(e, settings, buf)?;
    p.store_rejected = store_rejected;
    for s in chain {
        s.keep(e, settings_id, &mut Compressed(&mut p.mini_zip));
    }
    Ok(p)
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

    fn work(&self, settings: &Settings, chain: &[&dyn EntrySource]) {
        let settings_id = settings.id();
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
                ready_or_compress(chain, &self.entries[i], settings, &settings_id, &mut buf)
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
    use crate::archive::ReuseStore;
    use crate::archive::format::dos_time_from_unix;
    use crate::archive::testing::{entries_in, noise, sha_of};
    use std::path::Path;

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
        let build = |entries: &[Entry], store: Option<&ReuseStore>, out: &Path| {
            let f = File::create(out).unwrap();
            let chain: Vec<&dyn EntrySource> = store.iter().map(|s| *s as _).collect();
            let report = write_zip(&f, entries, &settings, &chain).unwrap();
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
        let store = ReuseStore::new(dir.path(), packed, &settings, "store.zip").unwrap();
        let incremental = dir.path().join("incremental.zip");
        let report = build(&entries, Some(&store), &incremental);
        assert_eq!((report.compressed, report.reused), (1, 3));

        let cold = dir.path().join("cold.zip");
        build(&entries, None, &cold);
        assert_eq!(
            fs_err::read(&incremental).unwrap(),
            fs_err::read(&cold).unwrap()
        );
    }
}
