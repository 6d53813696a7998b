DROP TABLE document_snapshots;
DROP TABLE document_changes;
