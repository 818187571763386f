//! Hit rates for `lbuild cache stats`: one line per built artifact appended
//! to `STORE/hits.jsonl` (what its package and deps stages found ready and
//! what they had to do), and their sum.
//!
//! Owns the log's format and its summary. A build's lines (one per
//! artifact) are appended together at its end in a single `write` with
//! `O_APPEND`, so builds of several projects sharing the store never
//! interleave; recording is best effort (a full disk loses a
//! line, never a build). It does not decide anything: the counts are read
//! off the stage reports the pipeline already made.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::outcome::BuildOutcome;
use crate::stages::Status;

const LOG: &str = "hits.jsonl";

/// Past this size the log is folded into one line at the next record.
const FOLD_AT: u64 = 1 << 20;

/// What builds found ready, summed over the log.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Hits {
    /// Artifacts built (cached or not).
    pub builds: u64,
    /// Of those, the zip was already in place: nothing written.
    pub zips_cached: u64,
    /// Entries of written zips copied already compressed (the project's
    /// reuse store, the machine store, a dependency tree's zip).
    pub entries_copied: u64,
    /// Entries of written zips compressed by this build.
    pub entries_compressed: u64,
    /// Dependency stages that found their tree ready (recorded in the
    /// project, the machine store or the remote store).
    pub trees_ready: u64,
    /// Of those, fetched from the remote store.
    pub trees_from_remote: u64,
    /// Dependency stages that ran the installer.
    pub trees_installed: u64,
}

impl Hits {
    /// One artifact's build, read off its stage reports.
    pub(crate) fn of(outcome: &BuildOutcome) -> Hits {
        let mut h = Hits {
            builds: 1,
            ..Hits::default()
        };
        let count = |d: &serde_json::Value, key: &str| d[key].as_u64().unwrap_or(0);
        for stage in &outcome.stages {
            match (stage.name, stage.status) {
                ("package", Status::Cached) => h.zips_cached += 1,
                ("package", Status::Ran) => {
                    let d = &stage.details;
                    h.entries_copied +=
                        count(d, "reused") + count(d, "from_store") + count(d, "from_tree");
                    h.entries_compressed += count(d, "compressed");
                }
                ("deps", Status::Cached) => {
                    h.trees_ready += 1;
                    if stage.details["from"] == "remote" {
                        h.trees_from_remote += 1;
                    }
                }
                ("deps", Status::Ran) => h.trees_installed += 1,
                _ => {}
            }
        }
        h
    }

    fn add(&mut self, o: &Hits) {
        self.builds += o.builds;
        self.zips_cached += o.zips_cached;
        self.entries_copied += o.entries_copied;
        self.entries_compressed += o.entries_compressed;
        self.trees_ready += o.trees_ready;
        self.trees_from_remote += o.trees_from_remote;
        self.trees_installed += o.trees_installed;
    }
}

/// One build's lines (one per artifact built), appended to the store's
/// log in one `write` when dropped, at the end of the build: the log is
/// opened once per build, not once per artifact. Silent on failure.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    root: Option<PathBuf>,
    lines: String,
}

impl Pending {
    /// Adds one artifact's counts (see [`Hits::of`]), for the log under
    /// `store_root`.
    pub(crate) fn add(&mut self, store_root: &Path, hits: &Hits) {
        if self.root.as_deref().is_some_and(|r| r != store_root) {
            self.flush();
        }
        self.root.get_or_insert_with(|| store_root.to_path_buf());
        if let Ok(line) = serde_json::to_string(hits) {
            self.lines.push_str(&line);
            self.lines.push('\n');
        }
    }

    /// Appends the lines kept so far (see the type's docs).
    pub(crate) fn flush(&mut self) {
        let lines = std::mem::take(&mut self.lines);
        if let Some(root) = self.root.take()
            && !lines.is_empty()
        {
            append(&root, &lines);
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Appends `lines` to the store's log (folded first when large).
fn append(store_root: &Path, lines: &str) {
    let path = store_root.join(LOG);
    if fs_err::metadata(&path).is_ok_and(|m| m.len() > FOLD_AT) {
        fold(store_root);
    }
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
    {
        let _ = f.write_all(lines.as_bytes());
    }
}

/// The sum of every line of the store's log (unreadable lines skipped).
pub(crate) fn summary(store_root: &Path) -> Hits {
    let mut total = Hits::default();
    if let Ok(text) = fs_err::read_to_string(store_root.join(LOG)) {
        for line in text.lines() {
            if let Ok(h) = serde_json::from_str::<Hits>(line) {
                total.add(&h);
            }
        }
    }
    total
}

/// Replaces the log with its sum (renamed into place: a line appended
/// meanwhile to the old file may be lost, which only rounds the rates).
fn fold(store_root: &Path) {
    let total = summary(store_root);
    let Ok(mut tmp) = tempfile::NamedTempFile::new_in(store_root) else {
        return;
    };
    if let Ok(line) = serde_json::to_string(&total)
        && writeln!(tmp, "{line}").is_ok()
    {
        let _ = tmp.persist(store_root.join(LOG));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_keeps_the_sum() {
        let dir = tempfile::tempdir().unwrap();
        let one = Hits {
            builds: 1,
            zips_cached: 1,
            entries_copied: 3,
            ..Hits::default()
        };
        let text = format!("{}\n", serde_json::to_string(&one).unwrap()).repeat(5);
        fs_err::write(dir.path().join(LOG), format!("{text}garbage\n")).unwrap();
        let before = summary(dir.path());
        assert_eq!(before.builds, 5);
        assert_eq!(before.entries_copied, 15);
        fold(dir.path());
        assert_eq!(summary(dir.path()), before);
        let lines = fs_err::read_to_string(dir.path().join(LOG)).unwrap();
        assert_eq!(lines.lines().count(), 1);
    }

    #[test]
    fn a_builds_lines_are_appended_together_when_it_ends() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join(LOG);
        fs_err::write(&log, "{\"builds\":1}\n").unwrap();
        let cached = Hits {
            builds: 1,
            zips_cached: 1,
            ..Hits::default()
        };
        let mut pending = Pending::default();
        for _ in 0..3 {
            pending.add(dir.path(), &cached);
        }
        // Nothing is written while the build runs.
        assert_eq!(fs_err::read_to_string(&log).unwrap().lines().count(), 1);
        drop(pending);
        let text = fs_err::read_to_string(&log).unwrap();
        assert_eq!(text.lines().count(), 4, "one line per artifact: {text}");
        let total = summary(dir.path());
        assert_eq!((total.builds, total.zips_cached), (4, 3));
    }
}
