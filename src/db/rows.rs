//! Rows as diesel reads them, and their conversion into the engine's
//! records. A row that does not convert means a corrupt database.

use diesel::prelude::*;
use huddle_actors::ids::{ChatId, DocumentId, Seq, UserId, Version};
use huddle_actors::model::{Chat, Document, Message, Role, Timestamp};
use huddle_actors::store::StoreError;

use crate::db::schema::{chats, documents, messages};

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
    pub content: String,
    pub version: i64,
    pub updated_at: i64,
    pub updated_by: String,
}

impl DocumentRow {
    pub fn into_document(self) -> Result<Document, StoreError> {
        Ok(Document {
            id: DocumentId::parse(&self.id).map_err(|_| corrupt("document id", &self.id))?,
            updated_by: user_id(&self.updated_by)?,
            title: self.title,
            content: self.content,
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

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = messages)]
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
