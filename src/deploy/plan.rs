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
pub(super) fn check_offline(
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

/// A function's layer list before and after a deploy.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct LayerChange {
    /// The list to set, in the order Lambda stacks it.
    pub(super) new: Vec<String>,
    /// Attached on AWS, not named by the manifest, and kept.
    pub(super) kept: Vec<String>,
    /// Attached on AWS and dropped: lbuild's layers the manifest no longer
    /// names, unmanaged ones with `remove_unmanaged`.
    pub(super) removed: Vec<String>,
}

/// The layer list a function should have, computed from its `current` one
/// (`UpdateFunctionConfiguration` replaces the whole list): a version of a
/// declared layer (a layer of this deploy, or the layer of a declared ARN)
/// is replaced by the declared version, the manifest's entries keep its
/// order, and a layer the manifest does not name stays where it is unless
/// `remove_unmanaged` (a layer of this deploy that the function no longer
/// names is always removed: it is lbuild's). `versions` holds each layer
/// of this deploy's version ARN by its AWS name (`None` in a `--plan`
/// before publishing: then `NAME:(new version)`, matched by name).
pub(super) fn merge_layers(
    wanted: &[LayerRef],
    versions: &BTreeMap<&str, Option<String>>,
    current: &[String],
    remove_unmanaged: bool,
) -> LayerChange {
    // Each declared entry: the ARN to set and how to recognise a version
    // of the same layer in the current list.
    let declared: Vec<(String, Matcher)> = wanted
        .iter()
        .map(|l| match l {
            LayerRef::Arn(arn) => (arn.clone(), Matcher::Layer(layer_of_arn(arn).to_string())),
            LayerRef::Managed { aws_name, .. } => {
                match versions.get(aws_name.as_str()).cloned().flatten() {
                    Some(arn) => (arn.clone(), Matcher::Layer(layer_of_arn(&arn).to_string())),
                    None => (
                        format!("{aws_name}:(new version)"),
                        Matcher::Name(aws_name.clone()),
                    ),
                }
            }
        })
        .collect();
    let ours = |arn: &str| {
        versions.iter().any(|(name, v)| match v {
            Some(v) => layer_of_arn(v) == layer_of_arn(arn),
            None => layer_name(arn) == Some(name),
        }) || wanted.iter().any(|l| {
            matches!(l, LayerRef::Managed { aws_name, .. } if layer_name(arn) == Some(aws_name))
        })
    };
    let mut change = LayerChange::default();
    let mut emitted = vec![false; declared.len()];
    for c in current {
        match declared.iter().position(|(_, m)| m.matches(c)) {
            Some(i) if !emitted[i] => {
                // Declared entries before this one come first, in the
                // manifest's order.
                for j in 0..=i {
                    if !emitted[j] {
                        change.new.push(declared[j].0.clone());
                        emitted[j] = true;
                    }
                }
            }
            // Already set, moved before by the manifest's order.
            Some(_) => {}
            None if ours(c) || remove_unmanaged => change.removed.push(c.clone()),
            None => {
                change.new.push(c.clone());
                change.kept.push(c.clone());
            }
        }
    }
    for (j, (arn, _)) in declared.iter().enumerate() {
        if !emitted[j] {
            change.new.push(arn.clone());
        }
    }
    change
}

enum Matcher {
    /// A version of this layer (its ARN without the version).
    Layer(String),
    /// A layer of this name (a layer not yet published, in a plan).
    Name(String),
}

impl Matcher {
    fn matches(&self, arn: &str) -> bool {
        match self {
            Matcher::Layer(layer) => layer_of_arn(arn) == layer,
            Matcher::Name(name) => layer_name(arn) == Some(name),
        }
    }
}

/// A layer version ARN without its version: what stays the same from one
/// version of a layer to the next.
fn layer_of_arn(arn: &str) -> &str {
    arn.rsplit_once(':').map_or(arn, |(layer, _)| layer)
}

/// The NAME of `arn:aws:lambda:REGION:ACCOUNT:layer:NAME:VERSION`.
fn layer_name(arn: &str) -> Option<&str> {
    layer_of_arn(arn).rsplit_once(":layer:").map(|(_, n)| n)
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

    const POWERTOOLS: &str =
        "arn:aws:lambda:eu-west-1:017000801446:layer:AWSLambdaPowertoolsPythonV3:7";

    fn managed(name: &str) -> LayerRef {
        LayerRef::Managed {
            name: name.into(),
            aws_name: format!("dev-{name}"),
        }
    }

    fn dev(name: &str, version: u32) -> String {
        format!("arn:aws:lambda:eu-west-1:123456789012:layer:dev-{name}:{version}")
    }

    #[test]
    fn managed_versions_are_swapped_in_place_and_unmanaged_layers_kept() {
        let versions = BTreeMap::from([("dev-common", Some(dev("common", 5)))]);
        let current = [POWERTOOLS.to_string(), dev("common", 4)];
        let change = merge_layers(&[managed("common")], &versions, &current, false);
        assert_eq!(change.new, [POWERTOOLS.to_string(), dev("common", 5)]);
        assert_eq!(change.kept, [POWERTOOLS]);
        assert!(change.removed.is_empty());
        let change = merge_layers(&[managed("common")], &versions, &current, true);
        assert_eq!(change.new, [dev("common", 5)]);
        assert_eq!(change.removed, [POWERTOOLS]);
    }

    #[test]
    fn declared_entries_keep_the_manifests_order_and_new_ones_are_named_in_a_plan() {
        let public = "arn:aws:lambda:us-east-1:123456789012:layer:public:4";
        let wanted = [
            LayerRef::Arn(public.into()),
            managed("common"),
            managed("fresh"),
        ];
        let versions =
            BTreeMap::from([("dev-common", Some(dev("common", 3))), ("dev-fresh", None)]);
        // An older version of the declared ARN's layer is replaced; a
        // layer of this deploy the manifest dropped is removed.
        let current = [
            dev("common", 2),
            "arn:aws:lambda:us-east-1:123456789012:layer:public:3".to_string(),
            dev("fresh", 1),
        ];
        let change = merge_layers(&wanted, &versions, &current, false);
        assert_eq!(
            change.new,
            [
                public.to_string(),
                dev("common", 3),
                "dev-fresh:(new version)".into()
            ]
        );
        assert!(
            change.kept.is_empty() && change.removed.is_empty(),
            "{change:?}"
        );
        let change = merge_layers(&[managed("common")], &versions, &current, false);
        assert_eq!(change.new, [dev("common", 3), current[1].clone()]);
        assert_eq!(change.removed, [dev("fresh", 1)]);
        assert_eq!(change.kept, [current[1].clone()]);
    }

    #[test]
    fn nothing_declared_yet_appends_after_what_is_attached() {
        let versions = BTreeMap::from([("dev-common", Some(dev("common", 1)))]);
        let change = merge_layers(&[managed("common")], &versions, &[POWERTOOLS.into()], false);
        assert_eq!(change.new, [POWERTOOLS.to_string(), dev("common", 1)]);
    }
}
