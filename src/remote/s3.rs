//! The remote store over S3 (aws-sdk-s3): the client is aws-sdk-s3,
//! already in the tree for `lbuild deploy`: one HTTP/TLS stack, one
//! credential chain (`AWS_PROFILE`, SSO, roles) and `AWS_ENDPOINT_URL` for
//! MinIO, R2 and the like; `object_store` or `opendal` would add a second
//! HTTP client and signer for the same calls. It is created only when an
//! object is first needed, so a no-op build never touches the network. A
//! bucket that fails (unreachable, denied, slow: connect 2 s, each read
//! 10 s) is one warning; the build then goes on locally without calling it
//! again.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::{RemoteConfig, RemoteStore};
use crate::report::Reporter;

/// A connection to the remote store (made on first use).
pub(super) struct S3Remote {
    config: RemoteConfig,
    rt: tokio::runtime::Runtime,
    client: OnceLock<Option<aws_sdk_s3::Client>>,
    /// Set after the first failure: no further calls this run.
    down: AtomicBool,
}

/// At most this many requests in flight.
const PARALLEL: usize = 32;

impl S3Remote {
    /// A store for `config`, not yet connected.
    pub(super) fn new(config: &RemoteConfig) -> Option<S3Remote> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        Some(S3Remote {
            config: config.clone(),
            rt,
            client: OnceLock::new(),
            down: AtomicBool::new(false),
        })
    }

    fn client(&self) -> Option<&aws_sdk_s3::Client> {
        self.client
            .get_or_init(|| {
                let timeouts = aws_config::timeout::TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(2))
                    .read_timeout(Duration::from_secs(10))
                    .build();
                let config = self.rt.block_on(
                    aws_config::defaults(aws_config::BehaviorVersion::latest())
                        .timeout_config(timeouts)
                        .retry_config(
                            aws_config::retry::RetryConfig::standard().with_max_attempts(2),
                        )
                        .load(),
                );
                let s3 = aws_sdk_s3::config::Builder::from(&config)
                    .force_path_style(config.endpoint_url().is_some())
                    .build();
                Some(aws_sdk_s3::Client::from_conf(s3))
            })
            .as_ref()
    }

    fn key(&self, rel: &str) -> String {
        if self.config.prefix.is_empty() {
            rel.to_string()
        } else {
            format!("{}/{rel}", self.config.prefix)
        }
    }

    /// Marks the store down, with one warning for the whole run.
    fn fail(&self, reporter: &Reporter, what: String) {
        if !self.down.swap(true, Ordering::Relaxed) {
            reporter.warn(format!(
                "remote cache {} is not usable ({what}); building locally",
                self.config.url
            ));
        }
    }
}

impl RemoteStore for S3Remote {
    fn config(&self) -> &RemoteConfig {
        &self.config
    }

    fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    /// Fetches objects (`rel` names under the prefix): each is its bytes,
    /// or None when it is not there (or the store is down).
    fn get_many(&self, rels: &[String], reporter: &Reporter) -> Vec<Option<Vec<u8>>> {
        if rels.is_empty() || self.is_down() {
            return vec![None; rels.len()];
        }
        let Some(client) = self.client() else {
            return vec![None; rels.len()];
        };
        let bucket = &self.config.bucket;
        let results: Vec<Result<Option<Vec<u8>>, String>> = self.rt.block_on(async {
            let mut out = Vec::with_capacity(rels.len());
            for chunk in rels.chunks(PARALLEL) {
                let mut set = tokio::task::JoinSet::new();
                for (i, rel) in chunk.iter().enumerate() {
                    let req = client.get_object().bucket(bucket).key(self.key(rel));
                    set.spawn(async move {
                        let r = match req.send().await {
                            Ok(o) => match o.body.collect().await {
                                Ok(b) => Ok(Some(b.into_bytes().to_vec())),
                                Err(e) => Err(e.to_string()),
                            },
                            Err(e) if is_missing(&e) => Ok(None),
                            Err(e) => Err(describe(&e)),
                        };
                        (i, r)
                    });
                }
                let mut part: Vec<Option<Result<Option<Vec<u8>>, String>>> =
                    (0..chunk.len()).map(|_| None).collect();
                while let Some(j) = set.join_next().await {
                    if let Ok((i, r)) = j {
                        part[i] = Some(r);
                    }
                }
                let failed = part.iter().any(|r| !matches!(r, Some(Ok(_))));
                out.extend(
                    part.into_iter()
                        .map(|r| r.unwrap_or_else(|| Err("task failed".into()))),
                );
                if failed {
                    break;
                }
            }
            out
        });
        let mut fetched = Vec::with_capacity(rels.len());
        for r in results {
            match r {
                Ok(v) => fetched.push(v),
                Err(e) => {
                    self.fail(reporter, e);
                    fetched.push(None);
                }
            }
        }
        fetched.resize(rels.len(), None);
        fetched
    }

    /// Fetches one object into `file`, streamed (memory stays one chunk,
    /// whatever the object weighs): Some(true) when written, Some(false)
    /// when the bucket does not have it (or the file could not be
    /// written), None when the store is down.
    fn get_into(&self, rel: &str, file: &mut std::fs::File, reporter: &Reporter) -> Option<bool> {
        use std::io::Write;
        if self.is_down() {
            return None;
        }
        let client = self.client()?;
        // Err(Some(e)): the store failed; Err(None): writing here failed.
        let r: Result<bool, Option<String>> = self.rt.block_on(async {
            let req = client
                .get_object()
                .bucket(&self.config.bucket)
                .key(self.key(rel));
            match req.send().await {
                Ok(mut o) => {
                    while let Some(chunk) =
                        o.body.try_next().await.map_err(|e| Some(e.to_string()))?
                    {
                        file.write_all(&chunk).map_err(|_| None)?;
                    }
                    Ok(true)
                }
                Err(e) if is_missing(&e) => Ok(false),
                Err(e) => Err(Some(describe(&e))),
            }
        });
        match r {
            Ok(got) => Some(got),
            Err(Some(e)) => {
                self.fail(reporter, e);
                None
            }
            Err(None) => Some(false),
        }
    }

    /// Uploads a file as one object, streamed from disk (read-write mode
    /// only); best effort.
    fn put_file(&self, rel: &str, path: &std::path::Path, reporter: &Reporter) -> bool {
        if !self.can_write() {
            return false;
        }
        let Some(client) = self.client() else {
            return false;
        };
        let r = self.rt.block_on(async {
            let body = aws_sdk_s3::primitives::ByteStream::from_path(path)
                .await
                .map_err(|e| e.to_string())?;
            client
                .put_object()
                .bucket(&self.config.bucket)
                .key(self.key(rel))
                .body(body)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| describe(&e))
        });
        match r {
            Ok(()) => true,
            Err(e) => {
                self.fail(reporter, format!("upload: {e}"));
                false
            }
        }
    }

    /// Whether an object is there (None: the store is down).
    fn exists(&self, rel: &str, reporter: &Reporter) -> Option<bool> {
        if self.is_down() {
            return None;
        }
        let client = self.client()?;
        let r = self.rt.block_on(
            client
                .head_object()
                .bucket(&self.config.bucket)
                .key(self.key(rel))
                .send(),
        );
        match r {
            Ok(_) => Some(true),
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => Some(false),
            Err(e) => {
                self.fail(reporter, describe(&e));
                None
            }
        }
    }

    /// Uploads objects (read-write mode only); best effort.
    fn put_many(&self, items: Vec<(String, Vec<u8>)>, reporter: &Reporter) -> usize {
        if items.is_empty() || !self.can_write() {
            return 0;
        }
        let Some(client) = self.client() else {
            return 0;
        };
        let bucket = &self.config.bucket;
        let errors: Vec<String> = self.rt.block_on(async {
            let mut errors = Vec::new();
            let mut items = items.into_iter().peekable();
            while items.peek().is_some() {
                let mut set = tokio::task::JoinSet::new();
                for (rel, bytes) in items.by_ref().take(PARALLEL) {
                    let req = client
                        .put_object()
                        .bucket(bucket)
                        .key(self.key(&rel))
                        .body(bytes.into());
                    set.spawn(
                        async move { req.send().await.map(|_| ()).map_err(|e| describe(&e)) },
                    );
                }
                while let Some(j) = set.join_next().await {
                    match j {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => errors.push(e),
                        Err(e) => errors.push(e.to_string()),
                    }
                }
                if !errors.is_empty() {
                    break;
                }
            }
            errors
        });
        match errors.into_iter().next() {
            Some(e) => {
                self.fail(reporter, format!("upload: {e}"));
                0
            }
            None => 1,
        }
    }
}

/// Whether a GetObject failed because the object is not there.
fn is_missing(
    e: &aws_sdk_s3::error::SdkError<
        aws_sdk_s3::operation::get_object::GetObjectError,
        aws_sdk_s3::config::http::HttpResponse,
    >,
) -> bool {
    use aws_sdk_s3::operation::get_object::GetObjectError;
    matches!(e.as_service_error(), Some(GetObjectError::NoSuchKey(_)))
        || e.raw_response().is_some_and(|r| r.status().as_u16() == 404)
}

/// A short description of an SDK error (status and code when known).
fn describe<E: std::error::Error + 'static, R: std::fmt::Debug>(
    e: &aws_sdk_s3::error::SdkError<E, R>,
) -> String {
    aws_sdk_s3::error::DisplayErrorContext(e).to_string()
}
