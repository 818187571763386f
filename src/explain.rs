//! "Why did this run?": each stage's inputs at the last build of an
//! artifact, kept compactly (names, short content hashes, values), and
//! the difference to this build's, as short reasons
//! ("shop/handler.py changed", "level 6 → 9").
//!
//! Inputs are recorded only when a stage's key differs from the one last
//! recorded for the artifact (so a no-op build reads one small row per
//! stage and writes nothing), and reasons are formatted only when they
//! will be shown (`-v`, `lbuild explain`, `--json`: the context's `reasons`).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::cache::Cache;
use crate::entry::{Entry, Hash};
use crate::manifest::Plan;

/// The most file reasons listed per stage (the rest are counted).
const MAX_FILE_REASONS: usize = 8;

/// A stage's key inputs, compactly: the labelled values in the order they
/// were fed, the archive entries by name with a short content hash, and
/// notes that are recorded but not hashed (pinned requirement lines).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Inputs {
    #[serde(rename = "i", default)]
    pub items: Vec<(String, String)>,
    /// (name, first 16 hex digits of the BLAKE3, "x" appended if executable)
    #[serde(rename = "f", default)]
    pub files: Vec<(String, String)>,
    #[serde(rename = "n", default)]
    pub notes: Vec<(String, String)>,
}

impl Inputs {
    pub(super) fn add_entry(&mut self, e: &Entry) {
        let mut h = e.hash.to_hex()[..16].to_string();
        if e.executable {
            h.push('x');
        }
        self.files.push((e.name.clone(), h));
    }
}

/// The artifact's identity in the record: `function NAME` / `layer NAME`.
pub(crate) fn artifact(plan: &Plan) -> String {
    format!("{} {}", plan.kind.label(), plan.name)
}

/// Whether the stage's inputs must be recorded: its key is not the one
/// last recorded for this artifact. One small read; false on a no-op.
pub(crate) fn needs_inputs(
    cache: &Cache,
    plan: &Plan,
    stage: &str,
    key: &Hash,
) -> crate::Result<bool> {
    Ok(cache.last_inputs_key(&artifact(plan), stage)? != Some(*key))
}

/// Records this build's inputs of `stage` (when `inputs` is given: see
/// [`needs_inputs`]) and returns what differs from the last build, if
/// reasons are wanted. `ran`: the stage did its work (a stage whose key
/// did not change ran because its output was missing or changed).
pub(crate) fn settle_inputs(
    cache: &Cache,
    plan: &Plan,
    stage: &str,
    key: &Hash,
    ran: bool,
    inputs: Option<Inputs>,
    wanted: bool,
) -> crate::Result<Vec<String>> {
    let Some(inputs) = inputs else {
        return Ok(if ran && wanted {
            vec!["inputs unchanged since the last build; its output was missing or changed".into()]
        } else {
            Vec::new()
        });
    };
    let artifact = artifact(plan);
    let reasons = if wanted {
        match cache
            .last_inputs(&artifact, stage)?
            .and_then(|s| serde_json::from_str::<Inputs>(&s).ok())
        {
            Some(before) => {
                let r = diff(&before, &inputs);
                if r.is_empty() {
                    vec!["lbuild's own key format changed".into()]
                } else {
                    r
                }
            }
            None => vec!["no earlier build of this artifact recorded".into()],
        }
    } else {
        Vec::new()
    };
    cache.record_last_inputs(
        &artifact,
        stage,
        key,
        &serde_json::to_string(&inputs).unwrap_or_default(),
    );
    Ok(reasons)
}

fn is_hash(v: &str) -> bool {
    v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The count labels that precede a list of entries (the entries say more).
fn is_count(label: &str, value: &str) -> bool {
    matches!(label, "entries" | "sources" | "config")
        && value.split(", ").all(|v| v.parse::<u64>().is_ok())
}

/// A label naming a file by its content: the file's name.
fn file_label(label: &str) -> &str {
    ["requirements ", "local requirement ", "find-links "]
        .iter()
        .find_map(|p| label.strip_prefix(p))
        .unwrap_or(label.trim_start())
}

/// What differs between two records of one stage, one reason per change.
pub(crate) fn diff(before: &Inputs, now: &Inputs) -> Vec<String> {
    let mut reasons = Vec::new();
    let group = |items: &[(String, String)]| {
        let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut order = Vec::new();
        for (l, v) in items {
            if !m.contains_key(l) {
                order.push(l.clone());
            }
            m.entry(l.clone()).or_default().push(v.clone());
        }
        (m, order)
    };
    let (old, _) = group(&before.items);
    let (new, order) = group(&now.items);
    let notes_before: HashMap<&str, &str> = before
        .notes
        .iter()
        .map(|(l, v)| (l.as_str(), v.as_str()))
        .collect();
    let notes_now: HashMap<&str, &str> = now
        .notes
        .iter()
        .map(|(l, v)| (l.as_str(), v.as_str()))
        .collect();
    for label in &order {
        let n = new[label].join(", ");
        match old.get(label).map(|v| v.join(", ")) {
            Some(o) if o == n => {}
            _ if is_count(label, &n) => {}
            Some(o) if is_hash(&o) && is_hash(&n) => {
                let name = file_label(label);
                let pins = match (
                    notes_before.get(format!("pins {name}").as_str()),
                    notes_now.get(format!("pins {name}").as_str()),
                ) {
                    (Some(a), Some(b)) => pin_changes(a, b),
                    _ => String::new(),
                };
                if pins.is_empty() {
                    reasons.push(format!("{name} changed"));
                } else {
                    reasons.push(format!("{name} changed ({pins})"));
                }
            }
            Some(o) => reasons.push(format!("{label} {}", arrow(&o, &n))),
            None if is_hash(&n) => reasons.push(format!("{} added", file_label(label))),
            None => reasons.push(format!("{label} {n} (new)")),
        }
    }
    for (label, values) in &old {
        if !new.contains_key(label) && !is_count(label, &values.join(", ")) {
            reasons.push(format!("{} removed", file_label(label)));
        }
    }
    reasons.extend(file_changes(&before.files, &now.files));
    reasons
}

/// `old → new`, the words both start with said once
/// ("uv 0.13.8 → 0.13.9").
fn arrow(old: &str, new: &str) -> String {
    let (o, n): (Vec<&str>, Vec<&str>) = (old.split(' ').collect(), new.split(' ').collect());
    let common = o.iter().zip(&n).take_while(|(a, b)| a == b).count();
    if common > 0 && common < o.len() && common < n.len() {
        format!(
            "{} {} → {}",
            o[..common].join(" "),
            o[common..].join(" "),
            n[common..].join(" ")
        )
    } else {
        format!("{old} → {new}")
    }
}

/// Per file: changed, added, removed (at most [`MAX_FILE_REASONS`] named).
fn file_changes(before: &[(String, String)], now: &[(String, String)]) -> Vec<String> {
    let old: HashMap<&str, &str> = before
        .iter()
        .map(|(n, h)| (n.as_str(), h.as_str()))
        .collect();
    let new: HashMap<&str, &str> = now.iter().map(|(n, h)| (n.as_str(), h.as_str())).collect();
    let mut out = Vec::new();
    for (name, h) in now {
        match old.get(name.as_str()) {
            Some(o) if o == h => {}
            Some(o) if o.trim_end_matches('x') == h.trim_end_matches('x') => {
                out.push(format!("{name} mode changed"))
            }
            Some(_) => out.push(format!("{name} changed")),
            None => out.push(format!("{name} added")),
        }
    }
    for (name, _) in before {
        if !new.contains_key(name.as_str()) {
            out.push(format!("{name} removed"));
        }
    }
    if out.len() > MAX_FILE_REASONS {
        let more = out.len() - MAX_FILE_REASONS;
        out.truncate(MAX_FILE_REASONS);
        out.push(format!("and {more} more files"));
    }
    out
}

/// The pinned requirement lines of a file, one `name==version` a line,
/// for the record (see [`pin_changes`]).
pub(crate) fn pinned_lines(text: &str) -> String {
    let mut pins: Vec<String> = text
        .lines()
        .map(|l| l.split(" #").next().unwrap_or("").trim())
        .map(|l| l.split([';', ' ', '\\']).next().unwrap_or("").trim())
        .filter(|l| !l.starts_with('#') && !l.starts_with('-') && l.contains("=="))
        .map(str::to_string)
        .collect();
    pins.sort();
    pins.join("\n")
}

/// "pydantic 2.11.7 → 2.11.9, +requests 2.32.3, -six": the pins that moved.
fn pin_changes(before: &str, now: &str) -> String {
    let parse = |t: &str| -> BTreeMap<String, String> {
        t.lines()
            .filter_map(|l| l.split_once("=="))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect()
    };
    let (old, new) = (parse(before), parse(now));
    let mut out = Vec::new();
    for (name, v) in &new {
        match old.get(name) {
            Some(o) if o == v => {}
            Some(o) => out.push(format!("{name} {o} → {v}")),
            None => out.push(format!("+{name} {v}")),
        }
    }
    for name in old.keys() {
        if !new.contains_key(name) {
            out.push(format!("-{name}"));
        }
    }
    out.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(items: &[(&str, &str)], files: &[(&str, &str)], notes: &[(&str, &str)]) -> Inputs {
        let own = |v: &[(&str, &str)]| {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        Inputs {
            items: own(items),
            files: own(files),
            notes: own(notes),
        }
    }

    #[test]
    fn reasons_name_what_changed() {
        let h1 = "a".repeat(64);
        let h2 = "b".repeat(64);
        let before = inputs(
            &[
                ("level", "6"),
                ("installer", "uv 0.13.8"),
                ("requirements requirements.txt", &h1),
                ("entries", "2"),
            ],
            &[("shop/handler.py", "1111"), ("shop/old.py", "2222")],
            &[("pins requirements.txt", "pydantic==2.11.7\nsix==1.0")],
        );
        let now = inputs(
            &[
                ("level", "9"),
                ("installer", "uv 0.13.9"),
                ("requirements requirements.txt", &h2),
                ("entries", "2"),
            ],
            &[("shop/handler.py", "3333"), ("shop/new.py", "4444")],
            &[("pins requirements.txt", "pydantic==2.11.9\nsix==1.0")],
        );
        assert_eq!(
            diff(&before, &now),
            [
                "level 6 → 9",
                "installer uv 0.13.8 → 0.13.9",
                "requirements.txt changed (pydantic 2.11.7 → 2.11.9)",
                "shop/handler.py changed",
                "shop/new.py added",
                "shop/old.py removed",
            ]
        );
        assert!(diff(&now, &now).is_empty());
    }

    #[test]
    fn pinned_lines_keep_only_pins() {
        let text = "# c\n--index-url x\nPydantic==2.11.7 ; python_version>'3' # hi\nrequests>=2\n";
        assert_eq!(pinned_lines(text), "Pydantic==2.11.7");
    }
}
