//! Printing a finished build: the human lines (and the stage table under
//! `-v`, the reasons under `lbuild explain`) or the one JSON document.
//! Every line goes through the [`Reporter`]. It does not build.

use crate::outcome::{ArtifactResult, BuildOutcome, WorkspaceOutcome};
use crate::report::{Mode, Reporter};
use crate::stages::{StageReport, Status};
use crate::units::human_size;

/// "1 entry", "3 entries".
fn entries_text(n: usize) -> String {
    format!("{n} {}", if n == 1 { "entry" } else { "entries" })
}

/// Prints a workspace build: one object with an `artifacts` list
/// (`--json`), or one line per artifact (its stage table under `-v`) and
/// each failure with its name.
pub(crate) fn print_workspace(o: &WorkspaceOutcome, reporter: &Reporter) {
    if reporter.mode == Mode::Json {
        let artifacts: Vec<serde_json::Value> = o
            .artifacts
            .iter()
            .map(|a| match a {
                ArtifactResult::Built(b) => serde_json::to_value(b).unwrap_or_default(),
                ArtifactResult::Failed { name, kind, error } => serde_json::json!({
                    "name": name,
                    "kind": kind,
                    "error": error.to_string(),
                    "hint": error.hint(),
                    "exit_code": error.exit_code(),
                }),
            })
            .collect();
        reporter.json(&serde_json::json!({"artifacts": artifacts, "ms": o.ms}));
        // Errors reach stderr too, as warnings do: a CI log that keeps
        // only stderr still says why an artifact failed.
        for a in &o.artifacts {
            if let ArtifactResult::Failed { name, kind, error } = a {
                say_failure(kind, name, error, reporter);
            }
        }
        return;
    }
    for a in &o.artifacts {
        match a {
            ArtifactResult::Built(b) => {
                if reporter.mode == Mode::Human {
                    print_stages(&b.stages, reporter);
                    let ran = b.stages.iter().any(|s| s.status == Status::Ran);
                    reporter.say(format!(
                        "{:<10} {:<6} {:<9} {}  {} zipped, {} unzipped, {}",
                        if ran { "Built" } else { "Up to date" },
                        b.kind,
                        b.name,
                        b.zip.display(),
                        human_size(b.size),
                        human_size(b.unzipped_size),
                        entries_text(b.entries),
                    ));
                    reporter.result(format!(
                        "{} {} CodeSha256 {}",
                        b.kind, b.name, b.code_sha256
                    ));
                }
            }
            ArtifactResult::Failed { name, kind, error } => {
                say_failure(kind, name, error, reporter);
            }
        }
    }
}

/// One failed artifact's error and hint, on stderr.
fn say_failure(kind: &str, name: &str, error: &crate::Error, reporter: &Reporter) {
    reporter.error(crate::report::error_text_about(
        &format!("{kind} {name}: "),
        &error.to_string(),
        error.hint().as_deref(),
    ));
}

/// The stage table (under `-v`: each stage, its key and facts, the key's
/// inputs and why it ran), or under `lbuild explain` only why each stage
/// ran.
fn print_stages(stages: &[StageReport], reporter: &Reporter) {
    if reporter.verbose {
        for s in stages {
            let key = s.key.get(..12).unwrap_or("-");
            reporter.detail(format!(
                "  {:<8} {:<7} {:>6} ms  key {key}  {}",
                s.name,
                status_word(s.status),
                s.ms,
                brief(&s.details)
            ));
            for line in &s.explain {
                reporter.detail(format!("             {line}"));
            }
            if !s.reasons.is_empty() {
                reporter.detail(format!("           why: {}", s.reasons.join("; ")));
            }
        }
    } else if reporter.explain {
        let mut any = false;
        for s in stages.iter().filter(|s| !s.reasons.is_empty()) {
            any = true;
            let reused = if s.status == Status::Cached {
                " (an earlier result reused)"
            } else {
                ""
            };
            reporter.say(format!("  {}: {}{reused}", s.name, s.reasons.join("; ")));
        }
        if !any {
            reporter.say("  nothing changed since the last build");
        }
    }
}

fn status_word(s: Status) -> &'static str {
    match s {
        Status::Ran => "ran",
        Status::Cached => "cached",
        Status::Skipped => "skipped",
    }
}

/// Prints a finished build the way the reporter's mode asks.
pub(crate) fn print_outcome(o: &BuildOutcome, reporter: &Reporter) {
    match reporter.mode {
        Mode::Json => reporter.json(&serde_json::to_value(o).unwrap_or_default()),
        Mode::Quiet => {}
        Mode::Human => {
            print_stages(&o.stages, reporter);
            reporter.say(format!(
                "{} {} ({}, {})",
                if o.stages.iter().all(|s| s.status != Status::Ran) {
                    "Up to date"
                } else {
                    "Built"
                },
                o.zip.display(),
                entries_text(o.entries),
                human_size(o.size)
            ));
            reporter.result(format!("sha256 {}", o.sha256));
            reporter.result(format!("CodeSha256 {}", o.code_sha256));
        }
    }
}

fn brief(details: &serde_json::Value) -> String {
    details
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}
