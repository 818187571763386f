//! What a deploy did (or would do with `--plan`): one report per layer and
//! function, printed as lines for people or JSON objects. `watch/output.rs`
//! renders the same reports as the watch's lines.

use serde::Serialize;

use crate::report::{Mode, Reporter};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Unchanged,
    Updated,
    Published,
    WouldUpdate,
    WouldPublish,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Unchanged => "unchanged",
            Status::Updated => "updated",
            Status::Published => "published",
            Status::WouldUpdate => "would update",
            Status::WouldPublish => "would publish",
        }
    }
}

/// Where a zip over the direct-upload limit went.
#[derive(Debug, Clone, Serialize)]
pub struct S3Object {
    pub bucket: String,
    pub key: String,
    /// Already there (same size and SHA-256, so the same bytes): not
    /// uploaded again.
    pub existed: bool,
    /// An object with other bytes was at the key: uploaded over it.
    pub replaced: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct LayerReport {
    pub kind: &'static str,
    pub name: String,
    pub aws_name: String,
    pub status: Status,
    /// The matching or new version's ARN (`None` when `--plan` would publish).
    pub version_arn: Option<String>,
    pub code_sha256: String,
    pub s3: Option<S3Object>,
    pub ms: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct FunctionReport {
    pub kind: &'static str,
    pub name: String,
    pub aws_name: String,
    /// The code: unchanged, updated (or would update).
    pub status: Status,
    pub old_code_sha256: String,
    pub new_code_sha256: String,
    pub sha256: String,
    pub s3: Option<S3Object>,
    /// The layer list: `None` when lbuild leaves it alone.
    pub layers: Option<LayersReport>,
    pub warnings: Vec<String>,
    pub ms: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LayersReport {
    pub status: Status,
    pub old: Vec<String>,
    pub new: Vec<String>,
    /// Entries of `old` that `new` drops (not a version replaced by another).
    pub removed: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct DeployReport {
    pub layers: Vec<LayerReport>,
    pub functions: Vec<FunctionReport>,
}

impl DeployReport {
    /// Prints the report the way the reporter's mode asks: one line per
    /// layer and function for people (stdout), one JSON object each with
    /// `--json`.
    pub fn print(&self, reporter: &Reporter) {
        match reporter.mode {
            Mode::Quiet => {}
            Mode::Json => {
                for l in &self.layers {
                    reporter.json(&serde_json::to_value(l).unwrap_or_default());
                }
                for f in &self.functions {
                    reporter.json(&serde_json::to_value(f).unwrap_or_default());
                }
            }
            Mode::Human => {
                for l in &self.layers {
                    let s3 = l.s3.as_ref().map(s3_note).unwrap_or_default();
                    reporter.result(format!(
                        "layer     {:<24} {:<13} {}{s3}",
                        l.aws_name,
                        l.status.as_str(),
                        l.version_arn.as_deref().unwrap_or(&l.code_sha256),
                    ));
                }
                for f in &self.functions {
                    let hashes = if f.status == Status::Unchanged {
                        f.new_code_sha256.clone()
                    } else {
                        format!("{} -> {}", f.old_code_sha256, f.new_code_sha256)
                    };
                    let s3 = f.s3.as_ref().map(s3_note).unwrap_or_default();
                    reporter.result(format!(
                        "function  {:<24} {:<13} {hashes}{s3}",
                        f.aws_name,
                        f.status.as_str()
                    ));
                    if let Some(l) = &f.layers
                        && l.status != Status::Unchanged
                    {
                        reporter.result(format!(
                            "          {:<24} layers {}: [{}] -> [{}]",
                            "",
                            l.status.as_str(),
                            l.old.join(", "),
                            l.new.join(", ")
                        ));
                        for r in &l.removed {
                            reporter.result(format!("          {:<24}   - removes {r}", ""));
                        }
                    }
                }
            }
        }
    }
}

fn s3_note(o: &S3Object) -> String {
    format!(
        "  (s3://{}/{}{})",
        o.bucket,
        o.key,
        if o.existed {
            ", already uploaded"
        } else if o.replaced {
            ", replaced an object with other bytes"
        } else {
            ""
        }
    )
}
