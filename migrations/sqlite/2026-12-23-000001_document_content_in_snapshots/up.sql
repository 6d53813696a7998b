-- A document's row no longer holds its content: every group commit
-- updates the row (its version), and a row that holds the content costs
-- the content's size per commit (SQLite reads and rewrites the whole
-- record, overflow pages and all; PostgreSQL writes a new TOAST value).
-- The content lives in the snapshots, kept every SNAPSHOT_EVERY versions:
-- the current content is the newest snapshot plus the changes since. A
-- snapshot of each document's current content is added here where there
-- is none at its version, so nothing is lost with the column.
INSERT INTO document_snapshots (document_id, version, content, updated_at, updated_by)
    SELECT d.id, d.version, d.content, d.updated_at, d.updated_by FROM documents d
    WHERE NOT EXISTS (SELECT 1 FROM document_snapshots s WHERE s.document_id = d.id AND s.version = d.version);
ALTER TABLE documents DROP COLUMN content;
