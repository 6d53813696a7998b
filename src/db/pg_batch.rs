//! PostgreSQL: a batch's change sets stored in a few round trips instead
//! of two per set. Every statement is a round trip to PostgreSQL, so the
//! per-set path (an update and an insert per document) made a batch of a
//! hundred documents wait for two hundred of them. Here the batch's
//! documents are locked in one statement, every set whose authors' rights
//! are known is stored by one conditional update, and their change rows by
//! one insert. A set the update did not take (the document moved, its
//! access list changed, its rights unknown) goes through the per-set path,
//! which tells what became of it.

use std::collections::{HashMap, HashSet};
use std::fmt::Write;

use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use diesel::PgConnection;
use huddle_actors::store::ChangeSet;

use crate::db::history::{change_rows, NewChangeRow};
use crate::db::schema::{document_changes, documents};

/// Most change rows in one insert: seven parameters each, well below
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
        "UPDATE documents AS d SET content = v.content, version = v.top, updated_at = $1, updated_by = v.author FROM (VALUES ",
    );
    for k in 0..known.len() {
        let p = 2 + 6 * k;
        let comma = if k == 0 { "" } else { "," };
        let _ = write!(
            sql,
            "{comma}(${p}::text, ${}::bigint, ${}::bigint, ${}::bigint, ${}::text, ${}::text)",
            p + 1,
            p + 2,
            p + 3,
            p + 4,
            p + 5
        );
    }
    sql.push_str(
        ") AS v (id, base, rights_at, top, author, content) \
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
            .bind::<Text, _>(author)
            .bind::<Text, _>(&*set.content);
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
