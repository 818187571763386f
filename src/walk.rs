//! Walking a directory into a sorted list of candidate files.
//!
//! Owns the rules every stage shares: what is never packaged (byte-code,
//! VCS and lbuild state, secrets), how symlinks are treated (followed only
//! when their target stays inside the root), and that archive names are
//! UTF-8 and sorted by their bytes. It does not apply a stage's own globs;
//! the caller passes a filter.

use std::path::{Path, PathBuf};

use crate::exclusions::{
    IGNORE_FILES, PRUNED_DIRS, TOOL_DIRS, excluded_by_default, excluded_from_trees, is_virtualenv,
};

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
    #[error("broken symlink {path}: {source}")]
    BrokenSymlink {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("symlink loop at {path}: {message}")]
    Loop { path: PathBuf, message: String },
    /// A file or a directory that cannot be read: the same error (and exit
    /// code) for both.
    #[error("cannot read {path}: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file the globs select that lies in the output's directory, which
    /// the walk leaves out (it is lbuild's).
    #[error(
        "{path} is selected by the globs but lies in the output directory {} (of {output}), which lbuild leaves out of the walk",
        output.parent().unwrap_or(output).display()
    )]
    InOutputDir { path: PathBuf, output: PathBuf },
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
            WalkError::BrokenSymlink { .. } | WalkError::Loop { .. } => {
                Some("fix or remove the link, or exclude it".into())
            }
            WalkError::Unreadable { .. } => Some(
                "make it readable (chmod), or exclude it if it is not meant to be packaged".into(),
            ),
            WalkError::InOutputDir { .. } => {
                Some("write the zip to a directory of its own, e.g. \"dist/NAME.zip\"".into())
            }
            WalkError::Io { .. } => None,
        }
    }
}

/// What one walk covers.
pub(crate) struct Walk<'a> {
    /// Where the walk starts.
    pub dir: &'a Path,
    /// Archive names are relative to this.
    pub names_from: &'a Path,
    /// Symlinks must resolve inside this.
    pub root: &'a Path,
    /// lbuild's own directories (the cache): never entered.
    pub skip: &'a [PathBuf],
    /// The output file. Its directory (when strictly below `dir`) is
    /// lbuild's and left out, but walked so that a file the globs select
    /// there is an error rather than silently missing from the zip.
    pub output: Option<&'a Path>,
    /// A project walk (the sources): honour the project's ignore files
    /// ([`IGNORE_FILES`] and `.git/info/exclude`) from this directory (the
    /// project's) down, and prune [`TOOL_DIRS`] and virtualenvs. `None`
    /// for the other walks (config globs, installed trees).
    pub ignores_from: Option<&'a Path>,
}

/// Regular files of an installed dependency tree under `dir` (following
/// in-root symlinks), as (name relative to `names_from`, absolute path),
/// sorted by name bytes, by the trees' rule
/// ([`crate::exclusions::excluded_from_trees`]: a wheel's `.env*` files
/// stay). `skip` holds absolute directories to leave out.
pub(crate) fn files_under(
    dir: &Path,
    names_from: &Path,
    root: &Path,
    skip: &[PathBuf],
    keep: impl FnMut(&str) -> bool,
) -> Result<Vec<(String, PathBuf)>, WalkError> {
    let walk = Walk {
        dir,
        names_from,
        root,
        skip,
        output: None,
        ignores_from: None,
    };
    walk_files(&walk, keep, |_| false, excluded_from_trees)
}

/// The files of `walk` that `keep` selects, leaving out the directories
/// `prune_dir` names (relative to `names_from`, '/'-separated). Only what
/// would be packaged is checked (UTF-8 name, symlink target inside the
/// root, readable, not a broken link or a loop): what is not packaged
/// cannot fail the build. An unreadable directory can: what it holds is
/// unknown.
pub(crate) fn files(
    walk: &Walk,
    keep: impl FnMut(&str) -> bool,
    prune_dir: impl Fn(&str) -> bool,
) -> Result<Vec<(String, PathBuf)>, WalkError> {
    walk_files(walk, keep, prune_dir, excluded_by_default)
}

/// [`files`] with the default exclusions `excluded` (the project's, or an
/// installed tree's).
fn walk_files(
    walk: &Walk,
    mut keep: impl FnMut(&str) -> bool,
    prune_dir: impl Fn(&str) -> bool,
    excluded: fn(&str) -> bool,
) -> Result<Vec<(String, PathBuf)>, WalkError> {
    let Walk {
        dir,
        names_from,
        root,
        skip,
        output,
        ignores_from,
    } = *walk;
    let rel_name = |path: &Path| -> String {
        path.strip_prefix(names_from)
            .unwrap_or(path)
            .to_string_lossy()
            .replace(std::path::MAIN_SEPARATOR, "/")
    };
    let out_dir = output
        .and_then(Path::parent)
        .filter(|d| d.starts_with(dir) && *d != dir);
    let mut out = Vec::new();
    // Symlinked directories that lead outside the root: an error only if a
    // file below them is kept.
    let mut escaping: Vec<(PathBuf, PathBuf)> = Vec::new();
    // The ignore files in force: (depth of their directory, matcher);
    // those above `dir` and `dir`'s own at depth 0.
    let ignores = std::cell::RefCell::new(match ignores_from {
        Some(project) => IgnoreStack::above(project, dir)?,
        None => IgnoreStack::default(),
    });
    let ignore_error: std::cell::RefCell<Option<WalkError>> = std::cell::RefCell::new(None);
    let reads_ignores = ignores_from.is_some();
    let walker = WalkDir::new(dir)
        .follow_links(true)
        .into_iter()
        .filter_entry(|e| {
            let is_dir = e.file_type().is_dir();
            if e.depth() == 0 {
                return true;
            }
            if is_dir
                && (e.file_name().to_str().is_some_and(|n| {
                    PRUNED_DIRS.contains(&n) || (reads_ignores && TOOL_DIRS.contains(&n))
                }) || skip.iter().any(|s| s == e.path())
                    || prune_dir(&rel_name(e.path()))
                    || (reads_ignores && is_virtualenv(e.path())))
            {
                return false;
            }
            if !reads_ignores {
                return true;
            }
            // The output's directory is walked whatever the ignore files
            // say: a selected file there is an error, not silently dropped.
            let in_out_dir = out_dir.is_some_and(|d| e.path().starts_with(d));
            let mut stack = ignores.borrow_mut();
            // Levels at this depth or deeper belong to a finished subtree.
            stack.levels.retain(|(d, _)| *d < e.depth());
            if !in_out_dir && stack.ignored(e.path(), is_dir, e.depth()) {
                return false;
            }
            if is_dir {
                match read_ignores(e.path()) {
                    Ok(Some(m)) => stack.push(e.depth(), m),
                    Ok(None) => {}
                    Err(err) => {
                        ignore_error.borrow_mut().get_or_insert(err);
                    }
                }
            }
            true
        });
    // Files reached below a symlinked directory inside the walk, with the
    // file they resolve to: packaged once, under their real name when the
    // walk reaches that too.
    let mut linked_dirs: Vec<PathBuf> = Vec::new();
    let mut via_link: Vec<(String, PathBuf)> = Vec::new();
    for item in walker {
        if let Some(err) = ignore_error.borrow_mut().take() {
            return Err(err);
        }
        let entry = match item {
            Ok(entry) => entry,
            Err(e) => {
                let path = e
                    .path()
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| dir.to_path_buf());
                let name = rel_name(&path);
                let ignored =
                    reads_ignores && ignores.borrow().ignored(&path, false, e.depth().max(1));
                let packaged = !ignored && !excluded(&name) && keep(&name);
                match classify(&path, &e) {
                    // Gone since its directory was read: not an input any more.
                    Problem::Vanished => continue,
                    Problem::BrokenSymlink(_) | Problem::FileLoop(_) if !packaged => continue,
                    Problem::BrokenSymlink(source) => {
                        return Err(WalkError::BrokenSymlink { path, source });
                    }
                    Problem::FileLoop(source) => {
                        return Err(WalkError::Loop {
                            path,
                            message: source.to_string(),
                        });
                    }
                    Problem::DirLoop(ancestor) => {
                        return Err(WalkError::Loop {
                            path,
                            message: format!("it leads back to {}", ancestor.display()),
                        });
                    }
                    Problem::Unreadable(source) => {
                        return Err(WalkError::Unreadable { path, source });
                    }
                    Problem::Other(message) => return Err(WalkError::Io { path, message }),
                }
            }
        };
        if entry.file_type().is_dir() {
            if entry.path_is_symlink()
                && let Ok(target) = entry.path().canonicalize()
                && !target.starts_with(root)
            {
                escaping.push((entry.path().to_path_buf(), target));
            } else if entry.path_is_symlink() {
                linked_dirs.push(entry.path().to_path_buf());
            }
            continue;
        }
        if !entry.file_type().is_file() {
            continue;
        }
        let name = rel_name(entry.path());
        if excluded(&name) || !keep(&name) || Some(entry.path()) == output {
            continue;
        }
        if let Some(out_dir) = out_dir
            && entry.path().starts_with(out_dir)
        {
            // lbuild's temporary zips beside the output are not sources,
            // nor the SBOMs and provenance statements it writes there.
            let temp = entry.path().parent() == Some(out_dir)
                && entry.file_name().to_str().is_some_and(|n| {
                    n.starts_with(".lbuild-")
                        || n.ends_with(".cdx.json")
                        || n.ends_with(".spdx.json")
                        || n.ends_with(".intoto.json")
                });
            if temp {
                continue;
            }
            return Err(WalkError::InOutputDir {
                path: entry.path().to_path_buf(),
                output: output.unwrap_or(out_dir).to_path_buf(),
            });
        }
        if entry.path_is_symlink() {
            let target =
                entry
                    .path()
                    .canonicalize()
                    .map_err(|source| WalkError::BrokenSymlink {
                        path: entry.path().to_path_buf(),
                        source,
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
        if linked_dirs.iter().any(|l| entry.path().starts_with(l))
            && let Ok(real) = entry.path().canonicalize()
        {
            via_link.push((name.clone(), real));
        }
        out.push((name, entry.path().to_path_buf()));
    }
    if let Some(err) = ignore_error.into_inner() {
        return Err(err);
    }
    out.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    if !via_link.is_empty() {
        out = once_per_file(out, via_link);
    }
    Ok(out)
}

/// Keep one name per file reached through a directory symlink: the real
/// path's when the walk also reached it directly, else the first name in
/// byte order. `out` is sorted; so is the result.
fn once_per_file(
    out: Vec<(String, PathBuf)>,
    via_link: Vec<(String, PathBuf)>,
) -> Vec<(String, PathBuf)> {
    use std::collections::{HashMap, HashSet};
    let linked: HashMap<&str, &PathBuf> = via_link.iter().map(|(n, p)| (n.as_str(), p)).collect();
    let direct: HashSet<&Path> = out
        .iter()
        .filter(|(n, _)| !linked.contains_key(n.as_str()))
        .map(|(_, p)| p.as_path())
        .collect();
    let mut seen: HashSet<&PathBuf> = HashSet::new();
    let keep: Vec<bool> = out
        .iter()
        .map(|(n, _)| match linked.get(n.as_str()) {
            Some(real) => !direct.contains(real.as_path()) && seen.insert(real),
            None => true,
        })
        .collect();
    out.into_iter()
        .zip(keep)
        .filter_map(|(e, k)| k.then_some(e))
        .collect()
}

/// The ignore matchers in force at one point of a depth-first walk.
#[derive(Default)]
struct IgnoreStack {
    levels: Vec<(usize, ignore::gitignore::Gitignore)>,
}

impl IgnoreStack {
    /// The ignore files from `project` down to `dir` (both included),
    /// `.git/info/exclude` first when `.git` is a directory in between.
    fn above(project: &Path, dir: &Path) -> Result<IgnoreStack, WalkError> {
        let mut chain: Vec<&Path> = dir
            .ancestors()
            .take_while(|a| a.starts_with(project))
            .collect();
        chain.reverse();
        let mut stack = IgnoreStack::default();
        if let Some(repo) = chain.iter().find(|a| a.join(".git").is_dir()) {
            let exclude = repo.join(".git/info/exclude");
            if let Some(m) = read_matcher(repo, &[exclude])? {
                stack.levels.push((0, m));
            }
        }
        for a in chain {
            if let Some(m) = read_ignores(a)? {
                stack.levels.push((0, m));
            }
        }
        Ok(stack)
    }

    fn push(&mut self, depth: usize, m: ignore::gitignore::Gitignore) {
        self.levels.retain(|(d, _)| *d < depth);
        self.levels.push((depth, m));
    }

    /// Whether the entry at `depth` is ignored by its ancestors' files:
    /// the deepest file with a matching line decides (a `!` line re-includes).
    fn ignored(&self, path: &Path, is_dir: bool, depth: usize) -> bool {
        for (d, m) in self.levels.iter().rev() {
            if *d >= depth {
                continue;
            }
            match m.matched(path, is_dir) {
                ignore::Match::None => continue,
                ignore::Match::Ignore(_) => return true,
                ignore::Match::Whitelist(_) => return false,
            }
        }
        false
    }
}

/// `dir`'s own ignore files as one matcher (later files win), if any.
fn read_ignores(dir: &Path) -> Result<Option<ignore::gitignore::Gitignore>, WalkError> {
    let files: Vec<PathBuf> = IGNORE_FILES.iter().map(|f| dir.join(f)).collect();
    read_matcher(dir, &files)
}

/// One matcher rooted at `root` from the lines of `files` (missing files
/// are skipped; an unreadable one is an error; a line that is not a valid
/// glob is skipped, as git does).
fn read_matcher(
    root: &Path,
    files: &[PathBuf],
) -> Result<Option<ignore::gitignore::Gitignore>, WalkError> {
    let mut builder = ignore::gitignore::GitignoreBuilder::new(root);
    let mut any = false;
    for file in files {
        let text = match fs_err::read(file) {
            Ok(bytes) => bytes,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                continue;
            }
            Err(source) => {
                return Err(WalkError::Unreadable {
                    path: file.clone(),
                    source,
                });
            }
        };
        for line in String::from_utf8_lossy(&text).lines() {
            if builder.add_line(Some(file.clone()), line).is_ok() {
                any = true;
            }
        }
    }
    if !any {
        return Ok(None);
    }
    match builder.build() {
        Ok(m) if !m.is_empty() => Ok(Some(m)),
        Ok(_) => Ok(None),
        Err(e) => Err(WalkError::Io {
            path: root.to_path_buf(),
            message: e.to_string(),
        }),
    }
}

/// What went wrong with one entry of the walk.
#[derive(Debug)]
enum Problem {
    /// The entry no longer exists (removed after its directory was read).
    Vanished,
    /// A symlink whose target does not exist.
    BrokenSymlink(std::io::Error),
    /// A symlink that resolves to itself (ELOOP).
    FileLoop(std::io::Error),
    /// A symlinked directory leading back to one of its ancestors.
    DirLoop(PathBuf),
    /// Permission denied: a directory that cannot be listed, or an entry
    /// that cannot be stat'ed.
    Unreadable(std::io::Error),
    Other(String),
}

fn classify(path: &Path, e: &walkdir::Error) -> Problem {
    if let Some(ancestor) = e.loop_ancestor() {
        return Problem::DirLoop(ancestor.to_path_buf());
    }
    let Some(io) = e.io_error() else {
        return Problem::Other(e.to_string());
    };
    classify_io(path, io)
}

fn classify_io(path: &Path, io: &std::io::Error) -> Problem {
    let copy = || std::io::Error::new(io.kind(), io.to_string());
    if io.kind() == std::io::ErrorKind::PermissionDenied {
        return Problem::Unreadable(copy());
    }
    // Look at the entry itself (not following it): a missing entry, a link
    // to a missing target, and a link that never resolves (a loop) differ.
    match fs_err::symlink_metadata(path) {
        Err(l) if l.kind() == std::io::ErrorKind::NotFound => Problem::Vanished,
        Ok(m) if m.file_type().is_symlink() => {
            if io.kind() == std::io::ErrorKind::NotFound {
                Problem::BrokenSymlink(copy())
            } else {
                Problem::FileLoop(copy())
            }
        }
        _ => Problem::Other(io.to_string()),
    }
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
        fs_err::create_dir(d.path().join("a")).unwrap();
        fs_err::write(d.path().join("a/b.py"), "").unwrap();
        fs_err::write(d.path().join("a.txt"), "").unwrap();
        let root = d.path().canonicalize().unwrap();
        let names: Vec<_> = files_under(&root, &root, &root, &[], |_| true)
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["a.txt", "a/b.py"]); // '.' (0x2e) < '/' (0x2f)
    }

    #[test]
    fn tool_dirs_and_virtualenvs_are_pruned_only_from_project_walks() {
        // A wheel may ship node_modules/ assets: installed trees keep them.
        let d = tempfile::tempdir().unwrap();
        let root = d.path().canonicalize().unwrap();
        for f in [
            "a.py",
            "node_modules/x/i.js",
            "env/pyvenv.cfg",
            "env/lib/s.py",
        ] {
            let p = root.join(f);
            fs_err::create_dir_all(p.parent().unwrap()).unwrap();
            fs_err::write(p, "").unwrap();
        }
        let names = |ignores_from: Option<&Path>| -> Vec<String> {
            let walk = Walk {
                dir: &root,
                names_from: &root,
                root: &root,
                skip: &[],
                output: None,
                ignores_from,
            };
            files(&walk, |_| true, |_| false)
                .unwrap()
                .into_iter()
                .map(|(n, _)| n)
                .collect()
        };
        assert_eq!(
            names(None),
            [
                "a.py",
                "env/lib/s.py",
                "env/pyvenv.cfg",
                "node_modules/x/i.js"
            ]
        );
        assert_eq!(names(Some(&root)), ["a.py"]);
    }

    #[test]
    fn an_ignore_file_applies_to_its_own_directory_only() {
        // Regression: a sibling's matcher stayed in force for the next
        // directory when that one had no ignore file of its own.
        let d = tempfile::tempdir().unwrap();
        let root = d.path().canonicalize().unwrap();
        for dir in ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"] {
            fs_err::create_dir(root.join(dir)).unwrap();
            fs_err::write(root.join(dir).join("x.py"), "").unwrap();
        }
        fs_err::write(root.join("e/.gitignore"), "x.py\n").unwrap();
        let walk = Walk {
            dir: &root,
            names_from: &root,
            root: &root,
            skip: &[],
            output: None,
            ignores_from: Some(&root),
        };
        let names: Vec<_> = files(&walk, |n| n.ends_with(".py"), |_| false)
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(
            names,
            [
                "a/x.py", "b/x.py", "c/x.py", "d/x.py", "f/x.py", "g/x.py", "h/x.py", "i/x.py",
                "j/x.py"
            ]
        );
    }

    #[test]
    fn a_vanished_entry_is_not_a_broken_symlink() {
        let d = tempfile::tempdir().unwrap();
        let gone = d.path().join("gone");
        let not_found = || std::io::Error::from(std::io::ErrorKind::NotFound);
        assert!(matches!(
            classify_io(&gone, &not_found()),
            Problem::Vanished
        ));
        std::os::unix::fs::symlink("nowhere", &gone).unwrap();
        assert!(matches!(
            classify_io(&gone, &not_found()),
            Problem::BrokenSymlink(_)
        ));
        let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        assert!(matches!(
            classify_io(&gone, &denied),
            Problem::Unreadable(_)
        ));
    }

    #[test]
    fn loops_and_broken_links_that_are_not_kept_are_skipped() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().canonicalize().unwrap();
        fs_err::write(root.join("app.py"), "").unwrap();
        std::os::unix::fs::symlink("loop.txt", root.join("loop.txt")).unwrap();
        std::os::unix::fs::symlink("missing", root.join("gone.txt")).unwrap();
        let py = |n: &str| n.ends_with(".py");
        let names: Vec<_> = files_under(&root, &root, &root, &[], py)
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["app.py"]);
        std::os::unix::fs::symlink("loop.py", root.join("loop.py")).unwrap();
        let err = files_under(&root, &root, &root, &[], py).unwrap_err();
        assert!(matches!(err, WalkError::Loop { .. }), "{err}");
    }
}
