//! The deploy's decisions that need no AWS call: a zip over the
//! direct-upload limit needs a bucket (checked before any call, so nothing
//! is half-deployed), a function's runtime and architecture against the
//! manifest's, the layer list a function should have, and the
//! `aws lambda create-function` line a missing function's hint shows.
//! What the calls return comes in as plain values ([`Deployed`]).

use std::collections::BTreeMap;

use super::{DeployError, DeployOptions, FunctionArtifact, LayerArtifact, LayerRef, Result};
use crate::size::DIRECT_UPLOAD_LIMIT;

/// Checks that need no AWS call: a zip over the direct-upload limit needs a
/// bucket. Run before anything else so that nothing is half-deployed.
pub fn check_offline(
    functions: &[FunctionArtifact],
    layers: &[LayerArtifact],
    opts: &DeployOptions,
) -> Result<()> {
    if opts.s3_bucket.is_some() {
        return Ok(());
    }
    let zips = layers
        .iter()
        .map(|l| (&l.name, &l.zip, l.size))
        .chain(functions.iter().map(|f| (&f.name, &f.zip, f.size)));
    for (name, zip, size) in zips {
        if size > DIRECT_UPLOAD_LIMIT {
            return Err(DeployError::NeedsBucket {
                name: name.clone(),
                zip: zip.clone(),
                size,
            });
        }
    }
    Ok(())
}

/// What GetFunction said.
#[derive(Debug)]
pub(super) struct Deployed {
    pub(super) code_sha256: String,
    pub(super) runtime: Option<String>,
    pub(super) architectures: Vec<String>,
    /// The layer version ARNs, in order.
    pub(super) layers: Vec<String>,
    /// An update is still running (or the function is being created).
    pub(super) busy: bool,
}

/// Runtime and architecture: the manifest's must be the function's.
/// Differences are warnings, or an error with `strict`.
pub(super) fn check_config(
    f: &FunctionArtifact,
    deployed: &Deployed,
    strict: bool,
) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    let manifest_runtime = f.runtime.name();
    if let Some(rt) = &deployed.runtime
        && *rt != manifest_runtime
    {
        let e = DeployError::Mismatch {
            name: f.aws_name.clone(),
            what: "runtime",
            deployed: rt.clone(),
            manifest: manifest_runtime.clone(),
        };
        if strict {
            return Err(e);
        }
        warnings.push(format!(
            "{e} (the zip's wheels were chosen for {manifest_runtime})"
        ));
    }
    let arch = f.architecture.as_str();
    if !deployed.architectures.is_empty() && !deployed.architectures.iter().any(|a| a == arch) {
        let e = DeployError::Mismatch {
            name: f.aws_name.clone(),
            what: "architecture",
            deployed: deployed.architectures.join(","),
            manifest: arch.to_string(),
        };
        if strict {
            return Err(e);
        }
        warnings.push(format!(
            "{e} (native code in the zip may not load; --strict makes this an error)"
        ));
    }
    Ok(warnings)
}

/// The `aws lambda create-function` call that would create `f`.
pub(super) fn create_command(f: &FunctionArtifact) -> String {
    format!(
        "aws lambda create-function --function-name {} --runtime {} --architectures {} --handler {} --role arn:aws:iam::ACCOUNT_ID:role/ROLE_NAME --zip-file fileb://{}",
        f.aws_name,
        f.runtime.name(),
        f.architecture.as_str(),
        f.handler,
        f.zip.display()
    )
}

/// The layer version ARNs a function's list names, in its order: a layer
/// of this deploy by its matching (or just published) version, a `--plan`
/// layer not yet published as `NAME:(new version)`, an ARN as given.
pub(super) fn layer_arns(
    wanted: &[LayerRef],
    versions: &BTreeMap<&str, Option<String>>,
) -> Vec<String> {
    wanted
        .iter()
        .map(|l| match l {
            LayerRef::Arn(arn) => arn.clone(),
            LayerRef::Managed(name) => versions
                .get(name.as_str())
                .cloned()
                .flatten()
                .unwrap_or_else(|| format!("{name}:(new version)")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Architecture, Runtime};
    use std::path::PathBuf;

    fn artifact(size: u64) -> FunctionArtifact {
        FunctionArtifact {
            name: "hello".into(),
            aws_name: "dev-hello".into(),
            zip: PathBuf::from("dist/hello.zip"),
            sha256: "ab".repeat(32),
            code_sha256: "x".into(),
            size,
            handler: "app.handler".into(),
            runtime: Runtime::parse("python3.12").unwrap(),
            architecture: Architecture::Arm64,
            layers: None,
        }
    }

    #[test]
    fn large_zip_without_bucket_is_refused_offline() {
        let opts = DeployOptions::default();
        let e = check_offline(&[artifact(DIRECT_UPLOAD_LIMIT + 1)], &[], &opts).unwrap_err();
        assert!(matches!(e, DeployError::NeedsBucket { .. }), "{e}");
        assert!(e.hint().unwrap().contains("--s3-bucket"));
        check_offline(&[artifact(DIRECT_UPLOAD_LIMIT)], &[], &opts).unwrap();
        let with_bucket = DeployOptions {
            s3_bucket: Some("b".into()),
            ..Default::default()
        };
        check_offline(&[artifact(DIRECT_UPLOAD_LIMIT + 1)], &[], &with_bucket).unwrap();
    }

    #[test]
    fn mismatches_warn_or_fail_with_strict() {
        let f = artifact(1);
        let deployed = Deployed {
            code_sha256: String::new(),
            runtime: Some("python3.12".into()),
            architectures: vec!["x86_64".into()],
            layers: vec![],
            busy: false,
        };
        let warnings = check_config(&f, &deployed, false).unwrap();
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].contains("architecture is x86_64"),
            "{warnings:?}"
        );
        let e = check_config(&f, &deployed, true).unwrap_err();
        assert!(matches!(
            e,
            DeployError::Mismatch {
                what: "architecture",
                ..
            }
        ));
    }

    #[test]
    fn not_found_hint_shows_create_function() {
        let f = artifact(1);
        let e = DeployError::FunctionNotFound {
            name: f.aws_name.clone(),
            region: "eu-west-1".into(),
            create: create_command(&f),
        };
        let hint = e.hint().unwrap();
        assert!(hint.contains("aws lambda create-function --function-name dev-hello --runtime python3.12 --architectures arm64 --handler app.handler"), "{hint}");
        assert!(hint.contains("Terraform") && hint.contains("SAM"));
    }

    #[test]
    fn a_layer_list_names_versions_in_order_and_new_ones_in_a_plan() {
        let wanted = [
            LayerRef::Arn("arn:aws:lambda:us-east-1:1:layer:public:4".into()),
            LayerRef::Managed("common".into()),
            LayerRef::Managed("fresh".into()),
        ];
        let versions = BTreeMap::from([
            (
                "common",
                Some("arn:aws:lambda:us-east-1:1:layer:dev-common:3".to_string()),
            ),
            ("fresh", None),
        ]);
        assert_eq!(
            layer_arns(&wanted, &versions),
            [
                "arn:aws:lambda:us-east-1:1:layer:public:4",
                "arn:aws:lambda:us-east-1:1:layer:dev-common:3",
                "fresh:(new version)",
            ]
        );
    }
}
