//! Where the bytes of a built zip go: the
//! breakdown `lbuild size` prints: bytes per distribution (found through
//! each `*.dist-info/RECORD` in the zip) and per top-level directory. It
//! reads finished zips only; it does not decide what goes into them.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub(crate) use crate::limits::{DIRECT_UPLOAD_LIMIT, UNZIPPED_LIMIT};
use crate::units::{headroom, human_size, limit};

/// Bytes of one group of entries (a distribution or a directory).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct Group {
    pub name: String,
    pub files: usize,
    /// Compressed bytes (entry data only, without headers).
    pub zipped: u64,
    pub unzipped: u64,
}

/// Where the bytes of one zip go, largest first.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Breakdown {
    pub zip: PathBuf,
    /// The zip file's size on disk.
    pub zipped: u64,
    /// Sum of the entries' uncompressed sizes (what Lambda counts).
    pub unzipped: u64,
    pub entries: usize,
    pub distributions: Vec<Group>,
    pub directories: Vec<Group>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum SizeError {
    #[error("cannot read the zip {path}: {message}")]
    Read { path: PathBuf, message: String },
}

struct EntryFacts {
    name: String,
    zipped: u64,
    unzipped: u64,
}

/// Reads `zip` and groups its entries. `prefix` is the archive directory
/// the code lives under (`python/` for a layer, empty for a function):
/// directories are counted below it.
pub(crate) fn breakdown(zip: &Path, prefix: &str) -> Result<Breakdown, SizeError> {
    let err = |message: String| SizeError::Read {
        path: zip.to_path_buf(),
        message,
    };
    let file = fs_err::File::open(zip).map_err(|e| err(e.to_string()))?;
    let zipped = file.metadata().map_err(|e| err(e.to_string()))?.len();
    let mut archive = zip::ZipArchive::new(file).map_err(|e| err(e.to_string()))?;
    let mut facts = Vec::with_capacity(archive.len());
    // Archive path -> distribution, from every RECORD in the zip.
    let mut owner: BTreeMap<String, String> = BTreeMap::new();
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(|e| err(e.to_string()))?;
        let name = entry.name().map_err(|e| err(e.to_string()))?.to_string();
        facts.push(EntryFacts {
            name: name.clone(),
            zipped: entry.compressed_size(),
            unzipped: entry.size(),
        });
        let Some((dist_dir, dist)) = record_of(&name) else {
            continue;
        };
        let mut text = String::new();
        if entry.size() > 64 << 20 || entry.read_to_string(&mut text).is_err() {
            continue;
        }
        // RECORD paths are relative to the directory holding *.dist-info.
        let base = dist_dir
            .rsplit_once('/')
            .map(|(b, _)| format!("{b}/"))
            .unwrap_or_default();
        for line in text.lines() {
            let path = line.split(',').next().unwrap_or("").trim();
            if path.is_empty() || path.starts_with("..") || path.starts_with('/') {
                continue;
            }
            owner.insert(format!("{base}{path}"), dist.clone());
        }
        // The dist-info directory belongs to its distribution even where
        // RECORD does not list a file.
        owner.insert(format!("{dist_dir}/"), dist);
    }

    let mut dists: BTreeMap<String, Group> = BTreeMap::new();
    let mut dirs: BTreeMap<String, Group> = BTreeMap::new();
    let mut unzipped = 0;
    for f in &facts {
        unzipped += f.unzipped;
        let dist = owner.get(&f.name).cloned().or_else(|| {
            let dir = f.name.rsplit_once('/').map(|(d, _)| d)?;
            let dist_dir = dir.rsplit('/').next()?;
            dist_dir
                .ends_with(".dist-info")
                .then(|| owner.get(&format!("{dir}/")).cloned())
                .flatten()
        });
        let dist = dist.unwrap_or_else(|| "(not from a distribution)".to_string());
        add(&mut dists, dist, f);
        let below = f.name.strip_prefix(prefix).unwrap_or(&f.name);
        let dir = match below.split_once('/') {
            Some((top, _)) => format!("{prefix}{top}/"),
            None => format!("{prefix}(files at the top)"),
        };
        add(&mut dirs, dir, f);
    }
    Ok(Breakdown {
        zip: zip.to_path_buf(),
        zipped,
        unzipped,
        entries: facts.len(),
        distributions: largest_first(dists),
        directories: largest_first(dirs),
    })
}

/// `pkg-1.0.dist-info/RECORD` -> (`pkg-1.0.dist-info`, `pkg`).
fn record_of(name: &str) -> Option<(String, String)> {
    let dir = name.strip_suffix("/RECORD")?;
    let leaf = dir.rsplit('/').next()?;
    let stem = leaf.strip_suffix(".dist-info")?;
    let dist = stem.split_once('-').map_or(stem, |(n, _)| n);
    Some((dir.to_string(), dist.to_string()))
}

fn add(groups: &mut BTreeMap<String, Group>, name: String, f: &EntryFacts) {
    let g = groups.entry(name.clone()).or_insert(Group {
        name,
        files: 0,
        zipped: 0,
        unzipped: 0,
    });
    g.files += 1;
    g.zipped += f.zipped;
    g.unzipped += f.unzipped;
}

fn largest_first(groups: BTreeMap<String, Group>) -> Vec<Group> {
    let mut v: Vec<Group> = groups.into_values().collect();
    // Ties by name, so the listing is the same on every run.
    v.sort_by(|a, b| b.unzipped.cmp(&a.unzipped).then(a.name.cmp(&b.name)));
    v
}

/// The human listing of `lbuild size` for one artifact.
pub(crate) fn render(b: &Breakdown, unzipped_with_layers: u64, top: usize) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{}: {} zipped, {} unzipped, {} entries\n",
        b.zip.display(),
        human_size(b.zipped),
        human_size(b.unzipped),
        b.entries
    ));
    for (title, groups) in [
        ("distributions", &b.distributions),
        ("directories", &b.directories),
    ] {
        out.push_str(&format!(
            "  {title:<28} {:>10} {:>10} {:>7}\n",
            "unzipped", "zipped", "files"
        ));
        for g in groups.iter().take(top) {
            out.push_str(&format!(
                "    {:<26} {:>10} {:>10} {:>7}\n",
                g.name,
                human_size(g.unzipped),
                human_size(g.zipped),
                g.files
            ));
        }
        if groups.len() > top {
            out.push_str(&format!("    … {} more\n", groups.len() - top));
        }
    }
    out.push_str(&format!(
        "  headroom: {} the direct-upload limit of {} (zipped), {} the unzipped limit of {} (with layers)\n",
        headroom(DIRECT_UPLOAD_LIMIT, b.zipped),
        limit(DIRECT_UPLOAD_LIMIT),
        headroom(UNZIPPED_LIMIT, unzipped_with_layers),
        limit(UNZIPPED_LIMIT),
    ));
    out
}

/// `lbuild size`: the breakdown of every artifact built (human listing or
/// one JSON object), with each function's headroom counting its layers.
pub(crate) fn report(
    ws: &crate::manifest::Workspace,
    outcome: &crate::outcome::WorkspaceOutcome,
    names: &[String],
    top: usize,
    reporter: &crate::report::Reporter,
) -> crate::Result<()> {
    use crate::outcome::ArtifactResult;
    let mut docs = Vec::new();
    let mut text = String::new();
    for a in &outcome.artifacts {
        let b = match a {
            ArtifactResult::Built(b) => b,
            ArtifactResult::Failed { error, .. } => {
                return Err(crate::Error::Input {
                    message: error.to_string(),
                    hint: error.hint().unwrap_or_default(),
                });
            }
        };
        // `--function NAME` lists the functions asked for, not their layers.
        if !names.is_empty() && (b.kind != "function" || !names.contains(&b.name)) {
            continue;
        }
        let plan = ws
            .artifacts
            .iter()
            .find(|p| p.name == b.name && p.kind.label() == b.kind)
            .expect("built from the workspace");
        let prefix = match plan.archive_prefix() {
            "" => String::new(),
            p => format!("{p}/"),
        };
        let breakdown = breakdown(&b.zip, &prefix).map_err(|e| crate::Error::Input {
            message: e.to_string(),
            hint: "build again (`lbuild`), then retry".into(),
        })?;
        let layers: u64 = ws
            .layers_of(plan)
            .iter()
            .filter_map(|l| outcome.built(&l.name, "layer"))
            .map(|l| l.unzipped_size)
            .sum();
        let headroom = UNZIPPED_LIMIT.saturating_sub(breakdown.unzipped + layers);
        text.push_str(&format!("{} {}\n", b.kind, b.name));
        text.push_str(&render(&breakdown, breakdown.unzipped + layers, top));
        let mut doc = serde_json::to_value(&breakdown).unwrap_or_default();
        if let Some(obj) = doc.as_object_mut() {
            obj.insert("name".into(), b.name.clone().into());
            obj.insert("kind".into(), b.kind.into());
            obj.insert("layers_unzipped".into(), layers.into());
            obj.insert("headroom_unzipped".into(), headroom.into());
            obj.insert(
                "headroom_direct_upload".into(),
                (DIRECT_UPLOAD_LIMIT as i64 - breakdown.zipped as i64).into(),
            );
        }
        docs.push(doc);
    }
    match reporter.mode {
        crate::report::Mode::Json => reporter.json(&serde_json::json!({ "artifacts": docs })),
        crate::report::Mode::Quiet => {}
        crate::report::Mode::Human => reporter.result(text.trim_end_matches('\n')),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn zip_of(files: &[(&str, &[u8])]) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        let mut w = zip::ZipWriter::new(f.reopen().unwrap());
        for (name, data) in files {
            w.start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap();
        f
    }

    #[test]
    fn distributions_are_found_through_record_and_sorted_largest_first() {
        let big = vec![b'x'; 5000];
        let z = zip_of(&[
            ("app.py", b"print(1)\n"),
            ("numpy/core.so", &big),
            ("numpy-2.3.4.dist-info/METADATA", b"Name: numpy\n"),
            (
                "numpy-2.3.4.dist-info/RECORD",
                b"numpy/core.so,sha256=x,5000\nnumpy-2.3.4.dist-info/RECORD,,\n",
            ),
            ("six.py", b"# six\n"),
            ("six-1.16.0.dist-info/RECORD", b"six.py,,\n"),
        ]);
        let b = breakdown(z.path(), "").unwrap();
        assert_eq!(b.entries, 6);
        assert_eq!(b.distributions[0].name, "numpy");
        assert_eq!(b.distributions[0].files, 3);
        let names: Vec<&str> = b.distributions.iter().map(|g| g.name.as_str()).collect();
        assert!(names.contains(&"six"), "{names:?}");
        assert!(names.contains(&"(not from a distribution)"), "{names:?}");
        assert_eq!(b.directories[0].name, "numpy/");
    }

    #[test]
    fn layer_records_are_relative_to_the_prefix() {
        let z = zip_of(&[
            ("python/pkg/__init__.py", b"x = 1\ny = 2\nz = 3\nw = 4\n"),
            ("python/pkg-1.0.dist-info/RECORD", b"pkg/__init__.py,,\n"),
        ]);
        let b = breakdown(z.path(), "python/").unwrap();
        assert_eq!(b.distributions.len(), 1, "{:?}", b.distributions);
        assert_eq!(b.distributions[0].name, "pkg");
        assert_eq!(b.directories[0].name, "python/pkg/");
    }
}
