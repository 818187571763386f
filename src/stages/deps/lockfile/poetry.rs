//! poetry.lock (lock-version 2.1): the packages whose groups are wanted and
//! whose markers hold for the target.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use super::{Ctx, Pinned, extra_names, norm};
use crate::manifest::LockPlan;
use crate::stages::deps::DepsError;

#[derive(Deserialize)]
pub(super) struct PoetryLock {
    #[serde(default)]
    pub(super) package: Vec<PoetryPackage>,
    #[serde(default)]
    pub(super) metadata: PoetryMetadata,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub(super) struct PoetryMetadata {
    pub(super) lock_version: Option<String>,
    /// Lock-version 1.x kept the files here, by package name.
    #[serde(default)]
    pub(super) files: BTreeMap<String, Vec<PoetryFile>>,
}

#[derive(Deserialize)]
pub(super) struct PoetryPackage {
    pub(super) name: String,
    pub(super) version: String,
    #[serde(default)]
    pub(super) optional: bool,
    pub(super) groups: Option<Vec<String>>,
    pub(super) markers: Option<PoetryMarkers>,
    #[serde(default)]
    pub(super) files: Vec<PoetryFile>,
    pub(super) source: Option<PoetrySource>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum PoetryMarkers {
    All(String),
    PerGroup(BTreeMap<String, String>),
}

#[derive(Deserialize)]
pub(super) struct PoetryFile {
    pub(super) hash: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) struct PoetrySource {
    #[serde(rename = "type")]
    pub(super) kind: String,
    pub(super) url: Option<String>,
}

pub(super) fn poetry(ctx: &Ctx, lock: &LockPlan) -> Result<Vec<Pinned>, DepsError> {
    let parsed: PoetryLock = ctx.parse()?;
    let mut wanted: BTreeSet<String> = BTreeSet::from(["main".to_string()]);
    let all_groups: BTreeSet<String> = parsed
        .package
        .iter()
        .flat_map(|p| p.groups.iter().flatten().map(|g| norm(g)))
        .collect();
    for g in &lock.groups {
        if !all_groups.contains(&norm(g)) {
            return Err(ctx.missing(
                "group",
                g,
                &all_groups,
                "name a group of [tool.poetry.group.NAME.dependencies] that has packages, and re-lock if you just added it",
            ));
        }
        wanted.insert(norm(g));
    }
    let extras: BTreeSet<String> = lock.extras.iter().map(|e| norm(e)).collect();
    let extra_names = extra_names(&extras);
    let mut out = Vec::new();
    for p in &parsed.package {
        let Some(groups) = &p.groups else {
            return Err(ctx.refused(
                format!(
                    "{} (lock-version {}) does not record which groups need each package",
                    ctx.path.display(),
                    parsed.metadata.lock_version.as_deref().unwrap_or("unknown")
                ),
                "re-lock with Poetry 2 (`poetry lock`), which writes lock-version 2.1",
            ));
        };
        let mut needed = false;
        for g in groups.iter().filter(|g| wanted.contains(&norm(g))) {
            let marker = match &p.markers {
                None => None,
                Some(PoetryMarkers::All(m)) => Some(m.as_str()),
                Some(PoetryMarkers::PerGroup(m)) => m.get(g).map(String::as_str),
            };
            if ctx.holds(marker, &p.name, &extra_names)? {
                needed = true;
                break;
            }
        }
        // An optional package comes only with an extra that names it.
        if !needed || (p.optional && extras.is_empty()) {
            continue;
        }
        if let Some(s) = &p.source
            && matches!(s.kind.as_str(), "directory" | "file")
        {
            if let Some(path) = s.url.as_deref().and_then(|u| ctx.local(u)) {
                out.push(Pinned {
                    name: p.name.clone(),
                    version: p.version.clone(),
                    hashes: Vec::new(),
                    local: Some(path),
                });
            }
            continue;
        }
        if let Some(s) = &p.source
            && !matches!(s.kind.as_str(), "legacy" | "pypi")
        {
            return Err(ctx.refused(
                format!(
                    "{}: {} comes from a {} source{}, not from a package index: lbuild installs only indexed wheels from a lock for now",
                    ctx.path.display(),
                    p.name,
                    s.kind,
                    s.url.as_deref().map(|u| format!(" ({u})")).unwrap_or_default()
                ),
                "publish it to an index (or a find_links directory as a wheel) and re-lock",
            ));
        }
        let files = if p.files.is_empty() {
            parsed
                .metadata
                .files
                .iter()
                .find(|(k, _)| norm(k) == norm(&p.name))
                .map(|(_, v)| v.as_slice())
                .unwrap_or(&[])
        } else {
            &p.files
        };
        out.push(Pinned {
            name: p.name.clone(),
            version: p.version.clone(),
            hashes: files.iter().map(|f| f.hash.clone()).collect(),
            local: None,
        });
    }
    Ok(out)
}
