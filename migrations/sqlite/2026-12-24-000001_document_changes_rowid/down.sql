CREATE TABLE document_changes_clustered (
    document_id TEXT NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    version     BIGINT NOT NULL,
    ops         TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    op_id       TEXT,
    kind        SMALLINT NOT NULL DEFAULT 0,
    PRIMARY KEY (document_id, version)
) WITHOUT ROWID;
INSERT INTO document_changes_clustered (document_id, version, ops, user_id, created_at, op_id, kind)
    SELECT document_id, version, ops, user_id, created_at, op_id, kind FROM document_changes;
DROP TABLE document_changes;
ALTER TABLE document_changes_clustered RENAME TO document_changes;
