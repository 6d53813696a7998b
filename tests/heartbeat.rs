//! Heartbeats: the server pings every `heartbeat_ms` and closes connections
//! that stay silent for twice that; a Pong or any frame (the `ping` event of
//! browser clients) keeps a connection alive.

mod common;

use std::time::{Duration, Instant};

use common::raw::{close_code, RawWs, CLOSE, PING, PONG, TEXT};
use common::{token, TestServer};

const HEARTBEAT_MS: u64 = 250;

fn server() -> TestServer {
    TestServer::start_with(|o| o.heartbeat_ms = HEARTBEAT_MS)
}

#[tokio::test]
async fn a_silent_connection_is_closed_with_4000() {
    let server = server();
    // The server hears the upgrade request last: silence is counted from
    // there, so the test's clock starts before it, not after the 101.
    let opened = Instant::now();
    let mut ws = RawWs::connect(server.addr, &token("quiet")).await;
    let (op, connect) = ws.frame(Duration::from_secs(5)).await.expect("connect");
    assert_eq!(op, TEXT);
    assert!(String::from_utf8_lossy(&connect).contains("\"heartbeat_ms\":250"));
    let mut pings = 0;
    loop {
        match ws.frame(Duration::from_secs(5)).await {
            Some((PING, _)) => pings += 1,
            Some((CLOSE, payload)) => {
                assert_eq!(close_code(&payload), 4000);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(pings >= 1, "the server pinged before giving up");
    assert!(opened.elapsed() >= Duration::from_millis(2 * HEARTBEAT_MS));
    server.stop().await;
}

/// Waits for `n` server Pings, answering each with `answer`; fails on a Close.
async fn survive_pings(ws: &mut RawWs, n: usize, answer: impl Fn() -> (u8, Vec<u8>)) {
    let mut seen = 0;
    while seen < n {
        match ws.frame(Duration::from_secs(5)).await {
            Some((PING, _)) => {
                seen += 1;
                let (op, payload) = answer();
                ws.send(op, &payload).await;
            }
            Some((TEXT, _)) => {}
            other => panic!("closed or stalled after {seen} pings: {other:?}"),
        }
    }
}

#[tokio::test]
async fn pongs_keep_a_connection_alive() {
    let server = server();
    let mut ws = RawWs::connect(server.addr, &token("ponger")).await;
    // Eight pings span over five times the silence limit.
    survive_pings(&mut ws, 8, || (PONG, Vec::new())).await;
    server.stop().await;
}

#[tokio::test]
async fn ping_events_keep_a_browser_client_alive() {
    let server = server();
    let mut ws = RawWs::connect(server.addr, &token("browser")).await;
    let ping = br#"{"event":"ping","data":{},"ref":"hb"}"#.to_vec();
    survive_pings(&mut ws, 8, || (TEXT, ping.clone())).await;
    server.stop().await;
}
