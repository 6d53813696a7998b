CREATE TABLE messages_rowid (
    chat_id       TEXT NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    seq           BIGINT NOT NULL,
    id            TEXT NOT NULL UNIQUE,
    user_id       TEXT NOT NULL,
    content       TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    client_msg_id TEXT,
    PRIMARY KEY (chat_id, seq)
);

INSERT INTO messages_rowid (chat_id, seq, id, user_id, content, created_at, client_msg_id)
    SELECT chat_id, seq, id, user_id, content, created_at, client_msg_id FROM messages;

DROP TABLE messages;
ALTER TABLE messages_rowid RENAME TO messages;

CREATE UNIQUE INDEX messages_client_msg_id ON messages (chat_id, user_id, client_msg_id);
