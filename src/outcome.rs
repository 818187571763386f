//! What a build produced, as data: one artifact's outcome (what `--json`
//! prints) and a workspace's. A leaf shared by the pipeline that makes
//! them, the output that prints them, and the commands that read them
//! (size, deploy, watch, hits). It does not build or print.

use serde::Serialize;

use crate::Error;
use crate::stages::StageReport;

/// The result of a successful build (what `--json` prints).
#[derive(Debug, Clone, Serialize)]
pub struct BuildOutcome {
    /// The artifact's name (kept as `function` for the single form's JSON).
    pub function: String,
    pub name: String,
    /// `function` or `layer`.
    pub kind: &'static str,
    /// Uncompressed bytes of the entries (Lambda's quota counts these).
    pub unzipped_size: u64,
    /// Warnings about this artifact: this build's, and those a cached
    /// stage result carries (replayed, marked "(cached)"), and Lambda's
    /// size quotas.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    pub zip: std::path::PathBuf,
    pub sha256: String,
    pub code_sha256: String,
    pub size: u64,
    pub entries: usize,
    pub(crate) stages: Vec<StageReport>,
    pub ms: u64,
}

/// One artifact's result in a workspace build.
pub enum ArtifactResult {
    Built(BuildOutcome),
    Failed {
        name: String,
        kind: &'static str,
        error: Error,
    },
}

/// What `lbuild` did to every artifact it was asked for.
pub struct WorkspaceOutcome {
    pub single: bool,
    pub artifacts: Vec<ArtifactResult>,
    pub ms: u64,
}

impl WorkspaceOutcome {
    pub fn failures(&self) -> usize {
        self.artifacts
            .iter()
            .filter(|a| matches!(a, ArtifactResult::Failed { .. }))
            .count()
    }

    /// The exit code of the worst failure, if any.
    pub fn exit_code(&self) -> Option<i32> {
        self.artifacts
            .iter()
            .filter_map(|a| match a {
                ArtifactResult::Failed { error, .. } => Some(error.exit_code()),
                ArtifactResult::Built(_) => None,
            })
            .max()
    }

    pub fn built(&self, name: &str, kind: &str) -> Option<&BuildOutcome> {
        self.artifacts.iter().find_map(|a| match a {
            ArtifactResult::Built(o) if o.name == name && o.kind == kind => Some(o),
            _ => None,
        })
    }
}
