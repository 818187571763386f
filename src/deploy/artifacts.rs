//! What a deploy takes: the built layer and function zips with their names
//! in AWS, and the options (`--plan`, `--strict`, the S3 bucket, name
//! prefix and suffix). It does not decide what changes (`plan.rs`).

use std::path::PathBuf;

use crate::manifest::{Architecture, Runtime, Workspace};
use crate::outcome::WorkspaceOutcome;

/// A built layer zip to publish.
#[derive(Debug, Clone)]
pub struct LayerArtifact {
    /// The layer's name in the manifest.
    pub name: String,
    /// Its name in AWS (see [`DeployOptions::aws_name`]).
    pub aws_name: String,
    pub zip: PathBuf,
    /// sha256 of the zip, hex.
    pub sha256: String,
    /// sha256 of the zip, base64 (Lambda's `CodeSha256`).
    pub code_sha256: String,
    pub size: u64,
    pub runtimes: Vec<Runtime>,
    pub architectures: Vec<Architecture>,
}

/// One entry of a function's layer list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerRef {
    /// A layer of this deploy: its matching (or newly published) version.
    Managed {
        /// Its name in the manifest.
        name: String,
        /// Its name in AWS.
        aws_name: String,
    },
    /// A layer version ARN given as is (e.g. a public layer).
    Arn(String),
}

/// A built function zip to put on an existing function.
#[derive(Debug, Clone)]
pub struct FunctionArtifact {
    /// The function's name in the manifest.
    pub name: String,
    /// Its name in AWS (see [`DeployOptions::aws_name`]).
    pub aws_name: String,
    pub zip: PathBuf,
    /// sha256 of the zip, hex.
    pub sha256: String,
    /// sha256 of the zip, base64 (Lambda's `CodeSha256`).
    pub code_sha256: String,
    pub size: u64,
    pub handler: String,
    pub runtime: Runtime,
    pub architecture: Architecture,
    /// `None`: lbuild leaves the function's layers alone. `Some(list)`: the
    /// layers the manifest declares, in this order; layers attached on AWS
    /// that it does not name are kept unless `remove_unmanaged_layers`
    /// (see `plan::merge_layers`).
    pub layers: Option<Vec<LayerRef>>,
}

/// What the command line (and later the manifest) says about deploying.
#[derive(Debug, Clone, Default)]
pub struct DeployOptions {
    /// Print what would be called; make no write call.
    pub plan: bool,
    /// A runtime or architecture differing from the manifest is an error.
    pub strict: bool,
    /// Where zips over the direct-upload limit are staged.
    pub s3_bucket: Option<String>,
    /// Key prefix in that bucket (`lbuild` when empty).
    pub s3_prefix: Option<String>,
    pub name_prefix: String,
    pub name_suffix: String,
    /// The function's name in AWS instead of the manifest's (`--name`): a
    /// deploy of one function only.
    pub name: Option<String>,
    /// Drop layers attached on AWS that the manifest does not name
    /// (`--remove-unmanaged-layers`); by default they are kept, with a
    /// warning.
    pub remove_unmanaged_layers: bool,
}

impl DeployOptions {
    /// These options, with the bucket and prefix from lambda.toml where
    /// the command line gave none.
    pub fn with_manifest(&self, ws: &Workspace) -> DeployOptions {
        let first = &ws.artifacts[0].lambda;
        DeployOptions {
            s3_bucket: self.s3_bucket.clone().or_else(|| first.s3_bucket.clone()),
            s3_prefix: self.s3_prefix.clone().or_else(|| first.s3_prefix.clone()),
            ..self.clone()
        }
    }

    /// The name in AWS: the manifest's name (or its override), with the
    /// stage prefix and suffix.
    pub fn aws_name(&self, manifest_name: &str, name_override: Option<&str>) -> String {
        format!(
            "{}{}{}",
            self.name_prefix,
            name_override.unwrap_or(manifest_name),
            self.name_suffix
        )
    }

    /// `PREFIX/SHA256.zip`: the same zip always has the same key.
    pub fn s3_key(&self, sha256: &str) -> String {
        let prefix = self
            .s3_prefix
            .as_deref()
            .unwrap_or("lbuild")
            .trim_matches('/');
        if prefix.is_empty() {
            format!("{sha256}.zip")
        } else {
            format!("{prefix}/{sha256}.zip")
        }
    }
}

impl FunctionArtifact {
    /// The artifact of a finished single-function build.
    pub fn from_build(
        plan: &crate::manifest::Plan,
        outcome: &crate::outcome::BuildOutcome,
        aws_name: String,
    ) -> FunctionArtifact {
        FunctionArtifact {
            name: plan.name.clone(),
            aws_name,
            zip: outcome.zip.clone(),
            sha256: outcome.sha256.clone(),
            code_sha256: outcome.code_sha256.clone(),
            size: outcome.size,
            handler: plan.handler.clone(),
            runtime: plan.runtime,
            architecture: plan.architecture,
            layers: None,
        }
    }
}

/// The artifacts to deploy after a build: every function and layer that
/// `names` selects (all when empty; see [`Workspace::select`]) and that
/// built, with its AWS name. A workspace function's layer list is exactly
/// the manifest's; a single function's layers are left alone. Used by
/// `lbuild deploy` and `lbuild watch --deploy`.
pub fn artifacts_from(
    ws: &Workspace,
    built: &WorkspaceOutcome,
    names: &[String],
    opts: &DeployOptions,
) -> crate::Result<(Vec<FunctionArtifact>, Vec<LayerArtifact>)> {
    if opts.name.is_some() && ws.functions().count() > 1 && names.len() != 1 {
        return Err(crate::Error::Input {
            message: "--name names one function, but this deploy has several".into(),
            hint: "add --function NAME, or set deploy = { name = \"...\" } per function in lambda.toml".into(),
        });
    }
    let mut functions = Vec::new();
    let mut layers = Vec::new();
    for plan in ws.select(names)? {
        let Some(outcome) = built.built(&plan.name, plan.kind.label()) else {
            continue;
        };
        if plan.is_layer() {
            layers.push(LayerArtifact {
                name: plan.name.clone(),
                aws_name: opts.aws_name(&plan.name, None),
                zip: outcome.zip.clone(),
                sha256: outcome.sha256.clone(),
                code_sha256: outcome.code_sha256.clone(),
                size: outcome.size,
                runtimes: vec![plan.runtime],
                architectures: vec![plan.architecture],
            });
            continue;
        }
        let name = opts.name.as_deref().unwrap_or(&plan.lambda.deploy_name);
        let mut f = FunctionArtifact::from_build(plan, outcome, opts.aws_name(name, None));
        if !ws.single {
            // A workspace function's layers are exactly the manifest's.
            let crate::manifest::ArtifactKind::Function { layers: named } = &plan.kind else {
                unreachable!("layers are handled above")
            };
            f.layers = Some(
                named
                    .iter()
                    .map(|l| match ws.layer(l) {
                        Some(layer) => LayerRef::Managed {
                            name: layer.name.clone(),
                            aws_name: opts.aws_name(&layer.name, None),
                        },
                        None => LayerRef::Arn(l.clone()),
                    })
                    .collect(),
            );
        }
        functions.push(f);
    }
    Ok((functions, layers))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_take_override_prefix_and_suffix() {
        let opts = DeployOptions {
            name_prefix: "dev-".into(),
            name_suffix: "-eu".into(),
            ..Default::default()
        };
        assert_eq!(opts.aws_name("orders", None), "dev-orders-eu");
        assert_eq!(opts.aws_name("orders", Some("shop")), "dev-shop-eu");
        assert_eq!(DeployOptions::default().aws_name("orders", None), "orders");
    }

    #[test]
    fn s3_keys_are_content_addressed() {
        let mut opts = DeployOptions::default();
        assert_eq!(opts.s3_key("abc"), "lbuild/abc.zip");
        opts.s3_prefix = Some("/builds/x/".into());
        assert_eq!(opts.s3_key("abc"), "builds/x/abc.zip");
        opts.s3_prefix = Some(String::new());
        assert_eq!(opts.s3_key("abc"), "abc.zip");
    }
}
