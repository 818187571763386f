//! Putting a build's zips in place: each zip is written to a temp file
//! beside its output ([`Outputs::temp_zip`]), and all of a build's are
//! flushed, renamed into place and recorded when it ends
//! ([`Outputs::publish`]); the temp files of dead builds are removed.
//! Writing a zip is the package stage's (`package`); this module only
//! owns the files.

use std::path::{Path, PathBuf};

use super::package::{self, ZipInfo, stat_of};
use crate::Error;
use crate::cache::{Cache, Hash};
use crate::report::Reporter;

/// `.lbuild-NAME.zip-`: what every temp file of this output starts with
/// (then the writing process's pid, `-`, a random part, `.tmp`).
fn temp_prefix(out: &Path) -> String {
    format!(
        ".lbuild-{}-",
        out.file_name().unwrap_or_default().to_string_lossy()
    )
}

/// What one build (one `lbuild` run, or one watch rebuild) owes its
/// outputs, done once for all its artifacts rather than once per artifact:
/// reading each output directory for dead temp files, flushing the new
/// zips to disk, renaming them into place, and the fsync that makes the
/// renames durable. Shared by the artifacts of a workspace.
///
/// The zips are published together when the build ends ([`Outputs::publish`]):
/// one flush of every new zip costs about what one zip's own flush did
/// (measured on ext4: a cold workspace of 40 functions over a warm store
/// spent 29 of its 156 ms in one fsync per zip). A zip is never renamed
/// before it is on disk, so after a power cut each output is its old zip
/// or its new one, never a torn one; a build killed before the end leaves
/// every output as it was, and its temp files (named after its dead pid)
/// are removed by the next build ([`Outputs::prepare`]).
#[derive(Debug, Default)]
pub(crate) struct Outputs {
    /// Directories already cleaned of dead temp files.
    prepared: std::sync::Mutex<std::collections::HashSet<PathBuf>>,
    /// The zips written, in the order their artifacts were built.
    pending: std::sync::Mutex<Vec<Pending>>,
}

/// A zip written to its temp file beside the output, not yet flushed nor
/// in place. Dropped (a failed build, a publish that failed), its temp
/// file is removed.
#[derive(Debug)]
struct Pending {
    tmp: tempfile::TempPath,
    /// The package key it is recorded under once in place.
    key: Hash,
    info: ZipInfo,
}

impl Outputs {
    /// Before the first temp file of this build in `dir`, and for an
    /// output found already in place: removes the temp zips of dead
    /// builds there (a build killed before it published, followed by a
    /// build with nothing to write, would otherwise leave them forever).
    pub(crate) fn prepare(&self, dir: &Path) {
        let first = lock(&self.prepared).insert(dir.to_path_buf());
        if first {
            remove_dead_temp_files(dir);
        }
    }

    /// A new temp file for the zip of `out`, beside it (its directory
    /// exists), after cleaning that directory ([`Outputs::prepare`]).
    /// Named after the output and this process: several functions (and
    /// several builds of one function, with other cache directories) may
    /// share an output directory; only temp files of dead builds are
    /// removed.
    pub(crate) fn temp_zip(&self, out: &Path) -> crate::Result<tempfile::NamedTempFile> {
        let dir = out.parent().unwrap_or(Path::new("."));
        self.prepare(dir);
        tempfile::Builder::new()
            .prefix(&format!("{}{}-", temp_prefix(out), std::process::id()))
            .suffix(".tmp")
            .tempfile_in(dir)
            .map_err(Error::io("cannot create a temporary file in", dir))
    }

    /// Keeps the zip written to `tmp` (for the package key `key`) for
    /// [`Outputs::publish`], its writing to disk started meanwhile (the
    /// flush at the end then mostly waits for writes already done). One
    /// built again for the same output in this build (an artifact retried
    /// after its cache was found corrupt) replaces the first.
    pub(crate) fn queue(&self, tmp: tempfile::NamedTempFile, key: Hash, info: ZipInfo) {
        start_writeback(tmp.as_file());
        let zip = Pending {
            tmp: tmp.into_temp_path(),
            key,
            info,
        };
        let mut pending = lock(&self.pending);
        pending.retain(|p| p.info.path != zip.info.path);
        pending.push(zip);
    }

    /// Puts the zips of this build in place: every temp file flushed to
    /// disk, then each renamed over its output and recorded in `cache`
    /// (the build's cache), then one fsync per output directory (a failure
    /// there is a warning: the zips are in place). Returns the outputs
    /// whose zip could not be flushed or renamed, each with its error:
    /// those stay their old zip (the temp file is removed), the others are
    /// published all the same.
    ///
    /// Until the directory fsync a power cut may undo a rename, which
    /// leaves that output its old zip, as if its build had not run; the
    /// cache's record of the new zip is checked against the file
    /// (`still_in_place`) before it is trusted. Measured on ext4 a
    /// directory fsync costs 0.4-6 ms.
    pub(crate) fn publish(
        &self,
        cache: Option<&Cache>,
        reporter: &Reporter,
    ) -> Vec<(PathBuf, Error)> {
        let pending = std::mem::take(&mut *lock(&self.pending));
        let mut failed = Vec::new();
        // All flushed before any is renamed: the file system commits its
        // journal for the first and finds the others' changes already
        // committed (each zip's writeback was started when it was written).
        let flushed: Vec<Pending> = pending
            .into_iter()
            .filter_map(
                |p| match std::fs::File::open(&p.tmp).and_then(|f| f.sync_all()) {
                    Ok(()) => Some(p),
                    Err(e) => {
                        let error = Error::io(crate::error::WRITE_ZIP, p.tmp.to_path_buf())(e);
                        failed.push((p.info.path.clone(), error));
                        None
                    }
                },
            )
            .collect();
        let mut dirs = std::collections::BTreeSet::new();
        for Pending { tmp, key, mut info } in flushed {
            let out = info.path.clone();
            if let Err(e) = tmp.persist(&out) {
                let error = Error::io("cannot move the new zip into place at", &out)(e.error);
                failed.push((out, error));
                continue;
            }
            dirs.insert(out.parent().unwrap_or(Path::new(".")).to_path_buf());
            // Stat after the store's link and the rename (both move the
            // ctime).
            if let Some(cache) = cache
                && let Ok(meta) = fs_err::metadata(&out)
            {
                info.stat = stat_of(&meta);
                cache.record_stage(
                    package::NAME,
                    &key,
                    &serde_json::to_string(&info).unwrap_or_default(),
                );
            }
        }
        for dir in dirs {
            if let Err(e) = fs_err::File::open(&dir).and_then(|d| d.sync_all()) {
                reporter.warn(format!("cannot flush the output directory to disk: {e}"));
            }
        }
        failed
    }
}

/// Starts writing `file`'s dirty pages to disk without waiting for them
/// (Linux's `sync_file_range`; elsewhere nothing): the build goes on with
/// the next artifact while the disk works. Only a hint: the fsync in
/// [`Outputs::publish`] is what makes the zip durable.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn start_writeback(file: &std::fs::File) {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is open (borrowed from `file` for the call)
    // and the call touches no memory of this process.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &std::fs::File) {}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Removes the temp zips in `dir` (of any output: several functions may
/// share an output directory) whose writer is dead (a killed build). A
/// temp file of a live process is never touched: it may be another build
/// of the same project, with another cache directory and so another lock,
/// writing its zip right now.
///
/// One named after this process is a dead build's too: this build has
/// no temp file in `dir` yet (see [`Outputs::prepare`]), and a build in a
/// container is often the same low pid every run (pid 1 as the
/// entrypoint), so its killed predecessor's temp files carry its own pid.
fn remove_dead_temp_files(dir: &Path) {
    let Ok(read) = fs_err::read_dir(dir) else {
        return;
    };
    let me = std::process::id();
    for entry in read.flatten() {
        let name = entry.file_name();
        let Some(pid) = temp_file_pid(&name.to_string_lossy()) else {
            continue;
        };
        if pid == me || !crate::process::process_alive(pid) {
            let _ = fs_err::remove_file(entry.path());
        }
    }
}

/// The writer's pid of a temp zip named `.lbuild-NAME.zip-PID-RANDOM.tmp`
/// (NAME may hold `-`; tempfile's random part is alphanumeric).
fn temp_file_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(".lbuild-")?.strip_suffix(".tmp")?;
    let mut parts = rest.rsplitn(3, '-');
    let random = parts.next()?;
    let pid = parts.next()?;
    let output = parts.next()?;
    let random_ok = !random.is_empty() && random.bytes().all(|b| b.is_ascii_alphanumeric());
    (random_ok && !output.is_empty())
        .then(|| pid.parse().ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The zips of a build are put in place at its end, each flushed first;
    /// one that cannot be renamed stays its old self (its temp file goes)
    /// and the others are published and recorded all the same.
    #[test]
    fn publish_puts_every_zip_in_place_but_one_that_cannot_be_moved() {
        let dir = tempfile::tempdir().unwrap();
        let out_dir = dir.path().join("dist");
        fs_err::create_dir_all(out_dir.join("blocked.zip/inside")).unwrap();
        fs_err::write(out_dir.join("b.zip"), "old b").unwrap();
        let cache = Cache::open(&dir.path().join(".lbuild")).unwrap();
        let outputs = Outputs::default();
        let write = |name: &str, bytes: &str, key: u8| {
            let out = out_dir.join(name);
            let tmp = outputs.temp_zip(&out).unwrap();
            fs_err::write(tmp.path(), bytes).unwrap();
            let info = ZipInfo {
                path: out,
                sha256: String::new(),
                code_sha256: String::new(),
                size: bytes.len() as u64,
                entries: 1,
                unzipped: 1,
                stat: (0, 0, 0),
            };
            outputs.queue(tmp, Hash::from_bytes([key; 32]), info);
        };
        write("a.zip", "first a", 1);
        write("b.zip", "new b", 2);
        write("blocked.zip", "never", 3);
        // Built again in the same build (a retried artifact): the last wins.
        write("a.zip", "new a", 4);
        // Nothing is in place before the build's end.
        assert!(!out_dir.join("a.zip").exists());
        assert_eq!(
            fs_err::read_to_string(out_dir.join("b.zip")).unwrap(),
            "old b"
        );

        let reporter = Reporter::new(crate::report::Mode::Quiet, false);
        let failed = outputs.publish(Some(&cache), &reporter);
        assert_eq!(failed.len(), 1, "{failed:?}");
        assert_eq!(failed[0].0, out_dir.join("blocked.zip"));
        assert!(
            failed[0]
                .1
                .to_string()
                .contains("cannot move the new zip into place"),
            "{}",
            failed[0].1
        );
        assert_eq!(
            fs_err::read_to_string(out_dir.join("a.zip")).unwrap(),
            "new a"
        );
        assert_eq!(
            fs_err::read_to_string(out_dir.join("b.zip")).unwrap(),
            "new b"
        );
        assert!(out_dir.join("blocked.zip/inside").is_dir());
        let mut names: Vec<String> = fs_err::read_dir(&out_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["a.zip", "b.zip", "blocked.zip"], "temp files left");
        // Each zip in place is recorded with the stat it has there, so the
        // next build finds it without reading it; the others are not.
        for (key, name) in [(4, "a.zip"), (2, "b.zip")] {
            let recorded: ZipInfo = serde_json::from_str(
                &cache
                    .stage_output(package::NAME, &Hash::from_bytes([key; 32]))
                    .unwrap()
                    .unwrap(),
            )
            .unwrap();
            let meta = fs_err::metadata(out_dir.join(name)).unwrap();
            assert_eq!(recorded.stat, stat_of(&meta), "{name}");
        }
        for key in [1, 3] {
            let found = cache.stage_output(package::NAME, &Hash::from_bytes([key; 32]));
            assert!(found.unwrap().is_none(), "key {key}");
        }
        // Published once: a second call has nothing left to do.
        assert!(outputs.publish(Some(&cache), &reporter).is_empty());
    }

    /// A killed build in a container left temp zips under the pid the
    /// next build runs as (pid 1 again): they are a dead build's, removed;
    /// a live process's stay.
    #[test]
    fn temp_files_under_this_process_pid_are_a_dead_builds() {
        let dir = tempfile::tempdir().unwrap();
        let mine = format!(".lbuild-a.zip-{}-AbC1.tmp", std::process::id());
        let mut live = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let theirs = format!(".lbuild-b.zip-{}-XyZ2.tmp", live.id());
        fs_err::write(dir.path().join(&mine), "partial").unwrap();
        fs_err::write(dir.path().join(&theirs), "being written").unwrap();
        Outputs::default().prepare(dir.path());
        let left: Vec<_> = fs_err::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        live.kill().unwrap();
        live.wait().unwrap();
        assert_eq!(left, [theirs]);
    }

    #[test]
    fn temp_file_pid_reads_the_writer_of_any_outputs_temp_file() {
        let out = Path::new("dist/my-fn-2.zip");
        let name = format!("{}4242-AbC123.tmp", temp_prefix(out));
        assert_eq!(temp_file_pid(&name), Some(4242));
        assert_eq!(temp_file_pid(".lbuild-a.zip-17-x9.tmp"), Some(17));
        for other in [
            "my-fn-2.zip",
            ".lbuild-a.zip-17-x9",
            ".lbuild-a.zip-notapid-x9.tmp",
            ".lbuild-17-x9.tmp",
            ".lbuild-a.zip-17-x-9.tmp",
        ] {
            assert_eq!(temp_file_pid(other), None, "{other}");
        }
    }
}
