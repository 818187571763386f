//! uv.lock: the packages the target needs, walked from the project root.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use super::{Ctx, Pinned, norm};
use crate::manifest::LockPlan;
use crate::stages::deps::DepsError;

#[derive(Deserialize)]
pub(super) struct UvLock {
    #[serde(default)]
    pub(super) package: Vec<UvPackage>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) struct UvPackage {
    pub(super) name: String,
    pub(super) version: Option<String>,
    #[serde(default)]
    pub(super) source: BTreeMap<String, toml::Value>,
    #[serde(default)]
    pub(super) dependencies: Vec<UvDep>,
    #[serde(default)]
    pub(super) optional_dependencies: BTreeMap<String, Vec<UvDep>>,
    #[serde(default)]
    pub(super) dev_dependencies: BTreeMap<String, Vec<UvDep>>,
    #[serde(default)]
    pub(super) wheels: Vec<UvWheel>,
}

#[derive(Deserialize)]
pub(super) struct UvDep {
    pub(super) name: String,
    pub(super) version: Option<String>,
    pub(super) marker: Option<String>,
    #[serde(default)]
    pub(super) extra: Vec<String>,
}

#[derive(Deserialize)]
pub(super) struct UvWheel {
    pub(super) hash: Option<String>,
}

impl UvPackage {
    pub(super) fn is_root(&self) -> bool {
        ["editable", "virtual"]
            .iter()
            .any(|k| self.source.get(*k).and_then(|v| v.as_str()) == Some("."))
    }
    /// A path dependency (a workspace member, `{ path = ... }`, editable or
    /// not): the path as written, relative to the lock's directory.
    pub(super) fn local_source(&self) -> Option<&str> {
        ["directory", "editable", "path"]
            .iter()
            .find_map(|k| self.source.get(*k).and_then(|v| v.as_str()))
    }
    /// `registry = ...`: installable from an index by name and version.
    pub(super) fn is_indexed(&self) -> bool {
        self.source.contains_key("registry")
    }
}

pub(super) fn uv(ctx: &Ctx, lock: &LockPlan) -> Result<Vec<Pinned>, DepsError> {
    let parsed: UvLock = ctx.parse()?;
    let packages = &parsed.package;
    let Some(root) = packages.iter().position(UvPackage::is_root) else {
        return Err(ctx.refused(
            format!(
                "{} has no project root (a package with source = {{ editable = \".\" }} or {{ virtual = \".\" }})",
                ctx.path.display()
            ),
            "point lock at the uv.lock beside the project's pyproject.toml, and re-lock with `uv lock`",
        ));
    };
    let find = |dep: &UvDep| -> Result<usize, DepsError> {
        let name = norm(&dep.name);
        let found: Vec<usize> = packages
            .iter()
            .enumerate()
            .filter(|(_, p)| norm(&p.name) == name)
            .filter(|(_, p)| dep.version.is_none() || p.version == dep.version)
            .map(|(i, _)| i)
            .collect();
        match found.as_slice() {
            [one] => Ok(*one),
            [] => Err(ctx.refused(
                format!(
                    "{}: a dependency on {} has no [[package]] entry",
                    ctx.path.display(),
                    dep.name
                ),
                "the lock is incomplete: re-lock with `uv lock`",
            )),
            _ => Err(ctx.refused(
                format!(
                    "{}: a dependency on {} does not say which of its versions it means",
                    ctx.path.display(),
                    dep.name
                ),
                "re-lock with `uv lock`",
            )),
        }
    };

    // The root's own lists: dependencies, the extras and groups asked for.
    let r = &packages[root];
    let mut start: Vec<&UvDep> = r.dependencies.iter().collect();
    // Each extra or group asked for, by its normalised name.
    fn add_lists<'p>(
        start: &mut Vec<&'p UvDep>,
        ctx: &Ctx,
        lists: &'p BTreeMap<String, Vec<UvDep>>,
        wanted: &[String],
        what: &str,
        hint: &str,
    ) -> Result<(), DepsError> {
        let have: BTreeSet<String> = lists.keys().cloned().collect();
        for w in wanted {
            let (_, list) = lists
                .iter()
                .find(|(k, _)| norm(k) == norm(w))
                .ok_or_else(|| ctx.missing(what, w, &have, hint))?;
            start.extend(list);
        }
        Ok(())
    }
    add_lists(
        &mut start,
        ctx,
        &r.optional_dependencies,
        &lock.extras,
        "extra",
        "name one of the project's [project.optional-dependencies], and re-lock if you just added it",
    )?;
    add_lists(
        &mut start,
        ctx,
        &r.dev_dependencies,
        &lock.groups,
        "dependency group",
        "name one of the project's [dependency-groups], and re-lock if you just added it",
    )?;

    // (package, extra) pairs reached; None = the package itself.
    let mut seen: BTreeSet<(usize, Option<String>)> = BTreeSet::new();
    let mut queue: Vec<(usize, Option<String>)> = Vec::new();
    let follow = |deps: &[&UvDep], queue: &mut Vec<(usize, Option<String>)>| {
        for d in deps {
            if !ctx.holds(d.marker.as_deref(), &d.name, &[])? {
                continue;
            }
            let i = find(d)?;
            queue.push((i, None));
            for e in &d.extra {
                queue.push((i, Some(norm(e))));
            }
        }
        Ok::<(), DepsError>(())
    };
    follow(&start, &mut queue)?;
    while let Some(item) = queue.pop() {
        if !seen.insert(item.clone()) {
            continue;
        }
        let p = &packages[item.0];
        let deps: Vec<&UvDep> = match &item.1 {
            None => p.dependencies.iter().collect(),
            Some(e) => p
                .optional_dependencies
                .iter()
                .filter(|(k, _)| norm(k) == *e)
                .flat_map(|(_, v)| v)
                .collect(),
        };
        follow(&deps, &mut queue)?;
    }
    let chosen: BTreeSet<usize> = seen.into_iter().map(|(i, _)| i).collect();
    let mut out = Vec::new();
    for i in chosen {
        let p = &packages[i];
        if i == root {
            continue; // the project's code comes through [sources]
        }
        if let Some(rel) = p.local_source() {
            match ctx.local(rel) {
                Some(path) => out.push(Pinned {
                    name: p.name.clone(),
                    version: p.version.clone().unwrap_or_default(),
                    hashes: Vec::new(),
                    local: Some(path),
                }),
                None => continue, // the project root, under another name
            }
            continue;
        }
        if !p.is_indexed() {
            let source = toml::to_string(&p.source).unwrap_or_default();
            return Err(ctx.refused(
                format!(
                    "{}: {} comes from {} , not from a package index: lbuild installs only indexed wheels from a lock for now",
                    ctx.path.display(),
                    p.name,
                    source.trim().replace('\n', ", ")
                ),
                "publish it to an index (or a find_links directory as a wheel) and re-lock, or list its wheel in a requirements file",
            ));
        }
        let version = p.version.clone().ok_or_else(|| {
            ctx.refused(
                format!("{}: {} has no version", ctx.path.display(), p.name),
                "re-lock with `uv lock`",
            )
        })?;
        out.push(Pinned {
            name: p.name.clone(),
            version,
            hashes: p.wheels.iter().filter_map(|w| w.hash.clone()).collect(),
            local: None,
        });
    }
    Ok(out)
}
