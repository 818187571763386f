//! `lbuild verify`: rebuild from the manifest with nothing lbuild cached
//! (a fresh cache directory and machine store in a temporary directory,
//! no remote store; the installer's own download cache is allowed) into a
//! temporary output, then compare: with the artifacts' zips on disk (or
//! `--zip PATH`) byte for byte, or with `--deployed` against the
//! `CodeSha256` AWS reports for the function and its layers.
//!
//! It owns the isolated rebuild's plan (`isolated`) and the zip diff
//! (`diff_zips`: entries added, removed or changed and in which field, and
//! where the first differing byte lies). It does not build by itself (the
//! pipeline does) and makes no write call to AWS.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::context::BuildContext;
use crate::manifest::Workspace;
use crate::outcome::WorkspaceOutcome;
use crate::pipeline;
use crate::report::{Mode, Reporter};
use crate::store::MachineStore;

/// What `lbuild verify` compares the rebuild with.
#[derive(Debug, Clone)]
pub(crate) enum Against {
    /// Each artifact's output zip (`dist/NAME.zip`).
    Outputs,
    /// One zip, for the one function selected.
    Zip(PathBuf),
    /// What AWS has deployed.
    Deployed,
}

/// One artifact's comparison.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Check {
    pub name: String,
    pub kind: &'static str,
    /// The zip path, or the function / layer ARN on AWS.
    pub against: String,
    pub equal: bool,
    /// The rebuild's sha256 (hex; base64 `CodeSha256` for `--deployed`).
    pub rebuilt: String,
    /// The other side's, same encoding (empty when it is missing).
    pub found: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<ZipDiff>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// How two zips differ, entry by entry.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub(crate) struct ZipDiff {
    /// Entries in the zip checked that the rebuild does not have.
    pub added: Vec<String>,
    /// Entries of the rebuild the zip checked lacks.
    pub removed: Vec<String>,
    /// Entries in both that differ, with what differs (`content`, `mode`,
    /// `compression`, `header`).
    pub changed: Vec<Changed>,
    /// The first differing byte of the files and where it lies in the
    /// rebuild's layout (`local header and data of NAME`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_difference: Option<Offset>,
    /// The zip checked could not be read as a zip.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct Changed {
    pub name: String,
    pub fields: Vec<&'static str>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct Offset {
    pub offset: u64,
    pub region: String,
}

/// `lbuild verify`: see the module docs. Exit 0 when everything matches;
/// otherwise the differences are printed and the error exits 1.
pub(crate) fn run(
    ws: &Workspace,
    names: &[String],
    against: &Against,
    reporter: &Reporter,
) -> crate::Result<()> {
    let selected = ws.select(names)?;
    if let Against::Zip(path) = against {
        let functions = selected.iter().filter(|p| !p.is_layer()).count();
        if functions != 1 {
            return Err(crate::Error::Input {
                message: format!(
                    "--zip {} compares one function, but {functions} are selected",
                    path.display()
                ),
                hint: "add --function NAME".into(),
            });
        }
        if !path.is_file() {
            return Err(crate::Error::Input {
                message: format!("--zip {}: no such file", path.display()),
                hint: "give the path of a zip to check".into(),
            });
        }
    }
    #[cfg(not(feature = "aws"))]
    if matches!(against, Against::Deployed) {
        return Err(crate::Error::without_aws(
            "`lbuild verify --deployed`",
            ", or verify a zip (--zip PATH)",
        ));
    }
    let tmp = tempfile::Builder::new()
        .prefix("lbuild-verify-")
        .tempdir()
        .map_err(crate::Error::io(
            "cannot create a temporary directory in",
            std::env::temp_dir(),
        ))?;
    let isolated = isolated(ws, tmp.path())?;
    reporter.info(format!(
        "rebuilding from {} with an empty cache",
        ws.manifest_path.display()
    ));
    // The rebuild's own lines would read as a build of the project.
    let quiet = Reporter::new(Mode::Quiet, false);
    let cx = BuildContext::new(&quiet, MachineStore::at(tmp.path().join("store")), None);
    let mut built = pipeline::build_workspace(&cx, &isolated, names)?;
    if built.single
        && let Some(crate::outcome::ArtifactResult::Failed { .. }) = built.artifacts.first()
        && let crate::outcome::ArtifactResult::Failed { error, .. } = built.artifacts.remove(0)
    {
        // The single form fails with its own error, as `lbuild` does.
        return Err(error);
    }
    if let Some(code) = built.exit_code() {
        crate::output::print_workspace(&built, reporter);
        return Err(crate::Error::ArtifactsFailed {
            failed: built.failures(),
            total: built.artifacts.len(),
            code,
        });
    }
    let checks = match against {
        Against::Outputs => compare_outputs(ws, names, &built, None)?,
        Against::Zip(path) => compare_outputs(ws, names, &built, Some(path))?,
        #[cfg(feature = "aws")]
        Against::Deployed => compare_deployed(ws, names, &built)?,
        #[cfg(not(feature = "aws"))]
        Against::Deployed => unreachable!("refused above"),
    };
    print(&checks, reporter);
    let differing: Vec<&Check> = checks.iter().filter(|c| !c.equal).collect();
    if differing.is_empty() {
        return Ok(());
    }
    Err(crate::Error::Differs {
        message: format!(
            "{} of {} artifacts differ from a rebuild from source: {}",
            differing.len(),
            checks.len(),
            differing
                .iter()
                .map(|c| format!("{} {}", c.kind, c.name))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        hint: "the differences are listed above; rebuild and redeploy from the reviewed commit, or find what changed the zip".into(),
    })
}

/// The workspace with every artifact's cache, store and output moved under
/// `tmp` and no remote store, so the rebuild reuses nothing lbuild cached
/// and writes nothing the project owns. The real outputs stay out of the
/// sources (as another artifact's zip would).
fn isolated(ws: &Workspace, tmp: &Path) -> crate::Result<Workspace> {
    let mut ws = ws.clone();
    let cache = tmp.join("cache");
    let out = tmp.join("out");
    for dir in [&cache, &out] {
        fs_err::create_dir_all(dir).map_err(crate::Error::io("cannot create", dir.clone()))?;
    }
    let originals: Vec<PathBuf> = ws.artifacts.iter().map(|p| p.output.path.clone()).collect();
    ws.cache_dir = cache.clone();
    for plan in &mut ws.artifacts {
        plan.cache_dir = cache.clone();
        plan.output.path = out.join(format!("{}-{}.zip", plan.kind.label(), plan.name));
        plan.env.store_dir = Some(tmp.join("store"));
        plan.env.remote_cache = None;
        plan.remote_cache = None;
    }
    let mut outputs: std::collections::HashSet<PathBuf> = originals.iter().cloned().collect();
    outputs.extend(ws.artifacts.iter().map(|p| p.output.path.clone()));
    let outputs = std::sync::Arc::new(outputs);
    for plan in &mut ws.artifacts {
        plan.workspace_outputs = outputs.clone();
    }
    Ok(ws)
}

fn compare_outputs(
    ws: &Workspace,
    names: &[String],
    built: &WorkspaceOutcome,
    zip: Option<&Path>,
) -> crate::Result<Vec<Check>> {
    let mut checks = Vec::new();
    for plan in ws.select(names)? {
        let Some(o) = built.built(&plan.name, plan.kind.label()) else {
            continue;
        };
        // --zip names the function's zip; its layers are checked against
        // their outputs.
        let path = match zip {
            Some(z) if !plan.is_layer() => z.to_path_buf(),
            _ => plan.output.path.clone(),
        };
        let rebuilt = fs_err::read(&o.zip).map_err(crate::Error::io("cannot read", &o.zip))?;
        let (found, note) = match fs_err::read(&path) {
            Ok(b) => (Some(b), None),
            Err(e) => (None, Some(format!("cannot read {}: {e}", path.display()))),
        };
        let found_sha = found.as_deref().map(sha256_hex).unwrap_or_default();
        let equal = found.as_deref() == Some(rebuilt.as_slice());
        let diff = match (&found, equal) {
            (Some(f), false) => Some(diff_zips(&rebuilt, f)),
            _ => None,
        };
        checks.push(Check {
            name: plan.name.clone(),
            kind: plan.kind.label(),
            against: path.display().to_string(),
            equal,
            rebuilt: o.sha256.clone(),
            found: found_sha,
            diff,
            note,
        });
    }
    Ok(checks)
}

#[cfg(feature = "aws")]
fn compare_deployed(
    ws: &Workspace,
    names: &[String],
    built: &WorkspaceOutcome,
) -> crate::Result<Vec<Check>> {
    let deployer = crate::deploy::Deployer::connect()?;
    let mut checks = Vec::new();
    for plan in ws.select(names)?.into_iter().filter(|p| !p.is_layer()) {
        let Some(o) = built.built(&plan.name, "function") else {
            continue;
        };
        let aws_name = &plan.lambda.deploy_name;
        let layers = ws.layers_of(plan);
        let layer_names: Vec<String> = layers.iter().map(|l| l.name.clone()).collect();
        let deployed = deployer.deployed_code(aws_name, &layer_names)?;
        checks.push(Check {
            name: plan.name.clone(),
            kind: "function",
            against: format!("function {aws_name} in {}", deployer.region()),
            equal: deployed.code_sha256 == o.code_sha256,
            rebuilt: o.code_sha256.clone(),
            found: deployed.code_sha256.clone(),
            diff: None,
            note: None,
        });
        for layer in layers {
            let Some(lo) = built.built(&layer.name, "layer") else {
                continue;
            };
            let attached = deployed
                .layers
                .iter()
                .find(|(arn, _)| arn.split(':').nth(6) == Some(layer.name.as_str()));
            checks.push(match attached {
                Some((arn, sha)) => Check {
                    name: layer.name.clone(),
                    kind: "layer",
                    against: arn.clone(),
                    equal: *sha == lo.code_sha256,
                    rebuilt: lo.code_sha256.clone(),
                    found: sha.clone(),
                    diff: None,
                    note: None,
                },
                None => Check {
                    name: layer.name.clone(),
                    kind: "layer",
                    against: format!("the layers of function {aws_name}"),
                    equal: false,
                    rebuilt: lo.code_sha256.clone(),
                    found: String::new(),
                    diff: None,
                    note: Some(format!(
                        "no version of layer {} is attached to {aws_name}",
                        layer.name
                    )),
                },
            });
        }
    }
    Ok(checks)
}

fn print(checks: &[Check], reporter: &Reporter) {
    if reporter.mode == Mode::Json {
        let equal = checks.iter().all(|c| c.equal);
        let doc = serde_json::json!({"verified": equal, "artifacts": checks});
        reporter.json(&doc);
        return;
    }
    for c in checks {
        if c.equal {
            if reporter.mode == Mode::Human {
                reporter.result(format!(
                    "{} {}: same as {} ({})",
                    c.kind,
                    c.name,
                    esc(&c.against),
                    c.rebuilt
                ));
            }
            continue;
        }
        reporter.result(format!(
            "{} {}: differs from {}: rebuilt {}, found {}",
            c.kind,
            c.name,
            esc(&c.against),
            c.rebuilt,
            if c.found.is_empty() {
                "nothing"
            } else {
                &c.found
            }
        ));
        if let Some(note) = &c.note {
            reporter.result(format!("  {}", esc(note)));
        }
        let Some(d) = &c.diff else { continue };
        if let Some(why) = &d.unreadable {
            reporter.result(format!("  not a readable zip: {}", esc(why)));
        }
        for n in &d.added {
            reporter.result(format!("  added: {}", esc(n)));
        }
        for n in &d.removed {
            reporter.result(format!("  removed: {}", esc(n)));
        }
        for ch in &d.changed {
            reporter.result(format!(
                "  changed: {} ({})",
                esc(&ch.name),
                ch.fields.join(", ")
            ));
        }
        if let Some(o) = &d.first_difference {
            reporter.result(format!(
                "  first differing byte: offset {}, in {}",
                o.offset,
                esc(&o.region)
            ));
        }
    }
}

/// Text from a zip or AWS, one line, control characters escaped.
fn esc(s: &str) -> String {
    crate::sanitize::escape_controls(s)
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    crate::sbom::hex(&sha2::Sha256::digest(bytes))
}

/// One entry as read raw (compressed bytes and every header field).
struct RawEntry {
    method: zip::CompressionMethod,
    raw: Vec<u8>,
    /// The inflated content, `None` when it does not inflate or fails its CRC.
    content: Option<Vec<u8>>,
    crc: u32,
    size: u64,
    mode: u32,
    header: Header,
    /// The local record's byte range (header and data), and the central
    /// record's start.
    local: (u64, u64),
    central: u64,
}

type Entries = Vec<(String, RawEntry)>;

/// The header fields a raw copy carries besides the data: time, flags,
/// extra fields, comment, version made by.
type Header = (
    Option<zip::DateTime>,
    u16,
    Option<Vec<u8>>,
    Vec<u8>,
    (u8, u8),
);

/// Entries larger than this are compared by their raw bytes and CRC only.
const CONTENT_LIMIT: u64 = 256 << 20;

fn read_entries(bytes: &[u8]) -> Result<Entries, String> {
    let mut archive =
        zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(archive.len());
    for i in 0..archive.len() {
        let mut e = archive.by_index_raw(i).map_err(|e| e.to_string())?;
        let name = String::from_utf8_lossy(e.name_raw()).into_owned();
        let mut raw = Vec::new();
        e.read_to_end(&mut raw)
            .map_err(|err| format!("{name}: {err}"))?;
        let flags = e.flags().as_u16();
        let header = (
            e.last_modified(),
            flags,
            e.extra_data(),
            e.comment_raw().to_vec(),
            e.version_made_by(),
        );
        let (method, crc, size, mode) = (
            e.compression(),
            e.crc32(),
            e.size(),
            e.external_attributes(),
        );
        let (local, central) = (e.header_start(), e.central_header_start());
        drop(e);
        let mut content = Vec::new();
        let content = match archive.by_index(i) {
            Ok(mut f) if f.size() <= CONTENT_LIMIT => {
                f.read_to_end(&mut content).ok().map(|_| content)
            }
            _ => None,
        };
        out.push((
            name,
            RawEntry {
                method,
                raw,
                content,
                crc,
                size,
                mode,
                header,
                local: (local, 0),
                central,
            },
        ));
    }
    // Each local record runs to the next one (or the central directory).
    let cd_start = out.iter().map(|(_, e)| e.central).min().unwrap_or(0);
    let mut starts: Vec<u64> = out.iter().map(|(_, e)| e.local.0).collect();
    starts.sort_unstable();
    for (_, e) in &mut out {
        e.local.1 = starts
            .iter()
            .copied()
            .find(|s| *s > e.local.0)
            .unwrap_or(cd_start);
    }
    Ok(out)
}

/// How `found` differs from `rebuilt` (see [`ZipDiff`]).
pub(crate) fn diff_zips(rebuilt: &[u8], found: &[u8]) -> ZipDiff {
    let mut d = ZipDiff::default();
    let ours = read_entries(rebuilt).unwrap_or_default();
    let first = rebuilt
        .iter()
        .zip(found)
        .position(|(a, b)| a != b)
        .map(|p| p as u64)
        .or_else(|| (rebuilt.len() != found.len()).then(|| rebuilt.len().min(found.len()) as u64));
    d.first_difference = first.map(|offset| Offset {
        offset,
        region: region_of(&ours, offset),
    });
    let theirs = match read_entries(found) {
        Ok(t) => t,
        Err(e) => {
            d.unreadable = Some(e);
            return d;
        }
    };
    let find =
        |list: &Entries, name: &str| -> Option<usize> { list.iter().position(|(n, _)| n == name) };
    for (name, _) in &theirs {
        if find(&ours, name).is_none() {
            d.added.push(name.clone());
        }
    }
    for (name, ours_e) in &ours {
        let Some(i) = find(&theirs, name) else {
            d.removed.push(name.clone());
            continue;
        };
        let theirs_e = &theirs[i].1;
        let mut fields = Vec::new();
        let same_raw = ours_e.raw == theirs_e.raw && ours_e.method == theirs_e.method;
        let same_content =
            same_raw || (ours_e.content.is_some() && ours_e.content == theirs_e.content);
        if !same_content || ours_e.crc != theirs_e.crc || ours_e.size != theirs_e.size {
            fields.push("content");
        }
        if ours_e.mode != theirs_e.mode {
            fields.push("mode");
        }
        if !same_raw && same_content {
            fields.push("compression");
        }
        if ours_e.header != theirs_e.header {
            fields.push("header");
        }
        if !fields.is_empty() {
            d.changed.push(Changed {
                name: name.clone(),
                fields,
            });
        }
    }
    let order_ours: Vec<&String> = ours.iter().map(|(n, _)| n).collect();
    let order_theirs: Vec<&String> = theirs.iter().map(|(n, _)| n).collect();
    if d.added.is_empty() && d.removed.is_empty() && order_ours != order_theirs {
        d.changed.push(Changed {
            name: "(entry order)".into(),
            fields: vec!["order"],
        });
    }
    d
}

/// Where byte `offset` lies in a zip laid out as `entries`.
fn region_of(entries: &Entries, offset: u64) -> String {
    if let Some((name, _)) = entries
        .iter()
        .find(|(_, e)| (e.local.0..e.local.1).contains(&offset))
    {
        return format!("the local header and data of {name}");
    }
    let mut centrals: Vec<(u64, &str)> = entries
        .iter()
        .map(|(n, e)| (e.central, n.as_str()))
        .collect();
    centrals.sort_unstable();
    match centrals.iter().rev().find(|(start, _)| *start <= offset) {
        Some((_, name)) => {
            format!("the central directory record of {name} (or the end record after it)")
        }
        None => "the start of the file".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn zip_of(files: &[(&str, &[u8], u32)]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, data, mode) in files {
            let opts = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Stored)
                .last_modified_time(zip::DateTime::default())
                .unix_permissions(*mode);
            w.start_file(*name, opts).unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn equal_zips_have_no_difference() {
        let a = zip_of(&[("a.py", b"x = 1\n", 0o644)]);
        assert_eq!(diff_zips(&a, &a), ZipDiff::default());
    }

    #[test]
    fn names_added_removed_and_what_changed() {
        let ours = zip_of(&[
            ("a.py", b"x = 1\n", 0o644),
            ("b.py", b"y\n", 0o644),
            ("c.sh", b"run\n", 0o644),
        ]);
        let theirs = zip_of(&[
            ("a.py", b"x = 2\n", 0o644),
            ("c.sh", b"run\n", 0o755),
            ("d.py", b"new\n", 0o644),
        ]);
        let d = diff_zips(&ours, &theirs);
        assert_eq!(d.added, ["d.py"]);
        assert_eq!(d.removed, ["b.py"]);
        assert_eq!(
            d.changed,
            [
                Changed {
                    name: "a.py".into(),
                    fields: vec!["content"]
                },
                Changed {
                    name: "c.sh".into(),
                    fields: vec!["mode"]
                },
            ]
        );
        let first = d.first_difference.unwrap();
        assert!(first.region.contains("a.py"), "{first:?}");
    }

    #[test]
    fn a_flipped_data_byte_is_located_in_its_entry() {
        let ours = zip_of(&[("a.py", b"aaaa\n", 0o644), ("b.py", b"bbbb\n", 0o644)]);
        let mut theirs = ours.clone();
        let at = theirs
            .windows(5)
            .position(|w| w == b"bbbb\n")
            .expect("stored data");
        theirs[at + 1] ^= 1;
        let d = diff_zips(&ours, &theirs);
        assert_eq!(d.changed.len(), 1, "{d:?}");
        assert_eq!(d.changed[0].name, "b.py");
        assert_eq!(d.changed[0].fields, ["content"]);
        assert_eq!(
            d.first_difference,
            Some(Offset {
                offset: at as u64 + 1,
                region: "the local header and data of b.py".into()
            })
        );
        // Not a zip at all: still located.
        let d = diff_zips(&ours, b"garbage");
        assert!(d.unreadable.is_some());
        assert_eq!(d.first_difference.unwrap().offset, 0);
    }
}
