//! Document rooms over real sockets: creation, joining, optimistic
//! versioning, roles, sharing and revocation.

mod common;

use common::TestServer;
use serde_json::json;

#[tokio::test]
async fn create_join_update_and_push_to_the_others() {
    let server = TestServer::start();
    let mut alice = server.client("alice").await;
    let created = alice.ok("documents:create", json!({"document_id": "doc1", "title": "Plan", "content": "v0"})).await;
    let doc = &created["document"];
    assert_eq!((doc["id"].clone(), doc["version"].clone(), doc["updated_by"].clone()), (json!("doc1"), json!(0), json!("alice")));
    assert_eq!((doc["title"].clone(), doc["content"].clone()), (json!("Plan"), json!("v0")));
    assert!(doc["updated_at"].as_str().unwrap().ends_with('Z'));
    alice.fails("documents:create", json!({"document_id": "doc1"}), "ALREADY_EXISTS").await;
    let defaults = alice.ok("documents:create", json!({"document_id": "doc2"})).await;
    assert_eq!((defaults["document"]["title"].clone(), defaults["document"]["content"].clone()), (json!(""), json!("")));

    alice.ok("documents:share", json!({"document_id": "doc1", "user_id": "bob", "role": "editor"})).await;
    let mut bob = server.client("bob").await;
    let joined = alice.ok("documents:join", json!({"document_id": "doc1"})).await;
    assert_eq!((joined["room"].clone(), joined["role"].clone()), (json!("document:doc1"), json!("owner")));
    let joined = bob.ok("documents:join", json!({"document_id": "doc1"})).await;
    assert_eq!(joined["role"], "editor");
    assert_eq!(joined["document"]["content"], "v0");
    assert_eq!(joined["members"].as_array().unwrap().len(), 2);
    assert_eq!(alice.expect_push("user:joined", "document:doc1").await, json!({"user_id": "bob", "name": "bob (name)"}));

    let ack = bob.ok("documents:update", json!({"document_id": "doc1", "content": "v1", "version": 1})).await;
    assert_eq!(ack, json!({"document_id": "doc1", "version": 1}));
    let pushed = alice.expect_push("documents:updated", "document:doc1").await;
    assert_eq!(pushed["user_id"], "bob");
    assert_eq!((pushed["document"]["content"].clone(), pushed["document"]["version"].clone()), (json!("v1"), json!(1)));
    assert_eq!(pushed["document"]["updated_by"], "bob");
    // The sender gets no push of its own update: its next frame is the
    // answer to its next request.
    let pong = bob.request("ping", json!({})).await.unwrap();
    assert!(pong["server_time"].is_string());
    assert!(bob.kept(|f| f["event"] == "documents:updated").is_empty());

    let left = bob.ok("documents:leave", json!({"document_id": "doc1"})).await;
    assert_eq!(left["room"], "document:doc1");
    assert_eq!(alice.expect_push("user:left", "document:doc1").await, json!({"user_id": "bob"}));
    bob.fails("documents:leave", json!({"document_id": "doc1"}), "NOT_JOINED").await;
    server.stop().await;
}

#[tokio::test]
async fn versions_must_be_current_plus_one() {
    let server = TestServer::start();
    let mut alice = server.client("alice").await;
    alice.ok("documents:create", json!({"document_id": "v"})).await;
    // An updater needs edit rights, not a join.
    alice.ok("documents:update", json!({"document_id": "v", "content": "a", "version": 1})).await;
    let e = alice.fails("documents:update", json!({"document_id": "v", "content": "b", "version": 1}), "VERSION_CONFLICT").await;
    assert_eq!(e["details"]["current_version"], 1);
    assert_eq!(e["message"], "document v is at version 1");
    let e = alice.fails("documents:update", json!({"document_id": "v", "content": "b", "version": 5}), "VERSION_CONFLICT").await;
    assert_eq!(e["details"]["current_version"], 1);
    for bad in [json!(0), json!(-1), json!(1.5), json!(2.0), json!("2"), json!(null)] {
        let e = alice.fails("documents:update", json!({"document_id": "v", "content": "b", "version": bad}), "INVALID_INPUT").await;
        assert_eq!(e["details"]["field"], "version", "{bad}");
    }
    alice.fails("documents:update", json!({"document_id": "nope", "content": "b", "version": 1}), "NOT_FOUND").await;
    alice.fails("documents:join", json!({"document_id": "nope"}), "NOT_FOUND").await;
    let joined = alice.ok("documents:join", json!({"document_id": "v"})).await;
    assert_eq!((joined["document"]["version"].clone(), joined["document"]["content"].clone()), (json!(1), json!("a")));
    server.stop().await;
}

#[tokio::test]
async fn of_two_concurrent_edits_of_one_version_exactly_one_wins() {
    let server = TestServer::start();
    let mut owner = server.client("owner").await;
    owner.ok("documents:create", json!({"document_id": "race"})).await;
    for u in ["e1", "e2", "e3", "e4"] {
        owner.ok("documents:share", json!({"document_id": "race", "user_id": u, "role": "editor"})).await;
    }
    let mut editors = Vec::new();
    for u in ["e1", "e2", "e3", "e4"] {
        editors.push(server.client(u).await);
    }
    for round in 1..=20 {
        // Every editor sends version `round` at once.
        let mut refs = Vec::new();
        for (i, e) in editors.iter_mut().enumerate() {
            refs.push(e.send_request("documents:update", json!({"document_id": "race", "content": format!("r{round} by {i}"), "version": round})).await);
        }
        let mut wins = 0;
        for (e, r) in editors.iter_mut().zip(refs) {
            match e.response(r).await {
                Ok(ack) => {
                    assert_eq!(ack["version"], round);
                    wins += 1;
                }
                Err(err) => {
                    assert_eq!(err["code"], "VERSION_CONFLICT");
                    assert_eq!(err["details"]["current_version"], round);
                }
            }
        }
        assert_eq!(wins, 1, "round {round}");
    }
    let doc = owner.ok("documents:join", json!({"document_id": "race"})).await;
    assert_eq!(doc["document"]["version"], 20);
    server.stop().await;
}

#[tokio::test]
async fn roles_decide_who_may_read_write_and_share() {
    let server = TestServer::start();
    let mut owner = server.client("owner").await;
    owner.ok("documents:create", json!({"document_id": "r", "content": "x"})).await;
    owner.ok("documents:share", json!({"document_id": "r", "user_id": "viewer", "role": "viewer"})).await;
    owner.ok("documents:share", json!({"document_id": "r", "user_id": "editor", "role": "editor"})).await;

    let mut viewer = server.client("viewer").await;
    let joined = viewer.ok("documents:join", json!({"document_id": "r"})).await;
    assert_eq!(joined["role"], "viewer");
    // A viewer is refused even with the right version, and access comes
    // before the version check.
    viewer.fails("documents:update", json!({"document_id": "r", "content": "y", "version": 1}), "PERMISSION_DENIED").await;
    viewer.fails("documents:update", json!({"document_id": "r", "content": "y", "version": 9}), "PERMISSION_DENIED").await;
    viewer.fails("documents:share", json!({"document_id": "r", "user_id": "viewer", "role": "owner"}), "PERMISSION_DENIED").await;

    let mut editor = server.client("editor").await;
    editor.ok("documents:update", json!({"document_id": "r", "content": "y", "version": 1})).await;
    editor.fails("documents:share", json!({"document_id": "r", "user_id": "x", "role": "viewer"}), "PERMISSION_DENIED").await;

    let mut stranger = server.client("stranger").await;
    stranger.fails("documents:join", json!({"document_id": "r"}), "PERMISSION_DENIED").await;
    stranger.fails("documents:update", json!({"document_id": "r", "content": "z", "version": 2}), "PERMISSION_DENIED").await;

    let e = owner.fails("documents:share", json!({"document_id": "r", "user_id": "x", "role": "admin"}), "INVALID_INPUT").await;
    assert_eq!(e["details"]["field"], "role");
    // The last owner can be neither revoked nor demoted...
    let e = owner.fails("documents:share", json!({"document_id": "r", "user_id": "owner", "role": "none"}), "INVALID_INPUT").await;
    assert_eq!(e["details"]["field"], "role");
    owner.fails("documents:share", json!({"document_id": "r", "user_id": "owner", "role": "editor"}), "INVALID_INPUT").await;
    // ...but once there is a second owner, either may step down.
    let ack = owner.ok("documents:share", json!({"document_id": "r", "user_id": "editor", "role": "owner"})).await;
    assert_eq!(ack, json!({"document_id": "r", "user_id": "editor", "role": "owner"}));
    owner.ok("documents:share", json!({"document_id": "r", "user_id": "owner", "role": "viewer"})).await;
    owner.fails("documents:update", json!({"document_id": "r", "content": "w", "version": 2}), "PERMISSION_DENIED").await;
    owner.fails("documents:share", json!({"document_id": "nope", "user_id": "x", "role": "viewer"}), "NOT_FOUND").await;
    server.stop().await;
}

#[tokio::test]
async fn revoking_access_removes_the_users_connections_from_the_room() {
    let server = TestServer::start();
    let mut owner = server.client("owner").await;
    owner.ok("documents:create", json!({"document_id": "s"})).await;
    owner.ok("documents:share", json!({"document_id": "s", "user_id": "bob", "role": "editor"})).await;
    owner.ok("documents:join", json!({"document_id": "s"})).await;
    let mut bob1 = server.client("bob").await;
    let mut bob2 = server.client("bob").await;
    bob1.ok("documents:join", json!({"document_id": "s"})).await;
    bob2.ok("documents:join", json!({"document_id": "s"})).await;
    assert_eq!(owner.expect_push("user:joined", "document:s").await["user_id"], "bob");

    let ack = owner.ok("documents:share", json!({"document_id": "s", "user_id": "bob", "role": "none"})).await;
    assert_eq!(ack["role"], "none");
    for bob in [&mut bob1, &mut bob2] {
        let e = bob.expect_event("error").await;
        assert_eq!(e["room"], "document:s");
        assert_eq!(e["data"]["code"], "PERMISSION_DENIED");
        // Still connected, no longer a member, no longer allowed.
        bob.ok("ping", json!({})).await;
        bob.fails("documents:leave", json!({"document_id": "s"}), "NOT_JOINED").await;
        bob.fails("documents:join", json!({"document_id": "s"}), "PERMISSION_DENIED").await;
    }
    assert_eq!(owner.expect_push("user:left", "document:s").await["user_id"], "bob");
    // Bob gets no pushes from the room any more.
    owner.ok("documents:update", json!({"document_id": "s", "content": "secret", "version": 1})).await;
    bob1.ok("ping", json!({})).await;
    assert!(bob1.kept(|f| f["event"] == "documents:updated").is_empty());
    server.stop().await;
}

/// The room refuses stale updates itself, but it is not the record: two
/// engines share one database, and each must still accept the version that
/// follows a write made through the other.
#[tokio::test]
async fn a_room_defers_to_the_database_for_versions_it_has_not_seen() {
    let a = TestServer::start();
    let b = TestServer::start_on(&a.db_path, |_| {}, common::jwt());
    let mut owner = a.client("owner").await;
    owner.ok("documents:create", json!({"document_id": "shared"})).await;
    owner.ok("documents:share", json!({"document_id": "shared", "user_id": "viewer", "role": "viewer"})).await;
    owner.ok("documents:join", json!({"document_id": "shared"})).await;
    owner.ok("documents:update", json!({"document_id": "shared", "content": "a1", "version": 1})).await;

    // Engine A's room has seen version 1; a stale update is refused with
    // the version it knows, and a viewer still hears about its role.
    let e = owner.fails("documents:update", json!({"document_id": "shared", "content": "x", "version": 1}), "VERSION_CONFLICT").await;
    assert_eq!(e["details"]["current_version"], 1);
    let mut viewer = a.client("viewer").await;
    viewer.ok("documents:join", json!({"document_id": "shared"})).await;
    viewer.fails("documents:update", json!({"document_id": "shared", "content": "x", "version": 1}), "PERMISSION_DENIED").await;

    // Versions 2 and 3 are written through engine B.
    let mut other = b.client("owner").await;
    other.ok("documents:update", json!({"document_id": "shared", "content": "b2", "version": 2})).await;
    other.ok("documents:update", json!({"document_id": "shared", "content": "b3", "version": 3})).await;

    // Through A: version 2 loses in the database, which names version 3;
    // after that A's room knows 3 and refuses 3 itself; 4 wins.
    let e = owner.fails("documents:update", json!({"document_id": "shared", "content": "x", "version": 2}), "VERSION_CONFLICT").await;
    assert_eq!(e["details"]["current_version"], 3);
    let e = owner.fails("documents:update", json!({"document_id": "shared", "content": "x", "version": 3}), "VERSION_CONFLICT").await;
    assert_eq!(e["details"]["current_version"], 3);
    let ack = owner.ok("documents:update", json!({"document_id": "shared", "content": "a4", "version": 4})).await;
    assert_eq!(ack["version"], 4);
    // The viewer hears B's versions when A's room catches up with them,
    // as the whole-content updates they were, then A's.
    for (version, content) in [(2, "b2"), (3, "b3"), (4, "a4")] {
        let pushed = viewer.expect_push("documents:updated", "document:shared").await;
        assert_eq!((pushed["document"]["version"].clone(), pushed["document"]["content"].clone()), (json!(version), json!(content)));
        assert_eq!(pushed["document"]["updated_by"], "owner");
    }
    b.stop().await;
    a.stop().await;
}
