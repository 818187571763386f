//! One line per rebuild: a human line (`17:45:02  app.py  sources+package
//! 1.2 KiB  sha256 3f2a9c1b0e12  38 ms`) or, with `--json`, one JSON object
//! (NDJSON) whose `time` is an RFC 3339 timestamp with the local offset.
//! Rendering is pure; the loop decides what is news and writes the text.

use std::path::Path;

use jiff::ZonedDateTime;
use serde::Serialize;

#[cfg(feature = "aws")]
use crate::deploy::{DeployReport, Status as DeployStatus};
use crate::outcome::BuildOutcome;
use crate::report::Mode;
use crate::stages::Status;

/// Changed paths named on a human line.
const SHOWN_PATHS: usize = 3;

/// When a line was written, in the local time zone.
pub(crate) struct Stamp(ZonedDateTime);

impl Stamp {
    pub(crate) fn now() -> Stamp {
        // Only a clock outside years -9999..9999 fails; then the epoch.
        Stamp(
            ZonedDateTime::try_from(std::time::SystemTime::now()).unwrap_or_else(|_| {
                jiff::Timestamp::UNIX_EPOCH.to_zoned_datetime(jiff::tz::TimeZone::UTC)
            }),
        )
    }

    /// `17:45:01`, for people.
    fn hms(&self) -> String {
        self.format("%H:%M:%S")
    }

    /// `2026-11-25T17:45:01.123+01:00`, for `--json`.
    fn rfc3339(&self) -> String {
        self.format("%Y-%m-%dT%H:%M:%S%.3f%:z")
    }

    fn format(&self, fmt: &str) -> String {
        // These specifiers cannot fail for a zoned time.
        jiff::fmt::strtime::format(fmt, &self.0).unwrap_or_default()
    }
}

/// A failed build (or a manifest that does not load).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub error: String,
    pub hint: Option<String>,
}

impl From<&crate::Error> for Failure {
    fn from(e: &crate::Error) -> Failure {
        Failure {
            error: e.to_string(),
            hint: e.hint(),
        }
    }
}

/// What a re-check found.
pub(crate) enum Found {
    Built(BuildOutcome),
    Failed(Failure),
}

/// One re-check, to be reported.
pub(crate) struct Recheck<'a> {
    pub stamp: Stamp,
    pub initial: bool,
    /// The batch's paths, relative to lambda.toml's directory.
    pub changed: Vec<String>,
    /// Warnings of this build (also printed on stderr).
    pub warnings: Vec<String>,
    pub found: &'a Found,
    /// A different zip, a stage that ran, a new failure or a recovery:
    /// printed. Otherwise only with `-v`.
    pub news: bool,
    /// The zip a failure leaves in place, if any.
    pub last_good: Option<&'a Path>,
    /// In a workspace, which artifact the line is about (`function
    /// orders`): one save can print a line for each.
    pub artifact: Option<&'a str>,
}

pub(crate) enum Stream {
    Stdout,
    Stderr,
}

/// The text to print for `r` (without the final newline), and where; `None`
/// when nothing is said.
pub(crate) fn render(r: &Recheck, mode: Mode, verbose: bool) -> Option<(Stream, String)> {
    if !r.news && !verbose {
        return None;
    }
    let mut what = if r.initial {
        "initial build".to_string()
    } else {
        shown(&r.changed)
    };
    if let Some(artifact) = r.artifact {
        what = format!("{what}  {artifact}");
    }
    let time = r.stamp.hms();
    match (mode, r.found) {
        (Mode::Json, found) => {
            let line = Line {
                time: r.stamp.rfc3339(),
                artifact: r.artifact,
                changed: &r.changed,
                warnings: if r.news { &r.warnings } else { &[] },
            };
            let json = match found {
                Found::Built(outcome) => {
                    // The build's `warnings` are the line's (one field):
                    // none on a re-check that is no news.
                    let mut outcome = outcome.clone();
                    outcome.warnings = line.warnings.to_vec();
                    let line = Line {
                        warnings: &[],
                        ..line
                    };
                    serde_json::to_string(&BuiltLine {
                        line: &line,
                        outcome: &outcome,
                    })
                }
                Found::Failed(f) => serde_json::to_string(&FailedLine {
                    line: &line,
                    error: &f.error,
                    hint: f.hint.as_deref(),
                }),
            };
            Some((Stream::Stdout, json.unwrap_or_default()))
        }
        (Mode::Human | Mode::Quiet, _) if !r.news => {
            (mode == Mode::Human).then(|| (Stream::Stdout, format!("{time}  {what}  no change")))
        }
        (Mode::Human, Found::Built(outcome)) => {
            Some((Stream::Stdout, human_line(&time, &what, outcome)))
        }
        (Mode::Quiet, Found::Built(_)) => None,
        (Mode::Human | Mode::Quiet, Found::Failed(f)) => {
            let hint = f
                .hint
                .as_ref()
                .map(|h| format!("\n  hint: {h}"))
                .unwrap_or_default();
            let kept = r
                .last_good
                .map(|p| format!("; {} is the last good zip", p.display()))
                .unwrap_or_default();
            Some((
                Stream::Stderr,
                format!(
                    "{time}  {what}  error: {}{hint}\n  (still watching{kept})",
                    f.error
                ),
            ))
        }
    }
}

/// The fields every `--json` line starts with.
#[derive(Serialize)]
struct Line<'a> {
    /// RFC 3339, local offset, milliseconds.
    time: String,
    /// In a workspace: `function NAME` / `layer NAME`.
    #[serde(skip_serializing_if = "Option::is_none")]
    artifact: Option<&'a str>,
    changed: &'a [String],
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    warnings: &'a [String],
}

/// One `--json` line for a build.
#[derive(Serialize)]
struct BuiltLine<'a> {
    #[serde(flatten)]
    line: &'a Line<'a>,
    #[serde(flatten)]
    outcome: &'a BuildOutcome,
}

/// One `--json` line for a failed build.
#[derive(Serialize)]
struct FailedLine<'a> {
    #[serde(flatten)]
    line: &'a Line<'a>,
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    hint: Option<&'a str>,
}

/// What one `--deploy` after a rebuild did.
#[cfg(feature = "aws")]
pub(crate) enum Deployed<'a> {
    Done(&'a DeployReport),
    /// The deploy failed; nothing says how far it got (the next one
    /// compares CodeSha256 again). `functions`/`layers`: AWS names tried.
    Failed {
        failure: &'a Failure,
        functions: Vec<String>,
        layers: Vec<String>,
    },
}

/// The lines for one deploy, in order. People get one line per layer and
/// function on stdout (`17:45:03  deploy  function hello  updated  A -> B
/// 812 ms`) or the failure on stderr; `--json` gets one object each, the
/// report's fields under `deploy`. A layer found unchanged (deployed only to
/// resolve a function's layer list) is shown on the initial deploy only.
#[cfg(feature = "aws")]
pub(crate) fn render_deploy(
    stamp: &Stamp,
    deployed: &Deployed,
    initial: bool,
    mode: Mode,
) -> Vec<(Stream, String)> {
    let time = stamp.hms();
    let json = |deploy: serde_json::Value| {
        let v = serde_json::json!({ "time": stamp.rfc3339(), "deploy": deploy });
        (Stream::Stdout, v.to_string())
    };

    match (deployed, mode) {
        (Deployed::Done(_), Mode::Quiet) => Vec::new(),
        (Deployed::Done(report), Mode::Json) => {
            let layers = report
                .layers
                .iter()
                .filter(|l| initial || l.status != DeployStatus::Unchanged)
                .map(|l| json(serde_json::to_value(l).unwrap_or_default()));
            let functions = report
                .functions
                .iter()
                .map(|f| json(serde_json::to_value(f).unwrap_or_default()));
            layers.chain(functions).collect()
        }
        (Deployed::Done(report), Mode::Human) => {
            let layers = report
                .layers
                .iter()
                .filter(|l| initial || l.status != DeployStatus::Unchanged)
                .map(|l| {
                    format!(
                        "{time}  deploy  layer {}  {}  {}  {} ms",
                        l.aws_name,
                        l.status.as_str(),
                        l.version_arn.as_deref().unwrap_or(&l.code_sha256),
                        l.ms
                    )
                });
            let functions = report.functions.iter().map(|f| {
                let hashes = if f.status == DeployStatus::Unchanged {
                    f.new_code_sha256.clone()
                } else {
                    format!("{} -> {}", f.old_code_sha256, f.new_code_sha256)
                };
                let layers = match &f.layers {
                    Some(l) if l.status != DeployStatus::Unchanged => {
                        format!("  layers {}", l.status.as_str())
                    }
                    _ => String::new(),
                };
                format!(
                    "{time}  deploy  function {}  {}  {hashes}{layers}  {} ms",
                    f.aws_name,
                    f.status.as_str(),
                    f.ms
                )
            });
            layers
                .chain(functions)
                .map(|text| (Stream::Stdout, text))
                .collect()
        }
        (
            Deployed::Failed {
                failure,
                functions,
                layers,
            },
            Mode::Json,
        ) => {
            let v = serde_json::json!({
                "status": "failed",
                "functions": functions,
                "layers": layers,
                "error": failure.error,
                "hint": failure.hint,
            });
            vec![json(v)]
        }
        (Deployed::Failed { failure, .. }, Mode::Human | Mode::Quiet) => {
            let hint = failure
                .hint
                .as_ref()
                .map(|h| format!("\n  hint: {h}"))
                .unwrap_or_default();
            vec![(
                Stream::Stderr,
                format!(
                    "{time}  deploy  error: {}{hint}\n  (still watching; the next change deploys again)",
                    failure.error
                ),
            )]
        }
    }
}

/// `17:45:02  app.py  sources+package  1.2 KiB  sha256 3f2a9c1b0e12  38 ms`
fn human_line(time: &str, what: &str, o: &BuildOutcome) -> String {
    let ran: Vec<&str> = o
        .stages
        .iter()
        .filter(|s| s.status == Status::Ran)
        .map(|s| s.name)
        .collect();
    let ran = if ran.is_empty() {
        "up to date".to_string()
    } else {
        ran.join("+")
    };
    format!(
        "{time}  {what}  {ran}  {}  sha256 {}  {} ms",
        crate::units::human_size(o.size),
        o.sha256.get(..12).unwrap_or(&o.sha256),
        o.ms
    )
}

/// `a.py, b.py, c.py +2 more`
fn shown(changed: &[String]) -> String {
    let mut s = changed
        .iter()
        .take(SHOWN_PATHS)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if changed.len() > SHOWN_PATHS {
        s.push_str(&format!(" +{} more", changed.len() - SHOWN_PATHS));
    }
    if s.is_empty() {
        s.push_str("(no path)");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::tz::{self, TimeZone};

    fn at(offset_hours: i8) -> Stamp {
        let ts: jiff::Timestamp = "2026-11-25T16:45:01.123456Z".parse().unwrap();
        Stamp(ts.to_zoned_datetime(TimeZone::fixed(tz::offset(offset_hours))))
    }

    #[test]
    fn json_time_is_rfc3339_with_the_local_offset_and_human_time_is_local() {
        assert_eq!(at(1).rfc3339(), "2026-11-25T17:45:01.123+01:00");
        assert_eq!(at(1).hms(), "17:45:01");
        assert_eq!(at(0).rfc3339(), "2026-11-25T16:45:01.123+00:00");
        assert_eq!(at(-5).rfc3339(), "2026-11-25T11:45:01.123-05:00");
        let parsed: jiff::Timestamp = at(-5).rfc3339().parse().unwrap();
        assert_eq!(parsed.to_string(), "2026-11-25T16:45:01.123Z");
    }

    fn failed(news: bool, found: &Found) -> Recheck<'_> {
        Recheck {
            stamp: at(1),
            initial: false,
            changed: vec!["lambda.toml".into()],
            warnings: vec!["w".into()],
            found,
            news,
            last_good: Some(Path::new("/p/dist/f.zip")),
            artifact: None,
        }
    }

    #[test]
    fn a_workspace_line_names_its_artifact() {
        let found = Found::Failed(Failure {
            error: "e".into(),
            hint: None,
        });
        let orders = Recheck {
            artifact: Some("function orders"),
            ..failed(true, &found)
        };
        let (_, text) = render(&orders, Mode::Human, false).unwrap();
        assert!(
            text.starts_with("17:45:01  lambda.toml  function orders  error: e"),
            "{text}"
        );
        let (_, json) = render(&orders, Mode::Json, false).unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["artifact"], "function orders");
        let billing = Recheck {
            artifact: Some("function billing"),
            ..failed(true, &found)
        };
        assert_ne!(
            render(&orders, Mode::Human, false).unwrap().1,
            render(&billing, Mode::Human, false).unwrap().1
        );
        // The single-function form names no artifact.
        let (_, json) = render(&failed(true, &found), Mode::Json, false).unwrap();
        assert!(!json.contains("artifact"), "{json}");
    }

    #[test]
    fn a_failure_keeps_its_hint_apart_in_json_and_below_it_for_people() {
        let found = Found::Failed(Failure {
            error: "lambda.toml:1:1: bad".into(),
            hint: Some("fix it".into()),
        });
        let (_, json) = render(&failed(true, &found), Mode::Json, false).unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["error"], "lambda.toml:1:1: bad");
        assert_eq!(v["hint"], "fix it");
        assert_eq!(v["changed"][0], "lambda.toml");
        assert_eq!(v["warnings"][0], "w");
        assert_eq!(v["time"], "2026-11-25T17:45:01.123+01:00");
        let (_, text) = render(&failed(true, &found), Mode::Human, false).unwrap();
        assert_eq!(
            text,
            "17:45:01  lambda.toml  error: lambda.toml:1:1: bad\n  hint: fix it\n  \
             (still watching; /p/dist/f.zip is the last good zip)"
        );
    }

    #[test]
    fn a_recheck_that_is_no_news_is_shown_only_with_verbose_and_without_warnings() {
        let found = Found::Failed(Failure {
            error: "e".into(),
            hint: None,
        });
        for mode in [Mode::Json, Mode::Human, Mode::Quiet] {
            assert!(render(&failed(false, &found), mode, false).is_none());
        }
        let (_, text) = render(&failed(false, &found), Mode::Human, true).unwrap();
        assert_eq!(text, "17:45:01  lambda.toml  no change");
        let (_, json) = render(&failed(false, &found), Mode::Json, true).unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["error"], "e");
        assert!(
            v.get("warnings").is_none() && v.get("hint").is_none(),
            "{v}"
        );
        assert!(render(&failed(false, &found), Mode::Quiet, true).is_none());
    }

    #[test]
    fn many_changed_paths_are_summarised() {
        let paths: Vec<String> = ["a.py", "b.py", "c.py", "d.py", "e.py"]
            .map(String::from)
            .into();
        assert_eq!(shown(&paths), "a.py, b.py, c.py +2 more");
        assert_eq!(shown(&[]), "(no path)");
    }

    #[cfg(feature = "aws")]
    fn report() -> DeployReport {
        use crate::deploy::{FunctionReport, LayerReport, LayersReport};
        DeployReport {
            layers: vec![LayerReport {
                kind: "layer",
                name: "common".into(),
                aws_name: "dev-common".into(),
                status: DeployStatus::Unchanged,
                version_arn: Some("arn:common:3".into()),
                code_sha256: "C=".into(),
                s3: None,
                ms: 4,
            }],
            functions: vec![FunctionReport {
                kind: "function",
                name: "orders".into(),
                aws_name: "dev-orders".into(),
                status: DeployStatus::Updated,
                old_code_sha256: "A=".into(),
                new_code_sha256: "B=".into(),
                sha256: "ab".into(),
                s3: None,
                layers: Some(LayersReport {
                    status: DeployStatus::Unchanged,
                    old: vec!["arn:common:3".into()],
                    new: vec!["arn:common:3".into()],
                    removed: vec![],
                }),
                warnings: vec![],
                ms: 812,
            }],
        }
    }

    #[cfg(feature = "aws")]
    #[test]
    fn a_deploy_is_one_line_per_artifact_and_unchanged_layers_only_at_first() {
        let r = report();
        let texts = |initial, mode| -> Vec<String> {
            render_deploy(&at(1), &Deployed::Done(&r), initial, mode)
                .into_iter()
                .map(|(_, t)| t)
                .collect()
        };
        assert_eq!(
            texts(false, Mode::Human),
            ["17:45:01  deploy  function dev-orders  updated  A= -> B=  812 ms"]
        );
        assert_eq!(
            texts(true, Mode::Human),
            [
                "17:45:01  deploy  layer dev-common  unchanged  arn:common:3  4 ms",
                "17:45:01  deploy  function dev-orders  updated  A= -> B=  812 ms"
            ]
        );
        let json = texts(false, Mode::Json);
        assert_eq!(json.len(), 1);
        let v: serde_json::Value = serde_json::from_str(&json[0]).unwrap();
        assert_eq!(v["time"], "2026-11-25T17:45:01.123+01:00");
        assert_eq!(v["deploy"]["name"], "orders");
        assert_eq!(v["deploy"]["status"], "updated");
        assert_eq!(v["deploy"]["old_code_sha256"], "A=");
        assert!(texts(true, Mode::Quiet).is_empty());
    }

    #[cfg(feature = "aws")]
    #[test]
    fn a_failed_deploy_goes_to_stderr_with_its_hint_and_to_json_with_its_names() {
        let failure = Failure {
            error: "the Lambda function x does not exist in us-east-1".into(),
            hint: Some("create it".into()),
        };
        let failed = Deployed::Failed {
            failure: &failure,
            functions: vec!["x".into()],
            layers: vec![],
        };
        for mode in [Mode::Human, Mode::Quiet] {
            let lines = render_deploy(&at(1), &failed, false, mode);
            assert_eq!(lines.len(), 1);
            assert!(matches!(lines[0].0, Stream::Stderr));
            assert_eq!(
                lines[0].1,
                "17:45:01  deploy  error: the Lambda function x does not exist in us-east-1\n  \
                 hint: create it\n  (still watching; the next change deploys again)"
            );
        }
        let lines = render_deploy(&at(1), &failed, false, Mode::Json);
        let v: serde_json::Value = serde_json::from_str(&lines[0].1).unwrap();
        assert_eq!(v["deploy"]["status"], "failed");
        assert_eq!(v["deploy"]["functions"][0], "x");
        assert_eq!(v["deploy"]["hint"], "create it");
    }
}
