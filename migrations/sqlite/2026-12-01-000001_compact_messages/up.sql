-- Fewer B-trees per stored message. Group commit writes every page a
-- batch touches to the write-ahead log, and the original table had four
-- B-trees per message: the rowid table, the (chat_id, seq) key, the
-- UNIQUE id (a random UUID, so a different page for nearly every
-- message) and the client_msg_id index. Now:
-- - the table is clustered on its key (WITHOUT ROWID): a batch appends
--   to one page per chat;
-- - id keeps no index: nothing looks a message up by id, and ids are
--   random 128-bit UUIDs;
-- - the idempotency index holds only messages that carry a client_msg_id.

CREATE TABLE messages_compact (
    chat_id       TEXT NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    seq           BIGINT NOT NULL,
    id            TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    content       TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    client_msg_id TEXT,
    PRIMARY KEY (chat_id, seq)
) WITHOUT ROWID;

INSERT INTO messages_compact (chat_id, seq, id, user_id, content, created_at, client_msg_id)
    SELECT chat_id, seq, id, user_id, content, created_at, client_msg_id FROM messages;

DROP TABLE messages;
ALTER TABLE messages_compact RENAME TO messages;

CREATE UNIQUE INDEX messages_client_msg_id ON messages (chat_id, user_id, client_msg_id)
    WHERE client_msg_id IS NOT NULL;
