//! `lbuild watch`: build, then rebuild whenever an input changes.
//!
//! The shape is watchexec's: file-system events → [`filter`] → [`debounce`]
//! → one ordinary [`pipeline::build`]. Events are only a "check again now"
//! signal; the cache's content hashes decide what changed, so a spurious
//! event costs a stat walk and prints nothing.
//!
//! - **What is watched** ([`targets`]): the directories each stage says it
//!   reads (`watch_roots`), and lambda.toml's. The set is recomputed after
//!   a batch that created, removed or renamed something or touched
//!   lambda.toml or a requirements file: new directories are picked up,
//!   manifest edits followed, and a plain save costs no directory walk.
//! - **What is dropped** ([`filter`]): access events, lbuild's outputs, VCS
//!   and tool state, byte-code, editor temp files, our own redirected
//!   stdout/stderr. A batch of dropped paths runs nothing.
//! - **Debouncing** ([`debounce`]): a batch closes once no kept event
//!   arrived for `--debounce-ms` (capped at [`MAX_BATCH_WAIT`]), so one
//!   save — even a rename-and-replace that briefly deletes the file — is
//!   one batch.
//! - **Output** ([`output`]): one line (or JSON object) per build that
//!   produced a different zip, ran a stage, failed, or recovered from a
//!   failure. A re-check that finds everything cached prints nothing (with
//!   `-v`, a "no change" line, or its JSON line), not even the build's
//!   warnings: those are held ([`Reporter::holding_warnings`]) and shown
//!   with the line they belong to. A failure leaves the last good zip.
//! - **Deploying** (`--deploy`, [`DeploySession`]): after the build's
//!   line, on the loop's thread (so deploys never overlap and saves made
//!   during one are the next batch), the artifacts whose zip is not the one
//!   last deployed ([`to_deploy`]) go through one [`Deployer`] kept for the
//!   session: the stale layers in one call, then each function in its own,
//!   so one that fails (not created yet) holds back no other. Its lines
//!   come from [`output::render_deploy`]. A failure is a line too, and the
//!   watch goes on.
//! - **Backends**: inotify (notify's recommended watcher), or with `--poll`
//!   [`poll::StatPoller`], which stats the same directories on a timer.
//! - **Stopping** (`stop_on_signals`): SIGINT/SIGTERM stop the loop
//!   between builds; a build in progress finishes (its zip is written to a
//!   temp file and renamed, the cache uses SQLite transactions). A second
//!   signal exits at once.

pub mod debounce;
pub mod filter;
pub mod output;
pub mod poll;
pub mod targets;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::time::Duration;

use notify::{Event, RecursiveMode, Watcher};

use crate::context::BuildContext;
use crate::deploy::{DeployOptions, Deployer, LayerRef};
use crate::manifest::{self, Plan, Workspace};
use crate::pipeline::{self, ArtifactResult, BuildOutcome, WorkspaceOutcome};
use crate::report::Reporter;
use crate::stages::Status;
use debounce::{Batch, Step, Window};
use filter::{Filter, vanished};
use output::{Deployed, Failure, Found, Recheck, Stamp, Stream};
use targets::Targets;

/// How often `--poll` stats the watched directories ([`poll::StatPoller`]).
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Events that never go quiet still get a rebuild this often.
pub const MAX_BATCH_WAIT: Duration = Duration::from_secs(1);

/// What `lbuild watch` is asked to do (the CLI's flags, as plain values).
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// The lambda.toml to build and follow.
    pub manifest: PathBuf,
    /// Stat the directories on a timer instead of native events.
    pub poll: bool,
    /// Quiet period after the last change before rebuilding.
    pub debounce: Duration,
    /// `--deploy`: after each rebuild, deploy what changed (these options,
    /// with lambda.toml's bucket and prefix where they have none).
    pub deploy: Option<DeployOptions>,
}

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
pub fn run(options: &WatchOptions, reporter: &Reporter) -> crate::Result<()> {
    let manifest_path = manifest_location(&options.manifest)?;
    let (tx, rx) = std::sync::mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    stop_on_signals(tx.clone(), Arc::clone(&stop))?;
    let mut watcher = start_watcher(options.poll, tx)?;
    let window = Window {
        quiet: options.debounce,
        max: MAX_BATCH_WAIT,
    };

    let mut session = Session::new(manifest_path, reporter.clone(), Arc::clone(&stop));
    if let Some(opts) = &options.deploy {
        // One connection for the session; no region or credentials is an
        // error now rather than at the first save.
        session.deploy = Some(DeploySession {
            deployer: Deployer::connect()?,
            opts: opts.clone(),
            deployed: Default::default(),
            attempted: Default::default(),
        });
    }
    session.reload();
    // Watch before the first build: a save during it is not lost, and the
    // first line printed means "watching".
    session.rewatch(watcher.as_mut(), &BTreeSet::new())?;
    let mut open = session.rebuild(&Batch::default(), true);
    if !stop.load(Ordering::SeqCst) {
        let n = session.watched.len();
        reporter.info(format!(
            "watching {n} director{} ({}; Ctrl-C to stop)",
            if n == 1 { "y" } else { "ies" },
            if options.poll {
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
        let Some(batch) = debounce::next_batch(&rx, window, |msg| session.step(msg)) else {
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

/// Writes one rendered line; false when stdout is gone.
fn print(line: Option<(Stream, String)>) -> bool {
    match line {
        Some((Stream::Stdout, text)) => {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{text}").and_then(|()| out.flush()).is_ok()
        }
        Some((Stream::Stderr, text)) => {
            eprintln!("{text}");
            true
        }
        None => true,
    }
}

fn print_all(lines: Vec<(Stream, String)>) -> bool {
    lines.into_iter().all(|l| print(Some(l)))
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

/// `--deploy`: the connection and what is on AWS, as far as this session
/// knows. Deploys run on the loop's thread after the build, so two never
/// overlap, and saves made during one are the next batch: one deploy
/// covers them all.
struct DeploySession {
    deployer: Deployer,
    opts: DeployOptions,
    /// Each artifact's sha256 as last deployed (or found on AWS already),
    /// by [`artifact_id`].
    deployed: std::collections::HashMap<String, String>,
    /// Each artifact's sha256 at the last attempt, successful or not: a
    /// failed deploy is tried again when an input is saved or the zip
    /// changes, not on every re-check.
    attempted: std::collections::HashMap<String, String>,
}

/// `function NAME` / `layer NAME`, as the workspace lines name artifacts.
fn artifact_id(kind: &str, name: &str) -> String {
    format!("{kind} {name}")
}

/// Which artifacts a deploy after a rebuild covers: the layers whose zip
/// differs from the one last deployed, the functions whose zip differs or
/// that use such a layer (their layer list must point at its new version),
/// and the layers those functions use (so their versions are known; an
/// unchanged one costs a read). `is_current(id, sha256)`: deployed already.
fn to_deploy(
    functions: Vec<crate::deploy::FunctionArtifact>,
    layers: Vec<crate::deploy::LayerArtifact>,
    is_current: impl Fn(&str, &str) -> bool,
) -> (
    Vec<crate::deploy::FunctionArtifact>,
    Vec<crate::deploy::LayerArtifact>,
) {
    let stale_layers: BTreeSet<String> = layers
        .iter()
        .filter(|l| !is_current(&artifact_id("layer", &l.name), &l.sha256))
        .map(|l| l.name.clone())
        .collect();
    let uses = |f: &crate::deploy::FunctionArtifact, pred: &dyn Fn(&str) -> bool| {
        f.layers
            .iter()
            .flatten()
            .any(|r| matches!(r, LayerRef::Managed(n) if pred(n)))
    };
    let functions: Vec<_> = functions
        .into_iter()
        .filter(|f| {
            !is_current(&artifact_id("function", &f.name), &f.sha256)
                || uses(f, &|n| stale_layers.contains(n))
        })
        .collect();
    let layers = layers
        .into_iter()
        .filter(|l| {
            stale_layers.contains(&l.name) || functions.iter().any(|f| uses(f, &|n| n == l.name))
        })
        .collect();
    (functions, layers)
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
    /// The last manifest that loaded (kept while a broken one is fixed),
    /// and what its stages read.
    loaded: Option<(Workspace, Targets)>,
    /// In a workspace: each artifact's last sha256 or failure.
    last_by_artifact: std::collections::HashMap<String, Result<String, Failure>>,
    /// Why the manifest on disk does not load right now.
    manifest_error: Option<Failure>,
    filter: Filter,
    /// Directories currently watched.
    watched: BTreeSet<PathBuf>,
    last_sha: Option<String>,
    /// The failure the last build reported, if it failed.
    last_error: Option<Failure>,
    /// `--deploy`.
    deploy: Option<DeploySession>,
}

impl Session {
    fn new(manifest_path: PathBuf, reporter: Reporter, stopping: Arc<AtomicBool>) -> Session {
        let manifest_dir = manifest_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        Session {
            manifest_path,
            filter: Filter::new(manifest_dir.clone()),
            manifest_dir,
            build_reporter: reporter.holding_warnings(),
            reporter,
            stopping,
            loaded: None,
            last_by_artifact: Default::default(),
            manifest_error: None,
            watched: BTreeSet::new(),
            last_sha: None,
            last_error: None,
            deploy: None,
        }
    }

    /// The single-function form's plan.
    fn plan(&self) -> Option<&Plan> {
        self.loaded
            .as_ref()
            .filter(|(ws, _)| ws.single)
            .map(|(ws, _)| &ws.artifacts[0])
    }

    fn plans(&self) -> &[Plan] {
        self.loaded
            .as_ref()
            .map(|(ws, _)| ws.artifacts.as_slice())
            .unwrap_or_default()
    }

    /// Re-reads lambda.toml. Cheap, so done before every build: it also
    /// notices a sources root or requirements file that disappeared.
    fn reload(&mut self) {
        match manifest::load_workspace(&self.manifest_path) {
            Ok(ws) => {
                let targets = Targets::of_all(&ws.artifacts);
                self.loaded = Some((ws, targets));
                self.manifest_error = None;
            }
            Err(e) => self.manifest_error = Some(Failure::from(&crate::Error::from(e))),
        }
    }

    /// What one message from the watcher means for the batch.
    fn step(&self, msg: Msg) -> Step {
        match msg {
            Msg::Stop => Step::Stop,
            Msg::Fs(Err(e)) if vanished(&e) => Step::Skip,
            Msg::Fs(Err(e)) => {
                self.reporter.warn(format!("file watcher: {e}"));
                Step::Skip
            }
            Msg::Fs(Ok(event)) => match self.filter.change(event, self.plans()) {
                Some(change) => Step::Keep(change),
                None => Step::Skip,
            },
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
        let mut wanted = self
            .loaded
            .as_ref()
            .map(|(_, t)| t.dirs())
            .unwrap_or_default();
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

    /// Whether the watched set must be recomputed after `batch`: entries
    /// appeared, vanished or moved, or a file that decides what is watched
    /// (lambda.toml, a requirements file) changed.
    fn replan_needed(&self, batch: &Batch) -> bool {
        batch.structural
            || batch.paths.contains(&self.manifest_path)
            || self
                .loaded
                .as_ref()
                .is_some_and(|(_, t)| batch.paths.iter().any(|p| t.replans_on(p)))
    }

    /// Builds and reports. Returns false when stdout is gone (the reader
    /// quit), which ends the watch.
    fn rebuild(&mut self, batch: &Batch, initial: bool) -> bool {
        if self.manifest_error.is_none()
            && let Some((ws, _)) = self.loaded.as_ref().filter(|(ws, _)| !ws.single)
        {
            let ws = ws.clone();
            return self.rebuild_workspace(&ws, batch, initial);
        }
        let (changed, touches_input) = self.changed(batch);
        let found = match (&self.manifest_error, self.plan()) {
            (Some(e), _) => Found::Failed(e.clone()),
            (None, Some(plan)) => match BuildContext::for_plan(plan, &self.build_reporter)
                .and_then(|cx| pipeline::build(&cx, plan))
            {
                Ok(outcome) => Found::Built(outcome),
                Err(e) => Found::Failed(Failure::from(&e)),
            },
            (None, None) => Found::Failed(Failure {
                error: "no manifest loaded".into(),
                hint: None,
            }),
        };
        // Ctrl-C reaches the installer too: its failure is no news.
        if matches!(found, Found::Failed(_)) && self.stopping.load(Ordering::SeqCst) {
            let _ = self.build_reporter.take_warnings();
            return true;
        }
        let news = match &found {
            Found::Built(outcome) => {
                let news = initial
                    || outcome.stages.iter().any(|s| s.status == Status::Ran)
                    || self.last_error.is_some()
                    || self.last_sha.as_deref() != Some(outcome.sha256.as_str());
                self.last_error = None;
                self.last_sha = Some(outcome.sha256.clone());
                news
            }
            Found::Failed(failure) => {
                // The same error again is news only if an input was saved
                // (not, say, a log file the user redirects stderr into).
                let news = initial || touches_input || self.last_error.as_ref() != Some(failure);
                self.last_error = Some(failure.clone());
                news
            }
        };
        // Warnings belong to the line they explain: a re-check that
        // changed nothing does not repeat them.
        let warnings = self.build_reporter.take_warnings();
        let warnings = if news { warnings } else { Vec::new() };
        for w in &warnings {
            self.reporter.warn(w);
        }
        let last_good = self
            .plan()
            .map(|p| p.output.path.as_path())
            .filter(|p| p.exists());
        let recheck = Recheck {
            stamp: Stamp::now(),
            initial,
            changed,
            warnings,
            found: &found,
            news,
            last_good,
        };
        let ok = print(output::render(
            &recheck,
            self.reporter.mode,
            self.reporter.verbose,
        ));
        if let (Some(_), Found::Built(outcome), Some((ws, _))) =
            (&self.deploy, &found, &self.loaded)
        {
            let ws = ws.clone();
            let built = [outcome];
            return ok && self.deploy_changed(&ws, &built, initial, touches_input);
        }
        ok
    }

    /// `--deploy`, after a rebuild: deploys the built artifacts whose zip
    /// is not known to be on AWS ([`to_deploy`]), and prints what happened.
    /// A failure is printed and the watch goes on. Returns false when
    /// stdout is gone.
    fn deploy_changed(
        &mut self,
        ws: &Workspace,
        built: &[&BuildOutcome],
        initial: bool,
        touches_input: bool,
    ) -> bool {
        let Some(d) = self.deploy.as_mut() else {
            return true;
        };
        if self.stopping.load(Ordering::SeqCst) || built.is_empty() {
            return true;
        }
        let outcome = WorkspaceOutcome {
            single: ws.single,
            artifacts: built
                .iter()
                .map(|o| ArtifactResult::Built((*o).clone()))
                .collect(),
            ms: 0,
        };
        let opts = d.opts.with_manifest(ws);
        let (functions, layers) = match crate::deploy::artifacts_from(ws, &outcome, &[], &opts) {
            Ok(artifacts) => artifacts,
            Err(e) => {
                let failure = Failure::from(&e);
                return print_all(output::render_deploy(
                    &Stamp::now(),
                    &Deployed::Failed {
                        failure: &failure,
                        functions: Vec::new(),
                        layers: Vec::new(),
                    },
                    initial,
                    self.reporter.mode,
                ));
            }
        };
        let all_layers = layers.clone();
        let (functions, layers) = to_deploy(functions, layers, |id, sha| {
            d.deployed.get(id).is_some_and(|s| s == sha)
        });
        let ids: Vec<(String, String)> = layers
            .iter()
            .map(|l| (artifact_id("layer", &l.name), l.sha256.clone()))
            .chain(
                functions
                    .iter()
                    .map(|f| (artifact_id("function", &f.name), f.sha256.clone())),
            )
            .collect();
        // Nothing new since the last attempt (a failed one, or none is
        // needed): a save of an input tries again, a re-check does not.
        let new = ids.iter().any(|(id, sha)| d.attempted.get(id) != Some(sha));
        if ids.is_empty() || !(initial || touches_input || new) {
            return true;
        }
        for (id, sha) in &ids {
            d.attempted.insert(id.clone(), sha.clone());
        }
        let mode = self.reporter.mode;
        let failed = |e: crate::deploy::DeployError, functions: Vec<String>, layers| {
            let failure = Failure::from(&crate::Error::from(e));
            output::render_deploy(
                &Stamp::now(),
                &Deployed::Failed {
                    failure: &failure,
                    functions,
                    layers,
                },
                initial,
                mode,
            )
        };
        let mut lines = Vec::new();
        // The stale layers together, then each function on its own: a
        // function that does not exist yet (or is misconfigured) must not
        // hold back the others, as it does in `lbuild deploy`.
        let stale: Vec<_> = layers
            .iter()
            .filter(|l| d.deployed.get(&artifact_id("layer", &l.name)) != Some(&l.sha256))
            .cloned()
            .collect();
        let mut broken_layers = BTreeSet::new();
        if !stale.is_empty() {
            match d.deployer.deploy(&[], &stale, &opts, &self.reporter) {
                Ok(report) => {
                    for l in &stale {
                        d.deployed
                            .insert(artifact_id("layer", &l.name), l.sha256.clone());
                    }
                    lines.extend(output::render_deploy(
                        &Stamp::now(),
                        &Deployed::Done(&report),
                        initial,
                        mode,
                    ));
                }
                Err(e) => {
                    broken_layers.extend(stale.iter().map(|l| l.name.clone()));
                    lines.extend(failed(
                        e,
                        Vec::new(),
                        stale.iter().map(|l| l.aws_name.clone()).collect(),
                    ));
                }
            }
        }
        for f in &functions {
            let managed = |name: &str| {
                f.layers
                    .iter()
                    .flatten()
                    .any(|r| matches!(r, LayerRef::Managed(n) if n == name))
            };
            // Its layers, published above or earlier: the deploy reads their
            // versions to point the function at them.
            let uses: Vec<_> = all_layers
                .iter()
                .filter(|l| managed(&l.name))
                .cloned()
                .collect();
            if uses.iter().any(|l| broken_layers.contains(&l.name)) {
                // Reported with the layer's failure; tried again with it.
                continue;
            }
            match d
                .deployer
                .deploy(std::slice::from_ref(f), &uses, &opts, &self.reporter)
            {
                Ok(mut report) => {
                    d.deployed
                        .insert(artifact_id("function", &f.name), f.sha256.clone());
                    // The layers were only read for their versions.
                    report.layers.clear();
                    lines.extend(output::render_deploy(
                        &Stamp::now(),
                        &Deployed::Done(&report),
                        initial,
                        mode,
                    ));
                }
                Err(e) => lines.extend(failed(e, vec![f.aws_name.clone()], Vec::new())),
            }
        }
        print_all(lines)
    }

    /// A workspace: every artifact is checked (the keys decide), and each
    /// one that ran or failed gets its own line.
    fn rebuild_workspace(&mut self, ws: &Workspace, batch: &Batch, initial: bool) -> bool {
        let (changed, touches_input) = self.changed(batch);
        let results: Vec<(String, Option<PathBuf>, Found)> =
            match BuildContext::for_workspace(ws, &self.build_reporter)
                .and_then(|cx| pipeline::build_workspace(&cx, ws, &[]))
            {
                Ok(outcome) => outcome
                    .artifacts
                    .into_iter()
                    .map(|a| match a {
                        pipeline::ArtifactResult::Built(o) => (
                            format!("{} {}", o.kind, o.name),
                            Some(o.zip.clone()),
                            Found::Built(o),
                        ),
                        pipeline::ArtifactResult::Failed { name, kind, error } => {
                            let zip = ws
                                .artifacts
                                .iter()
                                .find(|p| p.name == name && p.kind.label() == kind)
                                .map(|p| p.output.path.clone());
                            (
                                format!("{kind} {name}"),
                                zip,
                                Found::Failed(Failure::from(&error)),
                            )
                        }
                    })
                    .collect(),
                Err(e) => vec![("workspace".into(), None, Found::Failed(Failure::from(&e)))],
            };
        if self.stopping.load(Ordering::SeqCst)
            && results
                .iter()
                .any(|(_, _, f)| matches!(f, Found::Failed(_)))
        {
            let _ = self.build_reporter.take_warnings();
            return true;
        }
        let mut warnings = self.build_reporter.take_warnings();
        let mut ok = true;
        for (id, zip, found) in &results {
            let last = self.last_by_artifact.get(id);
            let news = match found {
                Found::Built(o) => {
                    initial
                        || o.stages.iter().any(|s| s.status == Status::Ran)
                        || !matches!(last, Some(Ok(sha)) if *sha == o.sha256)
                }
                Found::Failed(f) => {
                    initial || touches_input || !matches!(last, Some(Err(e)) if e == f)
                }
            };
            self.last_by_artifact.insert(
                id.clone(),
                match found {
                    Found::Built(o) => Ok(o.sha256.clone()),
                    Found::Failed(f) => Err(f.clone()),
                },
            );
            if !news {
                continue;
            }
            // The batch's warnings go with the first line that is news.
            let line_warnings = std::mem::take(&mut warnings);
            for w in &line_warnings {
                self.reporter.warn(w);
            }
            let recheck = Recheck {
                stamp: Stamp::now(),
                initial,
                changed: changed.clone(),
                warnings: line_warnings,
                found,
                news,
                last_good: zip.as_deref().filter(|p| p.exists()),
            };
            ok &= print(output::render(
                &recheck,
                self.reporter.mode,
                self.reporter.verbose,
            ));
        }
        let built: Vec<&BuildOutcome> = results
            .iter()
            .filter_map(|(_, _, f)| match f {
                Found::Built(o) => Some(o),
                Found::Failed(_) => None,
            })
            .collect();
        ok && self.deploy_changed(ws, &built, initial, touches_input)
    }

    /// The batch's paths for reporting, relative to the project: the
    /// build's input files among them if any (then true), else all of them.
    fn changed(&self, batch: &Batch) -> (Vec<String>, bool) {
        let inputs: Vec<&PathBuf> = batch
            .paths
            .iter()
            .filter(|p| self.loaded.as_ref().is_some_and(|(_, t)| t.is_input(p)))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::{FunctionArtifact, LayerArtifact};
    use crate::manifest::{Architecture, Runtime};

    fn function(name: &str, sha: &str, layers: &[&str]) -> FunctionArtifact {
        FunctionArtifact {
            name: name.into(),
            aws_name: name.into(),
            zip: PathBuf::from(format!("dist/{name}.zip")),
            sha256: sha.into(),
            code_sha256: sha.into(),
            size: 1,
            handler: "app.handler".into(),
            runtime: Runtime::parse("python3.12").unwrap(),
            architecture: Architecture::X86_64,
            layers: Some(
                layers
                    .iter()
                    .map(|l| LayerRef::Managed(l.to_string()))
                    .collect(),
            ),
        }
    }

    fn layer(name: &str, sha: &str) -> LayerArtifact {
        LayerArtifact {
            name: name.into(),
            aws_name: name.into(),
            zip: PathBuf::from(format!("dist/{name}.zip")),
            sha256: sha.into(),
            code_sha256: sha.into(),
            size: 1,
            runtimes: vec![Runtime::parse("python3.12").unwrap()],
            architectures: vec![Architecture::X86_64],
        }
    }

    fn names(
        (functions, layers): (Vec<FunctionArtifact>, Vec<LayerArtifact>),
    ) -> (Vec<String>, Vec<String>) {
        (
            functions.into_iter().map(|f| f.name).collect(),
            layers.into_iter().map(|l| l.name).collect(),
        )
    }

    /// orders and billing use the layer common; solo uses none.
    fn all() -> (Vec<FunctionArtifact>, Vec<LayerArtifact>) {
        (
            vec![
                function("billing", "b1", &["common"]),
                function("orders", "o1", &["common"]),
                function("solo", "s1", &[]),
            ],
            vec![layer("common", "c1"), layer("other", "x1")],
        )
    }

    fn deployed(current: &[(&str, &str)]) -> impl Fn(&str, &str) -> bool {
        let current: Vec<(String, String)> = current
            .iter()
            .map(|(id, sha)| (id.to_string(), sha.to_string()))
            .collect();
        move |id, sha| current.iter().any(|(i, s)| i == id && s == sha)
    }

    const ALL_DEPLOYED: &[(&str, &str)] = &[
        ("function billing", "b1"),
        ("function orders", "o1"),
        ("function solo", "s1"),
        ("layer common", "c1"),
        ("layer other", "x1"),
    ];

    #[test]
    fn nothing_deployed_yet_deploys_everything() {
        let (f, l) = all();
        let got = names(to_deploy(f, l, deployed(&[])));
        assert_eq!(got.0, ["billing", "orders", "solo"]);
        assert_eq!(got.1, ["common", "other"]);
    }

    #[test]
    fn a_changed_function_is_deployed_with_the_layers_it_names_only() {
        let (mut f, l) = all();
        f[1].sha256 = "o2".into();
        let got = names(to_deploy(f, l, deployed(ALL_DEPLOYED)));
        assert_eq!(got.0, ["orders"]);
        // Its layer is read for its version's ARN; the other is left alone.
        assert_eq!(got.1, ["common"]);
        let (mut f, l) = all();
        f[2].sha256 = "s2".into();
        assert_eq!(
            names(to_deploy(f, l, deployed(ALL_DEPLOYED))),
            (vec!["solo".to_string()], vec![])
        );
    }

    #[test]
    fn a_changed_layer_takes_the_functions_that_use_it() {
        let (f, mut l) = all();
        l[0].sha256 = "c2".into();
        let got = names(to_deploy(f, l, deployed(ALL_DEPLOYED)));
        assert_eq!(got.0, ["billing", "orders"]);
        assert_eq!(got.1, ["common"]);
    }

    #[test]
    fn nothing_changed_deploys_nothing() {
        let (f, l) = all();
        let got = names(to_deploy(f, l, deployed(ALL_DEPLOYED)));
        assert_eq!(got, (vec![], vec![]));
    }
}
