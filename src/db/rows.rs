//! Rows as diesel reads them, and their conversion into the engine's
//! records. A row that does not convert means a corrupt database.

use diesel::prelude::*;
use huddle_actors::ids::{ChatId, DocumentId, Seq, UserId, Version};
use huddle_actors::model::{Change, ChangeKind, Chat, Document, Message, Role, Timestamp};
use huddle_actors::ot::Operation;
use huddle_actors::store::{NewMessage, StoreError};

use crate::db::schema::{chats, document_changes, document_snapshots, documents, messages};

fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::Internal(format!("corrupt row: {what} {value:?}"))
}

pub fn user_id(s: &str) -> Result<UserId, StoreError> {
    UserId::parse(s).map_err(|_| corrupt("user id", s))
}

pub fn role(s: &str) -> Result<Role, StoreError> {
    Role::parse(s).ok_or_else(|| corrupt("role", s))
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = documents)]
pub struct DocumentRow {
    pub id: String,
    pub title: String,
    pub version: i64,
    pub updated_at: i64,
    pub updated_by: String,
}

impl DocumentRow {
    /// The document, given its content at `version` (which the row does
    /// not hold: see `history::content_at`).
    pub fn into_document(self, content: String) -> Result<Document, StoreError> {
        Ok(Document {
            id: DocumentId::parse(&self.id).map_err(|_| corrupt("document id", &self.id))?,
            updated_by: user_id(&self.updated_by)?,
            title: self.title,
            content,
            version: Version(self.version),
            updated_at: Timestamp(self.updated_at),
        })
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = chats)]
pub struct ChatRow {
    pub id: String,
    pub private: bool,
    pub created_at: i64,
    pub created_by: Option<String>,
    pub last_seq: i64,
}

impl ChatRow {
    pub fn to_chat(&self) -> Result<Chat, StoreError> {
        Ok(Chat {
            id: ChatId::parse(&self.id).map_err(|_| corrupt("chat id", &self.id))?,
            private: self.private,
            created_at: Timestamp(self.created_at),
            created_by: self.created_by.as_deref().map(user_id).transpose()?,
        })
    }
}

#[derive(Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = messages, treat_none_as_default_value = false)]
pub struct MessageRow {
    pub chat_id: String,
    pub seq: i64,
    pub id: String,
    pub user_id: String,
    pub content: String,
    pub created_at: i64,
    pub client_msg_id: Option<String>,
}

impl MessageRow {
    /// The row of `m` stored as `seq` at `at`.
    pub fn new(m: &NewMessage, seq: i64, at: i64) -> MessageRow {
        MessageRow {
            chat_id: m.chat_id.as_str().to_owned(),
            seq,
            id: m.id.clone(),
            user_id: m.user_id.as_str().to_owned(),
            content: m.content.clone(),
            created_at: at,
            client_msg_id: m.client_msg_id.clone(),
        }
    }

    pub fn into_message(self) -> Result<Message, StoreError> {
        Ok(Message {
            chat_id: ChatId::parse(&self.chat_id).map_err(|_| corrupt("chat id", &self.chat_id))?,
            user_id: user_id(&self.user_id)?,
            id: self.id,
            seq: Seq(self.seq),
            content: self.content,
            created_at: Timestamp(self.created_at),
            client_msg_id: self.client_msg_id,
        })
    }
}

pub fn into_messages(rows: Vec<MessageRow>) -> Result<Vec<Message>, StoreError> {
    rows.into_iter().map(MessageRow::into_message).collect()
}

/// One change of a document's history.
#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = document_changes)]
pub struct ChangeRow {
    pub document_id: String,
    pub version: i64,
    #[diesel(column_name = operation)]
    pub ops: String,
    pub user_id: String,
    pub created_at: i64,
    pub op_id: Option<String>,
    pub kind: i16,
}

impl ChangeRow {
    pub fn into_change(self) -> Result<Change, StoreError> {
        let ops = operation(&self.ops)?;
        Ok(Change {
            version: Version(self.version),
            ops,
            user_id: user_id(&self.user_id)?,
            created_at: Timestamp(self.created_at),
            op_id: self.op_id,
            kind: change_kind(self.kind)?,
        })
    }
}

/// How `document_changes.kind` stores a [`ChangeKind`].
pub fn kind_code(kind: ChangeKind) -> i16 {
    match kind {
        ChangeKind::Op => 0,
        ChangeKind::Update => 1,
    }
}

fn change_kind(code: i16) -> Result<ChangeKind, StoreError> {
    match code {
        0 => Ok(ChangeKind::Op),
        1 => Ok(ChangeKind::Update),
        other => Err(corrupt("change kind", &other.to_string())),
    }
}

pub fn into_changes(rows: Vec<ChangeRow>) -> Result<Vec<Change>, StoreError> {
    rows.into_iter().map(ChangeRow::into_change).collect()
}

/// A stored operation, written by the engine in its normal form.
pub fn operation(json: &str) -> Result<Operation, StoreError> {
    serde_json::from_str(json).map_err(|e| corrupt("operation", &format!("{json:.64} ({e})")))
}

/// A whole content kept every `SNAPSHOT_EVERY` versions.
#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = document_snapshots)]
pub struct SnapshotRow {
    pub document_id: String,
    pub version: i64,
    pub content: String,
    pub updated_at: i64,
    pub updated_by: String,
}
