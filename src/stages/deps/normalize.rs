//! Normalising an installed tree, so that pip and uv, on any machine and
//! any path, leave the same files with the same bytes for the same wheels.
//!
//! Removed: the excluded distributions (by their RECORD), `bin/` (console
//! scripts whose shebang holds the host interpreter's absolute path),
//! byte-code, uv's `.lock`, and per distribution the installer's own
//! records: `INSTALLER`, `REQUESTED`, `direct_url.json` (absolute `file://`
//! URLs) and `uv_cache.json` (a timestamp). Every `*.dist-info/RECORD` is
//! then rewritten from what remains: one row per file still in the tree,
//! hashed again (sha256, as the wheel spec says), sorted by path. See
//! docs/design.md, "Dependencies: what stays in the tree and why it is
//! stable".

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use base64::Engine;
use sha2::{Digest, Sha256};

use super::DepsError;

/// Per-distribution files written by installers, never by wheels' authors
/// in a way that matters at run time.
const INSTALLER_RECORDS: &[&str] = &["INSTALLER", "REQUESTED", "direct_url.json", "uv_cache.json"];

/// Top-level paths installers leave that do not come from wheels.
const TOP_LEVEL_LEFTOVERS: &[&str] = &["bin", ".lock"];

/// What normalising did.
#[derive(Debug, Default, Clone)]
pub(crate) struct Normalized {
    /// `name==version` of each distribution left in the tree, sorted.
    pub distributions: Vec<String>,
    /// `name==version` of each distribution removed by `exclude`.
    pub excluded: Vec<String>,
    /// Names in `exclude` that matched no installed distribution.
    pub unmatched_excludes: Vec<String>,
    /// Files removed (excluded distributions and installer leftovers).
    pub removed_files: usize,
}

/// PEP 503: lower case, runs of `-`, `_`, `.` become one `-`.
pub(crate) fn canonical_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut sep = false;
    for c in name.trim().chars() {
        if matches!(c, '-' | '_' | '.') {
            sep = true;
            continue;
        }
        if sep && !out.is_empty() {
            out.push('-');
        }
        sep = false;
        out.extend(c.to_lowercase());
    }
    out
}

struct Dist {
    dir: String,
    name: String,
    version: String,
}

/// An I/O error while normalising (from `fs_err`: it names its path).
fn io_err(source: std::io::Error) -> DepsError {
    DepsError::Io {
        context: "cannot normalise the installed dependencies",
        source,
    }
}

/// Normalises `tree` in place (see the module docs).
pub(crate) fn normalize(tree: &Path, exclude: &[String]) -> Result<Normalized, DepsError> {
    let mut report = Normalized::default();
    let dists = distributions(tree)?;

    // 1. Excluded distributions, with every file their RECORD lists.
    let wanted: BTreeSet<String> = exclude.iter().map(|n| canonical_name(n)).collect();
    let mut matched = BTreeSet::new();
    let mut kept = Vec::new();
    for d in dists {
        let canonical = canonical_name(&d.name);
        if wanted.contains(&canonical) {
            matched.insert(canonical);
            let info = tree.join(&d.dir);
            for row in read_record(&info.join("RECORD"))? {
                if let Some(rel) = inside(&row.path) {
                    let p = tree.join(rel);
                    if p.is_file() && !p.starts_with(&info) {
                        fs_err::remove_file(&p).map_err(io_err)?;
                        report.removed_files += 1;
                    }
                }
            }
            report.removed_files += count_files(&info);
            fs_err::remove_dir_all(&info).map_err(io_err)?;
            report.excluded.push(format!("{}=={}", d.name, d.version));
        } else {
            kept.push(d);
        }
    }
    report.unmatched_excludes = wanted.difference(&matched).cloned().collect();

    // 2. Installer leftovers and byte-code.
    for name in TOP_LEVEL_LEFTOVERS {
        let p = tree.join(name);
        match fs_err::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => {
                report.removed_files += count_files(&p);
                fs_err::remove_dir_all(&p).map_err(io_err)?;
            }
            Ok(_) => {
                fs_err::remove_file(&p).map_err(io_err)?;
                report.removed_files += 1;
            }
            Err(_) => {}
        }
    }
    for d in &kept {
        for name in INSTALLER_RECORDS {
            let p = tree.join(&d.dir).join(name);
            if p.is_file() {
                fs_err::remove_file(&p).map_err(io_err)?;
                report.removed_files += 1;
            }
        }
    }
    report.removed_files += remove_matching(tree)?;
    remove_empty_dirs(tree)?;

    // 3. RECORD, rewritten from what is left.
    for d in &kept {
        rewrite_record(tree, &d.dir)?;
        report
            .distributions
            .push(format!("{}=={}", d.name, d.version));
    }
    report.distributions.sort();
    report.excluded.sort();
    Ok(report)
}

/// The `*.dist-info` directories at the top of `tree`, with the name and
/// version their METADATA declares.
fn distributions(tree: &Path) -> Result<Vec<Dist>, DepsError> {
    let mut out = Vec::new();
    let rd = fs_err::read_dir(tree).map_err(io_err)?;
    for item in rd {
        let item = item.map_err(io_err)?;
        let Some(dir) = item.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let Some(stem) = dir.strip_suffix(".dist-info") else {
            continue;
        };
        if !item.path().is_dir() {
            continue;
        }
        let (mut name, mut version) = match stem.rsplit_once('-') {
            Some((n, v)) => (n.to_string(), v.to_string()),
            None => (stem.to_string(), String::new()),
        };
        if let Ok(meta) = fs_err::read_to_string(item.path().join("METADATA")) {
            for line in meta.lines().take_while(|l| !l.is_empty()) {
                if let Some(v) = line.strip_prefix("Name:") {
                    name = v.trim().to_string();
                } else if let Some(v) = line.strip_prefix("Version:") {
                    version = v.trim().to_string();
                }
            }
        }
        out.push(Dist { dir, name, version });
    }
    out.sort_by(|a, b| a.dir.cmp(&b.dir));
    Ok(out)
}

/// One RECORD row: path, hash, size (hash and size may be empty).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    path: String,
    hash: String,
    size: String,
}

fn read_record(path: &Path) -> Result<Vec<Row>, DepsError> {
    let text = match fs_err::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(e)),
    };
    Ok(text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut f = parse_csv_line(l).into_iter();
            Row {
                path: f.next().unwrap_or_default(),
                hash: f.next().unwrap_or_default(),
                size: f.next().unwrap_or_default(),
            }
        })
        .collect())
}

/// A RECORD path as a relative path inside the tree, or None when it is
/// absolute or climbs out (pip writes `../../bin/x` for scripts).
fn inside(path: &str) -> Option<PathBuf> {
    let p = Path::new(path);
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => out.push(s),
            Component::CurDir => {}
            _ => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

/// Rewrites `DIST/RECORD`: rows for files still present, re-hashed, sorted.
fn rewrite_record(tree: &Path, dist_dir: &str) -> Result<(), DepsError> {
    let record = tree.join(dist_dir).join("RECORD");
    let own = format!("{dist_dir}/RECORD");
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    for row in read_record(&record)? {
        let Some(rel) = inside(&row.path) else {
            continue;
        };
        let Some(rel_str) = rel.to_str() else {
            continue;
        };
        let rel_str = rel_str.replace(std::path::MAIN_SEPARATOR, "/");
        if rel_str == own {
            continue;
        }
        let p = tree.join(&rel);
        if !fs_err::symlink_metadata(&p).is_ok_and(|m| m.is_file()) {
            continue;
        }
        let (hash, size) = sha256_record_hash(&p)?;
        rows.insert(
            rel_str.clone(),
            Row {
                path: rel_str,
                hash,
                size: size.to_string(),
            },
        );
    }
    rows.insert(
        own.clone(),
        Row {
            path: own,
            hash: String::new(),
            size: String::new(),
        },
    );
    let mut sorted: Vec<&Row> = rows.values().collect();
    sorted.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    let mut text = String::new();
    for r in sorted {
        text.push_str(&csv_field(&r.path));
        text.push(',');
        text.push_str(&csv_field(&r.hash));
        text.push(',');
        text.push_str(&csv_field(&r.size));
        text.push('\n');
    }
    // Never write through the old file: uv may have hard-linked it from
    // its cache. A new file renamed over it leaves the cache alone.
    let tmp = record.with_file_name(".RECORD.lbuild-tmp");
    fs_err::write(&tmp, text).map_err(io_err)?;
    fs_err::rename(&tmp, &record).map_err(io_err)?;
    Ok(())
}

fn sha256_record_hash(path: &Path) -> Result<(String, u64), DepsError> {
    let mut f = fs_err::File::open(path).map_err(io_err)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(io_err)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        h.update(&buf[..n]);
    }
    let digest = h.finalize();
    Ok((
        format!(
            "sha256={}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
        ),
        size,
    ))
}

/// Python's csv module with the wheel spec's dialect (QUOTE_MINIMAL).
fn parse_csv_line(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    fields.push(cur);
    fields
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Removes byte-code and whatever the archive would leave out anyway
/// (`exclusions::excluded_from_trees`: not the project's `.env*` rule, a
/// wheel's `.env*` files are its data), so the tree is exactly what is
/// packaged and RECORD lists only packaged files.
fn remove_matching(tree: &Path) -> Result<usize, DepsError> {
    let mut removed = 0;
    let mut dirs = Vec::new();
    let mut files = Vec::new();
    for item in walkdir::WalkDir::new(tree).min_depth(1) {
        // walkdir's error names the path.
        let item = item.map_err(|e| io_err(e.into()))?;
        let Ok(rel) = item.path().strip_prefix(tree) else {
            continue;
        };
        let rel = rel
            .to_string_lossy()
            .replace(std::path::MAIN_SEPARATOR, "/");
        if !crate::exclusions::excluded_from_trees(&rel) {
            continue;
        }
        if item.file_type().is_dir() {
            dirs.push(item.path().to_path_buf());
        } else {
            files.push(item.path().to_path_buf());
        }
    }
    for f in files {
        if f.exists() || fs_err::symlink_metadata(&f).is_ok() {
            fs_err::remove_file(&f).map_err(io_err)?;
            removed += 1;
        }
    }
    for d in dirs {
        if d.exists() {
            fs_err::remove_dir_all(&d).map_err(io_err)?;
        }
    }
    Ok(removed)
}

fn count_files(dir: &Path) -> usize {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| !e.file_type().is_dir())
        .count()
}

/// Removes directories left empty (deepest first); the archive has no
/// directory entries, but the tree should not carry noise either.
fn remove_empty_dirs(tree: &Path) -> Result<(), DepsError> {
    let dirs: Vec<PathBuf> = walkdir::WalkDir::new(tree)
        .min_depth(1)
        .contents_first(true)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_dir())
        .map(|e| e.into_path())
        .collect();
    for d in dirs {
        if fs_err::read_dir(&d).is_ok_and(|mut r| r.next().is_none()) {
            fs_err::remove_dir(&d).map_err(io_err)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalised_per_pep_503() {
        assert_eq!(canonical_name("Boto3"), "boto3");
        assert_eq!(canonical_name("typing_extensions"), "typing-extensions");
        assert_eq!(canonical_name("zope.interface"), "zope-interface");
        assert_eq!(canonical_name("A__b-.C"), "a-b-c");
    }

    #[test]
    fn csv_round_trips_quoted_paths() {
        assert_eq!(
            parse_csv_line(r#""a,b.py",sha256=x,3"#),
            ["a,b.py", "sha256=x", "3"]
        );
        assert_eq!(parse_csv_line("x/RECORD,,"), ["x/RECORD", "", ""]);
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("q\""), "\"q\"\"\"");
    }

    #[test]
    fn record_paths_outside_the_tree_are_dropped() {
        assert!(inside("../../bin/tool").is_none());
        assert!(inside("/usr/bin/tool").is_none());
        assert_eq!(inside("pkg/a.py"), Some(PathBuf::from("pkg/a.py")));
    }

    fn write(root: &Path, rel: &str, body: &str) {
        let p = root.join(rel);
        fs_err::create_dir_all(p.parent().unwrap()).unwrap();
        fs_err::write(p, body).unwrap();
    }

    #[test]
    fn leftovers_and_excluded_distributions_go_record_follows() {
        let d = tempfile::tempdir().unwrap();
        let t = d.path();
        write(t, ".lock", "");
        write(t, "bin/tool", "#!/abs/python\n");
        write(t, "keep/__init__.py", "x = 1\n");
        write(t, "keep/__pycache__/__init__.cpython-312.pyc", "junk");
        write(
            t,
            "keep-1.0.dist-info/METADATA",
            "Name: Keep\nVersion: 1.0\n\nbody",
        );
        write(t, "keep-1.0.dist-info/INSTALLER", "uv\n");
        write(
            t,
            "keep-1.0.dist-info/direct_url.json",
            "{\"url\": \"file:///x\"}",
        );
        write(
            t,
            "keep-1.0.dist-info/RECORD",
            "../../bin/tool,sha256=zz,14\nkeep/__init__.py,sha256=old,6\nkeep-1.0.dist-info/INSTALLER,,\nkeep-1.0.dist-info/RECORD,,\nkeep-1.0.dist-info/METADATA,,\n",
        );
        write(t, "boto3/x.py", "");
        write(t, "boto3/sub/y.py", "");
        write(
            t,
            "boto3-1.0.dist-info/METADATA",
            "Name: boto3\nVersion: 1.0\n",
        );
        write(
            t,
            "boto3-1.0.dist-info/RECORD",
            "boto3/x.py,,\nboto3/sub/y.py,,\nboto3-1.0.dist-info/RECORD,,\n",
        );
        let r = normalize(t, &["Boto3".into(), "nothere".into()]).unwrap();
        assert_eq!(r.distributions, ["Keep==1.0"]);
        assert_eq!(r.excluded, ["boto3==1.0"]);
        assert_eq!(r.unmatched_excludes, ["nothere"]);
        let mut left: Vec<String> = walkdir::WalkDir::new(t)
            .min_depth(1)
            .into_iter()
            .map(|e| {
                e.unwrap()
                    .path()
                    .strip_prefix(t)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "keep",
                "keep-1.0.dist-info",
                "keep-1.0.dist-info/METADATA",
                "keep-1.0.dist-info/RECORD",
                "keep/__init__.py"
            ]
        );
        let record = fs_err::read_to_string(t.join("keep-1.0.dist-info/RECORD")).unwrap();
        let lines: Vec<&str> = record.lines().collect();
        assert_eq!(lines.len(), 3, "{record}");
        assert!(lines[0].starts_with("keep-1.0.dist-info/METADATA,sha256="));
        assert_eq!(lines[1], "keep-1.0.dist-info/RECORD,,");
        // sha256("x = 1\n"), urlsafe base64 without padding.
        assert!(lines[2].starts_with("keep/__init__.py,sha256="), "{record}");
        assert!(lines[2].ends_with(",6"));
    }
}
