//! Leaf types every layer shares: the archive [`Entry`], the content
//! [`Hash`] (BLAKE3), file hashing and stat times.
//!
//! This module depends on nothing else in the crate, so stages, the archive
//! writer, the cache and the watcher all import it without importing each
//! other. It does not decide what is packaged or when a file is re-read.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub(crate) use blake3::Hash;

/// One file of the archive: where it comes from and what it holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Entry {
    /// Archive path: relative, `/`-separated, UTF-8.
    pub name: String,
    /// Absolute path on disk.
    pub path: PathBuf,
    #[serde(with = "hash_hex")]
    pub hash: Hash,
    pub size: u64,
    pub executable: bool,
}

/// BLAKE3 of a file's bytes, read (not mapped: an editor truncating the file
/// mid-read would SIGBUS a mapping).
pub(crate) fn hash_file(path: &Path) -> std::io::Result<Hash> {
    let mut hasher = blake3::Hasher::new();
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize())
}

/// One hash for a list of entries (names, contents, modes): what another
/// stage's key needs to know about them.
pub(crate) fn entries_digest(entries: &[Entry]) -> Hash {
    let mut h = blake3::Hasher::new();
    for e in entries {
        h.update(&(e.name.len() as u64).to_le_bytes());
        h.update(e.name.as_bytes());
        h.update(e.hash.as_bytes());
        h.update(&[e.executable as u8]);
    }
    h.finalize()
}

/// Modification time in nanoseconds since the epoch.
pub(crate) fn mtime_ns(meta: &std::fs::Metadata) -> i64 {
    meta.mtime() * 1_000_000_000 + meta.mtime_nsec()
}

/// Status-change time in nanoseconds since the epoch: moves on any write,
/// even one that restores size and mtime (`touch -r`).
pub(crate) fn ctime_ns(meta: &std::fs::Metadata) -> i64 {
    meta.ctime() * 1_000_000_000 + meta.ctime_nsec()
}

/// Lowercase hex of any digest's bytes (the SHA-256 of a zip, a wheel).
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A hash read back from a database blob.
pub(crate) fn hash_from_slice(bytes: &[u8]) -> Option<Hash> {
    <[u8; 32]>::try_from(bytes).ok().map(Hash::from_bytes)
}

/// Serde as lowercase hex (how hashes appear in records and `--json`).
pub(crate) mod hash_hex {
    use super::Hash;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(h: &Hash, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(h.to_hex().as_str())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Hash, D::Error> {
        let s = String::deserialize(d)?;
        Hash::from_hex(s).map_err(|_| serde::de::Error::custom("bad hash"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_through_serde() {
        let e = Entry {
            name: "a.py".into(),
            path: "/x/a.py".into(),
            hash: blake3::hash(b"x"),
            size: 1,
            executable: false,
        };
        let text = serde_json::to_string(&e).unwrap();
        assert!(text.contains(blake3::hash(b"x").to_hex().as_str()));
        assert_eq!(serde_json::from_str::<Entry>(&text).unwrap(), e);
    }
}
