//! The same engine on PostgreSQL: the schema and queries are portable, and
//! the database (not one process's memory) serializes versions and seqs.
//!
//! Needs a PostgreSQL server (see `common::postgres`): without one these
//! tests say that they were skipped.

mod common;

use common::postgres::TempDatabase;
use common::{jwt, TestServer};
use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};
use huddle::db::connection::{SqliteSync, Target};
use huddle::db::store::{SqlStore, Writers};
use huddle_actors::ids::{ChatId, DocumentId, Seq, UserId, Version};
use huddle_actors::model::ChangeKind;
use huddle_actors::store::{ChangeSet, CommitOutcome, NewChange, NewMessage, Store, StoreError, StoreResult};
use serde_json::json;

/// The store on `db`, below the engine.
fn store_on(db: &TempDatabase) -> SqlStore {
    let pool = huddle::db::open(&Target::parse(&db.url), SqliteSync::Full, 2).expect("open");
    SqlStore::new(pool.clone(), Writers::shared(&pool))
}

/// A message to append, as an HTTP publish (its access checked).
fn message(chat: &ChatId, user: &str, content: &str, cid: Option<&str>) -> NewMessage {
    NewMessage {
        id: uuid::Uuid::new_v4().simple().to_string(),
        chat_id: chat.clone(),
        user_id: UserId::parse(user).unwrap(),
        content: content.into(),
        client_msg_id: cid.map(str::to_owned),
        check_access: true,
    }
}

fn start(db: &TempDatabase) -> TestServer {
    let url = db.url.clone();
    TestServer::start_on(std::path::Path::new("unused"), move |o| o.database_url = url, jwt())
}

#[tokio::test]
async fn documents_and_chats_work_on_postgres_and_survive_a_restart() {
    let Some(db) = TempDatabase::create() else { return };
    let server = start(&db);
    let mut alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    alice.ok("chat:create", json!({"chat_id": "pg", "private": true, "members": ["bob"]})).await;
    alice.ok("chat:join", json!({"chat_id": "pg"})).await;
    bob.ok("chat:join", json!({"chat_id": "pg"})).await;
    let mut refs = Vec::new();
    for i in 0..30 {
        refs.push(alice.send_request("chat:message", json!({"chat_id": "pg", "content": format!("a{i}")})).await);
        refs.push(bob.send_request("chat:message", json!({"chat_id": "pg", "content": format!("b{i}"), "client_msg_id": format!("b{i}")})).await);
    }
    let mut seen = Vec::new();
    while seen.len() < 60 {
        seen.push(bob.expect_push("chat:message", "chat:pg").await["message"]["seq"].as_i64().unwrap());
    }
    assert_eq!(seen, (1..=60).collect::<Vec<_>>());
    let retry = bob.ok("chat:message", json!({"chat_id": "pg", "content": "b0", "client_msg_id": "b0"})).await;
    assert!(retry["message"]["seq"].as_i64().unwrap() <= 60);
    let mut carol = server.client("carol").await;
    carol.fails("chat:history", json!({"chat_id": "pg"}), "PERMISSION_DENIED").await;

    alice.ok("documents:create", json!({"document_id": "d"})).await;
    alice.ok("documents:share", json!({"document_id": "d", "user_id": "bob", "role": "editor"})).await;
    for v in 1..=10 {
        let a = alice.send_request("documents:update", json!({"document_id": "d", "content": "a", "version": v})).await;
        let b = bob.send_request("documents:update", json!({"document_id": "d", "content": "b", "version": v})).await;
        let wins = [alice.response(a).await.is_ok(), bob.response(b).await.is_ok()];
        assert_eq!(wins.iter().filter(|w| **w).count(), 1, "version {v}");
    }
    alice.fails("documents:create", json!({"document_id": "d"}), "ALREADY_EXISTS").await;
    server.stop().await;

    let server = start(&db);
    let mut bob = server.client("bob").await;
    let joined = bob.ok("chat:join", json!({"chat_id": "pg", "since_seq": 55})).await;
    assert_eq!(joined["last_seq"], 60);
    assert_eq!(joined["messages"].as_array().unwrap().len(), 5);
    let page = bob.ok("chat:history", json!({"chat_id": "pg", "limit": 100})).await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 60);
    let doc = bob.ok("documents:join", json!({"document_id": "d"})).await;
    assert_eq!(doc["document"]["version"], 10);
    server.stop().await;
}

/// The reads a client asks for run on database threads of their own:
/// however many of them wait, edits are still committed and acked. Here
/// they wait on a lock that another connection holds on the snapshots
/// table, more of them than the server has database threads of any kind.
#[tokio::test]
async fn reads_clients_ask_for_do_not_hold_up_edits() {
    let Some(db) = TempDatabase::create() else { return };
    let server = start(&db);
    let mut editor = server.client("editor").await;
    editor.ok("documents:create", json!({"document_id": "d"})).await;
    editor.ok("documents:join", json!({"document_id": "d"})).await;
    let mut reader = server.client("reader").await;
    reader.ok("documents:create", json!({"document_id": "r"})).await;

    let mut lock = PgConnection::establish(&db.url).expect("lock connection");
    lock.batch_execute("BEGIN; LOCK TABLE document_snapshots IN ACCESS EXCLUSIVE MODE").expect("lock");
    let read = ("documents:snapshot", json!({"document_id": "r", "version": 0}));
    let refs = reader.send_together(&vec![read; 6]).await;
    let ack = editor.ok("documents:op", json!({"document_id": "d", "base_version": 0, "ops": ["x"]})).await;
    assert_eq!(ack["version"], 1);
    // The reads answer once the lock is gone.
    lock.batch_execute("ROLLBACK").expect("unlock");
    for r in refs {
        let read = reader.response(r).await.expect("the read");
        assert_eq!(read["document"]["version"], 0);
    }
    server.stop().await;
}

#[tokio::test]
async fn a_lost_database_is_server_busy_not_a_crash() {
    let Some(db) = TempDatabase::create() else { return };
    let server = start(&db);
    let mut c = server.client("alice").await;
    c.ok("chat:join", json!({"chat_id": "gone"})).await;
    // The database disappears under the running server.
    let mut admin = PgConnection::establish(&db.admin_url).unwrap();
    admin.batch_execute(&format!("DROP DATABASE {} WITH (FORCE)", db.name)).unwrap();

    let e = c.fails("chat:message", json!({"chat_id": "gone", "content": "anyone?"}), "SERVER_BUSY").await;
    assert!(e["message"].as_str().unwrap().contains("retry"));
    assert_eq!(e["details"]["reason"], "database_unreachable");
    let ready = common::http::Http::new(server.http_url("")).call("GET", "/ready", None, None).await;
    assert_eq!((ready.status, ready.body["code"].clone()), (503, json!("SERVER_BUSY")));
    assert_eq!(ready.body["details"]["reason"], "database_unreachable");
    // The connection itself is fine.
    c.ok("ping", json!({})).await;
    server.stop().await;
}

/// The store itself, below the edge that refuses NUL: PostgreSQL refuses a
/// NUL in a text, and that must fail the one item, not the batch it shares
/// with other users' writes in other chats.
#[test]
fn an_item_postgres_refuses_fails_alone_and_the_batch_commits() {
    let Some(db) = TempDatabase::create() else { return };
    let store = store_on(&db);
    let (a, b) = (ChatId::parse("a").unwrap(), ChatId::parse("b").unwrap());
    store.create_chat(&a, false, &[], None).unwrap();
    store.create_chat(&b, false, &[], None).unwrap();
    let out = store
        .append_messages(&[
            message(&a, "ann", "one", None),
            message(&a, "eve", "nul \0 inside", Some("e1")),
            message(&b, "bob", "other chat", None),
            message(&a, "ann", "two", Some("a2")),
        ])
        .expect("the batch commits");
    assert!(matches!(&out[1], Err(StoreError::Internal(why)) if why.contains("0x00")), "{:?}", out[1]);
    let stored: Vec<(i64, &str)> =
        [0, 2, 3].iter().map(|i| out[*i].as_ref().unwrap()).map(|m| (m.message.seq.0, m.message.content.as_str())).collect();
    assert_eq!(stored, vec![(1, "one"), (1, "other chat"), (2, "two")]);
    // Gapless: the refused item took no seq, and the next batch goes on.
    assert_eq!(store.chat_last_seq(&a).unwrap(), Some(Seq(2)));
    let next = store.append_messages(&[message(&a, "ann", "three", None)]).unwrap();
    assert_eq!(next[0].as_ref().unwrap().message.seq, Seq(3));
    let page = store.history(&a, None, None, 10).unwrap();
    assert_eq!(page.messages.iter().map(|m| m.content.as_str()).collect::<Vec<_>>(), vec!["one", "two", "three"]);

    let owner = UserId::parse("owner").unwrap();
    let (d, e) = (DocumentId::parse("d").unwrap(), DocumentId::parse("e").unwrap());
    store.create_document(&d, "", "", &owner).unwrap();
    store.create_document(&e, "", "", &owner).unwrap();
    let set = |id: &DocumentId, ops: &str| ChangeSet {
        document_id: id.clone(),
        base: Version(0),
        changes: vec![NewChange { user_id: owner.clone(), ops: ops.into(), op_id: None, kind: ChangeKind::Op }],
        snapshots: Vec::new(),
        rights_at: None,
    };
    // The NUL is in the change row (a commit writes whole contents only
    // in snapshots).
    let out = store.commit_changes(&[set(&d, "[\"v1\"]"), set(&e, "[\"\0\"]")]).unwrap();
    assert!(matches!(out[0], Ok(CommitOutcome::Stored { .. })), "{:?}", out[0]);
    assert!(matches!(out[1], Err(StoreError::Internal(_))), "{:?}", out[1]);
    assert_eq!(store.document(&d).unwrap().version, Version(1));
    assert_eq!(store.document(&e).unwrap().version, Version(0));
    assert!(store.document_history(&e, None, Version(0), 10).unwrap().changes.is_empty());
    // Readiness is about the machine, not about one item.
    assert_eq!(store.ping(), Ok(()));
}

/// Document history on PostgreSQL, at the store: a change set is stored
/// whole or not at all (the document moved, an author without rights),
/// and the reads behind history, snapshots, `op_id` lookups and a room's
/// timeline give the same answers as on SQLite.
#[test]
fn change_sets_history_and_snapshots_on_postgres() {
    use huddle_actors::model::{Grant, Role};
    use huddle_actors::store::Refusal;

    let Some(db) = TempDatabase::create() else { return };
    let store = store_on(&db);
    let (owner, viewer) = (UserId::parse("owner").unwrap(), UserId::parse("viewer").unwrap());
    let d = DocumentId::parse("d").unwrap();
    store.create_document(&d, "", "hello", &owner).unwrap();
    store.share_document(&d, Some(&owner), &viewer, Grant::Role(Role::Viewer)).unwrap();
    let set = |base: i64, changes: &[(&UserId, &str, Option<&str>)]| ChangeSet {
        document_id: d.clone(),
        base: Version(base),
        changes: changes
            .iter()
            .map(|(user, ops, op_id)| NewChange {
                user_id: (*user).clone(),
                ops: (*ops).into(),
                op_id: op_id.map(str::to_owned),
                kind: ChangeKind::Op,
            })
            .collect(),
        snapshots: Vec::new(),
        rights_at: None,
    };
    let out = store.commit_changes(&[set(0, &[(&owner, r#"[5," world"]"#, Some("a")), (&owner, r#"[11,"!"]"#, None)])]).unwrap();
    let Ok(CommitOutcome::Stored { rights_at, .. }) = out[0] else { panic!("{:?}", out[0]) };
    let out = store
        .commit_changes(&[
            set(1, &[(&owner, r#"["x"]"#, None)]),
            set(2, &[(&viewer, r#"["v"]"#, None)]),
        ])
        .unwrap();
    assert_eq!(out[0], Ok(CommitOutcome::Moved { current: Version(2) }));
    assert!(matches!(&out[1], Ok(CommitOutcome::Refused(r)) if matches!(r[..], [(0, Refusal::Denied(StoreError::PermissionDenied(_)))])));
    assert_eq!(store.document(&d).unwrap().version, Version(2));

    let page = store.document_history(&d, Some(&viewer), Version(0), 1).unwrap();
    assert_eq!((page.changes[0].version, page.changes[0].ops.to_json(), page.has_more), (Version(1), json!([5, " world"]), true));
    assert_eq!(store.document_snapshot(&d, None, Version(0)).unwrap().content, "hello");
    assert_eq!(store.document_snapshot(&d, None, Version(1)).unwrap().content, "hello world");
    assert!(matches!(store.document_snapshot(&d, None, Version(3)), Err(StoreError::NotFound(_))));
    assert_eq!(store.find_change(&d, &owner, "a", Version(0), 5).unwrap().map(|c| c.version), Some(Version(1)));
    assert_eq!(store.find_change(&d, &owner, "a", Version(1), 5).unwrap(), None);
    // `[5," world"]` is 12 bytes of JSON, `[11,"!"]` 8: only the newest fits in 10.
    let t = store.timeline(&d, 100, 10).unwrap();
    assert_eq!((t.changes.iter().map(|c| c.version.0).collect::<Vec<_>>(), t.history_start), (vec![2], Version(0)));

    // Known rights: no roles read while the access list holds; read again
    // (and still allowed) once it changed.
    let known = |base: i64| ChangeSet { rights_at: Some(rights_at), ..set(base, &[(&owner, r#"["?"]"#, None)]) };
    let out = store.commit_changes(&[known(2)]).unwrap();
    assert!(matches!(out[0], Ok(CommitOutcome::Stored { rights_at: r, .. }) if r == rights_at), "{:?}", out[0]);
    store.share_document(&d, Some(&owner), &viewer, Grant::Revoke).unwrap();
    let out = store.commit_changes(&[known(3)]).unwrap();
    assert!(matches!(out[0], Ok(CommitOutcome::Stored { rights_at: r, .. }) if r > rights_at), "{:?}", out[0]);
    assert_eq!(store.document(&d).unwrap().content, "??hello world!");
}

/// On PostgreSQL a batch stores the sets whose rights are known with one
/// update and one insert for all of them; the others (moved, revoked,
/// unknown rights) go one by one, and each set still gets its own outcome.
#[test]
fn a_batch_stores_the_sets_with_known_rights_together_and_the_rest_one_by_one() {
    use huddle_actors::model::{Grant, Role};
    use huddle_actors::store::Refusal;

    let Some(db) = TempDatabase::create() else { return };
    let store = store_on(&db);
    let (owner, editor) = (UserId::parse("owner").unwrap(), UserId::parse("ed").unwrap());
    let ids: Vec<DocumentId> = ["a", "b", "c", "d", "e", "f"].iter().map(|id| DocumentId::parse(id).unwrap()).collect();
    for id in &ids {
        store.create_document(id, "", "", &owner).unwrap();
        store.share_document(id, Some(&owner), &editor, Grant::Role(Role::Editor)).unwrap();
    }
    let set = |id: &DocumentId, base: i64, rights_at: Option<i64>| ChangeSet {
        document_id: id.clone(),
        base: Version(base),
        changes: vec![NewChange { user_id: editor.clone(), ops: if base == 0 { r#"["x"]"#.to_owned() } else { format!("[{base},\"x\"]") }, op_id: None, kind: ChangeKind::Op }],
        snapshots: Vec::new(),
        rights_at,
    };
    let first: Vec<ChangeSet> = ids.iter().map(|id| set(id, 0, None)).collect();
    let rights: Vec<i64> = store
        .commit_changes(&first)
        .unwrap()
        .into_iter()
        .map(|out| match out {
            Ok(CommitOutcome::Stored { rights_at, .. }) => rights_at,
            other => panic!("{other:?}"),
        })
        .collect();

    // c: the editor's rights revoked since; d: moved by another process.
    store.share_document(&ids[2], Some(&owner), &editor, Grant::Revoke).unwrap();
    store.commit_changes(&[set(&ids[3], 1, None)]).unwrap();
    let mut with_snapshot = set(&ids[1], 1, Some(rights[1]));
    with_snapshot.snapshots = vec![(Version(2), "xx".to_owned())];
    let out = store
        .commit_changes(&[
            set(&ids[5], 1, None),
            set(&ids[3], 1, Some(rights[3])),
            set(&ids[2], 1, Some(rights[2])),
            with_snapshot,
            set(&ids[0], 1, Some(rights[0])),
        ])
        .unwrap();
    assert!(matches!(out[0], Ok(CommitOutcome::Stored { .. })), "unknown rights, read: {:?}", out[0]);
    assert_eq!(out[1], Ok(CommitOutcome::Moved { current: Version(2) }));
    assert!(matches!(&out[2], Ok(CommitOutcome::Refused(r)) if matches!(r[..], [(0, Refusal::Denied(StoreError::PermissionDenied(_)))])), "{:?}", out[2]);
    assert_eq!(out[3], Ok(CommitOutcome::Stored { at: stored_at(&out[3]), rights_at: rights[1] }));
    assert_eq!(out[4], Ok(CommitOutcome::Stored { at: stored_at(&out[4]), rights_at: rights[0] }));
    let versions: Vec<i64> = ids.iter().map(|id| store.document(id).unwrap().version.0).collect();
    assert_eq!(versions, vec![2, 2, 1, 2, 1, 2]);
    for id in [&ids[0], &ids[1]] {
        let page = store.document_history(id, None, Version(0), 10).unwrap();
        assert_eq!(page.changes.iter().map(|c| c.ops.to_json()).collect::<Vec<_>>(), vec![json!(["x"]), json!([1, "x"])]);
        assert_eq!(store.document(id).unwrap().content, "xx");
    }
    assert_eq!(store.document_snapshot(&ids[1], None, Version(2)).unwrap().content, "xx");

    // A set PostgreSQL refuses (a NUL byte in its change row) fails alone,
    // known rights or not.
    let mut refused = set(&ids[4], 1, Some(rights[4]));
    refused.changes[0].ops = "[1,\"\0\"]".into();
    let out = store.commit_changes(&[refused, set(&ids[0], 2, Some(rights[0]))]).unwrap();
    assert!(matches!(out[0], Err(StoreError::Internal(_))), "{:?}", out[0]);
    assert!(matches!(out[1], Ok(CommitOutcome::Stored { .. })), "{:?}", out[1]);
    assert_eq!((store.document(&ids[4]).unwrap().version, store.document(&ids[0]).unwrap().version), (Version(1), Version(3)));
}

fn stored_at(out: &Result<CommitOutcome, StoreError>) -> huddle_actors::model::Timestamp {
    match out {
        Ok(CommitOutcome::Stored { at, .. }) => *at,
        other => panic!("not stored: {other:?}"),
    }
}

/// On PostgreSQL a batch of messages is stored with one insert, and the
/// outcomes are those of one message at a time: a missing chat, a private
/// chat refused to a non-member, a `client_msg_id` sent twice in the batch
/// or stored by an earlier batch (its original), an author's own ids.
#[test]
fn a_batch_of_messages_keeps_every_outcome_of_one_at_a_time() {
    let Some(db) = TempDatabase::create() else { return };
    let store = store_on(&db);
    let [p1, p2, private, missing] = ["p1", "p2", "priv", "missing"].map(|id| ChatId::parse(id).unwrap());
    store.create_chat(&p1, false, &[], None).unwrap();
    store.create_chat(&p2, false, &[], None).unwrap();
    store.create_chat(&private, true, &[UserId::parse("m").unwrap()], None).unwrap();
    let seq = |out: &StoreResult<huddle_actors::store::Appended>| out.as_ref().map(|a| (a.message.seq.0, a.fresh, a.message.content.clone())).map_err(Clone::clone);
    let out = store
        .append_messages(&[
            message(&p1, "u", "one", Some("c1")),
            message(&p2, "u", "elsewhere", None),
            message(&p1, "u", "one again", Some("c1")),
            message(&missing, "u", "nowhere", None),
            message(&private, "x", "intruder", None),
            message(&private, "m", "member", None),
            message(&p1, "v", "v's own c1", Some("c1")),
        ])
        .unwrap();
    assert_eq!(seq(&out[0]), Ok((1, true, "one".into())));
    assert_eq!(seq(&out[1]), Ok((1, true, "elsewhere".into())));
    assert_eq!(seq(&out[2]), Ok((1, false, "one".into())), "the original, not a second message");
    assert!(matches!(out[3], Err(StoreError::NotFound(_))), "{:?}", out[3]);
    assert!(matches!(out[4], Err(StoreError::PermissionDenied(_))), "{:?}", out[4]);
    assert_eq!(seq(&out[5]), Ok((1, true, "member".into())));
    assert_eq!(seq(&out[6]), Ok((2, true, "v's own c1".into())));

    let out = store.append_messages(&[message(&p1, "u", "one, a third time", Some("c1")), message(&p1, "u", "three", None)]).unwrap();
    assert_eq!(seq(&out[0]), Ok((1, false, "one".into())), "stored by the earlier batch");
    assert_eq!(seq(&out[1]), Ok((3, true, "three".into())));
    let last: Vec<Option<Seq>> = [&p1, &p2, &private].iter().map(|id| store.chat_last_seq(id).unwrap()).collect();
    assert_eq!(last, vec![Some(Seq(3)), Some(Seq(1)), Some(Seq(1))]);
    let page = store.history(&p1, None, None, 10).unwrap();
    let contents: Vec<&str> = page.messages.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(contents, vec!["one", "v's own c1", "three"]);
}

/// Joins create the chats they name in a group commit; two engine
/// processes creating the same new chats in opposite orders must not
/// deadlock (PostgreSQL would fail one of the two transactions).
#[test]
fn two_processes_creating_the_same_chats_in_opposite_orders_do_not_deadlock() {
    use huddle_actors::store::NewChat;
    use std::sync::Barrier;

    let Some(db) = TempDatabase::create() else { return };
    let stores = [store_on(&db), store_on(&db)];
    let barrier = Barrier::new(2);
    let failures = std::sync::Mutex::new(Vec::new());
    let by = UserId::parse("joiner").unwrap();
    std::thread::scope(|s| {
        for (side, store) in stores.iter().enumerate() {
            let (barrier, by, failures) = (&barrier, &by, &failures);
            s.spawn(move || {
                for round in 0..100 {
                    let mut new: Vec<NewChat> =
                        (0..20).map(|k| NewChat { id: ChatId::parse(&format!("r{round}-{k:02}")).unwrap(), created_by: by.clone() }).collect();
                    if side == 1 {
                        new.reverse();
                    }
                    barrier.wait();
                    // Both sides go through every round (a panic here would
                    // leave the other waiting at the barrier): failures are
                    // counted, and asserted after.
                    match store.create_public_chats(&new) {
                        Ok(out) if out.iter().all(Result::is_ok) => {}
                        other => failures.lock().unwrap().push(format!("round {round}, side {side}: {other:?}")),
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(failures.is_empty(), "{} of 200 creations failed, first: {}", failures.len(), failures[0]);
    assert_eq!(stores[0].chat_last_seq(&ChatId::parse("r99-19").unwrap()).unwrap(), Some(Seq(0)));
}
