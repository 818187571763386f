//! One build, start to finish: lock the project, open the cache, run the
//! stages in order and collect what they did; for a workspace, every
//! artifact in turn (layers first) under one lock and on one cache, with
//! Lambda's size quotas checked. It does not print (see `output`) and
//! does not decide dirtiness (the stages' keys do).

use std::time::Instant;

use crate::Error;
use crate::cache::Cache;
use crate::context::BuildContext;
use crate::manifest::{LimitMode, Plan, Workspace};
use crate::report::Reporter;
use crate::stages::outputs::Outputs;
use crate::stages::package::{Input, ZipInfo};
use crate::stages::{StageReport, Status, config, deps, package, sources};

use crate::outcome::{ArtifactResult, BuildOutcome, WorkspaceOutcome};

/// Builds the zip the plan describes.
///
/// A cache found corrupt (at open, or by a query during the build) is
/// moved aside with one warning and the build runs again from scratch: the
/// cache only ever makes builds faster, never fails them.
pub(crate) fn build(cx: &BuildContext, plan: &Plan) -> crate::Result<BuildOutcome> {
    prepare_cache_dir(plan)?;
    let _lock = crate::lock::acquire(&plan.cache_dir, &plan.project_dir, cx.reporter)?;
    let _store = cx.store.shared();
    let outputs = Outputs::default();
    let mut open = OpenCache::default();
    let built = build_healing(cx, &mut open, plan, &[], &outputs);
    let failed = open.publish(&outputs, cx.reporter);
    let built = built?;
    match failed.into_iter().next() {
        Some((_, error)) => Err(error),
        None => Ok(built),
    }
}

/// One artifact under the lock, retried once from scratch when the cache
/// turns out corrupt. Its warnings (the stages', replayed ones of cached
/// results, the size quotas') are printed after it and kept in its
/// outcome (`--json`'s `warnings`).
fn build_healing(
    cx: &BuildContext,
    open: &mut OpenCache,
    plan: &Plan,
    layers: &[(String, u64)],
    outputs: &Outputs,
) -> crate::Result<BuildOutcome> {
    let started = Instant::now();
    let reporter = cx.reporter;
    let held = reporter.holding_warnings();
    let cx = &cx.with_reporter(&held);
    let result = match build_locked(cx, open, plan, started, layers, outputs) {
        Err(Error::Cache(e)) if e.is_corrupt() => {
            open.close();
            Cache::move_aside(&plan.cache_dir)
                .map_err(Error::from)
                .and_then(|aside| {
                    warn_corrupt(&held, &e.to_string(), &aside);
                    build_locked(cx, open, plan, started, layers, outputs)
                })
        }
        other => other,
    };
    let warnings = held.take_warnings();
    for w in &warnings {
        // The same words replayed from a cached result count as said.
        let words = w.strip_suffix(" (cached)").unwrap_or(w);
        if open.said.insert(words.to_string()) {
            reporter.warn(w);
        }
    }
    result.map(|mut o| {
        o.warnings = warnings;
        open.hits.add(cx.store.root(), &crate::hits::Hits::of(&o));
        o
    })
}

/// Builds the artifacts `names` selects (every one when empty: the named
/// functions and the layers they use otherwise), layers first, one at a
/// time under one lock and on one cache, so that whatever one artifact
/// compressed the next copies. A failed artifact is reported with its name
/// and the others still build; a function whose layer failed is not built.
/// The zips are moved into place together when every artifact is done
/// ([`Outputs::publish`]); a layer whose zip could not be fails the
/// functions that use it too (their own zips are in place).
pub(crate) fn build_workspace(
    cx: &BuildContext,
    ws: &Workspace,
    names: &[String],
) -> crate::Result<WorkspaceOutcome> {
    let started = Instant::now();
    let selected = ws.select(names)?;
    let first = selected.first().copied().unwrap_or(&ws.artifacts[0]);
    prepare_cache_dir(first)?;
    let _lock = crate::lock::acquire(&ws.cache_dir, &ws.project_dir, cx.reporter)?;
    let _store = cx.store.shared();
    // One walk per sources root for this build's artifacts, never reused.
    let listings = crate::walk::Listings::default();
    sources::share_walks(&listings, selected.iter().copied());
    let cx = &BuildContext {
        listings: std::sync::Arc::new(listings),
        ..cx.clone()
    };
    let mut open = OpenCache::default();
    let outputs = Outputs::default();
    let mut results: Vec<ArtifactResult> = Vec::new();
    for &plan in &selected {
        let mut layers = Vec::new();
        let mut missing = None;
        for layer in ws.layers_of(plan) {
            match results.iter().find_map(|r| match r {
                ArtifactResult::Built(o) if o.kind == "layer" && o.name == layer.name => {
                    Some(o.unzipped_size)
                }
                _ => None,
            }) {
                Some(unzipped) => layers.push((format!("layer {}", layer.name), unzipped)),
                None => missing = Some(layer.name.clone()),
            }
        }
        let result = match missing {
            Some(layer) => Err(Error::Input {
                message: format!(
                    "function {:?} was not built: its layer {layer:?} failed",
                    plan.name
                ),
                hint: "fix the layer's error above".into(),
            }),
            None => build_healing(cx, &mut open, plan, &layers, &outputs),
        };
        results.push(match result {
            Ok(o) => ArtifactResult::Built(o),
            Err(error) => ArtifactResult::Failed {
                name: plan.name.clone(),
                kind: plan.kind.label(),
                error,
            },
        });
    }
    for (out, error) in open.publish(&outputs, cx.reporter) {
        unpublished(&selected, ws, &mut results, &out, error, cx.reporter);
    }
    Ok(WorkspaceOutcome {
        single: ws.single,
        artifacts: results,
        ms: started.elapsed().as_millis() as u64,
    })
}

/// The artifact whose zip at `out` could not be moved into place fails with
/// `error`, and so do the functions using it if it is a layer (as they
/// would had the layer failed before they were built).
fn unpublished(
    selected: &[&Plan],
    ws: &Workspace,
    results: &mut [ArtifactResult],
    out: &std::path::Path,
    error: Error,
    reporter: &Reporter,
) {
    let Some(i) = selected.iter().position(|p| p.output.path == out) else {
        return;
    };
    let artifact = selected[i];
    match &results[i] {
        ArtifactResult::Built(_) => {
            results[i] = ArtifactResult::Failed {
                name: artifact.name.clone(),
                kind: artifact.kind.label(),
                error,
            };
        }
        // It failed after its zip was written: its first error stays its
        // outcome, this one is said too.
        ArtifactResult::Failed { .. } => reporter.warn(format!(
            "{} {}: {error}",
            artifact.kind.label(),
            artifact.name
        )),
    }
    if !artifact.is_layer() {
        return;
    }
    for (plan, result) in selected.iter().zip(results.iter_mut()) {
        if matches!(result, ArtifactResult::Built(_))
            && ws.layers_of(plan).iter().any(|l| l.name == artifact.name)
        {
            *result = ArtifactResult::Failed {
                name: plan.name.clone(),
                kind: plan.kind.label(),
                error: Error::Input {
                    message: format!(
                        "function {:?} was built but its layer {:?} failed: its zip is in \
                         place, the layer's is not",
                        plan.name, artifact.name
                    ),
                    hint: "fix the layer's error above".into(),
                },
            };
        }
    }
}

/// Lambda's quotas for one artifact: over the unzipped limit (with its
/// layers) is an error unless the manifest says "warn"; a zip over the
/// direct-upload size is a warning.
fn check_limits(
    plan: &Plan,
    zipped: Option<u64>,
    unzipped: u64,
    layers: &[(String, u64)],
    parts: Vec<(String, u64)>,
) -> crate::Result<Vec<String>> {
    let own = crate::limits::Contributor {
        name: plan.name.clone(),
        unzipped,
        parts,
    };
    let layers: Vec<crate::limits::Contributor> = layers
        .iter()
        .map(|(name, unzipped)| crate::limits::Contributor {
            name: name.clone(),
            unzipped: *unzipped,
            parts: Vec::new(),
        })
        .collect();
    // A layer's own size counts against the functions using it.
    let check = if plan.is_layer() {
        crate::limits::check_limits(
            &format!("layer {}", plan.name),
            zipped.unwrap_or(0),
            own,
            &[],
        )
    } else {
        crate::limits::check_limits(&plan.name, zipped.unwrap_or(0), own, &layers)
    };
    let mut warnings = Vec::new();
    if let Some(over) = check.over_unzipped {
        match plan.output.size_limit {
            LimitMode::Error => {
                return Err(Error::Input {
                    message: over,
                    hint: "slim the largest contributors (`lbuild size` shows where the bytes go), or set [output] size_limit = \"warn\" to build anyway".into(),
                });
            }
            LimitMode::Warn => warnings.push(over),
        }
    }
    if let Some(over) = check.over_direct_upload {
        warnings.push(over);
    }
    Ok(warnings)
}

pub(crate) fn prepare_cache_dir(plan: &Plan) -> crate::Result<()> {
    let default = plan.cache_dir == plan.project_dir.join(".lbuild");
    Ok(crate::cache::prepare_dir(&plan.cache_dir, default)?)
}

fn warn_corrupt(reporter: &Reporter, why: &str, aside: &std::path::Path) {
    reporter.warn(format!(
        "the cache was corrupt ({why}); moved it aside to {} and rebuilding from scratch",
        aside.display()
    ));
}

/// The cache database, opened by the first artifact that needs it and kept
/// for the rest of the run: a workspace opens (and checkpoints) it once,
/// not once per function, and reads it in one transaction when nothing is
/// written (see `Cache::reading`).
#[derive(Default)]
struct OpenCache {
    open: Option<(std::path::PathBuf, Cache)>,
    /// The run's hit counts, appended to the store's log once, when the
    /// run ends (this is dropped).
    hits: crate::hits::Pending,
    /// The warnings already printed this run: eight functions sharing one
    /// requirements file get its warning once on the terminal (each keeps
    /// it in its own `--json` outcome).
    said: std::collections::HashSet<String>,
}

impl OpenCache {
    /// The cache in `plan.cache_dir`, saying once if it was healed or is
    /// unavailable (then the build runs on a cache in memory).
    fn get(&mut self, plan: &Plan, reporter: &Reporter) -> crate::Result<&mut Cache> {
        if self
            .open
            .as_ref()
            .is_some_and(|(dir, _)| dir != &plan.cache_dir)
        {
            self.open = None;
        }
        if self.open.is_none() {
            let cache = Cache::open_or_memory(&plan.cache_dir)?;
            if let Some(aside) = cache.healed() {
                warn_corrupt(reporter, "the database could not be read", aside);
            }
            if let Some(why) = cache.unavailable() {
                reporter.warn(format!(
                    "{why}; building without the cache (slower, same bytes): free space or fix \
                     permissions under {}",
                    plan.cache_dir.display()
                ));
            }
            self.open = Some((plan.cache_dir.clone(), cache));
        }
        Ok(&mut self.open.as_mut().expect("opened above").1)
    }

    /// Publishes the build's zips ([`Outputs::publish`]), recording each in
    /// the open cache, commits the build's records (one transaction: see
    /// `Cache::reading`), and says once if a record could not be written.
    fn publish(&self, outputs: &Outputs, reporter: &Reporter) -> Vec<(std::path::PathBuf, Error)> {
        let cache = self.open.as_ref().map(|(_, c)| c);
        let failed = outputs.publish(cache, reporter);
        if let Some((dir, cache)) = &self.open
            && let Some(why) = cache.commit_writes()
        {
            reporter.warn(format!(
                "could not write to the cache in {} ({why}); the zips are correct, the next build may be slower",
                dir.display()
            ));
        }
        failed
    }

    /// Closes the database (before it is moved aside).
    fn close(&mut self) {
        self.open = None;
    }
}

/// The stages in order, once, under the lock. Linear: the package key is
/// first computed from the deps tree's recorded digest to look the zip up;
/// only when it must be written is the tree made ready (checked, or
/// installed again), and the key recomputed if its digest changed.
fn build_locked(
    cx: &BuildContext,
    open: &mut OpenCache,
    plan: &Plan,
    started: Instant,
    layers: &[(String, u64)],
    outputs: &Outputs,
) -> crate::Result<BuildOutcome> {
    let reporter = cx.reporter;
    let cache = open.get(plan, reporter)?;

    // Cheap, likely-to-fail checks first: a missing handler should not
    // wait for a dependency install.
    let (src, src_report) = sources::run(plan, cache, cx)?;
    let (cfg, cfg_report) = config::run(plan, cache, cx)?;
    let (src, cfg) = (under_prefix(plan, src), under_prefix(plan, cfg));
    let (tree, mut dep_report) = deps::run(plan, cache, cx)?;
    let recorded_digest = tree.digest();
    let mut digest = recorded_digest;
    let key = package::key(plan, recorded_digest, &src, &cfg, cx.explain)?;
    let warnings;
    let (zip, pkg_report) = match package::cached(plan, cache, &key)? {
        Some(found) => {
            // Its directory is cleaned of dead builds' temp zips as if
            // this build had written there.
            outputs.prepare(
                plan.output
                    .path
                    .parent()
                    .unwrap_or(std::path::Path::new(".")),
            );
            warnings = check_limits(
                plan,
                Some(found.0.size),
                found.0.unzipped,
                layers,
                Vec::new(),
            )?;
            found
        }
        None => {
            // The zip must be written: now the deps tree's files are needed.
            let (mut deps, mut reinstalled) = deps::ready(tree, plan, cache, cx)?;
            // A tree this build did not install is judged against the
            // function's files only once it is known good.
            if reinstalled.is_none()
                && !matches!(dep_report.status, crate::stages::Status::Ran)
                && let Some(why) = deps::suspect::suspicion(
                    &under_prefix(plan, deps.entries.clone()),
                    &[&src, &cfg],
                )
            {
                let (fresh, report) =
                    deps::suspect::install_instead(plan, cache, cx, &dep_report.key, &why)?;
                deps = fresh;
                reinstalled = Some(report);
            }
            let tree_zip = deps.tree_zip.take();
            let keep = deps.keep.take();
            if let Some(report) = reinstalled {
                dep_report = report;
            }
            digest = deps.digest;
            let key = if deps.digest == recorded_digest {
                key
            } else {
                package::key(plan, deps.digest, &src, &cfg, cx.explain)?
            };
            // Kept for the remote store and the machine store's tree zip
            // (before the layer's prefix).
            let remote = cx.writable_remote();
            let tree_entries = match (remote.is_some() || keep.is_some(), deps.digest) {
                (true, Some(_)) => deps.entries.clone(),
                _ => Vec::new(),
            };
            let dep_entries = under_prefix(plan, deps.entries);
            // Checked before anything is written: over the quota, the
            // last good zip stays.
            let unzipped = [&dep_entries, &src, &cfg]
                .iter()
                .flat_map(|v| v.iter())
                .map(|e| e.size)
                .sum();
            let parts = crate::limits::largest_directories(
                [&dep_entries, &src, &cfg]
                    .iter()
                    .flat_map(|v| v.iter())
                    .map(|e| (e.name.as_str(), e.size)),
                plan.archive_prefix(),
            );
            check_limits(plan, None, unzipped, layers, parts)?;
            let inputs = [
                Input {
                    stage: deps::NAME,
                    entries: &dep_entries,
                },
                Input {
                    stage: sources::NAME,
                    entries: &src,
                },
                Input {
                    stage: config::NAME,
                    entries: &cfg,
                },
            ];
            let built = package::build(plan, cache, cx, key, &inputs, tree_zip.as_ref(), outputs)?;
            if let Some(k) = keep.filter(|_| !tree_entries.is_empty()) {
                deps::keep_tree_zip(
                    plan,
                    &cx.store,
                    cache,
                    k,
                    &tree_entries,
                    &built.1.details,
                    reporter,
                );
            }
            if let Some(r) = remote
                && !tree_entries.is_empty()
                && let Ok(bytes) = blake3::Hash::from_hex(&dep_report.key)
                && deps::upload_remote(r, plan, &cx.store, &bytes, &tree_entries, reporter)?
            {
                dep_report.details["uploaded"] = serde_json::json!(true);
            }
            // The direct-upload warning needs the zip's size.
            warnings = check_limits(plan, Some(built.0.size), unzipped, layers, Vec::new())?;
            built
        }
    };
    if let Some(why) = cache.take_write_failure() {
        reporter.warn(format!(
            "could not write to the cache in {} ({why}); the zip is correct, the next build may be slower",
            plan.cache_dir.display()
        ));
    }
    for w in &warnings {
        reporter.warn(w);
    }
    let mut pkg_report = pkg_report;
    pkg_report.reasons = package_reasons(cx, plan, cache, &pkg_report, digest, &src, &cfg)?;
    if zip.entries == 0 {
        // Lambda takes an empty layer and publishes it; nobody wants one.
        reporter.warn(format!(
            "{} {} has no files: its zip is empty (check its [sources] include and [dependencies])",
            plan.kind.label(),
            plan.name
        ));
    }
    let stages = vec![dep_report, src_report, cfg_report, pkg_report];
    Ok(outcome(plan, zip, stages, started))
}

/// What differs in the package stage's inputs from the artifact's last
/// build (its key fed again, keeping its inputs, only when it differs).
fn package_reasons(
    cx: &BuildContext,
    plan: &Plan,
    cache: &Cache,
    report: &StageReport,
    digest: Option<crate::entry::Hash>,
    src: &[crate::entry::Entry],
    cfg: &[crate::entry::Entry],
) -> crate::Result<Vec<String>> {
    use crate::explain;
    let Ok(hash) = crate::entry::Hash::from_hex(&report.key) else {
        return Ok(Vec::new());
    };
    let inputs = if explain::needs_inputs(cache, plan, package::NAME, &hash)? {
        package::key(plan, digest, src, cfg, true)?.inputs()
    } else {
        None
    };
    let ran = report.status == Status::Ran;
    explain::settle_inputs(cache, plan, package::NAME, &hash, ran, inputs, cx.reasons)
}

/// A layer's files all sit under its prefix (`python/...`).
fn under_prefix(plan: &Plan, mut entries: Vec<crate::entry::Entry>) -> Vec<crate::entry::Entry> {
    let prefix = plan.archive_prefix();
    if !prefix.is_empty() {
        for e in &mut entries {
            e.name = format!("{prefix}/{}", e.name);
        }
    }
    entries
}

fn outcome(plan: &Plan, zip: ZipInfo, stages: Vec<StageReport>, started: Instant) -> BuildOutcome {
    BuildOutcome {
        function: plan.name.clone(),
        name: plan.name.clone(),
        kind: plan.kind.label(),
        unzipped_size: zip.unzipped,
        warnings: Vec::new(),
        zip: zip.path,
        sha256: zip.sha256,
        code_sha256: zip.code_sha256,
        size: zip.size,
        entries: zip.entries,
        stages,
        ms: started.elapsed().as_millis() as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A layer whose zip could not be moved into place fails, and so do the
    /// functions using it; a function without that layer stays built.
    #[test]
    fn a_layer_that_could_not_be_published_fails_its_functions() {
        let dir = tempfile::tempdir().unwrap();
        let write = |rel: &str, text: &str| {
            let path = dir.path().join(rel);
            fs_err::create_dir_all(path.parent().unwrap()).unwrap();
            fs_err::write(path, text).unwrap();
        };
        write("requirements.txt", "");
        write("src/a/app.py", "def handler(e, c):\n    return 1\n");
        write("src/b/app.py", "def handler(e, c):\n    return 2\n");
        write(
            "lambda.toml",
            "[defaults]\nruntime = \"python3.12\"\nsources = { root = \"src\" }\n\n\
             [layers.common]\nrequirements = \"requirements.txt\"\n\n\
             [functions.a]\nhandler = \"a.app.handler\"\nlayers = [\"common\"]\n\n\
             [functions.b]\nhandler = \"b.app.handler\"\n",
        );
        let ws = crate::manifest::load_workspace(&dir.path().join("lambda.toml")).unwrap();
        let selected = ws.select(&[]).unwrap();
        let built = |plan: &Plan| {
            ArtifactResult::Built(BuildOutcome {
                function: plan.name.clone(),
                name: plan.name.clone(),
                kind: plan.kind.label(),
                unzipped_size: 0,
                warnings: Vec::new(),
                zip: plan.output.path.clone(),
                sha256: String::new(),
                code_sha256: String::new(),
                size: 0,
                entries: 0,
                stages: Vec::new(),
                ms: 0,
            })
        };
        let mut results: Vec<ArtifactResult> = selected.iter().map(|p| built(p)).collect();
        let layer = selected.iter().find(|p| p.is_layer()).unwrap();
        let error = Error::Input {
            message: "cannot move the new zip into place".into(),
            hint: String::new(),
        };
        let reporter = Reporter::new(crate::report::Mode::Quiet, false);
        unpublished(
            &selected,
            &ws,
            &mut results,
            &layer.output.path,
            error,
            &reporter,
        );
        let outcome: Vec<(&str, Option<String>)> = results
            .iter()
            .map(|r| match r {
                ArtifactResult::Built(o) => (o.name.as_str(), None),
                ArtifactResult::Failed { name, error, .. } => {
                    (name.as_str(), Some(error.to_string()))
                }
            })
            .collect();
        assert_eq!(outcome.len(), 3);
        for (name, error) in outcome {
            match name {
                "common" => assert!(error.unwrap().contains("into place")),
                "a" => assert!(error.unwrap().contains("its layer \"common\" failed")),
                "b" => assert_eq!(error, None),
                other => panic!("{other}"),
            }
        }
    }
}
