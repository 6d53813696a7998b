//! Per-connection and per-user limits, and what a client hears when it
//! reaches them.

mod common;

use common::{token, Client, TestServer};
use serde_json::json;

#[tokio::test]
async fn rooms_per_connection() {
    let server = TestServer::start_with(|o| o.max_rooms_per_connection = 2);
    let mut c = server.client("alice").await;
    c.ok("chat:join", json!({"chat_id": "a"})).await;
    c.ok("documents:create", json!({"document_id": "d"})).await;
    c.ok("documents:join", json!({"document_id": "d"})).await;
    let e = c.fails("chat:join", json!({"chat_id": "b"}), "LIMIT_EXCEEDED").await;
    assert_eq!(e["details"]["limit"], "max_rooms_per_connection");
    // A refused join creates nothing; a re-join does not count again.
    c.fails("chat:history", json!({"chat_id": "b"}), "NOT_FOUND").await;
    c.ok("chat:join", json!({"chat_id": "a"})).await;
    c.ok("chat:leave", json!({"chat_id": "a"})).await;
    c.ok("chat:join", json!({"chat_id": "b"})).await;
    // A failed join does not hold a slot.
    c.ok("chat:leave", json!({"chat_id": "b"})).await;
    c.fails("documents:join", json!({"document_id": "missing"}), "NOT_FOUND").await;
    c.ok("chat:join", json!({"chat_id": "b"})).await;
    server.stop().await;
}

/// An edit or a share sent to a document the connection has not joined
/// loads the document's room as a join does, and the room stays loaded
/// for `room_idle`: for that long it counts toward the limit too.
#[tokio::test]
async fn documents_edited_without_joining_count_toward_rooms_per_connection() {
    let server = TestServer::start_with(|o| o.max_rooms_per_connection = 2);
    let mut c = server.client("alice").await;
    for d in ["a", "b", "c"] {
        c.ok("documents:create", json!({"document_id": d})).await;
    }
    c.ok("documents:join", json!({"document_id": "a"})).await;
    c.ok("documents:op", json!({"document_id": "b", "base_version": 0, "ops": ["x"]})).await;
    // A third room, whatever the request.
    let e = c.fails("documents:op", json!({"document_id": "c", "base_version": 0, "ops": ["x"]}), "LIMIT_EXCEEDED").await;
    assert_eq!(e["details"]["limit"], "max_rooms_per_connection");
    c.fails("documents:update", json!({"document_id": "c", "content": "y", "version": 1}), "LIMIT_EXCEEDED").await;
    c.fails("documents:share", json!({"document_id": "c", "user_id": "bob", "role": "viewer"}), "LIMIT_EXCEEDED").await;
    // The two it holds still take its edits, and "c" was not touched.
    c.ok("documents:op", json!({"document_id": "b", "base_version": 1, "ops": ["y"]})).await;
    c.ok("documents:op", json!({"document_id": "a", "base_version": 0, "ops": ["z"]})).await;
    let c_now = c.ok("documents:snapshot", json!({"document_id": "c", "version": 0})).await;
    assert_eq!(c_now["document"]["content"], "");
    server.stop().await;
}

#[tokio::test]
async fn connections_per_user() {
    let server = TestServer::start_with(|o| o.max_connections_per_user = 2);
    let first = server.client("alice").await;
    let _second = Client::open_with(&server.ws_url(), Some(&token("alice"))).await.expect("second");
    // With the token in the header: refused before the upgrade.
    let (status, body) = Client::open_with(&server.ws_url(), Some(&token("alice"))).await.err().expect("refused");
    assert_eq!((status, body["code"].clone()), (429, json!("LIMIT_EXCEEDED")));
    assert_eq!(body["details"]["limit"], "max_connections_per_user");
    // With a first-frame auth: the error, then close 1008.
    let mut third = Client::open(&server.ws_url()).await;
    third.send(json!({"event": "auth", "data": {"token": token("alice")}, "ref": 1})).await;
    let e = third.expect_event("error").await;
    assert_eq!((e["ref"].clone(), e["data"]["code"].clone()), (json!(1), json!("LIMIT_EXCEEDED")));
    assert_eq!(third.expect_close().await, 1008);
    // Other users are not affected, and a closed connection frees its slot.
    server.client("bob").await;
    first.close().await;
    let mut retry = None;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        // The slot is freed just after the server answered the close:
        // retry until it is (bounded), rather than sleeping.
        match Client::open_with(&server.ws_url(), Some(&token("alice"))).await {
            Ok(c) => {
                retry = Some(c);
                break;
            }
            Err((429, _)) => tokio::task::yield_now().await,
            Err(other) => panic!("unexpected refusal {other:?}"),
        }
    }
    assert!(retry.is_some(), "the closed connection's slot was never freed");
    server.stop().await;
}

#[tokio::test]
async fn oversized_frames_and_contents() {
    let server = TestServer::start_with(|o| {
        o.max_frame_bytes = 4096;
        o.max_document_bytes = 100;
    });
    let mut c = server.client("alice").await;
    let e = c.fails("documents:create", json!({"document_id": "d", "content": "x".repeat(101)}), "PAYLOAD_TOO_LARGE").await;
    assert_eq!(e["details"]["field"], "content");
    c.ok("documents:create", json!({"document_id": "d", "content": "x".repeat(100)})).await;
    c.fails("documents:update", json!({"document_id": "d", "content": "é".repeat(51), "version": 1}), "PAYLOAD_TOO_LARGE").await;
    // A frame above max_frame_bytes: the error, then close 1009.
    c.send_text(&format!(r#"{{"event":"ping","data":{{"pad":"{}"}}}}"#, "x".repeat(5000))).await;
    let e = c.expect_event("error").await;
    assert_eq!(e["data"]["code"], "PAYLOAD_TOO_LARGE");
    assert_eq!(c.expect_close().await, 1009);
    server.stop().await;
}

#[tokio::test]
async fn request_rate_is_limited_per_connection() {
    let server = TestServer::start_with(|o| {
        o.rate_per_second = 1;
        o.rate_burst = 5;
    });
    let mut c = server.client("alice").await;
    let mut other = server.client("bob").await;
    let refs: Vec<u64> = {
        let mut v = Vec::new();
        for _ in 0..8 {
            v.push(c.send_request("ping", json!({})).await);
        }
        v
    };
    let mut limited = 0;
    for r in refs {
        if let Err(e) = c.response(r).await {
            assert_eq!(e["code"], "RATE_LIMITED");
            assert!(e["details"]["retry_after_ms"].as_u64().unwrap() > 0);
            limited += 1;
        }
    }
    // Five of eight fit the burst; a stalled machine may refill one more.
    assert!((2..=3).contains(&limited), "{limited} refused");
    // Another connection has its own budget.
    other.ok("ping", json!({})).await;
    // Ignoring the refusals again and again closes the connection (4029).
    for _ in 0..10 {
        c.send_request("ping", json!({})).await;
    }
    assert_eq!(c.expect_close().await, 4029);
    server.stop().await;
}
