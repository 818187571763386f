-- File fingerprints: a stored (size, mtime_ns, ino, ctime_ns) that still
-- matches lets lbuild reuse `hash` without reading the file, unless the
-- file was modified too close to `recorded_ns` (the racy case).
CREATE TABLE files (
    path        TEXT PRIMARY KEY,
    size        INTEGER NOT NULL,
    mtime_ns    INTEGER NOT NULL,
    ino         INTEGER NOT NULL,
    ctime_ns    INTEGER NOT NULL,
    hash        BLOB NOT NULL,
    recorded_ns INTEGER NOT NULL
);

-- One row per (stage, key) ever completed: its output description as JSON.
-- Several keys of one stage stay cached side by side (branch switching).
CREATE TABLE stages (
    stage      TEXT NOT NULL,
    key        BLOB NOT NULL,
    output     TEXT NOT NULL,
    created_s  INTEGER NOT NULL,
    last_used_s INTEGER NOT NULL,
    PRIMARY KEY (stage, key)
);

-- The entries of the reuse store (.lbuild/store.zip, the last zip built):
-- what each holds, so the package stage can raw-copy instead of deflating.
CREATE TABLE packed (
    name         TEXT PRIMARY KEY,
    content_hash BLOB NOT NULL,
    executable   INTEGER NOT NULL,
    settings     BLOB NOT NULL,
    raw_hash     BLOB NOT NULL
);
CREATE INDEX packed_by_content ON packed (content_hash, executable, settings);
