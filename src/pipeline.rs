//! One build, start to finish: lock the project, open the cache, run the
//! stages in order and collect what they did. Also `clean` and `gc`.

use std::time::Instant;

use serde::Serialize;

use crate::Error;
use crate::cache::Cache;
use crate::manifest::Plan;
use crate::report::{Mode, Reporter};
use crate::stages::package::{Input, ZipInfo};
use crate::stages::{StageReport, Status, config, deps, package, sources};

/// The result of a successful build (what `--json` prints).
#[derive(Debug, Clone, Serialize)]
pub struct BuildOutcome {
    pub function: String,
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
pub fn build(plan: &Plan, reporter: &Reporter) -> crate::Result<BuildOutcome> {
    let started = Instant::now();
    let _explain = crate::stages::explain_keys(reporter.verbose);
    prepare_cache_dir(plan)?;
    let _lock = crate::lock::acquire(&plan.cache_dir, &plan.project_dir, reporter)?;
    match build_locked(plan, reporter, started) {
        Err(Error::Cache(e)) if e.is_corrupt() => {
            let aside = Cache::move_aside(&plan.cache_dir)?;
            warn_corrupt(reporter, &e.to_string(), &aside);
            build_locked(plan, reporter, started)
        }
        other => other,
    }
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

/// The stages in order, once, under the lock. Linear: the package key is
/// first computed from the deps tree's recorded digest to look the zip up;
/// only when it must be written is the tree made ready (checked, or
/// installed again), and the key recomputed if its digest changed.
fn build_locked(plan: &Plan, reporter: &Reporter, started: Instant) -> crate::Result<BuildOutcome> {
    let mut cache = Cache::open(&plan.cache_dir)?;
    if let Some(aside) = cache.healed() {
        warn_corrupt(reporter, "the database could not be read", aside);
    }

    // Cheap, likely-to-fail checks first: a missing handler should not
    // wait for a dependency install.
    let (src, src_report) = sources::run(plan, &mut cache, reporter)?;
    let (cfg, cfg_report) = config::run(plan, &mut cache, reporter)?;
    let (tree, mut dep_report) = deps::run(plan, &mut cache, reporter)?;
    let recorded_digest = tree.digest();
    let key = package::key(plan, recorded_digest, &src, &cfg)?;
    let (zip, pkg_report) = match package::cached(plan, &cache, &key)? {
        Some(found) => found,
        None => {
            // The zip must be written: now the deps tree's files are needed.
            let (deps, reinstalled) = deps::ready(tree, plan, &mut cache, reporter)?;
            if let Some(report) = reinstalled {
                dep_report = report;
            }
            let key = if deps.digest == recorded_digest {
                key
            } else {
                package::key(plan, deps.digest, &src, &cfg)?
            };
            let inputs = [
                Input {
                    stage: deps::NAME,
                    entries: &deps.entries,
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
            package::build(plan, &mut cache, reporter, key, &inputs)?
        }
    };
    if let Some(why) = cache.take_write_failure() {
        reporter.warn(format!(
            "could not write to the cache in {} ({why}); the zip is correct, the next build may be slower",
            plan.cache_dir.display()
        ));
    }
    let stages = vec![dep_report, src_report, cfg_report, pkg_report];
    Ok(outcome(plan, zip, stages, started))
}

fn outcome(plan: &Plan, zip: ZipInfo, stages: Vec<StageReport>, started: Instant) -> BuildOutcome {
    BuildOutcome {
        function: plan.name.clone(),
        zip: zip.path,
        sha256: zip.sha256,
        code_sha256: zip.code_sha256,
        size: zip.size,
        entries: zip.entries,
        stages,
        ms: started.elapsed().as_millis() as u64,
    }
}

/// Prints a finished build the way the reporter's mode asks.
pub fn print_outcome(o: &BuildOutcome, reporter: &Reporter) {
    match reporter.mode {
        Mode::Json => println!("{}", serde_json::to_string(o).unwrap_or_default()),
        Mode::Quiet => {}
        Mode::Human => {
            for s in &o.stages {
                let status = match s.status {
                    Status::Ran => "ran",
                    Status::Cached => "cached",
                    Status::Skipped => "skipped",
                };
                let key = s.key.get(..12).unwrap_or("-");
                eprintln!(
                    "  {:<8} {:<7} {:>6} ms  key {key}  {}",
                    s.name,
                    status,
                    s.ms,
                    brief(&s.details)
                );
                for line in &s.explain {
                    reporter.detail(format!("             {line}"));
                }
            }
            eprintln!(
                "{} {} ({} entries, {})",
                if o.stages.iter().all(|s| s.status != Status::Ran) {
                    "Up to date"
                } else {
                    "Built"
                },
                o.zip.display(),
                o.entries,
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
pub fn clean(plan: &Plan, reporter: &Reporter) -> crate::Result<()> {
    let dir = &plan.cache_dir;
    let default = *dir == plan.project_dir.join(".lbuild");
    let exists = dir.exists();
    if exists && !default && !crate::cache::is_marked(dir) {
        return Err(crate::cache::CacheError::NotOurs { path: dir.clone() }.into());
    }
    prepare_cache_dir(plan)?;
    let lock = crate::lock::acquire(dir, &plan.project_dir, reporter)?;
    for path in [&plan.output.path] {
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
        if stage == deps::NAME {
            let dir = deps::tree_dir(&plan.cache_dir, key);
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
