//! Where a ready (already compressed) entry comes from: the [`EntrySource`]
//! trait the writer asks, in chain order, before it compresses anything,
//! and the two sources made of zips lbuild wrote itself: the reuse stores
//! ([`ReuseStore`], indexed by the cache's `packed` table) and a dependency
//! tree's kept zip ([`TreeZip`]). The machine store and the remote
//! implement the trait in their own modules; the package stage puts the
//! chain together. Does not check what it finds (`verify.rs`: the writer
//! does, through it) nor write anything (`write.rs`).

use std::collections::HashMap;
use std::fs::File;
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::format::{MiniZip, Settings};
use crate::cache::{Hash, PackedEntry};
use crate::entry::Entry;

/// Which count of the [`WriteReport`](super::WriteReport) an entry found in
/// a source goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SourceKind {
    /// A reuse store (`reused`).
    Reuse,
    /// A dependency tree's kept zip (`from_tree`).
    Tree,
    /// The machine store, or what the remote store put there (`from_store`).
    Store,
}

/// An entry of one of a source's [`zips`](EntrySource::zips), with the
/// digest its raw record had when it was written (what a copy must match).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Record<'a> {
    /// Index into the source's `zips()`.
    pub zip: usize,
    pub name: &'a str,
    pub digest: Hash,
}

/// A one-entry zip a source holds for an entry, not yet checked.
#[derive(Debug)]
pub(crate) struct Found {
    pub file: File,
    /// Where it is: handed back with [`EntrySource::used`] or
    /// [`EntrySource::rejected`].
    pub path: PathBuf,
}

/// An entry this build compressed, offered to the sources that keep
/// entries ([`EntrySource::keep`]).
pub(crate) struct Compressed<'a>(pub(super) &'a mut MiniZip);

impl Compressed<'_> {
    /// Writes the whole one-entry zip to `out`.
    pub(crate) fn write_to(&mut self, out: &mut File) -> std::io::Result<()> {
        match &mut *self.0 {
            MiniZip::Memory(bytes) => out.write_all(bytes),
            MiniZip::File(f) => {
                f.rewind()?;
                std::io::copy(f, out)?;
                f.rewind()
            }
        }
    }
}

/// A place that may already hold an entry compressed with this archive's
/// settings. The writer asks a chain of them (a slice, first match wins):
/// first every source for a [`record`](Self::record) (an in-memory lookup,
/// for every entry, on the writer's thread, before anything is compressed),
/// then, for an entry none had a record of, every source for a
/// [`one_entry`](Self::one_entry) zip (on a compression worker; it may
/// touch the disk). What a source gives is checked before use; an entry no
/// source gives (or whose copies all fail) is compressed, and offered to
/// every source with [`keep`](Self::keep).
///
/// Every method but [`kind`](Self::kind) has a default that finds nothing,
/// so a source implements only its own way of finding. The hot path adds
/// one virtual call per source and entry: implementations must answer an
/// entry they cannot hold without allocating or a system call.
pub(crate) trait EntrySource: Sync {
    fn kind(&self) -> SourceKind;

    /// Called once per archive, before any one-entry lookup, with the
    /// entries no source had a record of: a source that fetches in bulk
    /// (the remote store, into the machine store) does it here.
    fn prefetch(&self, _wanted: &[&Entry], _settings: &Settings) {}

    /// The zips this source's records point into (opened by the writer on
    /// first use, their central directory read once).
    fn zips(&self) -> &[PathBuf] {
        &[]
    }

    /// Where `e`'s content with `e`'s mode is in [`zips`](Self::zips).
    fn record(&self, _e: &Entry) -> Option<Record<'_>> {
        None
    }

    /// A one-entry zip that should hold `e` as the settings `settings_id`
    /// make it.
    fn one_entry(&self, _e: &Entry, _settings_id: &Hash) -> Option<Found> {
        None
    }

    /// The one-entry zip at `path` was checked and used.
    fn used(&self, _path: &Path) {}

    /// The one-entry zip at `path` failed its check (it is compressed
    /// again).
    fn rejected(&self, _path: &Path) {}

    /// `e` was compressed by this build: a source that keeps entries may
    /// keep it (best effort: a failure only costs a later build time).
    fn keep(&self, _e: &Entry, _settings_id: &Hash, _zip: &mut Compressed<'_>) {}
}

/// Entries of earlier builds' zips (every artifact of a workspace keeps one)
/// that may be copied without deflating, by content and mode.
pub(crate) struct ReuseStore {
    paths: Vec<PathBuf>,
    /// (content, executable) -> (index into `paths`, entry name, digest).
    by_content: HashMap<(Hash, bool), (usize, String, Hash)>,
}

impl ReuseStore {
    /// The stores in `dir` that `packed` names, restricted to entries
    /// written with `settings`: a file compressed for one artifact is
    /// copied, not compressed again, into any other. Where several stores
    /// hold an entry, `own` (this artifact's store) wins: an incremental
    /// build then opens one zip, not every artifact's.
    pub(crate) fn new(
        dir: &Path,
        packed: Vec<PackedEntry>,
        settings: &Settings,
        own: &str,
    ) -> Option<ReuseStore> {
        let id = settings.id();
        let mut paths: Vec<PathBuf> = Vec::new();
        // Store name -> index into `paths` (None: no such file), so each
        // store is looked at once, however many rows name it.
        let mut stores: HashMap<String, Option<usize>> = HashMap::new();
        let mut by_content = HashMap::new();
        let (mine, others): (Vec<PackedEntry>, Vec<PackedEntry>) = packed
            .into_iter()
            .filter(|p| p.settings == id)
            .partition(|p| p.store == own);
        for p in others.into_iter().chain(mine) {
            let i = match stores.get(&p.store) {
                Some(i) => *i,
                None => {
                    let path = dir.join(&p.store);
                    let i = path.is_file().then(|| {
                        paths.push(path);
                        paths.len() - 1
                    });
                    stores.insert(p.store.clone(), i);
                    i
                }
            };
            let Some(i) = i else { continue };
            by_content.insert((p.content_hash, p.executable), (i, p.name, p.raw_hash));
        }
        (!by_content.is_empty()).then_some(ReuseStore { paths, by_content })
    }
}

impl EntrySource for ReuseStore {
    fn kind(&self) -> SourceKind {
        SourceKind::Reuse
    }

    fn zips(&self) -> &[PathBuf] {
        &self.paths
    }

    fn record(&self, e: &Entry) -> Option<Record<'_>> {
        let (zip, name, digest) = self.by_content.get(&(e.hash, e.executable))?;
        Some(Record {
            zip: *zip,
            name,
            digest: *digest,
        })
    }
}

/// A dependency tree kept as its zip of compressed entries (fetched from
/// the remote store, or made from a reuse store after a build, every entry
/// checked): a raw-copy source like the reuse store, after it in the chain.
#[derive(Debug, Clone)]
pub(crate) struct TreeZip {
    /// One path: the source's only zip.
    paths: [PathBuf; 1],
    /// Each entry by content, with the digest of its raw record taken when
    /// it was checked (`store` unused).
    pub entries: Vec<PackedEntry>,
    /// (content, executable) -> index into `entries`, made on first lookup.
    index: OnceLock<HashMap<(Hash, bool), usize>>,
}

impl TreeZip {
    pub(crate) fn new(path: PathBuf, entries: Vec<PackedEntry>) -> TreeZip {
        TreeZip {
            paths: [path],
            entries,
            index: OnceLock::new(),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.paths[0]
    }
}

impl EntrySource for TreeZip {
    fn kind(&self) -> SourceKind {
        SourceKind::Tree
    }

    fn zips(&self) -> &[PathBuf] {
        &self.paths
    }

    fn record(&self, e: &Entry) -> Option<Record<'_>> {
        let index = self.index.get_or_init(|| {
            let mut m = HashMap::with_capacity(self.entries.len());
            for (i, p) in self.entries.iter().enumerate() {
                // Later wins, as the map the reuse store builds.
                m.insert((p.content_hash, p.executable), i);
            }
            m
        });
        let p = &self.entries[*index.get(&(e.hash, e.executable))?];
        Some(Record {
            zip: 0,
            name: &p.name,
            digest: p.raw_hash,
        })
    }
}
