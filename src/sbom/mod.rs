//! What a built zip contains, as a bill of materials: `lbuild sbom` and
//! `build --sbom` (`dist/NAME.cdx.json` beside the zip).
//!
//! It owns reading a finished zip back ([`read_zip`]: every entry's SHA-256,
//! the distributions found through `*.dist-info/METADATA` and `RECORD`,
//! their licences) and the two document formats ([`cyclonedx`], [`spdx`]).
//! It does not build and does not decide what goes into a zip; the only
//! thing it asks of the build's inputs is the lockfile's recorded hashes
//! (read with `stages::deps::lockfile::select`, as the deps stage reads it).
//!
//! Every document is a function of the zips' bytes, the lockfile and
//! lbuild's version: no clock (a timestamp only from `SOURCE_DATE_EPOCH`),
//! no path, a serial number derived from the zip's SHA-256, and keys in a
//! fixed order.

pub(crate) mod cyclonedx;
pub(crate) mod spdx;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::manifest::Plan;
use crate::stages::deps::normalize::canonical_name;

/// METADATA and RECORD larger than this are not parsed (a real one is a
/// few KiB; the bound keeps a hostile zip from filling memory).
const TEXT_LIMIT: u64 = 16 << 20;

/// One file of a zip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileFact {
    pub name: String,
    /// SHA-256 of the uncompressed content, hex.
    pub sha256: String,
    pub size: u64,
}

/// The licence a distribution declares in its METADATA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum License {
    /// `License-Expression` (PEP 639): an SPDX expression.
    Expression(String),
    /// `License` (free text, its first line) and the `License ::`
    /// classifiers (their last part), in that order.
    Names(Vec<String>),
    None,
}

/// One installed distribution found in a zip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Distribution {
    /// As METADATA's `Name` writes it.
    pub name: String,
    pub version: String,
    pub license: License,
    /// `NAME-VER.dist-info`, with the archive prefix (`python/` in a layer).
    pub dist_info: String,
    /// The files its RECORD lists that are in the zip (and its dist-info
    /// directory), sorted by name.
    pub files: Vec<FileFact>,
    /// What the lockfile recorded for this name and version
    /// (`sha256:HEX`...): the hashes of the release's wheels and sdist,
    /// one of which was installed. Empty without a lock.
    pub lock_hashes: Vec<String>,
}

impl Distribution {
    /// `pkg:pypi/NAME@VERSION`, the name in its PEP 503 form.
    pub(crate) fn purl(&self) -> String {
        format!(
            "pkg:pypi/{}@{}",
            canonical_name(&self.name),
            purl_escape(&self.version)
        )
    }
}

/// A built zip read back.
#[derive(Debug, Clone)]
pub(crate) struct ZipContents {
    /// `function` or `layer`.
    pub kind: &'static str,
    /// The artifact's name in the manifest.
    pub name: String,
    /// The zip's file name (`hello.zip`).
    pub file_name: String,
    /// SHA-256 of the zip's bytes, hex.
    pub sha256: String,
    pub size: u64,
    /// Sorted by name.
    pub distributions: Vec<Distribution>,
    /// Entries no distribution owns (the function's own code and config).
    pub own_files: Vec<FileFact>,
    pub runtime: String,
    pub architecture: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SbomError {
    #[error("cannot read the zip {path}: {message}")]
    Read { path: PathBuf, message: String },
}

/// Reads `zip` (built from `plan`) and finds what it contains.
pub(crate) fn read_zip(plan: &Plan, zip: &Path) -> Result<ZipContents, SbomError> {
    let err = |message: String| SbomError::Read {
        path: zip.to_path_buf(),
        message,
    };
    let bytes = fs_err::read(zip).map_err(|e| err(e.to_string()))?;
    let sha256 = hex(&Sha256::digest(&bytes));
    let mut archive =
        zip::ZipArchive::new(std::io::Cursor::new(&bytes)).map_err(|e| err(e.to_string()))?;
    let mut files = Vec::with_capacity(archive.len());
    // dist-info directory -> (METADATA, RECORD) texts.
    let mut texts: BTreeMap<String, (Option<String>, Option<String>)> = BTreeMap::new();
    let mut buf = Vec::new();
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(|e| err(e.to_string()))?;
        let name = entry.name().map_err(|e| err(e.to_string()))?.to_string();
        let mut hasher = Sha256::new();
        buf.clear();
        let wanted = dist_info_file(&name);
        let size = if wanted.is_some() && entry.size() <= TEXT_LIMIT {
            entry
                .read_to_end(&mut buf)
                .map_err(|e| err(format!("{name}: {e}")))?;
            hasher.update(&buf);
            buf.len() as u64
        } else {
            std::io::copy(&mut entry, &mut HashWriter(&mut hasher))
                .map_err(|e| err(format!("{name}: {e}")))?
        };
        if let Some((dir, file)) = wanted
            && !buf.is_empty()
        {
            let text = String::from_utf8_lossy(&buf).into_owned();
            let slot = texts.entry(dir.to_string()).or_default();
            match file {
                "METADATA" => slot.0 = Some(text),
                _ => slot.1 = Some(text),
            }
        }
        files.push(FileFact {
            name,
            sha256: hex(&hasher.finalize()),
            size,
        });
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    let lock_hashes = lock_hashes(plan);

    // Archive path -> the dist-info directory owning it.
    let mut owner: BTreeMap<&str, &str> = BTreeMap::new();
    let mut dists: BTreeMap<String, Distribution> = BTreeMap::new();
    for (dir, (metadata, record)) in &texts {
        let Some(meta) = metadata.as_deref().map(parse_metadata) else {
            continue;
        };
        let base = dir
            .rsplit_once('/')
            .map(|(b, _)| format!("{b}/"))
            .unwrap_or_default();
        let listed: std::collections::BTreeSet<String> = record
            .as_deref()
            .unwrap_or("")
            .lines()
            .filter_map(|l| record_path(l).map(|p| format!("{base}{p}")))
            .collect();
        let mut owned: Vec<FileFact> = Vec::new();
        for f in &files {
            let in_dir = f
                .name
                .strip_prefix(dir.as_str())
                .is_some_and(|r| r.starts_with('/'));
            if in_dir || listed.contains(&f.name) {
                owned.push(f.clone());
            }
        }
        let hashes = lock_hashes
            .get(&(canonical_name(&meta.name), meta.version.clone()))
            .cloned()
            .unwrap_or_default();
        dists.insert(
            dir.clone(),
            Distribution {
                name: meta.name,
                version: meta.version,
                license: meta.license,
                dist_info: dir.clone(),
                files: owned,
                lock_hashes: hashes,
            },
        );
    }
    for d in dists.values() {
        for f in &d.files {
            owner.insert(f.name.as_str(), d.dist_info.as_str());
        }
    }
    let own_files = files
        .iter()
        .filter(|f| !owner.contains_key(f.name.as_str()))
        .cloned()
        .collect();
    let mut distributions: Vec<Distribution> = dists.into_values().collect();
    distributions.sort_by(|a, b| {
        (canonical_name(&a.name), &a.version, &a.dist_info).cmp(&(
            canonical_name(&b.name),
            &b.version,
            &b.dist_info,
        ))
    });
    Ok(ZipContents {
        kind: plan.kind.label(),
        name: plan.name.clone(),
        file_name: zip
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        sha256,
        size: bytes.len() as u64,
        distributions,
        own_files,
        runtime: plan.runtime.name(),
        architecture: plan.architecture.as_str().to_string(),
    })
}

/// The hashes the plan's lockfile records, by (PEP 503 name, version);
/// empty without a lock (a requirements file's `--hash` options are not
/// read) or when it cannot be read (the build read it a moment ago).
fn lock_hashes(plan: &Plan) -> BTreeMap<(String, String), Vec<String>> {
    use crate::stages::deps::installer::Target;
    let Some(lock) = plan.deps.as_ref().and_then(|d| d.lock.as_ref()) else {
        return BTreeMap::new();
    };
    if lock.kind == crate::manifest::LockKind::Pyproject {
        return BTreeMap::new();
    }
    let target = Target {
        runtime: plan.runtime,
        arch: plan.architecture,
    };
    match crate::stages::deps::lockfile::select(lock, target) {
        Ok(selection) => selection
            .pinned
            .into_iter()
            .filter(|p| p.local.is_none())
            .map(|p| ((canonical_name(&p.name), p.version), p.hashes))
            .collect(),
        Err(_) => BTreeMap::new(),
    }
}

/// `dir/NAME-VER.dist-info/METADATA` or `.../RECORD` -> (dist-info dir, file).
fn dist_info_file(name: &str) -> Option<(&str, &str)> {
    let (dir, file) = name.rsplit_once('/')?;
    if !matches!(file, "METADATA" | "RECORD") {
        return None;
    }
    let leaf = dir.rsplit('/').next()?;
    leaf.ends_with(".dist-info").then_some((dir, file))
}

/// The path of one RECORD row (CSV: quoted when it holds a comma).
fn record_path(line: &str) -> Option<String> {
    let line = line.trim_end_matches('\r');
    let path = if let Some(rest) = line.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = rest.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    out.push('"');
                } else {
                    break;
                }
            } else {
                out.push(c);
            }
        }
        out
    } else {
        line.split(',').next()?.to_string()
    };
    (!path.is_empty() && !path.starts_with('/') && !path.split('/').any(|s| s == ".."))
        .then_some(path)
}

struct Metadata {
    name: String,
    version: String,
    license: License,
}

/// The headers of a METADATA file (RFC 822 style: folded lines continue
/// with whitespace; the body after the first blank line is the
/// description and is not read).
fn parse_metadata(text: &str) -> Metadata {
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = headers.last_mut() {
                v.push('\n');
                v.push_str(line.trim());
            }
            continue;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let get = |k: &str| {
        headers
            .iter()
            .find(|(h, _)| h == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let expression = get("license-expression");
    let license = if !expression.is_empty() {
        License::Expression(expression)
    } else {
        let mut names = Vec::new();
        let free = get("license");
        let first = free.lines().next().unwrap_or("").trim();
        if !first.is_empty() && !matches!(first, "UNKNOWN" | "UNKNOWN-LICENSE") {
            names.push(first.chars().take(200).collect::<String>());
        }
        for (h, v) in &headers {
            if h == "classifier"
                && v.starts_with("License ::")
                && let Some(last) = v.rsplit("::").next().map(str::trim)
                && !last.is_empty()
                && !names.iter().any(|n| n == last)
            {
                names.push(last.to_string());
            }
        }
        if names.is_empty() {
            License::None
        } else {
            License::Names(names)
        }
    };
    Metadata {
        name: get("name"),
        version: get("version"),
        license,
    }
}

/// A purl version: `+` (a local version) and other reserved characters
/// percent-encoded.
fn purl_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

struct HashWriter<'a>(&'a mut Sha256);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `SOURCE_DATE_EPOCH` as RFC 3339 UTC, when set and valid.
pub(crate) fn source_date(plan: &Plan) -> Option<String> {
    let secs: i64 = plan.env.source_date_epoch.as_deref()?.trim().parse().ok()?;
    let ts = jiff::Timestamp::from_second(secs).ok()?;
    Some(ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
}

/// A UUID (RFC 4122 layout, version 5 bits) taken from the zip's SHA-256:
/// the same zip, the same serial number.
pub(crate) fn uuid_from_sha256(sha256_hex: &str) -> String {
    let mut b = [0u8; 16];
    for (i, byte) in b.iter_mut().enumerate() {
        *byte =
            u8::from_str_radix(sha256_hex.get(2 * i..2 * i + 2).unwrap_or("00"), 16).unwrap_or(0);
    }
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Which document `lbuild sbom` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    CycloneDx,
    Spdx,
}

/// The document for `main` (a function or layer zip) and the layers it
/// runs with, as pretty JSON ending in a newline.
pub(crate) fn document(
    format: Format,
    plan: &Plan,
    main: &ZipContents,
    layers: &[ZipContents],
) -> String {
    let value = match format {
        Format::CycloneDx => cyclonedx::document(plan, main, layers),
        Format::Spdx => spdx::document(plan, main, layers),
    };
    let mut text = serde_json::to_string_pretty(&value).expect("JSON values serialise");
    text.push('\n');
    text
}

/// Writes `text` to `path` atomically (temp file beside it, 0644, renamed).
pub(crate) fn write_beside(path: &Path, text: &str) -> crate::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".lbuild-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(crate::Error::io("cannot write", dir))?;
    tmp.write_all(text.as_bytes())
        .map_err(crate::Error::io("cannot write", tmp.path()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        fs_err::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644))
            .map_err(crate::Error::io("cannot write", tmp.path()))?;
    }
    tmp.persist(path)
        .map_err(|e| crate::Error::io("cannot write", path)(e.error))?;
    Ok(())
}

/// `dist/NAME.zip` -> `dist/NAME.EXT`.
pub(crate) fn beside_zip(zip: &Path, ext: &str) -> PathBuf {
    let stem = zip
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    zip.with_file_name(format!("{stem}.{ext}"))
}

/// Every artifact `built` holds, read back once, by (kind, name).
pub(crate) type Contents = BTreeMap<(&'static str, String), ZipContents>;

/// Reads every artifact `built` holds (once each) with its plan.
pub(crate) fn contents_of(
    ws: &crate::manifest::Workspace,
    built: &crate::outcome::WorkspaceOutcome,
) -> crate::Result<Contents> {
    let mut out = BTreeMap::new();
    for plan in &ws.artifacts {
        if let Some(o) = built.built(&plan.name, plan.kind.label()) {
            out.insert(
                (plan.kind.label(), plan.name.clone()),
                read_zip(plan, &o.zip)?,
            );
        }
    }
    Ok(out)
}

/// The SBOM of `plan`'s zip (a function's with its layers').
fn document_for(
    ws: &crate::manifest::Workspace,
    plan: &Plan,
    contents: &Contents,
    format: Format,
) -> Option<String> {
    let main = contents.get(&(plan.kind.label(), plan.name.clone()))?;
    let layers: Vec<ZipContents> = ws
        .layers_of(plan)
        .iter()
        .filter_map(|l| contents.get(&("layer", l.name.clone())).cloned())
        .collect();
    Some(document(format, plan, main, &layers))
}

/// `build --sbom`: `dist/NAME.cdx.json` beside each zip `built` holds
/// (written only after the build succeeded, so it always describes the
/// zip beside it).
pub(crate) fn write_for_build(
    ws: &crate::manifest::Workspace,
    built: &crate::outcome::WorkspaceOutcome,
    contents: &Contents,
    reporter: &crate::report::Reporter,
) -> crate::Result<()> {
    for plan in &ws.artifacts {
        let Some(o) = built.built(&plan.name, plan.kind.label()) else {
            continue;
        };
        if let Some(text) = document_for(ws, plan, contents, Format::CycloneDx) {
            let path = beside_zip(&o.zip, "cdx.json");
            write_beside(&path, &text)?;
            reporter.info(format!("wrote {}", path.display()));
        }
    }
    Ok(())
}

/// `lbuild sbom`: the document of the one function selected (or of the
/// single function), on stdout.
pub(crate) fn print_for(
    ws: &crate::manifest::Workspace,
    names: &[String],
    built: &crate::outcome::WorkspaceOutcome,
    format: Format,
) -> crate::Result<()> {
    let selected = ws.select(names)?;
    let functions: Vec<&Plan> = selected.into_iter().filter(|p| !p.is_layer()).collect();
    let [plan] = functions.as_slice() else {
        return Err(crate::Error::Input {
            message: format!(
                "lbuild sbom prints one function's SBOM, and {} are selected",
                functions.len()
            ),
            hint: format!(
                "add --function NAME (one of {}), or use `lbuild build --sbom` to write one beside each zip",
                ws.functions()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    };
    let contents = contents_of(ws, built)?;
    let text = document_for(ws, plan, &contents, format).ok_or_else(|| crate::Error::Input {
        message: format!("function {:?} did not build", plan.name),
        hint: "fix the error above".into(),
    })?;
    use std::io::Write;
    std::io::stdout()
        .write_all(text.as_bytes())
        .map_err(crate::Error::io("cannot write", "stdout"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_licences_prefer_the_expression_then_text_and_classifiers() {
        let m = parse_metadata(
            "Metadata-Version: 2.4\nName: Foo_Bar\nVersion: 1.0+local\nLicense-Expression: MIT OR Apache-2.0\nClassifier: License :: OSI Approved :: MIT License\n\nLicense: not a header\n",
        );
        assert_eq!(m.name, "Foo_Bar");
        assert_eq!(m.license, License::Expression("MIT OR Apache-2.0".into()));
        let m = parse_metadata(
            "Name: x\nVersion: 2\nLicense: BSD-3-Clause\n        second line of the text\nClassifier: License :: OSI Approved :: BSD License\nClassifier: Programming Language :: Python\n",
        );
        assert_eq!(
            m.license,
            License::Names(vec!["BSD-3-Clause".into(), "BSD License".into()])
        );
        assert_eq!(
            parse_metadata("Name: x\nLicense: UNKNOWN\n").license,
            License::None
        );
        let d = Distribution {
            name: "Foo_Bar".into(),
            version: "1.0+local".into(),
            license: License::None,
            dist_info: String::new(),
            files: Vec::new(),
            lock_hashes: Vec::new(),
        };
        assert_eq!(d.purl(), "pkg:pypi/foo-bar@1.0%2Blocal");
    }

    #[test]
    fn record_paths_are_read_as_csv_and_never_leave_the_tree() {
        assert_eq!(record_path("a/b.py,sha256=x,3").as_deref(), Some("a/b.py"));
        assert_eq!(
            record_path("\"a,\"\"b\"\".py\",,").as_deref(),
            Some("a,\"b\".py")
        );
        assert_eq!(record_path("../../bin/x,,"), None);
        assert_eq!(record_path("/etc/passwd,,"), None);
    }

    #[test]
    fn the_serial_number_is_a_version_5_uuid_of_the_zip_hash() {
        let u = uuid_from_sha256(&"ab".repeat(32));
        assert_eq!(u, "abababab-abab-5bab-abab-abababababab");
        assert_ne!(u, uuid_from_sha256(&"cd".repeat(32)));
    }
}
