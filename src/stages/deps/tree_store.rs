//! Dependency trees in the machine store: `deps/KEY/{tree/,tree.json}`,
//! an installed tree with its record and file list ([`SharedTree`]), and
//! the zip of compressed entries a tree may also be kept as
//! (`tree-SETTINGS16.zip`, [`TreeZipRecord`]). Owns reading, checking (by
//! stat), publishing (a staged key directory renamed into place) and
//! keeping trees as zips after a build ([`keep_tree_zip`]); a project's
//! stage record of a tree is made here from the store's. Does not install
//! ([`super::install`]) nor talk to the remote store ([`super::remote_tree`]).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{DepsError, KeepTree, NAME};
use crate::cache::{Cache, Hash};
use crate::manifest::Plan;
use crate::report::Reporter;
use crate::stages::Entry;
use crate::store::{MachineStore, TREE_RECORD};

/// What the cache records for one deps key (the file list, with the stat
/// facts that say the tree is still as installed, is the stage detail).
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Record {
    /// [`crate::entry::entries_digest`] of the tree: what the package key uses.
    #[serde(with = "crate::entry::hash_hex")]
    pub(super) digest: Hash,
    pub(super) installer: String,
    pub(super) distributions: Vec<String>,
    pub(super) excluded: Vec<String>,
    /// How many files the tree holds (their list is the stage detail).
    pub(super) files: usize,
    /// The warnings the install gave (an unpinned requirement...),
    /// replayed whenever this tree is used again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) warnings: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct RecordedFile {
    pub(super) name: String,
    #[serde(with = "crate::entry::hash_hex")]
    pub(super) hash: Hash,
    pub(super) size: u64,
    pub(super) executable: bool,
    pub(super) mtime_ns: i64,
}

/// A tree's record and file list as kept in the machine store beside the
/// tree (`deps/KEY/tree.json`), from which a project's stage record is
/// made without installing anything.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct SharedTree {
    pub(super) record: Record,
    pub(super) files: Vec<RecordedFile>,
    /// Set when the tree is kept as the zip it was fetched as (then the
    /// files' times are 0 and `tree/` is absent). Machine-store only:
    /// never taken from, nor sent to, the remote store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) zip: Option<TreeZipRecord>,
}

/// A dependency tree kept as its zip of compressed entries, as fetched
/// from the remote store: every entry was checked on arrival (name, header,
/// content hash through a full inflate) and its raw record's digest kept
/// here, so a later raw copy out of it is checked like one out of a reuse
/// store, without unpacking ~5,000 files into the store first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct TreeZipRecord {
    /// Its file name in the key directory (`tree-SETTINGS16.zip`).
    pub(super) file: String,
    /// The archive settings its entries were compressed with.
    #[serde(with = "crate::entry::hash_hex")]
    pub(super) settings: Hash,
    /// Size and mtime of the file when checked.
    pub(super) size: u64,
    pub(super) mtime_ns: i64,
    /// Each entry's raw-record digest (hex), in the order of `files`.
    pub(super) raw: Vec<String>,
}

/// Records a machine-store tree as this project's deps stage for `key`.
pub(super) fn record_shared(cache: &Cache, key: &Hash, shared: &SharedTree) {
    cache.record_stage_with_detail(
        NAME,
        key,
        &serde_json::to_string(&shared.record).unwrap_or_default(),
        &serde_json::to_string(&shared.files).unwrap_or_default(),
    );
}

/// The file list recorded with the tree of `key` (kept apart from the
/// record so that a cached build does not parse it).
pub(super) fn recorded_files(
    cache: &Cache,
    key: &Hash,
) -> crate::Result<Option<Vec<RecordedFile>>> {
    Ok(cache
        .stage_detail(NAME, key)?
        .and_then(|d| serde_json::from_str(&d).ok()))
}

/// The recorded entries, if every file is still there as installed
/// (size, mtime, mode): a stat per file, no hashing.
pub(super) fn still_installed(tree: &Path, files: &[RecordedFile]) -> Option<Vec<Entry>> {
    if !tree.is_dir() {
        return None;
    }
    files
        .iter()
        .map(|f| {
            let path = tree.join(&f.name);
            let m = fs_err::symlink_metadata(&path).ok()?;
            let same = m.is_file()
                && m.len() == f.size
                && crate::entry::mtime_ns(&m) == f.mtime_ns
                && (m.mode() & 0o111 != 0) == f.executable;
            same.then(|| Entry {
                name: f.name.clone(),
                path,
                hash: f.hash,
                size: f.size,
                executable: f.executable,
            })
        })
        .collect()
}

/// The tree of `key` in the machine store, if one is there.
pub(super) fn read_shared(root: &Path, key: &Hash) -> Option<SharedTree> {
    let text = fs_err::read_to_string(key_dir(root, key).join(TREE_RECORD)).ok()?;
    serde_json::from_str(&text).ok()
}

/// The entries of a machine-store tree at their paths under `tree/`.
pub(super) fn at_tree(root: &Path, key: &Hash, files: &[RecordedFile]) -> Vec<Entry> {
    let tree = tree_dir(root, key);
    files
        .iter()
        .map(|f| Entry {
            name: f.name.clone(),
            path: tree.join(&f.name),
            hash: f.hash,
            size: f.size,
            executable: f.executable,
        })
        .collect()
}

/// The directory of deps key `key` in a store rooted at `root`: the tree
/// (`tree/`) and its record ([`TREE_RECORD`]).
pub(crate) fn key_dir(root: &Path, key: &Hash) -> PathBuf {
    root.join("deps").join(key.to_hex().as_str())
}

/// Where the tree installed for deps key `key` lives.
pub(crate) fn tree_dir(root: &Path, key: &Hash) -> PathBuf {
    key_dir(root, key).join("tree")
}

/// A fresh directory in the store's `deps/` to build a tree in before it
/// is renamed into place, after clearing dead builds' leftovers there.
pub(super) fn staging_dir(
    deps_dir: &Path,
    context: &'static str,
) -> Result<tempfile::TempDir, DepsError> {
    let io = DepsError::io;
    fs_err::create_dir_all(deps_dir).map_err(io(context))?;
    crate::store::remove_dead_temporaries(deps_dir);
    let dir = tempfile::Builder::new()
        .prefix(&crate::store::temp_prefix())
        .tempdir_in(deps_dir)
        // tempfile's error names the path.
        .map_err(io(context))?;
    crate::store::lease(dir.path());
    Ok(dir)
}

/// Renames a staged key directory (`tree/` and its record) into place in
/// the store. When another build put the same key in place first, its tree
/// is used and ours dropped (same key, same files); with `replace` (the
/// tree was found changed) the old one is swapped out. Returns the tree's
/// record and its entries at their final paths.
pub(super) fn publish(
    root: &Path,
    staged: &Path,
    key: &Hash,
    shared: SharedTree,
    entries: Vec<Entry>,
    replace: bool,
) -> crate::Result<(SharedTree, Vec<Entry>)> {
    let io = DepsError::io;
    let final_dir = key_dir(root, key);
    let at_final = |files: &[RecordedFile]| at_tree(root, key, files);
    drop(entries);
    if replace && final_dir.exists() {
        let aside = root
            .join("deps")
            .join(format!(".tmp-{}-old", std::process::id()));
        let _ = fs_err::remove_dir_all(&aside);
        fs_err::rename(&final_dir, &aside)
            .map_err(io("cannot move the changed deps tree aside"))?;
        let _ = fs_err::remove_dir_all(&aside);
    }
    match fs_err::rename(staged, &final_dir) {
        Ok(()) => {
            let entries = at_final(&shared.files);
            Ok((shared, entries))
        }
        Err(e) if final_dir.join(TREE_RECORD).is_file() => {
            // Another build installed the same key first: use its tree.
            let _ = fs_err::remove_dir_all(staged);
            let theirs = read_shared(root, key).ok_or_else(|| DepsError::Io {
                context: "cannot use the deps tree another build installed",
                source: std::io::Error::new(e.kind(), format!("{}: {e}", final_dir.display())),
            })?;
            let entries = at_final(&theirs.files);
            Ok((theirs, entries))
        }
        Err(e) => {
            let _ = fs_err::remove_dir_all(staged);
            Err(DepsError::Io {
                context: "cannot move the installed deps tree into place",
                source: std::io::Error::new(
                    e.kind(),
                    format!("{} -> {}: {e}", staged.display(), final_dir.display()),
                ),
            }
            .into())
        }
    }
}

/// A file name from a fetched record: relative, `/`-separated, no `..`.
pub(super) fn safe_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('/')
        && name
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
        && !name.contains('\0')
}

/// The zip a tree is kept as, if it is still the file that was checked
/// and holds entries for these archive settings.
pub(super) fn tree_zip_of(
    root: &Path,
    key: &Hash,
    shared: &SharedTree,
    settings: &crate::archive::Settings,
) -> Option<crate::archive::TreeZip> {
    let z = shared.zip.as_ref()?;
    if z.settings != settings.id() || z.raw.len() != shared.files.len() || !safe_name(&z.file) {
        return None;
    }
    let path = key_dir(root, key).join(&z.file);
    let m = fs_err::metadata(&path).ok()?;
    if !m.is_file() || m.len() != z.size || crate::entry::mtime_ns(&m) != z.mtime_ns {
        return None;
    }
    let entries = shared
        .files
        .iter()
        .zip(&z.raw)
        .map(|(f, raw)| {
            Some(crate::cache::PackedEntry {
                store: String::new(),
                name: f.name.clone(),
                content_hash: f.hash,
                executable: f.executable,
                settings: z.settings,
                raw_hash: Hash::from_hex(raw).ok()?,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(crate::archive::TreeZip::new(path, entries))
}

/// A machine-store tree's entries, if it can be packaged: installed and
/// unchanged (by stat; its kept zip, if any, copied from, a damaged entry
/// compressed from the installed file), or not installed but kept as a
/// checked zip for these settings. The flag says whether it is installed.
pub(super) fn usable(
    root: &Path,
    key: &Hash,
    shared: &SharedTree,
    settings: &crate::archive::Settings,
) -> Option<(Vec<Entry>, Option<crate::archive::TreeZip>, bool)> {
    let tree = tree_dir(root, key);
    if tree.is_dir() {
        // Installed: packaged only as installed. A tree changed behind
        // lbuild's back is installed again, not packaged around (an entry
        // its zip fails would be read from the changed file).
        let entries = still_installed(&tree, &shared.files)?;
        return Some((entries, tree_zip_of(root, key, shared, settings), true));
    }
    let zip = tree_zip_of(root, key, shared, settings)?;
    Some((at_tree(root, key, &shared.files), Some(zip), false))
}

/// Whether a tree's record leaves room for a kept zip for these settings:
/// none kept yet, or one for these settings that no longer matches its
/// record (two builds raced to keep it): made again. A zip kept for other
/// settings stays.
pub(super) fn may_keep(shared: &SharedTree, settings: &crate::archive::Settings) -> bool {
    shared
        .zip
        .as_ref()
        .is_none_or(|z| z.settings == settings.id())
}

/// For a tree installed in the machine store and recorded in the project
/// under `digest`: its kept zip (usable for this plan's settings), and
/// whether to keep one after packaging. Reads the tree's record only when
/// a zip is there and the tree was `adopted` by this build (one directory
/// listing otherwise): a project that packaged this tree before copies
/// its entries out of its own reuse store, and an edit build should not
/// parse the tree's record (~1 MB for 4,600 files) for nothing.
pub(super) fn installed_tree_zip(
    plan: &Plan,
    store: &MachineStore,
    key: &Hash,
    digest: &Hash,
    adopted: bool,
) -> (Option<crate::archive::TreeZip>, Option<KeepTree>) {
    let root = store.root();
    let any_zip = fs_err::read_dir(key_dir(root, key)).is_ok_and(|rd| {
        rd.flatten().any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with("tree-") && name.ends_with(".zip")
        })
    });
    let keep = |kept| KeepTree { key: *key, kept };
    if !any_zip {
        return (None, Some(keep(false)));
    }
    if !adopted {
        return (None, None);
    }
    let (Some(shared), Ok(settings)) = (
        read_shared(root, key),
        crate::stages::package::settings(plan),
    ) else {
        return (None, None);
    };
    // Another tree under this key (installed again since): its zip pairs
    // its own files with their compressed entries, not this project's.
    if shared.record.digest != *digest {
        return (None, None);
    }
    match tree_zip_of(root, key, &shared, &settings) {
        Some(z) => (Some(z), Some(keep(true))),
        None => (None, may_keep(&shared, &settings).then_some(keep(false))),
    }
}

/// After a build that packaged the installed tree of `key` (`entries`,
/// without any layer prefix): keeps the tree in the machine store also as
/// its zip of compressed entries (`deps/KEY/tree-SETTINGS16.zip`, raw
/// digests in `tree.json`), copied raw out of the project's reuse store
/// just written, so nothing is compressed again; a second project with
/// the same tree then copies every dependency entry out of it. Written
/// under a temporary name and renamed, the record after the zip, so a
/// concurrent build sees the old record or the new one, never a partial
/// file. Best effort: a failure is one warning.
///
/// `package` is the package stage's details: a kept zip this build used
/// is made again when an entry was rejected (it may be the one damaged).
pub(crate) fn keep_tree_zip(
    plan: &Plan,
    store: &MachineStore,
    cache: &Cache,
    keep: KeepTree,
    entries: &[Entry],
    package: &serde_json::Value,
    reporter: &Reporter,
) {
    let rejected = package["rejected"].as_u64().unwrap_or(0) > 0;
    if keep.kept && !rejected {
        return;
    }
    let key = &keep.key;
    if let Err(why) = try_keep_tree_zip(plan, store, cache, key, entries, keep.kept) {
        reporter.warn(format!(
            "could not keep the dependency tree as a zip in {} ({why}); the zip is fine, another project with these dependencies compresses them again",
            key_dir(store.root(), key).display()
        ));
    }
}

/// With `again`, a kept zip that still matches its record by stat is
/// replaced too (its bytes did not verify).
pub(super) fn try_keep_tree_zip(
    plan: &Plan,
    store: &MachineStore,
    cache: &Cache,
    key: &Hash,
    entries: &[Entry],
    again: bool,
) -> Result<(), String> {
    let root = store.root();
    let dir = key_dir(root, key);
    let digest = crate::entry::entries_digest(entries);
    // Only for the tree these entries are (its record may have been
    // replaced since, or the tree trimmed by gc).
    let current = |shared: &SharedTree| shared.record.digest == digest;
    let Some(shared) = read_shared(root, key).filter(current) else {
        return Ok(());
    };
    let settings = crate::stages::package::settings(plan).map_err(|e| e.to_string())?;
    if (!again && tree_zip_of(root, key, &shared, &settings).is_some())
        || !may_keep(&shared, &settings)
    {
        return Ok(());
    }
    let wanted: Vec<(Hash, bool)> = entries.iter().map(|e| (e.hash, e.executable)).collect();
    let packed = cache
        .packed_lookup(&plan.store_file, &settings.id(), &wanted)
        .map_err(|e| e.to_string())?;
    let reuse =
        crate::archive::ReuseStore::new(&plan.cache_dir, packed, &settings, &plan.store_file);
    crate::store::remove_dead_temporaries(&dir);
    let tmp = tempfile::Builder::new()
        .prefix(&crate::store::temp_prefix())
        .suffix(".zip")
        .tempfile_in(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    crate::store::lease(tmp.path());
    let mut chain: Vec<&dyn crate::archive::EntrySource> = Vec::new();
    if let Some(r) = &reuse {
        chain.push(r);
    }
    chain.push(store);
    let written = crate::archive::write_zip(tmp.as_file(), entries, &settings, &chain)
        .map_err(|e| e.to_string())?;
    if written.packed.len() != shared.files.len()
        || !written
            .packed
            .iter()
            .zip(&shared.files)
            .all(|(p, f)| p.name == f.name && p.content_hash == f.hash)
    {
        return Ok(());
    }
    let raw = written
        .packed
        .iter()
        .map(|p| p.raw_hash.to_hex().to_string())
        .collect();
    let _ = fs_err::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644));
    let file = format!("tree-{}.zip", &settings.id().to_hex()[..16]);
    let path = dir.join(&file);
    tmp.persist(&path)
        .map_err(|e| format!("{}: {}", path.display(), e.error))?;
    let meta = fs_err::metadata(&path).map_err(|e| e.to_string())?;
    // Read again just before it is replaced: another build may have
    // replaced the tree meanwhile.
    let Some(mut shared) = read_shared(root, key).filter(current) else {
        return Ok(());
    };
    shared.zip = Some(TreeZipRecord {
        file,
        settings: settings.id(),
        size: meta.len(),
        mtime_ns: crate::entry::mtime_ns(&meta),
        raw,
    });
    let json = serde_json::to_vec(&shared).map_err(|e| e.to_string())?;
    store
        .put_bytes(&dir.join(TREE_RECORD), &json)
        .map_err(|e| e.to_string())
}
