-- The previous schema reads `content` as current. Where a row's content
-- lags its version, only the engine (which replays the changes) can bring
-- it up to date, so down refuses rather than leave stale content.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM documents WHERE content_version <> version) THEN
        RAISE EXCEPTION 'documents whose content lags their version: bring them up to date before reverting';
    END IF;
END $$;
ALTER TABLE documents DROP COLUMN content_version;
