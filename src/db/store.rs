//! The SQL implementation of the engine's [`Store`]. Every write is one
//! transaction that starts with a write statement: on SQLite that takes the
//! write lock up front (a read-then-write transaction could fail with
//! "busy" instead of waiting), on PostgreSQL it locks the row that
//! serializes the operation (the document, or the chat's `last_seq`).

use diesel::prelude::*;
use diesel::r2d2::{Pool, PooledConnection};
use huddle_actors::chat::recovery::{self, JOIN_PAGE};
use huddle_actors::ids::{ChatId, DocumentId, Seq, UserId, Version};
use huddle_actors::model::{Change, Chat, Document, Grant, Role, Timestamp};
use std::collections::HashMap;
use std::time::Duration;

use huddle_actors::model::Message;
use huddle_actors::store::{
    Appended, ChangePage, ChangeSet, ChatAccess, ChatSnapshot, CommitOutcome, DocumentPosition, NewChat, NewMessage, Page, Store,
    StoreError, StoreResult, Timeline,
};

use crate::db::checkout;
use crate::db::connection::{AnyConnection, Manager};
use crate::db::error::{is_unique_violation, TxError};
use crate::db::health::Health;
use crate::db::history;
use crate::db::pg_batch;
use crate::db::rows::{self, ChatRow, DocumentRow, MessageRow};
use crate::db::schema::{chat_members, chats, document_access, documents, health_probe, messages};

pub struct SqlStore {
    pool: Pool<Manager>,
    writers: Writers,
    /// Whether writes succeed (see `db::health`); every operation reports
    /// to it.
    health: Health,
}

/// The connections that batched writes use, one per kind of batch (see
/// [`crate::db::writer`]).
pub struct Writers {
    pub messages: Pool<Manager>,
    pub documents: Pool<Manager>,
}

impl Writers {
    /// Batches use the shared pool (tests).
    pub fn shared(pool: &Pool<Manager>) -> Writers {
        Writers { messages: pool.clone(), documents: pool.clone() }
    }
}

type Conn = PooledConnection<Manager>;

/// Most readiness probes (each a commit) per second, however often `/ready`
/// is asked. Readiness checkers ask every few seconds; a condition that
/// ends is also seen at the next successful write.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// Chats named in one query of [`Store::chat_positions`]: SQLite allows
/// 32,766 bound values per statement; PostgreSQL binds the list as one
/// array, but a node with many thousand open chats still gets several
/// short queries rather than one long one.
const POSITIONS_PER_QUERY: usize = 1000;

impl SqlStore {
    pub fn new(pool: Pool<Manager>, writers: Writers) -> SqlStore {
        SqlStore { pool, writers, health: Health::default() }
    }

    fn conn(&self) -> StoreResult<Conn> {
        checkout(&self.pool, &self.health)
    }

    /// Runs a read: a condition of the machine it meets is noted.
    fn read<T>(&self, f: impl FnOnce() -> StoreResult<T>) -> StoreResult<T> {
        self.health.observe(f(), false)
    }

    /// Runs a write: a condition it meets is noted, and its success ends
    /// one.
    fn write<T>(&self, f: impl FnOnce() -> StoreResult<T>) -> StoreResult<T> {
        self.health.observe(f(), true)
    }
}

/// `conn.transaction(f)` (a SAVEPOINT when nested), keeping the cause.
/// When SQLite has already ended a transaction itself (it may on
/// SQLITE_FULL or SQLITE_IOERR), diesel's ROLLBACK fails ("no transaction
/// is active", or "outside of a transaction") and diesel returns that
/// instead of the error that caused it: a condition of the machine must
/// not become an `INTERNAL_ERROR` that way.
pub(super) fn transaction<T>(c: &mut AnyConnection, f: impl FnOnce(&mut AnyConnection) -> Result<T, TxError>) -> Result<T, TxError> {
    let mut cause: Option<(&'static str, String)> = None;
    let out = c.transaction::<_, TxError, _>(|c| f(c).inspect_err(|e| cause = e.condition().map(|r| (r, e.to_string()))));
    match (out, cause) {
        (Err(e), Some((reason, cause))) if e.condition().is_none() => {
            Err(TxError::Refused(StoreError::Unavailable { reason, cause: format!("{cause} (then: {e})") }))
        }
        (out, _) => out,
    }
}

pub(super) fn now() -> i64 {
    Timestamp::now().millis()
}

// Lookups by a unique key use `get_result`, not `first`: `first` adds
// `LIMIT ?`, and SQLite re-prepared such a statement at every execution
// (seen in the rooms profile: one parse per chat per batch).

pub(super) fn role_of(c: &mut AnyConnection, doc: &DocumentId, user: &UserId) -> Result<Option<Role>, TxError> {
    let role: Option<String> = on_backend!(c, |n| document_access::table
        .filter(document_access::document_id.eq(doc.as_str()))
        .filter(document_access::user_id.eq(user.as_str()))
        .select(document_access::role)
        .get_result(n)
        .optional())?;
    Ok(role.as_deref().map(rows::role).transpose()?)
}

/// The user's role: `NotFound` without the document, `PermissionDenied`
/// without access. The outer `Result` fails the transaction.
pub(super) fn access(c: &mut AnyConnection, doc: &DocumentId, user: &UserId) -> Result<StoreResult<Role>, TxError> {
    if let Some(role) = role_of(c, doc, user)? {
        return Ok(Ok(role));
    }
    let exists: Option<i64> =
        on_backend!(c, |n| documents::table.find(doc.as_str()).select(documents::version).get_result(n).optional())?;
    Ok(Err(match exists {
        Some(_) => StoreError::PermissionDenied(format!("you have no access to document {doc}")),
        None => no_document(doc),
    }))
}

/// The document with its current content, which its row does not hold.
pub(super) fn load_document(c: &mut AnyConnection, doc: &DocumentId) -> Result<Option<Document>, TxError> {
    let row: Option<DocumentRow> = on_backend!(c, |n| documents::table
        .find(doc.as_str())
        .select(DocumentRow::as_select())
        .get_result(n)
        .optional())?;
    let Some(row) = row else { return Ok(None) };
    let content = history::content_at(c, doc, Version(row.version))?;
    Ok(Some(row.into_document(content)?))
}

fn load_chat(c: &mut AnyConnection, chat: &ChatId) -> Result<Option<ChatRow>, TxError> {
    Ok(on_backend!(c, |n| chats::table.find(chat.as_str()).select(ChatRow::as_select()).get_result(n).optional())?)
}

fn is_member(c: &mut AnyConnection, chat: &ChatId, user: &UserId) -> Result<bool, TxError> {
    let n: i64 = on_backend!(c, |n| chat_members::table
        .filter(chat_members::chat_id.eq(chat.as_str()))
        .filter(chat_members::user_id.eq(user.as_str()))
        .count()
        .get_result(n))?;
    Ok(n > 0)
}

pub(super) fn may_read(c: &mut AnyConnection, chat: &ChatRow, user: &UserId) -> Result<bool, TxError> {
    Ok(!chat.private || is_member(c, &ChatId::parse(&chat.id).map_err(|_| StoreError::Internal("corrupt chat id".into()))?, user)?)
}

pub(super) fn private_chat(chat: &ChatId) -> StoreError {
    StoreError::PermissionDenied(format!("chat {chat} is private"))
}

pub(super) fn no_document(doc: &DocumentId) -> StoreError {
    StoreError::NotFound(format!("document {doc}"))
}

pub(super) fn no_chat(chat: &ChatId) -> StoreError {
    StoreError::NotFound(format!("chat {chat}"))
}

/// Locks a chat's row for the rest of the transaction (the first write of
/// a batch also takes SQLite's lock) and reads it; `None` if it does not
/// exist. Appends to one chat are serialized here, whichever engine process
/// runs them.
fn lock_chat(c: &mut AnyConnection, chat: &ChatId) -> Result<Option<ChatRow>, TxError> {
    let exists =
        on_backend!(c, |n| diesel::update(chats::table.find(chat.as_str())).set(chats::last_seq.eq(chats::last_seq)).execute(n))?;
    if exists == 0 {
        return Ok(None);
    }
    load_chat(c, chat)
}

/// Locks the rows of every chat a batch writes to, in one order (sorted
/// by id): two nodes batching appends to chats {A, B} and {B, A} would
/// otherwise each hold one lock and wait for the other's, which PostgreSQL
/// breaks only after `deadlock_timeout` by failing one transaction. On
/// PostgreSQL one `SELECT ... ORDER BY id FOR UPDATE` takes them all in
/// the order it returns them; SQLite locks the whole database at the first
/// write, so there the order cannot matter. Chats that do not exist are
/// absent from the answer.
fn lock_chats<'a>(c: &mut AnyConnection, ids: &[&'a ChatId]) -> Result<HashMap<&'a ChatId, ChatRow>, TxError> {
    let mut locked = HashMap::with_capacity(ids.len());
    match c {
        AnyConnection::Postgresql(pg) => {
            let names: Vec<&str> = ids.iter().map(|id| id.as_str()).collect();
            let rows: Vec<ChatRow> = chats::table
                .filter(chats::id.eq_any(&names))
                .order(chats::id.asc())
                .select(ChatRow::as_select())
                .for_update()
                .load(pg)?;
            for row in rows {
                if let Some(id) = ids.iter().find(|id| id.as_str() == row.id) {
                    locked.insert(*id, row);
                }
            }
        }
        AnyConnection::Sqlite(_) => {
            for id in ids {
                if let Some(row) = lock_chat(c, id)? {
                    locked.insert(*id, row);
                }
            }
        }
    }
    Ok(locked)
}

/// Grants or revokes a role, in the caller's transaction.
fn share(c: &mut AnyConnection, id: &DocumentId, by: Option<&UserId>, user: &UserId, grant: Grant) -> Result<(), TxError> {
    // Locks the document row (and, on SQLite, the database) so that the
    // owner count below cannot race, and counts the change of its access
    // (read by cluster mode's periodic check). A refused share rolls back
    // with the rest.
    let exists = diesel::update(documents::table.find(id.as_str()))
        .set(documents::access_version.eq(documents::access_version + 1))
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
}

/// How the items of a batch share its transaction.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Items {
    /// Plainly: an item's database error fails the transaction. The hot
    /// path: no statement beyond the items' own.
    Together,
    /// Each in a savepoint: an item's database error rolls back that item
    /// only and is its outcome; the others commit. A savepoint costs two
    /// statements per item (SAVEPOINT, RELEASE), which on PostgreSQL are two
    /// round trips each, so this only runs again a batch that failed
    /// `Together` (see [`isolated`]).
    Apart,
}

impl Items {
    /// Runs one item's statements. `Ok(Err(_))` is a refusal by a rule of
    /// the store (nothing was written); `Err(_)` fails the transaction.
    pub(super) fn run<T>(
        self,
        c: &mut AnyConnection,
        item: impl FnOnce(&mut AnyConnection) -> Result<StoreResult<T>, TxError>,
    ) -> Result<StoreResult<T>, TxError> {
        match self {
            Items::Together => item(c),
            Items::Apart => match transaction(c, item) {
                // A condition of the machine fails the whole batch.
                Err(e) if e.condition().is_some() => Err(e),
                Err(e) => Ok(Err(e.into())),
                Ok(outcome) => Ok(outcome),
            },
        }
    }
}

/// Runs a batch transaction with its items `Together`; if an item failed
/// it (something the database refused about that item, not a condition of
/// the machine), runs it once more with the items `Apart`: the item is
/// reported alone and everyone else's writes commit. One client's input
/// never fails another's write; the cost of isolation is paid only by a
/// batch that needs it. Nothing of the failed attempt was stored (it rolled
/// back whole), so seqs stay gapless.
pub(super) fn isolated<T>(
    mut run: impl FnMut(Items) -> Result<Vec<StoreResult<T>>, TxError>,
) -> StoreResult<Vec<StoreResult<T>>> {
    match run(Items::Together) {
        Err(e) if e.condition().is_none() => {
            log::debug!("a batch failed on one item ({e}); storing its items one savepoint each");
            Ok(run(Items::Apart)?)
        }
        out => Ok(out?),
    }
}

/// One message of a batch, into `chat` (locked by the caller). Changes
/// nothing in memory: the caller advances `last_seq` once the item is in.
fn append_one(
    c: &mut AnyConnection,
    m: &NewMessage,
    chat: &ChatRow,
    fresh_ids: &HashMap<(&ChatId, &UserId, &str), Message>,
    at: i64,
) -> Result<StoreResult<Appended>, TxError> {
    if m.check_access && !may_read(c, chat, &m.user_id)? {
        return Ok(Err(private_chat(&m.chat_id)));
    }
    if let Some(cid) = m.client_msg_id.as_deref() {
        if let Some(earlier) = fresh_ids.get(&(&m.chat_id, &m.user_id, cid)) {
            return Ok(Ok(Appended { message: earlier.clone(), fresh: false }));
        }
        let existing: Option<MessageRow> = on_backend!(c, |n| messages::table
            .filter(messages::chat_id.eq(m.chat_id.as_str()))
            .filter(messages::user_id.eq(m.user_id.as_str()))
            .filter(messages::client_msg_id.eq(cid))
            .select(MessageRow::as_select())
            .get_result(n)
            .optional())?;
        if let Some(row) = existing {
            return Ok(Ok(Appended { message: row.into_message()?, fresh: false }));
        }
    }
    let row = MessageRow::new(m, chat.last_seq + 1, at);
    on_backend!(c, |n| diesel::insert_into(messages::table).values(&row).execute(n))?;
    Ok(Ok(Appended { message: row.into_message()?, fresh: true }))
}

fn append_batch(c: &mut AnyConnection, batch: &[NewMessage], at: i64, items: Items) -> Result<Vec<StoreResult<Appended>>, TxError> {
    // Every chat first, in one order; outside any item's savepoint, so the
    // locks last for the batch. Then the items, in the order they came.
    let mut ids: Vec<&ChatId> = batch.iter().map(|m| &m.chat_id).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut chats = lock_chats(c, &ids)?;
    let locked_at: HashMap<&ChatId, i64> = chats.iter().map(|(id, chat)| (*id, chat.last_seq)).collect();
    let out = if items == Items::Together && matches!(c, AnyConnection::Postgresql(_)) {
        pg_batch::append(c, batch, &mut chats, at)?
    } else {
        // (chat, user, client_msg_id) -> message stored earlier in this batch.
        let mut fresh_ids: HashMap<(&ChatId, &UserId, &str), Message> = HashMap::new();
        let mut out = Vec::with_capacity(batch.len());
        for m in batch {
            let Some(chat) = chats.get_mut(&m.chat_id) else {
                out.push(Err(no_chat(&m.chat_id)));
                continue;
            };
            let outcome = items.run(c, |c| append_one(c, m, chat, &fresh_ids, at))?;
            if let Ok(Appended { message, fresh: true }) = &outcome {
                // Only a stored item takes a seq.
                chat.last_seq = message.seq.0;
                if let Some(cid) = m.client_msg_id.as_deref() {
                    fresh_ids.insert((&m.chat_id, &m.user_id, cid), message.clone());
                }
            }
            out.push(outcome);
        }
        out
    };
    let moved: Vec<(&str, i64)> =
        chats.iter().filter(|(id, chat)| locked_at.get(*id) != Some(&chat.last_seq)).map(|(id, chat)| (id.as_str(), chat.last_seq)).collect();
    match c {
        AnyConnection::Postgresql(n) => pg_batch::set_last_seqs(n, &moved)?,
        AnyConnection::Sqlite(n) => {
            for (id, last_seq) in moved {
                diesel::update(chats::table.find(id)).set(chats::last_seq.eq(last_seq)).execute(n)?;
            }
        }
    }
    Ok(out)
}

impl Store for SqlStore {
    fn create_document(&self, id: &DocumentId, title: &str, content: &str, owner: &UserId) -> StoreResult<Document> {
        self.write(|| {
            let mut c = self.conn()?;
            let at = now();
            let created = transaction(&mut c, |c| {
                diesel::insert_into(documents::table)
                    .values((
                        documents::id.eq(id.as_str()),
                        documents::title.eq(title),
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
                // Version 0 is where its history starts, and where its
                // content is kept (the row holds none).
                history::insert_snapshot(c, id, Version(0), content, at, owner)?;
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
        })
    }

    fn document_role(&self, id: &DocumentId, user: &UserId) -> StoreResult<Role> {
        self.read(|| {
            let mut c = self.conn()?;
            access(&mut c, id, user)?
        })
    }

    fn document(&self, id: &DocumentId) -> StoreResult<Document> {
        self.read(|| {
            let mut c = self.conn()?;
            load_document(&mut c, id)?.ok_or_else(|| no_document(id))
        })
    }

    fn timeline(&self, id: &DocumentId, max_changes: usize, max_bytes: usize) -> StoreResult<Timeline> {
        self.read(|| history::timeline(&mut *self.conn()?, id, max_changes, max_bytes))
    }

    fn document_history(&self, id: &DocumentId, reader: Option<&UserId>, after: Version, limit: i64) -> StoreResult<ChangePage> {
        self.read(|| history::page(&mut *self.conn()?, id, reader, after, limit))
    }

    fn document_snapshot(&self, id: &DocumentId, reader: Option<&UserId>, version: Version) -> StoreResult<Document> {
        self.read(|| history::snapshot(&mut *self.conn()?, id, reader, version))
    }

    fn find_change(&self, id: &DocumentId, user: &UserId, op_id: &str, after: Version, within: i64) -> StoreResult<Option<Change>> {
        self.read(|| history::find(&mut *self.conn()?, id, user, op_id, after, within))
    }

    fn commit_changes(&self, batch: &[ChangeSet]) -> StoreResult<Vec<StoreResult<CommitOutcome>>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        self.write(|| {
            let mut c = checkout(&self.writers.documents, &self.health)?;
            let at = now();
            isolated(|items| transaction(&mut c, |c| history::commit(c, batch, at, items)))
        })
    }

    fn share_document(&self, id: &DocumentId, by: Option<&UserId>, user: &UserId, grant: Grant) -> StoreResult<()> {
        self.write(|| {
            let mut c = self.conn()?;
            Ok(transaction(&mut c, |c| share(c, id, by, user, grant))?)
        })
    }

    fn create_chat(&self, id: &ChatId, private: bool, members: &[UserId], created_by: Option<&UserId>) -> StoreResult<Chat> {
        self.write(|| {
            let mut c = self.conn()?;
            let at = now();
            let created = transaction(&mut c, |c| {
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
        })
    }

    fn open_chat(&self, id: &ChatId, user: &UserId, since: Option<Seq>, max_recovery: u32) -> StoreResult<Option<ChatSnapshot>> {
        self.read(|| {
            let mut c = self.conn()?;
            let c = &mut *c;
            let Some(chat) = load_chat(c, id)? else { return Ok(None) };
            if !may_read(c, &chat, user)? {
                return Err(private_chat(id));
            }
            let last_seq = Seq(chat.last_seq);
            let plan = recovery::plan(since, last_seq, max_recovery);
            // The join's messages are a seq range either way: after since_seq,
            // or (seq being gapless) the newest JOIN_PAGE, with no `LIMIT ?`,
            // which SQLite re-prepares at every execution.
            let after = match plan {
                recovery::Plan::After(after) => after.0,
                recovery::Plan::Newest => last_seq.0 - JOIN_PAGE,
            };
            let found: Vec<MessageRow> = on_backend!(c, |n| messages::table
                .filter(messages::chat_id.eq(id.as_str()))
                .filter(messages::seq.gt(after))
                .filter(messages::seq.le(last_seq.0))
                .select(MessageRow::as_select())
                .order(messages::seq.asc())
                .load(n))
            .map_err(TxError::from)?;
            Ok(Some(ChatSnapshot {
                chat: chat.to_chat()?,
                last_seq,
                messages: rows::into_messages(found)?,
                recovered: plan.recovered(),
            }))
        })
    }

    fn create_public_chats(&self, new: &[NewChat]) -> StoreResult<Vec<StoreResult<()>>> {
        self.write(|| {
            let mut c = self.conn()?;
            let at = now();
            // In id order: two engine processes creating {A, B} and {B, A}
            // at once would each wait for the other's uncommitted row, a
            // deadlock PostgreSQL breaks by failing one of them.
            let mut sorted: Vec<&NewChat> = new.iter().collect();
            sorted.sort_by(|a, b| a.id.cmp(&b.id));
            sorted.dedup_by(|a, b| a.id == b.id);
            let rows: Vec<_> = sorted
                .iter()
                .map(|chat| {
                    (
                        chats::id.eq(chat.id.as_str()),
                        chats::private.eq(false),
                        chats::created_at.eq(at),
                        chats::created_by.eq(Some(chat.created_by.as_str())),
                        chats::last_seq.eq(0_i64),
                    )
                })
                .collect();
            transaction(&mut c, |c| {
                match c {
                    // One statement, its rows in that order.
                    AnyConnection::Postgresql(n) => {
                        diesel::insert_into(chats::table).values(&rows).on_conflict_do_nothing().execute(n)?;
                    }
                    AnyConnection::Sqlite(n) => {
                        for row in &rows {
                            diesel::insert_into(chats::table).values(row.clone()).on_conflict_do_nothing().execute(n)?;
                        }
                    }
                }
                Ok(())
            })?;
            Ok(new.iter().map(|_| Ok(())).collect())
        })
    }

    fn chat_access(&self, id: &ChatId, user: &UserId) -> StoreResult<ChatAccess> {
        self.read(|| {
            let mut c = self.conn()?;
            let c = &mut *c;
            Ok(match load_chat(c, id)? {
                None => ChatAccess::Unknown,
                Some(chat) if may_read(c, &chat, user)? => ChatAccess::Allowed,
                Some(_) => ChatAccess::Denied,
            })
        })
    }

    fn chat_last_seq(&self, id: &ChatId) -> StoreResult<Option<Seq>> {
        self.read(|| {
            let mut c = self.conn()?;
            Ok(load_chat(&mut c, id)?.map(|chat| Seq(chat.last_seq)))
        })
    }

    fn chat_positions(&self, ids: &[ChatId]) -> StoreResult<Vec<(ChatId, Seq)>> {
        self.read(|| {
            let mut c = self.conn()?;
            let mut out = Vec::with_capacity(ids.len());
            for chunk in ids.chunks(POSITIONS_PER_QUERY) {
                let names: Vec<&str> = chunk.iter().map(ChatId::as_str).collect();
                let rows: Vec<(String, i64)> = chats::table
                    .filter(chats::id.eq_any(&names))
                    .select((chats::id, chats::last_seq))
                    .load(&mut *c)
                    .map_err(TxError::from)?;
                out.extend(rows.into_iter().filter_map(|(id, seq)| Some((ChatId::parse(&id).ok()?, Seq(seq)))));
            }
            Ok(out)
        })
    }

    fn document_positions(&self, ids: &[DocumentId]) -> StoreResult<Vec<(DocumentId, DocumentPosition)>> {
        self.read(|| {
            let mut c = self.conn()?;
            let mut out = Vec::with_capacity(ids.len());
            for chunk in ids.chunks(POSITIONS_PER_QUERY) {
                let names: Vec<&str> = chunk.iter().map(DocumentId::as_str).collect();
                let rows: Vec<(String, i64, i64)> = documents::table
                    .filter(documents::id.eq_any(&names))
                    .select((documents::id, documents::version, documents::access_version))
                    .load(&mut *c)
                    .map_err(TxError::from)?;
                out.extend(rows.into_iter().filter_map(|(id, version, access)| {
                    Some((DocumentId::parse(&id).ok()?, DocumentPosition { version: Version(version), access }))
                }));
            }
            Ok(out)
        })
    }

    fn document_roles(&self, id: &DocumentId, users: &[UserId]) -> StoreResult<(i64, Vec<(UserId, Role)>)> {
        self.read(|| {
            let mut c = self.conn()?;
            // The counter first: roles read after it are at least as new,
            // so a change between the two reads is seen again next time.
            let version: i64 = documents::table
                .find(id.as_str())
                .select(documents::access_version)
                .get_result(&mut *c)
                .optional()
                .map_err(TxError::from)?
                .ok_or_else(|| no_document(id))?;
            let mut roles = Vec::with_capacity(users.len());
            for chunk in users.chunks(POSITIONS_PER_QUERY) {
                let names: Vec<&str> = chunk.iter().map(UserId::as_str).collect();
                let rows: Vec<(String, String)> = document_access::table
                    .filter(document_access::document_id.eq(id.as_str()))
                    .filter(document_access::user_id.eq_any(&names))
                    .select((document_access::user_id, document_access::role))
                    .load(&mut *c)
                    .map_err(TxError::from)?;
                roles.extend(rows.into_iter().filter_map(|(u, r)| Some((UserId::parse(&u).ok()?, Role::parse(&r)?))));
            }
            Ok((version, roles))
        })
    }

    fn messages_after(&self, id: &ChatId, after: Seq, limit: i64) -> StoreResult<Vec<Message>> {
        self.read(|| {
            let mut c = self.conn()?;
            let found: Vec<MessageRow> = on_backend!(&mut *c, |n| messages::table
                .filter(messages::chat_id.eq(id.as_str()))
                .filter(messages::seq.gt(after.0))
                .order(messages::seq.asc())
                .limit(limit)
                .select(MessageRow::as_select())
                .load(n))
            .map_err(TxError::from)?;
            rows::into_messages(found)
        })
    }

    fn append_messages(&self, batch: &[NewMessage]) -> StoreResult<Vec<StoreResult<Appended>>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        self.write(|| {
            let mut c = checkout(&self.writers.messages, &self.health)?;
            let at = now();
            isolated(|items| transaction(&mut c, |c| append_batch(c, batch, at, items)))
        })
    }

    fn history(&self, id: &ChatId, reader: Option<&UserId>, before: Option<Seq>, limit: i64) -> StoreResult<Page> {
        self.read(|| {
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
        })
    }

    /// A write, not a `SELECT 1`: a full disk still answers reads. On the
    /// messages writer's connection, the one the hot writes use. At most
    /// one probe per [`PROBE_INTERVAL`] (`/ready` needs no authentication,
    /// and each probe is a commit); in between, the answer is the last
    /// known condition, which real writes keep current.
    fn ping(&self) -> StoreResult<()> {
        if !self.health.probe_due(PROBE_INTERVAL) {
            return match self.health.condition() {
                None => Ok(()),
                Some(reason) => Err(StoreError::Unavailable { reason, cause: "as of the last write".into() }),
            };
        }
        self.write(|| {
            let mut c = checkout(&self.writers.messages, &self.health)?;
            transaction(&mut c, |c| {
                diesel::update(health_probe::table).set(health_probe::probed_at.eq(now())).execute(c)?;
                Ok(())
            })?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::connection::{SqliteSync, Target};
    use huddle_actors::model::ChangeKind;
    use huddle_actors::store::{NewChange, Refusal, SNAPSHOT_EVERY};
    use crate::db::schema::{document_changes, document_snapshots};

    fn store() -> (SqlStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let target = Target::Sqlite(dir.path().join("t.db").display().to_string());
        let pool = crate::db::open(&target, SqliteSync::Normal, 2).unwrap();
        let writers = Writers::shared(&pool);
        (SqlStore::new(pool, writers), dir)
    }

    fn msg(chat: &str, user: &str, cid: Option<&str>, check_access: bool) -> NewMessage {
        NewMessage {
            id: uuid::Uuid::new_v4().simple().to_string(),
            chat_id: ChatId::parse(chat).unwrap(),
            user_id: UserId::parse(user).unwrap(),
            content: format!("from {user}"),
            client_msg_id: cid.map(str::to_owned),
            check_access,
        }
    }

    #[test]
    fn a_batch_of_appends_succeeds_and_fails_item_by_item() {
        let (s, _dir) = store();
        let a = ChatId::parse("a").unwrap();
        let p = ChatId::parse("p").unwrap();
        s.create_chat(&a, false, &[], None).unwrap();
        s.create_chat(&p, true, &[UserId::parse("member").unwrap()], None).unwrap();
        let out = s
            .append_messages(&[
                msg("a", "u", Some("x"), true),
                msg("missing", "u", None, true),
                msg("a", "u", Some("x"), true),
                msg("p", "stranger", None, true),
                msg("p", "member", None, true),
                msg("a", "v", Some("x"), true),
            ])
            .unwrap();
        let first = out[0].as_ref().unwrap();
        assert_eq!((first.message.seq, first.fresh), (Seq(1), true));
        assert!(matches!(out[1], Err(StoreError::NotFound(_))));
        let dup = out[2].as_ref().unwrap();
        assert_eq!((dup.fresh, &dup.message), (false, &first.message));
        assert!(matches!(out[3], Err(StoreError::PermissionDenied(_))));
        assert_eq!(out[4].as_ref().unwrap().message.seq, Seq(1));
        assert_eq!(out[5].as_ref().unwrap().message.seq, Seq(2));
        // A later batch continues the seq and still knows the idempotency key.
        let out = s.append_messages(&[msg("a", "u", Some("x"), true), msg("a", "u", None, true)]).unwrap();
        assert!(!out[0].as_ref().unwrap().fresh);
        assert_eq!(out[1].as_ref().unwrap().message.seq, Seq(3));
        let page = s.history(&a, None, None, 10).unwrap();
        assert_eq!(page.messages.iter().map(|m| m.seq.0).collect::<Vec<_>>(), vec![1, 2, 3]);
    }

    /// A refusal by the database itself, about one item (on PostgreSQL a
    /// NUL in a text is one; the edge refuses those before they get here).
    fn refuse_poison(s: &SqlStore) {
        use diesel::connection::SimpleConnection;
        s.pool
            .get()
            .unwrap()
            .batch_execute(
                "CREATE TRIGGER poison_message BEFORE INSERT ON messages WHEN NEW.content = 'poison' \
                 BEGIN SELECT RAISE(ABORT, 'poison refused'); END; \
                 CREATE TRIGGER poison_document BEFORE INSERT ON document_changes WHEN NEW.ops LIKE '%poison%' \
                 BEGIN SELECT RAISE(ABORT, 'poison refused'); END;",
            )
            .unwrap();
    }

    #[test]
    fn an_item_the_database_refuses_fails_alone_and_takes_no_seq() {
        let (s, _dir) = store();
        refuse_poison(&s);
        let (a, b) = (ChatId::parse("a").unwrap(), ChatId::parse("b").unwrap());
        s.create_chat(&a, false, &[], None).unwrap();
        s.create_chat(&b, false, &[], None).unwrap();
        let poison = NewMessage { content: "poison".into(), ..msg("a", "x", Some("p"), false) };
        let out = s
            .append_messages(&[msg("a", "u", None, false), poison, msg("b", "v", None, false), msg("a", "w", Some("w"), false)])
            .unwrap();
        assert!(matches!(&out[1], Err(StoreError::Internal(why)) if why.contains("poison refused")), "{:?}", out[1]);
        let seqs: Vec<_> = [0, 2, 3].iter().map(|i| out[*i].as_ref().unwrap().message.seq.0).collect();
        assert_eq!(seqs, vec![1, 1, 2]);
        assert_eq!(s.chat_last_seq(&a).unwrap(), Some(Seq(2)));
        let page = s.history(&a, None, None, 10).unwrap();
        assert_eq!(page.messages.iter().map(|m| (m.seq.0, m.user_id.as_str())).collect::<Vec<_>>(), vec![(1, "u"), (2, "w")]);
        // Not a condition of the machine: readiness is unaffected.
        assert_eq!(s.health.condition(), None);

        // A change set the database refuses fails alone, and leaves no
        // change row behind.
        let owner = UserId::parse("o").unwrap();
        let (d, e) = (DocumentId::parse("d").unwrap(), DocumentId::parse("e").unwrap());
        s.create_document(&d, "", "", &owner).unwrap();
        s.create_document(&e, "", "", &owner).unwrap();
        let out = s
            .commit_changes(&[
                change_set(&d, 0, &[(&owner, "[\"poison\"]", None)]),
                change_set(&e, 0, &[(&owner, "[\"fine\"]", None)]),
            ])
            .unwrap();
        assert!(matches!(out[0], Err(StoreError::Internal(_))), "{:?}", out[0]);
        assert!(matches!(out[1], Ok(CommitOutcome::Stored { .. })), "{:?}", out[1]);
        assert_eq!(s.document(&d).unwrap().version, Version(0));
        assert!(s.document_history(&d, None, Version(0), 10).unwrap().changes.is_empty());
        assert_eq!(s.document(&e).unwrap().content, "fine");
    }

    /// A change set of `(author, ops JSON, op_id)` on `base`.
    fn change_set(id: &DocumentId, base: i64, changes: &[(&UserId, &str, Option<&str>)]) -> ChangeSet {
        ChangeSet {
            document_id: id.clone(),
            base: Version(base),
            changes: changes
                .iter()
                .map(|(user, ops, op_id)| NewChange {
                    user_id: (*user).clone(),
                    ops: (*ops).to_owned(),
                    op_id: op_id.map(str::to_owned),
                    kind: ChangeKind::Op,
                })
                .collect(),
            snapshots: Vec::new(),
            rights_at: None,
        }
    }

    /// A commit that knows the count of the access list its authors were
    /// allowed under reads no roles, and one whose count is stale reads
    /// them again: a revocation since is a refusal, anything else commits.
    #[test]
    fn known_rights_hold_until_the_access_list_changes() {
        let (s, _dir) = store();
        let (owner, editor, viewer) = (UserId::parse("o").unwrap(), UserId::parse("e").unwrap(), UserId::parse("v").unwrap());
        let d = DocumentId::parse("d").unwrap();
        s.create_document(&d, "", "", &owner).unwrap();
        s.share_document(&d, Some(&owner), &editor, Grant::Role(Role::Editor)).unwrap();
        let known = |set: ChangeSet, at: Option<i64>| ChangeSet { rights_at: at, ..set };
        let stored = |out: &StoreResult<CommitOutcome>| match out {
            Ok(CommitOutcome::Stored { rights_at, .. }) => *rights_at,
            other => panic!("not stored: {other:?}"),
        };

        let out = s.commit_changes(&[change_set(&d, 0, &[(&editor, r#"["a"]"#, None)])]).unwrap();
        let first = stored(&out[0]);
        let out = s.commit_changes(&[known(change_set(&d, 1, &[(&editor, r#"[1,"b"]"#, None)]), Some(first))]).unwrap();
        assert_eq!(stored(&out[0]), first, "the list has not changed");

        // A grant to someone else: the count moves, the roles are read, the
        // editor still may.
        s.share_document(&d, Some(&owner), &viewer, Grant::Role(Role::Viewer)).unwrap();
        let out = s.commit_changes(&[known(change_set(&d, 2, &[(&editor, r#"[2,"c"]"#, None)]), Some(first))]).unwrap();
        let second = stored(&out[0]);
        assert!(second > first);

        // Revoked since the count the room knows: refused, nothing stored.
        s.share_document(&d, Some(&owner), &editor, Grant::Revoke).unwrap();
        let out = s.commit_changes(&[known(change_set(&d, 3, &[(&editor, r#"[3,"d"]"#, None)]), Some(second))]).unwrap();
        assert!(
            matches!(&out[0], Ok(CommitOutcome::Refused(r)) if matches!(r[..], [(0, Refusal::Denied(StoreError::PermissionDenied(_)))])),
            "{out:?}"
        );
        // On another version: moved, whatever the count.
        let out = s.commit_changes(&[known(change_set(&d, 1, &[(&owner, r#"["x"]"#, None)]), Some(second))]).unwrap();
        assert_eq!(out[0], Ok(CommitOutcome::Moved { current: Version(3) }));
        let doc = s.document(&d).unwrap();
        assert_eq!((doc.content.as_str(), doc.version), ("abc", Version(3)));
        assert_eq!(s.document_history(&d, None, Version(0), 10).unwrap().changes.len(), 3);
    }

    /// The row holds no content: a commit writes its changes, and a whole
    /// content only at snapshot versions; a read starts from the newest
    /// snapshot and applies the changes since.
    #[test]
    fn content_is_kept_in_snapshots_and_read_from_the_newest() {
        let (s, _dir) = store();
        let owner = UserId::parse("o").unwrap();
        let d = DocumentId::parse("d").unwrap();
        s.create_document(&d, "", "start", &owner).unwrap();
        let snapshots = |s: &SqlStore| -> Vec<i64> {
            on_backend!(&mut *s.conn().unwrap(), |n| document_snapshots::table
                .filter(document_snapshots::document_id.eq("d"))
                .select(document_snapshots::version)
                .order(document_snapshots::version.asc())
                .load(n))
            .unwrap()
        };
        let out = s.commit_changes(&[change_set(&d, 0, &[(&owner, r#"[5,"a"]"#, None), (&owner, r#"[6,"b"]"#, None)])]).unwrap();
        assert!(matches!(out[0], Ok(CommitOutcome::Stored { .. })), "{:?}", out[0]);
        assert_eq!(snapshots(&s), vec![0], "no snapshot version passed: no content written");
        assert_eq!(s.document(&d).unwrap().content, "startab");

        // Versions 3..=SNAPSHOT_EVERY+1 in one set: it passes a snapshot.
        let top = SNAPSHOT_EVERY + 1;
        let ops: Vec<String> = (3..=top).map(|v| format!("[{},\"x\"]", v + 4)).collect();
        let changes: Vec<(&UserId, &str, Option<&str>)> = ops.iter().map(|o| (&owner, o.as_str(), None)).collect();
        let content = format!("startab{}", "x".repeat(changes.len()));
        let at_snapshot = format!("startab{}", "x".repeat((SNAPSHOT_EVERY - 2) as usize));
        let set = ChangeSet { snapshots: vec![(Version(SNAPSHOT_EVERY), at_snapshot.clone())], ..change_set(&d, 2, &changes) };
        let out = s.commit_changes(&[set]).unwrap();
        assert!(matches!(out[0], Ok(CommitOutcome::Stored { .. })), "{:?}", out[0]);
        assert_eq!(snapshots(&s), vec![0, SNAPSHOT_EVERY]);
        let doc = s.document(&d).unwrap();
        assert_eq!((doc.content.as_str(), doc.version), (content.as_str(), Version(top)));

        // The read starts at the newest snapshot: the changes before it are
        // not read (here one is gone, and the current content is whole)...
        let gone = |s: &SqlStore, version: i64| {
            on_backend!(&mut *s.conn().unwrap(), |n| diesel::delete(
                document_changes::table.filter(document_changes::version.eq(version))
            )
            .execute(n))
            .unwrap()
        };
        gone(&s, 3);
        assert_eq!(s.document(&d).unwrap().content, content);
        // ...and a change missing after it is an error, not an old content.
        gone(&s, top);
        assert!(matches!(s.document(&d), Err(StoreError::Internal(why)) if why.contains("misses changes")));
    }

    /// SQLite's `max_page_count` makes a full database without a full disk.
    /// SQLite may end the transaction itself on SQLITE_FULL: then diesel's
    /// ROLLBACK fails, and its error must not hide the condition.
    #[test]
    fn a_full_database_is_a_condition_until_a_write_fits() {
        use diesel::connection::SimpleConnection;
        let dir = tempfile::tempdir().unwrap();
        let target = Target::Sqlite(dir.path().join("t.db").display().to_string());
        // One connection, so that the per-connection limit applies to all.
        let pool = crate::db::open(&target, SqliteSync::Normal, 1).unwrap();
        let s = SqlStore::new(pool.clone(), Writers::shared(&pool));
        let limit = |pages: u32| pool.get().unwrap().batch_execute(&format!("PRAGMA max_page_count = {pages}")).unwrap();
        let a = ChatId::parse("a").unwrap();
        s.create_chat(&a, false, &[], None).unwrap();
        limit(1); // SQLite keeps the pages the file already has
        let batch: Vec<_> = (0..100).map(|i| NewMessage { content: "x".repeat(4000 + i), ..msg("a", "u", None, false) }).collect();
        let full = s.append_messages(&batch).unwrap_err();
        assert!(matches!(&full, StoreError::Unavailable { reason: "disk_full", .. }), "{full:?}");
        let doc = s.create_document(&DocumentId::parse("d").unwrap(), "", &"y".repeat(100_000), &UserId::parse("u").unwrap());
        assert!(matches!(doc, Err(StoreError::Unavailable { reason: "disk_full", .. })), "{doc:?}");
        assert_eq!(s.health.condition(), Some("disk_full"));
        assert!(matches!(s.chat_last_seq(&a), Ok(Some(Seq(0)))), "reads still work, and nothing was stored");

        limit(1_000_000);
        // The readiness probe sees that writes fit again; then the batch does.
        assert_eq!(s.ping(), Ok(()));
        assert_eq!(s.health.condition(), None);
        let out = s.append_messages(&batch).unwrap();
        assert_eq!(out.last().unwrap().as_ref().unwrap().message.seq, Seq(100));
    }

    #[test]
    fn a_change_set_is_stored_whole_or_not_at_all() {
        let (s, _dir) = store();
        let (owner, editor, viewer) = (UserId::parse("o").unwrap(), UserId::parse("e").unwrap(), UserId::parse("v").unwrap());
        let [d, f, g] = ["d", "f", "g"].map(|id| DocumentId::parse(id).unwrap());
        for id in [&d, &f, &g] {
            s.create_document(id, "", "", &owner).unwrap();
            s.share_document(id, Some(&owner), &viewer, Grant::Role(Role::Viewer)).unwrap();
            s.share_document(id, Some(&owner), &editor, Grant::Role(Role::Editor)).unwrap();
        }
        let out = s
            .commit_changes(&[
                change_set(&d, 0, &[(&owner, r#"["a"]"#, Some("x")), (&editor, r#"[1,"b"]"#, Some("x"))]),
                change_set(&DocumentId::parse("nope").unwrap(), 0, &[(&owner, r#"["a"]"#, None)]),
                change_set(&f, 0, &[(&owner, r#"["a"]"#, None), (&viewer, r#"["b"]"#, None)]),
                // Another process took version 1 of g meanwhile.
                change_set(&g, 3, &[(&owner, r#"["a"]"#, None)]),
            ])
            .unwrap();
        assert!(matches!(out[0], Ok(CommitOutcome::Stored { .. })), "{:?}", out[0]);
        assert!(matches!(&out[1], Ok(CommitOutcome::Refused(r)) if matches!(r[..], [(0, Refusal::Denied(StoreError::NotFound(_)))])));
        assert!(matches!(&out[2], Ok(CommitOutcome::Refused(r)) if matches!(r[..], [(1, Refusal::Denied(StoreError::PermissionDenied(_)))])));
        assert_eq!(out[3], Ok(CommitOutcome::Moved { current: Version(0) }));
        let doc = s.document(&d).unwrap();
        assert_eq!((doc.content.as_str(), doc.version, doc.updated_by.as_str()), ("ab", Version(2), "e"));
        assert_eq!((s.document(&f).unwrap().version, s.document(&g).unwrap().version), (Version(0), Version(0)));

        // An op_id is its author's, and is looked up in the range of
        // versions after the operation's base that it can have taken.
        assert_eq!(s.find_change(&d, &owner, "x", Version(0), 10).unwrap().map(|c| c.version), Some(Version(1)));
        assert_eq!(s.find_change(&d, &editor, "x", Version(0), 10).unwrap().map(|c| c.version), Some(Version(2)));
        assert_eq!(s.find_change(&d, &editor, "x", Version(0), 1).unwrap(), None, "version 2 is beyond the reach");
        assert_eq!(s.find_change(&d, &editor, "x", Version(2), 10).unwrap(), None, "stored before the base");
        assert_eq!(s.find_change(&d, &viewer, "x", Version(0), 10).unwrap(), None);
        assert_eq!(s.find_change(&d, &owner, "x", Version(0), i64::MAX).unwrap().map(|c| c.version), Some(Version(1)));

        let page = s.document_history(&d, None, Version(0), 1).unwrap();
        assert_eq!((page.changes.len(), page.has_more, page.changes[0].op_id.as_deref()), (1, true, Some("x")));
        let page = s.document_history(&d, Some(&viewer), Version(1), 10).unwrap();
        assert_eq!((page.changes[0].version, page.has_more), (Version(2), false));
        let stranger = UserId::parse("stranger").unwrap();
        assert!(matches!(s.document_history(&d, Some(&stranger), Version(0), 10), Err(StoreError::PermissionDenied(_))));
        assert!(matches!(s.document_history(&d, None, Version(3), 10), Err(StoreError::NotFound(_))));
        for (version, content) in [(0, ""), (1, "a"), (2, "ab")] {
            assert_eq!(s.document_snapshot(&d, Some(&viewer), Version(version)).unwrap().content, content);
        }
        assert!(matches!(s.document_snapshot(&d, None, Version(3)), Err(StoreError::NotFound(_))));

        let t = s.timeline(&d, 1000, 1000).unwrap();
        assert_eq!((t.changes.len(), t.history_start, t.document.version), (2, Version(0), Version(2)));
        // `["a"]` is 5 bytes of JSON, `[1,"b"]` 7: only the newest fits in 10.
        let t = s.timeline(&d, 1000, 10).unwrap();
        assert_eq!(t.changes.iter().map(|c| c.version.0).collect::<Vec<_>>(), vec![2]);
        let t = s.timeline(&d, 1, 1000).unwrap();
        assert_eq!(t.changes.len(), 1);
    }

    /// Documents from before the history table: their history starts at
    /// the version they had.
    #[test]
    fn history_starts_where_the_migration_found_a_document() {
        use diesel::connection::SimpleConnection;
        let (s, _dir) = store();
        let owner = UserId::parse("o").unwrap();
        let d = DocumentId::parse("old").unwrap();
        s.create_document(&d, "", "", &owner).unwrap();
        // As the migration leaves it: version 7, one snapshot of it.
        s.pool
            .get()
            .unwrap()
            .batch_execute(
                "UPDATE documents SET version = 7 WHERE id = 'old'; \
                 UPDATE document_snapshots SET version = 7, content = 'seven' WHERE document_id = 'old';",
            )
            .unwrap();
        assert_eq!(s.document_snapshot(&d, None, Version(7)).unwrap().content, "seven");
        let early = s.document_snapshot(&d, None, Version(6)).unwrap_err();
        assert!(matches!(&early, StoreError::NotFound(why) if why.contains("starts at version 7")), "{early:?}");
        assert!(matches!(s.document_history(&d, None, Version(0), 10), Err(StoreError::NotFound(_))));
        assert!(s.document_history(&d, None, Version(7), 10).unwrap().changes.is_empty());
        let t = s.timeline(&d, 10, 100).unwrap();
        assert_eq!((t.history_start, t.changes.len()), (Version(7), 0));
    }
}
