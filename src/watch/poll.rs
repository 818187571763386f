//! `lbuild watch --poll`: a watcher that stats the watched directories on
//! a timer, for file systems without native events (network mounts, some
//! containers).
//!
//! notify's `PollWatcher` compares mtimes in whole seconds, so a second
//! save within the same second goes unseen, unless it re-reads every
//! watched file on every pass (137 MB every 250 ms on the benchmark corpus).
//! This one compares what the build's fingerprints compare — size, mtime
//! and ctime in nanoseconds, inode — so it is exact and reads no contents.
//! It implements notify's [`Watcher`] so the watch loop is the same for
//! both backends. Directories are watched non-recursively (the loop plans
//! the directory set itself).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use notify::event::{CreateKind, DataChange, ModifyKind, RemoveKind};
use notify::{Event, EventHandler, EventKind, RecursiveMode, Watcher, WatcherKind};

use crate::entry::Hash;
use crate::entry::hash_file;

/// Used when the config names no interval.
const DEFAULT_INTERVAL: Duration = Duration::from_millis(250);
/// File times come from a coarse clock (a few ms per tick): a file changed
/// this close to a listing might change again within the same tick without
/// its stat changing, so its contents are hashed too and compared on the
/// next pass (git's "racy clean"). Only just-written files are read.
const RACY_NS: i64 = 100_000_000;

/// What is compared between passes for each directory entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sig {
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    ino: u64,
    dir: bool,
}

impl Sig {
    fn of(m: &std::fs::Metadata) -> Sig {
        Sig {
            size: m.len(),
            mtime_ns: crate::entry::mtime_ns(m),
            ctime_ns: crate::entry::ctime_ns(m),
            ino: m.ino(),
            dir: m.is_dir(),
        }
    }
}

/// One directory entry as last seen.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    sig: Sig,
    /// BLAKE3 of a file changed just before the listing (see [`RACY_NS`]).
    racy_hash: Option<Hash>,
}

/// A directory's entries, or `None` while it cannot be read (deleted).
type Listing = Option<BTreeMap<OsString, Seen>>;

fn list(dir: &Path) -> Listing {
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    let entries = fs_err::read_dir(dir).ok()?;
    let seen = entries
        .flatten()
        .filter_map(|e| {
            let path = e.path();
            let sig = Sig::of(&path.symlink_metadata().ok()?);
            let racy = !sig.dir && now_ns - sig.mtime_ns.max(sig.ctime_ns) < RACY_NS;
            let racy_hash = racy.then(|| hash_file(&path).ok()).flatten();
            Some((e.file_name(), Seen { sig, racy_hash }))
        })
        .collect();
    Some(seen)
}

/// The events that turn listing `old` of `dir` into `new`.
fn diff(dir: &Path, old: &Listing, new: &Listing) -> Vec<Event> {
    let event = |kind, path: PathBuf| Event::new(kind).add_path(path);
    let created = EventKind::Create(CreateKind::Any);
    let removed = EventKind::Remove(RemoveKind::Any);
    let (old, new) = match (old, new) {
        (None, None) => return Vec::new(),
        (Some(_), None) => return vec![event(removed, dir.to_path_buf())],
        (None, Some(_)) => return vec![event(created, dir.to_path_buf())],
        (Some(old), Some(new)) => (old, new),
    };
    // Same stat, but written in the tick of the last listing: the contents decide.
    let rewritten = |was: &Seen, now: &Seen, path: &Path| {
        was.racy_hash.is_some_and(|h| {
            now.racy_hash
                .or_else(|| hash_file(path).ok())
                .is_none_or(|n| n != h)
        })
    };
    let mut events = Vec::new();
    for (name, now) in new {
        let path = dir.join(name);
        let sig = &now.sig;
        match old.get(name) {
            None => events.push(event(created, path)),
            // A directory replaced under the same name is a new directory.
            Some(was) if was.sig.dir != sig.dir || (sig.dir && was.sig.ino != sig.ino) => {
                events.push(event(created, path))
            }
            Some(was) if was.sig != *sig || rewritten(was, now, &path) => events.push(event(
                EventKind::Modify(ModifyKind::Data(DataChange::Any)),
                path,
            )),
            Some(_) => {}
        }
    }
    for name in old.keys().filter(|n| !new.contains_key(*n)) {
        events.push(event(removed, dir.join(name)));
    }
    events
}

struct Shared {
    dirs: Mutex<BTreeMap<PathBuf, Listing>>,
    stop: AtomicBool,
}

impl Shared {
    fn dirs(&self) -> MutexGuard<'_, BTreeMap<PathBuf, Listing>> {
        self.dirs.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Stats every watched directory's entries each interval.
pub(crate) struct StatPoller {
    shared: Arc<Shared>,
}

impl Watcher for StatPoller {
    fn new<F: EventHandler>(mut handler: F, config: notify::Config) -> notify::Result<Self> {
        let interval = config.poll_interval().unwrap_or(DEFAULT_INTERVAL);
        let shared = Arc::new(Shared {
            dirs: Mutex::new(BTreeMap::new()),
            stop: AtomicBool::new(false),
        });
        let state = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("lbuild-poll".into())
            .spawn(move || {
                while !state.stop.load(Ordering::SeqCst) {
                    std::thread::sleep(interval);
                    let dirs: Vec<PathBuf> = state.dirs().keys().cloned().collect();
                    for dir in dirs {
                        let new = list(&dir);
                        let events = match state.dirs().get_mut(&dir) {
                            Some(old) => {
                                let events = diff(&dir, old, &new);
                                *old = new;
                                events
                            }
                            None => continue, // unwatched meanwhile
                        };
                        for e in events {
                            handler.handle_event(Ok(e));
                        }
                    }
                }
            })
            .map_err(notify::Error::io)?;
        Ok(StatPoller { shared })
    }

    fn watch(&mut self, path: &Path, mode: RecursiveMode) -> notify::Result<()> {
        if mode == RecursiveMode::Recursive {
            return Err(notify::Error::generic(
                "the stat poller watches directories non-recursively",
            ));
        }
        match list(path) {
            Some(listing) => {
                self.shared.dirs().insert(path.to_path_buf(), Some(listing));
                Ok(())
            }
            None => Err(notify::Error::path_not_found().add_path(path.to_path_buf())),
        }
    }

    fn unwatch(&mut self, path: &Path) -> notify::Result<()> {
        match self.shared.dirs().remove(path) {
            Some(_) => Ok(()),
            None => Err(notify::Error::watch_not_found().add_path(path.to_path_buf())),
        }
    }

    fn kind() -> WatcherKind {
        WatcherKind::PollWatcher
    }
}

impl Drop for StatPoller {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(events: &[Event]) -> Vec<(String, &'static str)> {
        events
            .iter()
            .map(|e| {
                let name = e.paths[0]
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                let kind = match e.kind {
                    EventKind::Create(_) => "create",
                    EventKind::Remove(_) => "remove",
                    _ => "modify",
                };
                (name, kind)
            })
            .collect()
    }

    #[test]
    fn same_second_rewrites_creations_and_deletions_are_seen() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        fs_err::write(dir.join("a.py"), "1").unwrap();
        fs_err::write(dir.join("gone.py"), "1").unwrap();
        let before = list(dir);
        // Same size, same second: only the nanoseconds (or ctime) differ.
        fs_err::write(dir.join("a.py"), "2").unwrap();
        fs_err::write(dir.join("new.py"), "").unwrap();
        fs_err::remove_file(dir.join("gone.py")).unwrap();
        fs_err::create_dir(dir.join("pkg")).unwrap();
        let after = list(dir);
        let mut got = kinds(&diff(dir, &before, &after));
        got.sort();
        let want: Vec<(String, &str)> = vec![
            ("a.py".into(), "modify"),
            ("gone.py".into(), "remove"),
            ("new.py".into(), "create"),
            ("pkg".into(), "create"),
        ];
        assert_eq!(got, want);
        // Rewritten in place, same size, quite possibly within one clock
        // tick (same stat): the racy hash still sees it.
        fs_err::write(dir.join("a.py"), "3").unwrap();
        let again = list(dir);
        assert_eq!(
            kinds(&diff(dir, &after, &again)),
            [("a.py".to_string(), "modify")]
        );
        // Nothing changed: nothing reported, racy or not.
        assert!(diff(dir, &again, &list(dir)).is_empty());
        std::thread::sleep(Duration::from_millis(150));
        assert!(diff(dir, &again, &list(dir)).is_empty());
        assert_eq!(kinds(&diff(dir, &after, &None))[0].1, "remove");
    }
}
