//! U+0000 (NUL) is refused where input enters, the same way on every
//! database: `INVALID_INPUT` naming the field for frames and HTTP bodies,
//! `UNAUTHENTICATED` with the reason for tokens. PostgreSQL cannot store a
//! NUL, and before this rule one there failed every other user's write in
//! the same group commit; SQLite stored it.

mod common;

use common::http::Http;
use common::postgres::TempDatabase;
use common::{jwt, now, sign, Client, TestServer};
use serde_json::{json, Value};

const KEY: &str = "api-key-for-tests";

#[tokio::test]
async fn nul_is_refused_on_sqlite() {
    let server = TestServer::start_with(|o| o.api_key = Some(KEY.into()));
    nul_is_refused_everywhere(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn nul_is_refused_on_postgres() {
    let Some(db) = TempDatabase::create() else { return };
    let url = db.url.clone();
    let server = TestServer::start_on(
        std::path::Path::new("unused"),
        move |o| {
            o.database_url = url;
            o.api_key = Some(KEY.into());
        },
        jwt(),
    );
    nul_is_refused_everywhere(&server).await;
    server.stop().await;
}

async fn nul_is_refused_everywhere(server: &TestServer) {
    let mut alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    alice.ok("chat:join", json!({"chat_id": "c"})).await;
    bob.ok("chat:join", json!({"chat_id": "c"})).await;
    alice.ok("documents:create", json!({"document_id": "d"})).await;

    // Frames: every string a client sends.
    for (event, data, field) in [
        ("chat:message", json!({"chat_id": "c", "content": "a\0b"}), "content"),
        ("chat:message", json!({"chat_id": "c", "content": "ok", "client_msg_id": "id\0"}), "client_msg_id"),
        ("documents:create", json!({"document_id": "d2", "title": "t\0"}), "title"),
        ("documents:create", json!({"document_id": "d3", "content": "\0"}), "content"),
        ("documents:update", json!({"document_id": "d", "content": "\0", "version": 1}), "content"),
        ("documents:share", json!({"document_id": "d", "user_id": "b\0b", "role": "viewer"}), "user_id"),
        ("chat:create", json!({"chat_id": "c2", "members": ["b\0b"]}), "members"),
        ("documents:op", json!({"document_id": "d", "base_version": 0, "ops": ["a\0"]}), "ops"),
        ("documents:op", json!({"document_id": "d", "base_version": 0, "ops": ["a"], "op_id": "o\0"}), "op_id"),
    ] {
        let e = alice.fails(event, data.clone(), "INVALID_INPUT").await;
        assert_eq!(e["details"]["field"], field, "{event} {data}: {e}");
        assert!(e["message"].as_str().unwrap().contains("U+0000"), "{e}");
    }

    // One client's NULs never fail another client's writes, sent together.
    let mut refs = Vec::new();
    for i in 0..20 {
        alice.send_request("chat:message", json!({"chat_id": "c", "content": format!("\0{i}")})).await;
        refs.push(bob.send_request("chat:message", json!({"chat_id": "c", "content": format!("b{i}")})).await);
    }
    for (i, r) in refs.into_iter().enumerate() {
        let ack = bob.response(r).await.expect("bob's message is stored");
        assert_eq!(ack["message"]["seq"], i + 1);
    }
    for _ in 0..20 {
        assert_eq!(alice.expect_event("error").await["data"]["details"]["field"], "content");
    }
    // Nothing refused was stored; the rooms go on.
    alice.ok("documents:update", json!({"document_id": "d", "content": "v1", "version": 1})).await;
    alice.fails("documents:join", json!({"document_id": "d2"}), "NOT_FOUND").await;

    // Tokens: refused with the reason, on the first frame and on refresh.
    for (claims, why) in [
        (json!({"sub": "ev\0e", "exp": now() + 600}), "sub must not contain U+0000"),
        (json!({"sub": "eve", "exp": now() + 600, "name": "Ev\0e"}), "name must not contain U+0000"),
    ] {
        let mut c = Client::open(&server.ws_url()).await;
        c.send(json!({"event": "auth", "data": {"token": sign(&claims)}})).await;
        let e = c.expect_event("error").await;
        assert_eq!(e["data"]["code"], "UNAUTHENTICATED", "{e}");
        assert!(e["data"]["message"].as_str().unwrap().contains(why), "{e}");
        assert_eq!(c.expect_close().await, 4001);
        let e = alice.fails("auth:refresh", json!({"token": sign(&claims)}), "UNAUTHENTICATED").await;
        assert!(e["message"].as_str().unwrap().contains(why), "{e}");
    }

    // The HTTP API: the same rule, the same field names.
    let http = Http::new(server.http_url(""));
    let post = |path: &'static str, body: Value| {
        let http = &http;
        async move { http.call("POST", path, Some(KEY), Some(body.to_string())).await }
    };
    for (path, body, field) in [
        ("/api/documents", json!({"document_id": "h", "owner": "o", "content": "\0"}), "content"),
        ("/api/documents", json!({"document_id": "h", "owner": "o", "title": "\0"}), "title"),
        ("/api/documents", json!({"document_id": "h", "owner": "o\0"}), "owner"),
        ("/api/chats", json!({"chat_id": "h", "members": ["m", "\0"]}), "members"),
        ("/api/chats/c/messages", json!({"user_id": "u", "content": "\0"}), "content"),
        ("/api/chats/c/messages", json!({"user_id": "u\0", "content": "x"}), "user_id"),
        ("/api/chats/c/messages", json!({"user_id": "u", "content": "x", "client_msg_id": "\0"}), "client_msg_id"),
    ] {
        let r = post(path, body.clone()).await;
        assert_eq!((r.status, r.body["code"].clone()), (400, json!("INVALID_INPUT")), "{path} {body}: {}", r.text);
        assert_eq!(r.body["details"]["field"], field, "{path} {body}");
    }
    let r = http.call("PUT", "/api/documents/d/access/b%00b", Some(KEY), Some(json!({"role": "viewer"}).to_string())).await;
    assert_eq!((r.status, r.body["details"]["field"].clone()), (400, json!("user_id")), "{}", r.text);
    let r = http.call("GET", "/api/documents/d%00/history", Some(KEY), None).await;
    assert_eq!((r.status, r.body["details"]["field"].clone()), (400, json!("document_id")), "{}", r.text);
    let r = post("/api/chats/c/messages", json!({"user_id": "u", "content": "after"})).await;
    assert_eq!((r.status, r.body["message"]["seq"].clone()), (201, json!(21)), "{}", r.text);
    let page = bob.ok("chat:history", json!({"chat_id": "c", "limit": 100})).await;
    let contents: Vec<&str> = page["messages"].as_array().unwrap().iter().map(|m| m["content"].as_str().unwrap()).collect();
    assert_eq!(contents.len(), 21);
    assert!(contents.iter().all(|c| !c.contains('\0')));
}
