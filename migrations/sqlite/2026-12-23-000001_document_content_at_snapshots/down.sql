-- The previous schema reads `content` as current. Where a row's content
-- lags its version, only the engine (which replays the changes) can bring
-- it up to date, so down refuses rather than leave stale content: the
-- CHECK fails on any lagging row.
CREATE TEMP TABLE content_lag_check (lagging BIGINT NOT NULL CHECK (lagging = 0));
INSERT INTO content_lag_check SELECT count(*) FROM documents WHERE content_version <> version;
DROP TABLE content_lag_check;
ALTER TABLE documents DROP COLUMN content_version;
