//! One build at a time per cache directory and per project: an advisory
//! lock on the cache directory's `lock` file (which names its holder) and
//! one on the project directory itself (so that two builds of one project
//! with different cache directories cannot race on the output).
//!
//! std's `File::lock` is flock(2) on Unix: released by the kernel if the
//! holder dies, so a crashed build never leaves a stale lock behind. A
//! waiting build says who holds the lock and gives up after
//! `LBUILD_LOCK_TIMEOUT` seconds (default 300), naming the holder.

use std::fs::{File, TryLockError};
use std::io::{Read, Seek};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::report::Reporter;

/// The lock's file name inside the cache directory.
pub(crate) const LOCK_FILE: &str = "lock";

/// Seconds a build waits for a lock before giving up.
pub(crate) const TIMEOUT_ENV: &str = "LBUILD_LOCK_TIMEOUT";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
/// How often a waiting build tries again.
const POLL: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{path} is still locked by {holder} after {secs} s")]
    Timeout {
        path: PathBuf,
        holder: String,
        secs: u64,
    },
    #[error("{TIMEOUT_ENV}={value:?} is not a number of seconds")]
    BadTimeout { value: String },
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

impl LockError {
    pub fn hint(&self) -> Option<String> {
        match self {
            LockError::Timeout { .. } => Some(format!(
                "wait for it to finish, or stop it; set {TIMEOUT_ENV} (seconds) to wait longer"
            )),
            LockError::BadTimeout { .. } => Some(format!("set {TIMEOUT_ENV} to e.g. 600")),
            LockError::Io { .. } => None,
        }
    }
}

/// Held for the duration of a build; dropping it releases both locks.
#[derive(Debug)]
pub(crate) struct ProjectLock {
    _cache: File,
    _project: File,
}

/// Takes the cache directory's lock, then the project's (always in this
/// order, so two builds can never each hold one and wait for the other).
pub(crate) fn acquire(
    cache_dir: &Path,
    project_dir: &Path,
    reporter: &Reporter,
) -> Result<ProjectLock, LockError> {
    let timeout = timeout()?;
    let deadline = Instant::now() + timeout;
    let path = cache_dir.join(LOCK_FILE);
    let io = |action, path: &Path| {
        let path = path.to_path_buf();
        move |source| LockError::Io {
            action,
            path,
            source,
        }
    };
    let file = File::options()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(io("open the lock file", &path))?;
    wait_for(&file, &path, deadline, timeout, reporter, holder)?;
    // Name the holder for builds that will wait on us.
    let me = format!("{}\n{}\n", std::process::id(), command());
    // Overwrite in place, then cut to length: truncating to zero first
    // makes ext4 flush the file on close (its replace-via-truncate
    // heuristic), a disk write in every no-op build.
    file.write_all_at(me.as_bytes(), 0)
        .and_then(|()| file.set_len(me.len() as u64))
        .map_err(io("write", &path))?;

    let project = File::open(project_dir).map_err(io("open", project_dir))?;
    wait_for(&project, project_dir, deadline, timeout, reporter, |_| {
        "another lbuild of this project (with another cache directory)".to_string()
    })?;
    Ok(ProjectLock {
        _cache: file,
        _project: project,
    })
}

/// Locks `file`, waiting (with one message) until `deadline`.
fn wait_for(
    file: &File,
    path: &Path,
    deadline: Instant,
    timeout: Duration,
    reporter: &Reporter,
    describe: impl Fn(&File) -> String,
) -> Result<(), LockError> {
    let mut told = false;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(()),
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(source)) => {
                return Err(LockError::Io {
                    action: "lock",
                    path: path.to_path_buf(),
                    source,
                });
            }
        }
        if !told {
            reporter.info(format!(
                "waiting for lock {} held by {}...",
                path.display(),
                describe(file)
            ));
            told = true;
        }
        if Instant::now() >= deadline {
            return Err(LockError::Timeout {
                path: path.to_path_buf(),
                holder: describe(file),
                secs: timeout.as_secs(),
            });
        }
        std::thread::sleep(POLL);
    }
}

/// "pid N (COMMAND)" from the lock file, as its holder wrote it.
fn holder(mut file: &File) -> String {
    let mut text = String::new();
    let _ = file.rewind().and_then(|()| file.read_to_string(&mut text));
    let mut lines = text.lines();
    match (
        lines.next().and_then(|p| p.parse::<u32>().ok()),
        lines.next(),
    ) {
        (Some(pid), Some(cmd)) => format!("pid {pid} ({cmd})"),
        (Some(pid), None) => format!("pid {pid}"),
        _ => "another lbuild".to_string(),
    }
}

/// This process's command line, short: `lbuild watch`, `lbuild --json`.
fn command() -> String {
    let mut args = std::env::args();
    let program = args
        .next()
        .map(|a| {
            Path::new(&a)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or(a)
        })
        .unwrap_or_else(|| "lbuild".into());
    let line = std::iter::once(program)
        .chain(args)
        .collect::<Vec<_>>()
        .join(" ");
    let line = line.replace('\n', " ");
    match line.char_indices().nth(120) {
        Some((i, _)) => format!("{}…", &line[..i]),
        None => line,
    }
}

pub(crate) fn timeout() -> Result<Duration, LockError> {
    match std::env::var(TIMEOUT_ENV) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .ok_or(LockError::BadTimeout { value: v }),
        _ => Ok(DEFAULT_TIMEOUT),
    }
}
