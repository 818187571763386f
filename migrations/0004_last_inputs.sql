-- "Why did this run?": each artifact's stage inputs at its last build
-- (names, short content hashes, values; JSON), written only when a
-- stage's key differs from the one recorded here.
CREATE TABLE last_inputs (
    artifact TEXT NOT NULL,
    stage    TEXT NOT NULL,
    key      BLOB NOT NULL,
    inputs   TEXT NOT NULL,
    PRIMARY KEY (artifact, stage)
);
