//! The server-to-server HTTP API, health, readiness and metrics, over real
//! HTTP, and its effect on live WebSocket rooms.

mod common;

use common::http::Http;
use common::TestServer;
use serde_json::{json, Value};

const KEY: &str = "api-key-for-tests";

fn api_server() -> TestServer {
    TestServer::start_with(|o| o.api_key = Some(KEY.into()))
}

struct Api {
    http: Http,
}

impl Api {
    fn new(server: &TestServer) -> Api {
        Api { http: Http::new(server.http_url("")) }
    }
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self.http.call("POST", path, Some(KEY), Some(body.to_string())).await;
        (r.status, r.body)
    }
    async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self.http.call("PUT", path, Some(KEY), Some(body.to_string())).await;
        (r.status, r.body)
    }
    async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.http.call("GET", path, Some(KEY), None).await;
        (r.status, r.body)
    }
}

#[tokio::test]
async fn without_a_configured_key_the_api_is_closed() {
    let server = TestServer::start();
    let http = Http::new(server.http_url(""));
    let r = http.call("POST", "/api/chats", Some("anything"), Some(r#"{"chat_id":"x"}"#.into())).await;
    assert_eq!((r.status, r.body["code"].clone()), (401, json!("UNAUTHENTICATED")));
    assert!(r.body["message"].as_str().unwrap().contains("HUDDLE_API_KEY"));
    let r = http.call("GET", "/health", None, None).await;
    assert_eq!((r.status, r.body.clone()), (200, json!({"status": "ok"})));
    let r = http.call("GET", "/ready", None, None).await;
    assert_eq!((r.status, r.body.clone()), (200, json!({"status": "ready"})));
    server.stop().await;
}

#[tokio::test]
async fn the_key_is_checked() {
    let server = api_server();
    let http = Http::new(server.http_url(""));
    for bearer in [None, Some("wrong"), Some("api-key-for-test")] {
        let r = http.call("GET", "/api/documents/x", bearer, None).await;
        assert_eq!((r.status, r.body["code"].clone()), (401, json!("UNAUTHENTICATED")), "{bearer:?}");
    }
    server.stop().await;
}

#[tokio::test]
async fn documents_over_http() {
    let server = TestServer::start_with(|o| {
        o.api_key = Some(KEY.into());
        o.max_document_bytes = 50;
    });
    let api = Api::new(&server);
    let (status, body) = api.post("/api/documents", json!({"document_id": "spec", "title": "Spec", "content": "draft", "owner": "olga"})).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["document"]["version"], 0);
    assert_eq!(body["document"]["updated_by"], "olga");
    let (status, body) = api.post("/api/documents", json!({"document_id": "spec", "owner": "x"})).await;
    assert_eq!((status, body["code"].clone()), (409, json!("ALREADY_EXISTS")));
    let (status, body) = api.post("/api/documents", json!({"document_id": "bad id", "owner": "x"})).await;
    assert_eq!((status, body["details"]["field"].clone()), (400, json!("document_id")));
    let (status, body) = api.post("/api/documents", json!({"document_id": "d2"})).await;
    assert_eq!((status, body["details"]["field"].clone()), (400, json!("owner")));
    let (status, body) = api.post("/api/documents", json!({"document_id": "big", "owner": "x", "content": "x".repeat(51)})).await;
    assert_eq!((status, body["code"].clone()), (413, json!("PAYLOAD_TOO_LARGE")));
    let r = api.http.call("POST", "/api/documents", Some(KEY), Some("{not json".into())).await;
    assert_eq!((r.status, r.body["code"].clone()), (400, json!("INVALID_INPUT")));
    let r = api.http.call("POST", "/api/documents", Some(KEY), Some("[]".into())).await;
    assert_eq!(r.status, 400);

    let (status, body) = api.get("/api/documents/spec").await;
    assert_eq!((status, body["document"]["content"].clone()), (200, json!("draft")));
    let (status, body) = api.get("/api/documents/nope").await;
    assert_eq!((status, body["code"].clone()), (404, json!("NOT_FOUND")));
    let (status, _) = api.get("/api/nothing-here").await;
    assert_eq!(status, 404);

    // Access changes reach live rooms like documents:share.
    let (status, body) = api.put("/api/documents/spec/access/walt", json!({"role": "editor"})).await;
    assert_eq!((status, body), (200, json!({"document_id": "spec", "user_id": "walt", "role": "editor"})));
    let mut olga = server.client("olga").await;
    let mut walt = server.client("walt").await;
    olga.ok("documents:join", json!({"document_id": "spec"})).await;
    walt.ok("documents:join", json!({"document_id": "spec"})).await;
    walt.ok("documents:update", json!({"document_id": "spec", "content": "walt was here", "version": 1})).await;
    assert_eq!(olga.expect_push("documents:updated", "document:spec").await["document"]["version"], 1);
    let (status, _) = api.put("/api/documents/spec/access/walt", json!({"role": "none"})).await;
    assert_eq!(status, 200);
    let e = walt.expect_event("error").await;
    assert_eq!((e["room"].clone(), e["data"]["code"].clone()), (json!("document:spec"), json!("PERMISSION_DENIED")));
    assert_eq!(olga.expect_push("user:left", "document:spec").await["user_id"], "walt");
    let (status, body) = api.put("/api/documents/spec/access/olga", json!({"role": "none"})).await;
    assert_eq!((status, body["details"]["field"].clone()), (400, json!("role")));
    let (status, body) = api.put("/api/documents/spec/access/olga", json!({"role": "boss"})).await;
    assert_eq!((status, body["details"]["field"].clone()), (400, json!("role")));
    let (status, _) = api.put("/api/documents/nope/access/olga", json!({"role": "viewer"})).await;
    assert_eq!(status, 404);
    server.stop().await;
}

#[tokio::test]
async fn chats_over_http_reach_live_rooms_in_order() {
    let server = api_server();
    let api = Api::new(&server);
    let (status, body) = api.post("/api/chats", json!({"chat_id": "news"})).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["chat"], json!({"id": "news", "private": false, "created_at": body["chat"]["created_at"], "created_by": null}));
    let (status, body) = api.post("/api/chats", json!({"chat_id": "news"})).await;
    assert_eq!((status, body["code"].clone()), (409, json!("ALREADY_EXISTS")));
    api.post("/api/chats", json!({"chat_id": "staff", "private": true, "members": ["sue"]})).await;

    let mut reader = server.client("reader").await;
    reader.ok("chat:join", json!({"chat_id": "news"})).await;
    reader.ok("chat:message", json!({"chat_id": "news", "content": "from the socket"})).await;
    let (status, body) = api.post("/api/chats/news/messages", json!({"user_id": "bot", "content": "from the backend", "client_msg_id": "n-1"})).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!((body["message"]["seq"].clone(), body["message"]["user_id"].clone()), (json!(2), json!("bot")));
    assert_eq!(reader.expect_push("chat:message", "chat:news").await["message"]["seq"], 1);
    assert_eq!(reader.expect_push("chat:message", "chat:news").await["message"], body["message"]);
    // An idempotent retry: 200, the same message, no push.
    let (status, again) = api.post("/api/chats/news/messages", json!({"user_id": "bot", "content": "from the backend", "client_msg_id": "n-1"})).await;
    assert_eq!((status, again["message"].clone()), (200, body["message"].clone()));
    reader.ok("chat:message", json!({"chat_id": "news", "content": "next"})).await;
    assert_eq!(reader.expect_push("chat:message", "chat:news").await["message"]["seq"], 3);

    let (status, _) = api.post("/api/chats/nowhere/messages", json!({"user_id": "bot", "content": "hi"})).await;
    assert_eq!(status, 404);
    let (status, body) = api.post("/api/chats/staff/messages", json!({"user_id": "bot", "content": "hi"})).await;
    assert_eq!((status, body["code"].clone()), (403, json!("PERMISSION_DENIED")));
    let (status, _) = api.post("/api/chats/staff/messages", json!({"user_id": "sue", "content": "hi"})).await;
    assert_eq!(status, 201);
    let (status, body) = api.post("/api/chats/news/messages", json!({"user_id": "bot", "content": ""})).await;
    assert_eq!((status, body["details"]["field"].clone()), (400, json!("content")));
    let (status, _) = api.post("/api/chats/news/messages", json!({"user_id": "bot", "content": "x".repeat(4001)})).await;
    assert_eq!(status, 413);

    let (status, body) = api.get("/api/chats/news/messages?limit=2").await;
    assert_eq!(status, 200);
    let seqs: Vec<i64> = body["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_i64().unwrap()).collect();
    assert_eq!((seqs, body["has_more"].clone()), (vec![2, 3], json!(true)));
    let (_, body) = api.get("/api/chats/news/messages?before_seq=2").await;
    assert_eq!(body["messages"].as_array().unwrap().len(), 1);
    let (status, body) = api.get("/api/chats/news/messages?limit=0").await;
    assert_eq!((status, body["details"]["field"].clone()), (400, json!("limit")));
    let (status, _) = api.get("/api/chats/nowhere/messages").await;
    assert_eq!(status, 404);
    // The server reads private history for its backends.
    let (status, _) = api.get("/api/chats/staff/messages").await;
    assert_eq!(status, 200);
    server.stop().await;
}

#[tokio::test]
async fn metrics_count_what_happens() {
    let server = TestServer::start_with(|o| {
        o.rate_burst = 3;
        o.rate_per_second = 1;
    });
    let mut c = server.client("m").await;
    c.ok("chat:join", json!({"chat_id": "metrics"})).await;
    c.ok("chat:message", json!({"chat_id": "metrics", "content": "counted"})).await;
    c.fails("chat:leave", json!({"chat_id": "other"}), "NOT_JOINED").await;
    c.fails("ping", json!({}), "RATE_LIMITED").await;
    let http = Http::new(server.http_url(""));
    let text = http.call("GET", "/metrics", None, None).await.text;
    for line in [
        "huddle_connections 1",
        "huddle_rooms{kind=\"chat\"} 1",
        "huddle_requests_total{event=\"chat:message\"} 1",
        "huddle_errors_total{code=\"NOT_JOINED\",event=\"chat:leave\"} 1",
        "huddle_errors_total{code=\"RATE_LIMITED\",event=\"ping\"} 1",
        "huddle_pushes_total 1",
        "huddle_slow_consumers_total 0",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
    assert!(text.contains("huddle_request_duration_seconds_bucket{event=\"chat:message\""));
    assert!(text.contains("huddle_db_call_duration_seconds_count"));
    server.stop().await;

    let server = TestServer::start_with(|o| o.metrics_token = Some("m-token".into()));
    let http = Http::new(server.http_url(""));
    assert_eq!(http.call("GET", "/metrics", None, None).await.status, 401);
    assert_eq!(http.call("GET", "/metrics", Some("m-token"), None).await.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn deleting_a_users_connections_closes_them_with_4003() {
    let server = api_server();
    let mut first = server.client("carol").await;
    let mut second = server.client("carol").await;
    let mut bystander = server.client("dave").await;
    first.ok("chat:join", json!({"chat_id": "room"})).await;
    bystander.ok("chat:join", json!({"chat_id": "room"})).await;
    let http = Http::new(server.http_url(""));
    let r = http.call("DELETE", "/api/users/carol/connections", Some(KEY), None).await;
    assert_eq!((r.status, &r.body), (200, &json!({"closed": 2})), "{}", r.text);
    assert_eq!(first.expect_close().await, 4003);
    assert_eq!(first.closed.as_ref().map(|c| c.1.contains("do not reconnect")), Some(true));
    assert_eq!(second.expect_close().await, 4003);
    assert_eq!(bystander.expect_push("user:left", "chat:room").await["user_id"], "carol");
    let r = http.call("DELETE", "/api/users/carol/connections", Some(KEY), None).await;
    assert_eq!(r.body, json!({"closed": 0}), "they are gone");
    let r = http.call("DELETE", "/api/users/carol/connections", None, None).await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn room_presence_lists_who_is_in_a_room() {
    let server = api_server();
    let api = Api::new(&server);
    let mut bob = server.client("bob").await;
    bob.ok("chat:join", json!({"chat_id": "lobby"})).await;
    let mut alice = server.client("alice").await;
    alice.ok("chat:join", json!({"chat_id": "lobby"})).await;
    let mut alice2 = server.client("alice").await;
    alice2.ok("chat:join", json!({"chat_id": "lobby"})).await;
    let (status, page) = api.get("/api/rooms/chat:lobby/presence").await;
    assert_eq!(status, 200);
    assert_eq!(
        page,
        json!({"members": [
            {"user_id": "alice", "name": "alice (name)", "connections": 2},
            {"user_id": "bob", "name": "bob (name)", "connections": 1},
        ], "has_more": false, "member_count": 2})
    );
    let (_, first) = api.get("/api/rooms/chat:lobby/presence?limit=1").await;
    assert_eq!((first["members"][0]["user_id"].clone(), first["has_more"].clone()), (json!("alice"), json!(true)));
    let (_, rest) = api.get("/api/rooms/chat:lobby/presence?after_user_id=alice&limit=1").await;
    assert_eq!((rest["members"][0]["user_id"].clone(), rest["has_more"].clone()), (json!("bob"), json!(false)));
    // A room nobody is in, existing or not: an empty page.
    let (status, empty) = api.get("/api/rooms/document:nothing/presence").await;
    assert_eq!((status, empty), (200, json!({"members": [], "has_more": false, "member_count": 0})));
    for (path, field) in [
        ("/api/rooms/lobby/presence", "room"),
        ("/api/rooms/chat:lobby/presence?limit=0", "limit"),
        ("/api/rooms/chat:lobby/presence?limit=1001", "limit"),
    ] {
        let (status, e) = api.get(path).await;
        assert_eq!((status, e["code"].clone(), e["details"]["field"].clone()), (400, json!("INVALID_INPUT"), json!(field)), "{path}");
    }
    server.stop().await;
}
