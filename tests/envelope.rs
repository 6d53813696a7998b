//! The envelope: `ref` echo, errors for malformed frames, and a connection
//! that stays usable (and harmless to others) whatever a client sends.

mod common;

use common::TestServer;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn refs_are_echoed_as_the_same_json_value() {
    let server = TestServer::start();
    let mut c = server.client("alice").await;
    c.send(json!({"event": "ping", "data": {}, "ref": "abc"})).await;
    assert_eq!(c.next().await["ref"], "abc");
    c.send(json!({"event": "ping", "data": {}, "ref": 9007199254740991_u64})).await;
    assert_eq!(c.next().await["ref"], 9007199254740991_u64);
    c.send(json!({"event": "ping", "data": {}, "ref": 0})).await;
    assert_eq!(c.next().await["ref"], 0);
    // A request without ref gets no ack, but failures are still reported,
    // without ref. The ping after it proves nothing else was sent.
    c.send(json!({"event": "ping", "data": {}})).await;
    c.send(json!({"event": "ping", "data": {}, "ref": null})).await;
    c.send(json!({"event": "chat:leave", "data": {"chat_id": "x"}})).await;
    let e = c.next().await;
    assert_eq!(e["event"], "error");
    assert_eq!(e["data"]["code"], "NOT_JOINED");
    assert!(e.get("ref").is_none());
    c.send(json!({"event": "ping", "data": {}, "ref": "last"})).await;
    assert_eq!(c.next().await["ref"], "last");
    server.stop().await;
}

#[tokio::test]
async fn malformed_frames_get_invalid_input_and_the_connection_stays_usable() {
    let server = TestServer::start();
    let mut c = server.client("alice").await;
    let cases = [
        (r#"not json"#.to_string(), None, None),
        (r#"[1,2,3]"#.to_string(), None, None),
        (r#""a string""#.to_string(), None, None),
        (r#"{"event":"nope","data":{},"ref":"r1"}"#.to_string(), Some(json!("r1")), Some("event")),
        (r#"{"data":{},"ref":"r2"}"#.to_string(), Some(json!("r2")), Some("event")),
        (r#"{"event":"ping","ref":"r3"}"#.to_string(), Some(json!("r3")), Some("data")),
        (r#"{"event":"ping","data":"x","ref":"r4"}"#.to_string(), Some(json!("r4")), Some("data")),
        (r#"{"event":"chat:join","data":{},"ref":"r5"}"#.to_string(), Some(json!("r5")), Some("chat_id")),
        (r#"{"event":"chat:join","data":{"chat_id":"no spaces"},"ref":"r6"}"#.to_string(), Some(json!("r6")), Some("chat_id")),
        (format!(r#"{{"event":"chat:join","data":{{"chat_id":"{}"}},"ref":"r7"}}"#, "x".repeat(129)), Some(json!("r7")), Some("chat_id")),
        (r#"{"event":"chat:join","data":{"chat_id":5},"ref":"r8"}"#.to_string(), Some(json!("r8")), Some("chat_id")),
        (r#"{"event":"ping","data":{},"ref":5.0}"#.to_string(), None, Some("ref")),
        (r#"{"event":"ping","data":{},"ref":-1}"#.to_string(), None, Some("ref")),
        (r#"{"event":"ping","data":{},"ref":""}"#.to_string(), None, Some("ref")),
        (format!(r#"{{"event":"ping","data":{{}},"ref":"{}"}}"#, "r".repeat(65)), None, Some("ref")),
        (r#"{"event":"ping","data":{},"ref":9007199254740992}"#.to_string(), None, Some("ref")),
        (r#"{"event":"ping","data":{},"ref":[1]}"#.to_string(), None, Some("ref")),
    ];
    for (frame, r, field) in cases {
        c.send_text(&frame).await;
        let e = c.expect_event("error").await;
        assert_eq!(e["data"]["code"], "INVALID_INPUT", "{frame}: {e}");
        assert_eq!(e.get("ref").cloned(), r, "{frame}: {e}");
        assert_eq!(e["data"]["details"]["field"].as_str(), field, "{frame}: {e}");
        assert!(e["data"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    c.send_raw(Message::Binary(vec![0xff, 0x00].into())).await;
    let e = c.expect_event("error").await;
    assert_eq!(e["data"]["code"], "INVALID_INPUT");
    assert!(e.get("ref").is_none());
    // Unknown fields are ignored, in the envelope and in data.
    let joined = c.send_request("chat:join", json!({"chat_id": "ok", "future": [1]})).await;
    c.response(joined).await.expect("join with extra fields");
    c.ok("chat:message", json!({"chat_id": "ok", "content": "still fine"})).await;
    server.stop().await;
}

#[tokio::test]
async fn garbage_from_one_client_does_not_disturb_another() {
    let server = TestServer::start_with(|o| {
        o.rate_per_second = 100_000;
        o.rate_burst = 100_000;
    });
    let mut noisy = server.client("noisy").await;
    let mut calm = server.client("calm").await;
    let mut peer = server.client("peer").await;
    calm.ok("chat:join", json!({"chat_id": "quiet"})).await;
    peer.ok("chat:join", json!({"chat_id": "quiet"})).await;
    let garbage = tokio::spawn(async move {
        for i in 0..10_000 {
            noisy.send_text(&format!("{{garbage {i}")).await;
        }
        for _ in 0..10_000 {
            assert_eq!(noisy.expect_event("error").await["data"]["code"], "INVALID_INPUT");
        }
        noisy.ok("ping", json!({})).await;
    });
    for i in 0..50 {
        calm.ok("chat:message", json!({"chat_id": "quiet", "content": format!("m{i}")})).await;
        assert_eq!(peer.expect_push("chat:message", "chat:quiet").await["message"]["seq"], i + 1);
    }
    garbage.await.unwrap();
    server.stop().await;
}
