//! The deps stage: requirements.txt -> binary wheels for the Lambda target,
//! installed into a cached tree under `.lbuild/deps/KEY/`.
//!
//! (Skeleton: the installer integration lands with the dependencies issue.)

use std::time::Instant;

use super::{Entry, StageReport, Status};
use crate::cache::Cache;
use crate::manifest::Plan;
use crate::report::Reporter;

pub const NAME: &str = "deps";

#[derive(Debug, thiserror::Error)]
pub enum DepsError {
    #[error("the [dependencies] stage is not implemented yet")]
    NotImplemented,
}

pub fn run(
    plan: &Plan,
    _cache: &mut Cache,
    _reporter: &Reporter,
) -> crate::Result<(Vec<Entry>, StageReport)> {
    let started = Instant::now();
    if plan.deps.is_some() {
        return Err(DepsError::NotImplemented.into());
    }
    Ok((
        Vec::new(),
        StageReport {
            name: NAME,
            status: Status::Skipped,
            key: String::new(),
            ms: started.elapsed().as_millis() as u64,
            details: serde_json::json!({}),
            explain: Vec::new(),
        },
    ))
}

/// Where the tree installed for deps key `key` lives.
pub fn tree_dir(cache_dir: &std::path::Path, key: &crate::cache::Hash) -> std::path::PathBuf {
    cache_dir.join("deps").join(crate::cache::hex(key))
}
