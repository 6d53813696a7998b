//! The SQL implementation of the engine's [`Store`]. Every write is one
//! transaction that starts with a write statement: on SQLite that takes the
//! write lock up front (a read-then-write transaction could fail with
//! "busy" instead of waiting), on PostgreSQL it locks the row that
//! serializes the operation (the document, or the chat's `last_seq`).

use diesel::prelude::*;
use diesel::r2d2::{Pool, PooledConnection};
use huddle_actors::chat::recovery::{self, JOIN_PAGE};
use huddle_actors::ids::{ChatId, DocumentId, Seq, UserId, Version};
use huddle_actors::model::{Chat, Document, Grant, Role, Timestamp};
use huddle_actors::store::{
    Appended, ChatAccess, ChatSnapshot, NewMessage, Page, Store, StoreError, StoreResult,
};

use crate::db::connection::{AnyConnection, Manager};
use crate::db::error::{from_pool, is_unique_violation, TxError};
use crate::db::rows::{self, ChatRow, DocumentRow, MessageRow};
use crate::db::schema::{chat_members, chats, document_access, documents, messages};

pub struct SqlStore {
    pool: Pool<Manager>,
}

type Conn = PooledConnection<Manager>;

impl SqlStore {
    pub fn new(pool: Pool<Manager>) -> SqlStore {
        SqlStore { pool }
    }

    fn conn(&self) -> StoreResult<Conn> {
        self.pool.get().map_err(from_pool)
    }
}

fn now() -> i64 {
    Timestamp::now().millis()
}

fn role_of(c: &mut AnyConnection, doc: &DocumentId, user: &UserId) -> Result<Option<Role>, TxError> {
    let role: Option<String> = document_access::table
        .filter(document_access::document_id.eq(doc.as_str()))
        .filter(document_access::user_id.eq(user.as_str()))
        .select(document_access::role)
        .first(c)
        .optional()?;
    Ok(role.as_deref().map(rows::role).transpose()?)
}

fn load_document(c: &mut AnyConnection, doc: &DocumentId) -> Result<Option<Document>, TxError> {
    let row: Option<DocumentRow> = documents::table
        .find(doc.as_str())
        .select(DocumentRow::as_select())
        .first(c)
        .optional()?;
    Ok(row.map(DocumentRow::into_document).transpose()?)
}

fn load_chat(c: &mut AnyConnection, chat: &ChatId) -> Result<Option<ChatRow>, TxError> {
    Ok(chats::table.find(chat.as_str()).select(ChatRow::as_select()).first(c).optional()?)
}

fn is_member(c: &mut AnyConnection, chat: &ChatId, user: &UserId) -> Result<bool, TxError> {
    let n: i64 = chat_members::table
        .filter(chat_members::chat_id.eq(chat.as_str()))
        .filter(chat_members::user_id.eq(user.as_str()))
        .count()
        .get_result(c)?;
    Ok(n > 0)
}

fn may_read(c: &mut AnyConnection, chat: &ChatRow, user: &UserId) -> Result<bool, TxError> {
    Ok(!chat.private || is_member(c, &ChatId::parse(&chat.id).map_err(|_| StoreError::Internal("corrupt chat id".into()))?, user)?)
}

fn private_chat(chat: &ChatId) -> StoreError {
    StoreError::PermissionDenied(format!("chat {chat} is private"))
}

fn no_document(doc: &DocumentId) -> StoreError {
    StoreError::NotFound(format!("document {doc}"))
}

fn no_chat(chat: &ChatId) -> StoreError {
    StoreError::NotFound(format!("chat {chat}"))
}

impl Store for SqlStore {
    fn create_document(&self, id: &DocumentId, title: &str, content: &str, owner: &UserId) -> StoreResult<Document> {
        let mut c = self.conn()?;
        let at = now();
        let created = c.transaction::<_, TxError, _>(|c| {
            diesel::insert_into(documents::table)
                .values((
                    documents::id.eq(id.as_str()),
                    documents::title.eq(title),
                    documents::content.eq(content),
                    documents::version.eq(0_i64),
                    documents::created_at.eq(at),
                    documents::updated_at.eq(at),
                    documents::updated_by.eq(owner.as_str()),
                ))
                .execute(c)?;
            diesel::insert_into(document_access::table)
                .values((
                    document_access::document_id.eq(id.as_str()),
                    document_access::user_id.eq(owner.as_str()),
                    document_access::role.eq(Role::Owner.as_str()),
                ))
                .execute(c)?;
            Ok(())
        });
        match created {
            Ok(()) => Ok(Document {
                id: id.clone(),
                title: title.to_owned(),
                content: content.to_owned(),
                version: Version(0),
                updated_at: Timestamp(at),
                updated_by: owner.clone(),
            }),
            Err(e) if is_unique_violation(&e) => Err(StoreError::AlreadyExists(format!("document {id}"))),
            Err(e) => Err(e.into()),
        }
    }

    fn open_document(&self, id: &DocumentId, user: &UserId) -> StoreResult<(Document, Role)> {
        let mut c = self.conn()?;
        let c = &mut *c;
        let document = load_document(c, id)?.ok_or_else(|| no_document(id))?;
        let role = role_of(c, id, user)?
            .ok_or_else(|| StoreError::PermissionDenied(format!("you have no access to document {id}")))?;
        Ok((document, role))
    }

    fn document(&self, id: &DocumentId) -> StoreResult<Document> {
        let mut c = self.conn()?;
        Ok(load_document(&mut c, id)?.ok_or_else(|| no_document(id))?)
    }

    fn update_document(&self, id: &DocumentId, user: &UserId, content: &str, version: Version) -> StoreResult<Document> {
        let mut c = self.conn()?;
        let at = now();
        let updated = c.transaction::<_, TxError, _>(|c| {
            // The conditional update is the version check and the lock.
            let changed = diesel::update(
                documents::table
                    .filter(documents::id.eq(id.as_str()))
                    .filter(documents::version.eq(version.0 - 1)),
            )
            .set((
                documents::content.eq(content),
                documents::version.eq(version.0),
                documents::updated_at.eq(at),
                documents::updated_by.eq(user.as_str()),
            ))
            .execute(c)?;
            let current = if changed == 0 {
                Some(load_document(c, id)?.ok_or_else(|| no_document(id))?.version)
            } else {
                None
            };
            // Access is checked before the version: a viewer hears
            // PERMISSION_DENIED whatever version it sent.
            match role_of(c, id, user)? {
                Some(r) if r.can_edit() => {}
                Some(_) => return Err(StoreError::PermissionDenied(format!("viewers may not edit document {id}")).into()),
                None => return Err(StoreError::PermissionDenied(format!("you have no access to document {id}")).into()),
            }
            if let Some(current) = current {
                return Err(StoreError::VersionConflict { document: id.clone(), current }.into());
            }
            Ok(load_document(c, id)?.ok_or_else(|| no_document(id))?)
        });
        Ok(updated?)
    }

    fn share_document(&self, id: &DocumentId, by: Option<&UserId>, user: &UserId, grant: Grant) -> StoreResult<()> {
        let mut c = self.conn()?;
        let shared = c.transaction::<_, TxError, _>(|c| {
            // A no-op write that locks the document row (and, on SQLite, the
            // database) so that the owner count below cannot race.
            let exists = diesel::update(documents::table.find(id.as_str()))
                .set(documents::version.eq(documents::version))
                .execute(c)?;
            if exists == 0 {
                return Err(no_document(id).into());
            }
            if let Some(by) = by {
                match role_of(c, id, by)? {
                    Some(Role::Owner) => {}
                    Some(_) => {
                        return Err(StoreError::PermissionDenied(format!("only owners may share document {id}")).into())
                    }
                    None => {
                        return Err(StoreError::PermissionDenied(format!("you have no access to document {id}")).into())
                    }
                }
            }
            let current = role_of(c, id, user)?;
            let stays_owner = grant == Grant::Role(Role::Owner);
            if current == Some(Role::Owner) && !stays_owner {
                let owners: i64 = document_access::table
                    .filter(document_access::document_id.eq(id.as_str()))
                    .filter(document_access::role.eq(Role::Owner.as_str()))
                    .count()
                    .get_result(c)?;
                if owners <= 1 {
                    return Err(StoreError::Invalid {
                        field: "role",
                        message: format!("{user} is the last owner of document {id}; add another owner first"),
                    }
                    .into());
                }
            }
            let of_user = document_access::table
                .filter(document_access::document_id.eq(id.as_str()))
                .filter(document_access::user_id.eq(user.as_str()));
            match (grant, current) {
                (Grant::Revoke, _) => {
                    diesel::delete(of_user).execute(c)?;
                }
                (Grant::Role(role), Some(_)) => {
                    diesel::update(of_user).set(document_access::role.eq(role.as_str())).execute(c)?;
                }
                (Grant::Role(role), None) => {
                    diesel::insert_into(document_access::table)
                        .values((
                            document_access::document_id.eq(id.as_str()),
                            document_access::user_id.eq(user.as_str()),
                            document_access::role.eq(role.as_str()),
                        ))
                        .execute(c)?;
                }
            }
            Ok(())
        });
        Ok(shared?)
    }

    fn create_chat(&self, id: &ChatId, private: bool, members: &[UserId], created_by: Option<&UserId>) -> StoreResult<Chat> {
        let mut c = self.conn()?;
        let at = now();
        let created = c.transaction::<_, TxError, _>(|c| {
            diesel::insert_into(chats::table)
                .values((
                    chats::id.eq(id.as_str()),
                    chats::private.eq(private),
                    chats::created_at.eq(at),
                    chats::created_by.eq(created_by.map(UserId::as_str)),
                    chats::last_seq.eq(0_i64),
                ))
                .execute(c)?;
            let mut all: Vec<&UserId> = members.iter().collect();
            if let Some(creator) = created_by {
                if !all.contains(&creator) {
                    all.push(creator);
                }
            }
            for user in all {
                diesel::insert_into(chat_members::table)
                    .values((chat_members::chat_id.eq(id.as_str()), chat_members::user_id.eq(user.as_str())))
                    .execute(c)?;
            }
            Ok(())
        });
        match created {
            Ok(()) => Ok(Chat { id: id.clone(), private, created_at: Timestamp(at), created_by: created_by.cloned() }),
            Err(e) if is_unique_violation(&e) => Err(StoreError::AlreadyExists(format!("chat {id}"))),
            Err(e) => Err(e.into()),
        }
    }

    fn open_chat(&self, id: &ChatId, user: &UserId, since: Option<Seq>, max_recovery: u32) -> StoreResult<ChatSnapshot> {
        let mut c = self.conn()?;
        let c = &mut *c;
        let chat = match load_chat(c, id)? {
            Some(chat) => chat,
            None => {
                // Joining an unknown chat creates it, public. Another
                // process may create it at the same moment: that is fine.
                let inserted = diesel::insert_into(chats::table)
                    .values((
                        chats::id.eq(id.as_str()),
                        chats::private.eq(false),
                        chats::created_at.eq(now()),
                        chats::created_by.eq(Some(user.as_str())),
                        chats::last_seq.eq(0_i64),
                    ))
                    .execute(c)
                    .map_err(TxError::from);
                match inserted {
                    Ok(_) => {}
                    Err(e) if is_unique_violation(&e) => {}
                    Err(e) => return Err(e.into()),
                }
                load_chat(c, id)?.ok_or_else(|| no_chat(id))?
            }
        };
        if !may_read(c, &chat, user)? {
            return Err(private_chat(id));
        }
        let last_seq = Seq(chat.last_seq);
        let plan = recovery::plan(since, last_seq, max_recovery);
        let of_chat = messages::table
            .filter(messages::chat_id.eq(id.as_str()))
            .filter(messages::seq.le(last_seq.0))
            .select(MessageRow::as_select());
        let found: Vec<MessageRow> = match plan {
            recovery::Plan::After(after) => of_chat
                .filter(messages::seq.gt(after.0))
                .order(messages::seq.asc())
                .load(c)
                .map_err(TxError::from)?,
            recovery::Plan::Newest => {
                let mut newest: Vec<MessageRow> = of_chat
                    .order(messages::seq.desc())
                    .limit(JOIN_PAGE)
                    .load(c)
                    .map_err(TxError::from)?;
                newest.reverse();
                newest
            }
        };
        Ok(ChatSnapshot {
            chat: chat.to_chat()?,
            last_seq,
            messages: rows::into_messages(found)?,
            recovered: plan.recovered(),
        })
    }

    fn chat_access(&self, id: &ChatId, user: &UserId) -> StoreResult<ChatAccess> {
        let mut c = self.conn()?;
        let c = &mut *c;
        Ok(match load_chat(c, id)? {
            None => ChatAccess::Unknown,
            Some(chat) if may_read(c, &chat, user)? => ChatAccess::Allowed,
            Some(_) => ChatAccess::Denied,
        })
    }

    fn append_message(&self, m: &NewMessage) -> StoreResult<Appended> {
        let mut c = self.conn()?;
        let at = now();
        let appended = c.transaction::<_, TxError, _>(|c| {
            // Taking the next seq first locks the chat's row: appends to one
            // chat are serialized by the database, whichever process runs
            // them, and a rolled-back append leaves no gap.
            let exists = diesel::update(chats::table.find(m.chat_id.as_str()))
                .set(chats::last_seq.eq(chats::last_seq + 1))
                .execute(c)?;
            if exists == 0 {
                return Err(no_chat(&m.chat_id).into());
            }
            let chat = load_chat(c, &m.chat_id)?.ok_or_else(|| no_chat(&m.chat_id))?;
            if m.check_access && !may_read(c, &chat, &m.user_id)? {
                return Err(private_chat(&m.chat_id).into());
            }
            if let Some(cid) = &m.client_msg_id {
                let existing: Option<MessageRow> = messages::table
                    .filter(messages::chat_id.eq(m.chat_id.as_str()))
                    .filter(messages::user_id.eq(m.user_id.as_str()))
                    .filter(messages::client_msg_id.eq(cid))
                    .select(MessageRow::as_select())
                    .first(c)
                    .optional()?;
                if let Some(row) = existing {
                    return Err(TxError::Existing(Box::new(row.into_message()?)));
                }
            }
            let row = MessageRow {
                chat_id: m.chat_id.as_str().to_owned(),
                seq: chat.last_seq,
                id: uuid::Uuid::new_v4().simple().to_string(),
                user_id: m.user_id.as_str().to_owned(),
                content: m.content.clone(),
                created_at: at,
                client_msg_id: m.client_msg_id.clone(),
            };
            diesel::insert_into(messages::table).values(&row).execute(c)?;
            Ok(row.into_message()?)
        });
        match appended {
            Ok(message) => Ok(Appended { message, fresh: true }),
            Err(TxError::Existing(message)) => Ok(Appended { message: *message, fresh: false }),
            Err(e) => Err(e.into()),
        }
    }

    fn history(&self, id: &ChatId, reader: Option<&UserId>, before: Option<Seq>, limit: i64) -> StoreResult<Page> {
        let mut c = self.conn()?;
        let c = &mut *c;
        let chat = load_chat(c, id)?.ok_or_else(|| no_chat(id))?;
        if let Some(user) = reader {
            if !may_read(c, &chat, user)? {
                return Err(private_chat(id));
            }
        }
        let mut query = messages::table
            .filter(messages::chat_id.eq(id.as_str()))
            .select(MessageRow::as_select())
            .order(messages::seq.desc())
            .limit(limit + 1)
            .into_boxed();
        if let Some(before) = before {
            query = query.filter(messages::seq.lt(before.0));
        }
        let mut found: Vec<MessageRow> = query.load(c).map_err(TxError::from)?;
        let has_more = found.len() as i64 > limit;
        found.truncate(limit as usize);
        found.reverse();
        Ok(Page { messages: rows::into_messages(found)?, has_more })
    }

    fn ping(&self) -> StoreResult<()> {
        use diesel::connection::SimpleConnection;
        let mut c = self.conn()?;
        c.batch_execute("SELECT 1").map_err(|e| TxError::from(e).into())
    }
}
