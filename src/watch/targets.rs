//! What is watched: directories, never single files (an editor's
//! rename-save replaces the inode a file watch sits on), each watched
//! non-recursively so that pruned trees cost no inotify watches.
//!
//! Each stage says what it reads (`watch_roots` in `stages::sources`,
//! `stages::config`, `stages::deps`); this module only turns those roots
//! into directories: a recursive root becomes itself and every directory
//! below it that the build's walk enters, and a directory that does not
//! exist yet is covered by its nearest existing ancestor (so that its
//! creation is seen). lambda.toml's directory is always watched.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::exclusions;
use crate::manifest::Plan;
use crate::stages::{config, deps, sources};
use crate::watch_root::WatchRoot;

/// The roots of one loaded manifest.
pub(crate) struct Targets {
    manifest_path: PathBuf,
    roots: Vec<WatchRoot>,
    /// For each root, the index (in the plans given) of the artifact
    /// whose stage reads it.
    owners: Vec<usize>,
}

impl Targets {
    #[cfg(test)]
    pub(crate) fn of(plan: &Plan) -> Targets {
        Targets::of_all(std::slice::from_ref(plan))
    }

    /// What every artifact of a workspace reads.
    pub(crate) fn of_all(plans: &[Plan]) -> Targets {
        let mut roots = Vec::new();
        let mut owners = Vec::new();
        for (i, plan) in plans.iter().enumerate() {
            roots.extend(sources::watch_roots(plan));
            roots.extend(config::watch_roots(plan));
            roots.extend(deps::watch_roots(plan));
            owners.resize(roots.len(), i);
        }
        Targets {
            manifest_path: plans
                .first()
                .map(|p| p.manifest_path.clone())
                .unwrap_or_default(),
            roots,
            owners,
        }
    }

    /// The artifacts (indexes in the plans given to [`Targets::of_all`])
    /// that read `path`; None when a change to it may concern any of them
    /// (lambda.toml, or a path no stage claims: a directory renamed, an
    /// ignore file), so that the caller builds everything.
    pub(crate) fn readers(&self, path: &Path) -> Option<BTreeSet<usize>> {
        if path == self.manifest_path {
            return None;
        }
        let readers: BTreeSet<usize> = self
            .roots
            .iter()
            .zip(&self.owners)
            .filter(|(r, _)| r.is_input(path))
            .map(|(_, i)| *i)
            .collect();
        (!readers.is_empty()).then_some(readers)
    }

    /// The directories to watch (each non-recursively), lambda.toml's
    /// directory excepted (the caller always adds it).
    pub(crate) fn dirs(&self) -> BTreeSet<PathBuf> {
        let mut dirs = BTreeSet::new();
        for root in &self.roots {
            if root.recursive {
                add_tree(&mut dirs, &root.dir, &root.skip);
            } else {
                add_dir(&mut dirs, &root.dir);
            }
        }
        dirs
    }

    /// Whether `path` is one of the files a build reads.
    pub(crate) fn is_input(&self, path: &Path) -> bool {
        path == self.manifest_path || self.roots.iter().any(|r| r.is_input(path))
    }

    /// Whether a change to `path` can change what is watched (lambda.toml,
    /// or a file that names other inputs, as requirements files do).
    pub(crate) fn replans_on(&self, path: &Path) -> bool {
        path == self.manifest_path || self.roots.iter().any(|r| r.replans_on(path))
    }
}

/// Adds `dir`, or its nearest existing ancestor when it does not exist yet.
pub(crate) fn add_dir(dirs: &mut BTreeSet<PathBuf>, dir: &Path) {
    let mut d = dir;
    while !d.is_dir() {
        match d.parent() {
            Some(p) => d = p,
            None => return,
        }
    }
    dirs.insert(d.to_path_buf());
}

/// Adds `root` and every directory below it that the build walks.
fn add_tree(dirs: &mut BTreeSet<PathBuf>, root: &Path, skip: &[PathBuf]) {
    if !root.is_dir() {
        add_dir(dirs, root);
        return;
    }
    let walker = walkdir::WalkDir::new(root)
        .follow_links(false)
        .into_iter()
        .filter_entry(|e| {
            e.file_type().is_dir()
                && (e.depth() == 0
                    || !(e.file_name().to_str().is_some_and(|n| {
                        exclusions::PRUNED_DIRS.contains(&n) || exclusions::TOOL_DIRS.contains(&n)
                    }) || skip.iter().any(|s| s == e.path())
                        || exclusions::is_virtualenv(e.path())))
        });
    // Unreadable directories are left out: the build reports them.
    dirs.extend(walker.flatten().map(walkdir::DirEntry::into_path));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_is_every_walked_directory_and_a_missing_one_its_ancestor() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().canonicalize().unwrap();
        for dir in ["pkg/sub", ".git/objects", "pkg/__pycache__", "dist"] {
            fs_err::create_dir_all(root.join(dir)).unwrap();
        }
        let mut dirs = BTreeSet::new();
        add_tree(&mut dirs, &root, &[root.join("dist")]);
        add_dir(&mut dirs, &root.join("conf/not/yet"));
        let rel: Vec<String> = dirs
            .iter()
            .map(|p| {
                p.strip_prefix(&root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert_eq!(rel, ["", "pkg", "pkg/sub"]);
    }

    #[test]
    fn each_stage_names_what_it_reads() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().canonicalize().unwrap();
        let write = |rel: &str, text: &str| {
            let p = root.join(rel);
            fs_err::create_dir_all(p.parent().unwrap()).unwrap();
            fs_err::write(p, text).unwrap();
        };
        write(
            "lambda.toml",
            "[function]\nname = \"f\"\nhandler = \"app.handler\"\n\n\
             [sources]\nroot = \"src\"\n\n[config]\nfiles = [\"conf/**/*.json\", \"top.json\"]\n\n\
             [dependencies]\nrequirements = \"req/requirements.txt\"\nfind_links = [\"wheels\"]\n",
        );
        write("src/pkg/app.py", "");
        write("src/__pycache__/app.pyc", "");
        write("conf/a/b.json", "{}");
        write("top.json", "{}");
        write(
            "req/requirements.txt",
            "-r ../base.txt\n../local/a-1.0-py3-none-any.whl\n",
        );
        write("base.txt", "--find-links links\nb==1\n");
        write("local/a-1.0-py3-none-any.whl", "");
        let plan = crate::manifest::load(&root.join("lambda.toml")).unwrap();
        let t = Targets::of(&plan);
        let rel: Vec<String> = t
            .dirs()
            .iter()
            .map(|p| {
                p.strip_prefix(&root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        // `wheels/` and `links/` do not exist yet: the project directory
        // stands in for them.
        assert_eq!(
            rel,
            ["", "conf", "conf/a", "local", "req", "src", "src/pkg"],
            "{rel:?}"
        );
        let inputs = [
            "lambda.toml",
            "src/pkg/app.py",
            "conf/a/b.json",
            "top.json",
            "req/requirements.txt",
            "base.txt",
            "local/a-1.0-py3-none-any.whl",
            "wheels/c-1.0-py3-none-any.whl",
            "links/d-1.0-py3-none-any.whl",
        ];
        for rel in inputs {
            assert!(t.is_input(&root.join(rel)), "{rel} is an input");
        }
        for rel in [
            "src/pkg/notes.txt",
            "conf/a.txt",
            "local/other.whl",
            "app.py",
        ] {
            assert!(!t.is_input(&root.join(rel)), "{rel} is not an input");
        }
        for rel in ["lambda.toml", "req/requirements.txt", "base.txt"] {
            assert!(t.replans_on(&root.join(rel)), "{rel} re-plans");
        }
        for rel in ["src/pkg/app.py", "local/a-1.0-py3-none-any.whl"] {
            assert!(!t.replans_on(&root.join(rel)), "{rel} does not re-plan");
        }
    }
}
