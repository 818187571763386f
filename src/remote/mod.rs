//! The remote store: the machine store's objects in an S3-compatible
//! bucket, shared by a fleet (CI runners, laptops).
//!
//! `--remote-cache s3://BUCKET/PREFIX` (or `LBUILD_REMOTE_CACHE`, or
//! `[cache] remote` in lambda.toml). Objects are named by content keys only:
//! `PREFIX/entries/HASH-x|r-SETTINGS.zip` (a compressed entry, the one-entry
//! zip of the machine store), `PREFIX/deps/KEY.json` (a tree's record and
//! file list) and `PREFIX/deps/KEY-SETTINGS.zip` (the tree's files as
//! ready-to-copy compressed entries, written by lbuild's own zip writer).
//! Everything fetched must carry a signature by a trusted key (`trust.rs`,
//! unless `trust = "bucket"`) and is verified against the content hashes
//! it must have before it reaches a zip; a bad object is discarded with a
//! warning and the work is done locally.
//!
//! This module owns the configuration and the [`RemoteStore`] trait the
//! stages call through (handed to them in the
//! [`BuildContext`](crate::context::BuildContext)); `s3.rs` implements it
//! with aws-sdk-s3 and only moves bytes (bounded in time and size), behind
//! the `aws` cargo feature: a build without it refuses a configured remote
//! ([`connect`]) rather than building without it unasked. `objects.rs`
//! seals and opens the objects for the callers.

pub(crate) mod objects;
#[cfg(feature = "aws")]
mod s3;
pub(crate) mod trust;

use std::path::PathBuf;
use std::time::Duration;

use crate::report::Reporter;

/// Read only, or read and upload what this build made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Read,
    ReadWrite,
}

/// Where the remote store is and what a build may do with it.
#[derive(Debug, Clone)]
// Without the `aws` feature no transport reads where the bucket is.
#[cfg_attr(not(feature = "aws"), allow(dead_code))]
pub(crate) struct RemoteConfig {
    pub url: String,
    pub bucket: String,
    /// Without a trailing slash; may be empty.
    pub prefix: String,
    pub mode: Mode,
    /// Which objects a build accepts and how it signs what it uploads
    /// (checked by the callers, not the transport).
    pub trust: trust::Trust,
    /// How long this build may wait on the remote store's reads, all
    /// together (`LBUILD_REMOTE_DEADLINE`, seconds).
    pub deadline: Duration,
}

/// The default of [`RemoteConfig::deadline`]: a warm remote hit of a large
/// tree on a LAN takes about a second; a bucket slower than this is not
/// making the build faster.
pub(crate) const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);

/// One object to fetch: its name, the most bytes it may have (a larger
/// object is discarded as it streams in, with a warning) and the directory
/// its temporary file is made in (the machine store's, so a checked object
/// is renamed into place, never copied).
#[derive(Debug, Clone)]
#[cfg_attr(not(feature = "aws"), allow(dead_code))]
pub(crate) struct Wanted {
    pub rel: String,
    pub max: u64,
    pub dir: PathBuf,
}

/// `s3://BUCKET/PREFIX` and a mode (`read`, `read-write`; default
/// read-write when `ci`, else read).
pub(crate) fn parse(url: &str, mode: Option<&str>, ci: bool) -> Result<RemoteConfig, crate::Error> {
    let bad = |message: String| {
        crate::Error::Input {
        message,
        hint: "write it as s3://BUCKET or s3://BUCKET/PREFIX (the endpoint comes from AWS_ENDPOINT_URL)".into(),
    }
    };
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| bad(format!("remote cache {url:?} is not an s3:// URL")))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(bad(format!("remote cache {url:?} names no bucket")));
    }
    let mode = match mode.map(str::trim) {
        None | Some("") => {
            if ci {
                Mode::ReadWrite
            } else {
                Mode::Read
            }
        }
        Some("read") => Mode::Read,
        Some("read-write") => Mode::ReadWrite,
        Some(other) => {
            return Err(crate::Error::Input {
                message: format!("remote cache mode {other:?} is not read or read-write"),
                hint: "use --remote-cache-mode read (fetch only) or read-write (fetch and upload)"
                    .into(),
            });
        }
    };
    Ok(RemoteConfig {
        url: url.to_string(),
        bucket: bucket.to_string(),
        prefix: prefix.trim_matches('/').to_string(),
        mode,
        trust: trust::Trust::default(),
        deadline: DEFAULT_DEADLINE,
    })
}

/// The object operations a build needs from a remote store. Names are
/// relative to the store's prefix. Every method is best effort: a store
/// that fails is marked down with one warning and later calls return
/// "not there" (None / false / 0) so the build goes on locally.
pub(crate) trait RemoteStore: Send + Sync {
    fn config(&self) -> &RemoteConfig;

    /// Set after the first failure: no further calls this run.
    fn is_down(&self) -> bool;

    fn can_write(&self) -> bool {
        self.config().mode == Mode::ReadWrite && !self.is_down()
    }

    /// Fetches objects, each streamed into a temporary file in its
    /// `dir` (never whole in memory; the bytes in flight at once are
    /// bounded): None when it is not there, is larger than its `max`
    /// (with a warning), or the store is down or past its deadline.
    fn get_files(
        &self,
        wanted: &[Wanted],
        reporter: &Reporter,
    ) -> Vec<Option<tempfile::NamedTempFile>>;

    /// Uploads a file as one object, streamed from disk (read-write only).
    fn put_file(&self, rel: &str, path: &std::path::Path, reporter: &Reporter) -> bool;

    /// Whether an object is there (None: the store is down).
    fn exists(&self, rel: &str, reporter: &Reporter) -> Option<bool>;

    /// Uploads objects (read-write only): 1 when all went, else 0.
    fn put_many(&self, items: Vec<(String, Vec<u8>)>, reporter: &Reporter) -> usize;
}

/// Connects (lazily: no request until an object is needed) to the store
/// `config` names. None when this build cannot reach one.
#[cfg(feature = "aws")]
pub(crate) fn connect(
    config: &RemoteConfig,
) -> crate::Result<Option<std::sync::Arc<dyn RemoteStore>>> {
    Ok(
        s3::S3Remote::new(config)
            .map(|r| std::sync::Arc::new(r) as std::sync::Arc<dyn RemoteStore>),
    )
}

/// A build without the `aws` feature has no S3 client: a remote cache the
/// command line, environment or manifest asks for is an error (exit 2).
#[cfg(not(feature = "aws"))]
pub(crate) fn connect(
    config: &RemoteConfig,
) -> crate::Result<Option<std::sync::Arc<dyn RemoteStore>>> {
    Err(crate::Error::without_aws(
        &format!("the remote cache {}", config.url),
        ", or build without it: drop --remote-cache, unset LBUILD_REMOTE_CACHE, or remove `remote` from lambda.toml's [cache]",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_modes_parse() {
        let c = parse("s3://b/team/lbuild/", None, false).unwrap();
        assert_eq!((c.bucket.as_str(), c.prefix.as_str()), ("b", "team/lbuild"));
        assert_eq!(c.mode, Mode::Read);
        assert_eq!(parse("s3://b", None, true).unwrap().mode, Mode::ReadWrite);
        assert_eq!(
            parse("s3://b", Some("read"), true).unwrap().mode,
            Mode::Read
        );
        assert!(parse("https://b", None, false).is_err());
        assert!(parse("s3:///x", None, false).is_err());
        assert!(parse("s3://b", Some("write"), false).is_err());
    }
}
