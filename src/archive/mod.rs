//! The deterministic zip writer: the reproducible-zip contract (README's
//! "The reproducible zip", docs/design.md).
//!
//! Owns everything that reaches the archive's bytes: entry metadata (one
//! DOS time, Unix "made by", 0o100644/0o100755, no extra fields), the
//! stored-if-not-smaller rule, compression on all cores with output in the
//! sorted order, and raw reuse of entries compressed earlier. It does not
//! decide which files go in (stages do), where the zip ends up (the package
//! stage writes to a temp file and renames), nor which stores exist: the
//! caller hands the writer a chain of [`EntrySource`]s (the reuse stores,
//! a kept tree zip, the machine store, the remote) to ask before it
//! compresses; this module imports no store.
//!
//! Every entry reaches the output the same way, whether new or reused: as a
//! raw copy out of a zip we wrote ourselves (a one-entry zip made by a
//! worker thread or found in a source, or a reuse store's record). So the
//! local header, the central directory record and the data are produced by
//! one code path, and an incremental build cannot differ from a cold one.
//!
//! Rooms: `format.rs` (settings, DOS time, versions, the one-entry zip and
//! the raw-record digest), `compress.rs` (libdeflate in memory, zlib-rs
//! above 32 MiB), `chunked.rs` (a large file deflated in pieces on every
//! core), `sources.rs` (the [`EntrySource`] trait, the reuse and tree
//! sources), `verify.rs` (checking what a source found), `write.rs` (the
//! worker pipeline and the writer), `io.rs` (the I/O adapters).

mod chunked;
mod compress;
mod format;
mod io;
mod sources;
mod verify;
mod write;

use std::path::PathBuf;

pub(crate) use format::{DEFLATE_BACKEND, FORMAT_VERSION, Settings, dos_time_from_unix};
pub(crate) use sources::{Compressed, EntrySource, Found, ReuseStore, SourceKind, TreeZip};
pub(crate) use verify::verify_tree_zip;
pub(crate) use write::{ENTRIES_DONE, write_zip};

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} changed while the zip was being written")]
    ChangedDuringBuild { path: PathBuf },
    #[error("cannot write the zip: {0}")]
    Write(#[from] std::io::Error),
    #[error("zip format error: {0}")]
    Zip(#[from] zip::result::ZipError),
    /// An entry of a dependency tree kept as its zip ([`TreeZip`]) no
    /// longer matches the digest taken when it was checked, and its file
    /// was never unpacked.
    #[error("the dependency tree {path} is damaged")]
    DamagedTree { path: PathBuf },
}

impl ArchiveError {
    pub fn hint(&self) -> Option<String> {
        match self {
            ArchiveError::ChangedDuringBuild { .. } => {
                Some("run lbuild again (lbuild watch does so by itself)".into())
            }
            ArchiveError::DamagedTree { .. } => Some(
                "run lbuild again: the damaged tree was removed from the machine store and will be fetched or installed again".into(),
            ),
            _ => None,
        }
    }
}

#[cfg(test)]
pub(crate) mod testing;

#[cfg(test)]
mod tests {
    /// The writer is handed its sources: no room of `archive/` reaches for
    /// the machine store or the remote itself.
    #[test]
    fn archive_imports_no_store() {
        let rooms = [
            ("mod.rs", include_str!("mod.rs")),
            ("format.rs", include_str!("format.rs")),
            ("chunked.rs", include_str!("chunked.rs")),
            ("compress.rs", include_str!("compress.rs")),
            ("sources.rs", include_str!("sources.rs")),
            ("verify.rs", include_str!("verify.rs")),
            ("write.rs", include_str!("write.rs")),
            ("io.rs", include_str!("io.rs")),
        ];
        let (store, remote) = (concat!("crate::", "store"), concat!("crate::", "remote"));
        for (name, text) in rooms {
            assert!(
                !text.contains(store) && !text.contains(remote),
                "archive/{name} names the machine store or the remote"
            );
        }
    }
}
