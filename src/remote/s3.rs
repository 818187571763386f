//! The remote store over S3 (aws-sdk-s3): the client is aws-sdk-s3,
//! already in the tree for `lbuild deploy`: one HTTP/TLS stack, one
//! credential chain (`AWS_PROFILE`, SSO, roles) and `AWS_ENDPOINT_URL` for
//! MinIO, R2 and the like; `object_store` or `opendal` would add a second
//! HTTP client and signer for the same calls. It is created only when an
//! object is first needed, so a no-op build never touches the network. A
//! bucket that fails (unreachable, denied, slow: connect 2 s, each read
//! 10 s, all of a build's reads together the configured deadline) is one
//! warning; the build then goes on locally without calling it again.
//! Objects stream into temporary files, cut off at their cap. It checks
//! no signature and no content: the callers do.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::{RemoteConfig, RemoteStore, Wanted};
use crate::report::Reporter;

/// A connection to the remote store (made on first use).
pub(super) struct S3Remote {
    config: RemoteConfig,
    rt: tokio::runtime::Runtime,
    client: OnceLock<Option<aws_sdk_s3::Client>>,
    /// Set after the first failure: no further calls this run.
    down: AtomicBool,
    /// Time spent waiting on reads so far (against `config.deadline`).
    spent: std::sync::Mutex<Duration>,
    /// Set once the run was told its uploads are unsigned.
    warned_unsigned: AtomicBool,
}

/// At most this many requests in flight.
const PARALLEL: usize = 32;

/// At most this many KiB fetched at once, counted by the objects' caps:
/// objects stream to disk, but a cap is what a bucket may send.
const IN_FLIGHT_KIB: u64 = 64 * 1024;

/// The slowest upload a build waits for: a batch of uploads gets the read
/// deadline plus one second per this many bytes, so a 150 MB tree gets
/// about two and a half minutes and a stalled bucket cannot hold a build
/// (or `watch`) forever. Uploads only make later builds faster.
const UPLOAD_FLOOR_BYTES_PER_S: u64 = 1024 * 1024;

/// How long a batch of `bytes` may take to upload under `deadline`.
fn upload_deadline(deadline: Duration, bytes: u64) -> Duration {
    deadline + Duration::from_secs(bytes.div_ceil(UPLOAD_FLOOR_BYTES_PER_S))
}

/// What fetching one object came to.
enum Fetched {
    Got(tempfile::NamedTempFile),
    /// Not there (or the file could not be written here: only missed).
    Missing,
    TooLarge,
    /// The store failed.
    Failed(String),
}

/// Streams one object into a temporary file in `w.dir`, stopping as soon
/// as it passes `w.max` bytes.
async fn fetch_one(
    req: aws_sdk_s3::operation::get_object::builders::GetObjectFluentBuilder,
    w: &Wanted,
) -> Fetched {
    use std::io::Write;
    let mut o = match req.send().await {
        Ok(o) => o,
        Err(e) if is_missing(&e) => return Fetched::Missing,
        Err(e) => return Fetched::Failed(describe(&e)),
    };
    if o.content_length()
        .is_some_and(|n| n < 0 || n as u64 > w.max)
    {
        return Fetched::TooLarge;
    }
    if fs_err::create_dir_all(&w.dir).is_err() {
        return Fetched::Missing;
    }
    let Ok(mut file) = tempfile::Builder::new()
        .prefix(&crate::store::temp_prefix())
        .tempfile_in(&w.dir)
    else {
        return Fetched::Missing;
    };
    let mut got: u64 = 0;
    loop {
        match o.body.try_next().await {
            Ok(Some(chunk)) => {
                got += chunk.len() as u64;
                if got > w.max {
                    return Fetched::TooLarge;
                }
                if file.write_all(&chunk).is_err() {
                    return Fetched::Missing;
                }
            }
            // Handed over at its start, ready to be read.
            Ok(None) => {
                use std::io::Seek;
                return match file.flush().and_then(|()| file.rewind()) {
                    Ok(()) => Fetched::Got(file),
                    Err(_) => Fetched::Missing,
                };
            }
            Err(e) => return Fetched::Failed(e.to_string()),
        }
    }
}

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
            spent: std::sync::Mutex::new(Duration::ZERO),
            warned_unsigned: AtomicBool::new(false),
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

    /// Marks the store down, with one warning for the whole run (the
    /// server's words escaped: they came from outside).
    fn fail(&self, reporter: &Reporter, what: String) {
        if !self.down.swap(true, Ordering::Relaxed) {
            reporter.warn(format!(
                "remote cache {} is not usable ({}); building locally",
                crate::sanitize::escape_controls(&self.config.url),
                crate::sanitize::escape_controls(&what)
            ));
        }
    }

    /// What is left of the read deadline; None (and the store marked down)
    /// when nothing is.
    fn time_left(&self, reporter: &Reporter) -> Option<Duration> {
        let spent = *self.spent.lock().unwrap_or_else(|p| p.into_inner());
        let left = self.config.deadline.saturating_sub(spent);
        if left.is_zero() {
            self.fail(reporter, self.past_deadline());
            return None;
        }
        Some(left)
    }

    fn spend(&self, d: Duration) {
        *self.spent.lock().unwrap_or_else(|p| p.into_inner()) += d;
    }

    fn past_deadline(&self) -> String {
        format!(
            "its reads took longer than the {} s a build gives them; set LBUILD_REMOTE_DEADLINE (seconds) higher if the bucket is only far",
            self.config.deadline.as_secs_f64()
        )
    }
}

impl RemoteStore for S3Remote {
    fn config(&self) -> &RemoteConfig {
        &self.config
    }

    fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    /// Fetches objects into temporary files (see the trait), within what
    /// is left of the build's deadline, with at most [`PARALLEL`] requests
    /// and [`IN_FLIGHT_KIB`] KiB (by the objects' caps) under way at once.
    fn get_files(
        &self,
        wanted: &[Wanted],
        reporter: &Reporter,
    ) -> Vec<Option<tempfile::NamedTempFile>> {
        let none = || (0..wanted.len()).map(|_| None).collect();
        if wanted.is_empty() || self.is_down() {
            return none();
        }
        let Some(client) = self.client() else {
            return none();
        };
        let Some(left) = self.time_left(reporter) else {
            return none();
        };
        let started = std::time::Instant::now();
        let bucket = &self.config.bucket;
        let count = std::sync::Arc::new(tokio::sync::Semaphore::new(PARALLEL));
        let bytes = std::sync::Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT_KIB as usize));
        let fetch = async {
            let mut set = tokio::task::JoinSet::new();
            for (i, w) in wanted.iter().enumerate() {
                let req = client.get_object().bucket(bucket).key(self.key(&w.rel));
                let (count, bytes, w) = (count.clone(), bytes.clone(), w.clone());
                set.spawn(async move {
                    let kib = (w.max / 1024 + 1).min(IN_FLIGHT_KIB) as u32;
                    let _one = count.acquire_owned().await;
                    let _bytes = bytes.acquire_many_owned(kib).await;
                    (i, fetch_one(req, &w).await)
                });
            }
            let mut out: Vec<Option<Fetched>> = (0..wanted.len()).map(|_| None).collect();
            let mut failed = None;
            while let Some(j) = set.join_next().await {
                match j {
                    Ok((_, Fetched::Failed(e))) => {
                        set.abort_all();
                        failed.get_or_insert(e);
                    }
                    Ok((i, r)) => out[i] = Some(r),
                    Err(e) if e.is_cancelled() => {}
                    Err(e) => {
                        set.abort_all();
                        failed.get_or_insert(e.to_string());
                    }
                }
            }
            (out, failed)
        };
        let results = self
            .rt
            .block_on(async { tokio::time::timeout(left, fetch).await });
        self.spend(started.elapsed());
        let (results, failed) = match results {
            Ok(r) => r,
            Err(_) => {
                self.fail(reporter, self.past_deadline());
                return none();
            }
        };
        if let Some(e) = failed {
            self.fail(reporter, e);
            return none();
        }
        results
            .into_iter()
            .zip(wanted)
            .map(|(r, w)| match r {
                Some(Fetched::Got(f)) => Some(f),
                Some(Fetched::TooLarge) => {
                    reporter.warn(format!(
                        "remote cache object {} is larger than the {} bytes it may have; discarded",
                        crate::sanitize::escape_controls(&w.rel),
                        w.max
                    ));
                    None
                }
                _ => None,
            })
            .collect()
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
        if self.config.trust.signer.is_none() && !self.warned_unsigned.swap(true, Ordering::Relaxed)
        {
            reporter.warn(format!(
                "uploading unsigned objects to the remote cache {}: builds that trust only signed \
                 objects (the default) will not use them; set LBUILD_SIGNING_KEY (make a key with \
                 `lbuild cache keygen NAME`) and list its public half in [cache] trusted_keys",
                crate::sanitize::escape_controls(&self.config.url)
            ));
        }
        let bucket = &self.config.bucket;
        let bytes: u64 = items.iter().map(|(_, b)| b.len() as u64).sum();
        let limit = upload_deadline(self.config.deadline, bytes);
        let uploads = async {
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
        };
        let errors: Vec<String> = self.rt.block_on(async {
            tokio::time::timeout(limit, uploads)
                .await
                .unwrap_or_else(|_| {
                    vec![format!(
                        "uploads took longer than {} s; later builds upload what is missing",
                        limit.as_secs()
                    )]
                })
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
