//! Reading requirements files just enough for the deps key and the
//! pinning warning: the files included with `-r`/`-c` (recursively), the
//! index options written in them, and which requirements are not pinned
//! with `==`.
//!
//! The installer still reads the files itself; this module never rewrites
//! them or resolves anything.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::DepsError;
use super::normalize::canonical_name;

/// One requirements file that feeds the install.
#[derive(Debug, Clone)]
pub struct RequirementsFile {
    pub path: PathBuf,
    /// BLAKE3 of the file's bytes.
    pub hash: crate::entry::Hash,
}

/// A requirement line that is not pinned to one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpinned {
    pub path: PathBuf,
    pub line: usize,
    pub requirement: String,
}

/// What the deps stage needs to know about the requirements.
#[derive(Debug, Default)]
pub struct Requirements {
    /// The top file first, then included files in the order met.
    pub files: Vec<RequirementsFile>,
    /// Index options found in the files, as `--option value`, in order.
    pub index_options: Vec<String>,
    /// Local `--find-links` directories, resolved against the file that
    /// names them (pip's rule); their listings join the key.
    pub local_find_links: Vec<PathBuf>,
    /// Local files named as requirements (`./wheels/x.whl`,
    /// `pkg @ file:///...`): their contents join the key, as a rebuilt
    /// wheel under the same name must not reuse the old tree.
    pub local_artifacts: Vec<PathBuf>,
    /// How many requirements (not constraints) the files list.
    pub count: usize,
    pub unpinned: Vec<Unpinned>,
}

/// Options that change where packages come from.
const INDEX_OPTIONS: &[(&str, &str)] = &[
    ("-i", "--index-url"),
    ("--index-url", "--index-url"),
    ("--extra-index-url", "--extra-index-url"),
    ("-f", "--find-links"),
    ("--find-links", "--find-links"),
    ("--no-index", "--no-index"),
];

/// Reads `top` and everything it includes.
pub fn read(top: &Path) -> Result<Requirements, DepsError> {
    let mut out = Requirements::default();
    let mut seen = BTreeSet::new();
    let mut candidates = Vec::new();
    let mut constrained = BTreeSet::new();
    visit(
        top,
        None,
        false,
        &mut seen,
        &mut out,
        &mut candidates,
        &mut constrained,
    )?;
    // A requirement pinned by a constraints file (`-c`) is pinned too.
    out.unpinned = candidates
        .into_iter()
        .filter(|(name, _)| !constrained.contains(name))
        .map(|(_, u)| u)
        .collect();
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn visit(
    path: &Path,
    from: Option<(&Path, usize)>,
    is_constraints: bool,
    seen: &mut BTreeSet<PathBuf>,
    out: &mut Requirements,
    unpinned: &mut Vec<(String, Unpinned)>,
    constrained: &mut BTreeSet<String>,
) -> Result<(), DepsError> {
    let bytes = std::fs::read(path).map_err(|source| DepsError::Requirements {
        path: from.map_or_else(|| path.to_path_buf(), |(p, _)| p.to_path_buf()),
        line: from.map_or(0, |(_, l)| l),
        message: format!("cannot read {}: {source}", path.display()),
    })?;
    let canonical = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    if !seen.insert(canonical) {
        return Ok(()); // included twice (or a cycle): read once
    }
    out.files.push(RequirementsFile {
        path: path.to_path_buf(),
        hash: blake3::hash(&bytes),
    });
    let text = String::from_utf8_lossy(&bytes);
    let dir = path.parent().unwrap_or(Path::new("."));
    for (line_no, line) in logical_lines(&text) {
        let mut words = line.split_whitespace();
        let Some(first) = words.next() else { continue };
        if first.starts_with('-') {
            let (opt, inline) = match first.split_once('=') {
                Some((o, v)) => (o, Some(v.to_string())),
                None => (first, None),
            };
            // `-rfile` and `-cfile` (no space) are accepted by pip.
            let (opt, inline) = match opt {
                o if o.len() > 2
                    && (o.starts_with("-r") || o.starts_with("-c"))
                    && !o.starts_with("--") =>
                {
                    (&o[..2], Some(o[2..].to_string()))
                }
                o => (o, inline),
            };
            let value = || {
                inline
                    .clone()
                    .or_else(|| words.clone().next().map(str::to_string))
            };
            match opt {
                "-r" | "--requirement" | "-c" | "--constraint" => {
                    let Some(v) = value() else {
                        return Err(DepsError::Requirements {
                            path: path.to_path_buf(),
                            line: line_no,
                            message: format!("{opt} needs a file name"),
                        });
                    };
                    if v.contains("://") {
                        // A remote include: only its line is keyed.
                        out.index_options.push(format!("{opt} {v}"));
                        continue;
                    }
                    let nested = dir.join(&v);
                    let constraints = is_constraints || opt == "-c" || opt == "--constraint";
                    visit(
                        &nested,
                        Some((path, line_no)),
                        constraints,
                        seen,
                        out,
                        unpinned,
                        constrained,
                    )?;
                }
                _ => {
                    if let Some((_, canonical_opt)) = INDEX_OPTIONS.iter().find(|(o, _)| *o == opt)
                    {
                        match (*canonical_opt, value()) {
                            ("--no-index", _) => out.index_options.push("--no-index".into()),
                            (o, Some(v)) => {
                                if o == "--find-links" && !v.contains("://") {
                                    out.local_find_links.push(dir.join(&v));
                                }
                                out.index_options.push(format!("{o} {v}"));
                            }
                            (o, None) => out.index_options.push(o.to_string()),
                        }
                    }
                }
            }
            continue;
        }
        let Some(req) = parse_requirement(&line) else {
            continue;
        };
        if let Some(local) = local_artifact(&req.text) {
            out.local_artifacts.push(dir.join(local));
        }
        if !is_constraints {
            out.count += 1;
        }
        if is_constraints {
            if req.pinned {
                constrained.insert(req.name);
            }
        } else if !req.pinned {
            unpinned.push((
                req.name,
                Unpinned {
                    path: path.to_path_buf(),
                    line: line_no,
                    requirement: req.text,
                },
            ));
        }
    }
    Ok(())
}

/// Lines with comments removed and `\` continuations joined, numbered by
/// the line they start on (1-based). Blank lines are dropped.
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut start = 0;
    for (i, raw) in text.lines().enumerate() {
        if current.is_empty() {
            start = i + 1;
        }
        let line = strip_comment(raw);
        if let Some(body) = line.strip_suffix('\\') {
            current.push_str(body);
            current.push(' ');
            continue;
        }
        current.push_str(line);
        let done = std::mem::take(&mut current);
        if !done.trim().is_empty() {
            out.push((start, done.trim().to_string()));
        }
    }
    if !current.trim().is_empty() {
        out.push((start, current.trim().to_string()));
    }
    out
}

/// pip's rule: `#` starts a comment at the line start or after whitespace.
fn strip_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'#' && (i == 0 || bytes[i - 1].is_ascii_whitespace()) {
            return line[..i].trim_end();
        }
    }
    line.trim_end()
}

struct Requirement {
    /// PEP 503 normalised name.
    name: String,
    /// The requirement as written, without hashes or markers.
    text: String,
    pinned: bool,
}

/// `name[extras] specifiers ; markers --hash=...`, or a direct reference.
/// Direct references (`name @ url`, a path or URL to an archive) point at
/// one artifact, so they count as pinned.
/// The local path a direct requirement points at, if any: a path
/// (`./x.whl`, `/abs/x.whl`, `x.whl`) or a `file:` URL, alone or after
/// `name @ `.
fn local_artifact(text: &str) -> Option<PathBuf> {
    let target = text.split_once(" @ ").map_or(text, |(_, t)| t).trim();
    let target = target.split_whitespace().next()?;
    if let Some(rest) = target.strip_prefix("file:") {
        // file:///abs, file://localhost/abs, file:relative
        let rest = rest.strip_prefix("//localhost").unwrap_or(rest);
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        return Some(PathBuf::from(rest));
    }
    let local = !target.contains("://")
        && (target.starts_with('.')
            || target.starts_with('/')
            || target.ends_with(".whl")
            || target.ends_with(".zip")
            || target.ends_with(".tar.gz"));
    local.then(|| PathBuf::from(target))
}

fn parse_requirement(line: &str) -> Option<Requirement> {
    // Per-requirement options (--hash, --config-settings) come after a space.
    let body = line.split(" -").next().unwrap_or(line).trim();
    let body = body.split(';').next().unwrap_or(body).trim();
    if body.is_empty() {
        return None;
    }
    let name_end = body
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'))
        .unwrap_or(body.len());
    let name = &body[..name_end];
    let direct = body.contains("://")
        || body.contains(" @ ")
        || body.contains('@') && !body.contains("==")
        || body.starts_with('.')
        || body.starts_with('/')
        || body.ends_with(".whl")
        || body.ends_with(".tar.gz")
        || body.ends_with(".zip");
    if name.is_empty() || direct {
        return Some(Requirement {
            name: canonical_name(if name.is_empty() { body } else { name }),
            text: body.to_string(),
            pinned: true,
        });
    }
    let spec: String = body[name_end..]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    // Skip extras.
    let spec = match spec.strip_prefix('[') {
        Some(rest) => rest.split_once(']').map_or("", |(_, s)| s).to_string(),
        None => spec,
    };
    let spec = spec.trim_start_matches('(').trim_end_matches(')');
    let pinned = spec.split(',').any(|clause| {
        clause.starts_with("===") || (clause.starts_with("==") && !clause.contains('*'))
    });
    Some(Requirement {
        name: canonical_name(name),
        text: body.to_string(),
        pinned,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pinned(line: &str) -> bool {
        parse_requirement(line).unwrap().pinned
    }

    #[test]
    fn pins_are_recognised() {
        assert!(pinned("requests==2.32.3"));
        assert!(pinned("requests == 2.32.3 ; python_version >= '3.8'"));
        assert!(pinned("pydantic[email]==2.9.2 --hash=sha256:abc"));
        assert!(pinned("foo===1.0"));
        assert!(pinned("foo @ https://example.com/foo-1.0-py3-none-any.whl"));
        assert!(pinned("./wheels/foo-1.0-py3-none-any.whl"));
        assert!(!pinned("requests"));
        assert!(!pinned("requests>=2"));
        assert!(!pinned("requests==2.*"));
        assert!(!pinned("requests~=2.32"));
        assert!(!pinned("numpy[extra]>=1,<2"));
    }

    #[test]
    fn local_artifacts_are_found() {
        assert_eq!(
            local_artifact("./wheels/a-1.0-py3-none-any.whl"),
            Some("./wheels/a-1.0-py3-none-any.whl".into())
        );
        assert_eq!(
            local_artifact("a @ file:///opt/w/a.whl"),
            Some("/opt/w/a.whl".into())
        );
        assert_eq!(
            local_artifact("a-1.0-py3-none-any.whl"),
            Some("a-1.0-py3-none-any.whl".into())
        );
        assert_eq!(local_artifact("a @ https://example.com/a.whl"), None);
        assert_eq!(local_artifact("requests==2.32.3"), None);
    }

    #[test]
    fn comments_and_continuations() {
        let lines = logical_lines("# top\nfoo==1 # pinned\nbar\\\n  ==2\n\nurl#frag==1\n");
        assert_eq!(
            lines,
            vec![
                (2, "foo==1".to_string()),
                (3, "bar   ==2".to_string()),
                (6, "url#frag==1".to_string())
            ]
        );
    }

    #[test]
    fn includes_constraints_and_index_options() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::fs::write(
            d.path().join("requirements.txt"),
            "--index-url https://example.com/simple\n-r sub/more.txt\n-c constraints.txt\nloose\nconstrained\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("sub/more.txt"),
            "--find-links=./wheels\n--no-index\nalso-loose>=1\npinned==1\n-r ../requirements.txt\n",
        )
        .unwrap();
        std::fs::write(d.path().join("constraints.txt"), "Constrained==3\n").unwrap();
        let r = read(&d.path().join("requirements.txt")).unwrap();
        assert_eq!(r.files.len(), 3);
        assert_eq!(
            r.index_options,
            [
                "--index-url https://example.com/simple",
                "--find-links ./wheels",
                "--no-index"
            ]
        );
        let names: Vec<_> = r.unpinned.iter().map(|u| u.requirement.as_str()).collect();
        assert_eq!(names, ["also-loose>=1", "loose"]);
        assert_eq!(r.count, 4);
        assert_eq!(r.local_find_links, [d.path().join("sub/./wheels")]);
    }

    #[test]
    fn a_missing_include_names_the_including_line() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("requirements.txt"), "a==1\n-r nope.txt\n").unwrap();
        let err = read(&d.path().join("requirements.txt"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("requirements.txt:2"), "{err}");
        assert!(err.contains("nope.txt"), "{err}");
    }
}
