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
pub fn build(plan: &Plan, reporter: &Reporter) -> crate::Result<BuildOutcome> {
    let started = Instant::now();
    let _lock = crate::lock::acquire(&plan.cache_dir, reporter)?;
    let mut cache = Cache::open(&plan.cache_dir)?;

    // Cheap, likely-to-fail checks first: a missing handler should not
    // wait for a dependency install.
    let (src, src_report) = sources::run(plan, &mut cache, reporter)?;
    let (cfg, cfg_report) = config::run(plan, &mut cache, reporter)?;
    let (dep, mut dep_report) = deps::run(plan, &mut cache, reporter, false)?;
    let mut key = package::key(plan, dep.digest, &src, &cfg)?;
    if let Some((zip, pkg_report)) = package::cached(plan, &cache, &key)? {
        let stages = vec![dep_report, src_report, cfg_report, pkg_report];
        return Ok(outcome(plan, zip, stages, started));
    }
    // The zip must be written: now the deps tree's files are needed.
    let dep_entries = match dep.entries(&cache)? {
        Some(entries) => entries,
        None => {
            reporter.info("the dependency tree changed since it was installed; installing again");
            let (dep, report) = deps::run(plan, &mut cache, reporter, true)?;
            dep_report = report;
            key = package::key(plan, dep.digest, &src, &cfg)?;
            dep.entries(&cache)?.unwrap_or_default()
        }
    };
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
    let (zip, pkg_report) = package::build(plan, &mut cache, reporter, key, &inputs)?;
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

/// Removes the output zip and the cache.
pub fn clean(plan: &Plan, reporter: &Reporter) -> crate::Result<()> {
    let lock = crate::lock::acquire(&plan.cache_dir, reporter)?;
    for path in [&plan.output.path] {
        match std::fs::remove_file(path) {
            Ok(()) => reporter.info(format!("removed {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("cannot remove", path)(e)),
        }
    }
    // Everything but the lock file we hold: removing it would let a build
    // waiting on this lock and a new one (on a new file) run at once.
    let entries =
        std::fs::read_dir(&plan.cache_dir).map_err(Error::io("cannot read", &plan.cache_dir))?;
    for entry in entries {
        let entry = entry.map_err(Error::io("cannot read", &plan.cache_dir))?;
        let path = entry.path();
        if entry.file_name() == crate::lock::LOCK_FILE {
            continue;
        }
        let removed = if entry.file_type().is_ok_and(|t| t.is_dir()) {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(Error::io("cannot remove", &path))?;
    }
    reporter.info(format!("emptied the cache {}", plan.cache_dir.display()));
    drop(lock);
    Ok(())
}

/// Forgets stage records (and their installed trees) unused for `days`.
pub fn gc(plan: &Plan, days: u64, reporter: &Reporter) -> crate::Result<usize> {
    let _lock = crate::lock::acquire(&plan.cache_dir, reporter)?;
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
