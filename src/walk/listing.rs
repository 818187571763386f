//! The listing of a directory tree (one walkdir pass applying the rules
//! every walk shares) and the filter each walk runs over it; [`Listings`]
//! shares one listing among the walks of a build.

use std::path::{Path, PathBuf};

use walkdir::WalkDir;

use super::ignore::{IgnoreStack, probed_first, read_ignores};
use super::{Problem, Walk, WalkError, classify, files, out_dir_of};
use crate::exclusions::{PRUNED_DIRS, TOOL_DIRS, excluded_by_default, is_virtualenv};

/// What a listing depends on besides the artifacts' own globs: walks with
/// the same key may share one listing.
#[derive(Debug)]
pub(super) struct ListingKey {
    dir: PathBuf,
    names_from: PathBuf,
    root: PathBuf,
    skip: Vec<PathBuf>,
    ignores_from: Option<PathBuf>,
}

impl ListingKey {
    /// Whether `walk` has this key (without copying its paths).
    fn is_of(&self, walk: &Walk) -> bool {
        self.dir == walk.dir
            && self.names_from == walk.names_from
            && self.root == walk.root
            && self.skip == walk.skip
            && self.ignores_from.as_deref() == walk.ignores_from
    }

    pub(super) fn of(walk: &Walk) -> ListingKey {
        ListingKey {
            dir: walk.dir.to_path_buf(),
            names_from: walk.names_from.to_path_buf(),
            root: walk.root.to_path_buf(),
            skip: walk.skip.to_vec(),
            ignores_from: walk.ignores_from.map(Path::to_path_buf),
        }
    }
}

/// An artifact's directory prune, as the listings keep it.
pub(crate) type Prune = std::sync::Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// The listings of one build: each walk registered here (before the build
/// asks for it) shares the listing of its root with every other walk of
/// the same root, project and skipped directories, read once on first use.
/// Made per workspace build (`pipeline::build_workspace`, carried in the
/// `BuildContext`) and never reused: a
/// listing is what the disk held when this build read it.
#[derive(Default)]
pub(crate) struct Listings {
    shared: std::sync::Mutex<Vec<std::sync::Arc<Shared>>>,
    /// How many listings were read (a test's witness that sharing happened).
    reads: std::sync::atomic::AtomicUsize,
}

// A build's artifacts may be built on several threads.
const _: () = {
    const fn shared_across_threads<T: Send + Sync>() {}
    shared_across_threads::<Listings>();
};

/// One shared listing: who shares it, and the listing once read.
struct Shared {
    key: ListingKey,
    /// The members' outputs: a walk is a member when its output is one (a
    /// set: every member looks itself up).
    outputs: std::collections::HashSet<Option<PathBuf>>,
    prunes: Vec<Prune>,
    /// The members' output directories below the root, each once (members
    /// often share one).
    out_dirs: Vec<PathBuf>,
    listing: std::sync::OnceLock<Listing>,
}

impl Listings {
    /// Adds `walk` (whose directory prune is `prune`) to the listing of its
    /// key. A walk registered after that listing was read gets one of its
    /// own (the shared one may have pruned what it needs).
    pub(crate) fn register(&self, walk: &Walk, prune: Prune) {
        let output = walk.output.map(Path::to_path_buf);
        let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        let at = shared.iter().position(|s| s.key.is_of(walk));
        let entry = match at {
            Some(i) if shared[i].listing.get().is_none() => &mut shared[i],
            Some(_) => return,
            None => {
                shared.push(std::sync::Arc::new(Shared {
                    key: ListingKey::of(walk),
                    outputs: std::collections::HashSet::new(),
                    prunes: Vec::new(),
                    out_dirs: Vec::new(),
                    listing: std::sync::OnceLock::new(),
                }));
                shared.last_mut().expect("pushed")
            }
        };
        // Not yet read, so no one else holds it.
        let Some(entry) = std::sync::Arc::get_mut(entry) else {
            return;
        };
        if !entry.outputs.insert(output) {
            return;
        }
        entry.prunes.push(prune);
        if let Some(d) = out_dir_of(walk)
            && !entry.out_dirs.iter().any(|o| o == d)
        {
            entry.out_dirs.push(d.to_path_buf());
        }
    }

    /// [`files`] from the shared listing when `walk` was registered, else
    /// from a walk of its own.
    pub(crate) fn files(
        &self,
        walk: &Walk,
        keep: impl FnMut(&str) -> bool,
        prune_dir: impl Fn(&str) -> bool,
    ) -> Result<Vec<(String, PathBuf)>, WalkError> {
        let output = walk.output.map(Path::to_path_buf);
        let shared = {
            let all = self.shared.lock().unwrap_or_else(|e| e.into_inner());
            all.iter()
                .find(|s| s.key.is_of(walk) && s.outputs.contains(&output))
                .cloned()
        };
        let Some(shared) = shared else {
            return files(walk, keep, prune_dir);
        };
        let listing = shared.listing.get_or_init(|| {
            self.reads
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            // A directory is left out only when every member prunes it.
            let union = |rel: &str| shared.prunes.iter().all(|p| p(rel));
            Listing::read(&shared.key, &union, &shared.out_dirs, excluded_by_default)
        });
        listing.filter(walk, keep, prune_dir)
    }

    /// How many listings this build has read.
    #[cfg(test)]
    pub(super) fn reads(&self) -> usize {
        self.reads.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// A directory tree as one walk read it, in walk order (a directory before
/// what it holds), with what went wrong where: the filters of the walks
/// sharing it decide what is theirs and which problems they reach.
pub(super) struct Listing {
    /// Reading the ignore files above the walk failed: every walk fails.
    above: Option<WalkError>,
    items: Vec<Item>,
}

struct Item {
    path: PathBuf,
    /// Relative to `names_from`, '/'-separated (lossy: the UTF-8 check is
    /// the filter's, for the files it keeps, by `utf8`).
    name: String,
    /// Whether `name` is the path's own (its relative part is UTF-8), not
    /// a lossy stand-in.
    utf8: bool,
    /// Below the walk's start (0 for the start itself): how many components
    /// the path has beyond `dir`'s, so the filter compares a path with the
    /// output's (or its directory) only at their depth.
    depth: usize,
    /// The project's ignore files leave it out: listed only because it lies
    /// in a member's output directory, where nothing is ignored.
    ignored: bool,
    kind: Kind,
}

enum Kind {
    File {
        /// The listing's default exclusions leave it out, whatever the globs.
        excluded: bool,
        /// A symlink's resolved target (or why it does not resolve).
        link: Option<Result<PathBuf, std::io::Error>>,
        /// The file it is, when reached below an in-root directory symlink.
        real: Option<PathBuf>,
    },
    Dir {
        /// The index after its last descendant.
        end: usize,
        /// A symlink leading outside the root: its target.
        escapes: Option<PathBuf>,
        /// Its ignore files could not be read.
        ignore_error: Option<WalkError>,
    },
    /// An entry the walk could not read.
    Problem {
        problem: Problem,
        is_dir: bool,
        /// As [`Kind::File`]'s.
        excluded: bool,
    },
}

impl Listing {
    /// Walks `key.dir` once, leaving out what no walk takes whatever its
    /// globs (the default pruned directories, tool directories and
    /// virtualenvs, ignored entries outside `out_dirs`, `key.skip`) and the
    /// directories `prune` names. Problems are recorded where they occur,
    /// not returned: only a walk reaching them fails.
    pub(super) fn read(
        key: &ListingKey,
        prune: &dyn Fn(&str) -> bool,
        out_dirs: &[PathBuf],
        excluded: fn(&str) -> bool,
    ) -> Listing {
        use std::cell::{Cell, RefCell};
        // The name of a path, and whether it is UTF-8 (not lossy).
        let rel_name = |path: &Path| -> (String, bool) {
            let rel = path.strip_prefix(&key.names_from).unwrap_or(path);
            let name = rel
                .to_string_lossy()
                .replace(std::path::MAIN_SEPARATOR, "/");
            (name, rel.to_str().is_some())
        };
        let dir = key.dir.as_path();
        // When `names_from` holds `dir`, an entry's name is its parent's and
        // its own file name (what stripping the prefix from its path gives,
        // without iterating the path's components per entry).
        let names_from_parent = dir.starts_with(&key.names_from);
        // An output's directory is met at one depth below `dir` only.
        let base = dir.components().count();
        let out_dirs: Vec<(usize, &Path)> = out_dirs
            .iter()
            .map(|d| (d.components().count().saturating_sub(base), d.as_path()))
            .collect();
        let (stack, above) = match &key.ignores_from {
            Some(project) => match IgnoreStack::above(project, dir) {
                Ok(s) => (s, None),
                Err(e) => {
                    return Listing {
                        above: Some(e),
                        items: Vec::new(),
                    };
                }
            },
            None => (IgnoreStack::default(), None),
        };
        let ignores = RefCell::new(stack);
        // A directory's ignore files could not be read: (its depth, why).
        let ignore_error: RefCell<Option<(usize, WalkError)>> = RefCell::new(None);
        // A directory's ignore files and virtualenv marker are probed (as
        // before: opened, stat'ed) only when its listing holds a name that
        // may be one of them. Walkdir reads a directory whole and, sorted by
        // `probed_first`, yields those names first: its first entry tells.
        // The directory (its depth) whose first entry is yet to come.
        let unprobed: Cell<Option<usize>> = Cell::new(None);
        // Probes the directory `path` at `depth`: true for a virtualenv,
        // else its ignore files are in force for what it holds.
        let probe = |depth: usize, path: &Path| -> bool {
            if is_virtualenv(path) {
                return true;
            }
            match read_ignores(path) {
                Ok(Some(m)) => ignores.borrow_mut().push(depth, m),
                Ok(None) => {}
                Err(err) => *ignore_error.borrow_mut() = Some((depth, err)),
            }
            false
        };
        // The virtualenv (its depth) whose first entry the filter let
        // through: the main loop takes the directory out and skips the rest.
        let virtualenv: Cell<Option<usize>> = Cell::new(None);
        let last_ignored = Cell::new(false);
        // The name (and its UTF-8-ness) of the entry the filter let through.
        let last_name: RefCell<(String, bool)> = RefCell::new((String::new(), true));
        // The directories the walk is in, one per depth: their name, whether
        // it is UTF-8, and whether they lie in an output's directory.
        let parents: RefCell<Vec<(String, bool, bool)>> = RefCell::new(Vec::new());
        let reads_ignores = key.ignores_from.is_some();
        let mut walkdir = WalkDir::new(dir).follow_links(true);
        if reads_ignores {
            walkdir = walkdir
                .sort_by(|a, b| probed_first(a.file_name()).cmp(&probed_first(b.file_name())));
        }
        let mut walker = walkdir.into_iter().filter_entry(|e| {
            last_ignored.set(false);
            let is_dir = e.file_type().is_dir();
            let depth = e.depth();
            if let Some(d) = unprobed.take()
                && depth == d + 1
                && probed_first(e.file_name()) == 0
                && probe(d, e.path().parent().expect("below its directory"))
            {
                virtualenv.set(Some(d));
                return true;
            }
            let mut parents = parents.borrow_mut();
            // Deeper levels belong to a finished subtree.
            parents.truncate(depth);
            let (name, utf8) = match depth.checked_sub(1).and_then(|d| parents.get(d)) {
                Some((parent, parent_utf8, _)) if names_from_parent => {
                    let own = e.file_name();
                    let mut name = String::with_capacity(parent.len() + 1 + own.len());
                    if !parent.is_empty() {
                        name.push_str(parent);
                        name.push('/');
                    }
                    name.push_str(&own.to_string_lossy());
                    (name, *parent_utf8 && own.to_str().is_some())
                }
                _ => rel_name(e.path()),
            };
            // Let the entry through: the main loop takes its name, its
            // entries find it among their parents.
            let pass = |parents: &mut Vec<(String, bool, bool)>, name: String, in_out_dir| {
                if is_dir {
                    parents.push((name.clone(), utf8, in_out_dir));
                }
                *last_name.borrow_mut() = (name, utf8);
                true
            };
            if depth == 0 {
                return pass(&mut parents, name, false);
            }
            // (A virtualenv is pruned once its first entry is read.)
            if is_dir
                && (e.file_name().to_str().is_some_and(|n| {
                    PRUNED_DIRS.contains(&n) || (reads_ignores && TOOL_DIRS.contains(&n))
                }) || key.skip.iter().any(|s| s == e.path())
                    || prune(&name))
            {
                return false;
            }
            if !reads_ignores {
                return pass(&mut parents, name, false);
            }
            // An output's directory is walked whatever the ignore files
            // say: a selected file there is an error, not silently
            // dropped. Its entries are marked for the other walks.
            let in_out_dir = parents.get(depth - 1).is_some_and(|p| p.2)
                || out_dirs.iter().any(|(d, p)| *d == depth && e.path() == *p);
            let mut stack = ignores.borrow_mut();
            stack.enter(depth);
            if stack.ignored(e.path(), is_dir, depth) {
                if !in_out_dir {
                    return false;
                }
                last_ignored.set(true);
            }
            if is_dir {
                unprobed.set(Some(depth));
            }
            pass(&mut parents, name, in_out_dir)
        });
        let mut items: Vec<Item> = Vec::new();
        // The directories still open: (depth, index, an in-root symlink).
        let mut open: Vec<(usize, usize, bool)> = Vec::new();
        let close = |open: &mut Vec<(usize, usize, bool)>, items: &mut Vec<Item>, depth: usize| {
            while open.last().is_some_and(|(d, _, _)| *d >= depth) {
                let (_, i, _) = open.pop().expect("checked");
                let len = items.len();
                if let Kind::Dir { end, .. } = &mut items[i].kind {
                    *end = len;
                }
            }
        };
        // A virtualenv found on its first entry leaves the listing again
        // (its directory was the last item: nothing of it is listed).
        let take_out =
            |open: &mut Vec<(usize, usize, bool)>, items: &mut Vec<Item>, depth: usize| {
                while let Some((_, i, _)) = open.pop_if(|(d, _, _)| *d >= depth) {
                    items.truncate(i);
                }
            };
        // A directory's ignore files that could not be read: its item's
        // error (the directory is still open).
        let attach_ignore_error = |open: &[(usize, usize, bool)], items: &mut [Item]| {
            let Some((depth, err)) = ignore_error.borrow_mut().take() else {
                return;
            };
            if let Some((_, i, _)) = open.iter().rev().find(|(d, _, _)| *d == depth)
                && let Kind::Dir { ignore_error, .. } = &mut items[*i].kind
            {
                *ignore_error = Some(err);
            }
        };
        while let Some(item) = walker.next() {
            let entry = match item {
                Ok(entry) => entry,
                Err(e) => {
                    let path = e
                        .path()
                        .map(Path::to_path_buf)
                        .unwrap_or_else(|| dir.to_path_buf());
                    // The directory to probe (the last item) met an error
                    // first: its own (it cannot be listed), or its first
                    // entry's, or one reading its list (walkdir sorts those
                    // first; the names are unknown): probe it as before.
                    if let Some(d) = unprobed.take()
                        && let Some(&(_, at, _)) = open.last()
                    {
                        let own = e.depth() == d && path == items[at].path;
                        let first = e.depth() == d + 1
                            && e.path()
                                .is_none_or(|p| p.file_name().is_none_or(|n| probed_first(n) == 0));
                        if (own || first) && probe(d, &items[at].path) {
                            take_out(&mut open, &mut items, d);
                            if first {
                                walker.skip_current_dir();
                            }
                            continue;
                        }
                    }
                    attach_ignore_error(&open, &mut items);
                    let problem = classify(&path, &e);
                    if matches!(problem, Problem::Vanished) {
                        // Gone since its directory was read: not an input any more.
                        continue;
                    }
                    close(&mut open, &mut items, e.depth());
                    let ignored =
                        reads_ignores && ignores.borrow().ignored(&path, false, e.depth().max(1));
                    let is_dir = e.loop_ancestor().is_some() || path.is_dir();
                    let (name, utf8) = rel_name(&path);
                    items.push(Item {
                        kind: Kind::Problem {
                            problem,
                            is_dir,
                            excluded: excluded(&name),
                        },
                        name,
                        utf8,
                        depth: e.depth(),
                        path,
                        ignored,
                    });
                    continue;
                }
            };
            if let Some(d) = virtualenv.take() {
                // The first entry of a virtualenv: skip it (walkdir has
                // entered it when it is a directory) and the rest.
                take_out(&mut open, &mut items, d);
                if entry.file_type().is_dir() {
                    walker.skip_current_dir();
                }
                walker.skip_current_dir();
                continue;
            }
            attach_ignore_error(&open, &mut items);
            let depth = entry.depth();
            close(&mut open, &mut items, depth);
            let ignored = last_ignored.replace(false);
            let (name, utf8) = last_name.take();
            let (file_type, is_symlink) = (entry.file_type(), entry.path_is_symlink());
            let path = entry.into_path();
            if file_type.is_dir() {
                let mut escapes = None;
                let mut linked = false;
                if is_symlink {
                    match path.canonicalize() {
                        Ok(target) if !target.starts_with(&key.root) => escapes = Some(target),
                        _ => linked = true,
                    }
                }
                open.push((depth, items.len(), linked));
                items.push(Item {
                    path,
                    name,
                    utf8,
                    depth,
                    ignored,
                    kind: Kind::Dir {
                        end: 0,
                        escapes,
                        ignore_error: None,
                    },
                });
                continue;
            }
            if !file_type.is_file() {
                continue;
            }
            let link = is_symlink.then(|| path.canonicalize());
            let real = open
                .iter()
                .any(|(_, _, linked)| *linked)
                .then(|| path.canonicalize().ok())
                .flatten();
            items.push(Item {
                kind: Kind::File {
                    excluded: excluded(&name),
                    link,
                    real,
                },
                path,
                name,
                utf8,
                depth,
                ignored,
            });
        }
        attach_ignore_error(&open, &mut items);
        close(&mut open, &mut items, 0);
        Listing { above, items }
    }

    /// The files of the listing one walk keeps: its own prune, ignored
    /// entries outside its output directory left out, its globs (`keep`),
    /// and the problems it reaches (see [`files`]).
    ///
    /// Runs once per artifact over a shared listing, so it compares no
    /// paths per item: where a path test is needed (the output, its
    /// directory, an escaping link) it is settled by depth and the item's
    /// place in the tree (a directory's descendants are the items up to its
    /// `end`).
    pub(super) fn filter(
        &self,
        walk: &Walk,
        mut keep: impl FnMut(&str) -> bool,
        prune_dir: impl Fn(&str) -> bool,
    ) -> Result<Vec<(String, PathBuf)>, WalkError> {
        if let Some(e) = &self.above {
            return Err(e.duplicate());
        }
        let (root, output) = (walk.root, walk.output);
        let out_dir = out_dir_of(walk);
        // How deep below `walk.dir` a path lies (every item's path starts
        // with it, one component per level).
        let base = walk.dir.components().count();
        let depth_of = |p: &Path| p.components().count().checked_sub(base);
        let out_dir_depth = out_dir.and_then(depth_of);
        // The output can be an item only when it lies below the walk's start.
        let output_at = output
            .filter(|o| o.starts_with(walk.dir))
            .and_then(|o| Some((o, depth_of(o)?)));
        // The items in the output's directory (itself included), once met:
        // what `path.starts_with(out_dir)` says, by position.
        let mut out_items: Option<std::ops::Range<usize>> = None;
        let mut out = Vec::new();
        // Symlinked directories that lead outside the root (their items, the
        // link, its target): an error only if a file below them is kept.
        let mut escaping: Vec<(std::ops::Range<usize>, &Path, &Path)> = Vec::new();
        // Files reached below a symlinked directory inside the walk, with
        // the file they resolve to: packaged once, under their real name
        // when the walk reaches that too.
        let mut via_link: Vec<(String, PathBuf)> = Vec::new();
        let mut i = 0;
        while i < self.items.len() {
            let at = i;
            let item = &self.items[at];
            i += 1;
            let path = item.path.as_path();
            let name = item.name.as_str();
            if out_items.is_none()
                && Some(item.depth) == out_dir_depth
                && !matches!(item.kind, Kind::Problem { .. })
                && out_dir == Some(path)
            {
                let end = match item.kind {
                    Kind::Dir { end, .. } => end,
                    _ => at + 1,
                };
                out_items = Some(at..end);
            }
            let in_out_dir = out_items.as_ref().is_some_and(|r| r.contains(&at));
            match &item.kind {
                Kind::Dir {
                    end,
                    escapes,
                    ignore_error,
                } => {
                    // The walk's own directory (the first item) is never pruned.
                    let top = at == 0;
                    if !top && ((item.ignored && !in_out_dir) || prune_dir(name)) {
                        i = *end;
                        continue;
                    }
                    if let Some(e) = ignore_error {
                        return Err(e.duplicate());
                    }
                    if let Some(target) = escapes {
                        escaping.push((at..*end, path, target));
                    }
                }
                Kind::Problem {
                    problem,
                    is_dir,
                    excluded,
                } => {
                    // A directory this walk prunes is one it never enters.
                    if *is_dir && prune_dir(name) {
                        continue;
                    }
                    let packaged = !item.ignored && !excluded && keep(name);
                    let path = path.to_path_buf();
                    match problem {
                        Problem::Vanished => {}
                        Problem::BrokenSymlink(_) | Problem::FileLoop(_) if !packaged => {}
                        Problem::BrokenSymlink(source) => {
                            return Err(WalkError::BrokenSymlink {
                                path,
                                source: dup_io(source),
                            });
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
                            return Err(WalkError::Unreadable {
                                path,
                                source: dup_io(source),
                            });
                        }
                        Problem::Other(message) => {
                            return Err(WalkError::Io {
                                path,
                                message: message.clone(),
                            });
                        }
                    }
                }
                Kind::File {
                    excluded,
                    link,
                    real,
                } => {
                    if item.ignored && !in_out_dir {
                        continue;
                    }
                    if *excluded || !keep(name) {
                        continue;
                    }
                    if output_at.is_some_and(|(o, d)| d == item.depth && o == path) {
                        continue;
                    }
                    if let Some(out_dir) = out_dir
                        && in_out_dir
                    {
                        // lbuild's temporary zips beside the output are not
                        // sources, nor the SBOMs and provenance statements
                        // it writes there.
                        let temp = Some(item.depth) == out_dir_depth.map(|d| d + 1)
                            && path.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                                n.starts_with(".lbuild-")
                                    || n.ends_with(".cdx.json")
                                    || n.ends_with(".spdx.json")
                                    || n.ends_with(".intoto.json")
                            });
                        if temp {
                            continue;
                        }
                        return Err(WalkError::InOutputDir {
                            path: path.to_path_buf(),
                            output: output.unwrap_or(out_dir).to_path_buf(),
                        });
                    }
                    match link {
                        Some(Err(source)) => {
                            return Err(WalkError::BrokenSymlink {
                                path: path.to_path_buf(),
                                source: dup_io(source),
                            });
                        }
                        Some(Ok(target)) if !target.starts_with(root) => {
                            return Err(WalkError::SymlinkEscapes {
                                link: path.to_path_buf(),
                                root: root.to_path_buf(),
                                target: target.clone(),
                            });
                        }
                        _ => {}
                    }
                    if let Some((_, link, target)) =
                        escaping.iter().find(|(items, _, _)| items.contains(&at))
                    {
                        return Err(WalkError::SymlinkEscapes {
                            link: link.to_path_buf(),
                            root: root.to_path_buf(),
                            target: target.to_path_buf(),
                        });
                    }
                    if !item.utf8 {
                        return Err(WalkError::NonUtf8 {
                            path: path.to_path_buf(),
                        });
                    }
                    if let Some(real) = real {
                        via_link.push((name.to_string(), real.clone()));
                    }
                    out.push((name.to_string(), path.to_path_buf()));
                }
            }
        }
        // Names kept are UTF-8 and one per path, so distinct: an unstable
        // sort gives the one order.
        out.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        if !via_link.is_empty() {
            out = once_per_file(out, via_link);
        }
        Ok(out)
    }
}

/// The same I/O error again (one listing's problem, reported to each walk
/// that reaches it): the OS error when there is one, else its kind and text.
fn dup_io(e: &std::io::Error) -> std::io::Error {
    match e.raw_os_error() {
        Some(code) => std::io::Error::from_raw_os_error(code),
        None => std::io::Error::new(e.kind(), e.to_string()),
    }
}

impl WalkError {
    /// The same error again, for another walk sharing the listing.
    fn duplicate(&self) -> WalkError {
        match self {
            WalkError::SymlinkEscapes { link, root, target } => WalkError::SymlinkEscapes {
                link: link.clone(),
                root: root.clone(),
                target: target.clone(),
            },
            WalkError::NonUtf8 { path } => WalkError::NonUtf8 { path: path.clone() },
            WalkError::BrokenSymlink { path, source } => WalkError::BrokenSymlink {
                path: path.clone(),
                source: dup_io(source),
            },
            WalkError::Loop { path, message } => WalkError::Loop {
                path: path.clone(),
                message: message.clone(),
            },
            WalkError::Unreadable { path, source } => WalkError::Unreadable {
                path: path.clone(),
                source: dup_io(source),
            },
            WalkError::InOutputDir { path, output } => WalkError::InOutputDir {
                path: path.clone(),
                output: output.clone(),
            },
            WalkError::Io { path, message } => WalkError::Io {
                path: path.clone(),
                message: message.clone(),
            },
        }
    }
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
