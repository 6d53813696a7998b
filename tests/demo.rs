//! `--demo`: the embedded page, the token endpoint and the name book exist
//! only when asked for, and the tokens it hands out let two people share a
//! document.

mod common;

use common::http::Http;
use common::{Client, TestServer};
use serde_json::json;

#[tokio::test]
async fn demo_routes_exist_only_with_demo() {
    let server = TestServer::start();
    let http = Http::new(server.http_url(""));
    // `/` says what the server is and how to get the demo.
    let home = http.call("GET", "/", None, None).await;
    assert_eq!((home.status, home.header("content-type")), (200, Some("text/plain; charset=utf-8")));
    for needle in ["Huddle", "/ws", "--demo", "docs/protocol.md"] {
        assert!(home.text.contains(needle), "{needle:?} missing from\n{}", home.text);
    }
    for (method, path) in [("POST", "/demo/token"), ("GET", "/demo/names"), ("GET", "/app.js")] {
        let r = http.call(method, path, None, Some(r#"{"name":"x"}"#.into())).await;
        assert_eq!((r.status, r.body["code"].clone()), (404, json!("NOT_FOUND")), "{method} {path}");
    }
    // No icon without the demo, and no error either.
    let icon = http.call("GET", "/favicon.ico", None, None).await;
    assert_eq!((icon.status, icon.text.as_str()), (204, ""));
    server.stop().await;
}

#[tokio::test]
async fn demo_page_and_tokens() {
    let server = TestServer::start_with(|o| o.demo = true);
    let http = Http::new(server.http_url(""));
    let page = http.call("GET", "/", None, None).await;
    assert_eq!(page.status, 200);
    assert!(page.text.contains("<title>Huddle demo</title>"));
    for asset in ["/app.js", "/editor.js", "/huddle.js", "/style.css", "/favicon.svg", "/favicon.ico"] {
        let r = http.call("GET", asset, None, None).await;
        assert_eq!(r.status, 200, "{asset}");
        assert!(!r.text.is_empty());
    }
    let icon = http.call("GET", "/favicon.ico", None, None).await;
    assert_eq!(icon.header("content-type"), Some("image/svg+xml"));
    let bad = http.call("POST", "/demo/token", None, Some(r#"{"name":"!!"}"#.into())).await;
    assert_eq!((bad.status, bad.body["details"]["field"].clone()), (400, json!("name")));

    let mut people = Vec::new();
    for name in ["Ada Lovelace", "Grace"] {
        let r = http.call("POST", "/demo/token", None, Some(json!({ "name": name }).to_string())).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let token = r.body["token"].as_str().unwrap().to_owned();
        let mut c = Client::authenticated(&server.ws_url(), &token).await;
        assert_eq!(c.connect["data"]["name"], name);
        assert_eq!(c.user_id(), r.body["user_id"].as_str().unwrap());
        let joined = c.ok("documents:join", json!({"document_id": "demo"})).await;
        assert_eq!(joined["role"], "editor");
        people.push(c);
    }
    assert_eq!(people[0].user_id(), "ada-lovelace");
    // The names the tokens carried, for the page to name people who left.
    let names = http.call("GET", "/demo/names?user_id=ada-lovelace&user_id=grace&user_id=nobody", None, None).await;
    assert_eq!((names.status, names.body), (200, json!({"names": {"ada-lovelace": "Ada Lovelace", "grace": "Grace"}})));
    let many: Vec<String> = (0..101).map(|i| format!("user_id=u{i}")).collect();
    let r = http.call("GET", &format!("/demo/names?{}", many.join("&")), None, None).await;
    assert_eq!((r.status, r.body["details"]["field"].clone()), (400, json!("user_id")));
    people[0].ok("documents:update", json!({"document_id": "demo", "content": "hello", "version": 1})).await;
    let pushed = people[1].expect_push("documents:updated", "document:demo").await;
    assert_eq!(pushed["document"]["content"], "hello");
    server.stop().await;
}
