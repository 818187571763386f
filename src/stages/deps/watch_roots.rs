//! What the deps stage reads, as `WatchRoot`s for `lbuild watch`. Does not
//! watch anything itself (`crate::watch`).

use std::path::Path;

use super::{lockfile, requirements};
use crate::manifest::Plan;

/// What this stage reads, for `lbuild watch`: requirements.txt and the
/// files it includes (read by the stage's own reader; edits re-plan, as
/// they may name other files), local `find_links` directories (manifest
/// and requirements files), and the local wheels the requirements name.
/// When the requirements cannot be read, the build says why; the top file
/// is watched until it is fixed.
pub(crate) fn watch_roots(plan: &Plan) -> Vec<crate::watch_root::WatchRoot> {
    use crate::manifest::normalize;
    use crate::watch_root::{WatchInputs, WatchRoot};
    let Some(deps) = &plan.deps else {
        return Vec::new();
    };
    let in_dir = |file: &Path, inputs: WatchInputs| WatchRoot {
        dir: file.parent().map(Path::to_path_buf).unwrap_or_default(),
        recursive: false,
        skip: Vec::new(),
        inputs,
    };
    let (files, mut links, artifacts) = match &deps.lock {
        // The lockfile itself (pyproject.toml is read for the out-of-date
        // check only when installing; the key never reads it).
        Some(l) => (vec![l.path.clone()], Vec::new(), Vec::new()),
        None => match requirements::read(&deps.requirements) {
            Ok(r) => (
                r.files.into_iter().map(|f| f.path).collect(),
                r.local_find_links,
                r.local_artifacts,
            ),
            Err(_) => (vec![deps.requirements.clone()], Vec::new(), Vec::new()),
        },
    };
    links.extend(
        deps.find_links
            .iter()
            .filter_map(|l| l.dir().map(Path::to_path_buf)),
    );
    let mut roots: Vec<WatchRoot> = files
        .iter()
        .map(|f| {
            let f = normalize(f);
            in_dir(
                &f,
                WatchInputs::Files {
                    files: vec![f.clone()],
                    replan: true,
                },
            )
        })
        .collect();
    roots.extend(artifacts.iter().map(|a| {
        let a = normalize(a);
        in_dir(
            &a,
            WatchInputs::Files {
                files: vec![a.clone()],
                replan: false,
            },
        )
    }));
    // A lock's path dependencies: every file in them is keyed.
    if let Some(l) = &deps.lock {
        let everything = |glob: Option<&str>| {
            let mut b = globset::GlobSetBuilder::new();
            if let Some(g) = glob.and_then(|g| globset::Glob::new(g).ok()) {
                b.add(g);
            }
            std::sync::Arc::new(b.build().unwrap_or_else(|_| globset::GlobSet::empty()))
        };
        for dir in lockfile::local_paths(l).unwrap_or_default() {
            let dir = normalize(&dir);
            if dir == normalize(&plan.project_dir) {
                continue;
            }
            roots.push(if dir.is_dir() {
                WatchRoot {
                    dir: dir.clone(),
                    recursive: true,
                    skip: Vec::new(),
                    inputs: WatchInputs::Globs {
                        base: dir,
                        include: everything(Some("**")),
                        exclude: everything(None),
                    },
                }
            } else {
                in_dir(
                    &dir,
                    WatchInputs::Files {
                        files: vec![dir.clone()],
                        replan: false,
                    },
                )
            });
        }
    }
    roots.extend(links.iter().map(|dir| WatchRoot {
        dir: normalize(dir),
        recursive: false,
        skip: Vec::new(),
        inputs: WatchInputs::Listing,
    }));
    roots
}
