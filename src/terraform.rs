//! `lbuild terraform`: Terraform's external data source protocol.
//!
//! The program reads one JSON object on stdin (the data source's `query`,
//! every value a string) and prints one flat JSON object whose values are
//! all strings; on failure the message goes to stderr with a non-zero exit.
//! This module owns the query's keys and the result's shape; building is
//! the pipeline's.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// Which artifact the query asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Wanted {
    Function(String),
    Layer(String),
}

/// A parsed query: `{"function": "orders"}` or `{"layer": "common"}`, with
/// an optional `"manifest": "path/to/lambda.toml"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Query {
    pub wanted: Wanted,
    pub manifest: Option<PathBuf>,
}

const KEYS: &str = "`function` or `layer` (the artifact's name), and optionally `manifest`";

/// Parses the query Terraform writes on stdin.
pub(crate) fn parse_query(text: &str) -> crate::Result<Query> {
    let bad = |message: String| crate::Error::Input {
        message,
        hint: format!(
            "pass query = {{ function = \"NAME\" }} (or layer = \"NAME\", manifest = \"path/lambda.toml\") in the data \"external\" block; keys: {KEYS}"
        ),
    };
    let doc: BTreeMap<String, serde_json::Value> = serde_json::from_str(text)
        .map_err(|e| bad(format!("the query on stdin is not a JSON object: {e}")))?;
    let mut function = None;
    let mut layer = None;
    let mut manifest = None;
    for (key, value) in &doc {
        let value = value
            .as_str()
            .ok_or_else(|| bad(format!("query key `{key}` must be a string, got {value}")))?;
        match key.as_str() {
            "function" => function = Some(value.to_string()),
            "layer" => layer = Some(value.to_string()),
            "manifest" => manifest = Some(PathBuf::from(value)),
            other => return Err(bad(format!("unknown query key `{other}`"))),
        }
    }
    let wanted = match (function, layer) {
        (Some(f), None) => Wanted::Function(f),
        (None, Some(l)) => Wanted::Layer(l),
        (Some(_), Some(_)) => {
            return Err(bad(
                "the query names both a function and a layer; one data source builds one artifact"
                    .into(),
            ));
        }
        (None, None) => return Err(bad("the query names no artifact".into())),
    };
    Ok(Query { wanted, manifest })
}

/// The flat, all-strings object Terraform expects.
pub(crate) fn result(
    zip: &std::path::Path,
    sha256: &str,
    code_sha256: &str,
    size: u64,
) -> serde_json::Value {
    serde_json::json!({
        "zip": zip.display().to_string(),
        "sha256": sha256,
        "code_sha256": code_sha256,
        "size": size.to_string(),
    })
}

/// `lbuild terraform`: reads the query on stdin, builds the artifact (with
/// the layers a function uses), prints the result. Progress and warnings
/// go to stderr only; stdout carries the one JSON object.
pub(crate) fn run() -> crate::Result<()> {
    use std::io::Read;
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(crate::Error::io("cannot read the query from", "stdin"))?;
    let query = parse_query(&text)?;
    let manifest_path = match &query.manifest {
        Some(p) => p.clone(),
        None => {
            let cwd = std::env::current_dir().map_err(crate::Error::io("cannot read", "."))?;
            crate::manifest::find_manifest(&cwd)?
        }
    };
    let ws = crate::manifest::load_workspace(&manifest_path)?;
    let (name, kind) = match &query.wanted {
        Wanted::Function(n) => (n.clone(), "function"),
        Wanted::Layer(n) => (n.clone(), "layer"),
    };
    let known = |kind: &str| -> String {
        ws.artifacts
            .iter()
            .filter(|p| p.kind.label() == kind)
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let plan = ws
        .artifacts
        .iter()
        .find(|p| p.name == name && p.kind.label() == kind)
        .ok_or_else(|| crate::Error::Input {
            message: format!("no {kind} named {name:?} in {}", ws.manifest_path.display()),
            hint: format!("{kind}s defined: {}", known(kind)),
        })?;
    let reporter = crate::report::Reporter::new(crate::report::Mode::Quiet, false);
    let names = match &query.wanted {
        Wanted::Function(n) if !ws.single => vec![n.clone()],
        _ => Vec::new(),
    };
    let cx = crate::context::BuildContext::for_workspace(&ws, &reporter)?;
    let outcome = if matches!(query.wanted, Wanted::Layer(_)) {
        // A layer alone: a workspace with just it selected.
        let only = crate::manifest::Workspace {
            artifacts: vec![plan.clone()],
            ..ws.clone()
        };
        crate::pipeline::build_workspace(&cx, &only, &[])?
    } else {
        crate::pipeline::build_workspace(&cx, &ws, &names)?
    };
    for a in outcome.artifacts {
        match a {
            crate::outcome::ArtifactResult::Built(o) if o.name == name && o.kind == kind => {
                let zip = o.zip.canonicalize().unwrap_or(o.zip.clone());
                reporter.result(result(&zip, &o.sha256, &o.code_sha256, o.size).to_string());
                return Ok(());
            }
            crate::outcome::ArtifactResult::Failed { error, .. } => return Err(error),
            _ => {}
        }
    }
    Err(crate::Error::Input {
        message: format!("{kind} {name:?} was not built"),
        hint: "run `lbuild` to see why".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_name_one_artifact() {
        let q = parse_query(r#"{"function": "orders", "manifest": "x/lambda.toml"}"#).unwrap();
        assert_eq!(q.wanted, Wanted::Function("orders".into()));
        assert_eq!(q.manifest, Some(PathBuf::from("x/lambda.toml")));
        let q = parse_query(r#"{"layer": "common"}"#).unwrap();
        assert_eq!(q.wanted, Wanted::Layer("common".into()));
        for bad in [
            "",
            "[]",
            r#"{}"#,
            r#"{"function": "a", "layer": "b"}"#,
            r#"{"function": 3}"#,
            r#"{"functoin": "a"}"#,
        ] {
            let e = parse_query(bad).expect_err(bad);
            assert!(e.hint().is_some_and(|h| h.contains("query")), "{bad}: {e}");
        }
    }

    #[test]
    fn results_are_flat_strings() {
        let v = result(std::path::Path::new("/p/dist/a.zip"), "ab", "q83=", 12);
        for (_, value) in v.as_object().unwrap() {
            assert!(value.is_string(), "{v}");
        }
        assert_eq!(v["size"], "12");
    }
}
