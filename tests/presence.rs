//! Presence: members per room, counted per user across connections.

mod common;

use common::TestServer;
use serde_json::json;

#[tokio::test]
async fn a_user_with_two_connections_joins_once_and_leaves_with_the_last() {
    let server = TestServer::start();
    let mut watcher = server.client("watcher").await;
    watcher.ok("chat:join", json!({"chat_id": "p"})).await;

    let mut tab1 = server.client("alice").await;
    let mut tab2 = server.client("alice").await;
    tab1.ok("chat:join", json!({"chat_id": "p"})).await;
    assert_eq!(watcher.expect_push("user:joined", "chat:p").await, json!({"user_id": "alice", "name": "alice (name)"}));
    let joined = tab2.ok("chat:join", json!({"chat_id": "p"})).await;
    let alice = joined["members"].as_array().unwrap().iter().find(|m| m["user_id"] == "alice").unwrap().clone();
    assert_eq!(alice["connections"], 2);
    // tab1 sees the second connection only in member lists, not as a push.
    tab1.ok("ping", json!({})).await;
    assert!(tab1.kept(|f| f["event"] == "user:joined").is_empty());

    tab1.ok("chat:leave", json!({"chat_id": "p"})).await;
    let mut probe = server.client("probe").await;
    let members = probe.ok("chat:join", json!({"chat_id": "p"})).await["members"].clone();
    let alice = members.as_array().unwrap().iter().find(|m| m["user_id"] == "alice").unwrap().clone();
    assert_eq!(alice["connections"], 1);
    // The last connection goes away by disconnecting.
    tab2.close().await;
    assert_eq!(watcher.expect_push("user:left", "chat:p").await, json!({"user_id": "alice"}));
    // Every push carried its room; the joined push above came before this.
    assert_eq!(watcher.expect_push("user:joined", "chat:p").await["user_id"], "probe");
    server.stop().await;
}

#[tokio::test]
async fn presence_is_per_room() {
    let server = TestServer::start();
    let mut a = server.client("a").await;
    let mut b = server.client("b").await;
    a.ok("chat:join", json!({"chat_id": "one"})).await;
    a.ok("chat:join", json!({"chat_id": "two"})).await;
    b.ok("chat:join", json!({"chat_id": "two"})).await;
    assert_eq!(a.expect_push("user:joined", "chat:two").await["user_id"], "b");
    let one = b.ok("chat:join", json!({"chat_id": "one"})).await;
    assert_eq!(one["members"].as_array().unwrap().len(), 2);
    assert_eq!(a.expect_push("user:joined", "chat:one").await["user_id"], "b");
    b.ok("chat:leave", json!({"chat_id": "two"})).await;
    assert_eq!(a.expect_push("user:left", "chat:two").await["user_id"], "b");
    server.stop().await;
}
