//! Diesel's view of the tables in `migrations/`.

diesel::table! {
    documents (id) {
        id -> Text,
        title -> Text,
        version -> BigInt,
        created_at -> BigInt,
        updated_at -> BigInt,
        updated_by -> Text,
        access_version -> BigInt,
    }
}

diesel::table! {
    document_access (document_id, user_id) {
        document_id -> Text,
        user_id -> Text,
        role -> Text,
    }
}

diesel::table! {
    chats (id) {
        id -> Text,
        private -> Bool,
        created_at -> BigInt,
        created_by -> Nullable<Text>,
        last_seq -> BigInt,
    }
}

diesel::table! {
    chat_members (chat_id, user_id) {
        chat_id -> Text,
        user_id -> Text,
    }
}

diesel::table! {
    messages (chat_id, seq) {
        chat_id -> Text,
        seq -> BigInt,
        id -> Text,
        user_id -> Text,
        content -> Text,
        created_at -> BigInt,
        client_msg_id -> Nullable<Text>,
    }
}

diesel::table! {
    document_changes (document_id, version) {
        document_id -> Text,
        version -> BigInt,
        // `ops` would clash with diesel's `sql_types::ops` in this module.
        #[sql_name = "ops"]
        operation -> Text,
        user_id -> Text,
        created_at -> BigInt,
        op_id -> Nullable<Text>,
        kind -> SmallInt,
    }
}

diesel::table! {
    document_snapshots (document_id, version) {
        document_id -> Text,
        version -> BigInt,
        content -> Text,
        updated_at -> BigInt,
        updated_by -> Text,
    }
}

diesel::table! {
    health_probe (id) {
        id -> Integer,
        probed_at -> BigInt,
    }
}

diesel::joinable!(document_access -> documents (document_id));
diesel::joinable!(chat_members -> chats (chat_id));
diesel::joinable!(messages -> chats (chat_id));
diesel::joinable!(document_changes -> documents (document_id));
diesel::joinable!(document_snapshots -> documents (document_id));
diesel::allow_tables_to_appear_in_same_query!(
    documents,
    document_access,
    document_changes,
    document_snapshots,
    chats,
    chat_members,
    messages
);
