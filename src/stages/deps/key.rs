//! The deps key: everything that can change the installed tree. It covers
//! the requirements files (and what they include with `-r`/`-c`) or the
//! lockfile, the target (runtime, architecture, glibc), the installer and
//! its version, the index options (manifest, requirements files, the
//! installer's environment variables, and the distributions in local
//! `find_links` directories by content, [`super::find_links`]), the local
//! wheels the requirements name and a lock's path dependencies (by
//! content), the `exclude` list, and lbuild's normalisation version. URL
//! credentials are hashed, never shown by `-v`. Does not read the
//! requirements files ([`super::requirements`]) nor parse locks
//! ([`super::lockfile`]).

use std::path::{Path, PathBuf};

use super::find_links::add_listing;
use super::installer::{Installer, Target};
use super::{DepsError, NAME, NORMALIZE_VERSION, lockfile, normalize, relative, requirements};
use crate::cache::Cache;
use crate::manifest::{DepsPlan, FindLinks, Plan, relative_path};
use crate::stages::{KeyBuilder, hash_entries};

/// The deps key: everything that can change the installed tree (see the
/// module docs), each input also listed for `lbuild -v`.
pub(super) fn stage_key(
    plan: &Plan,
    deps: &DepsPlan,
    reqs: &requirements::Requirements,
    installer: &Installer,
    target: Target,
    cache: &mut Cache,
    explain: bool,
) -> crate::Result<KeyBuilder> {
    let mut key = KeyBuilder::new(NAME, explain);
    key.add("normalize", NORMALIZE_VERSION)
        .add("target", target.describe())
        .add("installer", &installer.version);
    for f in &reqs.files {
        let name = relative(&plan.project_dir, &f.path);
        key.add(&format!("requirements {name}"), f.hash.to_hex());
        // Recorded, not hashed: for "requirements.txt changed (x 1 → 2)".
        key.note(&format!("pins {name}"), || {
            crate::explain::pinned_lines(&fs_err::read_to_string(&f.path).unwrap_or_default())
        });
    }
    for o in &reqs.index_options {
        key.add("requirements option", keyed_secret(o));
    }
    if let Some(l) = &deps.lock {
        let mut groups: Vec<String> = l
            .groups
            .iter()
            .map(|g| normalize::canonical_name(g))
            .collect();
        groups.sort();
        groups.dedup();
        let mut extras: Vec<String> = l
            .extras
            .iter()
            .map(|g| normalize::canonical_name(g))
            .collect();
        extras.sort();
        extras.dedup();
        key.add("lock groups", groups.join(","))
            .add("lock extras", extras.join(","))
            .add("lock install", LOCK_INSTALL_VERSION);
        let lock_hash = reqs.files.first().map(|f| f.hash);
        add_local_packages(&mut key, cache, plan, l, lock_hash)?;
    }
    // As written (relative find_links stay relative: the key does not
    // change when the project moves); local directories' listings follow.
    let raw = deps;
    if let Some(url) = &raw.index_url {
        key.add("index_url", keyed_secret(url));
    }
    for url in &raw.extra_index_urls {
        key.add("extra_index_url", keyed_secret(url));
    }
    for link in &raw.find_links {
        let written = match link {
            FindLinks::Url(u) => u.clone(),
            FindLinks::Dir(d) => relative_path(&plan.project_dir, d)
                .to_string_lossy()
                .into_owned(),
        };
        key.add("find_links", keyed_secret(&written));
    }
    key.add("no_index", raw.no_index);
    for var in installer.index_env_vars() {
        if let Some(v) = std::env::var_os(var) {
            key.add(var, keyed_secret(&v.to_string_lossy()));
        }
    }
    // Local find-links (paths and `file:` URLs), manifest first.
    let local_links = raw
        .find_links
        .iter()
        .filter_map(|l| match l {
            FindLinks::Dir(d) => Some(d.clone()),
            // A `file:` URL is a local directory too.
            FindLinks::Url(u) => requirements::local_link(u, &plan.project_dir),
        })
        .chain(reqs.local_find_links.iter().cloned());
    for dir in local_links {
        add_listing(&mut key, cache, &plan.project_dir, &dir)?;
    }
    add_local_artifacts(&mut key, cache, &plan.project_dir, &reqs.local_artifacts)?;
    let mut exclude: Vec<String> = deps
        .exclude
        .iter()
        .map(|n| normalize::canonical_name(n))
        .collect();
    exclude.sort();
    exclude.dedup();
    key.add("exclude", exclude.join(","));
    Ok(key)
}

/// Bump when what a lock turns into (the pinned file, the installer's
/// flags) changes.
pub(super) const LOCK_INSTALL_VERSION: u32 = 1;

/// What the key and the pinning warning need from a lockfile: the file by
/// its bytes (groups, extras and target join the key beside it); from a
/// pyproject.toml, only the dependency lists it reads.
pub(super) fn lock_requirements(
    lock: &crate::manifest::LockPlan,
) -> Result<requirements::Requirements, DepsError> {
    let hash = if lock.kind == crate::manifest::LockKind::Pyproject {
        blake3::hash(lockfile::pyproject_key(lock)?.as_bytes())
    } else {
        blake3::hash(&requirements::read_regular_file(&lock.path, None)?)
    };
    Ok(requirements::Requirements {
        files: vec![requirements::RequirementsFile {
            path: lock.path.clone(),
            hash,
        }],
        ..Default::default()
    })
}

/// The cache "stage" under which a lock's path dependencies are
/// remembered by the lock's content (parsing a large uv.lock would cost a
/// no-op more than the rest of it).
const LOCAL_PATHS_MEMO: &str = "lock-local-paths";

/// The lock's path dependencies join the key by content (every file, as
/// the build copies them, through the fingerprint cache), so an edit in
/// one builds and installs it again. The project root never does.
/// `lock_hash` is the hash of the lock's bytes, under which the list of
/// paths is remembered.
pub(super) fn add_local_packages(
    key: &mut KeyBuilder,
    cache: &mut Cache,
    plan: &Plan,
    lock: &crate::manifest::LockPlan,
    lock_hash: Option<crate::cache::Hash>,
) -> crate::Result<()> {
    let memo = lock_hash.map(|h| {
        blake3::hash(
            format!(
                "{}\0{}\0{}",
                lock.kind.name(),
                lock.path.display(),
                h.to_hex()
            )
            .as_bytes(),
        )
    });
    let remembered = memo
        .as_ref()
        .and_then(|m| cache.stage_output(LOCAL_PATHS_MEMO, m).ok().flatten())
        .and_then(|s| serde_json::from_str::<Vec<PathBuf>>(&s).ok());
    let paths = match remembered {
        Some(paths) => paths,
        None => {
            let paths = lockfile::local_paths(lock)?;
            if let Some(m) = &memo {
                cache.record_stage(
                    LOCAL_PATHS_MEMO,
                    m,
                    &serde_json::to_string(&paths).unwrap_or_default(),
                );
            }
            paths
        }
    };
    for path in paths {
        if path == plan.project_dir {
            continue;
        }
        let label = format!(
            "local package {}",
            relative_path(&plan.project_dir, &path).display()
        );
        match fs_err::metadata(&path) {
            Ok(m) if m.is_dir() => {
                let files = lockfile::local_package_files(&path)?;
                let (entries, _) = hash_entries(cache, files)?;
                key.add(&label, entries.len());
                for e in &entries {
                    key.add(
                        &format!("  {}", e.name),
                        format!("{} {}", e.hash.to_hex(), e.executable),
                    );
                }
            }
            Ok(m) if m.is_file() => {
                let (entries, _) = hash_entries(cache, vec![(label.clone(), path.clone())])?;
                key.add(&label, entries[0].hash.to_hex());
            }
            _ => {
                key.add(&label, "missing");
            }
        }
    }
    Ok(())
}

/// Local files named as requirements join the key by content (through
/// the fingerprint cache, so a no-op only stats them); a directory or a
/// missing path by what it is (the installer reports a missing one).
pub(super) fn add_local_artifacts(
    key: &mut KeyBuilder,
    cache: &mut Cache,
    project_dir: &Path,
    artifacts: &[PathBuf],
) -> crate::Result<()> {
    let mut files = Vec::new();
    for path in artifacts {
        let name = relative(project_dir, path);
        match fs_err::metadata(path) {
            Ok(m) if m.is_file() => files.push((name, path.clone())),
            Ok(m) => {
                key.add(
                    &format!("local requirement {name}"),
                    requirements::file_kind(&m.file_type()),
                );
            }
            Err(_) => {
                key.add(&format!("local requirement {name}"), "missing");
            }
        }
    }
    let (files, _) = hash_entries(cache, files)?;
    for f in &files {
        key.add(&format!("local requirement {}", f.name), f.hash.to_hex());
    }
    Ok(())
}

/// A value for the key whose readable form (`lbuild -v`) hides URL
/// credentials; the hash still covers the whole value.
pub(super) fn keyed_secret(value: &str) -> String {
    let redacted = redact_url_credentials(value);
    if redacted == value {
        value.to_string()
    } else {
        let h = blake3::hash(value.as_bytes());
        format!("{redacted} #{}", &h.to_hex()[..16])
    }
}

/// `https://user:token@host/x` -> `https://***@host/x` (each URL in `s`).
pub(super) fn redact_url_credentials(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c == '/' || c.is_whitespace())
            .unwrap_or(tail.len());
        match tail[..end].rfind('@') {
            Some(at) => {
                out.push_str("***");
                out.push_str(&tail[at..end]);
            }
            None => out.push_str(&tail[..end]),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_reach_the_readable_key() {
        assert_eq!(
            redact_url_credentials("--index-url https://me:s3cret@pypi.example.com/simple"),
            "--index-url https://***@pypi.example.com/simple"
        );
        assert_eq!(
            redact_url_credentials("https://pypi.org/simple"),
            "https://pypi.org/simple"
        );
        let k = keyed_secret("https://me:s3cret@host/simple");
        assert!(!k.contains("s3cret") && k.starts_with("https://***@host/simple #"));
        assert_ne!(k, keyed_secret("https://me:other@host/simple"));
    }
}
