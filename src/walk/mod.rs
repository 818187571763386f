//! Walking a directory into a sorted list of candidate files.
//!
//! Owns the rules every stage shares: what is never packaged (byte-code,
//! VCS and lbuild state, secrets), how symlinks are treated (followed only
//! when their target stays inside the root), and that archive names are
//! UTF-8 and sorted by their bytes. It does not apply a stage's own globs;
//! the caller passes a filter.
//!
//! A walk is two steps: a [`Listing`] (one walkdir pass applying the rules
//! every walk shares, kept as a tree in walk order with the problems met
//! where they lie), then a filter per walk (its prune, globs, output
//! directory, and the problems it reaches). [`Listings`] lets the sources
//! walks of one build share the listing of their root: it is read once,
//! pruning only what every member prunes, instead of once per artifact.
//!
//! The listing does the per-path work once so that a filter (run per
//! artifact) compares paths only at the output's depth: each item carries
//! its name, depth,
//! UTF-8-ness and default exclusion, and a directory the index after its
//! descendants. A project walk probes a directory's ignore files and
//! virtualenv marker only when the directory lists such a name.
//!
//! Rooms: the listing and its per-walk filter in `listing.rs`, the ignore
//! files in `ignore.rs`; here the walk's shape, its errors and the plain
//! (unshared) walk.

use std::path::{Path, PathBuf};

use crate::exclusions::{excluded_by_default, excluded_from_trees};

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
/// installed tree's): a listing of its own, filtered at once.
fn walk_files(
    walk: &Walk,
    keep: impl FnMut(&str) -> bool,
    prune_dir: impl Fn(&str) -> bool,
    excluded: fn(&str) -> bool,
) -> Result<Vec<(String, PathBuf)>, WalkError> {
    let key = ListingKey::of(walk);
    let out_dirs: Vec<PathBuf> = out_dir_of(walk)
        .map(Path::to_path_buf)
        .into_iter()
        .collect();
    let listing = Listing::read(&key, &prune_dir, &out_dirs, excluded);
    listing.filter(walk, keep, prune_dir)
}

/// The output's directory when it lies strictly below the walk's start:
/// lbuild's, walked only to check that no selected file lies there.
fn out_dir_of<'a>(walk: &Walk<'a>) -> Option<&'a Path> {
    walk.output
        .and_then(Path::parent)
        .filter(|d| d.starts_with(walk.dir) && *d != walk.dir)
}

mod ignore;
mod listing;

pub(crate) use listing::Listings;
use listing::{Listing, ListingKey};

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

    /// The project's own walk of `root` (its ignore files read), writing
    /// `output`.
    fn project_walk<'a>(root: &'a Path, output: Option<&'a Path>) -> Walk<'a> {
        Walk {
            dir: root,
            names_from: root,
            root,
            skip: &[],
            output,
            ignores_from: Some(root),
        }
    }

    /// A temp directory (kept alive by the first value) holding an empty
    /// file at each of `files`, and its canonical path.
    fn tree(files: &[&str]) -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().canonicalize().unwrap();
        for f in files {
            let p = root.join(f);
            fs_err::create_dir_all(p.parent().unwrap()).unwrap();
            fs_err::write(p, "").unwrap();
        }
        (d, root)
    }

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
        let (_dir, root) = tree(&[
            "a.py",
            "node_modules/x/i.js",
            "env/pyvenv.cfg",
            "env/lib/s.py",
        ]);
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
        let walk = project_walk(&root, None);
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

    /// Two walks over one root with their own globs: registered in one
    /// `Listings`, they read the root once and see what their own walks see.
    #[test]
    fn walks_of_one_root_share_one_listing_and_keep_their_own_view() {
        let (_dir, root) = tree(&["a/x.py", "b/y.py", "shared/s.py", "b/deep/z.py"]);
        // Only b's globs reach these: a's walk never fails on them.
        std::os::unix::fs::symlink("missing.py", root.join("b/gone.py")).unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs_err::write(outside.path().join("o.py"), "").unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("b/ext")).unwrap();
        let (out_a, out_b) = (root.join("dist/a.zip"), root.join("dist/b.zip"));
        let walk = |output: &'static str| Walk {
            dir: &root,
            names_from: &root,
            root: &root,
            skip: &[],
            output: Some(if output == "a" { &out_a } else { &out_b }),
            ignores_from: Some(&root),
        };
        let prune_a = |d: &str| !(d == "a" || d.starts_with("shared"));
        let prune_b = |d: &str| !(d.starts_with('b') || d.starts_with("shared"));
        let names = |r: Result<Vec<(String, PathBuf)>, WalkError>| -> Vec<String> {
            r.unwrap().into_iter().map(|(n, _)| n).collect()
        };
        let listings = Listings::default();
        listings.register(&walk("a"), std::sync::Arc::new(prune_a));
        listings.register(&walk("b"), std::sync::Arc::new(prune_b));
        let py = |n: &str| n.ends_with(".py");
        let a = names(listings.files(&walk("a"), py, prune_a));
        assert_eq!(a, ["a/x.py", "shared/s.py"]);
        assert_eq!(a, names(files(&walk("a"), py, prune_a)));
        // The listing was read once, by a: a file that appears afterwards
        // is not in b's view of this build.
        fs_err::write(root.join("b/late.py"), "").unwrap();
        let err = listings.files(&walk("b"), py, prune_b).unwrap_err();
        assert!(matches!(err, WalkError::BrokenSymlink { .. }), "{err}");
        let neither = |n: &str| py(n) && n != "b/gone.py" && !n.starts_with("b/ext/");
        let b = names(listings.files(&walk("b"), neither, prune_b));
        assert_eq!(b, ["b/deep/z.py", "b/y.py", "shared/s.py"]);
        assert_eq!(listings.reads(), 1);
        fs_err::remove_file(root.join("b/gone.py")).unwrap();
        let err = files(&walk("b"), py, prune_b).unwrap_err();
        assert!(matches!(err, WalkError::SymlinkEscapes { .. }), "{err}");
        // A walk nobody registered walks on its own.
        let other = root.join("dist/c.zip");
        let c = Walk {
            output: Some(&other),
            ..walk("a")
        };
        assert_eq!(
            names(listings.files(&c, py, prune_a)),
            ["a/x.py", "shared/s.py"]
        );
        assert_eq!(listings.reads(), 1);
    }

    /// The filter settles path tests by position and depth: a directory
    /// whose name shares a byte prefix with the output's directory (or an
    /// escaping link's) is not in it, the output is left out only where it
    /// lies, and names are the relative paths whatever `names_from` is.
    #[test]
    fn path_tests_by_position_match_the_paths() {
        let (_dir, root) = tree(&[
            "a.py",
            "dist2/b.py",
            "distx.py",
            "dist/.lbuild-tmp.zip",
            "dist/out.zip",
            "dist/sub/.lbuild-x.py",
            "sub/dist/c.py",
            "sub/out.zip",
            "ext2/e.py",
        ]);
        let outside = tempfile::tempdir().unwrap();
        fs_err::write(outside.path().join("o.py"), "").unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("ext")).unwrap();
        let output = root.join("dist/out.zip");
        let walk = project_walk(&root, Some(&output));
        let names = |r: Result<Vec<(String, PathBuf)>, WalkError>| -> Vec<String> {
            r.unwrap().into_iter().map(|(n, _)| n).collect()
        };
        let not_ext = |n: &str| !n.starts_with("ext/");
        let all = names(files(
            &walk,
            |n| not_ext(n) && !n.starts_with("dist/"),
            |_| false,
        ));
        assert_eq!(
            all,
            [
                "a.py",
                "dist2/b.py",
                "distx.py",
                "ext2/e.py",
                "sub/dist/c.py",
                "sub/out.zip"
            ]
        );
        // In the output's directory: a temporary beside the output is
        // skipped, the output itself too, one a level further down is not.
        let err = files(&walk, not_ext, |_| false).unwrap_err();
        assert!(
            matches!(&err, WalkError::InOutputDir { path, .. } if path.ends_with("dist/sub/.lbuild-x.py")),
            "{err}"
        );
        let top = |n: &str| not_ext(n) && !n.starts_with("dist/sub/");
        assert!(names(files(&walk, top, |_| false)).contains(&"a.py".to_string()));
        // Only what lies below the escaping link reaches it.
        let below_ext = |n: &str| !n.starts_with("dist/sub/");
        let err = files(&walk, below_ext, |_| false).unwrap_err();
        assert!(matches!(err, WalkError::SymlinkEscapes { .. }), "{err}");
        // Names relative to an ancestor of the start, and to a directory
        // that does not hold it (the whole path).
        let sub = root.join("sub");
        let from_root = Walk {
            dir: &sub,
            output: None,
            ..walk
        };
        assert_eq!(
            names(files(&from_root, |_| true, |_| false)),
            ["sub/dist/c.py", "sub/out.zip"]
        );
        let elsewhere = Walk {
            names_from: outside.path(),
            ..from_root
        };
        let full = |f: &str| sub.join(f).to_str().unwrap().to_string();
        assert_eq!(
            names(files(&elsewhere, |_| true, |_| false)),
            [full("dist/c.py"), full("out.zip")]
        );
    }

    /// A name that is not UTF-8 fails the walk that keeps it, also below a
    /// directory whose own name is not UTF-8 (names are built per level).
    #[test]
    fn a_non_utf8_name_fails_only_the_walk_that_keeps_it() {
        use std::os::unix::ffi::OsStrExt;
        let d = tempfile::tempdir().unwrap();
        let root = d.path().canonicalize().unwrap();
        let bad = std::ffi::OsStr::from_bytes(b"caf\xe9");
        fs_err::create_dir(root.join(bad)).unwrap();
        fs_err::write(root.join(bad).join("x.py"), "").unwrap();
        fs_err::write(root.join("ok.py"), "").unwrap();
        let walk = project_walk(&root, None);
        let err = files(&walk, |_| true, |_| false).unwrap_err();
        assert!(
            matches!(&err, WalkError::NonUtf8 { path } if path.ends_with("x.py")),
            "{err}"
        );
        let ok = files(&walk, |n| n == "ok.py", |_| false).unwrap();
        assert_eq!(ok.len(), 1);
    }

    /// Ignore files and the virtualenv marker are probed only where a
    /// directory lists such a name: what that decides must not change. An
    /// ignore file deep down applies to its own subtree (itself included),
    /// a virtualenv is pruned whatever its marker is (a file, a broken
    /// link, a directory), and a name that only differs in case is read as
    /// the file system says (here: not at all).
    #[test]
    fn ignore_files_and_virtualenvs_are_found_in_nested_directories() {
        let (_dir, root) = tree(&[
            "a.py",
            "pkg/m.py",
            "pkg/deep/er/x.py",
            "pkg/deep/er/y.py",
            "pkg/deep/z.py",
            "pkg/venv/lib/s.py",
            "pkg/venv/pyvenv.cfg",
            "pkg/linkvenv/lib/s.py",
            "pkg/dirvenv/pyvenv.cfg/c.py",
            "pkg/dirvenv/lib/s.py",
            "pkg/cased/PYVENV.CFG",
            "pkg/cased/k.py",
            "pkg/cased/.GitIgnore",
            "pkg/lb/.lbuildignore",
            "pkg/lb/w.py",
            "pkg/lb/v.py",
        ]);
        std::os::unix::fs::symlink("nowhere", root.join("pkg/linkvenv/pyvenv.cfg")).unwrap();
        fs_err::write(root.join("pkg/deep/er/.gitignore"), "x.py\n.gitignore\n").unwrap();
        fs_err::write(root.join("pkg/cased/.GitIgnore"), "k.py\n").unwrap();
        fs_err::write(root.join("pkg/lb/.lbuildignore"), "w.py\n").unwrap();
        let walk = project_walk(&root, None);
        let names: Vec<_> = files(&walk, |_| true, |_| false)
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(
            names,
            [
                "a.py",
                "pkg/cased/.GitIgnore",
                "pkg/cased/PYVENV.CFG",
                "pkg/cased/k.py",
                "pkg/deep/er/y.py",
                "pkg/deep/z.py",
                "pkg/lb/.lbuildignore",
                "pkg/lb/v.py",
                "pkg/m.py"
            ]
        );
        // Shared: one listing, the same view.
        let listings = Listings::default();
        let prune: listing::Prune = std::sync::Arc::new(|_: &str| false);
        listings.register(&walk, prune.clone());
        let shared: Vec<_> = listings
            .files(&walk, |_| true, |_| false)
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(shared, names);
    }

    /// An ignore file that is a link is probed like any other: a broken one
    /// is no ignore file (and no error unless kept), one that loops fails
    /// the walks entering its directory only, naming it.
    #[test]
    fn an_ignore_file_that_is_a_link_fails_only_the_walks_entering_it() {
        let (_dir, root) = tree(&["broken/a.py", "looped/b.py", "c.py"]);
        std::os::unix::fs::symlink("nowhere", root.join("broken/.gitignore")).unwrap();
        std::os::unix::fs::symlink(".lbuildignore", root.join("looped/.lbuildignore")).unwrap();
        let walk = project_walk(&root, None);
        let py = |n: &str| n.ends_with(".py");
        let names: Vec<_> = files(&walk, py, |d| d == "looped")
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["broken/a.py", "c.py"]);
        let err = files(&walk, py, |_| false).unwrap_err();
        assert!(
            matches!(&err, WalkError::Unreadable { path, .. } if path.ends_with("looped/.lbuildignore")),
            "{err}"
        );
    }
}
