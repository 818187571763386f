//! One build, start to finish: lock the project, open the cache, run the
//! stages in order and collect what they did; for a workspace, every
//! artifact in turn (layers first) under one lock and on one cache, with
//! Lambda's size quotas checked. Also `clean` and `gc`.

use std::time::Instant;

use serde::Serialize;

use crate::Error;
use crate::cache::Cache;
use crate::context::BuildContext;
use crate::manifest::{LimitMode, Plan, Workspace};
use crate::report::{Mode, Reporter};
use crate::stages::package::{Input, ZipInfo};
use crate::stages::{StageReport, Status, config, deps, package, sources};

/// The result of a successful build (what `--json` prints).
#[derive(Debug, Clone, Serialize)]
pub struct BuildOutcome {
    /// The artifact's name (kept as `function` for the single form's JSON).
    pub function: String,
    pub name: String,
    /// `function` or `layer`.
    pub kind: &'static str,
    /// Uncompressed bytes of the entries (Lambda's quota counts these).
    pub unzipped_size: u64,
    /// Warnings about this artifact: this build's, and those a cached
    /// stage result carries (replayed, marked "(cached)"), and Lambda's
    /// size quotas.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    pub zip: std::path::PathBuf,
    pub sha256: String,
    pub code_sha256: String,
    pub size: u64,
    pub entries: usize,
    pub stages: Vec<StageReport>,
    pub ms: u64,
}

/// Builds the zip the plan describes.
///
/// A cache found corrupt (at open, or by a query during the build) is
/// moved aside with one warning and the build runs again from scratch: the
/// cache only ever makes builds faster, never fails them.
pub fn build(cx: &BuildContext, plan: &Plan) -> crate::Result<BuildOutcome> {
    prepare_cache_dir(plan)?;
    let _lock = crate::lock::acquire(&plan.cache_dir, &plan.project_dir, cx.reporter)?;
    let _store = cx.store.shared();
    build_healing(cx, &mut OpenCache::default(), plan, &[])
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
) -> crate::Result<BuildOutcome> {
    let started = Instant::now();
    let reporter = cx.reporter;
    let held = reporter.holding_warnings();
    let cx = &cx.with_reporter(&held);
    let result = match build_locked(cx, open, plan, started, layers) {
        Err(Error::Cache(e)) if e.is_corrupt() => {
            open.close();
            Cache::move_aside(&plan.cache_dir)
                .map_err(Error::from)
                .and_then(|aside| {
                    warn_corrupt(&held, &e.to_string(), &aside);
                    build_locked(cx, open, plan, started, layers)
                })
        }
        other => other,
    };
    let warnings = held.take_warnings();
    for w in &warnings {
        reporter.warn(w);
    }
    result.map(|mut o| {
        o.warnings = warnings;
        crate::hits::record(cx.store.root(), &o);
        o
    })
}

/// One artifact's result in a workspace build.
pub enum ArtifactResult {
    Built(BuildOutcome),
    Failed {
        name: String,
        kind: &'static str,
        error: Error,
    },
}

/// What `lbuild` did to every artifact it was asked for.
pub struct WorkspaceOutcome {
    pub single: bool,
    pub artifacts: Vec<ArtifactResult>,
    pub ms: u64,
}

impl WorkspaceOutcome {
    pub fn failures(&self) -> usize {
        self.artifacts
            .iter()
            .filter(|a| matches!(a, ArtifactResult::Failed { .. }))
            .count()
    }

    /// The exit code of the worst failure, if any.
    pub fn exit_code(&self) -> Option<i32> {
        self.artifacts
            .iter()
            .filter_map(|a| match a {
                ArtifactResult::Failed { error, .. } => Some(error.exit_code()),
                ArtifactResult::Built(_) => None,
            })
            .max()
    }

    pub fn built(&self, name: &str, kind: &str) -> Option<&BuildOutcome> {
        self.artifacts.iter().find_map(|a| match a {
            ArtifactResult::Built(o) if o.name == name && o.kind == kind => Some(o),
            _ => None,
        })
    }
}

/// Builds the artifacts `names` selects (every one when empty: the named
/// functions and the layers they use otherwise), layers first, one at a
/// time under one lock and on one cache, so that whatever one artifact
/// compressed the next copies. A failed artifact is reported with its name
/// and the others still build; a function whose layer failed is not built.
pub fn build_workspace(
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
    let mut open = OpenCache::default();
    let mut results: Vec<ArtifactResult> = Vec::new();
    for plan in selected {
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
            None => build_healing(cx, &mut open, plan, &layers),
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
    Ok(WorkspaceOutcome {
        single: ws.single,
        artifacts: results,
        ms: started.elapsed().as_millis() as u64,
    })
}

/// Lambda's quotas for one artifact: over the unzipped limit (with its
/// layers) is an error unless the manifest says "warn"; a zip over the
/// direct-upload size is a warning.
fn check_limits(
    plan: &Plan,
    zipped: Option<u64>,
    unzipped: u64,
    layers: &[(String, u64)],
) -> crate::Result<Vec<String>> {
    let own = crate::size::Contributor {
        name: plan.name.clone(),
        unzipped,
    };
    let layers: Vec<crate::size::Contributor> = layers
        .iter()
        .map(|(name, unzipped)| crate::size::Contributor {
            name: name.clone(),
            unzipped: *unzipped,
        })
        .collect();
    // A layer's own size counts against the functions using it.
    let check = if plan.is_layer() {
        crate::size::check_limits(
            &format!("layer {}", plan.name),
            zipped.unwrap_or(0),
            own,
            &[],
        )
    } else {
        crate::size::check_limits(&plan.name, zipped.unwrap_or(0), own, &layers)
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

fn prepare_cache_dir(plan: &Plan) -> crate::Result<()> {
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
/// not once per function.
#[derive(Default)]
struct OpenCache {
    open: Option<(std::path::PathBuf, Cache)>,
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
            warnings = check_limits(plan, Some(found.0.size), found.0.unzipped, layers)?;
            found
        }
        None => {
            // The zip must be written: now the deps tree's files are needed.
            let (mut deps, reinstalled) = deps::ready(tree, plan, cache, cx)?;
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
            check_limits(plan, None, unzipped, layers)?;
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
            let built = package::build(plan, cache, cx, key, &inputs, tree_zip.as_ref())?;
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
            warnings = check_limits(plan, Some(built.0.size), unzipped, layers)?;
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

/// "1 entry", "3 entries".
fn entries_text(n: usize) -> String {
    format!("{n} {}", if n == 1 { "entry" } else { "entries" })
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

/// Prints a workspace build: one object with an `artifacts` list
/// (`--json`), or one line per artifact (its stage table under `-v`) and
/// each failure with its name.
pub fn print_workspace(o: &WorkspaceOutcome, reporter: &Reporter) {
    if reporter.mode == Mode::Json {
        let artifacts: Vec<serde_json::Value> = o
            .artifacts
            .iter()
            .map(|a| match a {
                ArtifactResult::Built(b) => serde_json::to_value(b).unwrap_or_default(),
                ArtifactResult::Failed { name, kind, error } => serde_json::json!({
                    "name": name,
                    "kind": kind,
                    "error": error.to_string(),
                    "hint": error.hint(),
                    "exit_code": error.exit_code(),
                }),
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({"artifacts": artifacts, "ms": o.ms})
        );
        return;
    }
    for a in &o.artifacts {
        match a {
            ArtifactResult::Built(b) => {
                if reporter.mode == Mode::Human {
                    print_stages(&b.stages, reporter);
                    let ran = b.stages.iter().any(|s| s.status == Status::Ran);
                    eprintln!(
                        "{:<10} {:<6} {:<9} {}  {} zipped, {} unzipped, {}",
                        if ran { "Built" } else { "Up to date" },
                        b.kind,
                        b.name,
                        b.zip.display(),
                        human_size(b.size),
                        human_size(b.unzipped_size),
                        entries_text(b.entries),
                    );
                    println!("{} {} CodeSha256 {}", b.kind, b.name, b.code_sha256);
                }
            }
            ArtifactResult::Failed { name, kind, error } => {
                let hint = error.hint();
                eprintln!(
                    "{}",
                    crate::report::error_text_about(
                        &format!("{kind} {name}: "),
                        &error.to_string(),
                        hint.as_deref()
                    )
                );
            }
        }
    }
}

/// The stage table (under `-v`: each stage, its key and facts, the key's
/// inputs and why it ran), or under `lbuild explain` only why each stage
/// ran.
fn print_stages(stages: &[StageReport], reporter: &Reporter) {
    if reporter.verbose {
        for s in stages {
            let key = s.key.get(..12).unwrap_or("-");
            reporter.detail(format!(
                "  {:<8} {:<7} {:>6} ms  key {key}  {}",
                s.name,
                status_word(s.status),
                s.ms,
                brief(&s.details)
            ));
            for line in &s.explain {
                reporter.detail(format!("             {line}"));
            }
            if !s.reasons.is_empty() {
                reporter.detail(format!("           why: {}", s.reasons.join("; ")));
            }
        }
    } else if reporter.explain {
        let mut any = false;
        for s in stages.iter().filter(|s| !s.reasons.is_empty()) {
            any = true;
            let reused = if s.status == Status::Cached {
                " (an earlier result reused)"
            } else {
                ""
            };
            eprintln!("  {}: {}{reused}", s.name, s.reasons.join("; "));
        }
        if !any {
            eprintln!("  nothing changed since the last build");
        }
    }
}

fn status_word(s: Status) -> &'static str {
    match s {
        Status::Ran => "ran",
        Status::Cached => "cached",
        Status::Skipped => "skipped",
    }
}

/// Prints a finished build the way the reporter's mode asks.
pub fn print_outcome(o: &BuildOutcome, reporter: &Reporter) {
    match reporter.mode {
        Mode::Json => println!("{}", serde_json::to_string(o).unwrap_or_default()),
        Mode::Quiet => {}
        Mode::Human => {
            print_stages(&o.stages, reporter);
            eprintln!(
                "{} {} ({}, {})",
                if o.stages.iter().all(|s| s.status != Status::Ran) {
                    "Up to date"
                } else {
                    "Built"
                },
                o.zip.display(),
                entries_text(o.entries),
                human_size(o.size)
            );
            println!("sha256 {}", o.sha256);
            println!("CodeSha256 {}", o.code_sha256);
        }
    }
}

fn brief(details: &serde_json::Value) -> String {
    details
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

pub fn human_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

/// Removes the output zip and what lbuild keeps in the cache directory,
/// and nothing else: a directory without lbuild's mark is refused.
pub fn clean(artifacts: &[Plan], reporter: &Reporter) -> crate::Result<()> {
    let plan = &artifacts[0];
    let dir = &plan.cache_dir;
    let default = *dir == plan.project_dir.join(".lbuild");
    let exists = dir.exists();
    if exists && !default && !crate::cache::is_marked(dir) {
        return Err(crate::cache::CacheError::NotOurs { path: dir.clone() }.into());
    }
    prepare_cache_dir(plan)?;
    let lock = crate::lock::acquire(dir, &plan.project_dir, reporter)?;
    for path in artifacts.iter().map(|a| &a.output.path) {
        match std::fs::remove_file(path) {
            Ok(()) => reporter.info(format!("removed {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("cannot remove", path)(e)),
        }
    }
    // Only lbuild's own entries; the lock file we hold stays (removing it
    // would let a build waiting on this lock and a new one, on a new file,
    // run at once), and so does the mark.
    for entry in std::fs::read_dir(dir).map_err(Error::io("cannot read", dir))? {
        let entry = entry.map_err(Error::io("cannot read", dir))?;
        let path = entry.path();
        if !crate::cache::is_cache_entry(&entry.file_name().to_string_lossy()) {
            continue;
        }
        let removed = if entry.file_type().is_ok_and(|t| t.is_dir()) {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(Error::io("cannot remove", &path))?;
    }
    reporter.info(format!("emptied the cache {}", dir.display()));
    drop(lock);
    Ok(())
}

/// Forgets stage records (and their installed trees) unused for `days`.
pub fn gc(plan: &Plan, days: u64, reporter: &Reporter) -> crate::Result<usize> {
    prepare_cache_dir(plan)?;
    let _lock = crate::lock::acquire(&plan.cache_dir, &plan.project_dir, reporter)?;
    let cache = Cache::open(&plan.cache_dir)?;
    let removed = cache.gc_stages(days)?;
    for (stage, key) in &removed {
        // Trees in the machine store are shared: `lbuild gc --max-size`
        // removes those; here only trees kept in the cache directory.
        if stage == deps::NAME && plan.machine_store().root() == plan.cache_dir {
            let dir = deps::key_dir(&plan.cache_dir, key);
            if dir.exists() {
                std::fs::remove_dir_all(&dir).map_err(Error::io("cannot remove", &dir))?;
            }
        }
        reporter.detail(format!("forgot {stage} {}", key.to_hex()));
    }
    reporter.info(format!(
        "removed {} cache entries unused for {days} days",
        removed.len()
    ));
    Ok(removed.len())
}

/// The machine store named by the environment (no manifest needed).
fn machine_store() -> crate::Result<crate::store::MachineStore> {
    crate::store::dir_from_env()
        .map(crate::store::MachineStore::at)
        .ok_or_else(|| Error::Input {
            message: "no machine store: none of LBUILD_STORE, XDG_CACHE_HOME, HOME is set".into(),
            hint: "set LBUILD_STORE to a directory".into(),
        })
}

/// `lbuild gc --max-size`: trims the machine store to `max` bytes, least
/// recently used first, once no build is using it.
pub fn gc_store(max: u64, reporter: &Reporter) -> crate::Result<()> {
    let store = machine_store()?;
    let (removed, kept) = store.gc(max)?;
    if reporter.mode == Mode::Json {
        println!(
            "{}",
            serde_json::json!({"store": store.root(), "removed": removed, "bytes": kept})
        );
    } else {
        reporter.info(format!(
            "removed {removed} items from {}; it holds {}",
            store.root().display(),
            human_size(kept)
        ));
    }
    Ok(())
}

/// `lbuild cache stats`: where the machine store is and what it holds.
pub fn store_stats(reporter: &Reporter) -> crate::Result<()> {
    let store = machine_store()?;
    let s = store.stats();
    let hits = crate::hits::summary(store.root());
    if reporter.mode == Mode::Json {
        println!(
            "{}",
            serde_json::json!({"store": store.root(), "entries": s.entries, "entry_bytes": s.entry_bytes, "trees": s.trees, "tree_bytes": s.tree_bytes, "bytes": s.entry_bytes + s.tree_bytes, "hits": hits})
        );
    } else {
        println!("store    {}", store.root().display());
        println!(
            "entries  {:>8}  {}  (compressed files, shared by every project)",
            s.entries,
            human_size(s.entry_bytes)
        );
        println!(
            "trees    {:>8}  {}  (installed dependency trees)",
            s.trees,
            human_size(s.tree_bytes)
        );
        println!(
            "total              {}",
            human_size(s.entry_bytes + s.tree_bytes)
        );
        let rate = |hit: u64, of: u64| {
            if of == 0 {
                "-".to_string()
            } else {
                format!("{hit}/{of} ({:.0}%)", 100.0 * hit as f64 / of as f64)
            }
        };
        println!();
        println!("hits over {} artifact builds", hits.builds);
        println!(
            "zips     {}  already up to date",
            rate(hits.zips_cached, hits.builds)
        );
        println!(
            "entries  {}  copied compressed, not compressed again",
            rate(
                hits.entries_copied,
                hits.entries_copied + hits.entries_compressed
            )
        );
        println!(
            "trees    {}  ready, installer not run ({} from the remote store)",
            rate(hits.trees_ready, hits.trees_ready + hits.trees_installed),
            hits.trees_from_remote
        );
    }
    Ok(())
}
