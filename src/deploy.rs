//! `lbuild deploy`: put built zips on existing Lambda functions and publish
//! layers, making no write call when the deployed code is already the same.
//!
//! Owns the AWS side: the SDK configuration (region, credentials, endpoint
//! from the standard chain and `AWS_ENDPOINT_URL*`), the comparison of
//! `CodeSha256` values, S3 staging of zips over the direct-upload limit
//! (content-addressed keys), layer versions (published only when no version
//! has the same `CodeSha256`), waiting on `LastUpdateStatus`, and errors that
//! say what to do. It does not build (the caller passes finished artifacts)
//! and never creates or deletes functions.
//!
//! The work is split in two phases so that every check happens before the
//! first write: a read phase (ListLayerVersions, GetLayerVersion,
//! GetFunction, HeadObject) that `--plan` stops after, then the writes
//! (PutObject, PublishLayerVersion, UpdateFunctionCode,
//! UpdateFunctionConfiguration), layers first.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use aws_sdk_lambda::client::Waiters;
use aws_sdk_lambda::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{LastUpdateStatus, LayerVersionContentInput, State};
use serde::Serialize;

use crate::manifest::{Architecture, Runtime, Workspace};
use crate::pipeline::WorkspaceOutcome;
use crate::report::{Mode, Reporter};
use crate::size::DIRECT_UPLOAD_LIMIT;

/// How long to wait for one function update to finish.
const UPDATE_WAIT: Duration = Duration::from_secs(300);
/// Attempts per call (throttling and transient errors, with backoff).
const MAX_ATTEMPTS: u32 = 6;
/// Layer versions lbuild publishes carry this description, so a later
/// deploy can match them without a GetLayerVersion per version.
const LAYER_TAG: &str = "lbuild CodeSha256=";

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error(
        "{name}: {} is {} bytes, over the {DIRECT_UPLOAD_LIMIT}-byte limit for a direct upload, and no S3 bucket is set",
        zip.display(),
        size
    )]
    NeedsBucket {
        name: String,
        zip: PathBuf,
        size: u64,
    },
    #[error("no AWS region is configured")]
    NoRegion,
    #[error("no AWS credentials found: {message}")]
    NoCredentials { message: String },
    #[error("the Lambda function {name} does not exist in {region}")]
    FunctionNotFound {
        name: String,
        region: String,
        create: String,
    },
    #[error("access denied: {action} on {resource}: {message}")]
    AccessDenied {
        action: &'static str,
        resource: String,
        message: String,
    },
    #[error("{name}: the function's {what} is {deployed} but lambda.toml says {manifest}")]
    Mismatch {
        name: String,
        what: &'static str,
        deployed: String,
        manifest: String,
    },
    #[error("{action} {resource} failed: {message}")]
    Api {
        action: &'static str,
        resource: String,
        code: Option<String>,
        message: String,
    },
    #[error("{name}: the update did not finish: {message}")]
    UpdateFailed { name: String, message: String },
    #[error("{name}: Lambda reports CodeSha256 {got} after the upload, expected {expected}")]
    HashMismatch {
        name: String,
        expected: String,
        got: String,
    },
    #[error("cannot start the AWS client: {0}")]
    Runtime(std::io::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl DeployError {
    pub fn hint(&self) -> Option<String> {
        match self {
            DeployError::NeedsBucket { .. } => Some(
                "pass --s3-bucket BUCKET (a bucket in the function's region): the zip is uploaded to s3://BUCKET/PREFIX/SHA256.zip and deployed from there"
                    .into(),
            ),
            DeployError::NoRegion => Some(
                "set AWS_REGION (or AWS_DEFAULT_REGION), or use a profile with a region (AWS_PROFILE, `aws configure`)"
                    .into(),
            ),
            DeployError::NoCredentials { .. } => Some(
                "set AWS_PROFILE (after `aws sso login` or `aws configure`), or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run where an instance or task role is available"
                    .into(),
            ),
            DeployError::FunctionNotFound { create, .. } => Some(format!(
                "lbuild updates existing functions and does not create them: create it with Terraform (aws_lambda_function), SAM (AWS::Serverless::Function) or the CLI:\n    {create}\n  (check the region and the name: --name, --name-prefix and --name-suffix change it)"
            )),
            DeployError::AccessDenied { action, .. } => Some(format!(
                "allow {action} on that resource in the IAM policy of the identity deploying (`aws sts get-caller-identity` shows which one)"
            )),
            DeployError::Mismatch { what, .. } => Some(format!(
                "change the function's {what} where it is defined (Terraform, SAM, console) or in lambda.toml, or deploy without --strict"
            )),
            DeployError::Api { code, .. } => match code.as_deref() {
                Some(
                    "UnrecognizedClientException"
                    | "InvalidSignatureException"
                    | "ExpiredTokenException"
                    | "ExpiredToken"
                    | "InvalidAccessKeyId"
                    | "SignatureDoesNotMatch",
                ) => Some(
                    "the credentials were refused: refresh them (`aws sso login`) or check AWS_PROFILE / AWS_ACCESS_KEY_ID"
                        .into(),
                ),
                Some("NoSuchBucket") => {
                    Some("create the bucket in the function's region, or pass another --s3-bucket".into())
                }
                _ => None,
            },
            DeployError::UpdateFailed { .. } => Some(
                "see the function's LastUpdateStatusReason (`aws lambda get-function-configuration`) and deploy again"
                    .into(),
            ),
            DeployError::HashMismatch { .. } => {
                Some("deploy again; if it persists the zip changed during the upload".into())
            }
            DeployError::Runtime(_) | DeployError::Io(_) => None,
        }
    }
}

type Result<T, E = DeployError> = std::result::Result<T, E>;

// ---------------------------------------------------------------- inputs

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
    /// A layer of this deploy, by manifest name: its matching version.
    Managed(String),
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
    /// function's layers are exactly this list, in this order.
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
        outcome: &crate::pipeline::BuildOutcome,
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
            f.layers = Some(
                ws.layers_of(plan)
                    .iter()
                    .map(|l| LayerRef::Managed(l.name.clone()))
                    .collect(),
            );
        }
        functions.push(f);
    }
    Ok((functions, layers))
}

// ---------------------------------------------------------------- results

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
    /// Already there (same sha256, so same bytes): not uploaded again.
    pub existed: bool,
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
                    println!("{}", serde_json::to_string(l).unwrap_or_default());
                }
                for f in &self.functions {
                    println!("{}", serde_json::to_string(f).unwrap_or_default());
                }
            }
            Mode::Human => {
                for l in &self.layers {
                    let s3 = l.s3.as_ref().map(s3_note).unwrap_or_default();
                    println!(
                        "layer     {:<24} {:<13} {}{s3}",
                        l.aws_name,
                        l.status.as_str(),
                        l.version_arn.as_deref().unwrap_or(&l.code_sha256),
                    );
                }
                for f in &self.functions {
                    let hashes = if f.status == Status::Unchanged {
                        f.new_code_sha256.clone()
                    } else {
                        format!("{} -> {}", f.old_code_sha256, f.new_code_sha256)
                    };
                    let s3 = f.s3.as_ref().map(s3_note).unwrap_or_default();
                    println!(
                        "function  {:<24} {:<13} {hashes}{s3}",
                        f.aws_name,
                        f.status.as_str()
                    );
                    if let Some(l) = &f.layers
                        && l.status != Status::Unchanged
                    {
                        println!(
                            "          {:<24} layers {}: [{}]",
                            "",
                            l.status.as_str(),
                            l.new.join(", ")
                        );
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
        if o.existed { ", already uploaded" } else { "" }
    )
}

// ---------------------------------------------------------------- checks

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

/// Builds, plans or deploys in one call: the offline checks, a client, then
/// [`Deployer::deploy`].
pub fn deploy(
    functions: &[FunctionArtifact],
    layers: &[LayerArtifact],
    opts: &DeployOptions,
    reporter: &Reporter,
) -> Result<DeployReport> {
    check_offline(functions, layers, opts)?;
    Deployer::connect()?.deploy(functions, layers, opts, reporter)
}

// ---------------------------------------------------------------- the client

/// An AWS connection: a current-thread tokio runtime and the two clients.
/// Keep one for several deploys (`lbuild watch --deploy`) to reuse
/// connections and credentials.
pub struct Deployer {
    rt: tokio::runtime::Runtime,
    lambda: aws_sdk_lambda::Client,
    s3: aws_sdk_s3::Client,
    region: String,
}

impl Deployer {
    /// Loads the standard configuration (environment, profile, SSO,
    /// container or instance role; `AWS_ENDPOINT_URL` and
    /// `AWS_ENDPOINT_URL_LAMBDA` / `_S3`) and checks that a region and
    /// credentials are there before any API call.
    pub fn connect() -> Result<Deployer> {
        Self::connect_with(aws_config::defaults(aws_config::BehaviorVersion::latest()))
    }

    /// [`Deployer::connect`] with settings of the caller's (tests give an
    /// endpoint and credentials without touching the environment).
    pub fn connect_with(loader: aws_config::ConfigLoader) -> Result<Deployer> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(DeployError::Runtime)?;
        let (config, region) = rt.block_on(async {
            let config = loader
                .retry_config(
                    aws_config::retry::RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS),
                )
                .load()
                .await;
            let region = config
                .region()
                .map(|r| r.to_string())
                .ok_or(DeployError::NoRegion)?;
            use aws_sdk_lambda::config::ProvideCredentials;
            let provider =
                config
                    .credentials_provider()
                    .ok_or_else(|| DeployError::NoCredentials {
                        message: "no credentials provider".into(),
                    })?;
            provider
                .provide_credentials()
                .await
                .map_err(|e| DeployError::NoCredentials {
                    message: aws_sdk_lambda::error::DisplayErrorContext(&e).to_string(),
                })?;
            Ok::<_, DeployError>((config, region))
        })?;
        let lambda = aws_sdk_lambda::Client::new(&config);
        // An endpoint override is a local emulator or a proxy: address
        // buckets by path (a host name per bucket would not resolve).
        let s3_config = aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(config.endpoint_url().is_some())
            .build();
        let s3 = aws_sdk_s3::Client::from_conf(s3_config);
        Ok(Deployer {
            rt,
            lambda,
            s3,
            region,
        })
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// Publishes the layers that changed, then updates the functions whose
    /// code or layer list changed. With `opts.plan`, only reads.
    pub fn deploy(
        &self,
        functions: &[FunctionArtifact],
        layers: &[LayerArtifact],
        opts: &DeployOptions,
        reporter: &Reporter,
    ) -> Result<DeployReport> {
        check_offline(functions, layers, opts)?;
        self.rt
            .block_on(self.run(functions, layers, opts, reporter))
    }

    async fn run(
        &self,
        functions: &[FunctionArtifact],
        layers: &[LayerArtifact],
        opts: &DeployOptions,
        reporter: &Reporter,
    ) -> Result<DeployReport> {
        // Read phase: everything that can fail before a write.
        let mut layer_states = Vec::new();
        for layer in layers {
            let started = Instant::now();
            let existing = self.matching_layer_version(layer).await?;
            layer_states.push((layer, existing, started));
        }
        let mut function_states = Vec::new();
        for f in functions {
            let started = Instant::now();
            let deployed = self.get_function(f).await?;
            let warnings = check_config(f, &deployed, opts.strict)?;
            for w in &warnings {
                reporter.warn(w);
            }
            function_states.push((f, deployed, warnings, started));
        }

        // Layers first: functions point at their versions.
        let mut report = DeployReport::default();
        let mut layer_arns: BTreeMap<&str, Option<String>> = BTreeMap::new();
        for (layer, existing, started) in layer_states {
            let (status, arn, s3) = match existing {
                Some(arn) => (Status::Unchanged, Some(arn), None),
                None if opts.plan => {
                    let s3 = self.stage_plan(&layer.sha256, layer.size, opts).await?;
                    (Status::WouldPublish, None, s3)
                }
                None => {
                    let (arn, s3) = self.publish_layer(layer, opts, reporter).await?;
                    (Status::Published, Some(arn), s3)
                }
            };
            layer_arns.insert(&layer.name, arn.clone());
            report.layers.push(LayerReport {
                kind: "layer",
                name: layer.name.clone(),
                aws_name: layer.aws_name.clone(),
                status,
                version_arn: arn,
                code_sha256: layer.code_sha256.clone(),
                s3,
                ms: started.elapsed().as_millis() as u64,
            });
        }

        for (f, deployed, warnings, started) in function_states {
            let old = deployed.code_sha256.clone();
            let (status, s3) = if old == f.code_sha256 {
                (Status::Unchanged, None)
            } else if opts.plan {
                (
                    Status::WouldUpdate,
                    self.stage_plan(&f.sha256, f.size, opts).await?,
                )
            } else {
                if deployed.busy {
                    reporter.info(format!(
                        "{}: an update is in progress; waiting for it to finish",
                        f.aws_name
                    ));
                    self.wait_updated(&f.aws_name).await?;
                }
                let s3 = self.update_code(f, opts, reporter).await?;
                (Status::Updated, s3)
            };
            let layers = match &f.layers {
                None => None,
                Some(wanted) => {
                    let new: Vec<String> = wanted
                        .iter()
                        .map(|l| match l {
                            LayerRef::Arn(arn) => arn.clone(),
                            LayerRef::Managed(name) => layer_arns
                                .get(name.as_str())
                                .cloned()
                                .flatten()
                                .unwrap_or_else(|| format!("{name}:(new version)")),
                        })
                        .collect();
                    let status = if new == deployed.layers {
                        Status::Unchanged
                    } else if opts.plan {
                        Status::WouldUpdate
                    } else {
                        self.update_layers(&f.aws_name, &new, reporter).await?;
                        Status::Updated
                    };
                    Some(LayersReport {
                        status,
                        old: deployed.layers.clone(),
                        new,
                    })
                }
            };
            report.functions.push(FunctionReport {
                kind: "function",
                name: f.name.clone(),
                aws_name: f.aws_name.clone(),
                status,
                old_code_sha256: old,
                new_code_sha256: f.code_sha256.clone(),
                sha256: f.sha256.clone(),
                s3,
                layers,
                warnings,
                ms: started.elapsed().as_millis() as u64,
            });
        }
        Ok(report)
    }

    // ------------------------------------------------------------ layers

    /// The ARN of a version of `layer` with the same `CodeSha256`, if any.
    async fn matching_layer_version(&self, layer: &LayerArtifact) -> Result<Option<String>> {
        let mut versions = Vec::new();
        let mut pages = self
            .lambda
            .list_layer_versions()
            .layer_name(&layer.aws_name)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page =
                page.map_err(|e| api_error("lambda:ListLayerVersions", &layer.aws_name, e))?;
            versions.extend(page.layer_versions().iter().cloned());
        }
        // Newest first: a rebuilt-back layer most likely matches a recent one.
        versions.sort_by_key(|v| std::cmp::Reverse(v.version()));
        for v in versions {
            let Some(arn) = v.layer_version_arn() else {
                continue;
            };
            // lbuild's own versions say their hash in the description
            // (immutable, like the content).
            if let Some(tagged) = v.description().and_then(|d| d.strip_prefix(LAYER_TAG)) {
                if tagged == layer.code_sha256 {
                    return Ok(Some(arn.to_string()));
                }
                continue;
            }
            let got = self
                .lambda
                .get_layer_version()
                .layer_name(&layer.aws_name)
                .version_number(v.version())
                .send()
                .await
                .map_err(|e| api_error("lambda:GetLayerVersion", arn, e))?;
            if got.content().and_then(|c| c.code_sha256()) == Some(layer.code_sha256.as_str()) {
                return Ok(Some(arn.to_string()));
            }
        }
        Ok(None)
    }

    async fn publish_layer(
        &self,
        layer: &LayerArtifact,
        opts: &DeployOptions,
        reporter: &Reporter,
    ) -> Result<(String, Option<S3Object>)> {
        let (content, s3) = match self
            .stage(
                &layer.zip,
                &layer.sha256,
                &layer.code_sha256,
                layer.size,
                opts,
                reporter,
            )
            .await?
        {
            Some(o) => (
                LayerVersionContentInput::builder()
                    .s3_bucket(&o.bucket)
                    .s3_key(&o.key)
                    .build(),
                Some(o),
            ),
            None => (
                LayerVersionContentInput::builder()
                    .zip_file(Blob::new(fs_err::read(&layer.zip)?))
                    .build(),
                None,
            ),
        };
        reporter.info(format!(
            "publishing a new version of layer {}",
            layer.aws_name
        ));
        let mut call = self
            .lambda
            .publish_layer_version()
            .layer_name(&layer.aws_name)
            .description(format!("{LAYER_TAG}{}", layer.code_sha256))
            .content(content);
        for r in &layer.runtimes {
            call =
                call.compatible_runtimes(aws_sdk_lambda::types::Runtime::from(r.name().as_str()));
        }
        for a in &layer.architectures {
            call = call
                .compatible_architectures(aws_sdk_lambda::types::Architecture::from(a.as_str()));
        }
        let out = call
            .send()
            .await
            .map_err(|e| api_error("lambda:PublishLayerVersion", &layer.aws_name, e))?;
        let got = out
            .content()
            .and_then(|c| c.code_sha256())
            .unwrap_or_default();
        if got != layer.code_sha256 {
            return Err(DeployError::HashMismatch {
                name: layer.aws_name.clone(),
                expected: layer.code_sha256.clone(),
                got: got.to_string(),
            });
        }
        let arn = out.layer_version_arn().unwrap_or_default().to_string();
        Ok((arn, s3))
    }

    // ------------------------------------------------------------ functions

    async fn get_function(&self, f: &FunctionArtifact) -> Result<Deployed> {
        let out = self
            .lambda
            .get_function()
            .function_name(&f.aws_name)
            .send()
            .await
            .map_err(|e| {
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception())
                {
                    DeployError::FunctionNotFound {
                        name: f.aws_name.clone(),
                        region: self.region.clone(),
                        create: create_command(f),
                    }
                } else {
                    api_error("lambda:GetFunction", &f.aws_name, e)
                }
            })?;
        let c = out.configuration();
        Ok(Deployed {
            code_sha256: c
                .and_then(|c| c.code_sha256())
                .unwrap_or_default()
                .to_string(),
            runtime: c.and_then(|c| c.runtime()).map(|r| r.as_str().to_string()),
            architectures: c
                .map(|c| {
                    c.architectures()
                        .iter()
                        .map(|a| a.as_str().to_string())
                        .collect()
                })
                .unwrap_or_default(),
            layers: c
                .map(|c| {
                    c.layers()
                        .iter()
                        .filter_map(|l| l.arn())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default(),
            busy: c.is_some_and(|c| {
                c.last_update_status() == Some(&LastUpdateStatus::InProgress)
                    || c.state() == Some(&State::Pending)
            }),
        })
    }

    async fn update_code(
        &self,
        f: &FunctionArtifact,
        opts: &DeployOptions,
        reporter: &Reporter,
    ) -> Result<Option<S3Object>> {
        let s3 = self
            .stage(&f.zip, &f.sha256, &f.code_sha256, f.size, opts, reporter)
            .await?;
        let zip_bytes = match s3 {
            Some(_) => None,
            None => Some(Blob::new(fs_err::read(&f.zip)?)),
        };
        reporter.info(format!("updating the code of {}", f.aws_name));
        let mut waited = false;
        let out = loop {
            let mut call = self
                .lambda
                .update_function_code()
                .function_name(&f.aws_name);
            call = match (&s3, &zip_bytes) {
                (Some(o), _) => call.s3_bucket(&o.bucket).s3_key(&o.key),
                (None, Some(b)) => call.zip_file(b.clone()),
                (None, None) => unreachable!("either staged or read"),
            };
            match call.send().await {
                Ok(out) => break out,
                // Another update started since GetFunction: let it finish.
                Err(e)
                    if !waited
                        && e.as_service_error()
                            .is_some_and(|s| s.is_resource_conflict_exception()) =>
                {
                    reporter.info(format!(
                        "{}: an update is in progress; waiting for it to finish",
                        f.aws_name
                    ));
                    self.wait_updated(&f.aws_name).await?;
                    waited = true;
                }
                Err(e) => return Err(api_error("lambda:UpdateFunctionCode", &f.aws_name, e)),
            }
        };
        let got = out.code_sha256().unwrap_or_default();
        if got != f.code_sha256 {
            return Err(DeployError::HashMismatch {
                name: f.aws_name.clone(),
                expected: f.code_sha256.clone(),
                got: got.to_string(),
            });
        }
        self.wait_updated(&f.aws_name).await?;
        Ok(s3)
    }

    async fn update_layers(&self, name: &str, arns: &[String], reporter: &Reporter) -> Result<()> {
        reporter.info(format!("pointing {name} at its layers"));
        let mut call = self
            .lambda
            .update_function_configuration()
            .function_name(name);
        if arns.is_empty() {
            // An empty list clears the layers; the SDK sends nothing for
            // a list that was never set.
            call = call.set_layers(Some(Vec::new()));
        }
        for arn in arns {
            call = call.layers(arn);
        }
        call.send()
            .await
            .map_err(|e| api_error("lambda:UpdateFunctionConfiguration", name, e))?;
        self.wait_updated(name).await
    }

    /// Waits until the function's `LastUpdateStatus` is `Successful` (the
    /// SDK's `function_updated_v2` waiter, which polls GetFunction).
    async fn wait_updated(&self, name: &str) -> Result<()> {
        self.lambda
            .wait_until_function_updated_v2()
            .function_name(name)
            .wait(UPDATE_WAIT)
            .await
            .map(|_| ())
            .map_err(|e| DeployError::UpdateFailed {
                name: name.to_string(),
                message: aws_sdk_lambda::error::DisplayErrorContext(&e).to_string(),
            })
    }

    // ------------------------------------------------------------ S3

    /// For a zip over the direct-upload limit: makes sure it is in the
    /// bucket (HeadObject, PutObject only when absent). `None` for a zip
    /// small enough to send directly.
    async fn stage(
        &self,
        zip: &std::path::Path,
        sha256: &str,
        code_sha256: &str,
        size: u64,
        opts: &DeployOptions,
        reporter: &Reporter,
    ) -> Result<Option<S3Object>> {
        let Some(mut object) = self.stage_plan(sha256, size, opts).await? else {
            return Ok(None);
        };
        if object.existed {
            return Ok(Some(object));
        }
        reporter.info(format!(
            "uploading {} ({}) to s3://{}/{}",
            zip.display(),
            crate::pipeline::human_size(size),
            object.bucket,
            object.key
        ));
        let body = aws_sdk_s3::primitives::ByteStream::from_path(zip)
            .await
            .map_err(|e| std::io::Error::other(format!("cannot read {}: {e}", zip.display())))?;
        self.s3
            .put_object()
            .bucket(&object.bucket)
            .key(&object.key)
            .body(body)
            // S3 checks the bytes against it; it is the zip's CodeSha256.
            .checksum_sha256(code_sha256)
            .send()
            .await
            .map_err(|e| api_error("s3:PutObject", &s3_url(&object), e))?;
        object.existed = false;
        Ok(Some(object))
    }

    /// Where a zip would be staged and whether it is already there (reads only).
    async fn stage_plan(
        &self,
        sha256: &str,
        size: u64,
        opts: &DeployOptions,
    ) -> Result<Option<S3Object>> {
        if size <= DIRECT_UPLOAD_LIMIT {
            return Ok(None);
        }
        let Some(bucket) = &opts.s3_bucket else {
            // check_offline refuses this before any call.
            return Ok(None);
        };
        let mut object = S3Object {
            bucket: bucket.clone(),
            key: opts.s3_key(sha256),
            existed: false,
        };
        match self
            .s3
            .head_object()
            .bucket(&object.bucket)
            .key(&object.key)
            .send()
            .await
        {
            Ok(_) => object.existed = true,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => {}
            Err(e) => return Err(api_error("s3:GetObject", &s3_url(&object), e)),
        }
        Ok(Some(object))
    }
}

fn s3_url(o: &S3Object) -> String {
    format!("s3://{}/{}", o.bucket, o.key)
}

/// What GetFunction said.
#[derive(Debug)]
struct Deployed {
    code_sha256: String,
    runtime: Option<String>,
    architectures: Vec<String>,
    layers: Vec<String>,
    /// An update is still running (or the function is being created).
    busy: bool,
}

/// Runtime and architecture: the manifest's must be the function's.
/// Differences are warnings, or an error with `strict`.
fn check_config(f: &FunctionArtifact, deployed: &Deployed, strict: bool) -> Result<Vec<String>> {
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
fn create_command(f: &FunctionArtifact) -> String {
    format!(
        "aws lambda create-function --function-name {} --runtime {} --architectures {} --handler {} --role arn:aws:iam::ACCOUNT_ID:role/ROLE_NAME --zip-file fileb://{}",
        f.aws_name,
        f.runtime.name(),
        f.architecture.as_str(),
        f.handler,
        f.zip.display()
    )
}

/// An SDK error, named after the IAM action it needed when it is a denial.
fn api_error<E>(action: &'static str, resource: &str, e: SdkError<E>) -> DeployError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    // An error body the SDK could not read (a proxy's page, an emulator's
    // XML for a JSON API) still says its code and message.
    let body = e
        .raw_response()
        .and_then(|r| r.body().bytes())
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default();
    let xml = |tag: &str| {
        body.split_once(&format!("<{tag}>"))
            .and_then(|(_, rest)| rest.split_once(&format!("</{tag}>")))
            .map(|(v, _)| v.trim().to_string())
    };
    let code = e.code().map(String::from).or_else(|| xml("Code"));
    let message = match (
        e.message().map(String::from).or_else(|| xml("Message")),
        e.raw_response(),
    ) {
        (Some(m), _) => format!("{}: {m}", code.as_deref().unwrap_or("error")),
        (None, Some(raw)) => format!(
            "HTTP {} {}",
            raw.status().as_u16(),
            body.chars().take(200).collect::<String>().trim()
        ),
        (None, None) => aws_sdk_lambda::error::DisplayErrorContext(&e).to_string(),
    };
    let denied = matches!(
        code.as_deref(),
        Some("AccessDeniedException" | "AccessDenied" | "AuthorizationError")
    ) || e.raw_response().is_some_and(|r| r.status().as_u16() == 403)
        && !matches!(
            code.as_deref(),
            Some(
                "InvalidAccessKeyId"
                    | "SignatureDoesNotMatch"
                    | "ExpiredToken"
                    | "InvalidSignatureException"
                    | "UnrecognizedClientException"
            )
        );
    if denied {
        DeployError::AccessDenied {
            action,
            resource: resource.to_string(),
            message,
        }
    } else {
        DeployError::Api {
            action,
            resource: resource.to_string(),
            code,
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
