//! Document history in SQL: the change rows and snapshots behind
//! `documents:history`, `documents:snapshot`, a room's timeline, and the
//! group commit of the rooms' change sets.
//!
//! A change set is stored with a conditional update of the document's row
//! (`WHERE version = base`), in the transaction that inserts its change
//! rows: the database, not a room's memory, decides which changes become
//! which versions, so several engine processes may share one database.

use std::collections::HashMap;

use diesel::dsl::{max, min, sql};
use diesel::prelude::*;
use diesel::backend::Backend;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::{BigInt, Text};
use huddle_actors::ids::{DocumentId, UserId, Version};
use huddle_actors::model::{Change, Document, Timestamp};
use huddle_actors::ot;
use huddle_actors::store::{ChangePage, ChangeSet, CommitOutcome, Refusal, StoreError, StoreResult, Timeline, HISTORY_PAGE_BYTES};

use crate::db::connection::AnyConnection;
use crate::db::error::TxError;
use crate::db::pg_batch;
use crate::db::rows::{self, ChangeRow, SnapshotRow};
use crate::db::schema::{document_changes, document_snapshots, documents};
use crate::db::store::{access, load_document, no_document, Items};

/// Keeps the whole content at `version`, made by `by` at `at`.
pub fn insert_snapshot(
    c: &mut AnyConnection,
    id: &DocumentId,
    version: Version,
    content: &str,
    at: i64,
    by: &UserId,
) -> Result<(), TxError> {
    on_backend!(c, |n| diesel::insert_into(document_snapshots::table)
        .values((
            document_snapshots::document_id.eq(id.as_str()),
            document_snapshots::version.eq(version.0),
            document_snapshots::content.eq(content),
            document_snapshots::updated_at.eq(at),
            document_snapshots::updated_by.eq(by.as_str()),
        ))
        .execute(n))?;
    Ok(())
}

fn version_of(c: &mut AnyConnection, id: &DocumentId) -> Result<Option<i64>, TxError> {
    Ok(on_backend!(c, |n| documents::table.find(id.as_str()).select(documents::version).get_result(n).optional())?)
}

/// The document's content at `version`; see [`replay`].
pub fn content_at(c: &mut AnyConnection, id: &DocumentId, version: Version) -> Result<String, TxError> {
    Ok(replay(c, id, version)?.content)
}

/// A document's content at a version, with who made that version and when.
struct Replayed {
    content: String,
    at: i64,
    by: String,
}

/// The content at `version`: the newest snapshot at or before it, brought
/// forward over the changes since (fewer than `SNAPSHOT_EVERY`, of under
/// `SNAPSHOT_BYTES` bytes), applied in turn to a rope, so that a long
/// document is not copied once per change and no change costs more than
/// applying it. Every document has a snapshot where its
/// history starts; its row holds no content.
fn replay(c: &mut AnyConnection, id: &DocumentId, version: Version) -> Result<Replayed, TxError> {
    let base: SnapshotRow = document_snapshots::table
        .filter(document_snapshots::document_id.eq(id.as_str()))
        .filter(document_snapshots::version.le(version.0))
        .select(SnapshotRow::as_select())
        .order(document_snapshots::version.desc())
        .first(c)
        .optional()?
        .ok_or_else(|| StoreError::Internal(format!("document {id} has no snapshot at or before version {}", version.0)))?;
    if base.version >= version.0 {
        return Ok(Replayed { content: base.content, at: base.updated_at, by: base.updated_by });
    }
    let found: Vec<ChangeRow> = document_changes::table
        .filter(document_changes::document_id.eq(id.as_str()))
        .filter(document_changes::version.gt(base.version))
        .filter(document_changes::version.le(version.0))
        .select(ChangeRow::as_select())
        .order(document_changes::version.asc())
        .load(c)?;
    let Some(last) = found.last().filter(|_| found.len() as i64 == version.0 - base.version) else {
        return Err(StoreError::Internal(format!(
            "the history of document {id} misses changes between versions {} and {}",
            base.version, version.0
        ))
        .into());
    };
    let (at, by) = (last.created_at, last.user_id.clone());
    let ops = found.iter().map(|row| rows::operation(&row.ops)).collect::<Result<Vec<_>, _>>()?;
    let content = ot::apply_in_turn(&base.content, &ops).map_err(|(i, e)| {
        StoreError::Internal(format!("document {id}: version {} does not apply: {e}", base.version + 1 + i as i64))
    })?;
    Ok(Replayed { content, at, by })
}

/// The first version the history knows: its oldest snapshot (version 0,
/// or the version a document had when history began to be kept).
fn start(c: &mut AnyConnection, id: &DocumentId) -> Result<Option<i64>, TxError> {
    Ok(document_snapshots::table
        .filter(document_snapshots::document_id.eq(id.as_str()))
        .select(min(document_snapshots::version))
        .get_result(c)?)
}

/// Checks that `reader` may read the document and that its history has
/// `version`: `NotFound` above the current version and below the start.
fn readable(c: &mut AnyConnection, id: &DocumentId, reader: Option<&UserId>, version: Version) -> Result<(), TxError> {
    let current = version_of(c, id)?.ok_or_else(|| no_document(id))?;
    if let Some(user) = reader {
        access(c, id, user)??;
    }
    if version.0 > current {
        return Err(StoreError::NotFound(format!("version {} of document {id}: it is at version {current}", version.0)).into());
    }
    let start = start(c, id)?.unwrap_or(current);
    if version.0 < start {
        return Err(StoreError::NotFound(format!(
            "version {} in the history of document {id}: its history starts at version {start}",
            version.0
        ))
        .into());
    }
    Ok(())
}

/// The document and its newest changes, as many as fit in `max_changes`
/// and `max_bytes` bytes of operation JSON. The sizes are read
/// first, so that no more rows than fit are ever loaded, with
/// `octet_length`: SQLite answers it from the record's header without
/// reading a value kept on overflow pages, PostgreSQL without
/// decompressing or fetching a TOASTed one (`length` counts characters,
/// so it read every value in full: a gigabyte to size a page of 4 MiB).
pub fn timeline(c: &mut AnyConnection, id: &DocumentId, max_changes: usize, max_bytes: usize) -> StoreResult<Timeline> {
    let document = load_document(c, id)?.ok_or_else(|| no_document(id))?;
    let top = document.version.0;
    let history_start = Version(start(c, id)?.unwrap_or(top));
    let sizes: Vec<(i64, i64)> = document_changes::table
        .filter(document_changes::document_id.eq(id.as_str()))
        .filter(document_changes::version.le(top))
        .select((document_changes::version, sql::<BigInt>("CAST(octet_length(ops) AS BIGINT)")))
        .order(document_changes::version.desc())
        .limit(i64::try_from(max_changes).unwrap_or(i64::MAX))
        .load(c)
        .map_err(TxError::from)?;
    let (mut after, mut bytes) = (top, 0_usize);
    for (version, len) in sizes {
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if version != after || bytes.saturating_add(len) > max_bytes {
            break;
        }
        bytes += len;
        after = version - 1;
    }
    let found = rows_between(c, id, after, top)?;
    let since_snapshot = since_snapshot(c, id, top)?;
    Ok(Timeline { document, changes: rows::into_changes(found)?, history_start, since_snapshot })
}

/// Bytes of operation JSON in the changes after the newest snapshot
/// at or before `top`, as `snapshot_due` counts them.
fn since_snapshot(c: &mut AnyConnection, id: &DocumentId, top: i64) -> Result<usize, TxError> {
    let newest: Option<i64> = document_snapshots::table
        .filter(document_snapshots::document_id.eq(id.as_str()))
        .filter(document_snapshots::version.le(top))
        .select(max(document_snapshots::version))
        .get_result(c)?;
    let bytes: i64 = document_changes::table
        .filter(document_changes::document_id.eq(id.as_str()))
        .filter(document_changes::version.gt(newest.unwrap_or(top)))
        .filter(document_changes::version.le(top))
        .select(sql::<BigInt>("CAST(COALESCE(SUM(octet_length(ops)), 0) AS BIGINT)"))
        .get_result(c)?;
    Ok(usize::try_from(bytes).unwrap_or(0))
}

/// The change rows of versions `after + 1 ..= upto`, ascending (none when
/// `upto <= after`, without a query).
fn rows_between(c: &mut AnyConnection, id: &DocumentId, after: i64, upto: i64) -> Result<Vec<ChangeRow>, TxError> {
    if upto <= after {
        return Ok(Vec::new());
    }
    document_changes::table
        .filter(document_changes::document_id.eq(id.as_str()))
        .filter(document_changes::version.gt(after))
        .filter(document_changes::version.le(upto))
        .select(ChangeRow::as_select())
        .order(document_changes::version.asc())
        .load(c)
        .map_err(TxError::from)
}

/// Up to `limit` changes after `after`, ascending, within
/// [`HISTORY_PAGE_BYTES`]. The sizes are read first, as for the timeline.
pub fn page(c: &mut AnyConnection, id: &DocumentId, reader: Option<&UserId>, after: Version, limit: i64) -> StoreResult<ChangePage> {
    readable(c, id, reader, after)?;
    let sizes: Vec<(i64, i64)> = document_changes::table
        .filter(document_changes::document_id.eq(id.as_str()))
        .filter(document_changes::version.gt(after.0))
        .select((document_changes::version, sql::<BigInt>("CAST(octet_length(ops) AS BIGINT)")))
        .order(document_changes::version.asc())
        .limit(limit.saturating_add(1))
        .load(c)
        .map_err(TxError::from)?;
    let (mut upto, mut bytes, mut taken) = (after.0, 0_usize, 0_i64);
    for &(version, len) in &sizes {
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if taken == limit || (taken > 0 && bytes.saturating_add(len) > HISTORY_PAGE_BYTES) {
            break;
        }
        (upto, bytes, taken) = (version, bytes.saturating_add(len), taken + 1);
    }
    let has_more = sizes.len() as i64 > taken;
    let found = rows_between(c, id, after.0, upto)?;
    Ok(ChangePage { changes: rows::into_changes(found)?, has_more })
}

/// The document at `version`, as `reader` may see it (see [`replay`]).
pub fn snapshot(c: &mut AnyConnection, id: &DocumentId, reader: Option<&UserId>, version: Version) -> StoreResult<Document> {
    readable(c, id, reader, version)?;
    let title: String = documents::table.find(id.as_str()).select(documents::title).get_result(c).map_err(TxError::from)?;
    let Replayed { content, at, by } = replay(c, id, version)?;
    Ok(Document {
        id: id.clone(),
        title,
        content,
        version,
        updated_at: Timestamp(at),
        updated_by: rows::user_id(&by)?,
    })
}

/// The change `user` stored with `op_id` among the `within` versions after
/// `after`: a range of the primary key, never the whole history.
pub fn find(c: &mut AnyConnection, id: &DocumentId, user: &UserId, op_id: &str, after: Version, within: i64) -> StoreResult<Option<Change>> {
    let row: Option<ChangeRow> = document_changes::table
        .filter(document_changes::document_id.eq(id.as_str()))
        .filter(document_changes::version.gt(after.0))
        .filter(document_changes::version.le(after.0.saturating_add(within.max(0))))
        .filter(document_changes::op_id.eq(op_id))
        .filter(document_changes::user_id.eq(user.as_str()))
        .select(ChangeRow::as_select())
        .order(document_changes::version.asc())
        .first(c)
        .optional()
        .map_err(TxError::from)?;
    row.map(ChangeRow::into_change).transpose()
}

/// Stores a batch of change sets (one per room at most) in the caller's
/// transaction; outcomes in the batch's order.
pub fn commit(c: &mut AnyConnection, batch: &[ChangeSet], at: i64, items: Items) -> Result<Vec<StoreResult<CommitOutcome>>, TxError> {
    // Documents in one order: two engine processes' batches never lock
    // {A, B} and {B, A}.
    let mut order: Vec<usize> = (0..batch.len()).collect();
    order.sort_by(|a, b| batch[*a].document_id.as_str().cmp(batch[*b].document_id.as_str()));
    let mut out: Vec<Option<StoreResult<CommitOutcome>>> = (0..batch.len()).map(|_| None).collect();
    match c {
        AnyConnection::Sqlite(n) => {
            if let Some(first) = order.first() {
                // A no-op write first: SQLite takes its write lock now
                // rather than failing "busy" when a read later turns into
                // a write.
                let id = batch[*first].document_id.as_str();
                diesel::update(documents::table.find(id)).set(documents::version.eq(documents::version)).execute(n)?;
            }
        }
        AnyConnection::Postgresql(n) => {
            let mut ids: Vec<&str> = order.iter().map(|i| batch[*i].document_id.as_str()).collect();
            ids.dedup();
            pg_batch::lock(n, &ids)?;
            // Not when the items are apart: each needs its own savepoint.
            if items == Items::Together {
                for i in pg_batch::store_known(n, batch, at)? {
                    let rights_at = batch[i].rights_at.unwrap_or_default();
                    out[i] = Some(Ok(CommitOutcome::Stored { at: Timestamp(at), rights_at }));
                }
            }
        }
    }
    for i in order {
        if out[i].is_some() {
            insert_snapshots(c, &batch[i], at)?;
        } else {
            out[i] = Some(items.run(c, |c| commit_one(c, &batch[i], at))?);
        }
    }
    Ok(out.into_iter().map(|o| o.unwrap_or_else(|| Err(StoreError::Internal("a change set was skipped".into())))).collect())
}

/// How often a commit reads its authors' roles before it gives up on a
/// document whose access list keeps changing under it (PostgreSQL only:
/// on SQLite nothing else writes during the transaction, so the second
/// read always holds).
const ROLE_READS: usize = 2;

/// One change set: the authors' rights, then the update conditional on the
/// document's version and access list, the change rows and the snapshots
/// due. A refusal writes nothing.
///
/// The rights are either known (the set carries the access list's count
/// under which the store last allowed every author: the update's condition
/// checks that the list has not changed since) or read: each author's role,
/// after the count they are read under.
fn commit_one(c: &mut AnyConnection, set: &ChangeSet, at: i64) -> Result<StoreResult<CommitOutcome>, TxError> {
    let id = &set.document_id;
    let mut known = set.rights_at;
    for _ in 0..ROLE_READS + usize::from(known.is_some()) {
        let rights_at = match known.take() {
            Some(count) => count,
            None => {
                // The count first: roles read after it are at least as new,
                // so a change of the list between the two fails the update.
                let position = position(c, id)?;
                let refusals = refusals(c, set)?;
                if !refusals.is_empty() {
                    return Ok(Ok(CommitOutcome::Refused(refusals)));
                }
                let Some((version, count)) = position else { return Ok(Err(no_document(id))) };
                if version != set.base.0 {
                    return Ok(Ok(CommitOutcome::Moved { current: Version(version) }));
                }
                count
            }
        };
        if store(c, set, at, rights_at)? {
            return Ok(Ok(CommitOutcome::Stored { at: Timestamp(at), rights_at }));
        }
        match position(c, id)? {
            None => return Ok(Err(no_document(id))),
            Some((version, _)) if version != set.base.0 => return Ok(Ok(CommitOutcome::Moved { current: Version(version) })),
            // The access list changed: read the roles again.
            Some(_) => {}
        }
    }
    Ok(Err(StoreError::Unavailable {
        reason: "contention",
        cause: format!("the access list of document {id} changed during each of {ROLE_READS} reads of its editors' roles"),
    }))
}

/// The document's version and access-list count.
fn position(c: &mut AnyConnection, id: &DocumentId) -> Result<Option<(i64, i64)>, TxError> {
    Ok(on_backend!(c, |n| documents::table
        .find(id.as_str())
        .select((documents::version, documents::access_version))
        .get_result(n)
        .optional())?)
}

/// The changes whose authors may not edit, by index.
fn refusals(c: &mut AnyConnection, set: &ChangeSet) -> Result<Vec<(usize, Refusal)>, TxError> {
    let id = &set.document_id;
    let mut refusals = Vec::new();
    let mut rights: HashMap<&UserId, Option<StoreError>> = HashMap::new();
    for (i, change) in set.changes.iter().enumerate() {
        let denial = match rights.get(&change.user_id) {
            Some(denial) => denial.clone(),
            None => {
                let denial = match access(c, id, &change.user_id)? {
                    Ok(role) if role.can_edit() => None,
                    Ok(_) => Some(StoreError::PermissionDenied(format!("viewers may not edit document {id}"))),
                    Err(e) => Some(e),
                };
                rights.insert(&change.user_id, denial.clone());
                denial
            }
        };
        if let Some(e) = denial {
            refusals.push((i, Refusal::Denied(e)));
        }
    }
    Ok(refusals)
}

/// The conditional update of a document's row that stores a change set,
/// written out as one fixed statement: diesel prepares an UPDATE afresh on
/// every run (a changeset's SQL may depend on its values), and in process
/// SQLite spends more on parsing this statement than on running it.
/// The row holds no content: a commit costs the size of its changes, not
/// of the document.
struct Advance<'a> {
    id: &'a str,
    base: i64,
    rights_at: i64,
    top: i64,
    at: i64,
    by: &'a str,
}

impl<DB> QueryFragment<DB> for Advance<'_>
where
    DB: Backend,
    str: ToSql<Text, DB>,
    i64: ToSql<BigInt, DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        out.push_sql("UPDATE documents SET version = ");
        out.push_bind_param::<BigInt, _>(&self.top)?;
        out.push_sql(", updated_at = ");
        out.push_bind_param::<BigInt, _>(&self.at)?;
        out.push_sql(", updated_by = ");
        out.push_bind_param::<Text, _>(self.by)?;
        out.push_sql(" WHERE id = ");
        out.push_bind_param::<Text, _>(self.id)?;
        out.push_sql(" AND version = ");
        out.push_bind_param::<BigInt, _>(&self.base)?;
        out.push_sql(" AND access_version = ");
        out.push_bind_param::<BigInt, _>(&self.rights_at)?;
        Ok(())
    }
}

impl QueryId for Advance<'_> {
    type QueryId = Advance<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<Conn> RunQueryDsl<Conn> for Advance<'_> {}

/// Stores the set if the document is still at its base version with the
/// access list at `rights_at`: false (nothing written) if not.
fn store(c: &mut AnyConnection, set: &ChangeSet, at: i64, rights_at: i64) -> Result<bool, TxError> {
    let id = &set.document_id;
    let Some(last) = set.changes.last() else { return Ok(true) };
    let top = set.base.0 + set.changes.len() as i64;
    let advance = Advance { id: id.as_str(), base: set.base.0, rights_at, top, at, by: last.user_id.as_str() };
    let changed = on_backend!(c, |n| advance.execute(n))?;
    if changed == 0 {
        return Ok(false);
    }
    let rows = change_rows(set, at);
    match c {
        // In process, a statement costs its parsing more than its running:
        // diesel caches the prepared single-row insert, not a multi-row one
        // (its SQL depends on the row count), and a group is a few rows.
        AnyConnection::Sqlite(n) => {
            for row in &rows {
                diesel::insert_into(document_changes::table).values(row).execute(n)?;
            }
        }
        // Over the network, a round trip costs more than parsing.
        AnyConnection::Postgresql(n) => {
            diesel::insert_into(document_changes::table).values(&rows).execute(n)?;
        }
    }
    insert_snapshots(c, set, at)?;
    Ok(true)
}

/// A change row to insert. `None` is bound as NULL rather than left out:
/// the statement's SQL is then the same for every row, and diesel caches
/// it by type instead of writing its SQL out to look it up.
#[derive(Insertable)]
#[diesel(table_name = document_changes, treat_none_as_default_value = false)]
pub(super) struct NewChangeRow<'a> {
    document_id: &'a str,
    version: i64,
    #[diesel(column_name = operation)]
    ops: &'a str,
    user_id: &'a str,
    created_at: i64,
    op_id: Option<&'a str>,
    kind: i16,
}

/// The rows of a set's changes, versions `base + 1` on.
pub(super) fn change_rows(set: &ChangeSet, at: i64) -> Vec<NewChangeRow<'_>> {
    set.changes
        .iter()
        .zip(set.base.0 + 1..)
        .map(|(ch, version)| NewChangeRow {
            document_id: set.document_id.as_str(),
            version,
            ops: &ch.ops,
            user_id: ch.user_id.as_str(),
            created_at: at,
            op_id: ch.op_id.as_deref(),
            kind: rows::kind_code(ch.kind),
        })
        .collect()
}

/// The snapshots due in a stored set.
pub(super) fn insert_snapshots(c: &mut AnyConnection, set: &ChangeSet, at: i64) -> Result<(), TxError> {
    for (version, content) in &set.snapshots {
        let author = usize::try_from(version.0 - set.base.0 - 1).ok().and_then(|i| set.changes.get(i));
        let Some(author) = author else {
            // Fails the transaction: the update before must not stay.
            return Err(StoreError::Internal(format!("snapshot of version {} outside its change set", version.0)).into());
        };
        insert_snapshot(c, &set.document_id, *version, content, at, &author.user_id)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use diesel::query_builder::QueryId;
    use diesel::sqlite::Sqlite;

    use super::*;

    /// diesel keeps a prepared statement by its type only when the type
    /// says its SQL never varies; otherwise it writes the SQL out at every
    /// run to find it (an insert), or prepares it afresh (an update). These
    /// are the statements of every group commit.
    fn cached_by_type<Q: QueryId>(_: &Q) -> bool {
        Q::HAS_STATIC_QUERY_ID
    }

    #[test]
    fn a_group_commits_with_statements_cached_by_type() {
        let advance = Advance { id: "d", base: 1, rights_at: 0, top: 2, at: 0, by: "u" };
        assert!(cached_by_type(&advance));
        let row = NewChangeRow { document_id: "d", version: 2, ops: "[1]", user_id: "u", created_at: 0, op_id: None, kind: 0 };
        let insert = diesel::insert_into(document_changes::table).values(&row);
        assert!(cached_by_type(&insert));
        let sql = diesel::debug_query::<Sqlite, _>(&insert).to_string();
        assert!(sql.contains("`op_id`"), "a missing op_id is bound as NULL, not left out: {sql}");
        let message = rows::MessageRow {
            chat_id: "c".into(),
            seq: 1,
            id: "m".into(),
            user_id: "u".into(),
            content: "hi".into(),
            created_at: 0,
            client_msg_id: None,
        };
        let insert = diesel::insert_into(crate::db::schema::messages::table).values(&message);
        assert!(cached_by_type(&insert));
    }
}
