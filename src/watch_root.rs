//! What a stage reads from disk, declared by the stage itself for
//! `lbuild watch` (each stage's `watch_roots`), so that the watcher never
//! re-derives it from the manifest.

use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The compiled globs a stage hands the watcher: which `/`-separated
/// names relative to a base they match.
pub(crate) trait NameMatcher: std::fmt::Debug + Send + Sync {
    fn is_match(&self, name: &str) -> bool;
}

impl NameMatcher for globset::GlobSet {
    fn is_match(&self, name: &str) -> bool {
        globset::GlobSet::is_match(self, name)
    }
}

/// A directory a stage reads, and which of its files are the stage's inputs.
#[derive(Debug, Clone)]
pub(crate) struct WatchRoot {
    /// Absolute and normalised. It may not exist yet.
    pub dir: PathBuf,
    /// The stage also reads the directories below `dir`: every one its walk
    /// enters (not [`crate::exclusions::PRUNED_DIRS`], not `skip`).
    pub recursive: bool,
    /// Absolute directories below `dir` the stage's walk never enters
    /// (lbuild's cache and output directory).
    pub skip: Vec<PathBuf>,
    pub inputs: WatchInputs,
}

/// Which changed paths under a [`WatchRoot`] are inputs of the stage.
#[derive(Debug, Clone)]
pub(crate) enum WatchInputs {
    /// Every entry directly in the directory (a find-links directory: its
    /// listing is part of the key).
    Listing,
    /// Exactly these files (absolute, normalised). `replan`: they name
    /// further inputs (`-r`/`-c` includes, `--find-links`), so an edit can
    /// change the stage's roots.
    Files { files: Vec<PathBuf>, replan: bool },
    /// Files whose `/`-separated path relative to `base` matches `include`
    /// and not `exclude`.
    Globs {
        base: PathBuf,
        include: Arc<dyn NameMatcher>,
        exclude: Arc<dyn NameMatcher>,
    },
}

impl WatchRoot {
    /// Whether `path` (absolute) is one of the files the stage reads.
    pub(crate) fn is_input(&self, path: &Path) -> bool {
        match &self.inputs {
            WatchInputs::Listing => path.parent() == Some(self.dir.as_path()),
            WatchInputs::Files { files, .. } => files.iter().any(|f| f == path),
            WatchInputs::Globs {
                base,
                include,
                exclude,
            } => path
                .strip_prefix(base)
                .ok()
                .and_then(Path::to_str)
                .map(|s| s.replace(std::path::MAIN_SEPARATOR, "/"))
                .is_some_and(|rel| include.is_match(&rel) && !exclude.is_match(&rel)),
        }
    }

    /// Whether a change to `path` can change the stage's roots.
    pub(crate) fn replans_on(&self, path: &Path) -> bool {
        matches!(&self.inputs, WatchInputs::Files { replan: true, .. }) && self.is_input(path)
    }
}
