//! `lbuild watch --deploy`: after each rebuild, deploy what changed.
//!
//! Owns the deploy thread ([`DeployWorker`]): deploys run off the build
//! loop, one at a time, so saves keep building while one is pending or
//! slow, and builds that finish meanwhile coalesce into one deploy of the
//! newest zips; a stop never waits for a deploy (it is abandoned). Owns
//! what the session knows is on AWS (each artifact's sha256 as last
//! deployed, and at the last attempt), which artifacts a deploy after a
//! rebuild covers ([`to_deploy`]), and the order: the stale layers in one
//! call, then each function in its own, so one that fails (not created
//! yet) holds back no other. One [`Deployer`] (connection and credentials)
//! serves the whole session. It does not build, watch or decide what
//! changed in the sources (the session and the stages' keys do), and the
//! lines are rendered by `output.rs`. Behind the `aws` feature.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use super::output::{self, Deployed, Failure, Stamp, Stream};
use super::print;
use crate::deploy::{
    DeployError, DeployOptions, Deployer, FunctionArtifact, LayerArtifact, LayerRef, artifacts_from,
};
use crate::manifest::Workspace;
use crate::outcome::{ArtifactResult, BuildOutcome, WorkspaceOutcome};
use crate::report::Reporter;

/// One deploy to run: the artifacts of one or more rebuilds.
struct Job {
    ws: Workspace,
    built: Vec<BuildOutcome>,
    initial: bool,
    touches_input: bool,
}

impl Job {
    /// `newer` after `self`: the newer zips, and artifacts only `self`
    /// built (a rebuild where they failed left their last good zip).
    fn merged(self, newer: Job) -> Job {
        let mut built = newer.built;
        for old in self.built {
            if !built
                .iter()
                .any(|o| o.kind == old.kind && o.name == old.name)
            {
                built.push(old);
            }
        }
        Job {
            ws: newer.ws,
            built,
            initial: self.initial || newer.initial,
            touches_input: self.touches_input || newer.touches_input,
        }
    }
}

#[derive(Default)]
struct Queue {
    /// The next deploy: replaced (merged) by each rebuild until taken.
    pending: Option<Job>,
    /// A deploy is running.
    busy: bool,
}

/// `--deploy`'s thread: the build loop hands it each rebuild's zips
/// ([`DeployWorker::submit`]) and goes on; it deploys the newest.
pub(super) struct DeployWorker {
    shared: Arc<(Mutex<Queue>, Condvar)>,
    /// Set when stdout is gone (the reader quit): the watch ends.
    closed: Arc<AtomicBool>,
}

impl DeployWorker {
    /// Connects (no region or credentials is an error when the watch
    /// starts rather than at the first save) and starts the thread, which
    /// stops deploying once `stopping` is set.
    pub(super) fn start(
        opts: &DeployOptions,
        reporter: &Reporter,
        stopping: Arc<AtomicBool>,
    ) -> crate::Result<DeployWorker> {
        let mut session = DeploySession::connect(opts)?;
        let shared: Arc<(Mutex<Queue>, Condvar)> = Arc::default();
        let closed = Arc::new(AtomicBool::new(false));
        let (queue, closed_flag, reporter) =
            (Arc::clone(&shared), Arc::clone(&closed), reporter.clone());
        std::thread::Builder::new()
            .name("lbuild-deploy".into())
            .spawn(move || {
                let (lock, ready) = &*queue;
                loop {
                    let job = {
                        let mut q = lock.lock().unwrap_or_else(|e| e.into_inner());
                        q.busy = false;
                        ready.notify_all();
                        loop {
                            if let Some(job) = q.pending.take() {
                                q.busy = true;
                                break job;
                            }
                            q = ready.wait(q).unwrap_or_else(|e| e.into_inner());
                        }
                    };
                    if stopping.load(Ordering::SeqCst) {
                        continue;
                    }
                    let built: Vec<&BuildOutcome> = job.built.iter().collect();
                    if !session.after_rebuild(
                        &job.ws,
                        &built,
                        job.initial,
                        job.touches_input,
                        &reporter,
                    ) {
                        closed_flag.store(true, Ordering::SeqCst);
                    }
                }
            })
            .map_err(super::WatchError::Thread)?;
        Ok(DeployWorker { shared, closed })
    }

    /// Queues a deploy of `built` (merged with one still waiting). Returns
    /// false when stdout is gone.
    pub(super) fn submit(
        &self,
        ws: &Workspace,
        built: &[&BuildOutcome],
        initial: bool,
        touches_input: bool,
    ) -> bool {
        if !built.is_empty() {
            let job = Job {
                ws: ws.clone(),
                built: built.iter().map(|o| (*o).clone()).collect(),
                initial,
                touches_input,
            };
            let (lock, ready) = &*self.shared;
            let mut q = lock.lock().unwrap_or_else(|e| e.into_inner());
            q.pending = Some(match q.pending.take() {
                Some(older) => older.merged(job),
                None => job,
            });
            ready.notify_all();
        }
        !self.closed.load(Ordering::SeqCst)
    }

    /// Whether a deploy is running or waiting (what a stop abandons).
    pub(super) fn in_flight(&self) -> bool {
        let q = self.shared.0.lock().unwrap_or_else(|e| e.into_inner());
        q.busy || q.pending.is_some()
    }
}

/// `--deploy`: the connection and what is on AWS, as far as this session
/// knows. It lives on the deploy thread ([`DeployWorker`]), so two deploys
/// never overlap, and rebuilds made during one are the next deploy: one
/// covers them all.
struct DeploySession {
    deployer: Deployer,
    opts: DeployOptions,
    /// Each artifact's sha256 as last deployed (or found on AWS already),
    /// by [`artifact_id`].
    deployed: HashMap<String, String>,
    /// Each artifact's sha256 at the last attempt, successful or not: a
    /// failed deploy is tried again when an input is saved or the zip
    /// changes, not on every re-check.
    attempted: HashMap<String, String>,
}

impl DeploySession {
    /// Connects once for the session: no region or credentials is an
    /// error when the watch starts rather than at the first save.
    fn connect(opts: &DeployOptions) -> crate::Result<DeploySession> {
        Ok(DeploySession {
            deployer: Deployer::connect()?,
            opts: opts.clone(),
            deployed: HashMap::new(),
            attempted: HashMap::new(),
        })
    }

    /// After a rebuild: deploys the built artifacts whose zip is not known
    /// to be on AWS ([`to_deploy`]), and prints what happened. A failure is
    /// printed and the watch goes on. Returns false when stdout is gone.
    fn after_rebuild(
        &mut self,
        ws: &Workspace,
        built: &[&BuildOutcome],
        initial: bool,
        touches_input: bool,
        reporter: &Reporter,
    ) -> bool {
        if built.is_empty() {
            return true;
        }
        let d = self;
        let outcome = WorkspaceOutcome {
            single: ws.single,
            artifacts: built
                .iter()
                .map(|o| ArtifactResult::Built((*o).clone()))
                .collect(),
            ms: 0,
        };
        let opts = d.opts.with_manifest(ws);
        let (functions, layers) = match artifacts_from(ws, &outcome, &[], &opts) {
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
                    reporter.mode,
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
        let mode = reporter.mode;
        let failed = |e: DeployError, functions: Vec<String>, layers| {
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
            match d.deployer.deploy(&[], &stale, &opts, reporter) {
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
                    .any(|r| matches!(r, LayerRef::Managed { name: n, .. } if n == name))
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
                .deploy(std::slice::from_ref(f), &uses, &opts, reporter)
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
}

/// Writes the lines in order; false when stdout is gone.
fn print_all(lines: Vec<(Stream, String)>) -> bool {
    lines.into_iter().all(|l| print(Some(l)))
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
    functions: Vec<FunctionArtifact>,
    layers: Vec<LayerArtifact>,
    is_current: impl Fn(&str, &str) -> bool,
) -> (Vec<FunctionArtifact>, Vec<LayerArtifact>) {
    let stale_layers: BTreeSet<String> = layers
        .iter()
        .filter(|l| !is_current(&artifact_id("layer", &l.name), &l.sha256))
        .map(|l| l.name.clone())
        .collect();
    let uses = |f: &FunctionArtifact, pred: &dyn Fn(&str) -> bool| {
        f.layers
            .iter()
            .flatten()
            .any(|r| matches!(r, LayerRef::Managed { name: n, .. } if pred(n)))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Architecture, Runtime};
    use std::path::PathBuf;

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
                    .map(|l| LayerRef::Managed {
                        name: l.to_string(),
                        aws_name: l.to_string(),
                    })
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
