//! The watch's state between batches: the manifest last loaded and what
//! its stages read, the directories watched, each artifact's last zip or
//! failure, and what is news. One rebuild is one ordinary build
//! ([`pipeline::build`] or [`pipeline::build_workspace`]) and at most one
//! line per artifact ([`output::render`]). It does not receive events or
//! signals (`mod.rs`) or talk to AWS (`deploy.rs`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use notify::{RecursiveMode, Watcher};

use super::debounce::{Batch, Step};
#[cfg(feature = "aws")]
use super::deploy::DeployWorker;
use super::filter::{Filter, vanished};
use super::output::{self, Failure, Found, Recheck, Stamp};
use super::targets::Targets;
use super::{Msg, WatchError, print};
use crate::context::BuildContext;
use crate::manifest::{self, Plan, Workspace};
use crate::outcome::BuildOutcome;
use crate::pipeline;
use crate::report::Reporter;
use crate::stages::Status;

/// The watcher's state between batches.
pub(super) struct Session {
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
    pub(super) watched: BTreeSet<PathBuf>,
    last_sha: Option<String>,
    /// The failure the last build reported, if it failed.
    last_error: Option<Failure>,
    /// A rebuild a save interrupted ("changed while the zip was being
    /// written"): its batch, built again after the next quiet period
    /// ([`Session::take_retry`]).
    retry: Option<Batch>,
    /// Since when every rebuild was interrupted: past
    /// [`REPORT_INTERRUPTIONS_AFTER`] the failure is shown.
    interrupted_since: Option<Instant>,
    /// The project directory's (device, inode) when the watch started.
    project_dir_id: Option<(u64, u64)>,
    /// `--deploy`.
    #[cfg(feature = "aws")]
    pub(super) deploy: Option<DeployWorker>,
}

/// A directory's (device, inode): what stays the same while it is the
/// same directory, wherever it is.
fn dir_id(dir: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    fs_err::metadata(dir).ok().map(|m| (m.dev(), m.ino()))
}

/// Rebuilds interrupted by saves are retried silently for this long; then
/// the interruption is reported (and retrying goes on).
const REPORT_INTERRUPTIONS_AFTER: Duration = Duration::from_secs(10);

impl Session {
    pub(super) fn new(
        manifest_path: PathBuf,
        reporter: Reporter,
        stopping: Arc<AtomicBool>,
    ) -> Session {
        let manifest_dir = manifest_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let project_dir_id = dir_id(&manifest_dir);
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
            retry: None,
            interrupted_since: None,
            project_dir_id,
            #[cfg(feature = "aws")]
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
    pub(super) fn reload(&mut self) {
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
    pub(super) fn step(&self, msg: Msg) -> Step {
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
    pub(super) fn rewatch(
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
    pub(super) fn replan_needed(&self, batch: &Batch) -> bool {
        batch.structural
            || batch.paths.contains(&self.manifest_path)
            || self
                .loaded
                .as_ref()
                .is_some_and(|(_, t)| batch.paths.iter().any(|p| t.replans_on(p)))
    }

    /// An error when the project directory is no longer at its path (moved
    /// or deleted), or another directory took its place.
    pub(super) fn check_project_dir(&self) -> Result<(), WatchError> {
        let Some(id) = self.project_dir_id else {
            return Ok(());
        };
        let what = match dir_id(&self.manifest_dir) {
            Some(now) if now == id => return Ok(()),
            Some(_) => "replaced by another directory",
            None => "moved or deleted",
        };
        Err(WatchError::ProjectGone {
            dir: self.manifest_dir.clone(),
            what,
        })
    }

    /// The batch of a rebuild that a save interrupted, to build again.
    pub(super) fn take_retry(&mut self) -> Option<Batch> {
        self.retry.take()
    }

    /// Whether this build result is an interruption to retry quietly
    /// (then it is recorded, and nothing is printed): an input changed
    /// while the zip was written, and not for too long already.
    fn interrupted<'e>(
        &mut self,
        mut errors: impl Iterator<Item = &'e crate::Error>,
        batch: &Batch,
    ) -> bool {
        if !errors.any(crate::Error::is_interrupted) {
            self.interrupted_since = None;
            return false;
        }
        let since = *self.interrupted_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= REPORT_INTERRUPTIONS_AFTER {
            // Shown once, then quiet again for as long.
            self.interrupted_since = None;
            self.retry = Some(batch.clone());
            return false;
        }
        self.retry = Some(batch.clone());
        let _ = self.build_reporter.take_warnings();
        true
    }

    /// Builds and reports. Returns false when stdout is gone (the reader
    /// quit), which ends the watch.
    pub(super) fn rebuild(&mut self, batch: &Batch, initial: bool) -> bool {
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
                Ok(outcome) => {
                    self.interrupted_since = None;
                    Found::Built(outcome)
                }
                Err(e) if self.interrupted(std::iter::once(&e), batch) => return true,
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
            artifact: None,
        };
        let ok = print(output::render(
            &recheck,
            self.reporter.mode,
            self.reporter.verbose,
        ));
        if self.deploying()
            && let (Found::Built(outcome), Some((ws, _))) = (&found, &self.loaded)
        {
            let ws = ws.clone();
            let built = [outcome];
            return ok && self.deploy_changed(&ws, &built, initial, touches_input);
        }
        ok
    }

    /// Whether `--deploy` is on.
    #[cfg(feature = "aws")]
    fn deploying(&self) -> bool {
        self.deploy.is_some()
    }

    #[cfg(not(feature = "aws"))]
    fn deploying(&self) -> bool {
        false
    }

    /// `--deploy`, after a rebuild: hands the zips to the deploy thread
    /// (`deploy.rs`) and returns; not once a signal asked the watch to
    /// stop. Returns false when stdout is gone.
    #[cfg(feature = "aws")]
    fn deploy_changed(
        &mut self,
        ws: &Workspace,
        built: &[&BuildOutcome],
        initial: bool,
        touches_input: bool,
    ) -> bool {
        match self.deploy.as_ref() {
            Some(d) if !self.stopping.load(Ordering::SeqCst) => {
                d.submit(ws, built, initial, touches_input)
            }
            _ => true,
        }
    }

    #[cfg(not(feature = "aws"))]
    fn deploy_changed(&mut self, _: &Workspace, _: &[&BuildOutcome], _: bool, _: bool) -> bool {
        true
    }

    /// A workspace: every artifact is checked (the keys decide), and each
    /// one that ran or failed gets its own line.
    fn rebuild_workspace(&mut self, ws: &Workspace, batch: &Batch, initial: bool) -> bool {
        let (changed, touches_input) = self.changed(batch);
        // Under --deploy every artifact is checked: a save is also how a
        // failed deploy (a function not created yet) is tried again.
        let names = if initial || self.deploying() {
            Vec::new()
        } else {
            self.functions_touched(ws, batch)
        };
        let built = BuildContext::for_workspace(ws, &self.build_reporter)
            .and_then(|cx| pipeline::build_workspace(&cx, ws, &names));
        let errors: Vec<&crate::Error> = match &built {
            Ok(outcome) => outcome
                .artifacts
                .iter()
                .filter_map(|a| match a {
                    crate::outcome::ArtifactResult::Failed { error, .. } => Some(error),
                    crate::outcome::ArtifactResult::Built(_) => None,
                })
                .collect(),
            Err(e) => vec![e],
        };
        if self.interrupted(errors.into_iter(), batch) {
            return true;
        }
        let results: Vec<(String, Option<PathBuf>, Found)> = match built {
            Ok(outcome) => outcome
                .artifacts
                .into_iter()
                .map(|a| match a {
                    crate::outcome::ArtifactResult::Built(o) => (
                        format!("{} {}", o.kind, o.name),
                        Some(o.zip.clone()),
                        Found::Built(o),
                    ),
                    crate::outcome::ArtifactResult::Failed { name, kind, error } => {
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
                artifact: Some(id),
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

    /// The functions a batch concerns, for a rebuild of those only (with
    /// their layers, as `--function` builds them): empty, meaning every
    /// artifact, when the batch may concern any of them (a rescan, a path
    /// no stage claims, lambda.toml) or touches a layer's inputs. The
    /// others' inputs did not change, so their zips stand; a save to one
    /// function of 80 costs that function, not 80 checks.
    fn functions_touched(&self, ws: &Workspace, batch: &Batch) -> Vec<String> {
        let Some((_, targets)) = self.loaded.as_ref() else {
            return Vec::new();
        };
        if batch.rescan || batch.paths.is_empty() {
            return Vec::new();
        }
        let mut touched = BTreeSet::new();
        for path in &batch.paths {
            match targets.readers(path) {
                Some(readers) => touched.extend(readers),
                None => return Vec::new(),
            }
        }
        let plans: Vec<&Plan> = touched
            .iter()
            .filter_map(|i| ws.artifacts.get(*i))
            .collect();
        if plans.len() != touched.len()
            || plans.iter().any(|p| p.is_layer())
            || plans.len() == ws.artifacts.iter().filter(|p| !p.is_layer()).count()
        {
            return Vec::new();
        }
        plans.iter().map(|p| p.name.clone()).collect()
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
