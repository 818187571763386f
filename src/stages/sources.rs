//! The sources stage: the handler and the files the include/exclude globs
//! select under the sources root, with their content hashes.
//!
//! Also checks that the handler's module is among them (an error) and that
//! it defines the handler function (a warning).

use std::path::PathBuf;
use std::time::Instant;

use super::watch_root::{WatchInputs, WatchRoot};
use super::{Entry, KeyBuilder, StageReport, hash_entries, settle_listing, walk};
use crate::Error;
use crate::cache::Cache;
use crate::manifest::Plan;
use crate::report::Reporter;

pub const NAME: &str = "sources";

pub fn run(
    plan: &Plan,
    cache: &mut Cache,
    reporter: &Reporter,
) -> crate::Result<(Vec<Entry>, StageReport)> {
    let started = Instant::now();
    let s = &plan.sources;
    let files = walk::files_under_pruned(
        &s.root,
        &s.root,
        &s.root,
        &skipped_dirs(plan),
        |name| s.include.is_match(name) && !s.exclude.is_match(name),
        |dir| excludes_whole_dir(&s.exclude, dir),
    )?;
    let (entries, stats) = hash_entries(cache, files)?;
    check_handler(plan, &entries, reporter)?;

    let mut key = KeyBuilder::new(NAME);
    key.add("root", &s.raw.root)
        .add("include", s.raw.include.join(","))
        .add("exclude", s.raw.exclude.join(","))
        .add_entries(&entries);
    let report = settle_listing(cache, NAME, &key, started, &entries, stats)?;
    Ok((entries, report))
}

/// True when the exclude globs cover `dir` and everything below it (as
/// `tests/**` or `.venv` do), so the walk need not enter it.
fn excludes_whole_dir(exclude: &globset::GlobSet, dir: &str) -> bool {
    exclude.is_match(dir)
        || (exclude.is_match(format!("{dir}/\u{1}"))
            && exclude.is_match(format!("{dir}/\u{1}/\u{1}.\u{1}")))
}

/// What this stage reads, for `lbuild watch`: the sources root and the
/// directories below it that the walk enters.
pub fn watch_roots(plan: &Plan) -> Vec<WatchRoot> {
    let s = &plan.sources;
    vec![WatchRoot {
        dir: s.root.clone(),
        recursive: true,
        skip: skipped_dirs(plan),
        inputs: WatchInputs::Globs {
            base: s.root.clone(),
            include: s.include.clone(),
            exclude: s.exclude.clone(),
        },
    }]
}

/// lbuild's own directories, never packaged.
pub fn skipped_dirs(plan: &Plan) -> Vec<PathBuf> {
    let mut dirs = vec![plan.cache_dir.clone()];
    if let Some(out_dir) = plan.output.path.parent() {
        dirs.push(out_dir.to_path_buf());
    }
    dirs
}

fn check_handler(plan: &Plan, entries: &[Entry], reporter: &Reporter) -> crate::Result<()> {
    let candidates = plan.handler_module_paths();
    let Some(module) = entries.iter().find(|e| candidates.contains(&e.name)) else {
        return Err(Error::Input {
            message: format!(
                "handler {:?}: module not found among the sources (looked for {} and {} under {})",
                plan.handler,
                candidates[0],
                candidates[1],
                plan.sources.root.display()
            ),
            hint: "fix [function] handler in lambda.toml, or the [sources] root/include globs so the module is packaged".into(),
        });
    };
    let func = plan.handler_function();
    let text = std::fs::read_to_string(&module.path).unwrap_or_default();
    let defined = text.lines().any(|l| {
        let l = l.strip_prefix("async ").unwrap_or(l);
        l.strip_prefix("def ")
            .and_then(|rest| rest.strip_prefix(func))
            .is_some_and(|rest| rest.trim_start().starts_with('('))
    });
    // A handler may also be assigned (handler = make_handler()).
    let assigned = text.lines().any(|l| {
        l.strip_prefix(func)
            .is_some_and(|rest| rest.trim_start().starts_with('='))
    });
    if !defined && !assigned {
        reporter.warn(format!(
            "{} has no top-level `def {func}(`: Lambda will fail to find handler {:?}",
            module.name, plan.handler
        ));
    }
    Ok(())
}
