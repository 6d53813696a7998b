//! Cluster mode with real processes: two or three `huddle` nodes on one
//! PostgreSQL database and a Redis of the test's own, which the tests
//! kill, restart, cut from one node, or outlive (a node killed, paused,
//! or dying between its commit and its publish). Whatever happens, every
//! member on every node sees each message once, in the database's order.
//!
//! Needs PostgreSQL and `redis-server` (see `common::cluster`): without
//! them these tests say that they were skipped.

mod common;

use std::time::Duration;

use common::cluster::{pushes_until, seqs, Cluster, RedisServer, NODE_TIMEOUT_MS};
use common::proxy::Proxy;
use common::{token, Client};
use serde_json::{json, Value};

fn no_extra(_: usize) -> Vec<(String, String)> {
    Vec::new()
}

/// A client of node `i` that joined `chat`.
async fn member(c: &Cluster, i: usize, user: &str, chat: &str) -> Client {
    let mut m = c.client(i, user).await;
    m.ok("chat:join", json!({"chat_id": chat})).await;
    m
}

fn message(chat: &str, content: String) -> (&'static str, Value) {
    ("chat:message", json!({"chat_id": chat, "content": content}))
}

#[tokio::test]
async fn three_publishers_on_three_nodes_give_every_member_the_database_order() {
    let Some(c) = Cluster::start(3, no_extra) else { return };
    let mut members = Vec::new();
    for i in 0..3 {
        members.push(member(&c, i, &format!("m{i}"), "one").await);
    }
    // One publisher per node, 100 messages each in bursts of 10, all at
    // once.
    let mut publishers = Vec::new();
    for i in 0..3 {
        let url = c.node(i).ws_url();
        publishers.push(tokio::spawn(async move {
            let mut p = Client::authenticated(&url, &token(&format!("p{i}"))).await;
            // The others may have started: what they sent before this
            // join is in its answer, the rest comes as pushes.
            let joined = p.ok("chat:join", json!({"chat_id": "one"})).await;
            let from = joined["last_seq"].as_i64().expect("last_seq");
            let mut acked = Vec::new();
            for burst in 0..10 {
                let sends: Vec<_> = (0..10).map(|k| message("one", format!("p{i} #{}", burst * 10 + k))).collect();
                for r in p.send_together(&sends).await {
                    acked.push(p.response(r).await.expect("acked")["message"].clone());
                }
            }
            // A publisher is a member too: its own messages reach it as
            // pushes, in seq order, after their acks.
            let seen = pushes_until(&mut p, "chat:one", 300).await;
            assert_eq!(seqs(&seen), (from + 1..=300).collect::<Vec<_>>(), "publisher p{i}");
            acked
        }));
    }
    let mut acked = Vec::new();
    for p in publishers {
        acked.extend(p.await.expect("publisher"));
    }
    let stored = c.stored(0, "one").await;
    assert_eq!(stored.len(), 300);
    for m in &acked {
        assert!(stored.contains(m), "acked but not stored: {m}");
    }
    for (i, m) in members.iter_mut().enumerate() {
        let seen = pushes_until(m, "chat:one", 300).await;
        assert_eq!(seen, stored, "member on node {i} saw another order than the database's");
    }
    assert!(c.metric(0, "huddle_cluster_publishes_total").await >= 100.0);
}

#[tokio::test]
async fn a_killed_node_loses_nothing_acked_and_its_clients_recover_elsewhere() {
    let Some(mut c) = Cluster::start(2, no_extra) else { return };
    let mut victim_member = member(&c, 0, "vm", "crash").await;
    let mut watcher = member(&c, 1, "watcher", "crash").await;
    let mut w0 = member(&c, 0, "w0", "crash").await;
    let mut w1 = member(&c, 1, "w1", "crash").await;
    let mut acked = Vec::new();
    for round in 0..8 {
        let sends: Vec<_> = (0..5).map(|k| message("crash", format!("w0 {round}.{k}"))).collect();
        let r0 = w0.send_together(&sends).await;
        let sends: Vec<_> = (0..5).map(|k| message("crash", format!("w1 {round}.{k}"))).collect();
        let r1 = w1.send_together(&sends).await;
        if round == 7 {
            // Mid-stream: w0's last burst is in flight.
            c.nodes[0].child.kill().expect("SIGKILL");
        }
        for r in r0 {
            match w0.try_response(r).await {
                Some(Ok(ack)) => acked.push(ack["message"].clone()),
                Some(Err(e)) => panic!("refused: {e}"),
                None => break,
            }
        }
        for r in r1 {
            acked.push(w1.response(r).await.expect("acked by the live node")["message"].clone());
        }
    }
    let stored = c.stored(1, "crash").await;
    for m in &acked {
        assert!(stored.contains(m), "acked but lost: {m}");
    }
    let last = stored.last().expect("messages")["seq"].as_i64().unwrap();
    assert_eq!(seqs(&stored), (1..=last).collect::<Vec<_>>());

    // The killed node's member saw a prefix, in order...
    let before: Vec<Value> = victim_member
        .until_closed()
        .await
        .into_iter()
        .filter(|f| f["event"] == "chat:message")
        .map(|f| f["data"]["message"].clone())
        .collect();
    let seen = seqs(&before);
    let last_seen = seen.last().copied().unwrap_or(0);
    assert_eq!(seen, (1..=last_seen).collect::<Vec<_>>());
    // ...and recovers exactly the rest on the other node.
    let mut back = c.client(1, "vm").await;
    let joined = back.ok("chat:join", json!({"chat_id": "crash", "since_seq": last_seen})).await;
    assert_eq!(joined["recovered"], true);
    assert_eq!(joined["last_seq"], last);
    let recovered: Vec<Value> = joined["messages"].as_array().unwrap().clone();
    assert_eq!(recovered, stored[last_seen as usize..].to_vec());
    // The other node's member saw everything, once, in order.
    assert_eq!(pushes_until(&mut watcher, "chat:crash", last).await, stored);
    // And the stream goes on for the recovered client.
    w1.ok("chat:message", json!({"chat_id": "crash", "content": "after"})).await;
    assert_eq!(back.expect_push("chat:message", "chat:crash").await["message"]["seq"], last + 1);
}

#[tokio::test]
async fn a_redis_restart_mid_stream_delays_pushes_but_never_gaps_or_repeats_them() {
    let Some(mut c) = Cluster::start(2, no_extra) else { return };
    let mut members = [member(&c, 0, "m0", "storm").await, member(&c, 1, "m1", "storm").await];
    let mut writers = [member(&c, 0, "w0", "storm").await, member(&c, 1, "w1", "storm").await];
    for step in 0..60 {
        match step {
            20 => c.redis.kill(),
            40 => c.redis.restart(),
            _ => {}
        }
        let w = &mut writers[step % 2];
        w.ok("chat:message", json!({"chat_id": "storm", "content": format!("step {step}")})).await;
    }
    let stored = c.stored(0, "storm").await;
    assert_eq!(stored.len(), 60);
    for (i, m) in members.iter_mut().enumerate() {
        assert_eq!(pushes_until(m, "chat:storm", 60).await, stored, "member on node {i}");
    }
    // Both nodes noticed: the first connection, and the one after the
    // restart, each asked every room to catch up.
    for i in 0..2 {
        c.node(i).log_until("Redis link up", Duration::from_secs(10));
        assert!(c.metric(i, "huddle_cluster_catch_ups_total").await >= 2.0, "node {i}");
    }
    writers[0].ok("chat:message", json!({"chat_id": "storm", "content": "after"})).await;
    for m in members.iter_mut() {
        assert_eq!(m.expect_push("chat:message", "chat:storm").await["message"]["seq"], 61);
    }
}

#[tokio::test]
async fn a_paused_node_catches_up_and_its_members_converge() {
    let Some(c) = Cluster::start(2, no_extra) else { return };
    let mut paused_member = member(&c, 0, "m0", "nap").await;
    let mut awake = member(&c, 1, "m1", "nap").await;
    let mut writer = member(&c, 1, "w", "nap").await;
    for i in 0..5 {
        writer.ok("chat:message", json!({"chat_id": "nap", "content": format!("before {i}")})).await;
    }
    assert_eq!(seqs(&pushes_until(&mut paused_member, "chat:nap", 5).await), vec![1, 2, 3, 4, 5]);
    c.node(0).signal("STOP");
    for i in 0..20 {
        writer.ok("chat:message", json!({"chat_id": "nap", "content": format!("while paused {i}")})).await;
    }
    // The others carry on meanwhile.
    assert_eq!(seqs(&pushes_until(&mut awake, "chat:nap", 25).await), (1..=25).collect::<Vec<_>>());
    // The pause itself: longer than node_timeout_ms (this sleep is the
    // scenario, not a wait for something).
    tokio::time::sleep(Duration::from_millis(NODE_TIMEOUT_MS + 300)).await;
    c.node(0).signal("CONT");
    c.node(0).log_until("was paused", Duration::from_secs(10));
    let stored = c.stored(1, "nap").await;
    assert_eq!(pushes_until(&mut paused_member, "chat:nap", 25).await, stored[5..].to_vec());
    writer.ok("chat:message", json!({"chat_id": "nap", "content": "after"})).await;
    assert_eq!(paused_member.expect_push("chat:message", "chat:nap").await["message"]["seq"], 26);
}

#[tokio::test]
async fn a_node_cut_from_redis_converges_through_the_periodic_check() {
    let Some(mut c) = Cluster::start(0, no_extra) else { return };
    // Node 0 reaches Redis through a proxy the test can cut; node 1 directly.
    let proxy = Proxy::start(c.redis.addr());
    c.nodes.push(c.spawn(0, &[("HUDDLE_REDIS_URL".into(), RedisServer::url_via(proxy.addr))]));
    c.nodes.push(c.spawn(1, &[]));

    let mut m0 = member(&c, 0, "m0", "cut").await;
    let mut m1 = member(&c, 1, "m1", "cut").await;
    let mut w0 = member(&c, 0, "w0", "cut").await;
    let mut w1 = member(&c, 1, "w1", "cut").await;
    w0.ok("chat:message", json!({"chat_id": "cut", "content": "before"})).await;
    assert_eq!(m1.expect_push("chat:message", "chat:cut").await["message"]["seq"], 1);

    proxy.cut();
    c.node(0).log_until("Redis link lost", Duration::from_secs(10));
    let ready = c.http(0).call("GET", "/ready", None, None).await;
    assert_eq!((ready.status, &ready.body["details"]["reason"]), (503, &json!("redis_unreachable")), "{}", ready.text);
    for i in 0..5 {
        w0.ok("chat:message", json!({"chat_id": "cut", "content": format!("from the cut node {i}")})).await;
        w1.ok("chat:message", json!({"chat_id": "cut", "content": format!("from the other {i}")})).await;
    }
    let stored = c.stored(1, "cut").await;
    assert_eq!(stored.len(), 11);
    assert_eq!(pushes_until(&mut m0, "chat:cut", 11).await, stored);
    assert_eq!(pushes_until(&mut m1, "chat:cut", 11).await, stored[1..].to_vec());

    proxy.restore();
    c.node(0).log_until("Redis link up", Duration::from_secs(20));
    assert_eq!(c.http(0).call("GET", "/ready", None, None).await.status, 200);
    w0.ok("chat:message", json!({"chat_id": "cut", "content": "back"})).await;
    assert_eq!(m1.expect_push("chat:message", "chat:cut").await["message"]["seq"], 12);
    assert!(c.metric(1, "huddle_cluster_gap_repairs_total").await >= 5.0, "node 1 read node 0's messages back");
}

#[tokio::test]
async fn a_node_that_dies_between_commit_and_publish_still_reaches_every_member() {
    let Some(mut c) = Cluster::start(3, |i| {
        if i == 0 {
            vec![("HUDDLE_TEST_EXIT_BEFORE_PUBLISH".into(), "1".into())]
        } else {
            Vec::new()
        }
    }) else {
        return;
    };
    let mut m1 = member(&c, 1, "m1", "lost").await;
    let mut m2 = member(&c, 2, "m2", "lost").await;
    let mut dying = member(&c, 0, "dying", "lost").await;
    let r = dying.send_request("chat:message", json!({"chat_id": "lost", "content": "last words"})).await;
    assert_eq!(dying.try_response(r).await, None, "the node died before acking");
    let status = c.nodes.remove(0).wait(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(86), "the fault point");
    // Committed but never published: the others' periodic check finds it.
    for m in [&mut m1, &mut m2] {
        let got = m.expect_push("chat:message", "chat:lost").await["message"].clone();
        assert_eq!((got["seq"].as_i64(), got["content"].as_str()), (Some(1), Some("last words")));
    }
}

#[tokio::test]
async fn two_nodes_batching_the_same_chats_in_opposite_orders_do_not_deadlock() {
    const WRITERS: usize = 3;
    const ROUNDS: usize = 40;
    let Some(mut c) = Cluster::start(2, no_extra) else { return };
    let mut tasks = Vec::new();
    for node in 0..2 {
        for w in 0..WRITERS {
            let url = c.node(node).ws_url();
            // Node 0's writers send to x then y, node 1's to y then x, in
            // one write: batches {x, y} on one node, {y, x} on the other.
            let order = if node == 0 { ["x", "y"] } else { ["y", "x"] };
            tasks.push(tokio::spawn(async move {
                let mut client = Client::authenticated(&url, &token(&format!("n{node}w{w}"))).await;
                for chat in order {
                    client.ok("chat:join", json!({"chat_id": chat})).await;
                }
                for round in 0..ROUNDS {
                    let sends: Vec<_> = order.iter().map(|chat| message(chat, format!("{round}"))).collect();
                    for r in client.send_together(&sends).await {
                        client.response(r).await.expect("acked");
                    }
                }
            }));
        }
    }
    for t in tasks {
        t.await.expect("writer");
    }
    for chat in ["x", "y"] {
        assert_eq!(c.stored(0, chat).await.len(), 2 * WRITERS * ROUNDS);
    }
    // PostgreSQL counts the deadlocks it broke; a backend reports its
    // counts when it ends, so stop the nodes and wait for their sessions
    // to end first.
    for node in c.nodes.drain(..) {
        node.signal("TERM");
        node.wait(Duration::from_secs(10)).await;
    }
    assert_eq!(deadlocks(&c.db).await, 0);
}

/// Deadlocks PostgreSQL detected in the test's database, once no session
/// of it is left.
async fn deadlocks(db: &common::postgres::TempDatabase) -> i64 {
    use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let (admin, name) = (db.admin_url.clone(), db.name.clone());
    tokio::task::spawn_blocking(move || {
        let mut c = PgConnection::establish(&admin).expect("admin connection");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let sessions: Count = diesel::sql_query(format!("SELECT count(*) AS n FROM pg_stat_activity WHERE datname = '{name}'"))
                .get_result(&mut c)
                .expect("pg_stat_activity");
            if sessions.n == 0 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the nodes' sessions did not end");
            std::thread::sleep(Duration::from_millis(20)); // polling PostgreSQL's view of ended sessions
        }
        diesel::sql_query("SELECT pg_stat_clear_snapshot()").execute(&mut c).expect("clear snapshot");
        let count: Count = diesel::sql_query(format!("SELECT deadlocks AS n FROM pg_stat_database WHERE datname = '{name}'"))
            .get_result(&mut c)
            .expect("pg_stat_database");
        count.n
    })
    .await
    .expect("query task")
}

#[tokio::test]
async fn the_http_api_works_on_any_node() {
    let Some(c) = Cluster::start(2, no_extra) else { return };
    // A publish on node 1 reaches a member on node 0.
    let mut m0 = member(&c, 0, "m0", "news").await;
    let published = c.api(1, "POST", "/api/chats/news/messages", Some(json!({"user_id": "bot", "content": "hello"}))).await;
    assert_eq!(published.status, 201, "{}", published.text);
    let got = m0.expect_push("chat:message", "chat:news").await;
    assert_eq!(got["message"], published.body["message"]);

    // A revoke on node 1 evicts the user from the live room on node 0.
    let created = c.api(1, "POST", "/api/documents", Some(json!({"document_id": "plan", "owner": "owner"}))).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let granted = c.api(1, "PUT", "/api/documents/plan/access/bob", Some(json!({"role": "editor"}))).await;
    assert_eq!(granted.status, 200);
    let mut bob = c.client(0, "bob").await;
    bob.ok("documents:join", json!({"document_id": "plan"})).await;
    let mut owner = c.client(0, "owner").await;
    owner.ok("documents:join", json!({"document_id": "plan"})).await;
    let revoked = c.api(1, "PUT", "/api/documents/plan/access/bob", Some(json!({"role": "none"}))).await;
    assert_eq!(revoked.status, 200);
    let evicted = bob.expect_event("error").await;
    assert_eq!((evicted["room"].as_str(), evicted["data"]["code"].as_str()), (Some("document:plan"), Some("PERMISSION_DENIED")));
    assert_eq!(owner.expect_push("user:left", "document:plan").await["user_id"], "bob");

    // DELETE on node 0 closes carol's connections on both nodes with 4003.
    let mut carol0 = c.client(0, "carol").await;
    let mut carol1 = c.client(1, "carol").await;
    let mut other = c.client(1, "dave").await;
    let closed = c.api(0, "DELETE", "/api/users/carol/connections", None).await;
    assert_eq!((closed.status, &closed.body), (200, &json!({"closed": 2})), "{}", closed.text);
    assert_eq!(carol0.expect_close().await, 4003);
    assert_eq!(carol1.expect_close().await, 4003);
    other.ok("ping", json!({})).await;
    let none = c.api(1, "DELETE", "/api/users/nobody/connections", None).await;
    assert_eq!(none.body, json!({"closed": 0}));
    assert_eq!(c.metric(0, "huddle_cluster_peers").await, 1.0);
}

#[tokio::test]
async fn cluster_mode_refuses_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(common::process::BIN)
        .arg("serve")
        .env("HUDDLE_BIND", "127.0.0.1:0")
        .env("DATABASE_URL", dir.path().join("huddle.db"))
        .env("HUDDLE_JWT_SECRET", common::SECRET)
        .env("HUDDLE_REDIS_URL", "redis://127.0.0.1:1")
        .output()
        .expect("run huddle");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cluster mode (HUDDLE_REDIS_URL is set) needs a PostgreSQL database"), "{stderr}");
}
