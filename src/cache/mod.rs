//! The SQLite cache under `.lbuild/`: schema migrations, the build's
//! transaction, stage records and last inputs. File fingerprints live in
//! [`fingerprint`], the reuse stores' index in [`packed`].
//!
//! This module owns the database connection and its on-disk format; it does
//! not decide what a stage's key is (each stage does, see `stages`).

pub(crate) mod fingerprint;
mod packed;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use rusqlite_migration::{M, Migrations};

pub(crate) use fingerprint::HashStats;
pub(crate) use packed::PackedEntry;

pub(crate) use crate::entry::Hash;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cannot create the cache directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the cache database {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "the cache database {path} was written by a newer lbuild (schema {found}, this lbuild knows {known})"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        known: usize,
    },
    #[error("cannot migrate the cache database {path}: {source}")]
    Migrate {
        path: PathBuf,
        source: rusqlite_migration::Error,
    },
    #[error(
        "{path} is not marked as an lbuild cache directory (no {TAG_FILE}): lbuild cleans only what it created"
    )]
    NotOurs { path: PathBuf },
    #[error("the cache database {path} lacks table {table:?}")]
    BadSchema { path: PathBuf, table: &'static str },
    #[error("cache database error: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl CacheError {
    /// Whether the database itself is broken (garbled, truncated, a table
    /// missing): a cache, so it is moved aside and rebuilt, not reported.
    pub fn is_corrupt(&self) -> bool {
        match self {
            CacheError::Open { source, .. } | CacheError::Sql(source) => sql_corrupt(source),
            // The schema is not what its version says (a table dropped or
            // added behind lbuild's back).
            CacheError::Migrate { .. } | CacheError::BadSchema { .. } => true,
            CacheError::CreateDir { .. }
            | CacheError::TooNew { .. }
            | CacheError::Io { .. }
            | CacheError::Write { .. }
            | CacheError::NotOurs { .. } => false,
        }
    }

    /// Whether the database could not be opened for want of space or
    /// permission (disk full, read-only file system): the files may be
    /// fine, the build can go on without them.
    pub fn is_unavailable(&self) -> bool {
        use rusqlite::ErrorCode::{
            CannotOpen, DiskFull, PermissionDenied, ReadOnly, SystemIoFailure,
        };
        match self {
            CacheError::Open {
                source: rusqlite::Error::SqliteFailure(f, _),
                ..
            } => matches!(
                f.code,
                CannotOpen | DiskFull | PermissionDenied | ReadOnly | SystemIoFailure
            ),
            _ => false,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            CacheError::TooNew { .. } => {
                Some("upgrade lbuild, or run `lbuild clean` to start a fresh cache".into())
            }
            CacheError::Migrate { .. } => Some("run `lbuild clean` to start a fresh cache".into()),
            CacheError::NotOurs { path } => Some(format!(
                "check LBUILD_CACHE_DIR; if {} really is lbuild's cache, remove its files by hand",
                path.display()
            )),
            _ => None,
        }
    }
}

fn sql_corrupt(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode::{DatabaseCorrupt, NotADatabase};
    match e {
        rusqlite::Error::SqliteFailure(f, msg) => {
            matches!(f.code, DatabaseCorrupt | NotADatabase)
                || msg.as_deref().is_some_and(|m| {
                    m.starts_with("no such table") || m.starts_with("no such column")
                })
        }
        _ => false,
    }
}

/// The mark of a cache directory lbuild created (the Cache Directory
/// Tagging Specification, as cargo's `target/`): backup tools skip it, and
/// `lbuild clean` refuses a directory without it.
pub(crate) const TAG_FILE: &str = "CACHEDIR.TAG";
const TAG_SIGNATURE: &str = "Signature: 8a477f597d28d172789f06886806bc55";

/// Creates the cache directory if needed and marks it as lbuild's: when
/// lbuild creates it, finds it empty, or it is the project's own `.lbuild`
/// (`default`). A directory that already holds other things is used but
/// not marked, so `clean` will not touch it.
pub(crate) fn prepare_dir(dir: &Path, default: bool) -> Result<(), CacheError> {
    let marked = is_marked(dir);
    let mark = !marked
        && (default
            || match fs_err::read_dir(dir) {
                Ok(mut entries) => entries.next().is_none(),
                Err(e) => e.kind() == std::io::ErrorKind::NotFound,
            });
    fs_err::create_dir_all(dir).map_err(|source| CacheError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    if mark {
        let path = dir.join(TAG_FILE);
        let text = format!(
            "{TAG_SIGNATURE}\n# This file is a cache directory tag created by lbuild.\n# For information about cache directory tags see https://bford.info/cachedir/\n"
        );
        fs_err::write(&path, text).map_err(|source| CacheError::Write { path, source })?;
    }
    Ok(())
}

/// Whether `dir` carries lbuild's [`TAG_FILE`].
pub(crate) fn is_marked(dir: &Path) -> bool {
    fs_err::read(dir.join(TAG_FILE)).is_ok_and(|t| t.starts_with(TAG_SIGNATURE.as_bytes()))
}

/// Whether `name` (an entry of the cache directory) is something lbuild
/// creates there and `clean` may remove: the database and its journals
/// (and ones moved aside), the reuse store, the installed trees.
pub(crate) fn is_cache_entry(name: &str) -> bool {
    name == "deps"
        || (name.starts_with("store") && (name.ends_with(".zip") || name.ends_with(".zip.new")))
        || name == DB_FILE
        || name.strip_prefix(DB_FILE).is_some_and(|rest| {
            rest == "-wal" || rest == "-shm" || rest == "-journal" || rest.starts_with(".corrupt-")
        })
}

/// The reuse store's file name inside the cache directory, for a
/// single-function manifest (a workspace's artifacts each have their own,
/// `store-KIND-NAME.zip`, see `Plan::store_file`).
pub(crate) const STORE_FILE: &str = "store.zip";

/// The database file's name inside the cache directory.
pub(crate) const DB_FILE: &str = "cache.sqlite";

/// The tables the current schema has (checked at open: a version number
/// alone does not prove them there).
const TABLES: [&str; 4] = ["files", "stages", "packed", "last_inputs"];

const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/0001_init.sql"),
    include_str!("../../migrations/0002_stage_detail.sql"),
    include_str!("../../migrations/0003_packed_per_store.sql"),
    include_str!("../../migrations/0004_last_inputs.sql"),
];

/// The open cache of one project.
///
/// Writes never fail a build: the cache only makes builds faster, so a
/// record that cannot be written (disk full, read-only file system) is
/// remembered as [`Cache::take_write_failure`] for one warning, and the
/// next build is merely slower.
pub(crate) struct Cache {
    pub(crate) conn: Connection,
    write_failure: std::cell::RefCell<Option<String>>,
    healed: Option<PathBuf>,
    unavailable: Option<String>,
    /// The fingerprints this process already settled (see
    /// [`Cache::hash_files`]): a workspace's shared files are looked up
    /// and hashed once per build, not once per artifact.
    pub(crate) settled: fingerprint::Settled,
    /// Read transactions begun (see [`Cache::reading`]): one for a no-op
    /// build, whatever its number of artifacts.
    reads: std::cell::Cell<u32>,
    /// The open transaction has written (see [`Cache::write`]).
    written: std::cell::Cell<bool>,
}

/// A WAL left behind is replayed in full by the next process to open the
/// database (recovery), so a build that wrote rows copies them into the
/// database and truncates the WAL before it exits; a no-op wrote nothing
/// and pays one `stat`.
impl Drop for Cache {
    fn drop(&mut self) {
        self.commit();
        let Some(db) = self.conn.path().map(PathBuf::from) else {
            return;
        };
        let wal = PathBuf::from(format!("{}-wal", db.display()));
        let written = fs_err::metadata(&wal).is_ok_and(|m| m.len() > 0);
        if written {
            // Never wait here: with `watch` reading at the same moment the
            // checkpoint is simply left to a later build.
            let _ = self.conn.busy_timeout(Duration::ZERO);
            let _ = self
                .conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        }
    }
}

impl Cache {
    /// Opens (creating and migrating if needed) `DIR/cache.sqlite`. A
    /// corrupt database is moved aside (see [`Cache::healed`]) and a fresh
    /// one started.
    pub(crate) fn open(dir: &Path) -> Result<Cache, CacheError> {
        match Self::open_once(dir) {
            Err(e) if e.is_corrupt() => {
                let aside = Self::move_aside(dir)?;
                let mut cache = Self::open_once(dir)?;
                cache.healed = Some(aside);
                Ok(cache)
            }
            other => other,
        }
    }

    /// Where a corrupt database found at open was moved, if it was.
    pub(crate) fn healed(&self) -> Option<&Path> {
        self.healed.as_deref()
    }

    /// Moves a broken database (and its WAL) aside as
    /// `cache.sqlite.corrupt-N`, for a post-mortem; returns the new path.
    pub(crate) fn move_aside(dir: &Path) -> Result<PathBuf, CacheError> {
        let db = dir.join(DB_FILE);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CacheError::Write { path, source }
        };
        let mut n = 1;
        let aside = loop {
            let candidate = dir.join(format!("{DB_FILE}.corrupt-{n}"));
            if !candidate.exists() {
                break candidate;
            }
            n += 1;
        };
        fs_err::rename(&db, &aside).map_err(io(&db))?;
        let wal = dir.join(format!("{DB_FILE}-wal"));
        if wal.exists() {
            let wal_aside = PathBuf::from(format!("{}-wal", aside.display()));
            fs_err::rename(&wal, &wal_aside).map_err(io(&wal))?;
        }
        let shm = dir.join(format!("{DB_FILE}-shm"));
        match fs_err::remove_file(&shm) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&shm)(e)),
            _ => {}
        }
        Ok(aside)
    }

    fn open_once(dir: &Path) -> Result<Cache, CacheError> {
        fs_err::create_dir_all(dir).map_err(|source| CacheError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(DB_FILE);
        let open_err = |source| CacheError::Open {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(open_err)?;
        // Editors run `lbuild` while `lbuild watch` runs: wait for the other
        // writer instead of failing with "database is locked".
        conn.busy_timeout(Duration::from_secs(60))
            .map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_err)?;
        // No checkpoint in the middle of a build: `Drop` checkpoints once
        // at its end, and one on the way (SQLite's default, at 1,000 pages
        // of WAL: a cold workspace of 80 functions writes ~870) copies
        // pages that are then checkpointed again, with two more fsyncs.
        // The cap bounds the WAL of a build that writes more than 64 MiB.
        conn.pragma_update(None, "wal_autocheckpoint", 16_384)
            .map_err(open_err)?;
        // Closing does not checkpoint (that would create and delete the WAL
        // and shm files in every no-op): `Drop` empties the WAL instead,
        // and only when this build wrote to it.
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
            true,
        )
        .map_err(open_err)?;

        Self::migrate(conn, path)
    }

    /// Brings a fresh or older database to the current schema and checks
    /// its tables.
    fn migrate(mut conn: Connection, path: PathBuf) -> Result<Cache, CacheError> {
        let open_err = |source| CacheError::Open {
            path: path.clone(),
            source,
        };
        let found: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(open_err)?;
        if found > MIGRATIONS.len() as i64 {
            return Err(CacheError::TooNew {
                path,
                found,
                known: MIGRATIONS.len(),
            });
        }
        let migrations = Migrations::new(MIGRATIONS.iter().map(|sql| M::up(sql)).collect());
        migrations
            .to_latest(&mut conn)
            .map_err(|source| CacheError::Migrate {
                path: path.clone(),
                source,
            })?;
        for table in TABLES {
            let present: bool = conn
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
                    params![table],
                    |r| r.get(0),
                )
                .map_err(open_err)?;
            if !present {
                return Err(CacheError::BadSchema { path, table });
            }
        }
        Ok(Cache {
            conn,
            write_failure: Default::default(),
            healed: None,
            unavailable: None,
            settled: Default::default(),
            reads: Default::default(),
            written: Default::default(),
        })
    }

    /// Begins a transaction unless one is open, for the lookups (and
    /// writes, see [`Cache::write`]) that follow. Outside a transaction
    /// every statement takes and drops SQLite's locks on the WAL index (an
    /// `fcntl` pair, and a write lock attempt for an UPDATE that matches
    /// nothing): ~27 a cached artifact. Held until [`Cache::commit`] (at
    /// the end of the build, through [`Cache::commit_writes`], and when
    /// the cache is closed), a no-op build reads one snapshot from its
    /// first lookup to its end, and a build that ran commits its records
    /// once, not once a record nor once an artifact: SQLite writes every
    /// page a transaction dirtied to the WAL, and the artifacts of a cold
    /// workspace dirty mostly the same pages (the reuse index's), so one
    /// commit per artifact wrote five times the pages. Its zips are put in
    /// place at the end of the build too (`stages::outputs::Outputs`): a build
    /// killed before then leaves neither zips nor records, and the next
    /// one does the work again.
    ///
    /// One snapshot for a whole build is sound because nothing else writes
    /// this database meanwhile: every command that opens it (build, watch's
    /// rebuilds, gc, clean) holds the project lock (`lock.rs`) first; a
    /// reader elsewhere (an `sqlite3` shell) is never blocked by a reader
    /// in WAL mode, and a writer elsewhere only costs a retry (see
    /// [`Cache::write`]). Records written are read back by the lookups that
    /// follow (one connection, one transaction).
    fn reading(&self) -> Result<(), CacheError> {
        if self.conn.is_autocommit() {
            self.conn.execute_batch("BEGIN DEFERRED")?;
            self.reads.set(self.reads.get() + 1);
        }
        Ok(())
    }

    /// Runs `f`'s writes in the build's transaction (see
    /// [`Cache::reading`]). The first write of a transaction that began by
    /// reading takes the write lock; should another process have written
    /// since its snapshot (SQLite's `SQLITE_BUSY_SNAPSHOT`, impossible
    /// under the project lock), the snapshot is ended and `f` runs again
    /// in a fresh transaction.
    fn write<T>(&self, f: impl Fn(&Connection) -> rusqlite::Result<T>) -> Result<T, CacheError> {
        self.reading()?;
        let result = match f(&self.conn) {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy =>
            {
                self.commit();
                self.reading()?;
                f(&self.conn)
            }
            other => other,
        };
        self.written.set(true);
        Ok(result?)
    }

    /// Commits the transaction [`Cache::reading`] began, if one is open
    /// (best effort: a failure is kept for the build's one warning, see
    /// [`Cache::soft`]).
    pub(crate) fn commit(&self) {
        self.written.set(false);
        if !self.conn.is_autocommit()
            && let Err(e) = self.conn.execute_batch("COMMIT")
        {
            self.soft::<()>(Err(e.into()));
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }

    /// How many transactions this cache began (see [`Cache::reading`]).
    #[cfg(test)]
    pub(crate) fn reads(&self) -> u32 {
        self.reads.get()
    }

    /// [`Cache::open`] for a build: when the database cannot be opened for
    /// want of space or permission, the build goes on with an empty cache
    /// in memory (see [`Cache::unavailable`]) instead of failing. Slower,
    /// never wrong.
    pub(crate) fn open_or_memory(dir: &Path) -> Result<Cache, CacheError> {
        match Self::open(dir) {
            Err(e) if e.is_unavailable() => {
                let conn = Connection::open_in_memory().map_err(|source| CacheError::Open {
                    path: PathBuf::from(":memory:"),
                    source,
                })?;
                let mut cache = Self::migrate(conn, PathBuf::from(":memory:"))?;
                cache.unavailable = Some(e.to_string());
                Ok(cache)
            }
            other => other,
        }
    }

    /// Why the cache on disk is not in use, when [`Cache::open_or_memory`]
    /// fell back to memory.
    pub(crate) fn unavailable(&self) -> Option<&str> {
        self.unavailable.as_deref()
    }

    /// Keeps the first failed write for one warning at the end of the
    /// build (see the type's docs).
    pub(crate) fn soft<T>(&self, result: Result<T, CacheError>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.write_failure
                    .borrow_mut()
                    .get_or_insert_with(|| e.to_string());
                None
            }
        }
    }

    /// Commits what was written so far, if anything (the build's records,
    /// see [`Cache::reading`]), and returns the first write that failed
    /// since [`Cache::take_write_failure`], if any.
    pub(crate) fn commit_writes(&self) -> Option<String> {
        // A snapshot that only read stays open (a watch's next build
        // opens the cache again).
        if self.written.get() {
            self.commit();
        }
        self.take_write_failure()
    }

    /// The first write that failed since the last call, if any (committed
    /// or not: see [`Cache::commit_writes`]).
    pub(crate) fn take_write_failure(&self) -> Option<String> {
        self.write_failure.borrow_mut().take()
    }

    /// The recorded output of `stage` for `key`, if any; marks it used
    /// (at most hourly, so that a no-op build writes nothing: the UPDATE is
    /// issued only when the row says it is due, since even one that
    /// matches nothing takes the write lock).
    pub(crate) fn stage_output(
        &self,
        stage: &str,
        key: &Hash,
    ) -> Result<Option<String>, CacheError> {
        self.reading()?;
        let row: Option<(String, i64)> = self
            .conn
            .prepare_cached("SELECT output, last_used_s FROM stages WHERE stage = ?1 AND key = ?2")?
            .query_row(params![stage, key.as_bytes().as_slice()], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        let now = now_s();
        let Some((out, used)) = row else {
            return Ok(None);
        };
        if used < now - 3600 {
            self.soft(self.write(|conn| {
                conn.prepare_cached(
                    "UPDATE stages SET last_used_s = ?3 WHERE stage = ?1 AND key = ?2 AND last_used_s < ?3 - 3600",
                )?
                .execute(params![stage, key.as_bytes().as_slice(), now])
            }));
        }
        Ok(Some(out))
    }

    /// Records `stage` under `key` (best effort: see [`Cache::soft`]).
    pub(crate) fn record_stage(&self, stage: &str, key: &Hash, output: &str) {
        let now = now_s();
        self.soft(self.write(|conn| conn.prepare_cached(
            "INSERT INTO stages (stage, key, output, created_s, last_used_s) VALUES (?1, ?2, ?3, ?4, ?4)
             ON CONFLICT (stage, key) DO UPDATE SET output = excluded.output, last_used_s = excluded.last_used_s",
        )?.execute(params![stage, key.as_bytes().as_slice(), output, now])));
    }

    /// Records a stage with a large `detail` read only on demand (best
    /// effort).
    pub(crate) fn record_stage_with_detail(
        &self,
        stage: &str,
        key: &Hash,
        output: &str,
        detail: &str,
    ) {
        let now = now_s();
        self.soft(self.write(|conn| conn.prepare_cached(
            "INSERT INTO stages (stage, key, output, detail, created_s, last_used_s) VALUES (?1, ?2, ?3, ?4, ?5, ?5)
             ON CONFLICT (stage, key) DO UPDATE SET output = excluded.output, detail = excluded.detail, last_used_s = excluded.last_used_s",
        )?.execute(params![stage, key.as_bytes().as_slice(), output, detail, now])));
    }

    /// The `detail` recorded with `stage` for `key`.
    pub(crate) fn stage_detail(
        &self,
        stage: &str,
        key: &Hash,
    ) -> Result<Option<String>, CacheError> {
        self.reading()?;
        Ok(self
            .conn
            .prepare_cached("SELECT detail FROM stages WHERE stage = ?1 AND key = ?2")?
            .query_row(params![stage, key.as_bytes().as_slice()], |r| {
                r.get::<_, Option<String>>(0)
            })
            .optional()?
            .flatten())
    }

    /// The key of `stage` at the last build of `artifact` (see
    /// `explain`).
    pub(crate) fn last_inputs_key(
        &self,
        artifact: &str,
        stage: &str,
    ) -> Result<Option<Hash>, CacheError> {
        self.reading()?;
        let key: Option<Vec<u8>> = self
            .conn
            .prepare_cached("SELECT key FROM last_inputs WHERE artifact = ?1 AND stage = ?2")?
            .query_row(params![artifact, stage], |r| r.get(0))
            .optional()?;
        Ok(key.and_then(|k| crate::entry::hash_from_slice(&k)))
    }

    /// The inputs of `stage` at the last build of `artifact` (JSON).
    pub(crate) fn last_inputs(
        &self,
        artifact: &str,
        stage: &str,
    ) -> Result<Option<String>, CacheError> {
        self.reading()?;
        Ok(self
            .conn
            .prepare_cached("SELECT inputs FROM last_inputs WHERE artifact = ?1 AND stage = ?2")?
            .query_row(params![artifact, stage], |r| r.get(0))
            .optional()?)
    }

    /// Records this build's inputs of `stage` for `artifact` (best effort).
    pub(crate) fn record_last_inputs(&self, artifact: &str, stage: &str, key: &Hash, inputs: &str) {
        self.soft(self.write(|conn| {
            conn.prepare_cached(
                "INSERT OR REPLACE INTO last_inputs (artifact, stage, key, inputs) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![artifact, stage, key.as_bytes().as_slice(), inputs])
        }));
    }

    /// Deletes stage records not used for `days` days and returns their
    /// (stage, key) so the caller can remove their on-disk outputs.
    pub(crate) fn gc_stages(&self, days: u64) -> Result<Vec<(String, Hash)>, CacheError> {
        // A span too long to compute keeps everything.
        let Some(cutoff) = i64::try_from(days)
            .ok()
            .and_then(|d| d.checked_mul(86_400))
            .and_then(|span| now_s().checked_sub(span))
        else {
            return Ok(Vec::new());
        };
        self.commit();
        let mut stmt = self
            .conn
            .prepare("SELECT stage, key FROM stages WHERE last_used_s < ?1")?;
        let rows = stmt
            .query_map(params![cutoff], |r| {
                let stage: String = r.get(0)?;
                let key: Vec<u8> = r.get(1)?;
                Ok((stage, key))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        self.conn
            .execute("DELETE FROM stages WHERE last_used_s < ?1", params![cutoff])?;
        self.conn.execute(
            "DELETE FROM files WHERE recorded_ns < ?1",
            params![cutoff.saturating_mul(1_000_000_000)],
        )?;
        Ok(rows
            .into_iter()
            .filter_map(|(s, k)| Some((s, crate::entry::hash_from_slice(&k)?)))
            .collect())
    }
}

pub(crate) fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub(crate) fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_records_round_trip_and_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let key = Hash::from_bytes([7u8; 32]);
        assert_eq!(cache.stage_output("sources", &key).unwrap(), None);
        cache.record_stage("sources", &key, "{}");
        assert_eq!(cache.take_write_failure(), None);
        assert_eq!(
            cache.stage_output("sources", &key).unwrap().as_deref(),
            Some("{}")
        );
        cache.conn.pragma_update(None, "user_version", 99).unwrap();
        drop(cache);
        let err = Cache::open(dir.path())
            .err()
            .expect("newer schema must fail");
        assert!(err.to_string().contains("newer lbuild"), "{err}");
    }

    /// What a workspace's cached artifacts ask the cache (their files'
    /// fingerprints, stage records, last inputs) is read in one read
    /// transaction, and writes nothing; the records of artifacts that ran
    /// are committed once, at the build's end, and the next build sees them.
    #[test]
    fn a_no_op_builds_lookups_share_one_read_transaction_and_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join(".lbuild");
        let shared = dir.path().join("shared.py");
        fs_err::write(&shared, "x = 1\n").unwrap();
        let old = std::time::SystemTime::now() - Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(&shared)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let key = |n: u8| Hash::from_bytes([n; 32]);
        // The build that recorded everything.
        {
            let mut cache = Cache::open(&db).unwrap();
            cache.hash_files(std::slice::from_ref(&shared)).unwrap();
            for n in 0..80 {
                cache.record_stage("sources", &key(n), "[]");
                cache.record_last_inputs(&format!("function f{n}"), "sources", &key(n), "{}");
            }
        }
        // Another connection sees every commit as a new data version.
        let other = Connection::open(db.join(DB_FILE)).unwrap();
        let version = || -> i64 {
            other
                .pragma_query_value(None, "data_version", |r| r.get(0))
                .unwrap()
        };
        let before = version();

        let mut cache = Cache::open(&db).unwrap();
        let reads = cache.reads();
        for n in 0..80 {
            let (_, stats) = cache.hash_files(std::slice::from_ref(&shared)).unwrap();
            assert_eq!(stats.hashed, 0);
            assert!(cache.stage_output("sources", &key(n)).unwrap().is_some());
            assert_eq!(
                cache
                    .last_inputs_key(&format!("function f{n}"), "sources")
                    .unwrap(),
                Some(key(n))
            );
            assert!(cache.stage_output("package", &key(n)).unwrap().is_none());
        }
        assert_eq!(
            cache.reads() - reads,
            1,
            "one read transaction for 80 artifacts"
        );
        assert!(!cache.conn.is_autocommit(), "the snapshot is held");
        assert_eq!(version(), before, "a no-op wrote to the cache");
        // The end of a build that only read commits nothing.
        assert_eq!(cache.commit_writes(), None);
        assert!(!cache.conn.is_autocommit(), "the snapshot is held");

        // Artifacts that ran write their records in the same transaction
        // (read back at once), committed together at the build's end.
        for n in 1..3 {
            cache.record_stage("package", &key(n), "{}");
            cache.record_last_inputs(&format!("function f{n}"), "package", &key(n), "{}");
            assert_eq!(
                cache.stage_output("package", &key(n)).unwrap().as_deref(),
                Some("{}")
            );
            // An artifact's end.
            assert_eq!(cache.take_write_failure(), None);
        }
        assert_eq!(version(), before, "committed before the build's end");
        assert_eq!(cache.reads() - reads, 1);
        assert_eq!(cache.commit_writes(), None);
        assert!(cache.conn.is_autocommit());
        assert_ne!(version(), before, "not committed at the build's end");
        assert!(cache.stage_output("package", &key(1)).unwrap().is_some());
        assert_eq!(cache.reads() - reads, 2, "the next build's snapshot");
        drop(cache);
        // A record last used over an hour ago is marked used again.
        let cache = Cache::open(&db).unwrap();
        cache
            .conn
            .execute(
                "UPDATE stages SET last_used_s = 0 WHERE stage = 'sources'",
                [],
            )
            .unwrap();
        assert!(cache.stage_output("sources", &key(3)).unwrap().is_some());
        let used: i64 = cache
            .conn
            .query_row(
                "SELECT last_used_s FROM stages WHERE stage = 'sources' AND key = ?1",
                params![key(3).as_bytes().as_slice()],
                |r| r.get(0),
            )
            .unwrap();
        assert!(used > 0, "not marked used");
    }
}
