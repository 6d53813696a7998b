-- What each change was asked as: 0 an operation (`documents:op`), 1 a
-- whole-content update (`documents:update`). A change that reaches members
-- late (read back from the history by a room that missed it, on another
-- node or another engine process) is pushed as the event its author's
-- members heard: `documents:op` or `documents:updated`. Rows stored before
-- this column count as operations.
ALTER TABLE document_changes ADD COLUMN kind SMALLINT NOT NULL DEFAULT 0;
