-- The reuse store becomes one zip per artifact of a workspace (store.zip
-- for a single function, store-KIND-NAME.zip otherwise); the index says
-- which store holds each entry. The old index is only a speed-up: dropped.
DROP TABLE packed;
CREATE TABLE packed (
    store        TEXT NOT NULL,
    name         TEXT NOT NULL,
    content_hash BLOB NOT NULL,
    executable   INTEGER NOT NULL,
    settings     BLOB NOT NULL,
    raw_hash     BLOB NOT NULL,
    PRIMARY KEY (store, name)
);
CREATE INDEX packed_by_content ON packed (content_hash, executable, settings);
