-- A resent op_id is recognised by the document room, which holds every
-- change an operation can have been stored as: an operation made on
-- version b is stored within the room's window and one group after b, or
-- refused. So a lookup reads that range of the primary key, and no commit
-- pays for a second B-tree: the index cost a page written per document
-- per group commit, and most of a change row's size again.
DROP INDEX document_changes_op_id;
