//! pylock.toml (PEP 751, lock-version 1.x): the packages whose marker holds.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{Ctx, Pinned};
use crate::stages::deps::DepsError;

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) struct Pylock {
    pub(super) lock_version: Option<String>,
    #[serde(default)]
    pub(super) packages: Vec<PylockPackage>,
}

#[derive(Deserialize)]
pub(super) struct PylockPackage {
    pub(super) name: String,
    pub(super) version: Option<String>,
    pub(super) marker: Option<String>,
    #[serde(default)]
    pub(super) wheels: Vec<PylockFile>,
    pub(super) directory: Option<toml::Value>,
    pub(super) vcs: Option<toml::Value>,
    pub(super) archive: Option<toml::Value>,
}

impl PylockPackage {
    /// `directory = { path = ... }` or a local `archive = { path = ... }`.
    pub(super) fn local_path(&self) -> Option<&str> {
        [&self.directory, &self.archive]
            .into_iter()
            .flatten()
            .find_map(|v| v.get("path").and_then(|p| p.as_str()))
    }
}

#[derive(Deserialize)]
pub(super) struct PylockFile {
    #[serde(default)]
    pub(super) hashes: BTreeMap<String, String>,
}

pub(super) fn pylock(ctx: &Ctx) -> Result<Vec<Pinned>, DepsError> {
    let parsed: Pylock = ctx.parse()?;
    if parsed
        .lock_version
        .as_deref()
        .is_some_and(|v| !v.starts_with("1."))
    {
        return Err(ctx.refused(
            format!(
                "{}: lock-version {} is not one lbuild reads (1.x)",
                ctx.path.display(),
                parsed.lock_version.as_deref().unwrap_or_default()
            ),
            "export it again with a tool that writes PEP 751 lock-version 1.0",
        ));
    }
    let mut out = Vec::new();
    for p in &parsed.packages {
        if !ctx.holds(p.marker.as_deref(), &p.name, &[])? {
            continue;
        }
        if let Some(written) = p.local_path() {
            if let Some(path) = ctx.local(written) {
                out.push(Pinned {
                    name: p.name.clone(),
                    version: p.version.clone().unwrap_or_default(),
                    hashes: Vec::new(),
                    local: Some(path),
                });
            }
            continue;
        }
        if p.directory.is_some() || p.vcs.is_some() || p.archive.is_some() {
            return Err(ctx.refused(
                format!(
                    "{}: {} comes from a directory, VCS or archive, not from a package index: lbuild installs only indexed wheels from a lock for now",
                    ctx.path.display(),
                    p.name
                ),
                "publish it to an index (or a find_links directory as a wheel) and export again",
            ));
        }
        let Some(version) = &p.version else {
            return Err(ctx.refused(
                format!("{}: {} has no version", ctx.path.display(), p.name),
                "export the lock again",
            ));
        };
        let mut hashes = Vec::new();
        for w in &p.wheels {
            for (alg, hex) in &w.hashes {
                hashes.push(format!("{alg}:{hex}"));
            }
        }
        out.push(Pinned {
            name: p.name.clone(),
            version: version.clone(),
            hashes,
            local: None,
        });
    }
    Ok(out)
}
