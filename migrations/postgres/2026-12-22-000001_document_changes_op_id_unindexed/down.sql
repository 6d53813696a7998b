CREATE UNIQUE INDEX document_changes_op_id ON document_changes (document_id, op_id, user_id)
    WHERE op_id IS NOT NULL;
