ALTER TABLE document_changes DROP COLUMN kind;
