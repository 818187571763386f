//! One build at a time per project: an advisory lock on `.lbuild/lock`.
//!
//! std's `File::lock` is flock(2) on Unix: released by the kernel if the
//! holder dies, so a crashed build never leaves a stale lock behind.

use std::fs::{File, TryLockError};
use std::path::Path;

use crate::Error;
use crate::report::Reporter;

/// The lock's file name inside the cache directory.
pub const LOCK_FILE: &str = "lock";

/// Held for the duration of a build; dropping it releases the lock.
#[derive(Debug)]
pub struct ProjectLock {
    _file: File,
}

pub fn acquire(cache_dir: &Path, reporter: &Reporter) -> crate::Result<ProjectLock> {
    std::fs::create_dir_all(cache_dir)
        .map_err(Error::io("cannot create the cache directory", cache_dir))?;
    let path = cache_dir.join(LOCK_FILE);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(Error::io("cannot open the lock file", &path))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            reporter
                .info("waiting for another lbuild of this project (lbuild watch?) to finish...");
            file.lock().map_err(Error::io("cannot lock", &path))?;
        }
        Err(TryLockError::Error(e)) => return Err(Error::io("cannot lock", &path)(e)),
    }
    Ok(ProjectLock { _file: file })
}
