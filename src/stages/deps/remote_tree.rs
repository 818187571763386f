//! Dependency trees in the remote store: fetching one where the machine
//! store misses (its record checked against its digest, every entry of
//! its zip against the record, then published in the machine store as
//! that zip) and uploading one after a build (read-write mode). The
//! transport is `crate::remote`'s; the machine store's side is
//! [`super::tree_store`].

use std::path::PathBuf;

use super::DepsError;
use super::tree_store::{
    SharedTree, TreeZipRecord, key_dir, publish, read_shared, safe_name, staging_dir, tree_zip_of,
};
use crate::cache::Hash;
use crate::manifest::Plan;
use crate::remote::RemoteStore;
use crate::report::Reporter;
use crate::stages::Entry;
use crate::store::{MachineStore, TREE_RECORD};

/// The names of a tree's objects in the remote store: its record (files,
/// hashes, modes; no times) and its files as compressed entries for these
/// archive settings.
pub(super) fn remote_names(key: &Hash, settings: &crate::archive::Settings) -> (String, String) {
    let hex = key.to_hex();
    (
        format!("deps/{hex}.json"),
        format!("deps/{hex}-{}.zip", &settings.id().to_hex()[..16]),
    )
}

/// The tree of `key` from the remote store: its record, then its zip of
/// compressed entries, streamed to a file in the machine store. The
/// record is checked against its digest, and every entry of the zip
/// against the record (name, the header lbuild writes, content hash by a
/// full inflate) before the tree is published: kept as that zip (see
/// [`TreeZipRecord`]), not unpacked, since the package is made by copying
/// its entries raw. None when the remote store does not have it, is down,
/// or sent something that does not verify (with a warning).
pub(super) fn fetch_remote(
    remote: &dyn RemoteStore,
    plan: &Plan,
    store: &MachineStore,
    key: &Hash,
    reporter: &Reporter,
) -> crate::Result<Option<SharedTree>> {
    let settings = crate::stages::package::settings(plan)?;
    let (json_name, zip_name) = remote_names(key, &settings);
    let deps_dir = store.deps_dir();
    let bad = |why: &str| {
        reporter.warn(format!(
            "remote cache object {zip_name} {why}; discarded, installing locally"
        ));
        Ok(None)
    };
    // Signed (or read with trust = "bucket") before anything else is read
    // from it: nothing unsigned reaches the machine store.
    let (json, facts) =
        match crate::remote::objects::fetch_record(remote, &json_name, &deps_dir, reporter) {
            Ok(Some(got)) => got,
            Ok(None) => return Ok(None),
            Err(why) => {
                reporter.warn(format!("remote cache object {json_name} {why}"));
                return Ok(None);
            }
        };
    let Ok(mut shared) = serde_json::from_slice::<SharedTree>(&json) else {
        return bad("has an unreadable record");
    };
    // What the machine store knows about its own copy is never taken
    // from the bucket.
    shared.zip = None;
    let listed: Vec<Entry> = shared
        .files
        .iter()
        .map(|f| Entry {
            name: f.name.clone(),
            path: PathBuf::new(),
            hash: f.hash,
            size: f.size,
            executable: f.executable,
        })
        .collect();
    // A tree no zip may hold (Lambda's unzipped quota) is not worth
    // fetching: installing says what is wrong with it, if anything.
    if listed.iter().map(|e| e.size).sum::<u64>() > crate::limits::UNZIPPED_LIMIT {
        return bad("lists more bytes than Lambda unpacks");
    }
    if shared.record.files != listed.len()
        || crate::entry::entries_digest(&listed) != shared.record.digest
        || !listed.iter().all(|e| safe_name(&e.name))
        || !listed
            .windows(2)
            .all(|w| w[0].name.as_bytes() < w[1].name.as_bytes())
    {
        return bad("has a record that does not match its digest");
    }
    let io = DepsError::io;
    let tmp = staging_dir(&deps_dir, "cannot fetch dependencies")?;
    let id = settings.id();
    let file = format!("tree-{}.zip", &id.to_hex()[..16]);
    let zip_path = tmp.path().join(&file);
    match crate::remote::objects::fetch_tree_zip(remote, &zip_name, facts, &zip_path, reporter) {
        Ok(true) => {}
        Ok(false) => return Ok(None),
        Err(why) => return bad(&why),
    }
    let raw = match crate::archive::verify_tree_zip(&zip_path, &listed, &settings) {
        Ok(raw) => raw,
        Err(Some(name)) => {
            return bad(&format!(
                "holds {name} with other bytes than its content hash"
            ));
        }
        Err(None) => return bad("does not hold the files its record lists"),
    };
    let meta = fs_err::metadata(&zip_path).map_err(io("cannot fetch dependencies"))?;
    for f in &mut shared.files {
        f.mtime_ns = 0;
    }
    shared.zip = Some(TreeZipRecord {
        file,
        settings: id,
        size: meta.len(),
        mtime_ns: crate::entry::mtime_ns(&meta),
        raw: raw.iter().map(|h| h.to_hex().to_string()).collect(),
    });
    fs_err::write(
        tmp.path().join(TREE_RECORD),
        serde_json::to_string(&shared).unwrap_or_default(),
    )
    .map_err(io("cannot record the fetched deps tree"))?;
    let staged = tmp.keep();
    publish(store.root(), &staged, key, shared, Vec::new(), false).map(|(shared, _)| Some(shared))
}

/// After a build that wrote a zip (read-write mode): puts the tree of
/// `key` in the remote store unless it is there, as its record (times
/// left out) and a zip of its files written by lbuild's own writer from
/// the machine store's compressed entries (so nothing is compressed
/// again). Best effort.
pub(crate) fn upload_remote(
    remote: &dyn RemoteStore,
    plan: &Plan,
    store: &MachineStore,
    key: &Hash,
    entries: &[Entry],
    reporter: &Reporter,
) -> crate::Result<bool> {
    let settings = crate::stages::package::settings(plan)?;
    let (json_name, zip_name) = remote_names(key, &settings);
    // Known to be there (uploaded, or seen): no request at all.
    let marker = key_dir(store.root(), key).join(format!(
        "remote-{}",
        blake3::hash(format!("{}\n{zip_name}", remote.config().url).as_bytes()).to_hex()
    ));
    if marker.exists() {
        return Ok(false);
    }
    match remote.exists(&zip_name, reporter) {
        Some(false) => {}
        Some(true) => {
            let _ = fs_err::write(&marker, "");
            return Ok(false);
        }
        None => return Ok(false),
    }
    let Some(mut shared) = read_shared(store.root(), key) else {
        return Ok(false);
    };
    // A tree kept as the zip it was fetched as is sent as it is (every
    // entry was checked on arrival, and is checked again by whoever
    // fetches it); an installed one is zipped by lbuild's writer from the
    // machine store's compressed entries.
    let kept = tree_zip_of(store.root(), key, &shared, &settings);
    shared.zip = None;
    for f in &mut shared.files {
        f.mtime_ns = 0;
    }
    let written;
    let zip_path = match &kept {
        Some(z) => z.path(),
        None => {
            let Ok(file) = tempfile::NamedTempFile::new() else {
                return Ok(false);
            };
            if crate::archive::write_zip(file.as_file(), entries, &settings, &[store]).is_err() {
                return Ok(false);
            }
            written = file;
            written.path()
        }
    };
    // The record names the zip's digest and size, and is signed with the
    // key this build was given (if any): one signature covers both.
    let Ok(json) = crate::remote::objects::seal_record(
        &remote.config().trust,
        &json_name,
        serde_json::to_value(&shared).unwrap_or_default(),
        zip_path,
    ) else {
        return Ok(false);
    };
    // The zip first: a record without its zip is never used.
    let done = remote.put_file(&zip_name, zip_path, reporter)
        && remote.put_many(vec![(json_name, json)], reporter) > 0;
    if done {
        let _ = fs_err::write(&marker, "");
    }
    Ok(done)
}
