//! The remote objects as the stages read and write them, through
//! [`trust`](super::trust): how big each may be, how an object is sealed
//! (signed) before upload, and how a fetched one is opened (its signature
//! checked, its trailer cut off) before anything else looks at it.
//!
//! A tree's record (`deps/KEY.json`) carries the BLAKE3 digest and size of
//! the tree's zip, so one signature covers both, and the zip is fetched
//! with its exact size as its cap. An entry (`entries/NAME.zip`) carries
//! its own signature over its exact bytes: a trusted writer's lbuild made
//! those bytes, so an entry deflated at another level, or stored, by
//! someone else is refused rather than copied into a zip whose bytes would
//! then differ from every other machine's.
//!
//! Owns the objects' envelopes and caps; does not verify contents against
//! content hashes (the zip writer and `archive::verify_tree_zip` do).

use std::io::Read;
use std::path::Path;

use super::trust::{Rejection, Trust};
use super::{RemoteStore, Wanted};
use crate::cache::Hash;
use crate::report::Reporter;
use crate::sanitize::escape_controls;

/// The most a tree's record may weigh: ~1 MB for 4,600 files.
pub(crate) const RECORD_MAX: u64 = 64 << 20;

/// The most a compressed entry of `size` content bytes may weigh: deflate
/// is kept only when smaller, so the content, the zip's headers (its name
/// twice, at most 64 KiB each) and a trailer.
pub(crate) fn entry_max(size: u64) -> u64 {
    size + 2 * 65_536 + 1024
}

/// A tree's zip as its signed record states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ZipFacts {
    pub digest: Hash,
    pub size: u64,
}

/// The record object for a tree: `record` (a JSON object) with the zip's
/// digest and size added, sealed under `name`.
pub(crate) fn seal_record(
    trust: &Trust,
    name: &str,
    mut record: serde_json::Value,
    zip: &Path,
) -> std::io::Result<Vec<u8>> {
    let mut h = blake3::Hasher::new();
    h.update_reader(std::fs::File::open(zip)?)?;
    let size = fs_err::metadata(zip)?.len();
    if let Some(o) = record.as_object_mut() {
        o.insert(
            "remote_zip".into(),
            serde_json::json!({"blake3": h.finalize().to_hex().to_string(), "size": size}),
        );
    }
    Ok(trust.seal(name, &serde_json::to_vec(&record).unwrap_or_default()))
}

/// Fetches and opens a tree's record: its JSON body and the zip facts it
/// signs. Err with the reason and what happens instead (escaped) when the
/// object is there but not accepted; Ok(None) when it is not there.
pub(crate) fn fetch_record(
    remote: &dyn RemoteStore,
    name: &str,
    dir: &Path,
    reporter: &Reporter,
) -> Result<Option<(Vec<u8>, ZipFacts)>, String> {
    let wanted = [Wanted {
        rel: name.to_string(),
        max: RECORD_MAX,
        dir: dir.to_path_buf(),
    }];
    let Some(file) = remote.get_files(&wanted, reporter).pop().flatten() else {
        return Ok(None);
    };
    let mut bytes = Vec::new();
    file.as_file()
        .take(RECORD_MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot be read here ({e}); installing locally"))?;
    let trust = &remote.config().trust;
    warn_bucket(trust, reporter);
    let body = trust
        .open(name, &bytes)
        .map_err(|r| format!("{r}; discarded, installing locally{}", unsigned_hint(&r)))?;
    #[derive(serde::Deserialize)]
    struct Facts {
        remote_zip: ZipJson,
    }
    #[derive(serde::Deserialize)]
    struct ZipJson {
        blake3: String,
        size: u64,
    }
    let facts: Facts = serde_json::from_slice(body).map_err(|_| {
        "has a record that does not name its tree's zip; discarded, installing locally".to_string()
    })?;
    let digest = Hash::from_hex(facts.remote_zip.blake3.as_bytes()).map_err(|_| {
        "has a record whose zip digest is not a digest; discarded, installing locally".to_string()
    })?;
    Ok(Some((
        body.to_vec(),
        ZipFacts {
            digest,
            size: facts.remote_zip.size,
        },
    )))
}

/// Fetches a tree's zip into `dir` and checks it is exactly the one its
/// record signs (size, then digest); the file is persisted at `to`.
pub(crate) fn fetch_tree_zip(
    remote: &dyn RemoteStore,
    name: &str,
    facts: ZipFacts,
    to: &Path,
    reporter: &Reporter,
) -> Result<bool, String> {
    let dir = to.parent().unwrap_or(Path::new("."));
    let wanted = [Wanted {
        rel: name.to_string(),
        max: facts.size,
        dir: dir.to_path_buf(),
    }];
    let Some(file) = remote.get_files(&wanted, reporter).pop().flatten() else {
        return Ok(false);
    };
    let len = file.as_file().metadata().map(|m| m.len()).unwrap_or(0);
    let mut h = blake3::Hasher::new();
    let mut f = file.as_file();
    h.update_reader(&mut f).map_err(|e| e.to_string())?;
    if len != facts.size || h.finalize() != facts.digest {
        return Err("is not the zip its signed record names".into());
    }
    file.persist(to).map_err(|e| e.error.to_string())?;
    Ok(true)
}

/// One compressed entry to fetch into the machine store.
pub(crate) struct EntryWanted {
    /// Its object name (`entries/NAME.zip`).
    pub rel: String,
    /// Its content size (for the cap).
    pub size: u64,
    /// Where the machine store keeps it.
    pub path: std::path::PathBuf,
}

/// Fetches compressed entries into the machine store: each is accepted
/// only with a signature this reader trusts over its name and exact bytes
/// (or, with `trust = "bucket"`, without one), then renamed into place,
/// its trailer cut off. What was refused is one warning for all; returns
/// which were put.
pub(crate) fn fetch_entries(
    remote: &dyn RemoteStore,
    wanted: &[EntryWanted],
    reporter: &Reporter,
) -> Vec<bool> {
    let requests: Vec<Wanted> = wanted
        .iter()
        .map(|w| Wanted {
            rel: w.rel.clone(),
            max: entry_max(w.size),
            dir: w.path.parent().unwrap_or(Path::new(".")).to_path_buf(),
        })
        .collect();
    let files = remote.get_files(&requests, reporter);
    let trust = &remote.config().trust;
    if files.iter().any(Option::is_some) {
        warn_bucket(trust, reporter);
    }
    let mut refused: Vec<(String, Rejection)> = Vec::new();
    let put = files
        .into_iter()
        .zip(wanted)
        .map(|(file, w)| {
            let Some(mut file) = file else {
                return false;
            };
            let checked = super::trust::cut_trailer(file.as_file_mut()).and_then(|(len, line)| {
                trust.check_file(&w.rel, file.as_file_mut(), len, line.as_deref())
            });
            match checked {
                Ok(Ok(())) => file.persist(&w.path).is_ok(),
                Ok(Err(why)) => {
                    refused.push((w.rel.clone(), why));
                    false
                }
                Err(_) => false,
            }
        })
        .collect();
    if let Some((first, why)) = refused.first() {
        reporter.warn(format!(
            "{} remote cache object(s) refused, e.g. {} {why}; compressing locally{}",
            refused.len(),
            escape_controls(first),
            unsigned_hint(why)
        ));
    }
    put
}

/// Once per process: objects read unsigned under `trust = "bucket"`.
static BUCKET_WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The one warning `trust = "bucket"` gives, when it first matters.
fn warn_bucket(trust: &Trust, reporter: &Reporter) {
    if trust.mode == super::trust::TrustMode::Bucket
        && !BUCKET_WARNED.swap(true, std::sync::atomic::Ordering::Relaxed)
    {
        reporter.warn(
            "the remote cache is read with trust = \"bucket\": whoever can write the bucket decides what the zips contain; sign with `lbuild cache keygen` and list the key in [cache] trusted_keys instead",
        );
    }
}

/// What to do about an object refused for want of a trusted signature.
pub(crate) fn unsigned_hint(why: &Rejection) -> &'static str {
    match why {
        Rejection::Unsigned | Rejection::UntrustedKey(_) => {
            " (trust the writer's key with [cache] trusted_keys or LBUILD_TRUSTED_KEYS, or read unsigned objects with trust = \"bucket\")"
        }
        Rejection::BadSignature(_) => "",
    }
}
