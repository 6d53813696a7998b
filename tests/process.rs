//! The real binary under signals: graceful shutdown on SIGTERM, and no loss
//! of anything acknowledged when killed with SIGKILL mid-stream.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use common::process::Process;
use common::{token, Client};
use serde_json::{json, Value};

#[tokio::test]
async fn sigterm_answers_in_flight_requests_closes_with_1001_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("huddle.db");
    let server = Process::start(&db, &[("HUDDLE_DRAIN_TIMEOUT_MS", "5000")]);
    let mut clients = Vec::new();
    for u in ["a", "b", "c"] {
        let mut c = Client::authenticated(&server.ws_url(), &token(u)).await;
        c.ok("chat:join", json!({"chat_id": "bye"})).await;
        clients.push(c);
    }
    // Requests in flight when the signal lands.
    let mut refs = Vec::new();
    for c in clients.iter_mut() {
        let mut mine = Vec::new();
        for i in 0..40 {
            mine.push(c.send_request("chat:message", json!({"chat_id": "bye", "content": format!("{} {i}", c.user_id())})).await);
        }
        refs.push(mine);
    }
    server.signal("TERM");
    let mut acked = Vec::new();
    for (c, mine) in clients.iter_mut().zip(refs) {
        assert_eq!(c.expect_close().await, 1001);
        // Every request the server took was answered before the close: an
        // ack, or SERVER_BUSY for those that arrived while it drained.
        let answered: HashMap<Value, Value> = c
            .kept(|f| f.get("ref").is_some())
            .into_iter()
            .map(|f| (f["ref"].clone(), f))
            .collect();
        let mut seen_busy = false;
        for r in mine {
            match answered.get(&json!(r)) {
                Some(f) if f["event"] == "ack" => {
                    assert!(!seen_busy, "an ack after a SERVER_BUSY: requests were reordered");
                    acked.push(f["data"]["message"].clone());
                }
                Some(f) => {
                    assert_eq!(f["data"]["code"], "SERVER_BUSY", "{f}");
                    seen_busy = true;
                }
                // Frames still in flight on the socket when it closed.
                None => seen_busy = true,
            }
        }
    }
    let status = server.wait(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0));

    // Everything acked is stored.
    let server = Process::start(&db, &[]);
    let mut c = Client::authenticated(&server.ws_url(), &token("auditor")).await;
    let joined = c.ok("chat:join", json!({"chat_id": "bye", "since_seq": 0})).await;
    let stored: Vec<Value> = joined["messages"].as_array().unwrap().clone();
    for m in &acked {
        assert!(stored.contains(m), "acked message lost: {m}");
    }
    server.signal("TERM");
    assert_eq!(server.wait(Duration::from_secs(10)).await.code(), Some(0));
}

#[tokio::test]
async fn sigkill_mid_stream_loses_nothing_acknowledged() {
    const WRITERS: usize = 4;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("huddle.db");
    let server = Process::start(&db, &[("HUDDLE_RATE_BURST", "100000"), ("HUDDLE_RATE_PER_SECOND", "100000")]);
    let url = server.ws_url();

    // An observer that will reconnect and recover what it missed.
    let mut observer = Client::authenticated(&url, &token("observer")).await;
    observer.ok("chat:join", json!({"chat_id": "crash"})).await;

    let mut owner = Client::authenticated(&url, &token("w0")).await;
    owner.ok("documents:create", json!({"document_id": "crash-doc"})).await;
    for w in 1..WRITERS {
        owner.ok("documents:share", json!({"document_id": "crash-doc", "user_id": format!("w{w}"), "role": "editor"})).await;
    }

    // Writers send messages and document updates as fast as acks come back,
    // and record every ack, until the connection dies.
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = Client::authenticated(&url, &token(&format!("w{w}"))).await;
            c.ok("chat:join", json!({"chat_id": "crash"})).await;
            let (mut messages, mut versions) = (Vec::new(), Vec::new());
            let mut version = 0;
            for i in 0.. {
                let Some(m) = c.try_send_request("chat:message", json!({"chat_id": "crash", "content": format!("w{w} m{i}")})).await else { break };
                let Some(u) = c.try_send_request("documents:update", json!({"document_id": "crash-doc", "content": format!("w{w} v{}", version + 1), "version": version + 1})).await else { break };
                match c.try_response(m).await {
                    Some(Ok(ack)) => messages.push(ack["message"].clone()),
                    Some(Err(e)) => panic!("message refused: {e}"),
                    None => break,
                }
                match c.try_response(u).await {
                    Some(Ok(ack)) => {
                        version = ack["version"].as_i64().unwrap();
                        versions.push((version, format!("w{w} v{version}")));
                    }
                    Some(Err(e)) if e["code"] == "VERSION_CONFLICT" => version = e["details"]["current_version"].as_i64().unwrap(),
                    Some(Err(e)) => panic!("update refused: {e}"),
                    None => break,
                }
            }
            (messages, versions)
        }));
    }
    // Let the writers get a few hundred acks in, then kill the server.
    let mut seen_seq = 0;
    while seen_seq < 300 {
        seen_seq = observer.expect_push("chat:message", "chat:crash").await["message"]["seq"].as_i64().unwrap();
    }
    server.signal("KILL");
    let mut acked_messages = Vec::new();
    let mut acked_versions = BTreeMap::new();
    for t in tasks {
        let (m, v) = t.await.unwrap();
        acked_messages.extend(m);
        acked_versions.extend(v);
    }
    assert!(acked_messages.len() >= 300, "only {} acks before the kill", acked_messages.len());
    let killed = server.wait(Duration::from_secs(10)).await;
    assert!(!killed.success());

    // Restart on the same database.
    let server = Process::start(&db, &[]);
    let mut auditor = Client::authenticated(&server.ws_url(), &token("auditor")).await;
    let mut stored = Vec::new();
    let mut before = None;
    loop {
        let mut q = json!({"chat_id": "crash", "limit": 100});
        if let Some(b) = before {
            q["before_seq"] = json!(b);
        }
        let page = auditor.ok("chat:history", q).await;
        let mut msgs: Vec<Value> = page["messages"].as_array().unwrap().clone();
        before = msgs.first().map(|m| m["seq"].as_i64().unwrap());
        msgs.extend(stored);
        stored = msgs;
        if page["has_more"] == false {
            break;
        }
    }
    let seqs: Vec<i64> = stored.iter().map(|m| m["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>(), "seq is gapless");
    for m in &acked_messages {
        assert!(stored.contains(m), "acked message lost: {m}");
    }
    let doc = auditor.ok("documents:create", json!({"document_id": "probe"})).await;
    assert_eq!(doc["document"]["id"], "probe");
    let mut w0 = Client::authenticated(&server.ws_url(), &token("w0")).await;
    let current = w0.ok("documents:join", json!({"document_id": "crash-doc"})).await["document"].clone();
    let (last_version, last_content) = acked_versions.iter().next_back().map(|(v, c)| (*v, c.clone())).unwrap();
    let current_version = current["version"].as_i64().unwrap();
    assert!(current_version >= last_version, "acked version {last_version} lost (now {current_version})");
    if current_version == last_version {
        assert_eq!(current["content"], last_content);
    }

    // The observer reconnects and recovers exactly what it missed.
    let mut observer = Client::authenticated(&server.ws_url(), &token("observer")).await;
    let joined = observer.ok("chat:join", json!({"chat_id": "crash", "since_seq": seen_seq})).await;
    let recovered: Vec<i64> = joined["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_i64().unwrap()).collect();
    assert_eq!(recovered, ((seen_seq + 1)..=seqs.len() as i64).collect::<Vec<_>>());
    assert_eq!(joined["recovered"], true);
}
