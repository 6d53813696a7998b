//! Awareness: per-connection states in document and chat rooms, coalesced,
//! cleared when the connection goes, listed in join acks, never stored.

mod common;

use common::{Client, TestServer};
use serde_json::{json, Value};

/// Joins `room` (`chat:<id>` or `document:<id>`) and returns the ack.
async fn join(c: &mut Client, room: &str) -> Value {
    match room.split_once(':') {
        Some(("chat", id)) => c.ok("chat:join", json!({"chat_id": id})).await,
        Some(("document", id)) => c.ok("documents:join", json!({"document_id": id})).await,
        _ => panic!("{room}"),
    }
}

async fn leave(c: &mut Client, room: &str) {
    match room.split_once(':') {
        Some(("chat", id)) => c.ok("chat:leave", json!({"chat_id": id})).await,
        Some(("document", id)) => c.ok("documents:leave", json!({"document_id": id})).await,
        _ => panic!("{room}"),
    };
}

/// A server with a document `plan` that everyone may edit, and the rooms
/// of both kinds the tests use.
async fn server_with_rooms() -> (TestServer, [&'static str; 2]) {
    let server = TestServer::start_with(|o| o.max_awareness_bytes = 64);
    let mut owner = server.client("owner").await;
    owner.ok("documents:create", json!({"document_id": "plan", "content": "x"})).await;
    for user in ["alice", "bob", "carol"] {
        owner.ok("documents:share", json!({"document_id": "plan", "user_id": user, "role": "editor"})).await;
    }
    drop(owner);
    (server, ["document:plan", "chat:general"])
}

#[tokio::test]
async fn a_burst_of_sets_is_coalesced_and_the_last_state_is_pushed_last() {
    let (server, rooms) = server_with_rooms().await;
    for room in rooms {
        let mut alice = server.client("alice").await;
        let mut bob = server.client("bob").await;
        join(&mut alice, room).await;
        join(&mut bob, room).await;
        let sets: Vec<(&str, Value)> =
            (0..100).map(|n| ("awareness:set", json!({"room": room, "state": {"cursor": n}}))).collect();
        let refs = alice.send_together(&sets).await;
        for r in refs {
            assert_eq!(alice.response(r).await.expect("set"), json!({}));
        }
        let mut seen = Vec::new();
        loop {
            let push = bob.expect_push("awareness", room).await;
            assert_eq!(push["session_id"], alice.session_id());
            assert_eq!(push["user_id"], "alice");
            let n = push["state"]["cursor"].as_i64().expect("a cursor");
            seen.push(n);
            if n == 99 {
                break;
            }
        }
        assert!(seen.len() <= 5, "{room}: 100 sets gave {} pushes: {seen:?}", seen.len());
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "{room}: {seen:?}");
        // The sender hears nothing of its own state.
        alice.ok("ping", json!({})).await;
        assert!(alice.kept(|f| f["event"] == "awareness").is_empty());
    }
    server.stop().await;
}

#[tokio::test]
async fn states_are_listed_in_join_acks_and_cleared_on_leave_and_on_drop() {
    let (server, rooms) = server_with_rooms().await;
    for room in rooms {
        let mut alice = server.client("alice").await;
        let mut bob = server.client("bob").await;
        join(&mut alice, room).await;
        let ack = join(&mut bob, room).await;
        assert_eq!(ack["awareness"], json!([]));
        alice.ok("awareness:set", json!({"room": room, "state": {"sel": [1, 4], "name": "Alice"}})).await;
        let pushed = bob.expect_push("awareness", room).await;
        let alices = json!({"session_id": alice.session_id(), "user_id": "alice", "state": {"name": "Alice", "sel": [1, 4]}});
        assert_eq!(pushed, alices);

        // A newcomer finds the others' states in its ack (not its own).
        let mut carol = server.client("carol").await;
        let ack = join(&mut carol, room).await;
        assert_eq!(ack["awareness"], json!([alices]));
        carol.ok("awareness:set", json!({"room": room, "state": {"typing": true}})).await;
        assert_eq!(bob.expect_push("awareness", room).await["state"], json!({"typing": true}));
        let ack = join(&mut carol, room).await;
        assert_eq!(ack["awareness"], json!([alices]), "a re-join lists the others only");

        // Leaving clears it for the others...
        leave(&mut alice, room).await;
        for c in [&mut bob, &mut carol] {
            let cleared = c.expect_push("awareness", room).await;
            assert_eq!(cleared, json!({"session_id": alice.session_id(), "user_id": "alice", "state": null}));
        }
        // ...and so does a dropped connection.
        let carols = carol.session_id().to_owned();
        carol.drop_connection();
        let cleared = bob.expect_push("awareness", room).await;
        assert_eq!(cleared, json!({"session_id": carols, "user_id": "carol", "state": null}));
        // A connection that never set a state leaves without a word.
        let mut carol_again = server.client("carol").await;
        join(&mut carol_again, room).await;
        leave(&mut carol_again, room).await;
        bob.ok("ping", json!({})).await;
        assert!(bob.kept(|f| f["event"] == "awareness").is_empty());
    }
    server.stop().await;
}

#[tokio::test]
async fn awareness_set_needs_membership_a_room_name_and_a_small_object() {
    let (server, rooms) = server_with_rooms().await;
    let mut alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    for room in rooms {
        alice.fails("awareness:set", json!({"room": room, "state": {}}), "NOT_JOINED").await;
        join(&mut alice, room).await;
        join(&mut bob, room).await;
        // 64 bytes as serialized is the limit here.
        let fits = json!({"k": "x".repeat(56)});
        assert_eq!(serde_json::to_string(&fits).unwrap().len(), 64);
        alice.ok("awareness:set", json!({"room": room, "state": fits})).await;
        assert_eq!(bob.expect_push("awareness", room).await["state"], fits);
        let e = alice.fails("awareness:set", json!({"room": room, "state": {"k": "x".repeat(57)}}), "PAYLOAD_TOO_LARGE").await;
        assert_eq!(e["details"]["field"], "state");
        for bad in [json!({"room": room, "state": "x"}), json!({"room": room, "state": [1]}), json!({"room": room})] {
            let e = alice.fails("awareness:set", bad, "INVALID_INPUT").await;
            assert_eq!(e["details"]["field"], "state");
        }
        let e = alice.fails("awareness:set", json!({"room": "plan", "state": null}), "INVALID_INPUT").await;
        assert_eq!(e["details"]["field"], "room");
        // Clearing by hand: the others hear null.
        alice.ok("awareness:set", json!({"room": room, "state": null})).await;
        assert_eq!(bob.expect_push("awareness", room).await["state"], Value::Null);
    }
    // A stranger to a private chat hears that first.
    let mut owner = server.client("owner").await;
    owner.ok("chat:create", json!({"chat_id": "secret", "private": true})).await;
    bob.fails("awareness:set", json!({"room": "chat:secret", "state": {}}), "PERMISSION_DENIED").await;
    server.stop().await;
}
