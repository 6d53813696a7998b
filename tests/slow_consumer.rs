//! One member that stops reading must not slow its room: it is dropped as
//! a slow consumer (4008) while the others receive every push.

mod common;

use common::http::Http;
use common::{token, Client, TestServer};
use serde_json::json;
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const MESSAGES: usize = 3000;
const CHARS: usize = 2000;

/// A connection with a tiny receive buffer that reads only what the
/// test asks it to: authenticated as `user`.
async fn stalled_client(server: &TestServer, user: &str) -> Client {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = tokio_tungstenite::MaybeTlsStream::Plain(socket.connect(server.addr).await.unwrap());
    let request = server.ws_url().into_client_request().unwrap();
    let (ws, _) = tokio_tungstenite::client_async(request, stream).await.unwrap();
    let mut client = Client::from_stream(ws);
    client.send(json!({"event": "auth", "data": {"token": token(user)}})).await;
    client.expect_event("connect").await;
    client
}

#[tokio::test]
async fn a_member_that_never_reads_is_dropped_and_the_room_keeps_serving() {
    let server = TestServer::start_with(|o| {
        o.max_outbound_queue = 64;
        o.rate_per_second = 1_000_000;
        o.rate_burst = 1_000_000;
        o.sqlite_synchronous = huddle::db::connection::SqliteSync::Normal;
    });

    // The stalled client never reads after joining.
    let mut stalled = stalled_client(&server, "stalled").await;
    stalled.ok("chat:join", json!({"chat_id": "firehose"})).await;

    let mut readers = Vec::new();
    for i in 0..3 {
        let mut c = server.client(&format!("reader{i}")).await;
        c.ok("chat:join", json!({"chat_id": "firehose"})).await;
        readers.push(c);
    }
    let mut publisher = server.client("publisher").await;
    publisher.ok("chat:join", json!({"chat_id": "firehose"})).await;

    let body = "x".repeat(CHARS);
    let publishing = tokio::spawn(async move {
        // At most 16 unacknowledged sends at a time: with its own pushes,
        // the publisher never has more than 32 frames waiting, well within
        // the small queue of this test.
        let mut window = std::collections::VecDeque::new();
        for i in 0..MESSAGES {
            window.push_back(publisher.send_request("chat:message", json!({"chat_id": "firehose", "content": format!("{i} {body}")})).await);
            if window.len() == 16 {
                let r = window.pop_front().unwrap();
                publisher.response(r).await.expect("acked");
            }
        }
        for r in window {
            publisher.response(r).await.expect("acked");
        }
    });
    let reading: Vec<_> = readers
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                let mut left = None;
                for expected in 1..=MESSAGES as i64 {
                    let m = c.expect_push("chat:message", "chat:firehose").await;
                    assert_eq!(m["message"]["seq"], expected);
                }
                for f in c.kept(|f| f["event"] == "user:left") {
                    left = Some(f["data"]["user_id"].clone());
                }
                if left.is_none() {
                    left = Some(c.expect_push("user:left", "chat:firehose").await["user_id"].clone());
                }
                left
            })
        })
        .collect();
    publishing.await.unwrap();
    for r in reading {
        assert_eq!(r.await.unwrap(), Some(json!("stalled")), "the others heard the stalled member leave");
    }

    let metrics = Http::new(server.http_url("")).call("GET", "/metrics", None, None).await.text;
    assert!(metrics.lines().any(|l| l == "huddle_slow_consumers_total 1"), "{metrics}");
    // Once it reads again, the stalled client finds its connection ended
    // (with 4008 if the close frame got through: best effort).
    let code = stalled.drain_until_closed().await;
    assert!(code == 4008 || code == 1006, "closed with {code}");
    server.stop().await;
}

/// Frames are few but large: whole documents. A member that stops reading
/// is dropped once the bytes waiting for it pass `max_outbound_bytes`,
/// long before `max_outbound_queue` frames (a thousand documents, hundreds
/// of megabytes held for one connection) would have.
#[tokio::test]
async fn a_member_that_never_reads_large_frames_is_dropped_by_their_bytes() {
    const SIZE: usize = 500_000;
    let server = TestServer::start_with(|o| {
        o.max_outbound_bytes = 2 * 1024 * 1024;
        o.rate_per_second = 1_000_000;
        o.rate_burst = 1_000_000;
        o.sqlite_synchronous = huddle::db::connection::SqliteSync::Normal;
    });
    let mut editor = server.client("editor").await;
    editor.ok("documents:create", json!({"document_id": "big"})).await;
    editor.ok("documents:share", json!({"document_id": "big", "user_id": "stalled", "role": "viewer"})).await;

    let mut stalled = stalled_client(&server, "stalled").await;
    stalled.ok("documents:join", json!({"document_id": "big"})).await;
    editor.ok("documents:join", json!({"document_id": "big"})).await;

    // 60 whole documents of 500 KB: 30 MB for the stalled member, of
    // which the kernel's buffers take a few; 60 frames, far under the
    // 1,024 that would close it otherwise.
    for version in 1..=60_u32 {
        let content = char::from(b'a' + (version % 26) as u8).to_string().repeat(SIZE);
        editor.ok("documents:update", json!({"document_id": "big", "content": content, "version": version})).await;
    }
    let left = editor.expect_push("user:left", "document:big").await;
    assert_eq!(left["user_id"], "stalled");
    let metrics = Http::new(server.http_url("")).call("GET", "/metrics", None, None).await.text;
    assert!(metrics.lines().any(|l| l == "huddle_slow_consumers_total 1"), "{metrics}");
    let code = stalled.drain_until_closed().await;
    assert!(code == 4008 || code == 1006, "closed with {code}");
    server.stop().await;
}
