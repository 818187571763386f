-- A stage's large output (e.g. the file list of an installed deps tree),
-- kept apart from the small `output` so that a cached build reads only
-- what it needs.
ALTER TABLE stages ADD COLUMN detail TEXT;
