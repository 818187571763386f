//! The SDK calls of a deploy: the AWS configuration (region, credentials,
//! endpoint from the standard chain and `AWS_ENDPOINT_URL*`), the read
//! phase, then the writes (S3 staging by sha256, layer versions published
//! only when no version has the same `CodeSha256`, code and layer-list
//! updates, waits on `LastUpdateStatus`). What to do with what the reads
//! return is `plan.rs`'s; this file only talks to AWS.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_sdk_lambda::client::Waiters;
use aws_sdk_lambda::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{LastUpdateStatus, LayerVersionContentInput, State};

use super::error::classify;
use super::plan::{self, Deployed, check_config, check_offline, create_command};
use super::{
    DeployError, DeployOptions, DeployReport, FunctionArtifact, FunctionReport, LayerArtifact,
    LayerReport, LayersReport, Result, S3Object, Status,
};
use crate::report::Reporter;
use crate::size::DIRECT_UPLOAD_LIMIT;

/// How long to wait for one function update to finish.
const UPDATE_WAIT: Duration = Duration::from_secs(300);
/// Attempts per call (throttling and transient errors, with backoff).
const MAX_ATTEMPTS: u32 = 6;
/// How long one attempt of a call may take by default (LBUILD_AWS_TIMEOUT
/// sets it); a call with its retries gets [`OPERATION_ATTEMPTS`] times that.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(20);
/// One call, its retries included, is bounded by this many attempt
/// timeouts: a silent endpoint fails a call within about a minute.
const OPERATION_ATTEMPTS: u32 = 3;
/// Opening a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// An upload's bound grows by one second per this many bytes (a slow
/// 1 MiB/s link still finishes a 50 MB zip).
const UPLOAD_BYTES_PER_SECOND: u64 = 1 << 20;

/// The bounds of every AWS call: connect, one attempt (reading the
/// response included), the whole operation with its retries; an upload's
/// grow with its size ([`Timeouts::for_upload`]).
#[derive(Debug, Clone, Copy)]
pub(super) struct Timeouts {
    attempt: Duration,
}

impl Timeouts {
    /// From `LBUILD_AWS_TIMEOUT` (seconds per attempt), else the default.
    pub(super) fn from_env() -> Result<Timeouts> {
        match std::env::var("LBUILD_AWS_TIMEOUT") {
            Err(_) => Ok(Timeouts {
                attempt: ATTEMPT_TIMEOUT,
            }),
            Ok(value) => match value.trim().parse::<u64>() {
                Ok(secs @ 1..=3600) => Ok(Timeouts {
                    attempt: Duration::from_secs(secs),
                }),
                _ => Err(DeployError::BadTimeout { value }),
            },
        }
    }

    fn config(&self, attempt: Duration) -> aws_config::timeout::TimeoutConfig {
        aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(CONNECT_TIMEOUT.min(attempt))
            .read_timeout(attempt)
            .operation_attempt_timeout(attempt)
            .operation_timeout(attempt * OPERATION_ATTEMPTS)
            .build()
    }

    /// The bounds of a call that sends `bytes`.
    fn for_upload(&self, bytes: u64) -> aws_config::timeout::TimeoutConfig {
        self.config(self.attempt + Duration::from_secs(bytes / UPLOAD_BYTES_PER_SECOND))
    }

    /// The longest one call may take, for messages.
    fn operation(&self) -> Duration {
        self.attempt * OPERATION_ATTEMPTS
    }
}
/// Layer versions lbuild publishes carry this description, so a later
/// deploy can match them without a GetLayerVersion per version.
const LAYER_TAG: &str = "lbuild CodeSha256=";

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
    timeouts: Timeouts,
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
        let timeouts = Timeouts::from_env()?;
        let (config, region) = rt.block_on(async {
            let config = loader
                .retry_config(
                    aws_config::retry::RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS),
                )
                .timeout_config(timeouts.config(timeouts.attempt))
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
            // Bounded too: a credential process or an instance metadata
            // endpoint can hang like any other.
            tokio::time::timeout(timeouts.operation(), provider.provide_credentials())
                .await
                .map_err(|_| DeployError::NoCredentials {
                    message: format!(
                        "the credentials provider did not answer within {} s",
                        timeouts.operation().as_secs()
                    ),
                })?
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
            timeouts,
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
                    let s3 = self
                        .stage_plan(&layer.sha256, &layer.code_sha256, layer.size, opts)
                        .await?;
                    (Status::WouldPublish, None, s3)
                }
                None => {
                    let (arn, s3) = self.publish_layer(layer, opts, reporter).await?;
                    (Status::Published, Some(arn), s3)
                }
            };
            layer_arns.insert(&layer.aws_name, arn.clone());
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

        for (f, deployed, mut warnings, started) in function_states {
            let old = deployed.code_sha256.clone();
            let mut code_updated = false;
            let (status, s3) = if old == f.code_sha256 {
                (Status::Unchanged, None)
            } else if opts.plan {
                (
                    Status::WouldUpdate,
                    self.stage_plan(&f.sha256, &f.code_sha256, f.size, opts)
                        .await?,
                )
            } else {
                if deployed.busy {
                    reporter.info(format!(
                        "{}: an update is in progress; waiting for it to finish",
                        f.aws_name
                    ));
                    self.wait_updated(&f.aws_name).await?;
                }
                let s3 = self
                    .update_code(f, opts, reporter)
                    .await
                    .map_err(|e| e.after_layers(&f.aws_name))?;
                code_updated = true;
                (Status::Updated, s3)
            };
            let layers = match &f.layers {
                None => None,
                Some(wanted) => {
                    let change = plan::merge_layers(
                        wanted,
                        &layer_arns,
                        &deployed.layers,
                        opts.remove_unmanaged_layers,
                    );
                    for kept in &change.kept {
                        let w = format!(
                            "{}: keeps layer {kept}, attached on AWS but not named in lambda.toml (add it to the function's layers to declare it, or deploy with --remove-unmanaged-layers to remove it)",
                            f.aws_name
                        );
                        reporter.warn(&w);
                        warnings.push(w);
                    }
                    let status = if change.new == deployed.layers {
                        Status::Unchanged
                    } else if opts.plan {
                        Status::WouldUpdate
                    } else {
                        self.update_layers(&f.aws_name, &change.new, reporter)
                            .await
                            .map_err(|e| e.code_updated_first(&f.aws_name, code_updated))?;
                        Status::Updated
                    };
                    Some(LayersReport {
                        status,
                        old: deployed.layers.clone(),
                        new: change.new,
                        removed: change.removed,
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
            .customize()
            .config_override(
                aws_sdk_lambda::config::Builder::default()
                    .timeout_config(self.timeouts.for_upload(layer.size)),
            )
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
            let call = call.customize().config_override(
                aws_sdk_lambda::config::Builder::default()
                    .timeout_config(self.timeouts.for_upload(f.size)),
            );
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
            .map_err(|e| {
                use aws_sdk_lambda::waiters::function_updated_v2::WaitUntilFunctionUpdatedV2Error as W;
                let message = match &e {
                    W::ExceededMaxWait(w) => format!(
                        "still updating after {} s",
                        w.elapsed().as_secs()
                    ),
                    // Lambda says why in LastUpdateStatusReason.
                    W::FailureState(f) => match f.final_poll().as_result() {
                        Ok(out) => {
                            let c = out.configuration();
                            format!(
                                "{}: {}",
                                c.and_then(|c| c.last_update_status_reason_code())
                                    .map_or("Failed", |r| r.as_str()),
                                c.and_then(|c| c.last_update_status_reason())
                                    .map(super::error::escape_controls)
                                    .unwrap_or_else(|| "no reason given".into())
                            )
                        }
                        Err(err) => super::error::escape_controls(
                            err.meta().message().unwrap_or("failed"),
                        ),
                    },
                    W::OperationFailed(op) => {
                        return api_error_ref("lambda:GetFunction", name, op.error());
                    }
                    _ => innermost(&e),
                };
                DeployError::UpdateFailed {
                    name: name.to_string(),
                    message,
                }
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
        let Some(mut object) = self.stage_plan(sha256, code_sha256, size, opts).await? else {
            return Ok(None);
        };
        if object.existed {
            return Ok(Some(object));
        }
        if object.replaced {
            reporter.warn(format!(
                "{} holds other bytes than {} (its size or SHA-256 differs): uploading the zip again",
                s3_url(&object),
                zip.display()
            ));
        }
        reporter.info(format!(
            "uploading {} ({}) to s3://{}/{}",
            zip.display(),
            crate::units::human_size(size),
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
            // S3 checks the bytes against it and keeps it (HeadObject
            // returns it): it is the zip's CodeSha256.
            .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Sha256)
            .checksum_sha256(code_sha256)
            .customize()
            .config_override(
                aws_sdk_s3::config::Builder::default()
                    .timeout_config(self.timeouts.for_upload(size)),
            )
            .send()
            .await
            .map_err(|e| api_error("s3:PutObject", &s3_url(&object), e))?;
        object.existed = false;
        Ok(Some(object))
    }

    /// Where a zip would be staged and whether it is already there (reads
    /// only). An object at the key is the zip only if its size and its
    /// SHA-256 (stored by S3 at upload) are the zip's: anyone who can write
    /// the bucket can put other bytes there, and those must never go live.
    async fn stage_plan(
        &self,
        sha256: &str,
        code_sha256: &str,
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
            replaced: false,
        };
        match self
            .s3
            .head_object()
            .bucket(&object.bucket)
            .key(&object.key)
            .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
            .send()
            .await
        {
            Ok(head) => {
                let same = head.content_length() == Some(size as i64)
                    && head.checksum_sha256() == Some(code_sha256);
                object.existed = same;
                object.replaced = !same;
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => {}
            Err(e) => return Err(api_error("s3:GetObject", &s3_url(&object), e)),
        }
        Ok(Some(object))
    }
}

fn s3_url(o: &S3Object) -> String {
    format!("s3://{}/{}", o.bucket, o.key)
}

/// A failed SDK call as a [`DeployError`] (see [`classify`]): code and
/// message, never the SDK's debug dump.
fn api_error<E>(action: &'static str, resource: &str, e: SdkError<E>) -> DeployError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    api_error_ref(action, resource, &e)
}

fn api_error_ref<E>(action: &'static str, resource: &str, e: &SdkError<E>) -> DeployError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let response = e.raw_response().map(|r| {
        let body = r.body().bytes().map(String::from_utf8_lossy);
        (r.status().as_u16(), body.unwrap_or_default().into_owned())
    });
    classify(
        action,
        resource,
        e.code(),
        e.message(),
        response
            .as_ref()
            .map(|(status, body)| (*status, body.as_str())),
        || match e {
            SdkError::TimeoutError(_) => {
                "no answer in time (LBUILD_AWS_TIMEOUT sets the seconds one attempt may take)"
                    .to_string()
            }
            SdkError::DispatchFailure(d) if d.is_timeout() => {
                "no answer in time (LBUILD_AWS_TIMEOUT sets the seconds one attempt may take)"
                    .to_string()
            }
            SdkError::DispatchFailure(d) if d.is_io() => {
                format!("cannot reach the endpoint: {}", innermost(e))
            }
            _ => innermost(e),
        },
    )
}

// ------------------------------------------------------------ verify (read only)

/// What is deployed for one function: its `CodeSha256` and, per attached
/// layer version, (ARN, `CodeSha256`).
pub struct DeployedCode {
    pub code_sha256: String,
    pub layers: Vec<(String, String)>,
}

impl Deployer {
    /// GetFunction, then GetLayerVersionByArn for each layer attached whose
    /// name is in `layer_names` (the manifest's layers; others, such as a
    /// public layer, are not lbuild's to check). Makes no write call.
    /// `lbuild verify --deployed` compares these with a rebuild.
    pub fn deployed_code(&self, function: &str, layer_names: &[String]) -> Result<DeployedCode> {
        self.rt.block_on(async {
            let out = self
                .lambda
                .get_function()
                .function_name(function)
                .send()
                .await
                .map_err(|e| api_error("lambda:GetFunction", function, e))?;
            let c = out.configuration();
            let code_sha256 = c
                .and_then(|c| c.code_sha256())
                .unwrap_or_default()
                .to_string();
            let arns: Vec<String> = c
                .map(|c| {
                    c.layers()
                        .iter()
                        .filter_map(|l| l.arn())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default();
            let mut layers = Vec::new();
            for arn in arns {
                // arn:aws:lambda:REGION:ACCOUNT:layer:NAME:VERSION
                let name = arn.split(':').nth(6).unwrap_or_default();
                if !layer_names.iter().any(|n| n == name) {
                    continue;
                }
                let got = self
                    .lambda
                    .get_layer_version_by_arn()
                    .arn(&arn)
                    .send()
                    .await
                    .map_err(|e| api_error("lambda:GetLayerVersion", &arn, e))?;
                let sha = got
                    .content()
                    .and_then(|c| c.code_sha256())
                    .unwrap_or_default()
                    .to_string();
                layers.push((arn, sha));
            }
            Ok(DeployedCode {
                code_sha256,
                layers,
            })
        })
    }
}

/// The last message of an error's chain: what actually went wrong, in one
/// line, with control characters escaped (it can carry text from outside).
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !text.is_empty() {
            last = text;
        }
        source = s.source();
    }
    super::error::escape_controls(&last.chars().take(300).collect::<String>())
}
