//! The four stages — deps, sources, config, package — and what they share:
//! the archive [`Entry`], the [`KeyBuilder`] that both hashes a stage's
//! inputs and explains them, and the per-stage [`StageReport`].
//!
//! Dirtiness is decided in one place per stage: its key. A stage whose key
//! is recorded in the cache (with its output present) is "cached".

pub(crate) mod config;
pub(crate) mod deps;
pub(crate) mod outputs;
pub(crate) mod package;
pub(crate) mod sources;

use std::path::PathBuf;

use serde::Serialize;

use crate::archive::{DEFLATE_BACKEND, FORMAT_VERSION};
use crate::entry::{Entry, Hash};
pub(crate) use crate::explain::{Inputs, settle_inputs};
use crate::{explain, walk};

/// How many key inputs `lbuild -v` lists per stage.
const MAX_EXPLAIN_LINES: usize = 64;

/// Where a stage's key inputs go (n2's `hash.rs` pattern): every input is
/// fed through one list of calls, to a [`TerseHash`] on an ordinary build
/// or to an [`ExplainHash`] (the same hash, plus readable lines) when `-v`
/// asks. So the key and its explanation cannot drift apart, and no line of
/// text is built unless it will be shown.
trait KeySink {
    /// One named input, its value already as text.
    fn input(&mut self, label: &str, value: &str);
    fn entry(&mut self, e: &Entry);
    /// A fact kept with the recorded inputs but not hashed (the pinned
    /// lines of a requirements file, for "why did this run?").
    fn note(&mut self, _label: &str, _value: &mut dyn FnMut() -> String) {}
    fn finish(&self) -> (Hash, Vec<String>);
    /// The inputs, compactly, when this sink keeps them.
    fn inputs(&self) -> Option<Inputs> {
        None
    }
}

/// The key alone: length-prefixed inputs into BLAKE3.
#[derive(Default)]
struct TerseHash {
    hasher: blake3::Hasher,
}

impl TerseHash {
    /// Length-prefixed, so that no two different input lists hash alike.
    fn part(&mut self, bytes: &[u8]) {
        self.hasher.update(&(bytes.len() as u64).to_le_bytes());
        self.hasher.update(bytes);
    }
}

impl KeySink for TerseHash {
    fn input(&mut self, label: &str, value: &str) {
        self.part(label.as_bytes());
        self.part(value.as_bytes());
    }

    fn entry(&mut self, e: &Entry) {
        // Raw bytes (a no-op build keys thousands of entries).
        self.part(e.name.as_bytes());
        self.part(e.hash.as_bytes());
        self.hasher.update(&[e.executable as u8]);
    }

    fn finish(&self) -> (Hash, Vec<String>) {
        (self.hasher.finalize(), Vec::new())
    }
}

/// The key (through [`TerseHash`], so the bytes are the same by
/// construction) and the lines `lbuild -v` shows.
#[derive(Default)]
struct ExplainHash {
    terse: TerseHash,
    lines: Vec<String>,
    /// The same inputs, structured, for the record of the last build.
    inputs: Inputs,
}

impl ExplainHash {
    /// Keeps a line, up to [`MAX_EXPLAIN_LINES`] (the rest is elided).
    fn line(&mut self, line: impl FnOnce() -> String) {
        if self.lines.len() < MAX_EXPLAIN_LINES {
            self.lines.push(line());
        } else if self.lines.len() == MAX_EXPLAIN_LINES {
            self.lines.push("…".into());
        }
    }
}

impl KeySink for ExplainHash {
    fn input(&mut self, label: &str, value: &str) {
        self.terse.input(label, value);
        self.inputs
            .items
            .push((label.to_string(), value.to_string()));
        self.line(|| format!("{label} = {value}"));
    }

    fn entry(&mut self, e: &Entry) {
        self.terse.entry(e);
        self.inputs.add_entry(e);
        let mode = if e.executable { "755" } else { "644" };
        self.line(|| format!("{} = {} {mode}", e.name, e.hash.to_hex()));
    }

    fn note(&mut self, label: &str, value: &mut dyn FnMut() -> String) {
        self.inputs.notes.push((label.to_string(), value()));
    }

    fn finish(&self) -> (Hash, Vec<String>) {
        (self.terse.hasher.finalize(), self.lines.clone())
    }

    fn inputs(&self) -> Option<Inputs> {
        Some(self.inputs.clone())
    }
}

/// Builds a stage's key from its inputs: terse, or explaining when `-v`
/// asked for it (the context's `explain`). Values are formatted once into a
/// reused buffer for the hash; explanation lines only in explain mode.
pub(crate) struct KeyBuilder {
    sink: Box<dyn KeySink>,
    buf: String,
}

impl KeyBuilder {
    /// A builder for `stage`'s key; `explain` keeps the readable inputs
    /// (for `-v`, and for recording what `lbuild explain` diffs).
    pub(crate) fn new(stage: &str, explain: bool) -> Self {
        let sink: Box<dyn KeySink> = if explain {
            Box::<ExplainHash>::default()
        } else {
            Box::<TerseHash>::default()
        };
        let mut k = KeyBuilder {
            sink,
            buf: String::new(),
        };
        k.add("stage", stage);
        k.add("lbuild-format", FORMAT_VERSION);
        k
    }

    /// Adds one named input (its `Display` text is what is hashed).
    pub(crate) fn add(&mut self, label: &str, value: impl std::fmt::Display) -> &mut Self {
        use std::fmt::Write;
        self.buf.clear();
        let _ = write!(self.buf, "{value}");
        self.sink.input(label, &self.buf);
        self
    }

    /// Adds the archive entries (name, content hash, mode).
    pub(crate) fn add_entries(&mut self, entries: &[Entry]) -> &mut Self {
        self.add("entries", entries.len());
        for e in entries {
            self.sink.entry(e);
        }
        self
    }

    pub(crate) fn add_backend(&mut self) -> &mut Self {
        self.add("deflate", DEFLATE_BACKEND)
    }

    /// A fact recorded with the inputs (see [`KeyBuilder::inputs`]) but
    /// not part of the key; `value` runs only when inputs are kept.
    pub(crate) fn note(&mut self, label: &str, mut value: impl FnMut() -> String) -> &mut Self {
        self.sink.note(label, &mut value);
        self
    }

    /// The key, and its explanation (empty unless explaining).
    pub(crate) fn finish(&self) -> (Hash, Vec<String>) {
        self.sink.finish()
    }

    /// The inputs, compactly, when this builder keeps them (explaining,
    /// or recording what `lbuild explain` diffs).
    pub(crate) fn inputs(&self) -> Option<Inputs> {
        self.sink.inputs()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Status {
    Ran,
    Cached,
    Skipped,
}

/// What one stage did, for the human line and `--json`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct StageReport {
    pub name: &'static str,
    pub status: Status,
    pub key: String,
    pub ms: u64,
    /// Stage-specific facts (files, hashed, reused, ...).
    pub details: serde_json::Value,
    #[serde(skip)]
    pub explain: Vec<String>,
    /// What differs from the last build of this artifact (computed only
    /// when shown: `-v`, `lbuild explain`, `--json`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
}

impl StageReport {
    pub(crate) fn new(
        name: &'static str,
        status: Status,
        key: &Hash,
        started: std::time::Instant,
        details: serde_json::Value,
        explain: Vec<String>,
    ) -> Self {
        StageReport {
            name,
            status,
            key: key.to_hex().to_string(),
            ms: started.elapsed().as_millis() as u64,
            details,
            explain,
            reasons: Vec::new(),
        }
    }
}

/// Hashes `files` (through the fingerprint cache) into archive entries.
pub(crate) fn hash_entries(
    cache: &mut crate::cache::Cache,
    files: Vec<(String, PathBuf)>,
) -> crate::Result<(Vec<Entry>, crate::cache::HashStats)> {
    let paths: Vec<PathBuf> = files.iter().map(|(_, p)| p.clone()).collect();
    // A file that cannot be read is input to fix, like a directory that
    // cannot be listed (the walk's error): same error, same exit code.
    let (hashes, stats) = cache.hash_files(&paths).map_err(|e| match e {
        crate::cache::CacheError::Io { path, source } => {
            crate::Error::from(walk::WalkError::Unreadable { path, source })
        }
        e => e.into(),
    })?;
    let entries = files
        .into_iter()
        .zip(hashes)
        .map(|((name, path), h)| Entry {
            name,
            path,
            hash: h.hash,
            size: h.size,
            executable: h.executable,
        })
        .collect();
    Ok((entries, stats))
}

/// Records a listing stage (sources, config) under its key: cached when
/// the key was already there, ran otherwise. `rekey` feeds the same
/// inputs again (to record them, see [`explain`]) when the key differs
/// from the artifact's last build and `key` did not keep them.
#[allow(clippy::too_many_arguments)]
pub(crate) fn settle_listing(
    cache: &crate::cache::Cache,
    plan: &crate::manifest::Plan,
    stage: &'static str,
    cx: &crate::context::BuildContext,
    rekey: impl Fn(bool) -> KeyBuilder,
    started: std::time::Instant,
    entries: &[Entry],
    stats: crate::cache::HashStats,
) -> crate::Result<StageReport> {
    let key = rekey(cx.explain);
    let (hash, explain) = key.finish();
    let status = if cache.stage_output(stage, &hash)?.is_some() {
        Status::Cached
    } else {
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        cache.record_stage(
            stage,
            &hash,
            &serde_json::to_string(&names).unwrap_or_default(),
        );
        Status::Ran
    };
    let inputs = if explain::needs_inputs(cache, plan, stage, &hash)? {
        key.inputs().or_else(|| rekey(true).inputs())
    } else {
        None
    };
    let ran = status == Status::Ran;
    let reasons = settle_inputs(cache, plan, stage, &hash, ran, inputs, cx.reasons)?;
    let details = serde_json::json!({
        "files": entries.len(),
        "hashed": stats.hashed,
        "bytes_hashed": stats.bytes_hashed,
    });
    let mut report = StageReport::new(stage, status, &hash, started, details, explain);
    report.reasons = reasons;
    Ok(report)
}

#[cfg(test)]
mod key_tests {
    use super::*;

    fn feed(k: &mut KeyBuilder) {
        let entry = |name: &str, data: &[u8], executable| Entry {
            name: name.into(),
            path: format!("/x/{name}").into(),
            hash: blake3::hash(data),
            size: data.len() as u64,
            executable,
        };
        let entries = [entry("a.py", b"a", false), entry("b/c.py", b"c", true)];
        k.add("root", ".")
            .add("level", 6)
            .add_entries(&entries)
            .add("deps", "");
    }

    #[test]
    fn key_bytes_are_stable_and_the_same_terse_or_explained() {
        // Recorded with the KeyBuilder before the terse/explain split (and
        // again at FORMAT_VERSION 5, which every key includes): a change
        // here silently invalidates every cache, so it must be deliberate.
        const KEY: &str = "74cbf26c32fe77b1fb25b466ef21c7359edc45f7f0761298ab1b37f63625b4b5";
        let mut terse = KeyBuilder::new("sources", false);
        feed(&mut terse);
        let (key, lines) = terse.finish();
        assert_eq!(key.to_hex().as_str(), KEY);
        assert!(lines.is_empty(), "terse keys build no text: {lines:?}");

        let mut explained = KeyBuilder::new("sources", true);
        feed(&mut explained);
        let (key, lines) = explained.finish();
        assert_eq!(key.to_hex().as_str(), KEY);
        assert_eq!(lines[0], "stage = sources");
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("b/c.py = ") && l.ends_with(" 755"))
        );
        assert_eq!(lines.last().unwrap(), "deps = ");
    }

    #[test]
    fn only_explaining_keys_keep_lines() {
        assert!(KeyBuilder::new("x", false).finish().1.is_empty());
        assert!(!KeyBuilder::new("x", true).finish().1.is_empty());
        assert_eq!(
            KeyBuilder::new("x", false).finish().0,
            KeyBuilder::new("x", true).finish().0
        );
    }
}
