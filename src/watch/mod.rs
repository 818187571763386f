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
//!   one batch. A rebuild that a save interrupted (an input changed while
//!   its zip was written) prints nothing and runs again after the next
//!   quiet period; under saves that never stop, [`MAX_BATCH_WAIT`] still
//!   cuts a batch, so zips keep coming.
//! - **Output** ([`output`]): one line (or JSON object) per build that
//!   produced a different zip, ran a stage, failed, or recovered from a
//!   failure. A re-check that finds everything cached prints nothing (with
//!   `-v`, a "no change" line, or its JSON line), not even the build's
//!   warnings: those are held ([`Reporter::holding_warnings`]) and shown
//!   with the line they belong to. A failure leaves the last good zip.
//! - **The session** ([`session`]): what one rebuild is, what is news,
//!   the manifest last loaded and the directories watched.
//! - **Deploying** (`--deploy`, `deploy`, behind the `aws` feature): after
//!   the build's line, the built zips go to a deploy thread, which deploys
//!   one batch at a time while the loop keeps building; rebuilds that
//!   finish during a deploy coalesce into the next one, of the newest
//!   zips. The artifacts whose zip is not the one last deployed go through
//!   one `Deployer` kept for the session: the stale layers in one call,
//!   then each function in its own, so one that fails (not created yet)
//!   holds back no other. A failure is a line too, and the watch goes on;
//!   a stop abandons a deploy in progress rather than wait for AWS.
//! - **Backends**: inotify (notify's recommended watcher), or with `--poll`
//!   [`poll::StatPoller`], which stats the same directories on a timer.
//! - **The project moved**: a batch after the project directory was moved
//!   or deleted (it is no longer at its path, or another directory is)
//!   ends the watch with an error that says so.
//! - **Stopping** (`stop_on_signals`): SIGINT/SIGTERM stop the loop
//!   between builds; a build in progress finishes (its zip is written to a
//!   temp file and renamed, the cache uses SQLite transactions). A second
//!   signal exits at once.

pub(crate) mod debounce;
#[cfg(feature = "aws")]
mod deploy;
pub(crate) mod filter;
pub(crate) mod output;
pub(crate) mod poll;
mod session;
pub(crate) mod targets;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::time::Duration;

use notify::{Event, Watcher};

#[cfg(feature = "aws")]
use crate::deploy::DeployOptions;
use crate::manifest;
use crate::report::Reporter;
use debounce::{Batch, Window};
use output::Stream;
use session::Session;

/// How often `--poll` stats the watched directories ([`poll::StatPoller`]).
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Events that never go quiet still get a rebuild this often.
pub(crate) const MAX_BATCH_WAIT: Duration = Duration::from_secs(1);

/// What `lbuild watch` is asked to do (the CLI's flags, as plain values).
#[derive(Debug, Clone)]
pub(crate) struct WatchOptions {
    /// The lambda.toml to build and follow.
    pub manifest: PathBuf,
    /// Stat the directories on a timer instead of native events.
    pub poll: bool,
    /// Quiet period after the last change before rebuilding.
    pub debounce: Duration,
    /// `--deploy`: after each rebuild, deploy what changed (these options,
    /// with lambda.toml's bucket and prefix where they have none).
    #[cfg(feature = "aws")]
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
    #[error("cannot start the deploy thread: {0}")]
    Thread(std::io::Error),
    #[error("the project directory {} was {what}: stopped watching", dir.display())]
    ProjectGone { dir: PathBuf, what: &'static str },
}

impl WatchError {
    pub fn hint(&self) -> Option<String> {
        match self {
            WatchError::Start(_) => Some("the inotify instance limit may be reached (`sysctl fs.inotify.max_user_instances`); raise it, or run `lbuild watch --poll`".into()),
            WatchError::Limit { .. } => Some("raise it with `sudo sysctl fs.inotify.max_user_watches=524288` (persist it in /etc/sysctl.d/), exclude large directories from the sources root, or run `lbuild watch --poll`".into()),
            WatchError::ProjectGone { .. } => Some(
                "start `lbuild watch` again where the project is now (lbuild follows paths, not the directory)"
                    .into(),
            ),
            WatchError::Signals(_) | WatchError::Thread(_) => None,
        }
    }
}

enum Msg {
    Fs(notify::Result<Event>),
    Stop,
}

/// Runs `lbuild watch` until SIGINT/SIGTERM (or until stdout is closed).
pub(crate) fn run(options: &WatchOptions, reporter: &Reporter) -> crate::Result<()> {
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
    #[cfg(feature = "aws")]
    if let Some(opts) = &options.deploy {
        session.deploy = Some(deploy::DeployWorker::start(
            opts,
            reporter,
            Arc::clone(&stop),
        )?);
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
        let carry = session.take_retry();
        let Some(batch) = debounce::next_batch(&rx, window, carry, |msg| session.step(msg)) else {
            break;
        };
        if stop.load(Ordering::SeqCst) {
            break;
        }
        // Every path lbuild holds is under the old location: building on
        // would fail for ever.
        session.check_project_dir()?;
        let replan = session.replan_needed(&batch);
        session.reload();
        if replan || session.replan_needed(&batch) {
            session.rewatch(watcher.as_mut(), &batch.paths)?;
        }
        open = session.rebuild(&batch, false);
    }
    #[cfg(feature = "aws")]
    if session.deploy.as_ref().is_some_and(|d| d.in_flight()) {
        reporter.warn(
            "stopped with a deploy in progress: it was abandoned (a function is left either as it was or with its new code); run `lbuild deploy` to finish it",
        );
    }
    reporter.info("stopped watching");
    Ok(())
}

/// Writes one rendered line; false when stdout is gone.
pub(super) fn print(line: Option<(Stream, String)>) -> bool {
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
