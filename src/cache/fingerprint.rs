//! File fingerprints: decide whether a file must be read again.
//!
//! Stat data (size, mtime_ns, inode, ctime_ns) only decides whether to
//! re-hash; the BLAKE3 content hash is what stages put in their keys. A file
//! whose mtime lies within [`RACY_WINDOW_NS`] of the moment its hash was
//! recorded is "racily clean" (git's term): a second write in the same
//! timestamp tick would not change its stat data, so it is re-hashed until
//! it has been recorded well after its last change.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use rusqlite::params;

use super::{Cache, CacheError, now_ns};
use crate::entry::{Hash, hash_file};

/// Timestamps closer than this to the recording instant are not trusted.
/// Two seconds covers coarse file systems (FAT, some network mounts) and
/// the kernel's jiffy-grained clock for mtimes.
pub(crate) const RACY_WINDOW_NS: i64 = 2_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stat {
    size: u64,
    mtime_ns: i64,
    ino: u64,
    ctime_ns: i64,
}

impl Stat {
    fn of(meta: &std::fs::Metadata) -> Stat {
        Stat {
            size: meta.len(),
            mtime_ns: crate::entry::mtime_ns(meta),
            ino: meta.ino(),
            ctime_ns: crate::entry::ctime_ns(meta),
        }
    }
}

/// A file's content hash with the stat facts stages need.
#[derive(Debug, Clone)]
pub(crate) struct FileHash {
    pub hash: Hash,
    pub size: u64,
    /// Any execute bit set.
    pub executable: bool,
}

/// How much real reading a hashing pass did.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub(crate) struct HashStats {
    pub files: usize,
    pub hashed: usize,
    pub bytes_hashed: u64,
}

/// Content hashes this `Cache` settled (trusted or read), by path, with the
/// stat facts they were settled at. A `Cache` lives for one build (one
/// `lbuild build`, one watch rebuild): a file settled once is neither
/// stat'ed nor asked of the database again by the next artifact that
/// selects it, so a build sees each shared file as it was at its first
/// look (80 functions sharing 31 files: 2,480 `statx` of deep paths fewer,
/// about a sixth of the no-op). Only files past the racy window are kept,
/// so this trusts nothing the database would not: a racy file is stat'ed
/// and read by every pass.
///
/// The next build stats again (so does each watch rebuild, which opens a
/// new `Cache`), so an edit is never missed. A file saved while a
/// workspace builds reaches a later artifact with the hash of the build's
/// first look: a no-op artifact stays consistent with the others, and an
/// artifact whose zip is written fails "changed while the zip was being
/// written" (the writer checks every file's bytes against its hash),
/// which `watch` retries and a one-shot build reports.
///
/// Keyed by the path's bytes: hashing a `Path` walks its components, and
/// this map is asked once per file per artifact.
pub(crate) type Settled = HashMap<std::ffi::OsString, SettledFile>;

/// What [`Settled`] keeps of a file.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SettledFile {
    hash: Hash,
    size: u64,
    executable: bool,
}

impl Cache {
    /// Content hashes of `paths` (absolute), reading only files whose
    /// fingerprint changed or is racy. New fingerprints are recorded.
    pub(crate) fn hash_files(
        &mut self,
        paths: &[PathBuf],
    ) -> Result<(Vec<FileHash>, HashStats), CacheError> {
        let started = now_ns();
        let mut stats = HashStats {
            files: paths.len(),
            ..HashStats::default()
        };
        // What this build already settled is neither stat'ed nor asked
        // again (see `Settled`).
        let settled: Vec<Option<SettledFile>> = paths
            .iter()
            .map(|p| self.settled.get(p.as_os_str()).copied())
            .collect();
        let mut metas: Vec<Option<std::fs::Metadata>> = Vec::with_capacity(paths.len());
        for (p, was) in paths.iter().zip(&settled) {
            metas.push(match was {
                Some(_) => None,
                None => Some(fs_err::metadata(p).map_err(|source| CacheError::Io {
                    path: p.clone(),
                    source,
                })?),
            });
        }
        let stats_now: Vec<Option<Stat>> = metas.iter().map(|m| m.as_ref().map(Stat::of)).collect();
        // The recorded fingerprint of each file not settled, by position.
        let mut known: Vec<Option<(Stat, Hash, i64)>> = vec![None; paths.len()];
        if settled.iter().any(Option::is_none) {
            // In the build's read transaction (see `Cache::reading`):
            // outside one, every query takes and drops SQLite's locks.
            self.reading()?;
            let mut stmt = self.conn.prepare_cached(
                "SELECT size, mtime_ns, ino, ctime_ns, hash, recorded_ns FROM files WHERE path = ?1",
            )?;
            for (i, p) in paths
                .iter()
                .enumerate()
                .filter(|(i, _)| settled[*i].is_none())
            {
                let row = stmt.query_row(params![p.to_string_lossy()], |r| {
                    Ok((
                        Stat {
                            size: r.get::<_, i64>(0)? as u64,
                            mtime_ns: r.get(1)?,
                            ino: r.get::<_, i64>(2)? as u64,
                            ctime_ns: r.get(3)?,
                        },
                        r.get_ref(4)?.as_blob().map(crate::entry::hash_from_slice)?,
                        r.get::<_, i64>(5)?,
                    ))
                });
                if let Ok((stat, Some(hash), recorded)) = row {
                    known[i] = Some((stat, hash, recorded));
                }
            }
        }

        let mut results: Vec<Option<FileHash>> = vec![None; paths.len()];
        let mut to_hash: Vec<usize> = Vec::new();
        for i in 0..paths.len() {
            let (Some(stat), Some(meta)) = (stats_now[i], &metas[i]) else {
                results[i] = settled[i].map(|f| FileHash {
                    hash: f.hash,
                    size: f.size,
                    executable: f.executable,
                });
                continue;
            };
            let executable = meta.mode() & 0o111 != 0;
            let hash = match known[i] {
                Some((old, hash, recorded))
                    if old == stat && stat.mtime_ns < recorded - RACY_WINDOW_NS =>
                {
                    hash
                }
                _ => {
                    to_hash.push(i);
                    Hash::from_bytes([0; 32])
                }
            };
            results[i] = Some(FileHash {
                hash,
                size: stat.size,
                executable,
            });
        }

        let hashed = hash_in_parallel(paths, &to_hash)?;
        for (i, hash) in to_hash.iter().zip(&hashed) {
            stats.hashed += 1;
            stats.bytes_hashed += stats_now[*i].map_or(0, |s| s.size);
            if let Some(r) = results[*i].as_mut() {
                r.hash = *hash;
            }
        }
        // Remembering the fingerprints only saves reading next time: a
        // failure to write them is a warning (see `Cache::soft`).
        // In the build's transaction (see `Cache::reading`), committed
        // with the artifact's other records.
        let recorded = if to_hash.is_empty() {
            Ok(())
        } else {
            self.write(|conn| {
                let mut stmt = conn.prepare_cached(
                    "INSERT OR REPLACE INTO files (path, size, mtime_ns, ino, ctime_ns, hash, recorded_ns) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?;
                for (i, hash) in to_hash.iter().zip(&hashed) {
                    let Some(s) = stats_now[*i] else { continue };
                    stmt.execute(params![
                        paths[*i].to_string_lossy(),
                        s.size as i64,
                        s.mtime_ns,
                        s.ino as i64,
                        s.ctime_ns,
                        hash.as_bytes().as_slice(),
                        started
                    ])?;
                }
                Ok(())
            })
        };
        self.soft(recorded);
        for ((p, stat), r) in paths.iter().zip(&stats_now).zip(&results) {
            if let (Some(stat), Some(r)) = (stat, r)
                && stat.mtime_ns < started - RACY_WINDOW_NS
            {
                self.settled.insert(
                    p.as_os_str().to_owned(),
                    SettledFile {
                        hash: r.hash,
                        size: r.size,
                        executable: r.executable,
                    },
                );
            }
        }
        Ok((
            results.into_iter().map(|r| r.expect("filled")).collect(),
            stats,
        ))
    }
}

/// Hashes `paths[i]` for each i in `which`, on all cores.
fn hash_in_parallel(paths: &[PathBuf], which: &[usize]) -> Result<Vec<Hash>, CacheError> {
    if which.is_empty() {
        return Ok(Vec::new());
    }
    let threads = crate::process::cores().min(which.len());
    if threads == 1 {
        // One file (an edited module): no thread to start.
        return which
            .iter()
            .map(|&i| {
                hash_file(&paths[i]).map_err(|source| CacheError::Io {
                    path: paths[i].clone(),
                    source,
                })
            })
            .collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let out: Vec<std::sync::Mutex<Option<std::io::Result<Hash>>>> =
        which.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let j = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if j >= which.len() {
                        break;
                    }
                    let r = hash_file(&paths[which[j]]);
                    *out[j].lock().expect("poisoned") = Some(r);
                }
            });
        }
    });
    out.into_iter()
        .enumerate()
        .map(|(j, m)| {
            m.into_inner()
                .expect("poisoned")
                .expect("every slot hashed")
                .map_err(|source| CacheError::Io {
                    path: paths[which[j]].clone(),
                    source,
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_build_looks_a_settled_file_up_once_however_many_artifacts_select_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join(".lbuild");
        let f = dir.path().join("shared.py");
        fs_err::write(&f, "x = 1\n").unwrap();
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        let backdate = |f: &PathBuf| {
            let file = std::fs::File::options().write(true).open(f).unwrap();
            file.set_modified(old).unwrap();
        };
        backdate(&f);
        let mut cache = Cache::open(&db).unwrap();
        let (_, a) = cache.hash_files(std::slice::from_ref(&f)).unwrap();
        assert_eq!(a.hashed, 1);
        // Forget the recorded fingerprint: only the build's own snapshot
        // can spare the next artifact reading the file.
        cache.conn.execute("DELETE FROM files", []).unwrap();
        let (h, b) = cache.hash_files(std::slice::from_ref(&f)).unwrap();
        assert_eq!(b.hashed, 0);
        assert_eq!(h[0].hash, blake3::hash(b"x = 1\n"));
        // Saved within the build: the build keeps its first look (the zip
        // writer, which checks bytes against hashes, would refuse it)...
        fs_err::write(&f, "x = 22\n").unwrap();
        backdate(&f);
        let (h, c) = cache.hash_files(std::slice::from_ref(&f)).unwrap();
        assert_eq!(c.hashed, 0);
        assert_eq!(h[0].hash, blake3::hash(b"x = 1\n"));
        // ...and the next build (a new Cache) stats again and sees the edit.
        drop(cache);
        let mut next = Cache::open(&db).unwrap();
        let (h, d) = next.hash_files(std::slice::from_ref(&f)).unwrap();
        assert_eq!(d.hashed, 1);
        assert_eq!(h[0].hash, blake3::hash(b"x = 22\n"));
    }

    #[test]
    fn unchanged_old_file_is_not_reread_but_racy_one_is() {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = Cache::open(&dir.path().join(".lbuild")).unwrap();
        let f = dir.path().join("a.py");
        fs_err::write(&f, "x = 1\n").unwrap();

        // Just written: racy, hashed every time.
        let (_, s1) = cache.hash_files(std::slice::from_ref(&f)).unwrap();
        let (_, s2) = cache.hash_files(std::slice::from_ref(&f)).unwrap();
        assert_eq!((s1.hashed, s2.hashed), (1, 1));

        // Backdate the file: now the recorded fingerprint is trusted.
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let (h3, s3) = cache.hash_files(std::slice::from_ref(&f)).unwrap();
        let (h4, s4) = cache.hash_files(std::slice::from_ref(&f)).unwrap();
        assert_eq!((s3.hashed, s4.hashed), (1, 0));
        assert_eq!(h3[0].hash, h4[0].hash);
        assert_eq!(h4[0].hash, blake3::hash(b"x = 1\n"));
    }
}
