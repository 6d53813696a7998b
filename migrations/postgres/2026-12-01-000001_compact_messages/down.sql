DROP INDEX messages_client_msg_id;
CREATE UNIQUE INDEX messages_client_msg_id ON messages (chat_id, user_id, client_msg_id);
ALTER TABLE messages ADD CONSTRAINT messages_id_key UNIQUE (id);
