-- Documents, their access lists, chats, chat members and messages.
-- Times are integer milliseconds since the Unix epoch (UTC), so that the
-- same queries serve SQLite and PostgreSQL.

CREATE TABLE documents (
    id         VARCHAR(128) PRIMARY KEY,
    title      TEXT NOT NULL,
    content    TEXT NOT NULL,
    version    BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT NOT NULL
);

CREATE TABLE document_access (
    document_id TEXT NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    user_id     TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('owner', 'editor', 'viewer')),
    PRIMARY KEY (document_id, user_id)
);

CREATE TABLE chats (
    id         VARCHAR(128) PRIMARY KEY,
    private    BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT,
    -- The seq of the newest message: incremented in the same transaction
    -- that inserts the message, which makes seq gapless and serializes
    -- writers to one chat across engine processes.
    last_seq   BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE chat_members (
    chat_id TEXT NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    PRIMARY KEY (chat_id, user_id)
);

CREATE TABLE messages (
    chat_id       TEXT NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    seq           BIGINT NOT NULL,
    id            TEXT NOT NULL UNIQUE,
    user_id       TEXT NOT NULL,
    content       TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    client_msg_id TEXT,
    PRIMARY KEY (chat_id, seq)
);

-- Idempotent sends: one message per (chat, author, client_msg_id). NULLs
-- are distinct in both engines, so messages without one never collide.
CREATE UNIQUE INDEX messages_client_msg_id ON messages (chat_id, user_id, client_msg_id);
