//! Is a lock out of date with the pyproject.toml beside it? uv.lock by
//! comparing the root's recorded requirements with the declared ones;
//! poetry.lock by Poetry's own `content-hash`. A warning, or an error with
//! `locked = true` (the caller decides).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use pep508_rs::MarkerTree;
use serde::Deserialize;

use super::norm;
use crate::manifest::{LockKind, LockPlan};
use crate::stages::deps::DepsError;

#[derive(Deserialize)]
struct UvLockMeta {
    #[serde(default)]
    package: Vec<UvPackageMeta>,
}

#[derive(Deserialize)]
struct UvPackageMeta {
    #[serde(default)]
    source: BTreeMap<String, toml::Value>,
    #[serde(default)]
    metadata: UvMetadata,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
struct UvMetadata {
    #[serde(default)]
    requires_dist: Vec<UvRequirement>,
    #[serde(default)]
    requires_dev: BTreeMap<String, Vec<UvRequirement>>,
}

#[derive(Deserialize)]
struct UvRequirement {
    name: String,
    specifier: Option<String>,
    marker: Option<String>,
    #[serde(default)]
    extras: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Pyproject {
    #[serde(default)]
    project: PyprojectProject,
    #[serde(default)]
    dependency_groups: BTreeMap<String, Vec<toml::Value>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
struct PyprojectProject {
    #[serde(default)]
    dependencies: Vec<String>,
    #[serde(default)]
    optional_dependencies: BTreeMap<String, Vec<String>>,
}

/// One requirement in a comparable form: name, extras, specifiers, marker.
type Comparable = (String, Vec<String>, Vec<String>, String);

fn comparable(
    name: &str,
    extras: &[String],
    specifier: Option<&str>,
    marker: &MarkerTree,
) -> Comparable {
    let mut extras: Vec<String> = extras.iter().map(|e| norm(e)).collect();
    extras.sort();
    let mut specs: Vec<String> = specifier
        .unwrap_or_default()
        .split(',')
        .map(|s| s.chars().filter(|c| !c.is_whitespace()).collect::<String>())
        .filter(|s| !s.is_empty())
        .collect();
    specs.sort();
    let marker = marker.contents().map(|c| c.to_string()).unwrap_or_default();
    (norm(name), extras, specs, marker)
}

fn from_pep508(text: &str, extra: Option<&str>) -> Option<Comparable> {
    let r = pep508_rs::Requirement::<pep508_rs::VerbatimUrl>::from_str(text).ok()?;
    let mut marker = r.marker.clone();
    if let Some(e) = extra {
        let e = MarkerTree::from_str(&format!("extra == '{e}'")).ok()?;
        marker.and(e);
    }
    let spec = match &r.version_or_url {
        Some(pep508_rs::VersionOrUrl::VersionSpecifier(s)) => Some(s.to_string()),
        _ => None,
    };
    let extras: Vec<String> = r.extras.iter().map(|e| e.to_string()).collect();
    Some(comparable(
        r.name.as_ref(),
        &extras,
        spec.as_deref(),
        &marker,
    ))
}

/// Python's `json.dumps(value, sort_keys=True)` (default separators,
/// `ensure_ascii`), over a TOML value as `tomllib` loads it: what Poetry
/// hashes for `content-hash`.
fn python_json(v: Option<&toml::Value>, out: &mut String) {
    use std::fmt::Write;
    let Some(v) = v else {
        out.push_str("null");
        return;
    };
    match v {
        toml::Value::String(s) => {
            out.push('"');
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    '\u{8}' => out.push_str("\\b"),
                    '\u{c}' => out.push_str("\\f"),
                    c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                        let mut buf = [0u16; 2];
                        for unit in c.encode_utf16(&mut buf) {
                            let _ = write!(out, "\\u{unit:04x}");
                        }
                    }
                    c => out.push(c),
                }
            }
            out.push('"');
        }
        toml::Value::Integer(i) => {
            let _ = write!(out, "{i}");
        }
        toml::Value::Float(f) => {
            // Python's repr for the floats a pyproject holds (1.0, 0.5).
            if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e16 {
                let _ = write!(out, "{f:.1}");
            } else {
                let _ = write!(out, "{f}");
            }
        }
        toml::Value::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
        toml::Value::Datetime(d) => {
            let _ = write!(out, "\"{d}\"");
        }
        toml::Value::Array(a) => {
            out.push('[');
            for (i, item) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                python_json(Some(item), out);
            }
            out.push(']');
        }
        toml::Value::Table(t) => {
            out.push('{');
            let mut keys: Vec<&String> = t.keys().collect();
            keys.sort();
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                python_json(Some(&toml::Value::String(k.clone())), out);
                out.push_str(": ");
                python_json(t.get(k), out);
            }
            out.push('}');
        }
    }
}

/// Poetry's `content-hash` of a pyproject (`Locker._get_content_hash`):
/// sha256 over `json.dumps(relevant, sort_keys=True)`, where `relevant`
/// is `requires-python`, `dependencies` and `optional-dependencies` of
/// `[project]` (those present), the whole `[dependency-groups]` table
/// when `with_dependency_groups` and it is not empty (Poetry 2.3 and
/// later), and `dependencies`, `source`, `extras`, `dev-dependencies`,
/// `group` of `[tool.poetry]` (those present; the first four as null when
/// absent and neither of the others has content), nested as `{"project":
/// ..., "dependency-groups": ..., "tool": {"poetry": ...}}` when either
/// has content, else the `[tool.poetry]` part alone.
pub(super) fn poetry_content_hash(pyproject: &toml::Table, with_dependency_groups: bool) -> String {
    const LEGACY: [&str; 4] = ["dependencies", "source", "extras", "dev-dependencies"];
    const PROJECT: [&str; 3] = ["requires-python", "dependencies", "optional-dependencies"];
    let empty = toml::Table::new();
    let project = pyproject
        .get("project")
        .and_then(|p| p.as_table())
        .unwrap_or(&empty);
    let poetry = pyproject
        .get("tool")
        .and_then(|t| t.get("poetry"))
        .and_then(|p| p.as_table())
        .unwrap_or(&empty);
    let relevant_project: Vec<(&str, &toml::Value)> = PROJECT
        .iter()
        .filter_map(|k| project.get(*k).map(|v| (*k, v)))
        .collect();
    // Python's truth: an empty table (or list, or string) is no content.
    let groups = pyproject
        .get("dependency-groups")
        .filter(|_| with_dependency_groups)
        .filter(|g| match g {
            toml::Value::Table(t) => !t.is_empty(),
            toml::Value::Array(a) => !a.is_empty(),
            toml::Value::String(s) => !s.is_empty(),
            _ => true,
        });
    let elsewhere = !relevant_project.is_empty() || groups.is_some();
    // (key, value or None for null), sorted as json.dumps sorts.
    let mut relevant_poetry: Vec<(&str, Option<&toml::Value>)> = LEGACY
        .iter()
        .chain(&["group"])
        .filter_map(|k| match poetry.get(*k) {
            Some(v) => Some((*k, Some(v))),
            None if LEGACY.contains(k) && !elsewhere => Some((*k, None)),
            None => None,
        })
        .collect();
    relevant_poetry.sort_by_key(|(k, _)| *k);
    let mut poetry_json = String::from("{");
    for (i, (k, v)) in relevant_poetry.iter().enumerate() {
        if i > 0 {
            poetry_json.push_str(", ");
        }
        python_json(Some(&toml::Value::String(k.to_string())), &mut poetry_json);
        poetry_json.push_str(": ");
        python_json(*v, &mut poetry_json);
    }
    poetry_json.push('}');
    let text = if elsewhere {
        // Top-level keys in json.dumps order: "dependency-groups" <
        // "project" < "tool".
        let mut parts = Vec::new();
        if let Some(g) = groups {
            let mut json = String::new();
            python_json(Some(g), &mut json);
            parts.push(format!("\"dependency-groups\": {json}"));
        }
        if !relevant_project.is_empty() {
            let mut t = toml::Table::new();
            for (k, v) in &relevant_project {
                t.insert(k.to_string(), (*v).clone());
            }
            let mut json = String::new();
            python_json(Some(&toml::Value::Table(t)), &mut json);
            parts.push(format!("\"project\": {json}"));
        }
        parts.push(format!("\"tool\": {{\"poetry\": {poetry_json}}}"));
        format!("{{{}}}", parts.join(", "))
    } else {
        poetry_json
    };
    use sha2::Digest;
    crate::entry::hex(&sha2::Sha256::digest(text.as_bytes()))
}

/// The Poetry version a poetry.lock's first line names (`# This file is
/// automatically @generated by Poetry 2.1.3 and ...`).
fn poetry_version_of(lock_text: &str) -> Option<pep508_rs::pep440_rs::Version> {
    let first = lock_text.lines().next()?;
    let rest = &first[first.find("Poetry ")? + "Poetry ".len()..];
    rest.split(' ').next()?.parse().ok()
}

/// Is the poetry.lock at `lock` out of date with the pyproject.toml beside
/// it, by Poetry's own rule (its recorded `content-hash`)?
fn poetry_out_of_date(lock: &LockPlan) -> Result<Option<String>, DepsError> {
    #[derive(Deserialize)]
    struct Meta {
        metadata: Option<MetaInner>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "kebab-case")]
    struct MetaInner {
        content_hash: Option<String>,
    }
    let pyproject_path = beside(lock);
    // An unreadable lock is the selection's to report, with its line.
    let Some((lock_text, recorded)) = fs_err::read_to_string(&lock.path).ok().and_then(|text| {
        let hash = toml::from_str::<Meta>(&text).ok()?.metadata?.content_hash?;
        Some((text, hash))
    }) else {
        return Ok(None);
    };
    let py: toml::Table = read_pyproject(lock, &pyproject_path)?;
    let computed = poetry_content_hash(&py, true);
    // Poetry's own rule (`Locker.is_fresh`): a lock written before Poetry
    // 2.3.0 hashed no [dependency-groups], and is compared without them.
    let before_groups = poetry_version_of(&lock_text)
        .is_some_and(|v| v < pep508_rs::pep440_rs::Version::new([2, 3, 0]));
    let fresh =
        computed == recorded || (before_groups && poetry_content_hash(&py, false) == recorded);
    Ok((!fresh).then(|| {
        format!(
            "{} is out of date with {}: its content-hash ({}) is not the hash of pyproject.toml's dependency sections now ({}), so they changed since `poetry lock`",
            lock.path.display(),
            pyproject_path.display(),
            short(&recorded),
            short(&computed)
        )
    }))
}

/// The pyproject.toml beside a lock.
fn beside(lock: &LockPlan) -> PathBuf {
    lock.path
        .parent()
        .unwrap_or(Path::new("."))
        .join("pyproject.toml")
}

/// The pyproject.toml a lock was made from, parsed: a lock whose project
/// cannot be read cannot be said to be current, so that is an error, not
/// a fresh lock.
fn read_pyproject<T: serde::de::DeserializeOwned>(
    lock: &LockPlan,
    path: &Path,
) -> Result<T, DepsError> {
    let refused = |why: String| {
        DepsError::Refused {
        message: format!(
            "cannot check {} against {}: {why}",
            lock.path.display(),
            path.display()
        ),
        hint: "restore the project's pyproject.toml beside the lock (the lock is made from it), or fix it and re-lock".into(),
    }
    };
    let text = fs_err::read_to_string(path).map_err(|e| refused(e.to_string()))?;
    toml::from_str(&text).map_err(|e| {
        let line = e.span().map_or(1, |s| {
            text[..s.start.min(text.len())].matches('\n').count() + 1
        });
        refused(format!("line {line}: {}", e.message().trim()))
    })
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

/// Is the uv.lock at `lock` out of date with the pyproject.toml beside
/// it (or a poetry.lock with its, by Poetry's content-hash)? Returns the
/// message saying how (None when it is current, or when the kind of lock
/// records nothing to tell: a pylock.toml). A warning, or an error with
/// `locked = true`. A pyproject.toml that cannot be read is an error.
pub(crate) fn out_of_date(lock: &LockPlan) -> Result<Option<String>, DepsError> {
    if lock.kind == LockKind::Poetry {
        return poetry_out_of_date(lock);
    }
    if lock.kind != LockKind::Uv {
        return Ok(None);
    }
    let pyproject_path = beside(lock);
    // An unreadable lock, or one without a root, is the selection's to
    // report, with its line.
    let Some(parsed) = fs_err::read_to_string(&lock.path)
        .ok()
        .and_then(|text| toml::from_str::<UvLockMeta>(&text).ok())
    else {
        return Ok(None);
    };
    let py: Pyproject = read_pyproject(lock, &pyproject_path)?;
    let Some(root) = parsed.package.iter().find(|p| {
        ["editable", "virtual"]
            .iter()
            .any(|k| p.source.get(*k).and_then(|v| v.as_str()) == Some("."))
    }) else {
        return Ok(None);
    };
    let from_lock = |list: &[UvRequirement]| -> BTreeSet<Comparable> {
        list.iter()
            .map(|r| {
                let m = r
                    .marker
                    .as_deref()
                    .and_then(|m| MarkerTree::from_str(m).ok())
                    .unwrap_or(MarkerTree::TRUE);
                comparable(&r.name, &r.extras, r.specifier.as_deref(), &m)
            })
            .collect()
    };
    let locked = from_lock(&root.metadata.requires_dist);
    let mut declared: BTreeSet<Comparable> = py
        .project
        .dependencies
        .iter()
        .filter_map(|d| from_pep508(d, None))
        .collect();
    for (extra, list) in &py.project.optional_dependencies {
        declared.extend(
            list.iter()
                .filter_map(|d| from_pep508(d, Some(&norm(extra)))),
        );
    }
    let shown = |set: &BTreeSet<Comparable>| -> String {
        set.iter()
            .map(|c| c.0.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
            .join(", ")
    };
    let name = |p: &Path| p.display().to_string();
    if locked != declared {
        let added: BTreeSet<Comparable> = declared.difference(&locked).cloned().collect();
        let removed: BTreeSet<Comparable> = locked.difference(&declared).cloned().collect();
        return Ok(Some(format!(
            "{} is out of date with {}: the project's dependencies changed since it was locked (in pyproject.toml, not in the lock: {}; in the lock, not in pyproject.toml: {})",
            name(&lock.path),
            name(&pyproject_path),
            if added.is_empty() {
                "none".into()
            } else {
                shown(&added)
            },
            if removed.is_empty() {
                "none".into()
            } else {
                shown(&removed)
            },
        )));
    }
    let locked_groups: BTreeMap<String, BTreeSet<Comparable>> = root
        .metadata
        .requires_dev
        .iter()
        .map(|(g, l)| (norm(g), from_lock(l)))
        .collect();
    let declared_groups: BTreeMap<String, BTreeSet<Comparable>> = py
        .dependency_groups
        .iter()
        .map(|(g, l)| {
            let set = l
                .iter()
                .filter_map(|v| v.as_str())
                .filter_map(|d| from_pep508(d, None))
                .collect();
            (norm(g), set)
        })
        .collect();
    // uv records only groups with entries; include-group tables are skipped.
    let nonempty = |m: BTreeMap<String, BTreeSet<Comparable>>| -> BTreeMap<_, _> {
        m.into_iter().filter(|(_, s)| !s.is_empty()).collect()
    };
    if nonempty(locked_groups) != nonempty(declared_groups) {
        return Ok(Some(format!(
            "{} is out of date with {}: [dependency-groups] changed since it was locked",
            name(&lock.path),
            name(&pyproject_path)
        )));
    }
    Ok(None)
}
