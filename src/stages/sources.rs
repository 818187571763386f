//! The sources stage: the handler and the files the include/exclude globs
//! select under the sources root, with their content hashes.
//!
//! Also checks that the handler's module is among them (an error) and that
//! it defines the handler function (a warning).

use std::path::PathBuf;
use std::time::Instant;

use super::{Entry, KeyBuilder, StageReport, hash_entries, settle_listing};
use crate::Error;
use crate::cache::Cache;
use crate::context::BuildContext;
use crate::manifest::Plan;
use crate::report::Reporter;
use crate::walk;
use crate::watch_root::{WatchInputs, WatchRoot};

pub(crate) const NAME: &str = "sources";

pub(crate) fn run(
    plan: &Plan,
    cache: &mut Cache,
    cx: &BuildContext,
) -> crate::Result<(Vec<Entry>, StageReport)> {
    let reporter = cx.reporter;
    let started = Instant::now();
    let (files, unmatched) = select(plan, Some(&cx.listings))?;
    warn_package_data(plan, &files, &unmatched, reporter);
    let (entries, stats) = hash_entries(cache, files)?;
    if !plan.is_layer() {
        check_handler(plan, &entries, reporter)?;
    }

    let s = &plan.sources;
    let rekey = |explain| {
        let mut key = KeyBuilder::new(NAME, explain);
        key.add("root", &s.root_written)
            .add("include", s.include_patterns.join(","))
            .add("exclude", s.exclude_patterns.join(","))
            .add_entries(&entries);
        key
    };
    let report = settle_listing(cache, plan, NAME, cx, rekey, started, &entries, stats)?;
    Ok((entries, report))
}

/// The files the stage packages (archive name, path), without hashing
/// them: what `lbuild check` compiles.
pub(crate) fn files(plan: &Plan) -> crate::Result<Vec<(String, PathBuf)>> {
    Ok(select(plan, None)?.0)
}

/// The walk: the files selected, and those neither glob matched.
type Selected = (Vec<(String, PathBuf)>, Vec<String>);

fn select(plan: &Plan, listings: Option<&walk::Listings>) -> crate::Result<Selected> {
    let s = &plan.sources;
    // Files neither glob matched: package data left out unless said so.
    let mut unmatched: Vec<String> = Vec::new();
    let skip = never_entered(plan);
    let walk = sources_walk(plan, &skip);
    // `selects` without its pruned-ancestor test: the walk has pruned.
    let keep = |name: &str| {
        if s.exclude.is_match(name) {
            return false;
        }
        let included = s.include.is_match(name);
        if !included {
            unmatched.push(name.to_string());
        }
        included
    };
    let prune = |dir: &str| s.prunes_dir(dir);
    let files = match listings {
        Some(listings) => listings.files(&walk, keep, prune),
        None => walk::files(&walk, keep, prune),
    }
    .map_err(|e| walk_error(plan, e))?;
    // No artifact's zip in this workspace is a source (its own is left
    // out by the walk too).
    let mut files = files;
    files.retain(|(_, path)| !plan.workspace_outputs.contains(path));
    Ok((files, unmatched))
}

/// The sources walk of `plan` (`skip`: [`never_entered`]).
fn sources_walk<'a>(plan: &'a Plan, skip: &'a [PathBuf]) -> walk::Walk<'a> {
    walk::Walk {
        dir: &plan.sources.root,
        names_from: &plan.sources.root,
        root: &plan.sources.root,
        skip,
        output: Some(&plan.output.path),
        ignores_from: Some(&plan.project_dir),
    }
}

/// Lets the sources walks of `plans` share one listing per root (see
/// [`walk::Listings`]): registered before the build asks for any.
pub(crate) fn share_walks<'p>(
    listings: &walk::Listings,
    plans: impl IntoIterator<Item = &'p Plan>,
) {
    for plan in plans {
        let skip = never_entered(plan);
        let pruner = plan.sources.prune.clone();
        listings.register(
            &sources_walk(plan, &skip),
            std::sync::Arc::new(move |dir: &str| pruner.prunes(dir)),
        );
    }
}

/// A source in the output's directory is the output path's fault: point
/// at it in the manifest.
pub(crate) fn walk_error(plan: &Plan, e: walk::WalkError) -> Error {
    match e {
        walk::WalkError::InOutputDir { .. } => {
            let hint = e.hint().unwrap_or_default();
            plan.output_error(e.to_string(), &hint).into()
        }
        e => e.into(),
    }
}

/// What this stage reads, for `lbuild watch`: the sources root and the
/// directories below it that the walk enters.
pub(crate) fn watch_roots(plan: &Plan) -> Vec<WatchRoot> {
    let s = &plan.sources;
    vec![WatchRoot {
        dir: s.root.clone(),
        recursive: true,
        skip: skipped_dirs(plan),
        inputs: WatchInputs::Globs {
            base: s.root.clone(),
            include: std::sync::Arc::new(s.include.clone()),
            exclude: std::sync::Arc::new(s.exclude.clone()),
        },
    }]
}

/// lbuild's own directories, never packaged: the cache, and the output's
/// directory (which the walks enter only to check that no selected file
/// lies there, see [`walk::Walk::output`]).
pub(crate) fn skipped_dirs(plan: &Plan) -> Vec<PathBuf> {
    let mut dirs = vec![plan.cache_dir.clone()];
    if let Some(out_dir) = plan.output.path.parent() {
        dirs.push(out_dir.to_path_buf());
    }
    dirs
}

/// The directories the walks never enter: the cache.
pub(crate) fn never_entered(plan: &Plan) -> Vec<PathBuf> {
    vec![plan.cache_dir.clone()]
}

/// Files inside a package the sources include (a directory whose
/// `__init__.py` is packaged) that no glob mentions: templates, JSON
/// schemas, `py.typed`. SAM ships them; leaving them out silently breaks
/// the function at run time, so say so, with both ways to settle it.
fn warn_package_data(
    plan: &Plan,
    files: &[(String, PathBuf)],
    unmatched: &[String],
    reporter: &Reporter,
) {
    let packages: std::collections::HashSet<&str> = files
        .iter()
        .filter_map(|(name, _)| name.strip_suffix("/__init__.py"))
        .collect();
    if packages.is_empty() {
        return;
    }
    let mut data: Vec<(&str, &str)> = unmatched
        .iter()
        .filter(|name| !name.ends_with(".py") && !never_package_data(name))
        .filter_map(|name| {
            let mut dir = name.as_str();
            while let Some((parent, _)) = dir.rsplit_once('/') {
                if packages.contains(parent) {
                    return Some((name.as_str(), parent));
                }
                dir = parent;
            }
            None
        })
        .collect();
    if data.is_empty() {
        return;
    }
    data.sort_unstable();
    const SHOWN: usize = 5;
    let mut names: Vec<&str> = data.iter().take(SHOWN).map(|(n, _)| *n).collect();
    let more = data.len().saturating_sub(SHOWN);
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    let (first, package) = data[0];
    let ext = first
        .rsplit('/')
        .next()
        .and_then(|b| b.rsplit_once('.'))
        .map(|(_, e)| format!("{package}/**/*.{e}"))
        .unwrap_or_else(|| first.to_string());
    names.dedup();
    reporter.warn(format!(
        "{}{more} {} inside Python package {package}/ but matched by neither [sources] include nor exclude, so {} not in the zip; \
to ship {}, add a glob such as \"{ext}\" to [sources] include in {}; to leave {} out on purpose, add it to [sources] exclude",
        names.join(", "),
        if data.len() == 1 { "is" } else { "are" },
        if data.len() == 1 { "it is" } else { "they are" },
        if data.len() == 1 { "it" } else { "them" },
        plan.manifest_path.display(),
        if data.len() == 1 { "it" } else { "them" },
    ));
}

/// Files often found inside a package directory that the code does not
/// read at run time: requirements files (a SAM CodeUri directory has one),
/// type stubs, docs, dotfiles.
fn never_package_data(name: &str) -> bool {
    let base = name.rsplit('/').next().unwrap_or(name);
    let lower = base.to_ascii_lowercase();
    (lower.starts_with("requirements") && lower.ends_with(".txt"))
        || lower.ends_with(".pyi")
        || lower == "py.typed"
        || lower.starts_with("readme")
        || lower.ends_with(".md")
        || lower.ends_with(".rst")
        || lower.starts_with('.')
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
    let text = fs_err::read_to_string(&module.path).unwrap_or_default();
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
