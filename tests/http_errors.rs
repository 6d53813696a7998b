//! Every HTTP error is JSON `{code, message, details?}`, whichever layer
//! answers: a body above its route's limit, malformed JSON, a wrong content
//! type, an unknown route, a wrong method. Over real HTTP, against a real
//! server.

mod common;

use common::http::{Body, Http, Reply};
use common::TestServer;
use serde_json::{json, Value};

const KEY: &str = "api-key-for-tests";
const AUTH: (&str, &str) = ("Authorization", "Bearer api-key-for-tests");
const JSON: (&str, &str) = ("Content-Type", "application/json");

/// An error reply: this status and code, a JSON body with a message and
/// nothing but `code`, `message` and `details`.
#[track_caller]
fn assert_error(r: &Reply, status: u16, code: &str) {
    assert_eq!((r.status, r.body["code"].as_str()), (status, Some(code)), "{}", shown(r));
    assert_eq!(r.header("content-type"), Some("application/json"), "{}", shown(r));
    assert!(r.body["message"].as_str().is_some_and(|m| !m.is_empty()), "{}", shown(r));
    let keys: Vec<&str> = r.body.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
    assert!(keys.iter().all(|k| ["code", "message", "details"].contains(k)), "{}", shown(r));
}

/// The start of a reply, for failure messages (some bodies are large).
fn shown(r: &Reply) -> &str {
    &r.text[..r.text.char_indices().nth(300).map_or(r.text.len(), |(i, _)| i)]
}

fn message(r: &Reply) -> &str {
    r.body["message"].as_str().unwrap_or_default()
}

/// A server with the HTTP API on, and a client for it.
fn api_server() -> (TestServer, Http) {
    let server = TestServer::start_with(|o| o.api_key = Some(KEY.into()));
    let http = Http::new(server.http_url(""));
    (server, http)
}

fn document(id: &str, content: &str) -> String {
    json!({ "document_id": id, "owner": "olga", "content": content }).to_string()
}

#[tokio::test]
async fn a_body_above_the_limit_is_413_and_a_full_document_is_not() {
    let server = TestServer::start_with(|o| {
        o.api_key = Some(KEY.into());
        o.max_document_bytes = 1000;
        o.max_message_chars = 100;
    });
    let http = Http::new(server.http_url(""));
    // The largest document, every byte escaped six times over, fits.
    let escaped = document("escaped", &"\u{1}".repeat(1000));
    assert!(escaped.len() > 6000);
    let r = http.send("POST", "/api/documents", &[AUTH, JSON], Body::Text(escaped)).await;
    assert_eq!(r.status, 201, "{}", shown(&r));
    // One byte more is refused by the field check, which names the field.
    let r = http.send("POST", "/api/documents", &[AUTH, JSON], Body::Text(document("over", &"x".repeat(1001)))).await;
    assert_error(&r, 413, "PAYLOAD_TOO_LARGE");
    assert_eq!(r.body["details"], json!({"field": "content"}));

    // A body above the route's limit: 6 x 1000 + 64 KiB = 71536 bytes.
    let huge = json!({ "document_id": "huge", "owner": "olga", "title": "t".repeat(80_000) }).to_string();
    let r = http.send("POST", "/api/documents", &[AUTH, JSON], Body::Text(huge.clone())).await;
    assert_error(&r, 413, "PAYLOAD_TOO_LARGE");
    assert_eq!(r.body["details"], json!({"limit": "max_document_bytes"}));
    assert!(message(&r).contains(&format!("({} bytes)", huge.len())) && message(&r).contains("71536"), "{}", shown(&r));
    // Its length unannounced, it is cut off at the limit all the same.
    let r = http.send("POST", "/api/documents", &[AUTH, JSON], Body::Chunked(huge.clone().into_bytes())).await;
    assert_error(&r, 413, "PAYLOAD_TOO_LARGE");
    assert!(message(&r).contains("71536"), "{}", shown(&r));
    // Without the key, the body is not even read.
    let r = http.send("POST", "/api/documents", &[JSON], Body::Text(huge)).await;
    assert_error(&r, 401, "UNAUTHENTICATED");
    assert_eq!(http.call("GET", "/api/documents/huge", Some(KEY), None).await.status, 404);
    server.stop().await;

    // Outside /api bodies are small: the demo's sign-in.
    let server = TestServer::start_with(|o| o.demo = true);
    let http = Http::new(server.http_url(""));
    let name = json!({ "name": "n".repeat(5000) }).to_string();
    let r = http.send("POST", "/demo/token", &[JSON], Body::Text(name)).await;
    assert_error(&r, 413, "PAYLOAD_TOO_LARGE");
    assert!(message(&r).contains("4096"), "{}", shown(&r));
    server.stop().await;
}

#[tokio::test]
async fn with_default_settings_a_document_of_max_document_bytes_fits_escaped() {
    let (server, http) = api_server();
    let max = 1_048_576;
    let r = http.send("POST", "/api/documents", &[AUTH, JSON], Body::Text(document("plain", &"x".repeat(max)))).await;
    assert_eq!(r.status, 201, "{}", shown(&r));
    let r = http.send("POST", "/api/documents", &[AUTH, JSON], Body::Text(document("escaped", &"\u{1}".repeat(max)))).await;
    assert_eq!(r.status, 201, "{}", shown(&r));
    let r = http.send("POST", "/api/documents", &[AUTH, JSON], Body::Text(document("over", &"\u{1}".repeat(max + 1)))).await;
    assert_error(&r, 413, "PAYLOAD_TOO_LARGE");
    assert_eq!(r.body["details"], json!({"field": "content"}));
    server.stop().await;
}

#[tokio::test]
async fn malformed_json_and_content_types() {
    let (server, http) = api_server();
    let chat = |id: &str| Body::Text(json!({ "chat_id": id }).to_string());

    let r = http.send("POST", "/api/chats", &[AUTH, JSON], Body::Text(r#"{"chat_id":"#.into())).await;
    assert_error(&r, 400, "INVALID_INPUT");
    assert!(message(&r).starts_with("the body is not valid JSON"), "{}", shown(&r));
    let r = http.send("POST", "/api/chats", &[AUTH, JSON], Body::Text("[]".into())).await;
    assert_error(&r, 400, "INVALID_INPUT");
    assert_eq!(message(&r), "the body must be a JSON object");
    let r = http.send("PUT", "/api/documents/d/access/u", &[AUTH, JSON], Body::None).await;
    assert_error(&r, 400, "INVALID_INPUT");

    // JSON sent as something else is refused, naming the type expected.
    let r = http.send("POST", "/api/chats", &[AUTH, ("Content-Type", "text/plain")], chat("plain")).await;
    assert_error(&r, 400, "INVALID_INPUT");
    assert!(message(&r).contains("application/json") && message(&r).contains("text/plain"), "{}", shown(&r));
    let form = ("Content-Type", "application/x-www-form-urlencoded");
    let r = http.send("POST", "/api/chats", &[AUTH, form], chat("form")).await;
    assert_error(&r, 400, "INVALID_INPUT");
    assert!(message(&r).contains("curl"), "{}", shown(&r));
    // The type is checked after the key.
    let r = http.send("POST", "/api/chats", &[form], chat("form")).await;
    assert_error(&r, 401, "UNAUTHENTICATED");

    // No type at all, or any JSON type, is JSON.
    for (id, headers) in [
        ("untyped", vec![AUTH]),
        ("charset", vec![AUTH, ("Content-Type", "application/json; charset=utf-8")]),
        ("suffix", vec![AUTH, ("Content-Type", "application/merge-patch+json")]),
    ] {
        let r = http.send("POST", "/api/chats", &headers, chat(id)).await;
        assert_eq!(r.status, 201, "{id}: {}", shown(&r));
    }
    server.stop().await;
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405_in_json() {
    let (server, http) = api_server();
    for path in ["/nope", "/api", "/api/nope", "/api/documents/a/b/c", "/ws/more", "/demo/token"] {
        let r = http.send("GET", path, &[AUTH], Body::None).await;
        assert_error(&r, 404, "NOT_FOUND");
        assert!(message(&r).contains(path), "{}", shown(&r));
    }
    let r = http.send("POST", "/nope", &[JSON], Body::Text("{}".into())).await;
    assert_error(&r, 404, "NOT_FOUND");

    for (method, path, allow) in [
        ("DELETE", "/api/chats", "POST"),
        ("GET", "/api/documents", "POST"),
        ("POST", "/api/documents/x", "GET"),
        ("DELETE", "/api/chats/x/messages", "POST, GET"),
        ("POST", "/health", "GET"),
        ("PUT", "/metrics", "GET"),
        ("POST", "/ws", "GET"),
        ("DELETE", "/", "GET"),
    ] {
        let r = http.send(method, path, &[AUTH], Body::None).await;
        assert_error(&r, 405, "INVALID_INPUT");
        assert_eq!(r.header("allow"), Some(allow), "{method} {path}");
        assert!(message(&r).contains(method) && message(&r).contains(allow), "{}", shown(&r));
    }

    // A GET of /ws that is no WebSocket upgrade: the handshake's refusal.
    let r = http.send("GET", "/ws", &[], Body::None).await;
    assert_error(&r, 400, "INVALID_INPUT");
    assert!(message(&r).contains("WebSocket"), "{}", shown(&r));
    server.stop().await;
}

#[tokio::test]
async fn a_bad_path_or_query_is_400_in_json() {
    let (server, http) = api_server();
    http.call("POST", "/api/chats", Some(KEY), Some(json!({"chat_id": "q"}).to_string())).await;
    for path in ["/api/chats/q/messages?limit=many", "/api/chats/%FF/messages", "/api/documents/%20"] {
        let r = http.send("GET", path, &[AUTH], Body::None).await;
        assert_error(&r, 400, "INVALID_INPUT");
    }
    let ok: Value = http.send("GET", "/api/chats/q/messages?limit=1", &[AUTH], Body::None).await.body;
    assert_eq!(ok["has_more"], json!(false));
    server.stop().await;
}
