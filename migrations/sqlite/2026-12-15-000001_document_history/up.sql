-- Document history: every accepted change (a text operation, or a
-- whole-content update recorded as the operation that replaces the
-- content) is one row, and a full copy of the content is kept at version 0
-- and every 100 versions (`SNAPSHOT_EVERY` in actors/src/store/mod.rs), so that the
-- content at any version is a snapshot plus fewer than 100 changes.

-- Clustered on (document_id, version): a batch appends to one page per
-- document, and a history page or a replay reads one key range.
CREATE TABLE document_changes (
    document_id TEXT NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    version     BIGINT NOT NULL,
    -- The operation as applied, in its JSON wire form.
    ops         TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    op_id       TEXT,
    PRIMARY KEY (document_id, version)
) WITHOUT ROWID;

-- Idempotent operations: one change per (document, op_id, author). Only
-- the changes that carry an op_id are indexed. op_id comes before user_id
-- so that a batch finds all its op_ids of one document with one IN list.
CREATE UNIQUE INDEX document_changes_op_id ON document_changes (document_id, op_id, user_id)
    WHERE op_id IS NOT NULL;

-- Whole contents: large rows, so a rowid table (WITHOUT ROWID suits small
-- rows).
CREATE TABLE document_snapshots (
    document_id TEXT NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    version     BIGINT NOT NULL,
    content     TEXT NOT NULL,
    updated_at  BIGINT NOT NULL,
    updated_by  TEXT NOT NULL,
    PRIMARY KEY (document_id, version)
);

-- Documents that existed before history was kept: their history starts at
-- their current version, with a snapshot of it.
INSERT INTO document_snapshots (document_id, version, content, updated_at, updated_by)
    SELECT id, version, content, updated_at, updated_by FROM documents;
