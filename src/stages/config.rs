//! The config stage: files named by `[config] files`, packaged at their
//! path relative to the project directory.

use std::time::Instant;

use super::{Entry, KeyBuilder, StageReport, hash_entries, settle_listing};
use crate::Error;
use crate::cache::Cache;
use crate::context::BuildContext;
use crate::manifest::Plan;
use crate::walk;
use crate::watch_root::{WatchInputs, WatchRoot};

pub(crate) const NAME: &str = "config";

pub(crate) fn run(
    plan: &Plan,
    cache: &mut Cache,
    cx: &BuildContext,
) -> crate::Result<(Vec<Entry>, StageReport)> {
    let reporter = cx.reporter;
    let started = Instant::now();
    let mut files = Vec::new();
    let skip = super::sources::never_entered(plan);
    for glob in &plan.config.globs {
        // Walk only the literal directory prefix of the glob (checked at
        // load to stay inside the project).
        let dir = plan.project_dir.join(&glob.base);
        let found = if dir.is_dir() {
            let walk = walk::Walk {
                dir: &dir,
                names_from: &plan.project_dir,
                root: &plan.project_dir,
                skip: &skip,
                output: Some(&plan.output.path),
                ignores_from: None,
            };
            walk::files(&walk, |n| glob.set.is_match(n), |_| false)
                .map_err(|e| super::sources::walk_error(plan, e))?
        } else {
            Vec::new()
        };
        if found.is_empty() {
            let pattern = &glob.pattern;
            if glob.literal {
                return Err(Error::Input {
                    message: format!(
                        "config file {pattern:?} not found in {}",
                        plan.project_dir.display()
                    ),
                    hint: "create the file, or fix [config] files in lambda.toml (paths are relative to it)".into(),
                });
            }
            if plan.config.required {
                return Err(crate::manifest::ManifestError::At {
                    path: plan.manifest_path.clone(),
                    line: glob.at.line,
                    column: glob.at.column,
                    message: format!(
                        "config glob {pattern:?} matches no file under {}",
                        plan.project_dir.join(&glob.base).display()
                    ),
                    hint: Some(
                        "add the files, fix the glob (it is relative to lambda.toml), or set `required = false` in [config] to build without them".into(),
                    ),
                }
                .into());
            }
            reporter.warn(format!("config glob {pattern:?} matches no file"));
        }
        files.extend(found);
    }
    files.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    files.dedup_by(|a, b| a.0 == b.0);
    let (entries, stats) = hash_entries(cache, files)?;

    let rekey = |explain| {
        let mut key = KeyBuilder::new(NAME, explain);
        key.add("files", plan.config.patterns.join(","))
            .add_entries(&entries);
        key
    };
    let report = settle_listing(cache, plan, NAME, cx, rekey, started, &entries, stats)?;
    Ok((entries, report))
}

/// What this stage reads, for `lbuild watch`: each glob's literal base
/// directory, with the directories below it when the glob can cross a `/`.
pub(crate) fn watch_roots(plan: &Plan) -> Vec<WatchRoot> {
    let skip = super::sources::skipped_dirs(plan);
    plan.config
        .globs
        .iter()
        .map(|g| {
            let below =
                g.pattern.split('/').count() - std::path::Path::new(&g.base).components().count();
            WatchRoot {
                dir: plan.project_dir.join(&g.base),
                recursive: below > 1 || g.pattern.contains("**"),
                skip: skip.clone(),
                inputs: WatchInputs::Globs {
                    base: plan.project_dir.clone(),
                    include: std::sync::Arc::new(g.set.clone()),
                    exclude: std::sync::Arc::new(globset::GlobSet::empty()),
                },
            }
        })
        .collect()
}
