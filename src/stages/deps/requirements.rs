//! Reading requirements files just enough for the deps key and the
//! pinning warning: the files included with `-r`/`-c` (recursively), the
//! index options written in them, the local artifacts they name, and which
//! requirements are not pinned with `==`.
//!
//! Lines are read as pip and uv read them: comments (`#` at the start or
//! after whitespace) and `\` continuations first, `${VAR}` expanded, then
//! either an option (`-r`, `--find-links`, `-e`, ...) or a requirement with
//! its per-requirement options (`--hash=...`) cut off. A requirement is
//! parsed by `pep508_rs`: `name[extras] specifiers ; markers`,
//! `name @ url` (with or without spaces around `@`), or an unnamed path or
//! URL (`./x.whl`, `/abs/x.whl`, `x.whl`, `file:///...`, `git+https://...`).
//!
//! Only regular files are read, each at most [`MAX_FILE_BYTES`]: `-r
//! /dev/zero` or `-r a-fifo` is an error, not a hang.
//!
//! The installer still reads the files itself; this module never rewrites
//! them or resolves anything.

use std::collections::BTreeSet;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use pep508_rs::pep440_rs::Operator;
use pep508_rs::{Requirement as Pep508, UnnamedRequirement, VerbatimUrl, VersionOrUrl};

use super::DepsError;
use super::normalize::canonical_name;

/// The largest requirements file read (a real one is a few KiB).
pub(crate) const MAX_FILE_BYTES: u64 = 16 << 20;

/// One requirements file that feeds the install.
#[derive(Debug, Clone)]
pub(crate) struct RequirementsFile {
    pub path: PathBuf,
    /// BLAKE3 of the file's bytes (and, when it uses `${VAR}`, of its
    /// lines as expanded).
    pub hash: crate::entry::Hash,
}

/// A requirement line that is not pinned to one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unpinned {
    pub path: PathBuf,
    pub line: usize,
    pub requirement: String,
}

/// What the deps stage needs to know about the requirements.
#[derive(Debug, Default)]
pub(crate) struct Requirements {
    /// The top file first, then included files in the order met.
    pub files: Vec<RequirementsFile>,
    /// Index options found in the files, as `--option value`, in order.
    pub index_options: Vec<String>,
    /// Local `--find-links` directories (a path or a `file:` URL),
    /// resolved against the file that names them (pip's rule); their
    /// listings join the key.
    pub local_find_links: Vec<PathBuf>,
    /// Local files named as requirements (`./wheels/x.whl`,
    /// `pkg@file:///...`, `-e ./pkg`), absolute: their contents join the
    /// key, as a rebuilt wheel under the same name must not reuse the old
    /// tree. Each is a regular file, a directory or missing (checked here).
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
pub(crate) fn read(top: &Path) -> Result<Requirements, DepsError> {
    let mut reader = Reader::default();
    let top = std::path::absolute(top).unwrap_or_else(|_| top.to_path_buf());
    reader.visit(&top, None, false)?;
    let Reader {
        mut out,
        candidates,
        constrained,
        ..
    } = reader;
    // A requirement pinned by a constraints file (`-c`) is pinned too.
    out.unpinned = candidates
        .into_iter()
        .filter(|(name, _)| !constrained.contains(name))
        .map(|(_, u)| u)
        .collect();
    Ok(out)
}

#[derive(Default)]
struct Reader {
    out: Requirements,
    /// Canonical paths of the files read (an include cycle reads once).
    seen: BTreeSet<PathBuf>,
    /// Unpinned requirements by name, before constraints are known.
    candidates: Vec<(String, Unpinned)>,
    /// Names pinned by a constraints file.
    constrained: BTreeSet<String>,
}

/// Where a line is: the file and its 1-based line number.
type At<'a> = (&'a Path, usize);

impl Reader {
    fn visit(
        &mut self,
        path: &Path,
        from: Option<At>,
        is_constraints: bool,
    ) -> Result<(), DepsError> {
        let canonical = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        if self.seen.contains(&canonical) {
            return Ok(()); // included twice (or a cycle): read once
        }
        let bytes = read_regular_file(path, from)?;
        self.seen.insert(canonical);
        let index = self.out.files.len();
        self.out.files.push(RequirementsFile {
            path: path.to_path_buf(),
            hash: blake3::hash(&bytes),
        });
        // What the installer reads is the text with `${VAR}` expanded: the
        // hash takes the expanded lines too (only hashed, so a token in a
        // variable is never shown), and a file without variables keeps
        // the hash of its bytes.
        let mut expanded = blake3::Hasher::new();
        expanded.update(&bytes);
        let mut any_expanded = false;
        let text = String::from_utf8_lossy(&bytes);
        let dir = path.parent().unwrap_or(Path::new("/"));
        for (line_no, written) in logical_lines(&text) {
            let line = pep508_rs::expand_env_vars(&written);
            if line != written {
                any_expanded = true;
                expanded.update(format!("\0{line_no}\0{}", line.len()).as_bytes());
                expanded.update(line.as_bytes());
            }
            let line = line.into_owned();
            let at = (path, line_no);
            let requirement = if line.starts_with('-') {
                match self.option(&line, at, dir, is_constraints)? {
                    Some(editable) => editable,
                    None => continue,
                }
            } else {
                parse_requirement(&line, dir).map_err(|message| error_at(at, message))?
            };
            self.requirement(requirement, at, is_constraints)?;
        }
        if any_expanded {
            self.out.files[index].hash = expanded.finalize();
        }
        Ok(())
    }

    /// An option line. Returns the requirement of an `-e` line.
    fn option(
        &mut self,
        line: &str,
        at: At,
        dir: &Path,
        is_constraints: bool,
    ) -> Result<Option<Requirement>, DepsError> {
        let (opt, value) = split_option(line);
        let need_value = || {
            value
                .clone()
                .ok_or_else(|| error_at(at, format!("{opt} needs a value")))
        };
        match opt {
            "-r" | "--requirement" | "-c" | "--constraint" => {
                let v = need_value()?;
                let nested = if v.contains("://") {
                    // A remote include could only be keyed by fetching it
                    // on every build (its line says nothing of what it
                    // holds today): builds stay hermetic instead.
                    local_link(&v, dir).ok_or_else(|| DepsError::Refused {
                        message: format!(
                            "{}:{}: `{opt} {}` includes a file from the network: lbuild keys a requirements file by its content, and would have to download this one on every build to know it",
                            at.0.display(),
                            at.1,
                            super::key::redact_url_credentials(&v)
                        ),
                        hint: format!(
                            "download it into the project and include the copy (e.g. `curl -o {} URL`, then `{opt} {}`); update the copy when you mean to",
                            remote_file_name(&v),
                            remote_file_name(&v)
                        ),
                    })?
                } else {
                    dir.join(&v)
                };
                let constraints = is_constraints || opt == "-c" || opt == "--constraint";
                self.visit(&nested, Some(at), constraints)?;
                Ok(None)
            }
            "-e" | "--editable" => {
                let v = need_value()?;
                // Checked first, so a malformed value gets its own error.
                parse_requirement(&v, dir).map_err(|message| error_at(at, message))?;
                Err(DepsError::Editable {
                    path: at.0.to_path_buf(),
                    line: at.1,
                    requirement: line.trim().to_string(),
                    target: if v.contains("://") {
                        v
                    } else {
                        crate::manifest::normalize(&dir.join(&v))
                            .display()
                            .to_string()
                    },
                })
            }
            _ => {
                let Some((_, canonical_opt)) = INDEX_OPTIONS.iter().find(|(o, _)| *o == opt) else {
                    return Ok(None); // --pre, --only-binary, ...: the file's hash covers them
                };
                match (*canonical_opt, value) {
                    ("--no-index", _) => self.out.index_options.push("--no-index".into()),
                    (o, Some(v)) => {
                        if o == "--find-links"
                            && let Some(local) = local_link(&v, dir)
                        {
                            self.out.local_find_links.push(local);
                        }
                        self.out.index_options.push(format!("{o} {v}"));
                    }
                    (o, None) => self.out.index_options.push(o.to_string()),
                }
                Ok(None)
            }
        }
    }

    fn requirement(
        &mut self,
        req: Requirement,
        at: At,
        is_constraints: bool,
    ) -> Result<(), DepsError> {
        if let Some(local) = req.local {
            check_artifact(&local, at)?;
            self.out.local_artifacts.push(local);
        }
        if is_constraints {
            if req.pinned
                && let Some(name) = req.name
            {
                self.constrained.insert(name);
            }
            return Ok(());
        }
        self.out.count += 1;
        if !req.pinned
            && let Some(name) = req.name
        {
            self.candidates.push((
                name,
                Unpinned {
                    path: at.0.to_path_buf(),
                    line: at.1,
                    requirement: req.text,
                },
            ));
        }
        Ok(())
    }
}

/// The last path segment of a URL, for a local copy's name.
fn remote_file_name(url: &str) -> &str {
    url.split(['?', '#'])
        .next()
        .and_then(|u| u.rsplit('/').find(|s| !s.is_empty() && !s.contains(':')))
        .unwrap_or("requirements-base.txt")
}

fn error_at(at: At, message: String) -> DepsError {
    DepsError::Requirements {
        path: at.0.to_path_buf(),
        line: at.1,
        message,
    }
}

/// `--opt=value`, `--opt value`, `-rfile`, `-r file` -> (option, value).
fn split_option(line: &str) -> (&str, Option<String>) {
    let (first, rest) = line
        .split_once(char::is_whitespace)
        .map_or((line, ""), |(f, r)| (f, r.trim()));
    let next_word = || rest.split_whitespace().next().map(str::to_string);
    if first.starts_with("--") {
        if let Some((o, v)) = first.split_once('=') {
            return (o, Some(v.to_string()));
        }
    } else if first.len() > 2 && first.is_char_boundary(2) {
        // `-rfile`, `-efile`, `-iurl` (no space): a short option takes the
        // rest of the word (optparse's rule; `=` is part of the value).
        let (o, v) = first.split_at(2);
        if o == "-e" {
            // The whole rest: `-e./pkg ; markers` is one requirement.
            return (o, Some(line[2..].trim().to_string()));
        }
        return (o, Some(v.to_string()));
    }
    if matches!(first, "-e" | "--editable") {
        // The whole rest: `-e ./pkg[extra] ; markers` is one requirement.
        return (first, (!rest.is_empty()).then(|| rest.to_string()));
    }
    (first, next_word())
}

/// A find-links value that names a local directory (or file): a path,
/// relative to `base`, or a `file:` URL. None for remote URLs.
pub(crate) fn local_link(value: &str, base: &Path) -> Option<PathBuf> {
    if let Some((scheme, _)) = pep508_rs::split_scheme(value)
        && scheme.len() > 1
    {
        if !scheme.eq_ignore_ascii_case("file") {
            return None;
        }
        let url = <VerbatimUrl as pep508_rs::Pep508Url>::parse_url(value, Some(base)).ok()?;
        return url.raw().to_file_path().ok();
    }
    Some(base.join(value))
}

/// Reads a requirements file: only a regular file (a fifo or a device is
/// refused before it is opened, and opened non-blocking in case it was
/// swapped in since), at most [`MAX_FILE_BYTES`].
pub(super) fn read_regular_file(path: &Path, from: Option<At>) -> Result<Vec<u8>, DepsError> {
    let at = || match from {
        Some((p, line)) => format!("{}:{line}: ", p.display()),
        None => String::new(),
    };
    let cannot = |source: std::io::Error| match from {
        Some(at) => error_at(at, format!("cannot read {}: {source}", path.display())),
        None => DepsError::Requirements {
            path: path.to_path_buf(),
            line: 0,
            message: format!("cannot read {}: {source}", path.display()),
        },
    };
    let refuse = |what: String| {
        DepsError::Refused {
        message: format!(
            "{}cannot read {} as a requirements file: {what}",
            at(),
            path.display()
        ),
        hint: "a requirements file (and every -r/-c include) must be an ordinary text file; fix the path".into(),
    }
    };
    let meta = fs_err::metadata(path).map_err(cannot)?;
    if !meta.is_file() {
        return Err(refuse(format!("it is {}", file_kind(&meta.file_type()))));
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(cannot)?;
    let meta = file.metadata().map_err(cannot)?;
    if !meta.is_file() {
        return Err(refuse(format!("it is {}", file_kind(&meta.file_type()))));
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(DepsError::Refused {
            message: format!(
                "{}{} is larger than {} MiB, the most lbuild reads of a requirements file",
                at(),
                path.display(),
                MAX_FILE_BYTES >> 20
            ),
            hint: "check the -r/-c path: a requirements file is a short list of packages".into(),
        });
    }
    Ok(bytes)
}

/// "a directory", "a named pipe (fifo)", ...
pub(crate) fn file_kind(t: &std::fs::FileType) -> &'static str {
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a named pipe (fifo)"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_file() {
        "a regular file"
    } else {
        "not a regular file"
    }
}

/// A local artifact must be a regular file or a directory (or missing:
/// the installer says so); never a fifo or a device whose hashing would
/// block or never end.
fn check_artifact(path: &Path, at: At) -> Result<(), DepsError> {
    match fs_err::metadata(path) {
        Ok(m) if !m.is_file() && !m.is_dir() => Err(DepsError::Refused {
            message: format!(
                "{}:{}: the requirement names {}, which is {}",
                at.0.display(),
                at.1,
                path.display(),
                file_kind(&m.file_type())
            ),
            hint: "a local requirement must be a wheel file (or a project directory)".into(),
        }),
        _ => Ok(()),
    }
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

/// One requirement line, as the key and the pinning warning see it.
#[derive(Debug, PartialEq, Eq)]
struct Requirement {
    /// PEP 503 normalised name; None for an unnamed path or URL.
    name: Option<String>,
    /// The requirement as written, without per-requirement options.
    text: String,
    /// Pinned to one version with `==`/`===`, or a direct reference (a
    /// URL or path names one artifact).
    pinned: bool,
    /// The local file or directory it points at (absolute), if any.
    local: Option<PathBuf>,
}

/// Archive suffixes that make a bare word a path (pip's `is_archive_file`).
const ARCHIVES: &[&str] = &[
    ".whl",
    ".zip",
    ".tar.gz",
    ".tgz",
    ".tar",
    ".tar.bz2",
    ".tbz",
    ".tar.xz",
    ".txz",
    ".tlz",
    ".tar.lz",
    ".tar.lzma",
];

/// Parses one requirement (`line` has no comment and no continuation);
/// relative paths are relative to `dir`. The error is the parser's.
fn parse_requirement(line: &str, dir: &Path) -> Result<Requirement, String> {
    let body = strip_requirement_options(line);
    // The first word up to extras or markers: `x.whl` is a path (pip's
    // rule) though it would parse as the name "x.whl".
    let head = body
        .split(|c: char| c.is_whitespace() || c == ';' || c == '[')
        .next()
        .unwrap_or("");
    let archive = !head.contains('@') && ARCHIVES.iter().any(|a| head.ends_with(a));
    if !archive {
        match Pep508::<VerbatimUrl>::parse(body, dir) {
            Ok(r) => {
                let (pinned, local) = match &r.version_or_url {
                    None => (false, None),
                    Some(VersionOrUrl::VersionSpecifier(specs)) => (
                        specs.iter().any(|s| {
                            matches!(s.operator(), Operator::Equal | Operator::ExactEqual)
                        }),
                        None,
                    ),
                    Some(VersionOrUrl::Url(url)) => (true, file_path(url)),
                };
                return Ok(Requirement {
                    name: Some(canonical_name(r.name.as_ref())),
                    text: body.to_string(),
                    pinned,
                    local,
                });
            }
            Err(e) if !looks_unnamed(head) => {
                return Err(format!("not a valid requirement: {}", first_line(&e)));
            }
            Err(_) => {}
        }
    }
    let r = UnnamedRequirement::<VerbatimUrl>::parse(body, dir, &mut pep508_rs::TracingReporter)
        .map_err(|e| format!("not a valid requirement: {}", first_line(&e)))?;
    Ok(Requirement {
        name: None,
        text: body.to_string(),
        pinned: true,
        local: file_path(&r.url),
    })
}

/// Cuts per-requirement options (`--hash=...`, `--config-settings ...`):
/// pip's rule, the first whitespace-separated word starting with `-`.
fn strip_requirement_options(line: &str) -> &str {
    let bytes = line.as_bytes();
    for i in 1..bytes.len() {
        if bytes[i] == b'-' && bytes[i - 1].is_ascii_whitespace() {
            return line[..i].trim();
        }
    }
    line.trim()
}

/// A path or URL rather than a name: `./x`, `/x`, `~/x`, `dir/x`, `scheme://...`.
fn looks_unnamed(head: &str) -> bool {
    head.starts_with(['.', '/', '~']) || head.contains('/') || head.starts_with("file:")
}

fn file_path(url: &VerbatimUrl) -> Option<PathBuf> {
    let raw = url.raw();
    (raw.scheme() == "file").then(|| raw.to_file_path().ok())?
}

fn first_line(e: &impl std::fmt::Display) -> String {
    e.to_string().lines().next().unwrap_or("").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Requirement {
        parse_requirement(line, Path::new("/w/proj")).unwrap_or_else(|e| panic!("{line}: {e}"))
    }

    fn pinned(line: &str) -> bool {
        parse(line).pinned
    }

    fn local(line: &str) -> Option<PathBuf> {
        parse(line).local
    }

    #[test]
    fn pins_are_recognised() {
        assert!(pinned("requests==2.32.3"));
        assert!(pinned("requests == 2.32.3 ; python_version >= '3.8'"));
        assert!(pinned("pydantic[email]==2.9.2 --hash=sha256:abc"));
        assert!(pinned("foo===1.0"));
        assert!(pinned("foo>=1,==1.2"));
        assert!(pinned("foo (==1.0)"));
        assert!(pinned("foo @ https://example.com/foo-1.0-py3-none-any.whl"));
        assert!(pinned("./wheels/foo-1.0-py3-none-any.whl"));
        assert!(pinned("git+https://github.com/a/b.git@v1#egg=b"));
        assert!(!pinned("requests"));
        assert!(!pinned("requests>=2"));
        assert!(!pinned("requests==2.*"));
        assert!(!pinned("requests~=2.32"));
        assert!(!pinned("numpy[extra]>=1,<2"));
        assert!(!pinned("requests ; python_version < '3.8'"));
    }

    #[test]
    fn names_are_pep503_normalised() {
        assert_eq!(parse("Foo.Bar_baz==1").name.as_deref(), Some("foo-bar-baz"));
        assert_eq!(parse("Foo@file:///w/x.whl").name.as_deref(), Some("foo"));
        assert_eq!(parse("./x-1.0-py3-none-any.whl").name, None);
    }

    #[test]
    fn local_artifacts_are_found_however_they_are_written() {
        let w = |p: &str| Some(PathBuf::from(p));
        // PEP 508 direct references, with and without spaces around `@`.
        assert_eq!(local("pkg@file:///w/pkg.whl"), w("/w/pkg.whl"));
        assert_eq!(local("pkg @ file:///w/pkg.whl"), w("/w/pkg.whl"));
        assert_eq!(local("pkg[extra]@file:///w/pkg.whl"), w("/w/pkg.whl"));
        assert_eq!(local("pkg @ file://localhost/w/pkg.whl"), w("/w/pkg.whl"));
        assert_eq!(
            local("pkg @ file:///w/pkg.whl ; python_version >= \"3.8\" --hash=sha256:ab"),
            w("/w/pkg.whl")
        );
        assert_eq!(local("pkg @ file:///w/a%20b.whl"), w("/w/a b.whl"));
        // uv's relative form.
        assert_eq!(local("pkg @ ./wheels/pkg.whl"), w("/w/proj/wheels/pkg.whl"));
        // Unnamed paths and file URLs, relative to the requirements file.
        assert_eq!(
            local("./wheels/a-1.0-py3-none-any.whl"),
            w("/w/proj/wheels/a-1.0-py3-none-any.whl")
        );
        assert_eq!(local("../up/a.whl"), w("/w/up/a.whl"));
        assert_eq!(local("/abs/a.whl"), w("/abs/a.whl"));
        assert_eq!(
            local("a-1.0-py3-none-any.whl"),
            w("/w/proj/a-1.0-py3-none-any.whl")
        );
        assert_eq!(local("wheels/a.tar.gz"), w("/w/proj/wheels/a.tar.gz"));
        assert_eq!(local("file:///abs/a.whl"), w("/abs/a.whl"));
        assert_eq!(local("file:wheels/a.whl"), w("/w/proj/wheels/a.whl"));
        assert_eq!(
            local("./a.whl[extra] ; python_version >= '3.8'"),
            w("/w/proj/a.whl")
        );
        assert_eq!(local("./a.whl --hash=sha256:0123"), w("/w/proj/a.whl"));
        // Not local.
        assert_eq!(local("a @ https://example.com/a.whl"), None);
        assert_eq!(local("https://example.com/a-1.0-py3-none-any.whl"), None);
        assert_eq!(local("git+https://github.com/a/b.git@v1#egg=b"), None);
        assert_eq!(local("requests==2.32.3"), None);
        assert_eq!(local("requests@git+https://github.com/psf/requests"), None);
    }

    #[test]
    fn what_is_not_a_requirement_is_an_error() {
        let dir = Path::new("/w");
        for bad in ["foo bar", "foo==", "foo @", "=="] {
            let e = parse_requirement(bad, dir).expect_err(bad);
            assert!(e.starts_with("not a valid requirement"), "{bad}: {e}");
        }
    }

    #[test]
    fn options_are_split_like_pip() {
        assert_eq!(split_option("-r base.txt"), ("-r", Some("base.txt".into())));
        assert_eq!(split_option("-rbase.txt"), ("-r", Some("base.txt".into())));
        assert_eq!(
            split_option("--requirement=base.txt"),
            ("--requirement", Some("base.txt".into()))
        );
        assert_eq!(
            split_option("--find-links   ./w"),
            ("--find-links", Some("./w".into()))
        );
        assert_eq!(split_option("--no-index"), ("--no-index", None));
        assert_eq!(
            split_option("-e ./pkg[dev] ; python_version > '3'"),
            ("-e", Some("./pkg[dev] ; python_version > '3'".into()))
        );
        assert_eq!(split_option("-e./pkg"), ("-e", Some("./pkg".into())));
        assert_eq!(
            split_option("-egit+https://h/r.git#egg=r"),
            ("-e", Some("git+https://h/r.git#egg=r".into()))
        );
        assert_eq!(
            split_option("-ihttps://h/simple?a=b"),
            ("-i", Some("https://h/simple?a=b".into()))
        );
    }

    #[test]
    fn find_links_values_that_are_local() {
        let base = Path::new("/w/proj");
        assert_eq!(local_link("wheels", base), Some("/w/proj/wheels".into()));
        assert_eq!(local_link("/abs/w", base), Some("/abs/w".into()));
        assert_eq!(local_link("file:///abs/w", base), Some("/abs/w".into()));
        assert_eq!(local_link("https://example.com/w/", base), None);
    }

    #[test]
    fn comments_and_continuations() {
        let lines = logical_lines(
            "# top\nfoo==1 # pinned\nbar\\\n  ==2\n\nurl#frag==1\npkg==1 \\\n    --hash=sha256:ab \\\n    --hash=sha256:cd\n",
        );
        assert_eq!(
            lines,
            vec![
                (2, "foo==1".to_string()),
                (3, "bar   ==2".to_string()),
                (6, "url#frag==1".to_string()),
                (
                    7,
                    "pkg==1      --hash=sha256:ab      --hash=sha256:cd".to_string()
                ),
            ]
        );
        assert!(pinned(&lines[3].1));
    }

    #[test]
    fn includes_constraints_and_index_options() {
        let d = tempfile::tempdir().unwrap();
        fs_err::create_dir(d.path().join("sub")).unwrap();
        fs_err::write(
            d.path().join("requirements.txt"),
            "--index-url https://example.com/simple\n-r sub/more.txt\n-c constraints.txt\nloose\nconstrained\n",
        )
        .unwrap();
        fs_err::write(
            d.path().join("sub/more.txt"),
            "--find-links=./wheels\n--no-index\nalso-loose>=1\npinned==1\n-r ../requirements.txt\n",
        )
        .unwrap();
        fs_err::write(d.path().join("constraints.txt"), "Constrained==3\n").unwrap();
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

    /// A remote include would be keyed by its line only (its content may
    /// change any day): refused, naming the line without its credentials,
    /// with the fix. A `file:` URL is a local include, keyed by content.
    #[test]
    fn a_remote_include_is_refused_and_a_file_url_is_read() {
        let d = tempfile::tempdir().unwrap();
        let top = d.path().join("requirements.txt");
        for opt in ["-r", "--constraint"] {
            fs_err::write(
                &top,
                format!("pinned==1\n{opt} https://me:s3cret@example.com/reqs/base.txt?x=1\n"),
            )
            .unwrap();
            let err = read(&top).unwrap_err();
            let DepsError::Refused { message, hint } = &err else {
                panic!("{err:?}");
            };
            assert!(
                message.contains("requirements.txt:2:")
                    && message.contains("from the network")
                    && message.contains("https://***@example.com/reqs/base.txt"),
                "{message}"
            );
            assert!(
                !message.contains("s3cret") && !hint.contains("s3cret"),
                "{message} {hint}"
            );
            assert!(
                hint.contains("curl -o base.txt URL") && hint.contains(&format!("{opt} base.txt")),
                "{hint}"
            );
        }
        fs_err::write(d.path().join("base.txt"), "other==2\n").unwrap();
        let url = format!("file://{}", d.path().join("base.txt").display());
        fs_err::write(&top, format!("-r {url}\n")).unwrap();
        let r = read(&top).unwrap();
        assert_eq!(r.files.len(), 2);
        assert_eq!(r.count, 1);
    }

    #[test]
    fn local_requirements_are_counted_and_collected() {
        let d = tempfile::tempdir().unwrap();
        fs_err::create_dir(d.path().join("pkg")).unwrap();
        fs_err::write(d.path().join("a.whl"), "wheel").unwrap();
        fs_err::write(
            d.path().join("requirements.txt"),
            "./pkg\nlocal @ file:./a.whl\n--pre\n",
        )
        .unwrap();
        let r = read(&d.path().join("requirements.txt")).unwrap();
        assert_eq!(r.count, 2);
        assert!(r.unpinned.is_empty());
        assert_eq!(
            r.local_artifacts,
            [d.path().join("pkg"), d.path().join("a.whl")]
        );
    }

    #[test]
    fn a_missing_include_names_the_including_line() {
        let d = tempfile::tempdir().unwrap();
        fs_err::write(d.path().join("requirements.txt"), "a==1\n-r nope.txt\n").unwrap();
        let err = read(&d.path().join("requirements.txt"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("requirements.txt:2"), "{err}");
        assert!(err.contains("nope.txt"), "{err}");
    }

    #[test]
    fn an_invalid_line_names_its_file_and_line() {
        let d = tempfile::tempdir().unwrap();
        fs_err::write(d.path().join("requirements.txt"), "a==1\n\nfoo bar\n").unwrap();
        let err = read(&d.path().join("requirements.txt"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("requirements.txt:3: not a valid requirement"),
            "{err}"
        );
    }

    #[test]
    fn devices_fifos_and_huge_files_are_refused_without_reading_them() {
        let d = tempfile::tempdir().unwrap();
        let top = d.path().join("requirements.txt");
        for (include, expect) in [("/dev/zero", "a character device"), (".", "a directory")] {
            fs_err::write(&top, format!("-r {include}\n")).unwrap();
            let e = read(&top).unwrap_err();
            assert!(e.to_string().contains(expect), "{e}");
            assert!(e.to_string().contains("requirements.txt:1"), "{e}");
            assert!(e.hint().is_some());
        }
        let big = d.path().join("big.txt");
        std::fs::File::create(&big)
            .unwrap()
            .set_len(MAX_FILE_BYTES + 1)
            .unwrap();
        fs_err::write(&top, "-r big.txt\n").unwrap();
        let e = read(&top).unwrap_err().to_string();
        assert!(e.contains("big.txt is larger than 16 MiB"), "{e}");
    }

    #[test]
    fn a_requirement_naming_a_device_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let top = d.path().join("requirements.txt");
        fs_err::write(&top, "x @ file:///dev/zero\n").unwrap();
        let e = read(&top).unwrap_err().to_string();
        assert!(e.contains("/dev/zero, which is a character device"), "{e}");
    }
}
