//! Text operations (`documents:op`) against the real server: concurrent
//! editors converge, the history replays to the content, snapshots match
//! the replay, resent operations are applied once, and every refusal has
//! its code. The PostgreSQL variants need a server (see `common::postgres`).

mod common;

use std::collections::HashSet;
use std::path::Path;

use common::editing::{edit_randomly, history, replay, OnBusy};
use common::http::Http;
use common::postgres::TempDatabase;
use common::process::{proc_number, Process};
use common::{jwt, token, Client, TestServer};
use serde_json::{json, Value};

const KEY: &str = "api-key-for-tests";

/// Editors here send far more than a person types: no rate limit in the way.
fn server() -> TestServer {
    TestServer::start_with(tuned)
}

fn tuned(o: &mut huddle::config::Options) {
    o.api_key = Some(KEY.into());
    o.rate_per_second = 100_000;
    o.rate_burst = 100_000;
}

fn postgres_server(db: &TempDatabase) -> TestServer {
    let url = db.url.clone();
    TestServer::start_on(Path::new("unused"), move |o| {
        tuned(o);
        o.database_url = url;
    }, jwt())
}

async fn three_editors_converge(server: &TestServer) {
    const OPS: usize = 200;
    let doc = "race";
    let mut owner = server.client("owner").await;
    owner.ok("documents:create", json!({"document_id": doc, "content": "start"})).await;
    for u in ["e1", "e2", "e3"] {
        owner.ok("documents:share", json!({"document_id": doc, "user_id": u, "role": "editor"})).await;
    }
    let mut tasks = Vec::new();
    for (i, u) in ["e1", "e2", "e3"].into_iter().enumerate() {
        let c = server.client(u).await;
        tasks.push(tokio::spawn(edit_randomly(c, doc.to_owned(), 1000 + i as u64, OPS, 3 * OPS as i64, OnBusy::Fail)));
    }
    let mut views = Vec::new();
    for t in tasks {
        views.push(t.await.expect("editor").1);
    }
    let final_text = views[0].text().to_owned();
    for v in &views {
        assert_eq!((v.version(), v.text()), (600, final_text.as_str()));
    }
    // The database has it too.
    let api = Http::new(server.http_url(""));
    let stored = api.call("GET", &format!("/api/documents/{doc}"), Some(KEY), None).await.body;
    assert_eq!((stored["document"]["content"].as_str(), stored["document"]["version"].as_i64()), (Some(final_text.as_str()), Some(600)));

    // Replaying the history from version 0 gives the same content.
    let changes = history(&mut owner, doc).await;
    assert_eq!(changes.len(), 600);
    let replay = replay("start", &changes);
    assert_eq!(replay.text(), final_text);
    for v in &views {
        assert_eq!(v.ops[..], replay.ops[v.start as usize..], "every editor saw the same operation at every version");
    }
    let users: HashSet<&str> = changes.iter().map(|c| c["user_id"].as_str().unwrap()).collect();
    assert_eq!(users, HashSet::from(["e1", "e2", "e3"]));

    // Snapshots at several versions, across the every-100 boundary.
    for version in [0, 1, 99, 100, 101, 250, 599, 600] {
        let snap = owner.ok("documents:snapshot", json!({"document_id": doc, "version": version})).await;
        assert_eq!(snap["document"]["content"].as_str(), Some(replay.text_at(version)), "version {version}");
        assert_eq!(snap["document"]["version"], version);
    }
}

#[tokio::test]
async fn three_editors_sending_random_operations_converge() {
    let server = server();
    three_editors_converge(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn three_editors_converge_on_postgres() {
    let Some(db) = TempDatabase::create() else { return };
    let server = postgres_server(&db);
    three_editors_converge(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn acks_pushes_and_the_shapes_of_history() {
    let server = server();
    let mut alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    alice.ok("documents:create", json!({"document_id": "d", "content": "hello"})).await;
    alice.ok("documents:share", json!({"document_id": "d", "user_id": "bob", "role": "editor"})).await;
    alice.ok("documents:join", json!({"document_id": "d"})).await;
    bob.ok("documents:join", json!({"document_id": "d"})).await;

    let ack = alice.ok("documents:op", json!({"document_id": "d", "base_version": 0, "ops": [5, " world"]})).await;
    assert_eq!(ack, json!({"document_id": "d", "version": 1, "ops": [5, " world"]}));
    let pushed = bob.expect_push("documents:op", "document:d").await;
    assert_eq!(pushed, json!({"document_id": "d", "version": 1, "ops": [5, " world"], "user_id": "alice"}));
    // Made on version 0, transformed over " world": the ack says what was applied.
    let ack = bob.ok("documents:op", json!({"document_id": "d", "base_version": 0, "ops": [{"d": 1}, "J"]})).await;
    assert_eq!(ack, json!({"document_id": "d", "version": 2, "ops": ["J", {"d": 1}]}));
    assert_eq!(alice.expect_push("documents:op", "document:d").await["ops"], json!(["J", {"d": 1}]));
    // The sender gets no push of its own operation.
    bob.ok("ping", json!({})).await;
    assert!(bob.kept(|f| f["event"] == "documents:op").is_empty());

    let page = bob.ok("documents:history", json!({"document_id": "d"})).await;
    let changes = page["changes"].as_array().unwrap();
    assert_eq!(page["has_more"], false);
    assert_eq!(changes.len(), 2);
    assert_eq!(
        (changes[1]["version"].clone(), changes[1]["ops"].clone(), changes[1]["user_id"].clone()),
        (json!(2), json!(["J", {"d": 1}]), json!("bob"))
    );
    assert!(changes[1]["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(changes[0].as_object().unwrap().len(), 4, "version, ops, user_id, created_at: {}", changes[0]);
    let page = bob.ok("documents:history", json!({"document_id": "d", "after_version": 0, "limit": 1})).await;
    assert_eq!((page["changes"][0]["version"].clone(), page["has_more"].clone()), (json!(1), json!(true)));
    let snap = bob.ok("documents:snapshot", json!({"document_id": "d", "version": 1})).await;
    assert_eq!(snap["document"]["content"], "hello world");
    assert_eq!(snap["document"]["updated_by"], "alice");
    let snap = bob.ok("documents:snapshot", json!({"document_id": "d", "version": 0})).await;
    assert_eq!(snap["document"]["content"], "hello", "version 0 is the content it was created with");

    // The same over HTTP.
    let api = Http::new(server.http_url(""));
    let r = api.call("GET", "/api/documents/d/history?after_version=1&limit=5", Some(KEY), None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["changes"].as_array().unwrap().len(), 1);
    assert_eq!((r.body["changes"][0]["version"].clone(), r.body["has_more"].clone()), (json!(2), json!(false)));
    let r = api.call("GET", "/api/documents/d/history?limit=1001", Some(KEY), None).await;
    assert_eq!((r.status, r.body["details"]["field"].clone()), (400, json!("limit")));
    let r = api.call("GET", "/api/documents/d/history?after_version=3", Some(KEY), None).await;
    assert_eq!((r.status, r.body["code"].clone()), (404, json!("NOT_FOUND")));
    let r = api.call("GET", "/api/documents/nope/history", Some(KEY), None).await;
    assert_eq!(r.status, 404);
    server.stop().await;
}

#[tokio::test]
async fn refusals_name_their_cause() {
    let server = TestServer::start_with(|o| {
        tuned(o);
        o.max_document_bytes = 64;
    });
    let mut owner = server.client("owner").await;
    owner.ok("documents:create", json!({"document_id": "d", "content": "x".repeat(60)})).await;
    owner.ok("documents:share", json!({"document_id": "d", "user_id": "viewer", "role": "viewer"})).await;
    let op = |base: i64, ops: Value| json!({"document_id": "d", "base_version": base, "ops": ops});

    // Needs edit rights (not a join), like documents:update.
    owner.ok("documents:op", op(0, json!(["a"]))).await;
    let e = owner.fails("documents:op", op(2, json!(["a"])), "VERSION_CONFLICT").await;
    assert_eq!(e["details"]["current_version"], 1);
    for bad in [json!([62, "a"]), json!([0]), json!(["a", {"d": 0}]), json!({"d": 1}), json!("a"), json!([1.0]), json!([{"x": 1}])] {
        let e = owner.fails("documents:op", op(1, bad.clone()), "INVALID_INPUT").await;
        assert_eq!(e["details"]["field"], "ops", "{bad}");
    }
    // The result would be 65 bytes; the document may have 64.
    let e = owner.fails("documents:op", op(1, json!(["abcd"])), "PAYLOAD_TOO_LARGE").await;
    assert_eq!(e["details"]["field"], "ops");
    // Inserting more than a document may hold is refused before anything.
    let e = owner.fails("documents:op", op(1, json!(["y".repeat(65)])), "PAYLOAD_TOO_LARGE").await;
    assert_eq!(e["details"]["field"], "ops");
    let mut viewer = server.client("viewer").await;
    viewer.fails("documents:op", op(1, json!(["v"])), "PERMISSION_DENIED").await;
    viewer.ok("documents:join", json!({"document_id": "d"})).await;
    viewer.fails("documents:op", op(1, json!(["v"])), "PERMISSION_DENIED").await;
    let mut stranger = server.client("stranger").await;
    stranger.fails("documents:op", op(1, json!(["s"])), "PERMISSION_DENIED").await;
    stranger.fails("documents:op", json!({"document_id": "nope", "base_version": 0, "ops": []}), "NOT_FOUND").await;

    // History and snapshots need read access, not a join.
    let page = viewer.ok("documents:history", json!({"document_id": "d"})).await;
    assert_eq!(page["changes"].as_array().unwrap().len(), 1);
    stranger.fails("documents:history", json!({"document_id": "d"}), "PERMISSION_DENIED").await;
    stranger.fails("documents:snapshot", json!({"document_id": "d", "version": 0}), "PERMISSION_DENIED").await;
    let e = viewer.fails("documents:snapshot", json!({"document_id": "d", "version": 2}), "NOT_FOUND").await;
    assert!(e["message"].as_str().unwrap().contains("at version 1"), "{e}");
    viewer.fails("documents:history", json!({"document_id": "d", "after_version": 2}), "NOT_FOUND").await;
    viewer.fails("documents:history", json!({"document_id": "nope"}), "NOT_FOUND").await;
    let e = viewer.fails("documents:history", json!({"document_id": "d", "limit": 1001}), "INVALID_INPUT").await;
    assert_eq!(e["details"]["field"], "limit");
    let page = viewer.ok("documents:history", json!({"document_id": "d", "after_version": 1})).await;
    assert_eq!((page["changes"].as_array().unwrap().len(), page["has_more"].clone()), (0, json!(false)));
    server.stop().await;
}

#[tokio::test]
async fn whole_content_updates_are_history_and_operations_rebase_over_them() {
    let server = server();
    let mut alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    alice.ok("documents:create", json!({"document_id": "d", "content": "abc"})).await;
    alice.ok("documents:share", json!({"document_id": "d", "user_id": "bob", "role": "editor"})).await;
    alice.ok("documents:join", json!({"document_id": "d"})).await;
    bob.ok("documents:join", json!({"document_id": "d"})).await;

    let ack = alice.ok("documents:update", json!({"document_id": "d", "content": "new", "version": 1})).await;
    assert_eq!(ack, json!({"document_id": "d", "version": 1}));
    assert_eq!(bob.expect_push("documents:updated", "document:d").await["document"]["content"], "new");
    // Bob's operation, made on "abc", survives the replacement.
    let ack = bob.ok("documents:op", json!({"document_id": "d", "base_version": 0, "ops": [3, "!"]})).await;
    assert_eq!((ack["version"].clone(), ack["ops"].clone()), (json!(2), json!([3, "!"])));
    assert_eq!(alice.expect_push("documents:op", "document:d").await["version"], 2);
    // Updates still name the version they create, counting operations.
    let e = alice.fails("documents:update", json!({"document_id": "d", "content": "x", "version": 2}), "VERSION_CONFLICT").await;
    assert_eq!(e["details"]["current_version"], 2);
    alice.ok("documents:update", json!({"document_id": "d", "content": "final", "version": 3})).await;

    let page = bob.ok("documents:history", json!({"document_id": "d"})).await;
    let ops: Vec<Value> = page["changes"].as_array().unwrap().iter().map(|c| c["ops"].clone()).collect();
    assert_eq!(ops, vec![json!(["new", {"d": 3}]), json!([3, "!"]), json!(["final", {"d": 4}])]);
    let snap = bob.ok("documents:snapshot", json!({"document_id": "d", "version": 2})).await;
    assert_eq!(snap["document"]["content"], "new!");
    server.stop().await;
}

/// After a commit the room holds the next group for the connections it
/// just acked (so that busy editors' edits commit together), but never
/// longer than that commit took: an author who goes quiet holds nobody.
/// The setting's own ceiling is set far above any commit here, so only
/// the commit's duration ends each hold.
#[tokio::test]
async fn an_author_who_goes_quiet_after_an_ack_does_not_hold_the_next_edits() {
    let server = TestServer::start_with(|o| {
        tuned(o);
        o.edit_gather_ms = 600_000;
    });
    let mut alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    alice.ok("documents:create", json!({"document_id": "d", "content": ""})).await;
    alice.ok("documents:share", json!({"document_id": "d", "user_id": "bob", "role": "editor"})).await;
    // Appends `s` to a document of `len` characters.
    let append = |len: i64, s: &str| if len == 0 { json!([s]) } else { json!([len, s]) };
    let mut version = 0;
    for round in 0..20 {
        // Alice's ack starts a hold for Alice, who sends nothing more this
        // round: Bob's edits must go out when it ends.
        let ack = alice.ok("documents:op", json!({"document_id": "d", "base_version": version, "ops": append(version, "a")})).await;
        assert_eq!(ack["version"], version + 1, "round {round}");
        for _ in 0..2 {
            version += 1;
            let ack = bob.ok("documents:op", json!({"document_id": "d", "base_version": version, "ops": append(version, "b")})).await;
            assert_eq!(ack["version"], version + 1, "round {round}");
        }
        version += 1;
    }
    let doc = alice.ok("documents:snapshot", json!({"document_id": "d", "version": version})).await;
    assert_eq!(doc["document"]["content"], "abb".repeat(20));
    server.stop().await;
}

/// Edits one connection sends without waiting for acks join its room's
/// group in flight while the group commit has not taken it, or queue
/// behind it: either way in the order they were sent.
#[tokio::test]
async fn edits_sent_without_waiting_keep_their_order() {
    let server = server();
    let mut alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    alice.ok("documents:create", json!({"document_id": "d", "content": ""})).await;
    alice.ok("documents:share", json!({"document_id": "d", "user_id": "bob", "role": "viewer"})).await;
    bob.ok("documents:join", json!({"document_id": "d"})).await;
    let mut version = 0;
    for round in 0..10 {
        let updates: Vec<Value> = (1..=8)
            .map(|i| json!({"document_id": "d", "content": format!("r{round}v{i}"), "version": version + i}))
            .collect();
        let first = alice.send_request("documents:update", updates[0].clone()).await;
        let rest: Vec<(&str, Value)> = updates[1..].iter().map(|u| ("documents:update", u.clone())).collect();
        let mut refs = vec![first];
        refs.extend(alice.send_together(&rest).await);
        for (i, r) in refs.into_iter().enumerate() {
            let ack = alice.response(r).await.unwrap_or_else(|e| panic!("round {round}, update {}: {e}", i + 1));
            assert_eq!(ack["version"], version + i as i64 + 1, "round {round}");
        }
        for i in 1..=8 {
            let pushed = bob.expect_push("documents:updated", "document:d").await;
            assert_eq!(pushed["document"]["content"], format!("r{round}v{i}"));
        }
        version += 8;
    }
    let page = alice.ok("documents:history", json!({"document_id": "d", "after_version": version - 8})).await;
    let versions: Vec<i64> = page["changes"].as_array().unwrap().iter().map(|c| c["version"].as_i64().unwrap()).collect();
    assert_eq!(versions, (version - 7..=version).collect::<Vec<_>>());
    let snap = alice.ok("documents:snapshot", json!({"document_id": "d", "version": version})).await;
    assert_eq!(snap["document"]["content"], "r9v8");
    server.stop().await;
}

/// A history page stops at 4 MiB of operation JSON (at least one change):
/// eight whole-content updates of 900 KB come back four to a page, over
/// the socket and over HTTP, and paging through gives every one in order.
async fn history_pages_stop_at_their_size(server: &TestServer) {
    const SIZE: usize = 900_000;
    let mut owner = server.client("owner").await;
    owner.ok("documents:create", json!({"document_id": "big"})).await;
    for version in 1..=8_u8 {
        let content = char::from(b'a' + version).to_string().repeat(SIZE);
        owner.ok("documents:update", json!({"document_id": "big", "content": content, "version": version})).await;
    }
    let api = Http::new(server.http_url(""));
    let mut after = 0;
    let mut pages = Vec::new();
    while after < 8 {
        let page = owner.ok("documents:history", json!({"document_id": "big", "after_version": after, "limit": 1000})).await;
        let http = api.call("GET", &format!("/api/documents/big/history?after_version={after}&limit=1000"), Some(KEY), None).await.body;
        assert_eq!(http, page, "the same page over HTTP");
        let changes = page["changes"].as_array().unwrap();
        let versions: Vec<i64> = changes.iter().map(|c| c["version"].as_i64().unwrap()).collect();
        assert_eq!(versions, ((after + 1)..=(after + versions.len() as i64)).collect::<Vec<_>>());
        for c in changes {
            let letter = char::from(b'a' + c["version"].as_u64().unwrap() as u8);
            let inserted = c["ops"].as_array().unwrap().iter().find_map(Value::as_str);
            assert_eq!(inserted.map(|t| (t.len(), t.starts_with(letter))), Some((SIZE, true)));
        }
        after += versions.len() as i64;
        assert_eq!(page["has_more"], after < 8, "after version {after}");
        pages.push(versions.len());
    }
    assert_eq!(pages, vec![4, 4]);
}

#[tokio::test]
async fn history_pages_stop_at_their_size_on_sqlite() {
    let server = server();
    history_pages_stop_at_their_size(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn history_pages_stop_at_their_size_on_postgres() {
    let Some(db) = TempDatabase::create() else { return };
    let server = postgres_server(&db);
    history_pages_stop_at_their_size(&server).await;
    server.stop().await;
}

/// The versions of document `id` whose whole content the store keeps,
/// read from the database itself.
fn snapshot_versions(database: &str, id: &str) -> Vec<i64> {
    use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl, SqliteConnection};
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        version: i64,
    }
    let query = diesel::sql_query(format!("SELECT version FROM document_snapshots WHERE document_id = '{id}' ORDER BY version"));
    let rows: Vec<Row> = if database.starts_with("postgres") {
        query.load(&mut PgConnection::establish(database).expect("postgres"))
    } else {
        query.load(&mut SqliteConnection::establish(database).expect("sqlite"))
    }
    .expect("snapshot versions");
    rows.into_iter().map(|r| r.version).collect()
}

/// Whole-content updates of 900 KB: four of them stay under the 4 MiB of
/// changes after which a snapshot is due whatever the version, the fifth
/// reaches it. A room started on the history counts what came since the
/// last snapshot from the store.
async fn snapshots_are_taken_by_size(start: impl Fn() -> TestServer, database: &str) {
    const SIZE: usize = 900_000;
    let letter = |version: u8| char::from(b'a' + version);
    let update = |version: u8| json!({"document_id": "big", "content": letter(version).to_string().repeat(SIZE), "version": version});
    let server = start();
    let mut owner = server.client("owner").await;
    owner.ok("documents:create", json!({"document_id": "big"})).await;
    for version in 1..=6 {
        owner.ok("documents:update", update(version)).await;
    }
    assert_eq!(snapshot_versions(database, "big"), [0, 5]);
    server.stop().await;

    let server = start();
    let mut owner = server.client("owner").await;
    for version in 7..=11 {
        owner.ok("documents:update", update(version)).await;
    }
    assert_eq!(snapshot_versions(database, "big"), [0, 5, 10], "version 6 counted after the restart");
    for version in [4_u8, 5, 6, 9, 10, 11] {
        let read = owner.ok("documents:snapshot", json!({"document_id": "big", "version": version})).await;
        let content = read["document"]["content"].as_str().unwrap();
        assert_eq!((content.len(), content.chars().all(|c| c == letter(version))), (SIZE, true), "version {version}");
    }
    server.stop().await;
}

#[tokio::test]
async fn snapshots_are_taken_by_size_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huddle.db");
    snapshots_are_taken_by_size(|| TestServer::start_on(&path, tuned, jwt()), path.to_str().unwrap()).await;
}

#[tokio::test]
async fn snapshots_are_taken_by_size_on_postgres() {
    let Some(db) = TempDatabase::create() else { return };
    snapshots_are_taken_by_size(|| postgres_server(&db), &db.url).await;
}

/// Bytes the process has read through system calls (files and sockets).
fn bytes_read(pid: u32) -> u64 {
    proc_number(pid, "io", "rchar:")
}

/// An operation on a version older than its room keeps, sent with an
/// `op_id`, may be a resend of a change stored since: the room asks the
/// store, which looks through the `op_id`s of the versions after it. Such
/// a lookup, and the sizing of a history page, read the rows' first pages
/// only, not their operations (a change of a long document is a megabyte
/// of them, on overflow pages SQLite read in full to step over a row of a
/// WITHOUT ROWID table).
#[tokio::test]
async fn a_resend_lookup_reads_the_op_ids_not_the_operations() {
    const SIZE: usize = 900_000;
    let dir = tempfile::tempdir().unwrap();
    let server = Process::start(&dir.path().join("huddle.db"), &[("HUDDLE_RATE_PER_SECOND", "100000"), ("HUDDLE_RATE_BURST", "100000")]);
    let mut owner = Client::authenticated(&server.ws_url(), &token("owner")).await;
    owner.ok("documents:create", json!({"document_id": "big"})).await;
    for version in 1..=12_u8 {
        let content = char::from(b'a' + version).to_string().repeat(SIZE);
        owner.ok("documents:update", json!({"document_id": "big", "content": content, "version": version})).await;
    }
    // The room keeps 4 MiB of changes (versions 9 to 12), so the store
    // looks through versions 3 to 12: 9 MB of operations.
    let before = bytes_read(server.child.id());
    let op = json!({"document_id": "big", "base_version": 2, "ops": ["x"], "op_id": "late"});
    let e = owner.fails("documents:op", op, "VERSION_CONFLICT").await;
    assert_eq!(e["details"]["current_version"], 12);
    let read = bytes_read(server.child.id()) - before;
    assert!(read < 2 << 20, "the lookup read {read} bytes");
    // A history page reads the sizes of the thousand changes it may hold
    // from their headers, then the four that fit (3.6 MB).
    let before = bytes_read(server.child.id());
    let page = owner.ok("documents:history", json!({"document_id": "big", "after_version": 0, "limit": 1000})).await;
    assert_eq!(page["changes"].as_array().map(Vec::len), Some(4));
    let read = bytes_read(server.child.id()) - before;
    assert!(read < 5 << 20, "the page read {read} bytes");
}

/// A frame is parsed into a tree only up to 100,000 JSON values: a frame
/// of the largest size made of deletes was a tree of hundreds of
/// megabytes before anything about it was checked.
#[tokio::test]
async fn a_frame_of_too_many_values_is_refused_while_it_is_parsed() {
    let server = server();
    let mut owner = server.client("owner").await;
    owner.ok("documents:create", json!({"document_id": "d", "content": "x".repeat(60_000)})).await;
    let op = |deletes: usize| {
        let ops = vec![r#"{"d":1}"#; deletes].join(",");
        format!(r#"{{"event":"documents:op","data":{{"document_id":"d","base_version":0,"ops":[{ops}]}},"ref":1}}"#)
    };
    // Seven values besides the deletes (the envelope, its event, ref and
    // data, and data's three members), two per delete: 100,001.
    owner.send_text(&op(49_997)).await;
    let error = owner.expect_event("error").await;
    assert_eq!(error["data"]["code"], "PAYLOAD_TOO_LARGE", "{error}");
    assert!(error["data"]["message"].as_str().unwrap().contains("100000 JSON values"), "{error}");
    // The connection goes on, and an operation within the bound is one.
    owner.ok("ping", json!({})).await;
    owner.send_text(&op(49_996)).await;
    let ack = owner.expect_event("ack").await;
    assert_eq!(ack["data"], json!({"document_id": "d", "version": 1, "ops": [{"d": 49_996}]}), "deletes normalise into one");
    server.stop().await;
}

#[tokio::test]
async fn an_operation_resent_after_a_reconnect_is_applied_once() {
    let server = TestServer::start_with(|o| {
        tuned(o);
        o.max_recovery = 3;
    });
    let mut alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    alice.ok("documents:create", json!({"document_id": "d", "content": "one"})).await;
    alice.ok("documents:share", json!({"document_id": "d", "user_id": "bob", "role": "editor"})).await;
    alice.ok("documents:join", json!({"document_id": "d"})).await;
    bob.ok("documents:join", json!({"document_id": "d"})).await;

    // Alice's operation is committed (Bob sees it), and she loses her
    // connection before reading its ack.
    let op = json!({"document_id": "d", "base_version": 0, "ops": [3, " two"], "op_id": "op-1"});
    alice.send_request("documents:op", op.clone()).await;
    assert_eq!(bob.expect_push("documents:op", "document:d").await["version"], 1);
    alice.drop_connection();

    // She comes back, recovers what she missed (her own operation among
    // it), and sends the operation again: the original ack, nothing new.
    let mut alice = server.client("alice").await;
    let joined = alice.ok("documents:join", json!({"document_id": "d", "since_version": 0})).await;
    assert_eq!(joined["recovered"], true);
    assert_eq!(joined["changes"], json!([{"version": 1, "ops": [3, " two"], "user_id": "alice", "created_at": joined["changes"][0]["created_at"]}]));
    let original = json!({"document_id": "d", "version": 1, "ops": [3, " two"]});
    assert_eq!(alice.ok("documents:op", op.clone()).await, original);
    // Twice on one connection, too.
    let refs = alice.send_together(&[("documents:op", op.clone()), ("documents:op", op.clone())]).await;
    for r in refs {
        assert_eq!(alice.response(r).await.unwrap(), original);
    }
    bob.ok("ping", json!({})).await;
    assert!(bob.kept(|f| f["event"] == "documents:op").is_empty(), "nothing pushed again");

    // Another user's op_id is another operation.
    let ack = bob.ok("documents:op", json!({"document_id": "d", "base_version": 1, "ops": ["!"], "op_id": "op-1"})).await;
    assert_eq!(ack["version"], 2);

    // After more changes than the room keeps (max_recovery = 3), the store
    // still knows the original.
    for i in 0..4 {
        bob.ok("documents:op", json!({"document_id": "d", "base_version": 2 + i, "ops": ["b"]})).await;
    }
    assert_eq!(alice.ok("documents:op", op.clone()).await, original);
    // And without an op_id, so old a base is a conflict.
    let e = alice.fails("documents:op", json!({"document_id": "d", "base_version": 1, "ops": ["x"]}), "VERSION_CONFLICT").await;
    assert_eq!(e["details"]["current_version"], 6);
    let db_path = server.db_path.clone();
    let dir = server.stop().await;

    // Across a restart too: the room starts from the store.
    let server = TestServer::start_on(&db_path, tuned, jwt());
    let mut alice = server.client("alice").await;
    assert_eq!(alice.ok("documents:op", op).await, original);
    let page = alice.ok("documents:history", json!({"document_id": "d"})).await;
    let versions: Vec<i64> = page["changes"].as_array().unwrap().iter().map(|c| c["version"].as_i64().unwrap()).collect();
    assert_eq!(versions, (1..=6).collect::<Vec<_>>());
    server.stop().await;
    drop(dir);
}

#[tokio::test]
async fn a_join_since_a_version_recovers_what_it_missed() {
    let server = TestServer::start_with(|o| {
        tuned(o);
        o.max_recovery = 3;
    });
    let mut alice = server.client("alice").await;
    alice.ok("documents:create", json!({"document_id": "d"})).await;
    for v in 0..5 {
        alice.ok("documents:op", json!({"document_id": "d", "base_version": v, "ops": ["x"]})).await;
    }
    let recover = |since: i64| json!({"document_id": "d", "since_version": since});
    let mut bob = server.client("alice").await;
    let joined = bob.ok("documents:join", recover(2)).await;
    assert_eq!(joined["recovered"], true);
    let versions: Vec<&Value> = joined["changes"].as_array().unwrap().iter().map(|c| &c["version"]).collect();
    assert_eq!(versions, [&json!(3), &json!(4), &json!(5)]);
    assert_eq!(joined["document"]["version"], 5);
    let joined = bob.ok("documents:join", recover(5)).await;
    assert_eq!((joined["recovered"].clone(), joined["changes"].clone()), (json!(true), json!([])));
    // More than max_recovery behind, or ahead of the document: the document only.
    for since in [1, 6] {
        let joined = bob.ok("documents:join", recover(since)).await;
        assert_eq!(joined["recovered"], false, "since {since}");
        assert!(joined.get("changes").is_none());
        assert_eq!(joined["document"]["content"], "xxxxx");
    }
    // Without since_version, neither field.
    let joined = bob.ok("documents:join", json!({"document_id": "d"})).await;
    assert!(joined.get("recovered").is_none() && joined.get("changes").is_none());
    server.stop().await;
}

/// The changes since a version come with a join only while they weigh no
/// more than the document (or 64 KiB): past that, the document the ack
/// carries anyway is the recovery, and the room does not encode a window
/// of changes for every join a member cares to send.
#[tokio::test]
async fn a_join_gets_the_document_instead_of_changes_that_outweigh_it() {
    let server = server();
    let mut alice = server.client("alice").await;
    alice.ok("documents:create", json!({"document_id": "d"})).await;
    for version in 1..=3_u8 {
        let content = char::from(b'a' + version).to_string().repeat(100_000);
        alice.ok("documents:update", json!({"document_id": "d", "content": content, "version": version})).await;
    }
    alice.ok("documents:update", json!({"document_id": "d", "content": "short", "version": 4})).await;
    let mut again = server.client("alice").await;
    let joined = again.ok("documents:join", json!({"document_id": "d", "since_version": 0})).await;
    assert_eq!((joined["recovered"].clone(), joined["document"]["content"].clone()), (json!(false), json!("short")));
    assert!(joined.get("changes").is_none());
    // The last change alone is small: recovered.
    let joined = again.ok("documents:join", json!({"document_id": "d", "since_version": 3})).await;
    assert_eq!(joined["recovered"], true);
    assert_eq!(joined["changes"][0]["ops"], json!(["short", {"d": 100_000}]));
    server.stop().await;
}

/// Two engine processes sharing one database, as in cluster mode: each
/// room's idea of the current version goes stale whenever the other
/// commits. Neither may lose or reorder a change: a room whose commit
/// finds the document moved catches up from the history table (pushing
/// what it missed to its members) and rebases its waiting operations.
#[tokio::test]
async fn two_engines_on_one_database_keep_one_history() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let one = TestServer::start_on(&path, tuned, jwt());
    let two = TestServer::start_on(&path, tuned, jwt());
    let mut owner = one.client("owner").await;
    owner.ok("documents:create", json!({"document_id": "d", "content": "shared"})).await;
    owner.ok("documents:share", json!({"document_id": "d", "user_id": "e2", "role": "editor"})).await;
    // Without a cluster between them, one engine can keep committing first:
    // the other's edits may come back SERVER_BUSY, and are sent again.
    let a = tokio::spawn(edit_randomly(one.client("owner").await, "d".into(), 7, 60, 0, OnBusy::Retry));
    let b = tokio::spawn(edit_randomly(two.client("e2").await, "d".into(), 8, 60, 0, OnBusy::Retry));
    let (mut a, va) = a.await.unwrap();
    let (mut b, vb) = b.await.unwrap();
    // Each saw a gapless sequence up to its last ack. One more operation
    // on each side makes each room catch up with the other's last ones.
    for (c, v) in [(&mut a, &va), (&mut b, &vb)] {
        c.ok("documents:op", json!({"document_id": "d", "base_version": v.version(), "ops": []})).await;
    }
    // An operation committed through one engine and resent through the
    // other, whose room has not seen it yet: its commit finds the document
    // moved, catches up, and the store answers with the original.
    let late = json!({"document_id": "d", "base_version": va.version() + 1, "ops": ["late "], "op_id": "late"});
    let first = a.ok("documents:op", late.clone()).await;
    let mut owner_two = two.client("owner").await;
    let again = owner_two.ok("documents:op", json!({"document_id": "d", "base_version": 0, "ops": [], "op_id": "late"})).await;
    assert_eq!(again, first);
    let changes = history(&mut owner, "d").await;
    assert_eq!(changes.len(), 123, "every operation is one version, the resent one once");
    let replay = replay("shared", &changes);
    assert!(replay.text().starts_with("late "));
    // What each editor integrated is a prefix of the one history.
    for v in [&va, &vb] {
        let from = v.start as usize;
        assert_eq!(v.ops[..], replay.ops[from..from + v.ops.len()]);
    }
    let api = Http::new(one.http_url(""));
    let stored = api.call("GET", "/api/documents/d", Some(KEY), None).await.body;
    assert_eq!((stored["document"]["content"].as_str(), stored["document"]["version"].as_i64()), (Some(replay.text()), Some(123)));
    one.stop().await;
    two.stop().await;
}
