-- Fewer index entries per stored message (see the SQLite migration of the
-- same name): no index on the random UUID id, which nothing looks up,
-- and an idempotency index over only the messages that carry a
-- client_msg_id. The table stays a heap with its (chat_id, seq) key.

ALTER TABLE messages DROP CONSTRAINT messages_id_key;
DROP INDEX messages_client_msg_id;
CREATE UNIQUE INDEX messages_client_msg_id ON messages (chat_id, user_id, client_msg_id)
    WHERE client_msg_id IS NOT NULL;
