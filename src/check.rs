//! `lbuild check`: compile the packaged Python sources with the runtime's
//! interpreter and report syntax errors as `path:line:col: error: message`,
//! the one-line shape editors' problem matchers parse.
//!
//! Compilation happens in memory (`compile()`), so no byte-code is written
//! anywhere near the sources or the zip. Owns the interpreter call and the
//! report; which files are checked is the sources stage's answer.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

/// One syntax error, positions 1-based.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct SyntaxProblem {
    pub path: PathBuf,
    pub line: u64,
    pub column: u64,
    pub message: String,
}

impl std::fmt::Display for SyntaxProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}: error: {}",
            self.path.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum CheckError {
    #[error("cannot run {python} to check the sources: {message}")]
    Run { python: PathBuf, message: String },
}

/// Reads file paths (one per line) on stdin, compiles each, prints one
/// JSON object per syntax error.
const CHECKER: &str = r#"
import json, sys
for path in sys.stdin.read().splitlines():
    try:
        with open(path, "rb") as f:
            source = f.read()
        compile(source, path, "exec", dont_inherit=True)
    except SyntaxError as e:
        print(json.dumps({"path": path, "line": e.lineno or 1, "column": e.offset or 1,
                          "message": "%s: %s" % (type(e).__name__, e.msg)}))
    except ValueError as e:
        print(json.dumps({"path": path, "line": 1, "column": 1, "message": str(e)}))
"#;

/// Compiles every `.py` file of `files` with `python`; returns the
/// problems found, with paths shown relative to `shown_from`.
pub(crate) fn check_sources(
    python: &Path,
    files: &[PathBuf],
    shown_from: &Path,
) -> Result<Vec<SyntaxProblem>, CheckError> {
    let err = |message: String| CheckError::Run {
        python: python.to_path_buf(),
        message,
    };
    let py: Vec<&PathBuf> = files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "py"))
        .collect();
    if py.is_empty() {
        return Ok(Vec::new());
    }
    let mut child = Command::new(python)
        .args(["-I", "-B", "-c", CHECKER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| err(e.to_string()))?;
    {
        let mut stdin = child.stdin.take().expect("piped");
        let mut list = String::new();
        for p in &py {
            list.push_str(&p.to_string_lossy());
            list.push('\n');
        }
        stdin
            .write_all(list.as_bytes())
            .map_err(|e| err(e.to_string()))?;
    }
    let out = child.wait_with_output().map_err(|e| err(e.to_string()))?;
    if !out.status.success() {
        return Err(err(String::from_utf8_lossy(&out.stderr).trim().to_string()));
    }
    let mut problems = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut p: SyntaxProblem =
            serde_json::from_str(line).map_err(|e| err(format!("unexpected output: {e}")))?;
        if let Ok(rel) = p.path.strip_prefix(shown_from) {
            p.path = rel.to_path_buf();
        }
        problems.push(p);
    }
    Ok(problems)
}

/// `lbuild check` (and `build --check`): the sources of every selected
/// artifact compiled with its runtime's Python; each problem printed on
/// stderr as `path:line:col: error: message` (path relative to the
/// manifest's directory). Without that Python the artifact's check is
/// skipped with a note. Fails (exit 2) when any problem was found.
pub(crate) fn run(
    ws: &crate::manifest::Workspace,
    names: &[String],
    reporter: &crate::report::Reporter,
) -> crate::Result<()> {
    use crate::report::{Mode, label};
    let mut problems = Vec::new();
    let mut skipped = Vec::new();
    let mut checked = 0usize;
    for plan in ws.select(names)? {
        let python = match crate::invoke::find_interpreter(plan.runtime) {
            Ok(p) => p,
            Err(e) => {
                let note = format!(
                    "skipped the syntax check of {} {}: {e}",
                    plan.kind.label(),
                    plan.name
                );
                if reporter.mode == Mode::Human {
                    reporter.say(format!("{} {note}", label("note")));
                }
                skipped.push(note);
                continue;
            }
        };
        let files: Vec<PathBuf> = crate::stages::sources::files(plan)?
            .into_iter()
            .map(|(_, p)| p)
            .collect();
        let shown_from = plan.manifest_path.parent().unwrap_or(&plan.project_dir);
        let found =
            check_sources(&python, &files, shown_from).map_err(|e| crate::Error::Input {
                message: e.to_string(),
                hint: "check that this Python runs (`python3.X -c pass`)".into(),
            })?;
        checked += files.len();
        // Errors, so printed even with -q (as the build's errors are).
        for p in &found {
            reporter.error(format!(
                "{}:{}:{}: {} {}",
                p.path.display(),
                p.line,
                p.column,
                label("error"),
                p.message
            ));
        }
        problems.extend(found);
    }
    let failure = (!problems.is_empty()).then(|| crate::Error::SyntaxErrors {
        count: problems.len(),
    });
    if reporter.mode == Mode::Json {
        let mut doc =
            serde_json::json!({"problems": problems, "skipped": skipped, "files": checked});
        if let Some(e) = &failure {
            // One document per run: the failure rides along with its problems.
            doc["error"] = e.to_string().into();
            doc["hint"] = e.hint().into();
            doc["exit_code"] = e.exit_code().into();
        }
        reporter.json(&doc);
    }
    match failure {
        None => {
            if skipped.is_empty() {
                reporter.info(format!("checked {checked} files: no syntax errors"));
            }
            Ok(())
        }
        Some(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_errors_come_back_with_their_position() {
        let Ok(python) = which_python3() else {
            panic!("python3 is needed (it runs the deps tests too)");
        };
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.py");
        let bad = dir.path().join("pkg").join("bad.py");
        fs_err::create_dir_all(bad.parent().unwrap()).unwrap();
        fs_err::write(&good, "x = 1\n").unwrap();
        fs_err::write(&bad, "def f():\n    return (1,\n\nx = ]\n").unwrap();
        let problems = check_sources(&python, &[good, bad], dir.path()).unwrap();
        assert_eq!(problems.len(), 1, "{problems:?}");
        let p = &problems[0];
        assert_eq!(p.path, Path::new("pkg/bad.py"));
        assert!(p.line >= 2, "{p}");
        assert!(p.to_string().starts_with("pkg/bad.py:"), "{p}");
        assert!(p.to_string().contains(": error: SyntaxError"), "{p}");
        // Nothing was written next to the sources.
        assert!(!dir.path().join("pkg/__pycache__").exists());
    }

    fn which_python3() -> Result<PathBuf, ()> {
        std::env::split_paths(&std::env::var_os("PATH").ok_or(())?)
            .map(|d| d.join("python3"))
            .find(|p| p.is_file())
            .ok_or(())
    }
}
