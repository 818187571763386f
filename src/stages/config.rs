//! The config stage: files named by `[config] files`, packaged at their
//! path relative to the project directory.

use std::path::Path;
use std::time::Instant;

use super::watch_root::{WatchInputs, WatchRoot};
use super::{Entry, KeyBuilder, StageReport, hash_entries, settle_listing, walk};
use crate::Error;
use crate::cache::Cache;
use crate::manifest::{Plan, compile_globs};
use crate::report::Reporter;

pub const NAME: &str = "config";

pub fn run(
    plan: &Plan,
    cache: &mut Cache,
    reporter: &Reporter,
) -> crate::Result<(Vec<Entry>, StageReport)> {
    let started = Instant::now();
    let mut files = Vec::new();
    let skip = super::sources::skipped_dirs(plan);
    for pattern in &plan.config.patterns {
        let set = compile_globs(std::slice::from_ref(pattern)).map_err(|(g, m)| Error::Input {
            message: format!("config glob {g:?}: {m}"),
            hint: "fix [config] files in lambda.toml".into(),
        })?;
        // Walk only the literal directory prefix of the glob.
        let base = literal_prefix(pattern);
        let dir = plan.project_dir.join(&base);
        let found = if dir.is_dir() {
            walk::files_under(&dir, &plan.project_dir, &plan.project_dir, &skip, |n| {
                set.is_match(n)
            })?
        } else {
            Vec::new()
        };
        if found.is_empty() {
            if is_literal(pattern) {
                return Err(Error::Input {
                    message: format!(
                        "config file {pattern:?} not found in {}",
                        plan.project_dir.display()
                    ),
                    hint: "create the file, or fix [config] files in lambda.toml (paths are relative to it)".into(),
                });
            }
            reporter.warn(format!("config glob {pattern:?} matches no file"));
        }
        files.extend(found);
    }
    files.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    files.dedup_by(|a, b| a.0 == b.0);
    let (entries, stats) = hash_entries(cache, files)?;

    let mut key = KeyBuilder::new(NAME);
    key.add("files", plan.config.patterns.join(","))
        .add_entries(&entries);
    let report = settle_listing(cache, NAME, &key, started, &entries, stats)?;
    Ok((entries, report))
}

/// What this stage reads, for `lbuild watch`: each glob's literal base
/// directory, with the directories below it when the glob can cross a `/`.
pub fn watch_roots(plan: &Plan) -> Vec<WatchRoot> {
    let skip = super::sources::skipped_dirs(plan);
    plan.config
        .patterns
        .iter()
        .map(|pattern| {
            let prefix = literal_prefix(pattern);
            let below = pattern.split('/').count() - Path::new(&prefix).components().count();
            WatchRoot {
                dir: plan.project_dir.join(&prefix),
                recursive: below > 1 || pattern.contains("**"),
                skip: skip.clone(),
                inputs: WatchInputs::Globs {
                    base: plan.project_dir.clone(),
                    // Validated at load; an empty set only loses the
                    // "which input changed" refinement.
                    include: compile_globs(std::slice::from_ref(pattern)).unwrap_or_default(),
                    exclude: globset::GlobSet::empty(),
                },
            }
        })
        .collect()
}

fn is_literal(pattern: &str) -> bool {
    !pattern.contains(['*', '?', '[', '{', '\\'])
}

/// The leading path segments of a glob that contain no wildcard.
pub fn literal_prefix(pattern: &str) -> String {
    let segs: Vec<&str> = pattern.split('/').collect();
    let literal: Vec<&str> = segs[..segs.len() - 1]
        .iter()
        .take_while(|s| is_literal(s))
        .copied()
        .collect();
    Path::new(&literal.join("/")).to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_prefix_stops_at_first_wildcard() {
        assert_eq!(literal_prefix("config/*.json"), "config");
        assert_eq!(literal_prefix("a/b/**/x.yml"), "a/b");
        assert_eq!(literal_prefix("*.json"), "");
        assert_eq!(literal_prefix("settings.json"), "");
    }
}
