//! Frame sizes and framing, over raw sockets: a frame is refused from its
//! header when it announces more than the limit (64 KiB before `connect`,
//! `max_frame_bytes` after), fragments count together, and broken framing
//! ends the connection. Refused frames cost the server no memory.

mod common;

use std::time::Duration;

use common::process::{proc_number, Process};
use common::raw::{RawWs, BINARY, CONTINUATION, PING, TEXT};
use common::{token, TestServer};
use serde_json::json;

/// How long a refusal may take. The payloads announced below never come,
/// so a server that waited for them would not answer at all.
const PROMPTLY: Duration = Duration::from_secs(5);
const GIB: u64 = 1 << 30;
const AUTH_FRAME_LIMIT: usize = 64 * 1024;

/// A server whose auth timeout cannot be what closes a connection here.
fn server() -> TestServer {
    TestServer::start_with(|o| {
        o.auth_timeout_ms = 60_000;
        o.max_frame_bytes = 8192;
    })
}

/// A first-frame `auth` of exactly `size` bytes.
fn auth_frame(user: &str, size: usize) -> String {
    let bare = json!({"event": "auth", "data": {"token": token(user), "pad": ""}}).to_string();
    let padded = json!({"event": "auth", "data": {"token": token(user), "pad": "x".repeat(size - bare.len())}}).to_string();
    assert_eq!(padded.len(), size);
    padded
}

#[tokio::test]
async fn a_gigabyte_announced_before_auth_is_refused_at_once() {
    let server = server();
    let mut ws = RawWs::open(server.addr).await;
    ws.send_header(TEXT, GIB).await;
    assert_eq!(ws.errors_then_close(PROMPTLY).await, (vec!["UNAUTHENTICATED".to_owned()], Some(4001)));
    server.stop().await;
}

#[tokio::test]
async fn a_gigabyte_announced_after_auth_is_refused_at_once() {
    let server = server();
    let mut ws = RawWs::connect(server.addr, &token("alice")).await;
    ws.send_header(BINARY, GIB).await;
    assert_eq!(ws.errors_then_close(PROMPTLY).await, (vec!["PAYLOAD_TOO_LARGE".to_owned()], Some(1009)));
    server.stop().await;
}

#[tokio::test]
async fn an_auth_frame_may_take_64_kib_and_no_more() {
    // max_frame_bytes above the auth limit: the auth limit applies first.
    let server = TestServer::start_with(|o| o.max_frame_bytes = 1 << 20);
    let mut ws = RawWs::open(server.addr).await;
    ws.send_text(&auth_frame("alice", AUTH_FRAME_LIMIT)).await;
    let (_, connect) = ws.frame(PROMPTLY).await.expect("connect");
    assert!(String::from_utf8_lossy(&connect).contains("\"event\":\"connect\""));
    // Once authenticated, max_frame_bytes applies.
    let ping = json!({"event": "ping", "data": {"pad": "x".repeat(200_000)}, "ref": 1}).to_string();
    ws.send_text(&ping).await;
    let (_, ack) = ws.frame(PROMPTLY).await.expect("ack");
    assert!(String::from_utf8_lossy(&ack).contains("\"event\":\"ack\""));

    let mut ws = RawWs::open(server.addr).await;
    ws.send_text(&auth_frame("bob", AUTH_FRAME_LIMIT + 1)).await;
    assert_eq!(ws.errors_then_close(PROMPTLY).await, (vec!["UNAUTHENTICATED".to_owned()], Some(4001)));
    server.stop().await;
}

#[tokio::test]
async fn fragments_count_together() {
    let server = server();
    // 3 × 3000 bytes: each fragment fits max_frame_bytes (8192), the
    // message does not. The last fragment is refused from its header.
    let mut ws = RawWs::connect(server.addr, &token("alice")).await;
    ws.send_fragment(false, TEXT, &[b' '; 3000]).await;
    ws.send_fragment(false, CONTINUATION, &[b' '; 3000]).await;
    ws.send_header(CONTINUATION, 3000).await;
    assert_eq!(ws.errors_then_close(PROMPTLY).await, (vec!["PAYLOAD_TOO_LARGE".to_owned()], Some(1009)));

    // Within the limit, fragments make one request.
    let mut ws = RawWs::connect(server.addr, &token("bob")).await;
    ws.frame(PROMPTLY).await.expect("connect");
    ws.send_fragment(false, TEXT, br#"{"event":"ping","#).await;
    ws.send_fragment(false, CONTINUATION, br#""data":{},"#).await;
    ws.send_fragment(true, CONTINUATION, br#""ref":"frag"}"#).await;
    let (_, ack) = ws.frame(PROMPTLY).await.expect("ack");
    let ack: serde_json::Value = serde_json::from_slice(&ack).unwrap();
    assert_eq!((ack["event"].clone(), ack["ref"].clone()), (json!("ack"), json!("frag")));

    // Before auth, fragments count together too, and the answer is 4001.
    let mut ws = RawWs::open(server.addr).await;
    ws.send_fragment(false, TEXT, &[b' '; 6000]).await;
    ws.send_header(CONTINUATION, 6000).await;
    assert_eq!(ws.errors_then_close(PROMPTLY).await, (vec!["UNAUTHENTICATED".to_owned()], Some(4001)));
    server.stop().await;
}

#[tokio::test]
async fn broken_framing_closes_with_1008() {
    let server = server();
    let mut ws = RawWs::connect(server.addr, &token("alice")).await;
    ws.frame(PROMPTLY).await.expect("connect");
    // An unmasked text frame.
    assert!(ws.send_bytes(&[0x81, 0x02, b'h', b'i']).await);
    assert_eq!(ws.errors_then_close(PROMPTLY).await, (vec![], Some(1008)));
    // A ping longer than a control frame may be.
    let mut ws = RawWs::connect(server.addr, &token("bob")).await;
    ws.frame(PROMPTLY).await.expect("connect");
    ws.send_header(PING, 126).await;
    assert_eq!(ws.errors_then_close(PROMPTLY).await, (vec![], Some(1008)));
    server.stop().await;
}

#[tokio::test]
async fn a_closing_server_takes_what_the_client_still_sends() {
    // A client that goes on sending after the server has decided to close
    // must still get the Close, and its sends must not fail: a socket
    // closed with unread input answers with a reset instead.
    let server = server();
    let mut ws = RawWs::connect(server.addr, &token("alice")).await;
    ws.frame(PROMPTLY).await.expect("connect");
    let mut bytes = vec![0x81, 0x02, b'h', b'i']; // unmasked: closed with 1008
    bytes.extend(std::iter::repeat_n(b'x', 64 * 1024));
    assert!(ws.send_bytes(&bytes).await);
    assert_eq!(ws.errors_then_close(PROMPTLY).await, (vec![], Some(1008)));
    for _ in 0..32 {
        assert!(ws.send_bytes(&[b'x'; 64 * 1024]).await, "the server reset the connection");
    }
    // Then the end of the stream, not a reset.
    assert_eq!(ws.frame(PROMPTLY).await, None);
    server.stop().await;
}

/// The server's resident memory, from /proc.
fn rss_kib(pid: u32) -> u64 {
    proc_number(pid, "status", "VmRSS:")
}

#[tokio::test]
async fn frames_announcing_256_mib_cost_the_server_nothing() {
    const MIB: u64 = 1 << 20;
    let dir = tempfile::tempdir().unwrap();
    let server = Process::start(&dir.path().join("huddle.db"), &[]);
    let pid = server.child.id();
    // Warm up: one ordinary connection, so the baseline has the server's
    // connection machinery in it.
    let mut c = common::Client::authenticated(&server.ws_url(), &token("warm")).await;
    c.ok("ping", json!({})).await;
    let before = rss_kib(pid);
    // Each announces 256 MiB and sends up to 16 MiB of it, before and after
    // auth: a server that buffered what headers announce would hold at
    // least 64 MiB more after these four.
    let payload = vec![b'x'; 16 * MIB as usize];
    for i in 0..4 {
        let mut ws = if i % 2 == 0 { RawWs::open(server.addr).await } else { RawWs::connect(server.addr, &token("big")).await };
        ws.send_header(TEXT, 256 * MIB).await;
        // The server may close while this is sent: that is the point.
        ws.send_bytes(&payload).await;
        let (_, code) = ws.errors_then_close(PROMPTLY).await;
        assert!(matches!(code, Some(4001 | 1009) | None), "closed with {code:?}");
    }
    let after = rss_kib(pid);
    assert!(after < before + 32 * 1024, "RSS grew from {before} KiB to {after} KiB");
    // The server still serves, and said what it refused.
    c.ok("ping", json!({})).await;
    let mut refused = 0;
    while refused < 4 {
        let line = server.log.recv_timeout(PROMPTLY).expect("a log line for each refused frame");
        refused += line.contains("refused a frame above") as usize;
    }
}
