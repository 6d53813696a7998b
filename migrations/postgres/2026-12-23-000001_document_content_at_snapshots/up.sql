-- A document's row keeps its content as of `content_version`, rewritten
-- only by a commit that reaches a snapshot version (every SNAPSHOT_EVERY):
-- rewriting the whole content at every group commit made an operation on
-- a large document cost the document's size in log writes. The current
-- content is the row's plus the changes after `content_version`.
ALTER TABLE documents ADD COLUMN content_version BIGINT NOT NULL DEFAULT 0;
UPDATE documents SET content_version = version;
