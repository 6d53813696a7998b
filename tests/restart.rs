//! Durability across a restart: everything acked is still there.

mod common;

use common::{jwt, token, Client, TestServer};
use serde_json::json;

#[tokio::test]
async fn a_restart_keeps_every_acked_message_and_version() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("huddle.db");
    let server = TestServer::start_on(&db, |_| {}, jwt());
    let mut alice = server.client("alice").await;
    alice.ok("chat:create", json!({"chat_id": "secret", "private": true, "members": ["bob"]})).await;
    alice.ok("chat:join", json!({"chat_id": "secret"})).await;
    let mut acked = Vec::new();
    for i in 0..40 {
        let m = alice.ok("chat:message", json!({"chat_id": "secret", "content": format!("m{i}"), "client_msg_id": format!("c{i}")})).await;
        acked.push(m["message"].clone());
    }
    alice.ok("documents:create", json!({"document_id": "plan", "title": "Plan"})).await;
    alice.ok("documents:share", json!({"document_id": "plan", "user_id": "bob", "role": "viewer"})).await;
    for v in 1..=15 {
        alice.ok("documents:update", json!({"document_id": "plan", "content": format!("draft {v}"), "version": v})).await;
    }
    server.stop().await;

    let server = TestServer::start_on(&db, |_| {}, jwt());
    let mut bob = Client::authenticated(&server.ws_url(), &token("bob")).await;
    let joined = bob.ok("chat:join", json!({"chat_id": "secret", "since_seq": 0})).await;
    assert_eq!(joined["last_seq"], 40);
    assert_eq!(joined["messages"].as_array().unwrap(), &acked);
    let doc = bob.ok("documents:join", json!({"document_id": "plan"})).await;
    assert_eq!(doc["role"], "viewer");
    assert_eq!((doc["document"]["version"].clone(), doc["document"]["content"].clone()), (json!(15), json!("draft 15")));
    // Access lists and idempotency keys survived too.
    let mut carol = server.client("carol").await;
    carol.fails("chat:join", json!({"chat_id": "secret"}), "PERMISSION_DENIED").await;
    let mut alice = server.client("alice").await;
    alice.ok("chat:join", json!({"chat_id": "secret"})).await;
    let again = alice.ok("chat:message", json!({"chat_id": "secret", "content": "m3", "client_msg_id": "c3"})).await;
    assert_eq!(again["message"], acked[3]);
    let next = alice.ok("chat:message", json!({"chat_id": "secret", "content": "after restart"})).await;
    assert_eq!(next["message"]["seq"], 41);
    server.stop().await;
}
