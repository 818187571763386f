//! `lbuild watch`: build, then rebuild whenever an input changes.
//!
//! The shape is watchexec's: file-system events → filtered and debounced →
//! one ordinary [`pipeline::build`]. Events are only a "check again now"
//! signal; the cache's content hashes decide what changed, so a spurious
//! event costs a stat walk and prints nothing.
//!
//! - **What is watched** (`Inputs::dirs`): directories, never single files
//!   (an editor's rename-save replaces the inode a file watch sits on). The
//!   sources root and every directory below it except those the build never
//!   reads (`.git/`, `__pycache__/`, the cache, the output directory, see
//!   [`walk::PRUNED_DIRS`]), each watched non-recursively so that pruned trees
//!   cost no inotify watches; each config glob's literal base directory
//!   (recursively when the glob can cross a `/`); the directory of
//!   requirements.txt and of every file it includes with `-r`/`-c` (read by
//!   the deps stage's own reader); local `find_links` directories; the
//!   directory of lambda.toml. A directory that does not exist yet is covered
//!   by its nearest existing ancestor. The set is recomputed after a batch
//!   that created, removed or renamed something or touched lambda.toml or a
//!   requirements file: new directories are picked up, manifest edits
//!   followed, and a plain save costs no directory walk.
//! - **What is dropped** ([`ignored_name`], `Inputs::ignores`): access
//!   events (a build reads its inputs: without this it would trigger
//!   itself), paths in the cache or the output directory, `.git/`,
//!   `__pycache__/`, byte-code, lbuild's temporary zips and editor temp
//!   names (`.*.sw?`, `*~`, `#*#`, `.#*`, `*___jb_tmp___`, `4913`, ...), and
//!   the files our own stdout/stderr are redirected to. A batch of dropped
//!   paths runs nothing.
//! - **Debouncing** (`Session::next_batch`): a batch closes once no kept
//!   event arrived for `--debounce-ms`, so one save — even a rename-and-
//!   replace that briefly deletes the file — is one batch (capped at
//!   [`MAX_BATCH_WAIT`] for a stream that never goes quiet).
//!   notify-debouncer-mini is not used: it debounces each path on its own
//!   timer and can split one multi-file save into two batches a few
//!   milliseconds apart, the first seeing the file deleted.
//! - **Output**: one line (or one JSON object with `--json`) per build that
//!   produced a different zip, ran a stage, failed, or recovered from a
//!   failure. A re-check that finds everything cached prints nothing (a
//!   "no change" line with `-v`), not even the build's warnings: those are
//!   held ([`Reporter::holding_warnings`]) and shown with the line they
//!   belong to. A failure leaves the last good zip.
//! - **Backends**: inotify (notify's recommended watcher), or with `--poll`
//!   [`poll::StatPoller`], which stats the same directories on a timer.
//! - **Stopping** (`stop_on_signals`): SIGINT/SIGTERM stop the loop
//!   between builds; a build in progress finishes (its zip is written to a
//!   temp file and renamed, the cache uses SQLite transactions). A second
//!   signal exits at once.

use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use globset::GlobSet;
use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify::{Event, EventKind, RecursiveMode, Watcher};
use serde::Serialize;

use crate::cli::{GlobalArgs, WatchArgs};
use crate::manifest::{self, Plan};
use crate::pipeline::{self, BuildOutcome};
use crate::report::{Mode, Reporter};
use crate::stages::{Status, config, deps, sources, walk};

pub mod poll;

/// How often `--poll` stats the watched directories ([`poll::StatPoller`]).
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Events that never go quiet still get a rebuild this often.
pub const MAX_BATCH_WAIT: Duration = Duration::from_secs(1);
/// Changed paths named on a human line.
const SHOWN_PATHS: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("cannot start the file watcher: {0}")]
    Start(notify::Error),
    #[error("the inotify watch limit is reached after {watched} directories")]
    Limit { watched: usize },
    #[error("cannot install the Ctrl-C/SIGTERM handler: {0}")]
    Signals(std::io::Error),
}

impl WatchError {
    pub fn hint(&self) -> Option<String> {
        match self {
            WatchError::Start(_) => Some("the inotify instance limit may be reached (`sysctl fs.inotify.max_user_instances`); raise it, or run `lbuild watch --poll`".into()),
            WatchError::Limit { .. } => Some("raise it with `sudo sysctl fs.inotify.max_user_watches=524288` (persist it in /etc/sysctl.d/), exclude large directories from the sources root, or run `lbuild watch --poll`".into()),
            WatchError::Signals(_) => None,
        }
    }
}

enum Msg {
    Fs(notify::Result<Event>),
    Stop,
}

/// Runs `lbuild watch` until SIGINT/SIGTERM (or until stdout is closed).
pub fn run(global: &GlobalArgs, args: &WatchArgs, reporter: &Reporter) -> crate::Result<()> {
    let manifest_path = manifest_location(&global.manifest_path()?)?;
    let (tx, rx) = std::sync::mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    stop_on_signals(tx.clone(), Arc::clone(&stop))?;
    let mut watcher = start_watcher(args.poll, tx)?;
    let debounce = Duration::from_millis(args.debounce_ms);

    let mut session = Session::new(manifest_path, reporter.clone(), Arc::clone(&stop));
    session.reload();
    // Watch before the first build: a save during it is not lost, and the
    // first line printed means "watching".
    session.rewatch(watcher.as_mut(), &BTreeSet::new())?;
    let mut open = session.rebuild(&Batch::default(), true);
    if !stop.load(Ordering::SeqCst) {
        reporter.info(format!(
            "watching {} director{} ({}; Ctrl-C to stop)",
            session.watched.len(),
            if session.watched.len() == 1 {
                "y"
            } else {
                "ies"
            },
            if args.poll {
                "polling"
            } else {
                "native events"
            }
        ));
        for dir in &session.watched {
            reporter.detail(format!("  {}", dir.display()));
        }
    }

    while open && !stop.load(Ordering::SeqCst) {
        let Some(batch) = session.next_batch(&rx, debounce) else {
            break;
        };
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let replan = session.replan_needed(&batch);
        session.reload();
        if replan || session.replan_needed(&batch) {
            session.rewatch(watcher.as_mut(), &batch.paths)?;
        }
        open = session.rebuild(&batch, false);
    }
    reporter.info("stopped watching");
    Ok(())
}

/// The manifest's absolute path, its directory resolved like the plan does.
fn manifest_location(path: &Path) -> crate::Result<PathBuf> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let dir = dir
        .canonicalize()
        .map_err(crate::Error::io("cannot open the directory of", path))?;
    Ok(dir.join(path.file_name().unwrap_or(manifest::MANIFEST_NAME.as_ref())))
}

fn start_watcher(poll: bool, tx: Sender<Msg>) -> Result<Box<dyn Watcher>, WatchError> {
    let handler = move |res| {
        let _ = tx.send(Msg::Fs(res));
    };
    Ok(if poll {
        let config = notify::Config::default().with_poll_interval(POLL_INTERVAL);
        Box::new(poll::StatPoller::new(handler, config).map_err(WatchError::Start)?)
    } else {
        Box::new(
            notify::RecommendedWatcher::new(handler, notify::Config::default())
                .map_err(WatchError::Start)?,
        )
    })
}

/// The first SIGINT/SIGTERM sets `stop` (inside the signal handler, so it
/// is set before a build can see an installer killed by the same Ctrl-C)
/// and wakes the loop, which stops after the current build; a second one
/// exits at once. Leaving mid-build corrupts nothing: the zip is renamed
/// into place whole and the cache commits in transactions.
fn stop_on_signals(tx: Sender<Msg>, stop: Arc<AtomicBool>) -> Result<(), WatchError> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    use signal_hook::flag;
    for sig in [SIGINT, SIGTERM] {
        // The shutdown must be registered first: it acts only once armed.
        flag::register_conditional_shutdown(sig, 128 + sig, Arc::clone(&stop))
            .map_err(WatchError::Signals)?;
        flag::register(sig, Arc::clone(&stop)).map_err(WatchError::Signals)?;
    }
    let mut signals =
        signal_hook::iterator::Signals::new([SIGINT, SIGTERM]).map_err(WatchError::Signals)?;
    std::thread::Builder::new()
        .name("lbuild-signals".into())
        .spawn(move || {
            for _ in signals.forever() {
                let _ = tx.send(Msg::Stop);
            }
        })
        .map_err(WatchError::Signals)?;
    Ok(())
}

/// Paths that changed, as reported by the watcher (absolute).
#[derive(Debug, Default)]
struct Batch {
    paths: BTreeSet<PathBuf>,
    /// The kernel's event queue overflowed: anything may have changed.
    rescan: bool,
    /// Something was created, removed or renamed: the set of directories
    /// to watch may differ (a plain write cannot change it).
    structural: bool,
}

/// A loaded manifest and what follows from it for watching.
struct Inputs {
    plan: Plan,
    /// `[config] files`, compiled, relative to the project directory.
    config: GlobSet,
    /// requirements.txt and the files it includes (`-r`, `-c`).
    requirements: Vec<PathBuf>,
    /// Local `find_links` directories (manifest and requirements): a wheel
    /// added there changes the deps key.
    wheel_dirs: Vec<PathBuf>,
}

impl Inputs {
    fn new(plan: Plan) -> Inputs {
        let config = manifest::compile_globs(&plan.config.patterns).unwrap_or_else(|_| {
            // Validated at load; an empty set only loses the "changed" refinement.
            GlobSet::empty()
        });
        let (mut requirements, mut wheel_dirs) = (Vec::new(), Vec::new());
        if let Some(d) = &plan.deps {
            wheel_dirs.extend(
                d.find_links
                    .iter()
                    .filter_map(|l| l.dir().map(Path::to_path_buf)),
            );
            // The deps stage's own reader, so both agree on what is included.
            // When it fails the build reports why; the top file is watched.
            match deps::requirements::read(&d.requirements) {
                Ok(r) => {
                    requirements.extend(r.files.iter().map(|f| manifest::normalize(&f.path)));
                    wheel_dirs.extend(r.local_find_links.iter().map(|p| manifest::normalize(p)));
                }
                Err(_) => requirements.push(d.requirements.clone()),
            }
        }
        Inputs {
            plan,
            config,
            requirements,
            wheel_dirs,
        }
    }

    /// The directories to watch (each non-recursively).
    fn dirs(&self) -> BTreeSet<PathBuf> {
        let plan = &self.plan;
        let skip = sources::skipped_dirs(plan);
        let mut dirs = BTreeSet::new();
        add_tree(&mut dirs, &plan.sources.root, &skip);
        for pattern in &plan.config.patterns {
            let prefix = config::literal_prefix(pattern);
            let base = plan.project_dir.join(&prefix);
            let below = pattern.split('/').count() - Path::new(&prefix).components().count();
            if below > 1 || pattern.contains("**") {
                add_tree(&mut dirs, &base, &skip);
            } else {
                add_dir(&mut dirs, &base);
            }
        }
        for file in &self.requirements {
            if let Some(dir) = file.parent() {
                add_dir(&mut dirs, dir);
            }
        }
        for dir in &self.wheel_dirs {
            add_dir(&mut dirs, dir);
        }
        dirs
    }

    /// lbuild's own outputs: the cache, the zip, and the output directory
    /// unless it holds the project.
    fn ignores(&self, path: &Path) -> bool {
        let plan = &self.plan;
        let out_dir = plan.output.path.parent();
        path.starts_with(&plan.cache_dir)
            || path == plan.output.path
            || out_dir.is_some_and(|d| !plan.project_dir.starts_with(d) && path.starts_with(d))
    }

    /// Whether `path` is one of the files a build reads.
    fn is_input(&self, path: &Path) -> bool {
        let plan = &self.plan;
        let rel_to = |base: &Path| {
            path.strip_prefix(base)
                .ok()
                .and_then(Path::to_str)
                .map(|s| s.replace(std::path::MAIN_SEPARATOR, "/"))
        };
        path == plan.manifest_path
            || self.requirements.iter().any(|r| r == path)
            || path
                .parent()
                .is_some_and(|d| self.wheel_dirs.iter().any(|w| w == d))
            || rel_to(&plan.sources.root).is_some_and(|rel| {
                plan.sources.include.is_match(&rel) && !plan.sources.exclude.is_match(&rel)
            })
            || rel_to(&plan.project_dir).is_some_and(|rel| self.config.is_match(&rel))
    }
}

/// Adds `dir`, or its nearest existing ancestor when it does not exist yet
/// (so that its creation is seen).
fn add_dir(dirs: &mut BTreeSet<PathBuf>, dir: &Path) {
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
                    || !(e
                        .file_name()
                        .to_str()
                        .is_some_and(|n| walk::PRUNED_DIRS.contains(&n))
                        || skip.iter().any(|s| s == e.path())))
        });
    // Unreadable directories are left out: the build reports them.
    dirs.extend(walker.flatten().map(walkdir::DirEntry::into_path));
}

/// Names that never trigger a rebuild, whatever the manifest says:
/// lbuild's and VCS state, byte-code, lbuild's temporary zips, and the
/// temporary files editors write while saving. `rel` is relative to the
/// project directory when the path is inside it.
pub fn ignored_name(rel: &Path) -> bool {
    if rel.components().any(|c| {
        c.as_os_str()
            .to_str()
            .is_some_and(|s| walk::PRUNED_DIRS.contains(&s))
    }) {
        return true;
    }
    let Some(name) = rel.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    let b = name.as_bytes();
    name.ends_with(".pyc")
        || name.ends_with(".pyo")
        || (name.starts_with(".lbuild-") && name.ends_with(".tmp"))
        // vim: .app.py.swp / .swo / .swx, the `4913` write test, `app.py~` backups
        || (name.starts_with('.') && b.len() >= 5 && b[..b.len() - 1].ends_with(b".sw"))
        || name == "4913"
        || name.ends_with('~')
        // emacs: #app.py# autosaves and .#app.py lock links
        || (b.len() >= 2 && name.starts_with('#') && name.ends_with('#'))
        || name.starts_with(".#")
        // JetBrains safe write; GNOME's GIO
        || name.ends_with("___jb_tmp___")
        || name.ends_with("___jb_old___")
        || name.starts_with(".goutputstream-")
}

/// The watcher's state between batches.
struct Session {
    manifest_path: PathBuf,
    manifest_dir: PathBuf,
    reporter: Reporter,
    /// What builds report through: warnings held for the line they belong to.
    build_reporter: Reporter,
    /// Set by the first SIGINT/SIGTERM.
    stopping: Arc<AtomicBool>,
    /// The last manifest that loaded (kept while a broken one is fixed).
    inputs: Option<Inputs>,
    /// Why the manifest on disk does not load right now.
    manifest_error: Option<String>,
    /// Directories currently watched.
    watched: BTreeSet<PathBuf>,
    last_sha: Option<String>,
    /// The error the last build printed, if it failed.
    last_error: Option<String>,
    /// (device, inode) of our stdout/stderr when they are files, which may
    /// sit in a watched directory (`lbuild watch > watch.log`): writing a
    /// line must not trigger the next check.
    own_logs: Vec<(u64, u64)>,
}

impl Session {
    fn new(manifest_path: PathBuf, reporter: Reporter, stopping: Arc<AtomicBool>) -> Session {
        let manifest_dir = manifest_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        Session {
            manifest_path,
            manifest_dir,
            build_reporter: reporter.holding_warnings(),
            reporter,
            stopping,
            inputs: None,
            manifest_error: None,
            watched: BTreeSet::new(),
            last_sha: None,
            last_error: None,
            own_logs: own_log_files(),
        }
    }

    /// Re-reads lambda.toml. Cheap, so done before every build: it also
    /// notices a sources root or requirements file that disappeared.
    fn reload(&mut self) {
        match manifest::load(&self.manifest_path) {
            Ok(plan) => {
                self.inputs = Some(Inputs::new(plan));
                self.manifest_error = None;
            }
            Err(e) => self.manifest_error = Some(crate::Error::from(e).with_hint()),
        }
    }

    /// Brings the watched set in line with the current inputs. `touched`
    /// holds paths from the last batch: a directory among them may have
    /// been deleted and recreated, so it is watched again.
    fn rewatch(
        &mut self,
        watcher: &mut dyn Watcher,
        touched: &BTreeSet<PathBuf>,
    ) -> Result<(), WatchError> {
        let mut wanted = self.inputs.as_ref().map(Inputs::dirs).unwrap_or_default();
        wanted.insert(self.manifest_dir.clone());
        for gone in self.watched.difference(&wanted) {
            // Already gone if the directory was deleted.
            let _ = watcher.unwatch(gone);
        }
        let mut watched = BTreeSet::new();
        for dir in wanted {
            if !self.watched.contains(&dir) || touched.contains(&dir) {
                match watcher.watch(&dir, RecursiveMode::NonRecursive) {
                    Ok(()) => {}
                    Err(e) if vanished(&e) => continue,
                    Err(e) if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) => {
                        return Err(WatchError::Limit {
                            watched: watched.len(),
                        });
                    }
                    Err(e) => {
                        self.reporter.warn(format!(
                            "cannot watch {}: {e}; changes there will not trigger a rebuild",
                            dir.display()
                        ));
                        continue;
                    }
                }
            }
            watched.insert(dir);
        }
        self.watched = watched;
        Ok(())
    }

    /// Waits for the next batch of kept events: it closes when none came
    /// for `debounce` (or [`MAX_BATCH_WAIT`] after its first). `None`
    /// means stop.
    fn next_batch(&self, rx: &Receiver<Msg>, debounce: Duration) -> Option<Batch> {
        let mut batch = Batch::default();
        // (first, last) kept event of this batch.
        let mut kept: Option<(Instant, Instant)> = None;
        loop {
            let msg = match kept {
                None => rx.recv().ok()?,
                Some((first, last)) => {
                    let deadline = (last + debounce).min(first + MAX_BATCH_WAIT.max(debounce));
                    match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                        Ok(msg) => msg,
                        Err(RecvTimeoutError::Timeout) => return Some(batch),
                        Err(RecvTimeoutError::Disconnected) => return None,
                    }
                }
            };
            match msg {
                Msg::Stop => return None,
                Msg::Fs(Err(e)) if vanished(&e) => {}
                Msg::Fs(Err(e)) => self.reporter.warn(format!("file watcher: {e}")),
                Msg::Fs(Ok(event)) => {
                    if self.keep(event, &mut batch) {
                        let now = Instant::now();
                        kept = Some((kept.map_or(now, |(first, _)| first), now));
                    }
                }
            }
        }
    }

    /// Adds the event's kept paths to the batch; true if it kept any.
    fn keep(&self, event: Event, batch: &mut Batch) -> bool {
        // Opening or reading a file (as every build does) is no change; a
        // close after writing is kept (it ends a save).
        if event.kind.is_access()
            && event.kind != EventKind::Access(AccessKind::Close(AccessMode::Write))
        {
            return false;
        }
        if event.need_rescan() {
            batch.rescan = true;
            batch.structural = true;
            return true;
        }
        let mut kept = false;
        for path in event.paths {
            if !self.ignored(&path) {
                batch.paths.insert(path);
                kept = true;
            }
        }
        let structural = match event.kind {
            EventKind::Access(_) => false,
            EventKind::Modify(ModifyKind::Name(_)) => true,
            EventKind::Modify(_) => false,
            // Create, Remove, and kinds the backend could not tell.
            _ => true,
        };
        batch.structural |= kept && structural;
        kept
    }

    /// Whether the watched set must be recomputed after `batch`: entries
    /// appeared, vanished or moved, or the manifest or a requirements file
    /// (which decide what is watched) changed.
    fn replan_needed(&self, batch: &Batch) -> bool {
        batch.structural
            || batch.paths.contains(&self.manifest_path)
            || self
                .inputs
                .as_ref()
                .is_some_and(|i| i.requirements.iter().any(|r| batch.paths.contains(r)))
    }

    fn ignored(&self, path: &Path) -> bool {
        let rel = path.strip_prefix(&self.manifest_dir).unwrap_or(path);
        ignored_name(rel)
            || self.inputs.as_ref().is_some_and(|i| i.ignores(path))
            || (!self.own_logs.is_empty()
                && std::fs::metadata(path)
                    .is_ok_and(|m| self.own_logs.contains(&(m.dev(), m.ino()))))
    }

    /// Builds and reports. Returns false when stdout is gone (the reader
    /// quit), which ends the watch.
    fn rebuild(&mut self, batch: &Batch, initial: bool) -> bool {
        let (changed, touches_input) = self.changed(batch);
        let result = match (&self.manifest_error, &self.inputs) {
            (Some(e), _) => Err(e.clone()),
            (None, Some(inputs)) => {
                pipeline::build(&inputs.plan, &self.build_reporter).map_err(|e| e.with_hint())
            }
            (None, None) => Err("no manifest loaded".into()),
        };
        let verdict = match result {
            Ok(outcome) => {
                let news = initial
                    || outcome.stages.iter().any(|s| s.status == Status::Ran)
                    || self.last_error.is_some()
                    || self.last_sha.as_deref() != Some(outcome.sha256.as_str());
                self.last_error = None;
                self.last_sha = Some(outcome.sha256.clone());
                if news {
                    Verdict::Built(outcome)
                } else {
                    Verdict::NoChange
                }
            }
            // Ctrl-C reaches the installer too: its failure is no news.
            Err(_) if self.stopping.load(Ordering::SeqCst) => Verdict::NoChange,
            Err(error) => {
                // The same error again is news only if an input was saved
                // (not, say, a log file the user redirects stderr into).
                let news = initial || touches_input || self.last_error.as_ref() != Some(&error);
                self.last_error = Some(error.clone());
                if news {
                    Verdict::Failed(error)
                } else {
                    Verdict::NoChange
                }
            }
        };
        // Warnings belong to the line they explain: a re-check that
        // changed nothing does not repeat them.
        let warnings = self.build_reporter.take_warnings();
        let what = if initial {
            "initial build".to_string()
        } else {
            shown(&changed)
        };
        let line = Line {
            time: local_hms(),
            changed,
            warnings: if matches!(verdict, Verdict::NoChange) {
                Vec::new()
            } else {
                warnings
            },
        };
        for w in &line.warnings {
            self.reporter.warn(w);
        }
        let mut out = std::io::stdout().lock();
        let written = match (verdict, self.reporter.mode) {
            (Verdict::Built(outcome), Mode::Json) => {
                let json = serde_json::to_string(&BuiltLine {
                    line: &line,
                    outcome: &outcome,
                });
                writeln!(out, "{}", json.unwrap_or_default())
            }
            (Verdict::Built(outcome), Mode::Human) => {
                writeln!(out, "{}", human_line(&line.time, &what, &outcome))
            }
            (Verdict::Failed(error), Mode::Json) => {
                let json = serde_json::to_string(&FailedLine {
                    line: &line,
                    error: &error,
                });
                writeln!(out, "{}", json.unwrap_or_default())
            }
            (Verdict::Failed(error), _) => {
                let kept = self
                    .inputs
                    .as_ref()
                    .map(|i| i.plan.output.path.as_path())
                    .filter(|p| p.exists())
                    .map(|p| format!("; {} is the last good zip", p.display()))
                    .unwrap_or_default();
                eprintln!(
                    "{}  {what}  error: {error}\n  (still watching{kept})",
                    line.time
                );
                Ok(())
            }
            (Verdict::NoChange, Mode::Human) if self.reporter.verbose => {
                writeln!(out, "{}  {what}  no change", line.time)
            }
            _ => Ok(()),
        };
        written.and_then(|()| out.flush()).is_ok()
    }

    /// The batch's paths for reporting, relative to the project: the
    /// build's input files among them if any (then true), else all of them.
    fn changed(&self, batch: &Batch) -> (Vec<String>, bool) {
        let inputs: Vec<&PathBuf> = batch
            .paths
            .iter()
            .filter(|p| self.inputs.as_ref().is_some_and(|i| i.is_input(p)))
            .collect();
        let touches_input = !inputs.is_empty();
        let paths = if touches_input {
            inputs
        } else {
            batch.paths.iter().collect()
        };
        let mut out: Vec<String> = paths
            .into_iter()
            .map(|p| {
                p.strip_prefix(&self.manifest_dir)
                    .unwrap_or(p)
                    .to_string_lossy()
                    .replace(std::path::MAIN_SEPARATOR, "/")
            })
            .collect();
        if batch.rescan {
            out.push("*".into());
        }
        (out, touches_input || batch.rescan)
    }
}

/// (device, inode) of stdout and stderr where they are regular files.
fn own_log_files() -> Vec<(u64, u64)> {
    use std::os::fd::AsFd;
    let fds = [
        std::io::stdout().as_fd().try_clone_to_owned(),
        std::io::stderr().as_fd().try_clone_to_owned(),
    ];
    fds.into_iter()
        .flatten()
        .filter_map(|fd| std::fs::File::from(fd).metadata().ok())
        .filter(std::fs::Metadata::is_file)
        .map(|m| (m.dev(), m.ino()))
        .collect()
}

/// A watch error that only says the path is gone (deleted meanwhile).
fn vanished(e: &notify::Error) -> bool {
    match &e.kind {
        notify::ErrorKind::PathNotFound | notify::ErrorKind::WatchNotFound => true,
        notify::ErrorKind::Io(io) => io.kind() == std::io::ErrorKind::NotFound,
        _ => false,
    }
}

/// What a check found.
enum Verdict {
    /// A different zip, a stage that ran, or a recovery from a failure.
    Built(BuildOutcome),
    Failed(String),
    /// Everything cached (or the same error as before): nothing to say.
    NoChange,
}

/// The fields every `--json` line starts with.
#[derive(Serialize)]
struct Line {
    /// Local wall-clock time, HH:MM:SS.
    time: String,
    /// Paths of the batch, relative to lambda.toml's directory.
    changed: Vec<String>,
    /// Warnings of this build (also printed on stderr).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
}

/// One `--json` line for a build.
#[derive(Serialize)]
struct BuiltLine<'a> {
    #[serde(flatten)]
    line: &'a Line,
    #[serde(flatten)]
    outcome: &'a BuildOutcome,
}

/// One `--json` line for a failed build (or a manifest that does not load).
#[derive(Serialize)]
struct FailedLine<'a> {
    #[serde(flatten)]
    line: &'a Line,
    error: &'a str,
}

/// `17:45:02  app.py  sources+package  1.2 KiB  sha256 3f2a9c1b0e12  38 ms`
fn human_line(time: &str, what: &str, o: &BuildOutcome) -> String {
    let ran: Vec<&str> = o
        .stages
        .iter()
        .filter(|s| s.status == Status::Ran)
        .map(|s| s.name)
        .collect();
    let ran = if ran.is_empty() {
        "up to date".to_string()
    } else {
        ran.join("+")
    };
    format!(
        "{time}  {what}  {ran}  {}  sha256 {}  {} ms",
        pipeline::human_size(o.size),
        o.sha256.get(..12).unwrap_or(&o.sha256),
        o.ms
    )
}

/// `a.py, b.py, c.py +2 more`
fn shown(changed: &[String]) -> String {
    let mut s = changed
        .iter()
        .take(SHOWN_PATHS)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if changed.len() > SHOWN_PATHS {
        s.push_str(&format!(" +{} more", changed.len() - SHOWN_PATHS));
    }
    if s.is_empty() {
        s.push_str("(no path)");
    }
    s
}

/// The local wall-clock time as HH:MM:SS.
fn local_hms() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as libc::time_t;
    // SAFETY: localtime_r only writes the `tm` it is given; both pointers
    // are valid for the duration of the call, and lbuild never changes TZ.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe { !libc::localtime_r(&secs, &mut tm).is_null() };
    if ok {
        format!("{:02}:{:02}:{:02}", tm.tm_hour, tm.tm_min, tm.tm_sec)
    } else {
        let s = secs as u64 % 86_400;
        format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn editor_temp_names_and_outputs_are_ignored() {
        for name in [
            ".app.py.swp",
            ".app.py.swx",
            "pkg/.mod.py.swo",
            "4913",
            "app.py~",
            "#app.py#",
            ".#app.py",
            "app.py___jb_tmp___",
            "app.py___jb_old___",
            "__pycache__/app.cpython-312.pyc",
            "app.pyc",
            ".git/index",
            ".lbuild/cache.sqlite-wal",
            "dist/.lbuild-x1y2.zip.tmp",
        ] {
            assert!(ignored_name(Path::new(name)), "{name} should be ignored");
        }
        for name in [
            "app.py",
            "config/settings.json",
            "swap.py",
            ".env",
            "lambda.toml",
            ".abé",
            "#",
            "ünïcode.py",
        ] {
            assert!(!ignored_name(Path::new(name)), "{name} should be kept");
        }
    }
}
