//! Chat rooms over real sockets: creation, access, joining, messages with a
//! gapless seq, idempotent sends, history paging and recovery.

mod common;

use std::collections::HashSet;

use common::{Client, TestServer};
use serde_json::{json, Value};

fn seqs(messages: &Value) -> Vec<i64> {
    messages.as_array().unwrap().iter().map(|m| m["seq"].as_i64().unwrap()).collect()
}

#[tokio::test]
async fn join_creates_a_public_chat_and_messages_are_acked_then_pushed() {
    let server = TestServer::start();
    let mut alice = server.client("alice").await;
    let joined = alice.ok("chat:join", json!({"chat_id": "general"})).await;
    assert_eq!(joined["room"], "chat:general");
    assert_eq!(joined["last_seq"], 0);
    assert_eq!(joined["recovered"], false);
    assert_eq!(joined["members"], json!([{"user_id": "alice", "name": "alice (name)", "connections": 1}]));

    // The ack comes before the push, and both carry the stored message.
    let r = alice.send_request("chat:message", json!({"chat_id": "general", "content": "hello"})).await;
    let first = alice.next().await;
    assert_eq!(first["event"], "ack", "{first}");
    assert_eq!(first["ref"], r);
    let message = &first["data"]["message"];
    assert_eq!(message["seq"], 1);
    assert_eq!(message["chat_id"], "general");
    assert_eq!(message["user_id"], "alice");
    assert_eq!(message["content"], "hello");
    assert!(message["created_at"].as_str().unwrap().ends_with('Z'));
    let push = alice.expect_push("chat:message", "chat:general").await;
    assert_eq!(&push["message"], message);
    server.stop().await;
}

// Joins that name new chats at the same moment create them in shared
// commits: each is created once, public, and a join of one that exists
// (created by another join, or by chat:create) does not create it again.
#[tokio::test]
async fn joins_naming_new_chats_at_once_create_each_once() {
    let server = TestServer::start();
    let mut owner = server.client("owner").await;
    owner.ok("chat:create", json!({"chat_id": "made", "private": true, "members": []})).await;
    let mut clients = Vec::new();
    for i in 0..24 {
        clients.push(server.client(&format!("u{i}")).await);
    }
    // Two joins per new chat, all sent before any answer is read.
    let mut refs = Vec::new();
    for (i, c) in clients.iter_mut().enumerate() {
        refs.push(c.send_request("chat:join", json!({"chat_id": format!("new{}", i / 2)})).await);
    }
    for (c, r) in clients.iter_mut().zip(refs) {
        let ack = c.response(r).await.expect("join");
        assert_eq!(ack["last_seq"], 0);
    }
    for (i, c) in clients.iter_mut().enumerate().step_by(2) {
        let sent = c.ok("chat:message", json!({"chat_id": format!("new{}", i / 2), "content": "first"})).await;
        assert_eq!(sent["message"]["seq"], 1, "one chat per name, its seq from 1");
    }
    // A private chat named by a join is not recreated as a public one.
    clients[0].fails("chat:join", json!({"chat_id": "made"}), "PERMISSION_DENIED").await;
    server.stop().await;
}

#[tokio::test]
async fn create_public_and_private_chats() {
    let server = TestServer::start();
    let mut alice = server.client("alice").await;
    let created = alice.ok("chat:create", json!({"chat_id": "team", "private": true, "members": ["bob"]})).await;
    assert_eq!(created["chat"]["id"], "team");
    assert_eq!(created["chat"]["private"], true);
    assert_eq!(created["chat"]["created_by"], "alice");
    let public = alice.ok("chat:create", json!({"chat_id": "lobby"})).await;
    assert_eq!(public["chat"]["private"], false);

    // An existing id is ALREADY_EXISTS for everyone, the creator included.
    alice.fails("chat:create", json!({"chat_id": "team"}), "ALREADY_EXISTS").await;
    let mut bob = server.client("bob").await;
    bob.fails("chat:create", json!({"chat_id": "team", "private": false}), "ALREADY_EXISTS").await;

    // Bob is a member of the private chat, Carol is not.
    bob.ok("chat:join", json!({"chat_id": "team"})).await;
    let mut carol = server.client("carol").await;
    carol.fails("chat:join", json!({"chat_id": "team"}), "PERMISSION_DENIED").await;
    carol.fails("chat:history", json!({"chat_id": "team"}), "PERMISSION_DENIED").await;
    // Access comes before membership: not NOT_JOINED.
    carol.fails("chat:message", json!({"chat_id": "team", "content": "let me in"}), "PERMISSION_DENIED").await;
    // Anyone may join the public one.
    carol.ok("chat:join", json!({"chat_id": "lobby"})).await;
    server.stop().await;
}

#[tokio::test]
async fn leaving_a_chat_checks_access_before_membership() {
    let server = TestServer::start();
    let mut alice = server.client("alice").await;
    alice.ok("chat:create", json!({"chat_id": "team", "private": true, "members": ["bob"]})).await;
    alice.ok("chat:create", json!({"chat_id": "lobby"})).await;

    // Carol is a stranger to the private chat: leaving it is denied, as
    // every other chat request is, not NOT_JOINED.
    let mut carol = server.client("carol").await;
    let e = carol.fails("chat:leave", json!({"chat_id": "team"}), "PERMISSION_DENIED").await;
    assert_eq!(e["message"], "chat:team is private");
    // She could join the public chat, so there she has only not joined.
    carol.fails("chat:leave", json!({"chat_id": "lobby"}), "NOT_JOINED").await;
    // Bob is a member of the private chat but this connection has not joined.
    let mut bob = server.client("bob").await;
    bob.fails("chat:leave", json!({"chat_id": "team"}), "NOT_JOINED").await;

    // A leave pipelined behind a join that will be refused reaches the room
    // while the join is still running there: the room checks access too.
    let refs = carol
        .send_together(&[("chat:join", json!({"chat_id": "team"})), ("chat:leave", json!({"chat_id": "team"}))])
        .await;
    assert_eq!(carol.response(refs[0]).await.unwrap_err()["code"], "PERMISSION_DENIED");
    assert_eq!(carol.response(refs[1]).await.unwrap_err()["code"], "PERMISSION_DENIED");
    server.stop().await;
}

#[tokio::test]
async fn messages_need_a_join_and_valid_content() {
    let server = TestServer::start_with(|o| o.max_message_chars = 10);
    let mut alice = server.client("alice").await;
    alice.fails("chat:message", json!({"chat_id": "general", "content": "hi"}), "NOT_JOINED").await;
    alice.ok("chat:join", json!({"chat_id": "general"})).await;
    let e = alice.fails("chat:message", json!({"chat_id": "general", "content": ""}), "INVALID_INPUT").await;
    assert_eq!(e["details"]["field"], "content");
    let e = alice.fails("chat:message", json!({"chat_id": "general", "content": "ééééééééééé"}), "PAYLOAD_TOO_LARGE").await;
    assert_eq!(e["details"]["field"], "content");
    // Ten characters (twenty bytes) is within the limit.
    alice.ok("chat:message", json!({"chat_id": "general", "content": "éééééééééé"})).await;
    alice.fails("chat:message", json!({"chat_id": "general", "content": "x", "client_msg_id": ""}), "INVALID_INPUT").await;
    alice.fails("chat:leave", json!({"chat_id": "elsewhere"}), "NOT_JOINED").await;
    let left = alice.ok("chat:leave", json!({"chat_id": "general"})).await;
    assert_eq!(left["room"], "chat:general");
    alice.fails("chat:message", json!({"chat_id": "general", "content": "hi"}), "NOT_JOINED").await;
    server.stop().await;
}

#[tokio::test]
async fn three_clients_send_200_messages_each_concurrently() {
    const PER_CLIENT: usize = 200;
    // A join plus 200 sends exceeds the default burst of 200: this test is
    // about ordering, not the rate limit.
    let server = TestServer::start_with(|o| o.rate_burst = 1000);
    let mut clients = Vec::new();
    for user in ["ann", "ben", "cat"] {
        let mut c = server.client(user).await;
        c.ok("chat:join", json!({"chat_id": "busy"})).await;
        clients.push(c);
    }
    // Every client sends all its messages, then reads until it has seen
    // every push and its own acks.
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                let mut refs = Vec::new();
                for i in 0..PER_CLIENT {
                    refs.push(c.send_request("chat:message", json!({"chat_id": "busy", "content": format!("{} #{i}", c.user_id())})).await);
                }
                let mut pushes = Vec::new();
                while pushes.len() < 3 * PER_CLIENT {
                    pushes.push(c.expect_push("chat:message", "chat:busy").await["message"].clone());
                }
                for r in refs {
                    c.response(r).await.expect("acked");
                }
                pushes
            })
        })
        .collect();
    let mut orders = Vec::new();
    for t in tasks {
        orders.push(t.await.unwrap());
    }
    // Same order for everyone, seq gapless from 1.
    let expected: Vec<i64> = (1..=(3 * PER_CLIENT) as i64).collect();
    for order in &orders {
        assert_eq!(order.iter().map(|m| m["seq"].as_i64().unwrap()).collect::<Vec<_>>(), expected);
        assert_eq!(order, &orders[0]);
    }
    // Each client's own messages are in the order it sent them.
    for user in ["ann", "ben", "cat"] {
        let own: Vec<String> = orders[0]
            .iter()
            .filter(|m| m["user_id"] == user)
            .map(|m| m["content"].as_str().unwrap().to_owned())
            .collect();
        let sent: Vec<String> = (0..PER_CLIENT).map(|i| format!("{user} #{i}")).collect();
        assert_eq!(own, sent);
    }
    server.stop().await;
}

#[tokio::test]
async fn client_msg_id_makes_a_send_idempotent() {
    let server = TestServer::start();
    let mut alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    alice.ok("chat:join", json!({"chat_id": "c"})).await;
    bob.ok("chat:join", json!({"chat_id": "c"})).await;
    let send = json!({"chat_id": "c", "content": "once", "client_msg_id": "m-1"});
    let first = alice.ok("chat:message", send.clone()).await["message"].clone();
    assert_eq!(first["client_msg_id"], "m-1");
    assert_eq!(bob.expect_push("chat:message", "chat:c").await["message"], first);
    alice.expect_push("chat:message", "chat:c").await;

    // The retry answers with the stored message and pushes nothing...
    let retry = alice.ok("chat:message", send.clone()).await["message"].clone();
    assert_eq!(retry, first);
    // ...so the next push anyone sees is the next message, seq 2.
    let next = alice.ok("chat:message", json!({"chat_id": "c", "content": "twice"})).await["message"].clone();
    assert_eq!(next["seq"], 2);
    assert_eq!(bob.expect_push("chat:message", "chat:c").await["message"], next);
    assert_eq!(alice.expect_push("chat:message", "chat:c").await["message"], next);

    // The same client_msg_id from another user is another message.
    let bobs = bob.ok("chat:message", send).await["message"].clone();
    assert_eq!(bobs["seq"], 3);
    let history = alice.ok("chat:history", json!({"chat_id": "c"})).await;
    assert_eq!(seqs(&history["messages"]), vec![1, 2, 3]);
    server.stop().await;
}

#[tokio::test]
async fn recovery_after_a_dropped_connection_returns_exactly_the_missed_messages() {
    let server = TestServer::start();
    let mut alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    alice.ok("chat:join", json!({"chat_id": "r"})).await;
    bob.ok("chat:join", json!({"chat_id": "r"})).await;
    for i in 0..5 {
        alice.ok("chat:message", json!({"chat_id": "r", "content": format!("before {i}")})).await;
    }
    let mut last_seen = 0;
    while last_seen < 5 {
        last_seen = bob.expect_push("chat:message", "chat:r").await["message"]["seq"].as_i64().unwrap();
    }
    // Bob's network drops; Alice sees him leave and keeps talking.
    bob.drop_connection();
    assert_eq!(alice.expect_push("user:left", "chat:r").await["user_id"], "bob");
    for i in 0..7 {
        alice.ok("chat:message", json!({"chat_id": "r", "content": format!("missed {i}")})).await;
    }
    let mut bob = server.client("bob").await;
    let joined = bob.ok("chat:join", json!({"chat_id": "r", "since_seq": last_seen})).await;
    assert_eq!(joined["recovered"], true);
    assert_eq!(joined["last_seq"], 12);
    assert_eq!(seqs(&joined["messages"]), (6..=12).collect::<Vec<_>>());
    assert_eq!(joined["messages"][0]["content"], "missed 0");

    // Up to date: nothing to recover. Past last_seq (a reset store): a
    // plain join. Without since_seq: the newest messages, not recovered.
    let mut carol = server.client("carol").await;
    let j = carol.ok("chat:join", json!({"chat_id": "r", "since_seq": 12})).await;
    assert_eq!((j["recovered"].clone(), seqs(&j["messages"])), (json!(true), vec![]));
    let mut dan = server.client("dan").await;
    let j = dan.ok("chat:join", json!({"chat_id": "r", "since_seq": 99})).await;
    assert_eq!((j["recovered"].clone(), seqs(&j["messages"])), (json!(false), (1..=12).collect()));
    let mut eve = server.client("eve").await;
    let j = eve.ok("chat:join", json!({"chat_id": "r"})).await;
    assert_eq!(j["recovered"], false);
    assert_eq!(seqs(&j["messages"]).len(), 12);
    server.stop().await;
}

#[tokio::test]
async fn recovery_beyond_max_recovery_falls_back_to_the_newest_50() {
    let server = TestServer::start_with(|o| o.max_recovery = 60);
    let mut alice = server.client("alice").await;
    alice.ok("chat:join", json!({"chat_id": "long"})).await;
    for i in 0..70 {
        alice.send_request("chat:message", json!({"chat_id": "long", "content": format!("m{i}")})).await;
    }
    let mut seen = 0;
    while seen < 70 {
        seen = alice.expect_push("chat:message", "chat:long").await["message"]["seq"].as_i64().unwrap();
    }
    let mut bob = server.client("bob").await;
    let j = bob.ok("chat:join", json!({"chat_id": "long", "since_seq": 5})).await;
    assert_eq!(j["recovered"], false);
    assert_eq!(seqs(&j["messages"]), (21..=70).collect::<Vec<_>>());
    let mut carol = server.client("carol").await;
    let j = carol.ok("chat:join", json!({"chat_id": "long", "since_seq": 10})).await;
    assert_eq!(j["recovered"], true);
    assert_eq!(seqs(&j["messages"]), (11..=70).collect::<Vec<_>>());
    server.stop().await;
}

#[tokio::test]
async fn history_pages_backwards_in_ascending_order() {
    let server = TestServer::start();
    let mut alice = server.client("alice").await;
    alice.ok("chat:join", json!({"chat_id": "h"})).await;
    for i in 1..=25 {
        alice.ok("chat:message", json!({"chat_id": "h", "content": format!("m{i}")})).await;
    }
    // History needs read access, not a join.
    let mut bob = server.client("bob").await;
    let page = bob.ok("chat:history", json!({"chat_id": "h", "limit": 10})).await;
    assert_eq!(seqs(&page["messages"]), (16..=25).collect::<Vec<_>>());
    assert_eq!(page["has_more"], true);
    let page = bob.ok("chat:history", json!({"chat_id": "h", "limit": 10, "before_seq": 16})).await;
    assert_eq!(seqs(&page["messages"]), (6..=15).collect::<Vec<_>>());
    let page = bob.ok("chat:history", json!({"chat_id": "h", "limit": 10, "before_seq": 6})).await;
    assert_eq!(seqs(&page["messages"]), (1..=5).collect::<Vec<_>>());
    assert_eq!(page["has_more"], false);
    let page = bob.ok("chat:history", json!({"chat_id": "h", "before_seq": 1})).await;
    assert_eq!((seqs(&page["messages"]), page["has_more"].clone()), (vec![], json!(false)));
    let page = bob.ok("chat:history", json!({"chat_id": "h"})).await;
    assert_eq!(seqs(&page["messages"]).len(), 25);

    for (data, field) in [
        (json!({"chat_id": "h", "limit": 0}), "limit"),
        (json!({"chat_id": "h", "limit": 101}), "limit"),
        (json!({"chat_id": "h", "before_seq": 0}), "before_seq"),
        (json!({"chat_id": "h", "limit": "ten"}), "limit"),
    ] {
        let e = bob.fails("chat:history", data, "INVALID_INPUT").await;
        assert_eq!(e["details"]["field"], field);
    }
    bob.fails("chat:history", json!({"chat_id": "nowhere"}), "NOT_FOUND").await;
    server.stop().await;
}

#[tokio::test]
async fn rejoining_answers_again_without_a_second_announcement() {
    let server = TestServer::start();
    let mut alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    alice.ok("chat:join", json!({"chat_id": "x"})).await;
    bob.ok("chat:join", json!({"chat_id": "x"})).await;
    assert_eq!(alice.expect_push("user:joined", "chat:x").await["user_id"], "bob");
    let again = bob.ok("chat:join", json!({"chat_id": "x"})).await;
    assert_eq!(again["members"].as_array().unwrap().len(), 2);
    // Had the re-join been announced, this push would come after it.
    bob.ok("chat:message", json!({"chat_id": "x", "content": "still one bob"})).await;
    let next = alice.next().await;
    assert_eq!(next["event"], "chat:message", "{next}");
    let ids: HashSet<_> = again["members"].as_array().unwrap().iter().map(|m| m["user_id"].clone()).collect();
    assert_eq!(ids, HashSet::from([json!("alice"), json!("bob")]));
    server.stop().await;
}

#[tokio::test]
async fn client_helper_sees_its_own_frames_in_order() {
    // Guards the harness: a pipelined join + message is handled in order.
    let server = TestServer::start();
    let mut c: Client = server.client("pipeline").await;
    let j = c.send_request("chat:join", json!({"chat_id": "p"})).await;
    let m = c.send_request("chat:message", json!({"chat_id": "p", "content": "right after"})).await;
    c.response(j).await.expect("join");
    assert_eq!(c.response(m).await.expect("message")["message"]["seq"], 1);
    server.stop().await;
}

#[tokio::test]
async fn joining_while_messages_stream_sees_each_message_once() {
    const TOTAL: i64 = 2000;
    let server = TestServer::start_with(|o| o.rate_burst = 10_000);
    let mut publisher = server.client("pub").await;
    publisher.ok("chat:join", json!({"chat_id": "stream"})).await;
    let url = server.ws_url();
    let streaming = tokio::spawn(async move {
        let mut window = std::collections::VecDeque::new();
        for i in 0..TOTAL {
            window.push_back(publisher.send_request("chat:message", json!({"chat_id": "stream", "content": format!("m{i}")})).await);
            if window.len() == 32 {
                publisher.response(window.pop_front().unwrap()).await.expect("acked");
            }
        }
        for r in window {
            publisher.response(r).await.expect("acked");
        }
    });
    // Joiners arrive while the stream runs: what the join returns and what
    // is pushed afterwards must join up exactly, whatever was in flight.
    let mut joiners = Vec::new();
    for n in 0..40 {
        let mut c = Client::authenticated(&url, &common::token(&format!("late{n}"))).await;
        let joined = c.ok("chat:join", json!({"chat_id": "stream", "since_seq": 0})).await;
        joiners.push((c, joined));
    }
    streaming.await.unwrap();
    for (mut c, joined) in joiners {
        let last = joined["last_seq"].as_i64().unwrap();
        let stored = seqs(&joined["messages"]);
        if joined["recovered"] == true {
            assert_eq!(stored, (1..=last).collect::<Vec<_>>());
        }
        assert!(stored.last().is_none_or(|s| *s == last));
        let mut pushed = Vec::new();
        while pushed.last().copied().unwrap_or(last) < TOTAL {
            pushed.push(c.expect_push("chat:message", "chat:stream").await["message"]["seq"].as_i64().unwrap());
        }
        // No message both in the answer and pushed, none missing.
        let expected: Vec<i64> = ((last + 1)..=TOTAL).collect();
        if pushed != expected {
            let wrong: Vec<_> = pushed.iter().zip(&expected).filter(|(p, e)| p != e).take(5).collect();
            panic!(
                "joined at {last} (recovered {}, {} stored): {} pushed, {} expected; first differences {wrong:?}",
                joined["recovered"],
                stored.len(),
                pushed.len(),
                expected.len()
            );
        }
    }
    server.stop().await;
}

/// `HUDDLE_ROOM_THREADS=0`: each room runs on the connection thread that
/// opened it (the test server has two), and members on the other thread
/// are served the same way: one gapless order for everyone.
#[tokio::test]
async fn rooms_on_connection_threads_keep_one_order() {
    let server = TestServer::start_with(|o| {
        o.room_threads = 0;
        o.rate_burst = 10_000;
    });
    let mut clients = Vec::new();
    for user in ["t1", "t2", "t3", "t4"] {
        let mut c = server.client(user).await;
        c.ok("chat:join", json!({"chat_id": "threads"})).await;
        clients.push(c);
    }
    for c in clients.iter_mut() {
        for i in 0..25 {
            c.send_request("chat:message", json!({"chat_id": "threads", "content": format!("m{i}")})).await;
        }
    }
    let mut orders = Vec::new();
    for c in clients.iter_mut() {
        let mut seen = Vec::new();
        while seen.len() < 100 {
            let m = c.expect_push("chat:message", "chat:threads").await;
            seen.push((m["message"]["seq"].as_i64().unwrap(), m["message"]["id"].as_str().unwrap().to_owned()));
        }
        assert_eq!(seen.iter().map(|(s, _)| *s).collect::<Vec<_>>(), (1..=100).collect::<Vec<_>>());
        orders.push(seen);
    }
    assert!(orders.windows(2).all(|w| w[0] == w[1]), "members saw different orders");
    // A document room started the same way.
    let mut owner = server.client("t1").await;
    owner.ok("documents:create", json!({"document_id": "threads"})).await;
    owner.ok("documents:share", json!({"document_id": "threads", "user_id": "t2", "role": "editor"})).await;
    owner.ok("documents:join", json!({"document_id": "threads"})).await;
    let mut editor = server.client("t2").await;
    editor.ok("documents:join", json!({"document_id": "threads"})).await;
    editor.ok("documents:update", json!({"document_id": "threads", "content": "x", "version": 1})).await;
    let pushed = owner.expect_push("documents:updated", "document:threads").await;
    assert_eq!(pushed["document"]["version"], 1);
    server.stop().await;
}
