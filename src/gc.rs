//! `lbuild gc`: forgets a project's stage records unused for some days
//! (`--days`), or trims the machine store to a size, least recently used
//! first (`--max-size`). It decides nothing about what a build reuses.

use crate::Error;
use crate::cache::Cache;
use crate::manifest::Plan;
use crate::pipeline::prepare_cache_dir;
use crate::report::{Mode, Reporter};
use crate::stages::deps;
use crate::units::human_size;

/// Forgets stage records (and their installed trees) unused for `days`.
pub(crate) fn gc(plan: &Plan, days: u64, reporter: &Reporter) -> crate::Result<usize> {
    prepare_cache_dir(plan)?;
    let _lock = crate::lock::acquire(&plan.cache_dir, &plan.project_dir, reporter)?;
    let cache = Cache::open(&plan.cache_dir)?;
    let removed = cache.gc_stages(days)?;
    for (stage, key) in &removed {
        // Trees in the machine store are shared: `lbuild gc --max-size`
        // removes those; here only trees kept in the cache directory.
        if stage == deps::NAME && crate::context::machine_store_of(plan).root() == plan.cache_dir {
            let dir = deps::key_dir(&plan.cache_dir, key);
            if dir.exists() {
                fs_err::remove_dir_all(&dir).map_err(Error::io("cannot remove", &dir))?;
            }
        }
        reporter.detail(format!("forgot {stage} {}", key.to_hex()));
    }
    reporter.info(format!(
        "removed {} cache entries unused for {days} days",
        removed.len()
    ));
    Ok(removed.len())
}

/// `lbuild gc --max-size`: trims the machine store to `max` bytes, least
/// recently used first, once no build is using it.
pub(crate) fn gc_store(max: u64, reporter: &Reporter) -> crate::Result<()> {
    let store = machine_store_from_env()?;
    let (removed, kept) = store.gc(max)?;
    if reporter.mode == Mode::Json {
        reporter
            .json(&serde_json::json!({"store": store.root(), "removed": removed, "bytes": kept}));
    } else {
        reporter.info(format!(
            "removed {removed} items from {}; it holds {}",
            store.root().display(),
            human_size(kept)
        ));
    }
    Ok(())
}

/// The machine store named by the environment (no manifest needed).
pub(crate) fn machine_store_from_env() -> crate::Result<crate::store::MachineStore> {
    crate::manifest::store_dir_from_env()
        .map(crate::store::MachineStore::at)
        .ok_or_else(|| Error::Input {
            message: "no machine store: none of LBUILD_STORE, XDG_CACHE_HOME, HOME is set".into(),
            hint: "set LBUILD_STORE to a directory".into(),
        })
}
