//! `lbuild clean`: removes the outputs and lbuild's own files in the cache
//! directory, and nothing else (a directory without lbuild's mark is
//! refused). It does not touch the machine store.

use crate::Error;
use crate::manifest::Plan;
use crate::pipeline::prepare_cache_dir;
use crate::report::Reporter;

/// Removes the output zip and what lbuild keeps in the cache directory,
/// and nothing else: a directory without lbuild's mark is refused.
pub(crate) fn clean(artifacts: &[Plan], reporter: &Reporter) -> crate::Result<()> {
    let plan = &artifacts[0];
    let dir = &plan.cache_dir;
    let default = *dir == plan.project_dir.join(".lbuild");
    let exists = dir.exists();
    if exists && !default && !crate::cache::is_marked(dir) {
        return Err(crate::cache::CacheError::NotOurs { path: dir.clone() }.into());
    }
    prepare_cache_dir(plan)?;
    let lock = crate::lock::acquire(dir, &plan.project_dir, reporter)?;
    for path in artifacts.iter().map(|a| &a.output.path) {
        match fs_err::remove_file(path) {
            Ok(()) => reporter.info(format!("removed {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("cannot remove", path)(e)),
        }
    }
    // Only lbuild's own entries; the lock file we hold stays (removing it
    // would let a build waiting on this lock and a new one, on a new file,
    // run at once), and so does the mark.
    for entry in fs_err::read_dir(dir).map_err(Error::io("cannot read", dir))? {
        let entry = entry.map_err(Error::io("cannot read", dir))?;
        let path = entry.path();
        if !crate::cache::is_cache_entry(&entry.file_name().to_string_lossy()) {
            continue;
        }
        let removed = if entry.file_type().is_ok_and(|t| t.is_dir()) {
            fs_err::remove_dir_all(&path)
        } else {
            fs_err::remove_file(&path)
        };
        removed.map_err(Error::io("cannot remove", &path))?;
    }
    reporter.info(format!("emptied the cache {}", dir.display()));
    drop(lock);
    Ok(())
}
