//! The four stages — deps, sources, config, package — and what they share:
//! the archive [`Entry`], the [`KeyBuilder`] that both hashes a stage's
//! inputs and explains them, and the per-stage [`StageReport`].
//!
//! Dirtiness is decided in one place per stage: its key. A stage whose key
//! is recorded in the cache (with its output present) is "cached".

pub mod config;
pub mod deps;
pub mod package;
pub mod sources;
pub mod walk;
pub mod watch_root;

use std::path::PathBuf;

use serde::Serialize;

use crate::archive::{DEFLATE_BACKEND, FORMAT_VERSION};
use crate::entry::{Entry, Hash};

/// How many key inputs `lbuild -v` lists per stage.
const MAX_EXPLAIN_LINES: usize = 64;

/// Hashes a stage's inputs and keeps a readable list of them, so the key
/// and its explanation (`lbuild -v`) cannot drift apart.
pub struct KeyBuilder {
    hasher: blake3::Hasher,
    lines: Vec<String>,
}

impl KeyBuilder {
    pub fn new(stage: &str) -> Self {
        let mut k = KeyBuilder {
            hasher: blake3::Hasher::new(),
            lines: Vec::new(),
        };
        k.add("stage", stage);
        k.add("lbuild-format", FORMAT_VERSION);
        k
    }

    /// Adds one named input. Values are length-prefixed so that no two
    /// different input lists hash alike.
    pub fn add(&mut self, label: &str, value: impl std::fmt::Display) -> &mut Self {
        let value = value.to_string();
        for part in [label, value.as_str()] {
            self.hasher.update(&(part.len() as u64).to_le_bytes());
            self.hasher.update(part.as_bytes());
        }
        self.note(format!("{label} = {value}"));
        self
    }

    /// Keeps a line for `-v`, up to [`MAX_EXPLAIN_LINES`].
    fn note(&mut self, line: String) {
        if self.lines.len() < MAX_EXPLAIN_LINES {
            self.lines.push(line);
        } else if self.lines.len() == MAX_EXPLAIN_LINES {
            self.lines.push("…".into());
        }
    }

    /// Adds the archive entries (name, content hash, mode).
    pub fn add_entries(&mut self, entries: &[Entry]) -> &mut Self {
        self.add("entries", entries.len());
        for e in entries {
            // Raw bytes into the hash (a no-op build keys thousands of
            // entries); text only for the lines `-v` shows.
            for part in [e.name.as_bytes(), e.hash.as_bytes().as_slice()] {
                self.hasher.update(&(part.len() as u64).to_le_bytes());
                self.hasher.update(part);
            }
            self.hasher.update(&[e.executable as u8]);
            if self.lines.len() <= MAX_EXPLAIN_LINES {
                let mode = if e.executable { "755" } else { "644" };
                self.note(format!("{} = {} {mode}", e.name, e.hash.to_hex()));
            }
        }
        self
    }

    pub fn add_backend(&mut self) -> &mut Self {
        self.add("deflate", DEFLATE_BACKEND)
    }

    pub fn finish(&self) -> (Hash, Vec<String>) {
        (self.hasher.finalize(), self.lines.clone())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ran,
    Cached,
    Skipped,
}

/// What one stage did, for the human line and `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct StageReport {
    pub name: &'static str,
    pub status: Status,
    pub key: String,
    pub ms: u64,
    /// Stage-specific facts (files, hashed, reused, ...).
    pub details: serde_json::Value,
    #[serde(skip)]
    pub explain: Vec<String>,
}

impl StageReport {
    pub fn new(
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
        }
    }
}

/// Hashes `files` (through the fingerprint cache) into archive entries.
pub fn hash_entries(
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
/// the key was already there, ran otherwise.
pub fn settle_listing(
    cache: &crate::cache::Cache,
    stage: &'static str,
    key: &KeyBuilder,
    started: std::time::Instant,
    entries: &[Entry],
    stats: crate::cache::HashStats,
) -> crate::Result<StageReport> {
    let (key, explain) = key.finish();
    let status = if cache.stage_output(stage, &key)?.is_some() {
        Status::Cached
    } else {
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        cache.record_stage(
            stage,
            &key,
            &serde_json::to_string(&names).unwrap_or_default(),
        )?;
        Status::Ran
    };
    let details = serde_json::json!({
        "files": entries.len(),
        "hashed": stats.hashed,
        "bytes_hashed": stats.bytes_hashed,
    });
    Ok(StageReport::new(
        stage, status, &key, started, details, explain,
    ))
}
