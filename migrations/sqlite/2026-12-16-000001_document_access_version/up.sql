-- Counts the changes of a document's access list: the sharing transaction
-- bumps it, and in cluster mode every node reads it with its periodic
-- check, so a revocation whose event Redis lost still evicts the user from
-- the document's live rooms on every node.
ALTER TABLE documents ADD COLUMN access_version BIGINT NOT NULL DEFAULT 0;
