//! Authentication: header and first-frame tokens, refusals before and after
//! the upgrade, JWT attacks, refresh and expiry.

mod common;

use common::{jwt, now, sign, sign_with, token, Client, TestServer};
use huddle::auth::{JwtAlgorithm, JwtConfig};
use serde_json::{json, Value};

fn b64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// A token with `alg: none` and no signature.
fn unsigned(claims: &Value) -> String {
    format!("{}.{}.", b64(br#"{"alg":"none","typ":"JWT"}"#), b64(claims.to_string().as_bytes()))
}

async fn first_frame_refusal(server: &TestServer, token: &str) -> (Value, u16) {
    let mut c = Client::open(&server.ws_url()).await;
    c.send(json!({"event": "auth", "data": {"token": token}, "ref": "a1"})).await;
    let e = c.expect_event("error").await;
    assert_eq!(e["ref"], "a1");
    (e["data"].clone(), c.expect_close().await)
}

#[tokio::test]
async fn first_frame_auth_answers_connect_with_the_ref() {
    let server = TestServer::start();
    let mut c = Client::open(&server.ws_url()).await;
    c.send(json!({"event": "auth", "data": {"token": token("alice")}, "ref": 7})).await;
    let connect = c.next().await;
    assert_eq!(connect["event"], "connect");
    assert_eq!(connect["ref"], 7);
    let d = &connect["data"];
    assert_eq!((d["user_id"].clone(), d["name"].clone(), d["protocol"].clone()), (json!("alice"), json!("alice (name)"), json!(1)));
    assert_eq!(d["heartbeat_ms"], 25000);
    assert!(d["session_id"].as_str().unwrap().len() >= 16);
    assert!(d["expires_at"].as_str().unwrap().ends_with(".000Z"));
    // A second auth is refused; the connection stays usable.
    let e = c.fails("auth", json!({"token": token("alice")}), "INVALID_INPUT").await;
    assert!(e["message"].as_str().unwrap().contains("auth:refresh"));
    c.ok("ping", json!({})).await;
    server.stop().await;
}

#[tokio::test]
async fn header_auth_connects_without_a_frame() {
    let server = TestServer::start();
    let mut c = Client::open_with(&server.ws_url(), Some(&token("bob"))).await.expect("upgrade");
    let connect = c.next().await;
    assert_eq!(connect["event"], "connect");
    assert_eq!(connect["data"]["user_id"], "bob");
    c.ok("chat:join", json!({"chat_id": "general"})).await;

    let (status, body) = Client::open_with(&server.ws_url(), Some("garbage")).await.err().expect("refused");
    assert_eq!((status, body["code"].clone()), (401, json!("UNAUTHENTICATED")));
    let expired = sign(&json!({"sub": "bob", "exp": now() - 60}));
    let (status, body) = Client::open_with(&server.ws_url(), Some(&expired)).await.err().expect("refused");
    assert_eq!((status, body["code"].clone()), (401, json!("TOKEN_EXPIRED")));
    assert!(body["message"].is_string());
    server.stop().await;
}

#[tokio::test]
async fn tokens_in_the_url_are_refused_before_the_upgrade() {
    let server = TestServer::start();
    for query in ["?token=abc", "?token=", "?x=1&token=abc"] {
        let url = format!("{}{query}", server.ws_url());
        let (status, body) = Client::open_with(&url, None).await.err().expect("refused");
        assert_eq!(status, 400, "{query}");
        assert_eq!(body["code"], "INVALID_INPUT");
        assert!(body["message"].as_str().unwrap().contains("Authorization"), "{body}");
    }
    server.stop().await;
}

#[tokio::test]
async fn bad_first_frames_get_unauthenticated_and_4001() {
    let server = TestServer::start();
    let (e, code) = first_frame_refusal(&server, "not-a-token").await;
    assert_eq!((e["code"].clone(), code), (json!("UNAUTHENTICATED"), 4001));
    let (e, code) = first_frame_refusal(&server, &sign(&json!({"sub": "a", "exp": now() - 60}))).await;
    assert_eq!((e["code"].clone(), code), (json!("TOKEN_EXPIRED"), 4001));

    // Another event first (its ref is kept), not JSON, binary, bad UTF-8.
    let mut c = Client::open(&server.ws_url()).await;
    c.send(json!({"event": "ping", "data": {}, "ref": "p"})).await;
    let e = c.expect_event("error").await;
    assert_eq!((e["ref"].clone(), e["data"]["code"].clone()), (json!("p"), json!("UNAUTHENTICATED")));
    assert_eq!(c.expect_close().await, 4001);
    let mut c = Client::open(&server.ws_url()).await;
    c.send_text("{nope").await;
    assert_eq!(c.expect_event("error").await["data"]["code"], "UNAUTHENTICATED");
    assert_eq!(c.expect_close().await, 4001);
    let mut c = Client::open(&server.ws_url()).await;
    c.send_binary(vec![1, 2, 3]).await;
    assert_eq!(c.expect_event("error").await["data"]["code"], "UNAUTHENTICATED");
    assert_eq!(c.expect_close().await, 4001);
    server.stop().await;
}

#[tokio::test]
async fn unauthenticated_connections_time_out() {
    let server = TestServer::start_with(|o| o.auth_timeout_ms = 300);
    let mut c = Client::open(&server.ws_url()).await;
    let e = c.expect_event("error").await;
    assert_eq!(e["data"]["code"], "UNAUTHENTICATED");
    assert!(e.get("ref").is_none());
    assert_eq!(c.expect_close().await, 4001);
    server.stop().await;
}

#[tokio::test]
async fn jwt_attacks_are_refused() {
    let server = TestServer::start();
    let good = json!({"sub": "mallory", "exp": now() + 600});
    let mut refused = vec![
        ("alg none", unsigned(&good)),
        ("wrong secret", sign_with(&good, "guessed")),
        ("no exp", sign(&json!({"sub": "mallory"}))),
        ("no sub", sign(&json!({"exp": now() + 600}))),
        ("empty sub", sign(&json!({"sub": "", "exp": now() + 600}))),
        ("long sub", sign(&json!({"sub": "x".repeat(129), "exp": now() + 600}))),
        ("future nbf", sign(&json!({"sub": "mallory", "exp": now() + 600, "nbf": now() + 300}))),
    ];
    // Tampered payload: a valid token for bob with alice's payload.
    let valid = token("bob");
    let parts: Vec<&str> = valid.split('.').collect();
    let tampered = format!("{}.{}.{}", parts[0], b64(json!({"sub": "admin", "exp": now() + 600}).to_string().as_bytes()), parts[2]);
    refused.push(("tampered", tampered));
    for (what, t) in refused {
        let (e, code) = first_frame_refusal(&server, &t).await;
        assert_eq!((e["code"].clone(), code), (json!("UNAUTHENTICATED"), 4001), "{what}: {e}");
    }
    server.stop().await;
}

#[tokio::test]
async fn names_and_far_future_expiries_are_bounded() {
    let server = TestServer::start();
    // At the bounds: accepted, and every time on the wire is RFC 3339.
    let last_second = 253_402_300_799_i64; // 9999-12-31T23:59:59Z
    let longest = "n".repeat(128);
    let c = Client::authenticated(&server.ws_url(), &sign(&json!({"sub": "u", "exp": last_second, "name": longest}))).await;
    assert_eq!(c.connect["data"]["expires_at"], "9999-12-31T23:59:59.000Z");
    assert_eq!(c.connect["data"]["name"], json!(longest));
    // Past them: refused with the reason.
    for (claims, why) in [
        (json!({"sub": "u", "exp": now() + 600, "name": "n".repeat(129)}), "name must be at most 128 characters"),
        (json!({"sub": "u", "exp": now() + 600, "name": "x".repeat(10_000)}), "name must be at most 128 characters"),
        (json!({"sub": "u", "exp": last_second + 1}), "exp must not be after 9999-12-31T23:59:59Z"),
        (json!({"sub": "u", "exp": i64::MAX}), "exp must not be after 9999-12-31T23:59:59Z"),
    ] {
        let (e, code) = first_frame_refusal(&server, &sign(&claims)).await;
        assert_eq!((e["code"].clone(), code), (json!("UNAUTHENTICATED"), 4001), "{e}");
        assert!(e["message"].as_str().unwrap().contains(why), "{e}");
    }
    // The same over the Authorization header, before the upgrade.
    let far = sign(&json!({"sub": "u", "exp": i64::MAX}));
    let (status, body) = Client::open_with(&server.ws_url(), Some(&far)).await.err().expect("refused");
    assert_eq!((status, body["code"].clone()), (401, json!("UNAUTHENTICATED")));
    server.stop().await;
}

fn rs256() -> JwtConfig {
    JwtConfig {
        algorithm: JwtAlgorithm::Rs256,
        secret: None,
        public_key_pem: Some(include_bytes!("fixtures/rsa_public.pem").to_vec()),
        ..jwt()
    }
}

fn sign_rs256(claims: &Value) -> String {
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(include_bytes!("fixtures/rsa_private.pem")).unwrap();
    jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256), claims, &key).unwrap()
}

#[tokio::test]
async fn rs256_accepts_its_key_and_refuses_algorithm_confusion() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_on(&dir.path().join("h.db"), |_| {}, rs256());
    let claims = json!({"sub": "rita", "exp": now() + 600});
    let c = Client::authenticated(&server.ws_url(), &sign_rs256(&claims)).await;
    assert_eq!(c.user_id(), "rita");
    // HS256 signed with the public key as the HMAC secret: the classic
    // confusion attack.
    let public = std::str::from_utf8(include_bytes!("fixtures/rsa_public.pem")).unwrap();
    let (e, code) = first_frame_refusal(&server, &sign_with(&claims, public)).await;
    assert_eq!((e["code"].clone(), code), (json!("UNAUTHENTICATED"), 4001));
    let (e, _) = first_frame_refusal(&server, &unsigned(&claims)).await;
    assert_eq!(e["code"], "UNAUTHENTICATED");
    server.stop().await;
}

#[tokio::test]
async fn es256_accepts_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = JwtConfig {
        algorithm: JwtAlgorithm::Es256,
        secret: None,
        public_key_pem: Some(include_bytes!("fixtures/ec_public.pem").to_vec()),
        ..jwt()
    };
    let server = TestServer::start_on(&dir.path().join("h.db"), |_| {}, config);
    let key = jsonwebtoken::EncodingKey::from_ec_pem(include_bytes!("fixtures/ec_private.pem")).unwrap();
    let claims = json!({"sub": "eve", "exp": now() + 600});
    let t = jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256), &claims, &key).unwrap();
    assert_eq!(Client::authenticated(&server.ws_url(), &t).await.user_id(), "eve");
    let (e, _) = first_frame_refusal(&server, &sign_rs256(&claims)).await;
    assert_eq!(e["code"], "UNAUTHENTICATED");
    server.stop().await;
}

#[tokio::test]
async fn issuer_and_audience_are_checked_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let config = JwtConfig { issuer: Some("huddle-tests".into()), audience: Some("chat".into()), ..jwt() };
    let server = TestServer::start_on(&dir.path().join("h.db"), |_| {}, config);
    let ok = sign(&json!({"sub": "ivy", "exp": now() + 600, "iss": "huddle-tests", "aud": "chat"}));
    Client::authenticated(&server.ws_url(), &ok).await;
    for claims in [
        json!({"sub": "ivy", "exp": now() + 600, "iss": "someone-else", "aud": "chat"}),
        json!({"sub": "ivy", "exp": now() + 600, "iss": "huddle-tests", "aud": "other"}),
        json!({"sub": "ivy", "exp": now() + 600}),
    ] {
        let (e, code) = first_frame_refusal(&server, &sign(&claims)).await;
        assert_eq!((e["code"].clone(), code), (json!("UNAUTHENTICATED"), 4001), "{claims}");
    }
    server.stop().await;
}

#[tokio::test]
async fn refresh_extends_the_session_for_the_same_user_only() {
    let server = TestServer::start();
    let mut c = server.client("alice").await;
    c.ok("chat:join", json!({"chat_id": "a"})).await;
    c.ok("documents:create", json!({"document_id": "d"})).await;
    c.ok("documents:join", json!({"document_id": "d"})).await;
    let later = now() + 7200;
    let ack = c.ok("auth:refresh", json!({"token": sign(&json!({"sub": "alice", "exp": later}))})).await;
    let expires_at = ack["expires_at"].as_str().unwrap().to_owned();
    let update = c.expect_event("session_update").await["data"].clone();
    assert_eq!(update["user_id"], "alice");
    assert_eq!(update["expires_at"].as_str().unwrap(), expires_at);
    assert_eq!(update["rooms"], json!(["chat:a", "document:d"]));

    let e = c.fails("auth:refresh", json!({"token": token("mallory")}), "UNAUTHENTICATED").await;
    assert!(e["message"].as_str().unwrap().contains("another user"));
    c.fails("auth:refresh", json!({"token": sign(&json!({"sub": "alice", "exp": now() - 60}))}), "TOKEN_EXPIRED").await;
    c.fails("auth:refresh", json!({"token": sign(&json!({"sub": "alice", "exp": later, "nbf": now() + 600}))}), "UNAUTHENTICATED").await;
    c.fails("auth:refresh", json!({"token": "junk"}), "UNAUTHENTICATED").await;
    // Still the same session, still working.
    c.ok("chat:message", json!({"chat_id": "a", "content": "still here"})).await;
    server.stop().await;
}

#[tokio::test]
async fn a_live_connection_is_closed_when_its_token_expires_unless_refreshed() {
    let dir = tempfile::tempdir().unwrap();
    let config = JwtConfig { leeway_s: 0, ..jwt() };
    let server = TestServer::start_on(&dir.path().join("h.db"), |o| o.jwt_leeway_s = 0, config);
    let short = sign(&json!({"sub": "sam", "exp": now() + 2}));
    let mut expiring = Client::authenticated(&server.ws_url(), &short).await;
    let mut refreshed = Client::authenticated(&server.ws_url(), &short).await;
    refreshed.ok("auth:refresh", json!({"token": sign(&json!({"sub": "sam", "exp": now() + 600}))})).await;

    let e = expiring.expect_event("error").await;
    assert_eq!(e["data"]["code"], "TOKEN_EXPIRED");
    assert_eq!(expiring.expect_close().await, 4001);
    // The refreshed connection outlives the first token.
    refreshed.ok("ping", json!({})).await;
    server.stop().await;
}
