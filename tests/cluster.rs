//! Cluster mode with real processes: two or three `huddle` nodes on one
//! PostgreSQL database and a Redis of the test's own, which the tests
//! kill, restart, cut from one node, or outlive (a node killed, paused,
//! or dying between its commit and its publish). Whatever happens, every
//! member on every node sees each message and each document version once,
//! in the database's order.
//!
//! Needs PostgreSQL and `redis-server` (see `common::cluster`): without
//! them these tests say that they were skipped.

mod common;

use std::time::Duration;

use common::cluster::{pushes_until, seqs, until_listed, users, Cluster, NODE_TIMEOUT_MS};
use common::editing::{edit_randomly, history, replay, OnBusy, View};
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

/// How long after `node_timeout_ms` the other nodes may take to say that a
/// dead node's users left: the next liveness check (a quarter of the
/// timeout), then the push; generous, for a loaded CI machine.
const LEFT_MARGIN: Duration = Duration::from_secs(3);

/// The `user:left` pushes of `room` on `client` until every user in
/// `users` has left, within `node_timeout_ms` plus [`LEFT_MARGIN`] from
/// `since`.
async fn all_leave(client: &mut Client, room: &str, users: &[&str], since: std::time::Instant) {
    let mut waiting: Vec<&str> = users.to_vec();
    while !waiting.is_empty() {
        let left = client.expect_push("user:left", room).await;
        waiting.retain(|u| left["user_id"] != *u);
    }
    let took = since.elapsed();
    assert!(took < Duration::from_millis(NODE_TIMEOUT_MS) + LEFT_MARGIN, "{users:?} left {room} only after {took:?}");
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
            // Every frame in the order it arrived.
            let mut frames = Vec::new();
            for burst in 0..10 {
                let sends: Vec<_> = (0..10).map(|k| message("one", format!("p{i} #{}", burst * 10 + k))).collect();
                let refs = p.send_together(&sends).await;
                while frames.iter().filter(|f: &&Value| f["event"] == "ack").count() < (burst + 1) * 10 {
                    frames.push(p.next().await);
                }
                for r in refs {
                    let ack = frames.iter().find(|f| f["ref"] == json!(r)).expect("acked");
                    acked.push(ack["data"]["message"].clone());
                }
            }
            while !frames.iter().any(|f| f["event"] == "chat:message" && f["data"]["message"]["seq"] == 300) {
                frames.push(p.next().await);
            }
            // A publisher is a member too: its own messages reach it as
            // pushes, in seq order, each after its ack.
            let pushed: Vec<Value> =
                frames.iter().filter(|f| f["event"] == "chat:message").map(|f| f["data"]["message"].clone()).collect();
            assert_eq!(seqs(&pushed), (from + 1..=300).collect::<Vec<_>>(), "publisher p{i}");
            for m in &acked {
                let ack_at = frames.iter().position(|f| f["event"] == "ack" && f["data"]["message"] == *m);
                let push_at = frames.iter().position(|f| f["event"] == "chat:message" && f["data"]["message"] == *m);
                assert!(ack_at < push_at, "publisher p{i}: the push of {m} came before its ack");
            }
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
    // The watcher sees the victim's users, and its cursor.
    until_listed(&mut watcher, "chat:crash", &[("vm", 1), ("w0", 1), ("w1", 1), ("watcher", 1)]).await;
    victim_member.ok("awareness:set", json!({"room": "chat:crash", "state": {"cursor": 1}})).await;
    let cursor = watcher.expect_push("awareness", "chat:crash").await;
    assert_eq!((cursor["user_id"].as_str(), &cursor["state"]), (Some("vm"), &json!({"cursor": 1})));
    let mut killed_at = std::time::Instant::now();
    let mut acked = Vec::new();
    for round in 0..8 {
        let sends: Vec<_> = (0..5).map(|k| message("crash", format!("w0 {round}.{k}"))).collect();
        let r0 = w0.send_together(&sends).await;
        let sends: Vec<_> = (0..5).map(|k| message("crash", format!("w1 {round}.{k}"))).collect();
        let r1 = w1.send_together(&sends).await;
        if round == 7 {
            // Mid-stream: w0's last burst is in flight.
            c.nodes[0].child.kill().expect("SIGKILL");
            killed_at = std::time::Instant::now();
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
    // The other node says that the dead node's users left, and clears
    // their awareness.
    all_leave(&mut watcher, "chat:crash", &["vm", "w0"], killed_at).await;
    let cleared = watcher.expect_push("awareness", "chat:crash").await;
    assert_eq!((cleared["session_id"].clone(), cleared["state"].clone()), (cursor["session_id"].clone(), Value::Null));
    until_listed(&mut watcher, "chat:crash", &[("w1", 1), ("watcher", 1)]).await;
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
    // A quiet room open on node 0 only: after the restart only Redis can
    // tell node 1 who is in it.
    let _quiet = member(&c, 0, "q0", "quiet").await;
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
    // Presence is rebuilt: node 1 opens the quiet room and reads who is
    // there from Redis, which lost everything with the restart.
    c.until_presence(1, "chat:quiet", &[("q0", 1)]).await;
    // Nobody was taken for gone on the way.
    let everyone = [("m0", 1), ("m1", 1), ("w0", 1), ("w1", 1)];
    for m in members.iter_mut() {
        until_listed(m, "chat:storm", &everyone).await;
        assert!(m.kept(|f| f["event"] == "user:left").is_empty());
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
    let everyone = [("m0", 1), ("m1", 1), ("w", 1)];
    until_listed(&mut awake, "chat:nap", &everyone).await;
    c.node(0).signal("STOP");
    let paused_at = std::time::Instant::now();
    for i in 0..20 {
        writer.ok("chat:message", json!({"chat_id": "nap", "content": format!("while paused {i}")})).await;
    }
    // The others carry on meanwhile, and after node_timeout_ms take the
    // paused node for dead: its user leaves.
    assert_eq!(seqs(&pushes_until(&mut awake, "chat:nap", 25).await), (1..=25).collect::<Vec<_>>());
    all_leave(&mut awake, "chat:nap", &["m0"], paused_at).await;
    c.node(0).signal("CONT");
    c.node(0).log_until("was paused", Duration::from_secs(10));
    let stored = c.stored(1, "nap").await;
    assert_eq!(pushes_until(&mut paused_member, "chat:nap", 25).await, stored[5..].to_vec());
    writer.ok("chat:message", json!({"chat_id": "nap", "content": "after"})).await;
    assert_eq!(paused_member.expect_push("chat:message", "chat:nap").await["message"]["seq"], 26);
    // It republished: its user is back for the others, and both nodes
    // list the same room.
    while awake.expect_push("user:joined", "chat:nap").await["user_id"] != "m0" {}
    until_listed(&mut awake, "chat:nap", &everyone).await;
    until_listed(&mut paused_member, "chat:nap", &everyone).await;
}

#[tokio::test]
async fn a_node_cut_from_redis_converges_through_the_periodic_check() {
    // Node 0 reaches Redis through a proxy the test can cut; node 1 directly.
    let Some((c, proxy)) = Cluster::start_cuttable(&[]) else { return };

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

/// Settings for three nodes of which node 0 exits instead of publishing
/// its first commit (a test-only fault point).
fn dies_before_publishing(i: usize) -> Vec<(String, String)> {
    match i {
        0 => vec![("HUDDLE_TEST_EXIT_BEFORE_PUBLISH".into(), "1".into())],
        _ => Vec::new(),
    }
}

/// Waits for node 0 to exit at the fault point, and forgets it.
async fn died_at_the_fault_point(c: &mut Cluster) {
    let status = c.nodes.remove(0).wait(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(86), "the fault point");
}

#[tokio::test]
async fn a_node_that_dies_between_commit_and_publish_still_reaches_every_member() {
    let Some(mut c) = Cluster::start(3, dies_before_publishing) else { return };
    let mut m1 = member(&c, 1, "m1", "lost").await;
    let mut m2 = member(&c, 2, "m2", "lost").await;
    let mut dying = member(&c, 0, "dying", "lost").await;
    let r = dying.send_request("chat:message", json!({"chat_id": "lost", "content": "last words"})).await;
    assert_eq!(dying.try_response(r).await, None, "the node died before acking");
    died_at_the_fault_point(&mut c).await;
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

#[tokio::test]
async fn presence_and_awareness_span_the_nodes() {
    let Some(c) = Cluster::start(2, no_extra) else { return };
    let mut alice = member(&c, 0, "alice", "here").await;
    // Bob joins on the other node: his answer lists alice, she hears him.
    let mut bob1 = c.client(1, "bob").await;
    let ack = bob1.ok("chat:join", json!({"chat_id": "here"})).await;
    assert_eq!((users(&ack["members"]), &ack["member_count"]), (vec![("alice".into(), 1), ("bob".into(), 1)], &json!(2)));
    let joined = alice.expect_push("user:joined", "chat:here").await;
    assert_eq!((joined["user_id"].as_str(), joined["name"].as_str()), (Some("bob"), Some("bob (name)")));
    // A second connection of bob, on alice's node: the same user.
    let mut bob0 = member(&c, 0, "bob", "here").await;
    until_listed(&mut alice, "chat:here", &[("alice", 1), ("bob", 2)]).await;
    until_listed(&mut bob1, "chat:here", &[("alice", 1), ("bob", 2)]).await;
    for i in 0..2 {
        let page = c.until_presence(i, "chat:here", &[("alice", 1), ("bob", 2)]).await;
        assert_eq!((&page["member_count"], &page["has_more"]), (&json!(2), &json!(false)));
    }
    let first = c.api(1, "GET", "/api/rooms/chat:here/presence?limit=1", None).await;
    assert_eq!((users(&first.body["members"]), &first.body["has_more"]), (vec![("alice".into(), 1)], &json!(true)));
    let rest = c.api(0, "GET", "/api/rooms/chat:here/presence?after_user_id=alice&limit=5", None).await;
    assert_eq!(users(&rest.body["members"]), vec![("bob".into(), 2)]);
    let bad = c.api(0, "GET", "/api/rooms/general/presence", None).await;
    assert_eq!((bad.status, &bad.body["details"]["field"]), (400, &json!("room")));

    // Awareness crosses, and a join on the other node lists it.
    alice.ok("awareness:set", json!({"room": "chat:here", "state": {"cursor": 3}})).await;
    let cursor = bob1.expect_push("awareness", "chat:here").await;
    assert_eq!((cursor["user_id"].as_str(), &cursor["state"]), (Some("alice"), &json!({"cursor": 3})));
    let mut carol = c.client(1, "carol").await;
    let ack = carol.ok("chat:join", json!({"chat_id": "here"})).await;
    assert_eq!(ack["awareness"], json!([{"session_id": cursor["session_id"], "user_id": "alice", "state": {"cursor": 3}}]));

    // A room that opens on a node learns the states set before it opened
    // (in the join's answer, or pushed right after it).
    alice.ok("chat:join", json!({"chat_id": "fresh"})).await;
    alice.ok("awareness:set", json!({"room": "chat:fresh", "state": {"line": 7}})).await;
    let mut dave = c.client(1, "dave").await;
    let ack = dave.ok("chat:join", json!({"chat_id": "fresh"})).await;
    let state = match ack["awareness"].as_array().and_then(|a| a.first()) {
        Some(listed) => listed.clone(),
        None => dave.expect_push("awareness", "chat:fresh").await,
    };
    assert_eq!((state["user_id"].as_str(), &state["state"]), (Some("alice"), &json!({"line": 7})));
    alice.ok("chat:leave", json!({"chat_id": "fresh"})).await;

    // Bob leaves one node: still here through the other; then the other.
    bob1.ok("chat:leave", json!({"chat_id": "here"})).await;
    until_listed(&mut alice, "chat:here", &[("alice", 1), ("bob", 1), ("carol", 1)]).await;
    assert!(alice.kept(|f| f["event"] == "user:left").is_empty(), "bob is still here");
    bob0.ok("chat:leave", json!({"chat_id": "here"})).await;
    assert_eq!(carol.expect_push("user:left", "chat:here").await["user_id"], "bob");
    assert_eq!(alice.expect_push("user:left", "chat:here").await["user_id"], "bob");

    // Alice goes: carol, on the other node, hears her cursor cleared and
    // that she left.
    alice.close().await;
    let cleared = carol.expect_push("awareness", "chat:here").await;
    assert_eq!((cleared["session_id"].clone(), cleared["state"].clone()), (cursor["session_id"].clone(), Value::Null));
    assert_eq!(carol.expect_push("user:left", "chat:here").await["user_id"], "alice");
    c.until_presence(0, "chat:here", &[("carol", 1)]).await;
}

#[tokio::test]
async fn the_connection_limit_counts_every_node() {
    let Some(c) = Cluster::start(2, |_| vec![("HUDDLE_MAX_CONNECTIONS_PER_USER".into(), "2".into())]) else { return };
    let first = c.client(0, "dora").await;
    let _second = c.client(1, "dora").await;
    // A third, on either node: refused before the upgrade...
    for i in 0..2 {
        let (status, body) = Client::open_with(&c.node(i).ws_url(), Some(&token("dora"))).await.err().expect("refused");
        assert_eq!((status, &body["details"]["limit"]), (429, &json!("max_connections_per_user")), "node {i}");
    }
    // ...or after a first-frame auth.
    let mut third = Client::open(&c.node(1).ws_url()).await;
    third.send(json!({"event": "auth", "data": {"token": token("dora")}, "ref": 1})).await;
    assert_eq!(third.expect_event("error").await["data"]["code"], "LIMIT_EXCEEDED");
    assert_eq!(third.expect_close().await, 1008);
    // Others are not affected; a closed connection frees its slot on
    // every node (once the other node's count reaches Redis: retried,
    // bounded).
    c.client(1, "erin").await;
    first.close().await;
    let deadline = std::time::Instant::now() + common::client::WAIT;
    loop {
        match Client::open_with(&c.node(1).ws_url(), Some(&token("dora"))).await {
            Ok(_) => break,
            Err((429, _)) if std::time::Instant::now() < deadline => tokio::task::yield_now().await,
            Err(other) => panic!("dora was not let back in: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_join_on_a_node_far_behind_never_repeats_what_the_joiner_has() {
    // Node 0 reaches Redis through a proxy, repairs at most 5 messages in
    // a join, and checks the database only when its link comes back.
    let behind = [("HUDDLE_MAX_RECOVERY", "5"), ("HUDDLE_CHECK_INTERVAL_MS", "600000")];
    let Some((c, proxy)) = Cluster::start_cuttable(&behind) else { return };
    let mut old = member(&c, 0, "old", "far").await;
    let mut writer = member(&c, 1, "w", "far").await;
    proxy.cut();
    c.node(0).log_until("Redis link lost", Duration::from_secs(10));
    for i in 1..=12 {
        writer.ok("chat:message", json!({"chat_id": "far", "content": format!("{i}")})).await;
    }
    // A client that saw all twelve elsewhere comes to node 0, whose room
    // is twelve behind: more than a join repairs.
    let mut back = c.client(0, "back").await;
    let ack = back.ok("chat:join", json!({"chat_id": "far", "since_seq": 12})).await;
    assert_eq!((&ack["last_seq"], &ack["messages"], &ack["recovered"]), (&json!(12), &json!([]), &json!(true)));
    // The room catches up for its older member...
    let stored = c.stored(1, "far").await;
    assert_eq!(pushes_until(&mut old, "chat:far", 12).await, stored);
    // ...and the newcomer hears only what comes after its answer.
    proxy.restore();
    c.node(0).log_until("Redis link up", Duration::from_secs(20));
    writer.ok("chat:message", json!({"chat_id": "far", "content": "13"})).await;
    assert_eq!(seqs(&pushes_until(&mut back, "chat:far", 13).await), vec![13]);
    assert_eq!(old.expect_push("chat:message", "chat:far").await["message"]["seq"], 13);
}

#[tokio::test]
async fn a_revocation_redis_lost_still_evicts_through_the_periodic_check() {
    let Some((c, proxy)) = Cluster::start_cuttable(&[]) else { return };
    let created = c.api(1, "POST", "/api/documents", Some(json!({"document_id": "secret", "owner": "owner"}))).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let granted = c.api(1, "PUT", "/api/documents/secret/access/bob", Some(json!({"role": "editor"}))).await;
    assert_eq!(granted.status, 200);
    let mut bob = c.client(0, "bob").await;
    bob.ok("documents:join", json!({"document_id": "secret"})).await;
    let mut owner = c.client(0, "owner").await;
    owner.ok("documents:join", json!({"document_id": "secret"})).await;
    // Node 0 cannot hear the revocation's event: only the database says.
    proxy.cut();
    c.node(0).log_until("Redis link lost", Duration::from_secs(10));
    let revoked = c.api(1, "PUT", "/api/documents/secret/access/bob", Some(json!({"role": "none"}))).await;
    assert_eq!(revoked.status, 200);
    let evicted = bob.expect_event("error").await;
    assert_eq!((evicted["room"].as_str(), evicted["data"]["code"].as_str()), (Some("document:secret"), Some("PERMISSION_DENIED")));
    assert_eq!(owner.expect_push("user:left", "document:secret").await["user_id"], "bob");
}

// ---- documents across nodes ----------------------------------------------------------

/// Creates document `id` with `content` through node 0's HTTP API, owned by
/// `owner`, and grants each `(user, role)`.
async fn document(c: &Cluster, id: &str, content: &str, grants: &[(&str, &str)]) {
    let body = json!({"document_id": id, "content": content, "owner": "owner"});
    let created = c.api(0, "POST", "/api/documents", Some(body)).await;
    assert_eq!(created.status, 201, "{}", created.text);
    for (user, role) in grants {
        let granted = c.api(0, "PUT", &format!("/api/documents/{id}/access/{user}"), Some(json!({"role": role}))).await;
        assert_eq!(granted.status, 200, "{}", granted.text);
    }
}

/// A client of node `i` that joined document `id`, with its view of it.
async fn reader(c: &Cluster, i: usize, user: &str, id: &str) -> (Client, View) {
    let mut client = c.client(i, user).await;
    let joined = client.ok("documents:join", json!({"document_id": id})).await;
    let document = &joined["document"];
    let view = View::new(document["content"].as_str().expect("content"), document["version"].as_i64().expect("version"));
    (client, view)
}

/// Integrates `client`'s pushes of document `id` into `view` until it
/// reaches `version` (each once, in order: `View` checks).
async fn read_until(client: &mut Client, view: &mut View, id: &str, version: i64) {
    let room = format!("document:{id}");
    while view.version() < version {
        let frame = client.next().await;
        view.take(&frame, &room);
    }
}

/// The document as the database holds it (through node `i`'s HTTP API).
async fn stored_document(c: &Cluster, i: usize, id: &str) -> Value {
    let reply = c.api(i, "GET", &format!("/api/documents/{id}"), None).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.body["document"].clone()
}

/// Edits of a document, summed over the nodes, that were prepared again
/// because another node committed first.
async fn redone(c: &Cluster) -> f64 {
    let mut sum = 0.0;
    for i in 0..c.nodes.len() {
        sum += c.metric(i, "huddle_document_edits_redone_total").await;
    }
    sum
}

/// No index enforces `op_id`s: a resend is recognised by the room that
/// prepares it. Here it reaches a node whose room has not heard of the
/// original (its Redis link is cut): the room prepares it on the version
/// it knows, its commit finds the document moved, the room reads the
/// original from the database, and answers the resend with it.
#[tokio::test]
async fn an_operation_resent_to_a_node_that_missed_its_original_is_applied_once() {
    let Some((c, proxy)) = Cluster::start_cuttable(&[]) else { return };
    document(&c, "again", "abc", &[("alice", "editor")]).await;
    let (mut behind, _) = reader(&c, 0, "alice", "again").await;
    let (mut first, _) = reader(&c, 1, "alice", "again").await;
    proxy.cut();
    c.node(0).log_until("Redis link lost", Duration::from_secs(10));

    let op = json!({"document_id": "again", "base_version": 0, "ops": [3, "!"], "op_id": "resent-1"});
    let original = json!({"document_id": "again", "version": 1, "ops": [3, "!"]});
    assert_eq!(first.ok("documents:op", op.clone()).await, original);
    assert_eq!(behind.ok("documents:op", op).await, original);

    let stored = stored_document(&c, 1, "again").await;
    assert_eq!((&stored["version"], &stored["content"]), (&json!(1), &json!("abc!")));
    assert!(redone(&c).await >= 1.0, "the resend was prepared on the old version and redone");
}

/// A room commits its editors' groups on the access list's count the
/// store last allowed them under, without reading their roles. A
/// revocation through another node bumps the count, so the next group of
/// the revoked editor is refused by the commit itself, even on a node that
/// has not heard of the revocation (cut from Redis, no periodic check).
#[tokio::test]
async fn a_revocation_through_another_node_stops_the_next_edit_at_the_commit() {
    let Some((c, proxy)) = Cluster::start_cuttable(&[("HUDDLE_CHECK_INTERVAL_MS", "600000")]) else { return };
    document(&c, "locked", "", &[("bob", "editor")]).await;
    let (mut bob, _) = reader(&c, 0, "bob", "locked").await;
    let ack = bob.ok("documents:op", json!({"document_id": "locked", "base_version": 0, "ops": ["a"], "op_id": "b-1"})).await;
    assert_eq!(ack["version"], 1);
    proxy.cut();
    c.node(0).log_until("Redis link lost", Duration::from_secs(10));
    let revoked = c.api(1, "PUT", "/api/documents/locked/access/bob", Some(json!({"role": "none"}))).await;
    assert_eq!(revoked.status, 200, "{}", revoked.text);

    let e = bob.fails("documents:op", json!({"document_id": "locked", "base_version": 1, "ops": [1, "b"], "op_id": "b-2"}), "PERMISSION_DENIED").await;
    assert!(e["message"].as_str().is_some_and(|m| m.contains("locked")), "{e}");
    let stored = stored_document(&c, 1, "locked").await;
    assert_eq!((&stored["version"], &stored["content"]), (&json!(1), &json!("a")));
}

#[tokio::test]
async fn edits_of_one_version_from_two_nodes_have_one_winner_and_every_member_sees_every_version() {
    const ROUNDS: i64 = 15;
    let Some(c) = Cluster::start(2, no_extra) else { return };
    document(&c, "race", "", &[("a", "editor"), ("b", "editor"), ("m0", "viewer"), ("m1", "viewer")]).await;
    let (mut a, mut b) = (reader(&c, 0, "a", "race").await.0, reader(&c, 1, "b", "race").await.0);
    let mut members = [reader(&c, 0, "m0", "race").await, reader(&c, 1, "m1", "race").await];
    // Round after round, both editors update the same version at once.
    let mut winners = Vec::new();
    for version in 1..=ROUNDS {
        let update = |who: &str| json!({"document_id": "race", "content": format!("{who} {version}"), "version": version});
        let ra = a.send_request("documents:update", update("a")).await;
        let rb = b.send_request("documents:update", update("b")).await;
        let outcomes = [(a.response(ra).await, "a"), (b.response(rb).await, "b")];
        let won: Vec<&str> = outcomes.iter().filter(|(o, _)| o.is_ok()).map(|(_, who)| *who).collect();
        assert_eq!(won.len(), 1, "version {version}: exactly one winner, not {outcomes:?}");
        for (outcome, who) in &outcomes {
            match outcome {
                Ok(ack) => assert_eq!(ack, &json!({"document_id": "race", "version": version})),
                Err(e) => assert_eq!((&e["code"], &e["details"]["current_version"]), (&json!("VERSION_CONFLICT"), &json!(version)), "{who}"),
            }
        }
        winners.push(format!("{} {version}", won[0]));
    }
    // Every member, on either node, saw every version once, in order, as
    // the whole-content updates they were.
    for (i, (member, view)) in members.iter_mut().enumerate() {
        read_until(member, view, "race", ROUNDS).await;
        let contents: Vec<&str> = view.texts[1..].iter().map(String::as_str).collect();
        assert_eq!(contents, winners, "member on node {i}");
        assert!(member.kept(|f| f["event"] == "documents:op").is_empty());
    }
    // Each editor heard the other's wins, in order, and never its own.
    for (editor, me) in [(&mut a, "a"), (&mut b, "b")] {
        editor.ok("ping", json!({})).await;
        let heard: Vec<String> = editor
            .kept(|f| f["event"] == "documents:updated")
            .iter()
            .map(|f| f["data"]["document"]["content"].as_str().expect("content").to_owned())
            .collect();
        let theirs: Vec<String> = winners.iter().filter(|w| !w.starts_with(me)).cloned().collect();
        assert_eq!(heard, theirs, "editor {me}");
    }
    let stored = stored_document(&c, 1, "race").await;
    assert_eq!((&stored["version"], stored["content"].as_str()), (&json!(ROUNDS), winners.last().map(String::as_str)));
    let history = c.api(1, "GET", "/api/documents/race/history?limit=100", None).await;
    let authors: Vec<&str> = history.body["changes"].as_array().unwrap().iter().map(|ch| ch["user_id"].as_str().unwrap()).collect();
    let winners_by: Vec<&str> = winners.iter().map(|w| &w[..1]).collect();
    assert_eq!(authors, winners_by);
}

#[tokio::test]
async fn editors_on_three_nodes_converge_on_the_database_without_server_busy() {
    const OPS: usize = 60;
    let total = 3 * OPS as i64;
    let Some(c) = Cluster::start(3, no_extra) else { return };
    let grants = [("e0", "editor"), ("e1", "editor"), ("e2", "editor"), ("w0", "viewer"), ("w1", "viewer"), ("w2", "viewer")];
    document(&c, "draft", "start", &grants).await;
    let mut watchers = Vec::new();
    for i in 0..3 {
        watchers.push(reader(&c, i, &format!("w{i}"), "draft").await);
    }
    let before = redone(&c).await;
    // One editor per node, random operations on bases up to five behind,
    // four in flight: every answer must be an ack (no SERVER_BUSY), and
    // each editor integrates acks and pushes in version order: an ack
    // after the pushes of every earlier version, wherever it was made.
    let mut tasks = Vec::new();
    for i in 0..3 {
        let client = c.client(i, &format!("e{i}")).await;
        tasks.push(tokio::spawn(edit_randomly(client, "draft".into(), 300 + i as u64, OPS, total, OnBusy::Fail)));
    }
    let mut views = Vec::new();
    for t in tasks {
        views.push(t.await.expect("editor").1);
    }
    let stored = stored_document(&c, 0, "draft").await;
    assert_eq!(stored["version"], total);
    for (i, view) in views.iter().enumerate() {
        assert_eq!((view.version(), view.text()), (total, stored["content"].as_str().unwrap()), "editor on node {i}");
    }
    for (i, (watcher, view)) in watchers.iter_mut().enumerate() {
        read_until(watcher, view, "draft", total).await;
        assert_eq!(view.text(), stored["content"].as_str().unwrap(), "watcher on node {i}");
    }
    // Everyone saw the database's history, version by version.
    let mut owner = c.client(2, "owner").await;
    let replayed = replay("start", &history(&mut owner, "draft").await);
    for view in views.iter().chain(watchers.iter().map(|(_, v)| v)) {
        assert_eq!(view.ops[..], replayed.ops[view.start as usize..]);
    }
    // How often a node lost the race to commit (not asserted: it depends
    // on timing; each loss is prepared again on the winner's versions).
    eprintln!("{total} operations on three nodes: {} edits prepared again", redone(&c).await - before);
}

#[tokio::test]
async fn editors_converge_through_the_database_while_one_node_is_cut_from_redis() {
    const OPS: usize = 30;
    let total = 2 * OPS as i64;
    let Some((c, proxy)) = Cluster::start_cuttable(&[]) else { return };
    document(&c, "cut", "", &[("e0", "editor"), ("e1", "editor"), ("w0", "viewer"), ("w1", "viewer")]).await;
    let mut watchers = [reader(&c, 0, "w0", "cut").await, reader(&c, 1, "w1", "cut").await];
    proxy.cut();
    c.node(0).log_until("Redis link lost", Duration::from_secs(10));
    // Neither node hears the other's versions through Redis: a commit that
    // finds the document moved reads them from the history, and so does
    // the periodic check. Without Redis to bring them early, a node may
    // keep losing the race; its editor sends again.
    let mut tasks = Vec::new();
    for i in 0..2 {
        let client = c.client(i, &format!("e{i}")).await;
        tasks.push(tokio::spawn(edit_randomly(client, "cut".into(), 500 + i as u64, OPS, total, OnBusy::Retry)));
    }
    for t in tasks {
        t.await.expect("editor");
    }
    let stored = stored_document(&c, 1, "cut").await;
    assert_eq!(stored["version"], total);
    for (i, (watcher, view)) in watchers.iter_mut().enumerate() {
        read_until(watcher, view, "cut", total).await;
        assert_eq!(view.text(), stored["content"].as_str().unwrap(), "watcher on node {i}");
    }
    // Back on Redis: the next version crosses at once.
    proxy.restore();
    c.node(0).log_until("Redis link up", Duration::from_secs(20));
    let mut e0 = reader(&c, 0, "e0", "cut").await.0;
    e0.ok("documents:op", json!({"document_id": "cut", "base_version": total, "ops": ["!"]})).await;
    let (watcher, view) = &mut watchers[1];
    read_until(watcher, view, "cut", total + 1).await;
    assert!(view.text().starts_with('!'));
}

#[tokio::test]
async fn a_document_version_whose_node_dies_before_publishing_still_reaches_every_member() {
    let Some(mut c) = Cluster::start(3, dies_before_publishing) else { return };
    document(&c, "will", "hello", &[("dying", "editor"), ("m1", "viewer"), ("m2", "viewer"), ("e1", "editor")]).await;
    let mut m1 = reader(&c, 1, "m1", "will").await.0;
    let mut m2 = reader(&c, 2, "m2", "will").await.0;
    let mut dying = c.client(0, "dying").await;
    let r = dying.send_request("documents:update", json!({"document_id": "will", "content": "last words", "version": 1})).await;
    assert_eq!(dying.try_response(r).await, None, "the node died before acking");
    died_at_the_fault_point(&mut c).await;
    // Committed but never published: the others' periodic check finds it
    // in the history, which says it was a whole-content update.
    for m in [&mut m1, &mut m2] {
        let got = m.expect_push("documents:updated", "document:will").await;
        assert_eq!((&got["document"]["version"], &got["document"]["content"], &got["user_id"]), (&json!(1), &json!("last words"), &json!("dying")));
    }
    // And the document goes on from there, on every node left.
    let mut e1 = c.client(1, "e1").await;
    e1.ok("documents:op", json!({"document_id": "will", "base_version": 1, "ops": [10, "."]})).await;
    let got = m2.expect_push("documents:op", "document:will").await;
    assert_eq!((&got["version"], &got["ops"]), (&json!(2), &json!([10, "."])));
}

#[tokio::test]
async fn a_join_since_a_version_recovers_exactly_on_a_node_behind() {
    // Node 0 reaches Redis through a proxy and checks the database only
    // when its link comes back.
    let Some((c, proxy)) = Cluster::start_cuttable(&[("HUDDLE_CHECK_INTERVAL_MS", "600000")]) else { return };
    document(&c, "notes", "", &[("w", "editor"), ("old", "viewer"), ("back", "viewer")]).await;
    let (mut old, mut old_view) = reader(&c, 0, "old", "notes").await;
    let mut writer = reader(&c, 1, "w", "notes").await.0;
    proxy.cut();
    c.node(0).log_until("Redis link lost", Duration::from_secs(10));
    for v in 0..5 {
        // Appends the digit v + 1.
        let ops = if v == 0 { json!(["1"]) } else { json!([v, (v + 1).to_string()]) };
        writer.ok("documents:op", json!({"document_id": "notes", "base_version": v, "ops": ops})).await;
    }
    let history = c.api(1, "GET", "/api/documents/notes/history", None).await.body["changes"].clone();
    // Someone who saw all five on node 1 comes to node 0, whose room saw
    // none: the join reads them first, and recovers exactly.
    let mut back = c.client(0, "back").await;
    let joined = back.ok("documents:join", json!({"document_id": "notes", "since_version": 5})).await;
    assert_eq!((&joined["recovered"], &joined["changes"]), (&json!(true), &json!([])));
    assert_eq!((&joined["document"]["version"], &joined["document"]["content"]), (&json!(5), &json!("12345")));
    let mut again = c.client(0, "back").await;
    let joined = again.ok("documents:join", json!({"document_id": "notes", "since_version": 2})).await;
    assert_eq!((&joined["recovered"], &joined["changes"]), (&json!(true), &json!(history.as_array().unwrap()[2..])));
    // The room's older member heard them on the way, in order.
    read_until(&mut old, &mut old_view, "notes", 5).await;
    assert_eq!(old_view.text(), "12345");
    // On the node that has them all, too.
    let mut there = c.client(1, "back").await;
    let joined = there.ok("documents:join", json!({"document_id": "notes", "since_version": 4})).await;
    assert_eq!(joined["changes"], json!(history.as_array().unwrap()[4..]));
    // Once the link is back, the next version reaches the newcomer once.
    proxy.restore();
    c.node(0).log_until("Redis link up", Duration::from_secs(20));
    writer.ok("documents:op", json!({"document_id": "notes", "base_version": 5, "ops": [5, "6"]})).await;
    assert_eq!(back.expect_push("documents:op", "document:notes").await["version"], 6);
    back.ok("ping", json!({})).await;
    assert!(back.kept(|f| f["event"] == "documents:op").is_empty(), "nothing twice");
}
