//! PostgreSQL: a batch stored in a few statements instead of a few per
//! item. Every statement is a round trip to PostgreSQL, so a group commit
//! of a hundred documents' groups, or of a hundred messages, waited for
//! two or three hundred of them.
//!
//! Change sets: the batch's documents are locked in one statement, every
//! set whose authors' rights are known is stored by one conditional
//! update, and their change rows by one insert. A set the update did not
//! take (the document moved, its access list changed, its rights unknown)
//! goes through the per-set path, which tells what became of it.
//!
//! Messages: the chats are locked by the caller; the `client_msg_id`s
//! already stored are read in one statement, the messages inserted in one,
//! and the chats' `last_seq` set in one.
//!
//! Only for a batch whose items run together: after one item failed it,
//! the batch runs again item by item, each in its own savepoint.

use std::collections::{HashMap, HashSet};
use std::fmt::Write;

use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use diesel::PgConnection;
use huddle_actors::ids::{ChatId, UserId};
use huddle_actors::model::Message;
use huddle_actors::store::{Appended, ChangeSet, NewMessage, StoreResult};

use crate::db::connection::AnyConnection;
use crate::db::error::TxError;
use crate::db::history::{change_rows, NewChangeRow};
use crate::db::rows::{ChatRow, MessageRow};
use crate::db::schema::{document_changes, documents, messages};
use crate::db::store::{may_read, no_chat, private_chat};

/// Most rows in one insert: seven parameters each, well below
/// PostgreSQL's 65,535 per statement.
const ROWS_PER_INSERT: usize = 4096;

#[derive(QueryableByName)]
struct Updated {
    #[diesel(sql_type = Text)]
    id: String,
}

/// Locks the documents `ids` (sorted) in that order, so that two engine
/// processes' batches never lock {A, B} and {B, A}; everything the batch
/// writes afterwards is locked already.
pub(super) fn lock(n: &mut PgConnection, ids: &[&str]) -> QueryResult<()> {
    documents::table.filter(documents::id.eq_any(ids)).order(documents::id).select(documents::id).for_update().load::<String>(n)?;
    Ok(())
}

/// Stores each set of `batch` that carries known rights (the only set of
/// its document in the batch) if its document is still at its base
/// version with its access list unchanged; returns their indices. Their
/// snapshots are left to the caller.
pub(super) fn store_known(n: &mut PgConnection, batch: &[ChangeSet], at: i64) -> QueryResult<HashSet<usize>> {
    let mut per_document: HashMap<&str, usize> = HashMap::new();
    for set in batch {
        *per_document.entry(set.document_id.as_str()).or_default() += 1;
    }
    let known: Vec<(usize, i64)> = batch
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.changes.is_empty() && per_document.get(s.document_id.as_str()) == Some(&1))
        .filter_map(|(i, s)| s.rights_at.map(|r| (i, r)))
        .collect();
    if known.is_empty() {
        return Ok(HashSet::new());
    }
    let mut sql = String::from(
        "UPDATE documents AS d SET version = v.top, updated_at = $1, updated_by = v.author FROM (VALUES ",
    );
    for k in 0..known.len() {
        let p = 2 + 5 * k;
        let comma = if k == 0 { "" } else { "," };
        let _ = write!(sql, "{comma}(${p}::text, ${}::bigint, ${}::bigint, ${}::bigint, ${}::text)", p + 1, p + 2, p + 3, p + 4);
    }
    sql.push_str(
        ") AS v (id, base, rights_at, top, author) \
         WHERE d.id = v.id AND d.version = v.base AND d.access_version = v.rights_at RETURNING d.id",
    );
    let mut query = diesel::sql_query(sql).into_boxed::<Pg>().bind::<BigInt, _>(at);
    for &(i, rights_at) in &known {
        let set = &batch[i];
        let author = set.changes.last().map_or("", |c| c.user_id.as_str());
        query = query
            .bind::<Text, _>(set.document_id.as_str())
            .bind::<BigInt, _>(set.base.0)
            .bind::<BigInt, _>(rights_at)
            .bind::<BigInt, _>(set.base.0 + set.changes.len() as i64)
            .bind::<Text, _>(author);
    }
    let updated: Vec<Updated> = query.load(n)?;
    let index: HashMap<&str, usize> = known.iter().map(|&(i, _)| (batch[i].document_id.as_str(), i)).collect();
    let stored: HashSet<usize> = updated.iter().filter_map(|u| index.get(u.id.as_str()).copied()).collect();
    let rows: Vec<NewChangeRow<'_>> = known.iter().filter(|(i, _)| stored.contains(i)).flat_map(|&(i, _)| change_rows(&batch[i], at)).collect();
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        diesel::insert_into(document_changes::table).values(chunk).execute(n)?;
    }
    Ok(stored)
}

/// Appends a batch of messages to the `chats` it writes to (locked, as
/// the caller read them; their `last_seq` advanced here), with the same
/// outcomes as one item at a time: a missing chat, a private one the
/// author may not post to, a `client_msg_id` stored before (earlier in
/// this batch or in the database) answered with its message.
pub(super) fn append(
    c: &mut AnyConnection,
    batch: &[NewMessage],
    chats: &mut HashMap<&ChatId, ChatRow>,
    at: i64,
) -> Result<Vec<StoreResult<Appended>>, TxError> {
    let stored = stored_client_ids(c, batch)?;
    let mut fresh_ids: HashMap<(&ChatId, &UserId, &str), Message> = HashMap::new();
    let mut rows = Vec::new();
    let mut out = Vec::with_capacity(batch.len());
    for m in batch {
        let Some(chat) = chats.get_mut(&m.chat_id) else {
            out.push(Err(no_chat(&m.chat_id)));
            continue;
        };
        // HTTP publishes only, and only to private chats: rare enough for
        // a statement each.
        if m.check_access && !may_read(c, chat, &m.user_id)? {
            out.push(Err(private_chat(&m.chat_id)));
            continue;
        }
        if let Some(cid) = m.client_msg_id.as_deref() {
            let key = (&m.chat_id, &m.user_id, cid);
            if let Some(earlier) = fresh_ids.get(&key) {
                out.push(Ok(Appended { message: earlier.clone(), fresh: false }));
                continue;
            }
            if let Some(row) = stored.get(&(m.chat_id.as_str(), m.user_id.as_str(), cid)) {
                out.push(Ok(Appended { message: row.clone().into_message()?, fresh: false }));
                continue;
            }
        }
        let row = MessageRow::new(m, chat.last_seq + 1, at);
        let message = row.clone().into_message()?;
        chat.last_seq = row.seq;
        if let Some(cid) = m.client_msg_id.as_deref() {
            fresh_ids.insert((&m.chat_id, &m.user_id, cid), message.clone());
        }
        rows.push(row);
        out.push(Ok(Appended { message, fresh: true }));
    }
    // Written for PostgreSQL, but correct on any backend: nothing here
    // depends on the caller having checked which one it is.
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        on_backend!(c, |n| diesel::insert_into(messages::table).values(chunk).execute(n))?;
    }
    Ok(out)
}

/// The messages stored with the batch's `client_msg_id`s, by (chat,
/// author, `client_msg_id`): one query, narrowed to exact triples here.
fn stored_client_ids<'b>(c: &mut AnyConnection, batch: &'b [NewMessage]) -> Result<HashMap<(&'b str, &'b str, &'b str), MessageRow>, TxError> {
    let wanted: HashSet<(&str, &str, &str)> = batch
        .iter()
        .filter_map(|m| m.client_msg_id.as_deref().map(|cid| (m.chat_id.as_str(), m.user_id.as_str(), cid)))
        .collect();
    if wanted.is_empty() {
        return Ok(HashMap::new());
    }
    let chat_ids: Vec<&str> = wanted.iter().map(|w| w.0).collect();
    let cids: Vec<&str> = wanted.iter().map(|w| w.2).collect();
    let rows: Vec<MessageRow> = on_backend!(c, |n| messages::table
        .filter(messages::chat_id.eq_any(&chat_ids))
        .filter(messages::client_msg_id.eq_any(&cids))
        .select(MessageRow::as_select())
        .load(n))?;
    let mut by_key: HashMap<(String, String, String), MessageRow> = HashMap::with_capacity(rows.len());
    for row in rows {
        if let Some(cid) = row.client_msg_id.clone() {
            by_key.insert((row.chat_id.clone(), row.user_id.clone(), cid), row);
        }
    }
    Ok(wanted
        .into_iter()
        .filter_map(|w| by_key.remove(&(w.0.to_owned(), w.1.to_owned(), w.2.to_owned())).map(|row| (w, row)))
        .collect())
}

/// Sets each chat's `last_seq`, `(id, last_seq)`, in one statement.
pub(super) fn set_last_seqs(n: &mut PgConnection, moved: &[(&str, i64)]) -> QueryResult<()> {
    if moved.is_empty() {
        return Ok(());
    }
    let mut sql = String::from("UPDATE chats AS c SET last_seq = v.last_seq FROM (VALUES ");
    for k in 0..moved.len() {
        let comma = if k == 0 { "" } else { "," };
        let _ = write!(sql, "{comma}(${}::text, ${}::bigint)", 1 + 2 * k, 2 + 2 * k);
    }
    sql.push_str(") AS v (id, last_seq) WHERE c.id = v.id");
    let mut query = diesel::sql_query(sql).into_boxed::<Pg>();
    for &(id, last_seq) in moved {
        query = query.bind::<Text, _>(id).bind::<BigInt, _>(last_seq);
    }
    query.execute(n)?;
    Ok(())
}
