DROP TABLE messages;
DROP TABLE chat_members;
DROP TABLE chats;
DROP TABLE document_access;
DROP TABLE documents;
