//! The machine store: what every project on this machine shares.
//!
//! `STORE/entries/ab/HASH-x|r-SETTINGS.zip` are compressed entries, each
//! the one-entry zip [`crate::archive`] makes for a file (content hash,
//! execute bit, archive settings id), so any project copies them raw
//! instead of compressing again; `STORE/deps/KEY/` are installed,
//! normalised dependency trees beside `STORE/deps/KEY.json` (their record
//! and file list), so a second project with the same requirements and
//! target installs nothing; a tree fetched from the remote store is kept
//! as its zip of compressed entries (`STORE/deps/KEY/tree-SETTINGS.zip`)
//! and packaged from it, never unpacked; an installed tree gets the same
//! zip after its first packaging, so the next project compresses none of
//! it (gc counts and removes it with its tree). Names are content keys only: no path, user or
//! clock.
//!
//! Writers put a file or tree under a temporary name (with their pid) and
//! rename it into place; readers verify what they read (an entry against
//! its content hash, a tree against its recorded file list), so two builds
//! of different projects may share the store at once. Builds hold a
//! shared flock of `STORE/store.lock`; `lbuild gc --max-size` takes it
//! exclusively, so it never deletes what a running build uses. Last use
//! is the file's mtime (an entry's, a tree's `KEY.json`), set on every hit.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::archive::{Compressed, EntrySource, Found, SourceKind};
use crate::cache::Hash;
use crate::entry::Entry;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("--max-size {value:?} is not a size (e.g. 500M, 10G, 123456)")]
    BadSize { value: String },
    #[error("the machine store {path} is still in use by a running build after {secs} s")]
    Busy { path: PathBuf, secs: u64 },
    #[error(transparent)]
    Lock(#[from] crate::lock::LockError),
    #[error(
        "{path} is not an lbuild machine store (it has no lbuild-store mark); nothing was removed"
    )]
    NotOurs { path: PathBuf },
}

impl StoreError {
    pub fn hint(&self) -> Option<String> {
        match self {
            StoreError::Busy { .. } => Some(format!(
                "run it again when the builds are done, or set {} (seconds) to wait longer",
                crate::lock::TIMEOUT_ENV
            )),
            StoreError::Lock(e) => e.hint(),
            StoreError::NotOurs { .. } => Some(
                "point LBUILD_STORE at the directory lbuild made for its store (lbuild marks one it creates or finds empty), or unset it for ~/.cache/lbuild".into(),
            ),
            _ => None,
        }
    }
}

/// The machine store at one directory.
#[derive(Debug, Clone)]
pub(crate) struct MachineStore {
    root: PathBuf,
}

/// A shared (build) or exclusive (gc) hold on the store.
#[derive(Debug)]
pub(crate) struct StoreLock {
    _file: Option<File>,
}

impl MachineStore {
    pub(crate) fn at(root: impl Into<PathBuf>) -> MachineStore {
        MachineStore { root: root.into() }
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// Held by a build while it reads or writes the store (best effort: a
    /// store that cannot be created is simply not used for locking).
    pub(crate) fn shared(&self) -> StoreLock {
        let file = self
            .lock_file()
            .and_then(|f| f.lock_shared().ok().map(|_| f));
        StoreLock { _file: file }
    }

    fn lock_file(&self) -> Option<File> {
        let existed = self.root.exists();
        fs_err::create_dir_all(&self.root).ok()?;
        crate::store_mark::mark_if_ours(&self.root, !existed);
        File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.root.join(LOCK))
            .ok()
    }

    /// Where the compressed entry for (content, executable, settings) lives.
    pub(crate) fn entry_path(&self, content: &Hash, executable: bool, settings: &Hash) -> PathBuf {
        let hex = content.to_hex();
        self.root
            .join("entries")
            .join(&hex[..2])
            .join(entry_name(content, executable, settings))
    }

    /// The directory of installed dependency trees.
    pub(crate) fn deps_dir(&self) -> PathBuf {
        self.root.join("deps")
    }

    /// Writes `bytes` at `path` through a temporary name and a rename.
    pub(crate) fn put_bytes(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        self.put_with(path, |f| f.write_all(bytes))
    }

    /// Writes at `path` what `fill` writes, through a temporary name.
    pub(crate) fn put_with(
        &self,
        path: &Path,
        fill: impl FnOnce(&mut File) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let dir = path.parent().unwrap_or(Path::new("."));
        fs_err::create_dir_all(dir)?;
        let mut tmp = tempfile::Builder::new()
            .prefix(&temp_prefix())
            .tempfile_in(dir)?;
        // No fsync: the store is a cache, and every read verifies (a file
        // torn by a power cut fails its check and is made again), while a
        // cold build puts thousands of entries.
        fill(tmp.as_file_mut())?;
        use std::os::unix::fs::PermissionsExt;
        let _ = fs_err::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644));
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    }

    /// Size and count of what the store holds, per kind.
    pub(crate) fn stats(&self) -> Stats {
        let mut s = Stats::default();
        for f in self.items() {
            match f.kind {
                Kind::Entry => {
                    s.entries += 1;
                    s.entry_bytes += f.bytes;
                }
                Kind::Tree => {
                    s.trees += 1;
                    s.tree_bytes += f.bytes;
                }
            }
        }
        s
    }

    /// Every entry and tree with its size and last use.
    fn items(&self) -> Vec<Item> {
        let mut out = Vec::new();
        // Only the names lbuild's layout produces: anything else in the
        // store is not lbuild's to count or delete.
        for shard in read_dir(&self.root.join("entries")) {
            let shard_name = shard.file_name().unwrap_or_default().to_string_lossy();
            if !crate::store_mark::is_shard(&shard_name) || !shard.is_dir() {
                continue;
            }
            for f in read_dir(&shard) {
                let name = f.file_name().unwrap_or_default().to_string_lossy();
                if !crate::store_mark::is_entry_name(&shard_name, &name) {
                    continue;
                }
                if let Ok(m) = fs_err::symlink_metadata(&f) {
                    out.push(Item {
                        kind: Kind::Entry,
                        bytes: m.len(),
                        used: m.modified().ok(),
                        paths: vec![f],
                    });
                }
            }
        }
        for dir in read_dir(&self.deps_dir()) {
            let name = dir.file_name().unwrap_or_default().to_string_lossy();
            let record = dir.join(TREE_RECORD);
            if !crate::store_mark::is_tree_name(&name) || !record.is_file() {
                continue;
            }
            let used = fs_err::metadata(&record).and_then(|m| m.modified()).ok();
            out.push(Item {
                kind: Kind::Tree,
                bytes: du(&dir),
                used,
                paths: vec![dir],
            });
        }
        out
    }

    /// Removes the least recently used entries and trees until the store
    /// holds at most `max` bytes; waits for running builds to finish (they
    /// hold the store shared). Returns (items removed, bytes kept).
    pub(crate) fn gc(&self, max: u64) -> Result<(usize, u64), StoreError> {
        if !self.root.exists() {
            return Ok((0, 0));
        }
        // Never trim a directory lbuild did not make its store.
        if !crate::store_mark::is_marked(&self.root) {
            return Err(StoreError::NotOurs {
                path: self.root.clone(),
            });
        }
        let Some(lock) = self.lock_file() else {
            return Ok((0, 0));
        };
        let timeout = crate::lock::timeout()?;
        let started = std::time::Instant::now();
        loop {
            match lock.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) if started.elapsed() < timeout => {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(StoreError::Busy {
                        path: self.root.clone(),
                        secs: timeout.as_secs(),
                    });
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(e.into()),
            }
        }
        let mut items = self.items();
        // Oldest first; ties by path so the order is stable.
        items.sort_by(|a, b| a.used.cmp(&b.used).then_with(|| a.paths.cmp(&b.paths)));
        let mut total: u64 = items.iter().map(|i| i.bytes).sum();
        let mut removed = 0;
        for item in items {
            if total <= max {
                break;
            }
            for p in &item.paths {
                let r = if p.is_dir() {
                    fs_err::remove_dir_all(p)
                } else {
                    fs_err::remove_file(p)
                };
                match r {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(fs_err_io(e, p)),
                }
            }
            total -= item.bytes;
            removed += 1;
        }
        Ok((removed, total))
    }
}

fn fs_err_io(e: std::io::Error, p: &Path) -> StoreError {
    StoreError::Io(std::io::Error::new(
        e.kind(),
        format!("cannot remove {}: {e}", p.display()),
    ))
}

/// Entries below this size are compressed, never looked up in or put into
/// the machine store: creating a file costs more than deflating a few KiB
/// (measured on ext4: a cold build of the 4,600-file corpus took 2.3 s
/// instead of 1.0 s when every entry was also put in the store), while the
/// large files, a fraction of the count, carry most of the compression time.
pub(crate) const MACHINE_MIN_ENTRY: u64 = 64 * 1024;

/// The machine store as a source of compressed entries for the zip writer:
/// a one-entry zip per (content, mode, settings) of [`MACHINE_MIN_ENTRY`]
/// or more, checked by the writer, touched when used, removed when it fails
/// its check, and put after the writer compressed the entry itself.
impl EntrySource for MachineStore {
    fn kind(&self) -> SourceKind {
        SourceKind::Store
    }

    fn one_entry(&self, e: &Entry, settings_id: &Hash) -> Option<Found> {
        if e.size < MACHINE_MIN_ENTRY {
            return None;
        }
        let path = self.entry_path(&e.hash, e.executable, settings_id);
        let file = File::open(&path).ok()?;
        Some(Found { file, path })
    }

    fn used(&self, path: &Path) {
        touch(path);
    }

    fn rejected(&self, path: &Path) {
        let _ = fs_err::remove_file(path);
    }

    fn keep(&self, e: &Entry, settings_id: &Hash, zip: &mut Compressed<'_>) {
        if e.size < MACHINE_MIN_ENTRY {
            return;
        }
        let path = self.entry_path(&e.hash, e.executable, settings_id);
        let _ = self.put_with(&path, |out| zip.write_to(out));
    }
}

/// The store's lock file (builds shared, gc exclusive). Not `lock`: when
/// the store falls back to a project's cache directory, that name is the
/// project's own lock, held exclusively by the same build.
pub(crate) const LOCK: &str = "store.lock";

/// A tree's record inside its key directory (`deps/KEY/tree.json`, beside
/// `deps/KEY/tree/`): renamed into place with the tree, in one rename.
pub(crate) const TREE_RECORD: &str = "tree.json";

/// The file name of a compressed entry (shared with the remote store).
pub(crate) fn entry_name(content: &Hash, executable: bool, settings: &Hash) -> String {
    format!(
        "{}-{}-{}.zip",
        content.to_hex(),
        if executable { "x" } else { "r" },
        &settings.to_hex()[..16]
    )
}

/// Marks a path as just used (its mtime set to now); best effort. Opened
/// read-only: setting "now" needs ownership or write access, not a
/// writable descriptor, and a directory opens too.
pub(crate) fn touch(path: &Path) {
    let now = std::time::SystemTime::now();
    if let Ok(f) = File::open(path) {
        let _ = f.set_times(
            std::fs::FileTimes::new()
                .set_modified(now)
                .set_accessed(now),
        );
    }
}

#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub(crate) struct Stats {
    pub entries: u64,
    pub entry_bytes: u64,
    pub trees: u64,
    pub tree_bytes: u64,
}

enum Kind {
    Entry,
    Tree,
}

struct Item {
    kind: Kind,
    bytes: u64,
    used: Option<std::time::SystemTime>,
    paths: Vec<PathBuf>,
}

fn read_dir(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs_err::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// Bytes of the regular files under `dir`.
fn du(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for p in read_dir(&d) {
            match fs_err::symlink_metadata(&p) {
                Ok(m) if m.is_dir() => stack.push(p),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// "500M", "10G", "1.5G", "123456" -> bytes (binary units).
pub(crate) fn parse_size(s: &str) -> Result<u64, StoreError> {
    let bad = || StoreError::BadSize {
        value: s.to_string(),
    };
    let t = s.trim();
    let (num, mult) = match t.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => {
            let unit = t[i..].to_ascii_uppercase();
            let m: u64 = match unit.trim_end_matches("IB").trim_end_matches('B') {
                "" => 1,
                "K" => 1 << 10,
                "M" => 1 << 20,
                "G" => 1 << 30,
                "T" => 1 << 40,
                _ => return Err(bad()),
            };
            (&t[..i], m)
        }
        None => (t, 1),
    };
    let n: f64 = num.trim().parse().map_err(|_| bad())?;
    if n.is_nan() || n < 0.0 {
        return Err(bad());
    }
    Ok((n * mult as f64) as u64)
}

/// The prefix of this process's temporary names in the store, `.tmp-PID-`
/// (the pid only tells a reader who made it; whether its writer is alive
/// is its [`lease`]).
pub(crate) fn temp_prefix() -> String {
    format!(".tmp-{}-", std::process::id())
}

/// Moves a damaged store item (a torn record, a directory where a file
/// should be) out of the way under a temporary name and removes it, so the
/// next step puts a good one in its place and no later build trips on it.
pub(crate) fn move_aside(path: &Path) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let aside = dir.join(format!(
        "{}aside-{}",
        temp_prefix(),
        path.file_name().unwrap_or_default().to_string_lossy()
    ));
    fs_err::rename(path, &aside)?;
    let _ = if aside.is_dir() {
        fs_err::remove_dir_all(&aside)
    } else {
        fs_err::remove_file(&aside)
    };
    Ok(())
}

/// Leases held by this process: the open file (or directory) of each
/// temporary it is writing in the store, flocked exclusively. The kernel
/// drops the lock when the process dies, in any PID namespace, so a build
/// in another container sharing the store sees a live writer's temporary
/// as held (a pid alone would name another process there).
static LEASES: std::sync::Mutex<Vec<(PathBuf, File)>> = std::sync::Mutex::new(Vec::new());

/// Holds a lease on the temporary `path` (a file or directory) until this
/// process ends or the path is gone (renamed into place or removed:
/// pruned at the next lease). Best effort.
pub(crate) fn lease(path: &Path) {
    let Ok(f) = File::open(path) else {
        return;
    };
    if f.try_lock().is_err() {
        return;
    }
    let mut held = LEASES.lock().unwrap_or_else(|p| p.into_inner());
    held.retain(|(p, _)| p.exists());
    held.push((path.to_path_buf(), f));
}

/// Whether nobody holds a lease on `path` (its writer is gone).
fn unleased(path: &Path) -> bool {
    File::open(path).is_ok_and(|f| f.try_lock().is_ok())
}

/// Removes `.tmp-*` leftovers in `dir` that no live writer holds a lease
/// on (see [`lease`]).
pub(crate) fn remove_dead_temporaries(dir: &Path) {
    for p in read_dir(dir) {
        let name = p.file_name().unwrap_or_default().to_string_lossy();
        if !name.starts_with(".tmp-") || !unleased(&p) {
            continue;
        }
        let _ = if p.is_dir() {
            fs_err::remove_dir_all(&p)
        } else {
            fs_err::remove_file(&p)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_writer_puts_large_entries_finds_them_and_replaces_a_damaged_one() {
        // The machine store as the writer's one source: a cold write puts
        // the entries of 64 KiB and more (only those), the next finds them,
        // a damaged one is compressed again and put back; every zip is the
        // same bytes.
        let dir = tempfile::tempdir().unwrap();
        let store = MachineStore::at(dir.path().join("store"));
        let files: [(&str, Vec<u8>); 2] = [
            ("big.txt", b"line of text\n".repeat(10_000)),
            ("small.py", b"print('hi')\n".to_vec()),
        ];
        let entries: Vec<Entry> = crate::archive::testing::entries_in(dir.path(), &files);
        let settings = crate::archive::Settings {
            level: 6,
            time: crate::archive::dos_time_from_unix(0),
        };
        let write = || {
            let out = tempfile::tempfile().unwrap();
            let report = crate::archive::write_zip(&out, &entries, &settings, &[&store]).unwrap();
            let mut bytes = Vec::new();
            use std::io::{Read, Seek};
            (&out).rewind().unwrap();
            (&out).read_to_end(&mut bytes).unwrap();
            (report, bytes)
        };
        let (cold, cold_bytes) = write();
        assert_eq!((cold.compressed, cold.from_store), (2, 0));
        let big = store.entry_path(&entries[0].hash, false, &settings.id());
        let small = store.entry_path(&entries[1].hash, false, &settings.id());
        assert!(big.is_file() && !small.exists());

        let (warm, warm_bytes) = write();
        assert_eq!((warm.compressed, warm.from_store), (1, 1));
        assert_eq!(warm_bytes, cold_bytes);

        let mut damaged = fs_err::read(&big).unwrap();
        let at = damaged.len() / 2;
        damaged[at] ^= 0xff;
        fs_err::write(&big, &damaged).unwrap();
        let (again, again_bytes) = write();
        assert_eq!((again.compressed, again.store_rejected), (2, 1));
        assert_eq!(again_bytes, cold_bytes);
        assert_ne!(fs_err::read(&big).unwrap(), damaged, "put back whole");
        assert_eq!(write().0.from_store, 1);
    }

    #[test]
    fn a_leased_temporary_stays_and_an_abandoned_one_goes() {
        let dir = tempfile::tempdir().unwrap();
        let held = dir.path().join(".tmp-1-held");
        let left = dir.path().join(".tmp-1-left");
        let mine = dir.path().join("deps-of-someone");
        for d in [&held, &left, &mine] {
            fs_err::create_dir(d).unwrap();
        }
        lease(&held);
        remove_dead_temporaries(dir.path());
        assert!(held.is_dir(), "a live writer's staging directory");
        assert!(!left.exists(), "nobody holds it");
        assert!(mine.is_dir(), "not a temporary name");
    }

    #[test]
    fn gc_refuses_a_directory_lbuild_did_not_make_its_store() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::create_dir_all(dir.path().join("entries/2024")).unwrap();
        fs_err::write(dir.path().join("entries/2024/holiday.zip"), b"x").unwrap();
        let store = MachineStore::at(dir.path());
        assert!(matches!(store.gc(1), Err(StoreError::NotOurs { .. })));
        // Even if it were marked, only the layout's names are lbuild's.
        store.shared();
        assert!(!crate::store_mark::is_marked(dir.path()));
        fs_err::write(
            dir.path().join(crate::store_mark::MARK),
            "lbuild machine store, format 1\n",
        )
        .unwrap();
        assert_eq!(store.gc(0).unwrap(), (0, 0));
        assert!(dir.path().join("entries/2024/holiday.zip").is_file());
    }

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("123").unwrap(), 123);
        assert_eq!(parse_size("2K").unwrap(), 2048);
        assert_eq!(parse_size("500M").unwrap(), 500 << 20);
        assert_eq!(parse_size("1.5GiB").unwrap(), 3 << 29);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("-1").is_err());
    }
}
