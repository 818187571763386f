//! Helpers shared by the archive's unit tests.

use std::io::{Read, Seek};
use std::path::Path;

use sha2::{Digest, Sha256};
use zip::ZipWriter;

use super::format::Prepared;
use crate::entry::Entry;

pub(crate) fn entries_in(dir: &Path, files: &[(&str, Vec<u8>)]) -> Vec<Entry> {
    let mut out: Vec<Entry> = files
        .iter()
        .map(|(name, data)| {
            let path = dir.join(name);
            fs_err::write(&path, data).unwrap();
            Entry {
                name: name.to_string(),
                path,
                hash: blake3::hash(data),
                size: data.len() as u64,
                executable: false,
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    out
}

/// Deterministic incompressible bytes (xorshift).
pub(super) fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The bytes of a zip holding `p`'s one entry, raw-copied as `name`.
pub(super) fn copied(p: Prepared, name: &str) -> Vec<u8> {
    let out = tempfile::tempfile().unwrap();
    let mut zip = ZipWriter::new(&out);
    p.mini_zip.copy_into(&mut zip, name).unwrap();
    zip.finish().unwrap();
    let mut v = Vec::new();
    let mut r = &out;
    r.rewind().unwrap();
    r.read_to_end(&mut v).unwrap();
    v
}

pub(super) fn sha_of(path: &Path) -> [u8; 32] {
    Sha256::digest(fs_err::read(path).unwrap()).into()
}
