//! What a local `find_links` path offers, for the deps key: a directory's
//! distributions (top level only, as installers read it: names and content
//! hashes) or a page of links by content. What keying may cost is bounded:
//! up to 10,000 entries and 4 GiB of distributions per directory.

use std::path::Path;

use super::{DepsError, relative, requirements};
use crate::cache::Cache;
use crate::stages::{KeyBuilder, hash_entries};

/// The most entries a local find-links directory may hold: its listing is
/// read on every build (`--find-links /proc` or `/` must fail fast).
const FIND_LINKS_MAX_ENTRIES: usize = 10_000;

/// The most bytes of distributions in one find-links directory that are
/// hashed for the key (each hash is remembered, but the first build reads
/// them all).
const FIND_LINKS_MAX_BYTES: u64 = 4 << 30;

/// What installers take from a find-links directory.
fn is_distribution(name: &str) -> bool {
    [".whl", ".tar.gz", ".zip"]
        .iter()
        .any(|s| name.ends_with(s))
}

/// Adds what a local find-links path offers: for a directory, its
/// distributions (top level only, as installers read it: names and
/// content hashes); for a file (an HTML page of links), its content.
pub(super) fn add_listing(
    key: &mut KeyBuilder,
    cache: &mut Cache,
    project_dir: &Path,
    path: &Path,
) -> crate::Result<()> {
    let shown = relative(project_dir, path);
    let label = format!("find-links {shown}");
    let refuse = |problem: String, hint: &str| DepsError::Refused {
        message: format!("find-links {}: {problem}", path.display()),
        hint: hint.to_string(),
    };
    let Ok(meta) = fs_err::metadata(path) else {
        key.add(&label, "missing");
        return Ok(());
    };
    if meta.is_file() {
        if meta.len() > requirements::MAX_FILE_BYTES {
            return Err(refuse(
                format!(
                    "a page of links larger than {} MiB",
                    requirements::MAX_FILE_BYTES >> 20
                ),
                "point find_links at a directory of wheels or a small HTML page of links",
            )
            .into());
        }
        let (page, _) = hash_entries(cache, vec![(shown, path.to_path_buf())])?;
        key.add(&label, page[0].hash.to_hex());
        return Ok(());
    }
    if !meta.is_dir() {
        return Err(refuse(
            format!("it is {}", requirements::file_kind(&meta.file_type())),
            "find_links takes a directory of wheels, a page of links, or a URL",
        )
        .into());
    }
    let too_big =
        "point find_links at a directory that holds only the wheels this function installs";
    let rd = fs_err::read_dir(path).map_err(DepsError::io("cannot list a find-links directory"))?;
    let mut files = Vec::new();
    let mut bytes = 0u64;
    for (i, item) in rd.enumerate() {
        if i == FIND_LINKS_MAX_ENTRIES {
            return Err(refuse(
                format!(
                    "more than {FIND_LINKS_MAX_ENTRIES} entries, more than lbuild lists on every build"
                ),
                too_big,
            )
            .into());
        }
        let item = item.map_err(DepsError::io("cannot list a find-links directory"))?;
        let name = item.file_name();
        let Some(name) = name.to_str().filter(|n| is_distribution(n)) else {
            continue;
        };
        let file = item.path();
        // Followed, as installers follow it; a fifo or device is skipped.
        match fs_err::metadata(&file) {
            Ok(m) if m.is_file() => bytes += m.len(),
            _ => continue,
        }
        if bytes > FIND_LINKS_MAX_BYTES {
            return Err(refuse(
                format!(
                    "its distributions exceed {} GiB, more than lbuild hashes for the deps key",
                    FIND_LINKS_MAX_BYTES >> 30
                ),
                too_big,
            )
            .into());
        }
        files.push((name.to_string(), file));
    }
    files.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let (entries, _) = hash_entries(cache, files)?;
    key.add(&label, entries.len());
    for e in &entries {
        key.add(&format!("  {}", e.name), e.hash.to_hex());
    }
    Ok(())
}
