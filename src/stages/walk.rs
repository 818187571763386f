//! Walking a directory into a sorted list of candidate files.
//!
//! Owns the rules every stage shares: what is never packaged (byte-code,
//! VCS and lbuild state, secrets), how symlinks are treated (followed only
//! when their target stays inside the root), and that archive names are
//! UTF-8 and sorted by their bytes. It does not apply a stage's own globs;
//! the caller passes a filter.

use std::path::{Path, PathBuf};

use walkdir::WalkDir;

#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    #[error("symlink {link} points outside {root} (to {target})")]
    SymlinkEscapes {
        link: PathBuf,
        root: PathBuf,
        target: PathBuf,
    },
    #[error("file name {path:?} is not valid UTF-8")]
    NonUtf8 { path: PathBuf },
    #[error("cannot read {path}: {message}")]
    Io { path: PathBuf, message: String },
}

impl WalkError {
    pub fn hint(&self) -> Option<String> {
        match self {
            WalkError::SymlinkEscapes { .. } => {
                Some("copy the file into the project, or exclude the link".into())
            }
            WalkError::NonUtf8 { .. } => Some("rename it; zip names must be UTF-8".into()),
            WalkError::Io { .. } => None,
        }
    }
}

/// Directory names never descended into: VCS and tool state, byte-code,
/// and virtual environments (host binaries and symlinks, never Lambda code).
pub const PRUNED_DIRS: &[&str] = &[
    ".git",
    ".hg",
    ".svn",
    "__pycache__",
    ".lbuild",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    ".tox",
    ".nox",
    ".venv",
];

/// True for files that never enter a zip: byte-code, secrets, and editor
/// lock files (Emacs keeps `.#name` as a dangling symlink while editing).
pub fn excluded_by_default(name: &str) -> bool {
    let base = name.rsplit('/').next().unwrap_or(name);
    base.ends_with(".pyc")
        || base.ends_with(".pyo")
        || base.starts_with(".env")
        || base.starts_with(".#")
        || base == ".DS_Store"
        || name.split('/').any(|seg| PRUNED_DIRS.contains(&seg))
}

/// Regular files under `dir` (following in-root symlinks), as
/// (name relative to `names_from`, absolute path), sorted by name bytes.
/// `skip` holds absolute directories to leave out (the output dir, the cache).
pub fn files_under(
    dir: &Path,
    names_from: &Path,
    root: &Path,
    skip: &[PathBuf],
    keep: impl FnMut(&str) -> bool,
) -> Result<Vec<(String, PathBuf)>, WalkError> {
    files_under_pruned(dir, names_from, root, skip, keep, |_| false)
}

/// [`files_under`], also leaving out the directories `prune_dir` names
/// (relative, `/`-separated). Only files that are kept are checked (UTF-8
/// name, symlink target inside the root): what is not packaged cannot fail
/// the build.
pub fn files_under_pruned(
    dir: &Path,
    names_from: &Path,
    root: &Path,
    skip: &[PathBuf],
    mut keep: impl FnMut(&str) -> bool,
    prune_dir: impl Fn(&str) -> bool,
) -> Result<Vec<(String, PathBuf)>, WalkError> {
    let rel_name = |path: &Path| -> String {
        path.strip_prefix(names_from)
            .unwrap_or(path)
            .to_string_lossy()
            .replace(std::path::MAIN_SEPARATOR, "/")
    };
    let mut out = Vec::new();
    // Symlinked directories that lead outside the root: an error only if a
    // file below them is kept.
    let mut escaping: Vec<(PathBuf, PathBuf)> = Vec::new();
    let walker = WalkDir::new(dir)
        .follow_links(true)
        .into_iter()
        .filter_entry(|e| {
            !(e.file_type().is_dir()
                && e.depth() > 0
                && (e
                    .file_name()
                    .to_str()
                    .is_some_and(|n| PRUNED_DIRS.contains(&n))
                    || skip.iter().any(|s| s == e.path())
                    || prune_dir(&rel_name(e.path()))))
        });
    for item in walker {
        let entry = match item {
            Ok(entry) => entry,
            Err(e) => {
                let path = e
                    .path()
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| dir.to_path_buf());
                let name = rel_name(&path);
                // A dangling symlink matters only if it would be packaged.
                let dangling = e
                    .io_error()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound);
                if dangling && (excluded_by_default(&name) || !keep(&name)) {
                    continue;
                }
                return Err(WalkError::Io {
                    path,
                    message: if dangling {
                        format!("broken symlink: {e}")
                    } else {
                        e.to_string()
                    },
                });
            }
        };
        if entry.file_type().is_dir() {
            if entry.path_is_symlink()
                && let Ok(target) = entry.path().canonicalize()
                && !target.starts_with(root)
            {
                escaping.push((entry.path().to_path_buf(), target));
            }
            continue;
        }
        if !entry.file_type().is_file() {
            continue;
        }
        let name = rel_name(entry.path());
        if excluded_by_default(&name) || !keep(&name) {
            continue;
        }
        if entry.path_is_symlink() {
            let target = entry.path().canonicalize().map_err(|e| WalkError::Io {
                path: entry.path().to_path_buf(),
                message: format!("broken symlink: {e}"),
            })?;
            if !target.starts_with(root) {
                return Err(WalkError::SymlinkEscapes {
                    link: entry.path().to_path_buf(),
                    root: root.to_path_buf(),
                    target,
                });
            }
        }
        if let Some((link, target)) = escaping.iter().find(|(l, _)| entry.path().starts_with(l)) {
            return Err(WalkError::SymlinkEscapes {
                link: link.clone(),
                root: root.to_path_buf(),
                target: target.clone(),
            });
        }
        if entry
            .path()
            .strip_prefix(names_from)
            .unwrap_or(entry.path())
            .to_str()
            .is_none()
        {
            return Err(WalkError::NonUtf8 {
                path: entry.path().to_path_buf(),
            });
        }
        out.push((name, entry.path().to_path_buf()));
    }
    out.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_exclusions() {
        assert!(excluded_by_default("pkg/__pycache__/a.cpython-312.pyc"));
        assert!(excluded_by_default("a.pyo"));
        assert!(excluded_by_default(".env.production"));
        assert!(!excluded_by_default("environment.py"));
        assert!(!excluded_by_default("app.py"));
    }

    #[test]
    fn sorted_by_full_path_bytes_not_walk_order() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("a")).unwrap();
        std::fs::write(d.path().join("a/b.py"), "").unwrap();
        std::fs::write(d.path().join("a.txt"), "").unwrap();
        let root = d.path().canonicalize().unwrap();
        let names: Vec<_> = files_under(&root, &root, &root, &[], |_| true)
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["a.txt", "a/b.py"]); // '.' (0x2e) < '/' (0x2f)
    }
}
