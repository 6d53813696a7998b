-- Change rows move from a WITHOUT ROWID table to a rowid table keyed by a
-- unique index on (document_id, version), with the operation last.
--
-- In a WITHOUT ROWID table the whole row is the key, and SQLite reads a
-- row's whole record, overflow pages and all, to step over it in a range
-- scan: sizing a history page, or looking for a resent op_id among the
-- versions after a base, read every operation in the range (a megabyte
-- per whole-content update of a long document; a gigabyte for a page of
-- a thousand). Now a range scan walks the index and reads only the first
-- page of each row it needs, `octet_length(ops)` takes the size from the
-- record's header, and columns before `ops` are read without it.
-- PostgreSQL keeps large values out of line already: no change there.
CREATE TABLE document_changes_rowid (
    document_id TEXT NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    version     BIGINT NOT NULL,
    user_id     TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    op_id       TEXT,
    kind        SMALLINT NOT NULL DEFAULT 0,
    -- The operation as applied, in its JSON wire form.
    ops         TEXT NOT NULL,
    PRIMARY KEY (document_id, version)
);
INSERT INTO document_changes_rowid (document_id, version, user_id, created_at, op_id, kind, ops)
    SELECT document_id, version, user_id, created_at, op_id, kind, ops FROM document_changes;
DROP TABLE document_changes;
ALTER TABLE document_changes_rowid RENAME TO document_changes;
