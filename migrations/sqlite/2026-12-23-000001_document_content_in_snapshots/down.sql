-- The previous schema reads the row's content as current, which only a
-- snapshot at the document's version gives without the engine replaying
-- changes: down refuses (the CHECK fails) while a document has none.
CREATE TEMP TABLE content_check (missing BIGINT NOT NULL CHECK (missing = 0));
INSERT INTO content_check SELECT count(*) FROM documents d
    WHERE NOT EXISTS (SELECT 1 FROM document_snapshots s WHERE s.document_id = d.id AND s.version = d.version);
DROP TABLE content_check;
ALTER TABLE documents ADD COLUMN content TEXT NOT NULL DEFAULT '';
UPDATE documents SET content = (SELECT s.content FROM document_snapshots s WHERE s.document_id = documents.id AND s.version = documents.version);
