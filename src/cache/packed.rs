//! The reuse stores' index: for each store zip in the cache directory,
//! which content (hash, executable bit, archive settings) its entries hold
//! and their compressed bytes' digest, so that a build copies an entry
//! another build compressed instead of compressing it again. The store
//! files themselves are written by `stages::package` and read by
//! `archive::sources`.

use rusqlite::params;

use super::{Cache, CacheError, Hash};

impl Cache {
    /// The reuse stores' index for one build, for entries compressed with
    /// `settings` (the only ones the writer can copy): every such entry of
    /// `own` (this artifact's store), then, for each of `wanted` that `own`
    /// lacks, a row of any other store (by the content index). A
    /// workspace's five stores are not all read when one function changes
    /// a file.
    ///
    /// One row per content, of one store (the first the content index
    /// gives; its bytes are checked when copied, like any store's): the
    /// writer uses one record per content anyway. The lookup stops at that
    /// row: 80 functions sharing 31 files would otherwise read every
    /// store's row of each shared file per function (once 31 rows from
    /// each of the other 79 stores, later every row to pick the last
    /// store by name), a cold workspace build quadratic in its size.
    pub(crate) fn packed_lookup(
        &self,
        own: &str,
        settings: &Hash,
        wanted: &[(Hash, bool)],
    ) -> Result<Vec<PackedEntry>, CacheError> {
        fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Option<PackedEntry>> {
            Ok((|| {
                Some(PackedEntry {
                    store: r.get::<_, String>(0).ok()?,
                    name: r.get::<_, String>(1).ok()?,
                    content_hash: crate::entry::hash_from_slice(&r.get::<_, Vec<u8>>(2).ok()?)?,
                    executable: r.get::<_, bool>(3).ok()?,
                    settings: crate::entry::hash_from_slice(&r.get::<_, Vec<u8>>(4).ok()?)?,
                    raw_hash: crate::entry::hash_from_slice(&r.get::<_, Vec<u8>>(5).ok()?)?,
                })
            })())
        }
        self.reading()?;
        let settings = settings.as_bytes().as_slice();
        let mut rows: Vec<PackedEntry> = {
            let mut stmt = self.conn.prepare_cached(
                "SELECT store, name, content_hash, executable, settings, raw_hash FROM packed WHERE store = ?1 AND settings = ?2",
            )?;
            stmt.query_map(params![own, settings], row)?
                .filter_map(|r| r.ok().flatten())
                .collect()
        };
        let have: std::collections::HashSet<(Hash, bool)> = rows
            .iter()
            .map(|p| (p.content_hash, p.executable))
            .collect();
        let mut stmt = self.conn.prepare_cached(OTHER_STORE_ROW)?;
        let mut seen = std::collections::HashSet::new();
        for w in wanted.iter().filter(|w| !have.contains(w)) {
            if !seen.insert(*w) {
                continue;
            }
            let (hash, exec) = w;
            rows.extend(
                stmt.query_map(
                    params![hash.as_bytes().as_slice(), exec, settings, own],
                    row,
                )?
                .filter_map(|r| r.ok().flatten()),
            );
        }
        Ok(rows)
    }

    /// Replaces one store's index (the store itself was just replaced).
    /// On failure the old index stays: entries whose digests no longer match
    /// the store are compressed again, so a stale index is only slower.
    pub(crate) fn replace_packed(&mut self, store: &str, entries: &[PackedEntry]) {
        let result = self.try_replace_packed(store, entries);
        self.soft(result);
    }

    /// Writes only the rows that differ: a store rewritten after one edit
    /// holds mostly the entries it held (same names, digests, settings),
    /// and rewriting every row would dirty a page of the content index per
    /// entry (its keys are scattered digests), some 80 pages of WAL a
    /// function where one or two do. The rows left are exactly `entries`
    /// (the last of a name, as `INSERT OR REPLACE` in order would leave).
    fn try_replace_packed(
        &mut self,
        store: &str,
        entries: &[PackedEntry],
    ) -> Result<(), CacheError> {
        type Row = (Vec<u8>, bool, Vec<u8>, Vec<u8>);
        let row_of = |e: &PackedEntry| -> Row {
            (
                e.content_hash.as_bytes().to_vec(),
                e.executable,
                e.settings.as_bytes().to_vec(),
                e.raw_hash.as_bytes().to_vec(),
            )
        };
        let wanted: std::collections::HashMap<&str, Row> = entries
            .iter()
            .map(|e| (e.name.as_str(), row_of(e)))
            .collect();
        self.write(|conn| {
            let held: Vec<(String, Row)> = conn
                .prepare_cached(
                    "SELECT name, content_hash, executable, settings, raw_hash FROM packed WHERE store = ?1",
                )?
                .query_map(params![store], |r| {
                    Ok((r.get(0)?, (r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
                })?
                .collect::<Result<_, _>>()?;
            let mut unchanged = std::collections::HashSet::new();
            let mut delete =
                conn.prepare_cached("DELETE FROM packed WHERE store = ?1 AND name = ?2")?;
            for (name, row) in &held {
                match wanted.get(name.as_str()) {
                    Some(w) if w == row => {
                        unchanged.insert(name.as_str());
                    }
                    Some(_) => {}
                    None => {
                        delete.execute(params![store, name])?;
                    }
                }
            }
            let mut insert = conn.prepare_cached(
                "INSERT OR REPLACE INTO packed (store, name, content_hash, executable, settings, raw_hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for (name, (content, exec, settings, raw)) in &wanted {
                if !unchanged.contains(name) {
                    insert.execute(params![store, name, content, exec, settings, raw])?;
                }
            }
            Ok(())
        })
    }
}

/// Another store's row of one content (hash, executable bit) and archive
/// settings: the first the content index gives, the lookup stopping there.
const OTHER_STORE_ROW: &str = "SELECT store, name, content_hash, executable, settings, raw_hash FROM packed WHERE content_hash = ?1 AND executable = ?2 AND settings = ?3 AND store != ?4 LIMIT 1";

/// One entry of the reuse store.
#[derive(Debug, Clone)]
pub(crate) struct PackedEntry {
    /// The store zip's file name in the cache directory (set when the index
    /// is written or read; empty straight out of the writer).
    pub store: String,
    pub name: String,
    pub content_hash: Hash,
    pub executable: bool,
    pub settings: Hash,
    pub raw_hash: Hash,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store rewritten after one edit has its index rewritten where it
    /// differs only, and ends up holding exactly the new entries.
    #[test]
    fn replacing_a_stores_index_writes_only_the_rows_that_differ() {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = Cache::open(dir.path()).unwrap();
        let entry = |name: &str, content: u8| PackedEntry {
            store: String::new(),
            name: name.into(),
            content_hash: Hash::from_bytes([content; 32]),
            executable: false,
            settings: Hash::from_bytes([9; 32]),
            raw_hash: Hash::from_bytes([content.wrapping_add(1); 32]),
        };
        let old: Vec<PackedEntry> = (0..42).map(|i| entry(&format!("m{i}.py"), i)).collect();
        cache.replace_packed("store-a.zip", &old);
        cache.replace_packed("store-b.zip", &old[..3]);
        let mut new = old.clone();
        new[5] = entry("m5.py", 200); // edited
        new.remove(7); // deleted
        new.push(entry("new.py", 201)); // added
        let before = cache.conn.total_changes();
        cache.replace_packed("store-a.zip", &new);
        assert_eq!(cache.take_write_failure(), None);
        // m5 replaced, m7 deleted, new.py inserted: not 42 deletes and 42
        // inserts.
        assert!(
            cache.conn.total_changes() - before <= 3,
            "{} rows written",
            cache.conn.total_changes() - before
        );
        let rows = |store: &str| -> Vec<(String, Vec<u8>, Vec<u8>)> {
            let mut stmt = cache
                .conn
                .prepare("SELECT name, content_hash, raw_hash FROM packed WHERE store = ?1 ORDER BY name")
                .unwrap();
            stmt.query_map(params![store], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        let mut expected: Vec<(String, Vec<u8>, Vec<u8>)> = new
            .iter()
            .map(|e| {
                (
                    e.name.clone(),
                    e.content_hash.as_bytes().to_vec(),
                    e.raw_hash.as_bytes().to_vec(),
                )
            })
            .collect();
        expected.sort();
        assert_eq!(rows("store-a.zip"), expected);
        assert_eq!(rows("store-b.zip").len(), 3, "another store's rows stay");
    }

    /// A file every function shares is found in one other store, not in
    /// each, and only for the archive settings asked; a store's own rows
    /// (of those settings) all come back.
    #[test]
    fn another_stores_copy_of_a_shared_entry_is_looked_up_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = Cache::open(dir.path()).unwrap();
        let entry = |name: &str, content: u8, settings: u8| PackedEntry {
            store: String::new(),
            name: name.into(),
            content_hash: Hash::from_bytes([content; 32]),
            executable: false,
            settings: Hash::from_bytes([settings; 32]),
            raw_hash: Hash::from_bytes([content ^ settings; 32]),
        };
        let (six, nine) = (Hash::from_bytes([6; 32]), Hash::from_bytes([9; 32]));
        for n in 0..20 {
            let level = if n == 3 { 9 } else { 6 };
            let entries = [
                entry("shared.py", 1, level),
                entry(&format!("own{n}.py"), 100 + n, 6),
            ];
            cache.replace_packed(&format!("store-f{n:02}.zip"), &entries);
        }
        let shared = (Hash::from_bytes([1; 32]), false);
        let found = |rows: Vec<PackedEntry>| -> Vec<(String, String, u8)> {
            let mut found: Vec<_> = rows
                .iter()
                .map(|r| (r.store.clone(), r.name.clone(), r.raw_hash.as_bytes()[0]))
                .collect();
            found.sort();
            found
        };
        let rows = cache
            .packed_lookup(
                "store-f00.zip",
                &six,
                &[shared, (Hash::from_bytes([7; 32]), false)],
            )
            .unwrap();
        // Its own two rows; nothing more for what it already holds.
        assert_eq!(
            found(rows),
            [
                ("store-f00.zip".into(), "own0.py".into(), 100 ^ 6),
                ("store-f00.zip".into(), "shared.py".into(), 1 ^ 6),
            ]
        );
        // Its own row of other settings does not count: another store's
        // copy with the settings asked is found.
        let rows = cache
            .packed_lookup("store-f00.zip", &nine, &[shared])
            .unwrap();
        assert_eq!(
            found(rows),
            [("store-f03.zip".into(), "shared.py".into(), 1 ^ 9)]
        );
        // A store without the shared file: one copy, of the settings
        // asked, from one of the 19 stores that hold it (asked twice).
        cache.replace_packed("store-new.zip", &[entry("x.py", 50, 6)]);
        let rows = found(
            cache
                .packed_lookup("store-new.zip", &six, &[shared, shared])
                .unwrap(),
        );
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert_eq!(rows[1], ("store-new.zip".into(), "x.py".into(), 50 ^ 6));
        assert_eq!((rows[0].1.as_str(), rows[0].2), ("shared.py", 1 ^ 6));
        assert!(rows[0].0 != "store-f03.zip", "{rows:?}");
    }

    /// The lookup of a shared file's copy costs the same whatever the
    /// number of stores holding it: a cold workspace build is linear in
    /// its functions, not quadratic.
    #[test]
    fn looking_up_a_shared_entry_does_not_read_every_store_holding_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = Cache::open(dir.path()).unwrap();
        let settings = Hash::from_bytes([6; 32]);
        let shared: Vec<(Hash, bool)> = (0..31u8)
            .map(|c| (Hash::from_bytes([c; 32]), false))
            .collect();
        let mut steps = Vec::new();
        let mut stores = 0;
        for total in [5, 200] {
            while stores < total {
                let entries: Vec<PackedEntry> = shared
                    .iter()
                    .map(|(hash, _)| PackedEntry {
                        store: String::new(),
                        name: format!("shared/{}.py", hash.as_bytes()[0]),
                        content_hash: *hash,
                        executable: false,
                        settings,
                        raw_hash: Hash::from_bytes([hash.as_bytes()[0] ^ 0x55; 32]),
                    })
                    .collect();
                cache.replace_packed(&format!("store-f{stores:03}.zip"), &entries);
                stores += 1;
            }
            let before = vm_steps(&cache);
            let rows = cache
                .packed_lookup("store-new.zip", &settings, &shared)
                .unwrap();
            assert_eq!(rows.len(), shared.len());
            steps.push(vm_steps(&cache) - before);
        }
        assert!(steps[0] > 0, "the statement was not found: {steps:?}");
        assert_eq!(steps[0], steps[1], "5 stores, then 200: {steps:?}");
    }

    /// Virtual-machine steps the other-store lookup has run so far (the
    /// connection caches the statement, so this is the one the lookup ran).
    fn vm_steps(cache: &Cache) -> i32 {
        cache
            .conn
            .prepare_cached(OTHER_STORE_ROW)
            .unwrap()
            .get_status(rusqlite::StatementStatus::VmStep)
    }
}
