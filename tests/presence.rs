//! Presence: members per room, counted per user across connections.

mod common;

use common::TestServer;
use serde_json::json;

#[tokio::test]
async fn a_user_with_two_connections_joins_once_and_leaves_with_the_last() {
    let server = TestServer::start();
    let mut watcher = server.client("watcher").await;
    watcher.ok("chat:join", json!({"chat_id": "p"})).await;

    let mut tab1 = server.client("alice").await;
    let mut tab2 = server.client("alice").await;
    tab1.ok("chat:join", json!({"chat_id": "p"})).await;
    assert_eq!(watcher.expect_push("user:joined", "chat:p").await, json!({"user_id": "alice", "name": "alice (name)"}));
    let joined = tab2.ok("chat:join", json!({"chat_id": "p"})).await;
    let alice = joined["members"].as_array().unwrap().iter().find(|m| m["user_id"] == "alice").unwrap().clone();
    assert_eq!(alice["connections"], 2);
    // tab1 sees the second connection only in member lists, not as a push.
    tab1.ok("ping", json!({})).await;
    assert!(tab1.kept(|f| f["event"] == "user:joined").is_empty());

    tab1.ok("chat:leave", json!({"chat_id": "p"})).await;
    let mut probe = server.client("probe").await;
    let members = probe.ok("chat:join", json!({"chat_id": "p"})).await["members"].clone();
    let alice = members.as_array().unwrap().iter().find(|m| m["user_id"] == "alice").unwrap().clone();
    assert_eq!(alice["connections"], 1);
    // The last connection goes away by disconnecting.
    tab2.close().await;
    assert_eq!(watcher.expect_push("user:left", "chat:p").await, json!({"user_id": "alice"}));
    // Every push carried its room; the joined push above came before this.
    assert_eq!(watcher.expect_push("user:joined", "chat:p").await["user_id"], "probe");
    server.stop().await;
}

#[tokio::test]
async fn presence_is_per_room() {
    let server = TestServer::start();
    let mut a = server.client("a").await;
    let mut b = server.client("b").await;
    a.ok("chat:join", json!({"chat_id": "one"})).await;
    a.ok("chat:join", json!({"chat_id": "two"})).await;
    b.ok("chat:join", json!({"chat_id": "two"})).await;
    assert_eq!(a.expect_push("user:joined", "chat:two").await["user_id"], "b");
    let one = b.ok("chat:join", json!({"chat_id": "one"})).await;
    assert_eq!(one["members"].as_array().unwrap().len(), 2);
    assert_eq!(a.expect_push("user:joined", "chat:one").await["user_id"], "b");
    b.ok("chat:leave", json!({"chat_id": "two"})).await;
    assert_eq!(a.expect_push("user:left", "chat:two").await["user_id"], "b");
    server.stop().await;
}

/// The user ids of a list of members (or of `joined` entries).
fn user_ids(list: &serde_json::Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|m| m["user_id"].as_str().unwrap_or_else(|| panic!("no user_id in {m}")).to_owned())
        .collect()
}

fn strings(list: &serde_json::Value) -> Vec<String> {
    list.as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect()
}

// A room crossing `presence_max_instant` with a few hundred connections:
// per-user events up to the threshold, diffs above it, capped acks, paging,
// and instant events again once the room is back at the threshold.
#[tokio::test]
async fn a_large_room_batches_presence_into_diffs_and_pages_its_members() {
    const USERS: usize = 200;
    const MAX_INSTANT: usize = 150;
    // Above every batch's size here (no diff is truncated) and below the
    // room's, so that acks are capped.
    const MAX_LISTED: usize = 60;
    let server = TestServer::start_with(|o| {
        o.presence_max_instant = MAX_INSTANT;
        o.presence_max_listed = MAX_LISTED;
        o.presence_interval_ms = 300;
    });
    let room = "chat:big";
    let mut watcher = server.client("watcher").await;
    watcher.ok("chat:join", json!({"chat_id": "big"})).await;

    let names: Vec<String> = (0..USERS).map(|i| format!("u{i:03}")).collect();
    let mut clients = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let mut c = server.client(name).await;
        let ack = c.ok("chat:join", json!({"chat_id": "big"})).await;
        let count = i + 2; // the watcher, and users 0..=i
        assert_eq!(ack["member_count"], count, "{name}");
        assert_eq!(ack["members"].as_array().unwrap().len(), count.min(MAX_LISTED), "{name}: acks list at most presence_max_listed");
        clients.push(c);
    }
    // The first users arrived one event each, up to the threshold (the
    // watcher counts); the join that took the room above it and every later
    // one came in diffs.
    let instant = MAX_INSTANT - 1;
    for name in &names[..instant] {
        assert_eq!(watcher.expect_push("user:joined", room).await["user_id"], name.as_str());
    }
    let mut batched = Vec::new();
    loop {
        let diff = watcher.expect_push("presence:diff", room).await;
        assert_eq!(strings(&diff["left"]), Vec::<String>::new(), "{diff}");
        batched.extend(user_ids(&diff["joined"]));
        if diff["member_count"] == USERS + 1 {
            break;
        }
    }
    batched.sort();
    assert_eq!(batched, names[instant..].to_vec());
    watcher.ok("ping", json!({})).await;
    assert!(watcher.kept(|f| f["event"] == "user:joined").is_empty(), "no per-user event above the threshold");

    // The whole list, page by page, in user id order.
    let mut listed = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut data = json!({"room": room, "limit": 33});
        if let Some(a) = &after {
            data["after_user_id"] = json!(a);
        }
        let page = watcher.ok("presence:list", data).await;
        assert_eq!(page["member_count"], USERS + 1);
        let ids = user_ids(&page["members"]);
        after = ids.last().cloned();
        listed.extend(ids);
        if page["has_more"] == false {
            break;
        }
    }
    let mut everyone = names.clone();
    everyone.push("watcher".into());
    assert_eq!(listed, everyone);
    let first = watcher.ok("presence:list", json!({"room": room})).await;
    assert_eq!(first["members"].as_array().unwrap().len(), 100, "the default page");
    assert_eq!(first["members"][0], json!({"user_id": "u000", "name": "u000 (name)", "connections": 1}));
    assert_eq!(first["has_more"], true);

    // Back down to below the threshold, all at once: a leave that leaves
    // the room above the threshold is batched; only the last ones (down to
    // the threshold and below) may be instant, and only if no batch was
    // open when they came.
    let keep = MAX_INSTANT - 10;
    let mut leaving: Vec<_> = clients.drain(keep..).collect();
    let mut refs = Vec::new();
    for c in &mut leaving {
        refs.push(c.send_request("chat:leave", json!({"chat_id": "big"})).await);
    }
    for (c, r) in leaving.iter_mut().zip(refs) {
        c.response(r).await.expect("leave");
    }
    let mut gone = Vec::new();
    let mut instant = 0;
    while gone.len() < USERS - keep {
        let frame = watcher.next().await;
        match frame["event"].as_str() {
            Some("presence:diff") => {
                assert_eq!(user_ids(&frame["data"]["joined"]), Vec::<String>::new(), "{frame}");
                gone.extend(strings(&frame["data"]["left"]));
            }
            Some("user:left") => {
                instant += 1;
                gone.push(frame["data"]["user_id"].as_str().unwrap().to_owned());
            }
            _ => panic!("unexpected {frame}"),
        }
    }
    assert!(instant <= MAX_INSTANT - keep, "{instant} instant user:left while the room was above the threshold");
    gone.sort();
    assert_eq!(gone, names[keep..].to_vec());
    // Every batch is out and the room is below the threshold: instant again.
    clients.pop().unwrap().drop_connection();
    assert_eq!(watcher.expect_push("user:left", room).await["user_id"], names[keep - 1].as_str());
    let page = watcher.ok("presence:list", json!({"room": room, "limit": 1})).await;
    assert_eq!(page["member_count"], keep);
    server.stop().await;
}

// What happens within one batch: who joined and left in it is in neither
// list, and a member that joined while it was open hears only what changed
// after its ack. One long interval keeps every step inside one batch.
#[tokio::test]
async fn a_member_that_joins_mid_batch_hears_only_what_changed_after_its_ack() {
    let server = TestServer::start_with(|o| {
        o.presence_max_instant = 2;
        o.presence_interval_ms = 1500;
    });
    let room = "chat:mid";
    let join = json!({"chat_id": "mid"});
    let mut w = server.client("w").await;
    let mut a = server.client("a").await;
    let mut b = server.client("b").await;
    let (mut n, mut v, mut x, mut z) =
        (server.client("n").await, server.client("v").await, server.client("x").await, server.client("z").await);
    w.ok("chat:join", join.clone()).await;
    a.ok("chat:join", join.clone()).await;
    assert_eq!(w.expect_push("user:joined", room).await["user_id"], "a");

    // b takes the room above the threshold: the batch opens.
    b.ok("chat:join", join.clone()).await;
    // z comes and goes; x comes, before n.
    z.ok("chat:join", join.clone()).await;
    z.ok("chat:leave", join.clone()).await;
    x.ok("chat:join", join.clone()).await;
    let ack = n.ok("chat:join", join.clone()).await;
    assert_eq!(user_ids(&ack["members"]), ["a", "b", "n", "w", "x"]);
    assert_eq!(ack["member_count"], 5);
    // After n's ack: x leaves, v joins.
    x.ok("chat:leave", join.clone()).await;
    v.ok("chat:join", join.clone()).await;

    // The members from before the batch hear its net change.
    let whole = json!({"joined": [{"user_id": "b", "name": "b (name)"}, {"user_id": "n", "name": "n (name)"}, {"user_id": "v", "name": "v (name)"}], "left": [], "member_count": 5});
    assert_eq!(w.expect_push("presence:diff", room).await, whole);
    assert_eq!(a.expect_push("presence:diff", room).await, whole);
    // n hears what changed after its ack: not itself, not b, and x's leave.
    let mine = n.expect_push("presence:diff", room).await;
    assert_eq!(mine, json!({"joined": [{"user_id": "v", "name": "v (name)"}], "left": ["x"], "member_count": 5}));
    // b joined first in the batch: it hears the rest, and z in neither list.
    let bs = b.expect_push("presence:diff", room).await;
    assert_eq!(user_ids(&bs["joined"]), ["n", "v"]);
    assert_eq!(strings(&bs["left"]), Vec::<String>::new());
    // Nobody heard a per-user event inside the batch.
    for c in [&mut w, &mut a, &mut b, &mut n] {
        c.ok("ping", json!({})).await;
        assert!(c.kept(|f| f["event"] == "user:joined" || f["event"] == "user:left").is_empty());
    }
    server.stop().await;
}

// A crowd arriving within one batch: a diff that would name more than
// `presence_max_listed` users names nobody, says `truncated`, and keeps an
// exact `member_count`; a newcomer with little to hear still hears it all.
#[tokio::test]
async fn a_long_diff_is_truncated_and_the_list_can_be_paged_again() {
    let server = TestServer::start_with(|o| {
        o.presence_max_instant = 2;
        o.presence_max_listed = 3;
        o.presence_interval_ms = 1500;
    });
    let room = "chat:crowd";
    let join = json!({"chat_id": "crowd"});
    let mut w = server.client("w").await;
    let mut a = server.client("a").await;
    w.ok("chat:join", join.clone()).await;
    a.ok("chat:join", join.clone()).await;
    assert_eq!(w.expect_push("user:joined", room).await["user_id"], "a");
    let mut crowd = Vec::new();
    for name in ["b", "c", "d", "e", "n", "f", "g"] {
        let mut c = server.client(name).await;
        c.ok("chat:join", join.clone()).await;
        crowd.push(c);
    }
    let truncated = json!({"joined": [], "left": [], "member_count": 9, "truncated": true});
    assert_eq!(w.expect_push("presence:diff", room).await, truncated, "7 users named for the members from before");
    assert_eq!(a.expect_push("presence:diff", room).await, truncated);
    // b joined first: 6 joins after its ack, over the cap of 3.
    assert_eq!(crowd[0].expect_push("presence:diff", room).await, truncated);
    // n joined fifth: f and g came after it, which fits.
    let n = crowd[4].expect_push("presence:diff", room).await;
    assert_eq!(n, json!({"joined": [{"user_id": "f", "name": "f (name)"}, {"user_id": "g", "name": "g (name)"}], "left": [], "member_count": 9}));
    // The list, paged again, is whole.
    let page = w.ok("presence:list", json!({"room": room, "limit": 1000})).await;
    assert_eq!(user_ids(&page["members"]), ["a", "b", "c", "d", "e", "f", "g", "n", "w"]);
    server.stop().await;
}

#[tokio::test]
async fn presence_list_needs_membership_and_a_full_room_name() {
    let server = TestServer::start();
    let mut owner = server.client("owner").await;
    let mut stranger = server.client("stranger").await;
    owner.ok("chat:create", json!({"chat_id": "secret", "private": true})).await;
    owner.ok("documents:create", json!({"document_id": "d"})).await;
    owner.ok("chat:join", json!({"chat_id": "open"})).await;

    stranger.fails("presence:list", json!({"room": "chat:open"}), "NOT_JOINED").await;
    stranger.fails("presence:list", json!({"room": "chat:secret"}), "PERMISSION_DENIED").await;
    stranger.fails("presence:list", json!({"room": "document:d"}), "NOT_JOINED").await;
    let e = stranger.fails("presence:list", json!({"room": "open"}), "INVALID_INPUT").await;
    assert_eq!(e["details"]["field"], "room");
    let e = owner.fails("presence:list", json!({"room": "chat:open", "limit": 1001}), "INVALID_INPUT").await;
    assert_eq!(e["details"]["field"], "limit");

    owner.ok("documents:join", json!({"document_id": "d"})).await;
    let page = owner.ok("presence:list", json!({"room": "document:d"})).await;
    assert_eq!(page, json!({"members": [{"user_id": "owner", "name": "owner (name)", "connections": 1}], "has_more": false, "member_count": 1}));
    let page = owner.ok("presence:list", json!({"room": "chat:open", "after_user_id": "owner"})).await;
    assert_eq!(page, json!({"members": [], "has_more": false, "member_count": 1}));
    owner.ok("chat:leave", json!({"chat_id": "open"})).await;
    owner.fails("presence:list", json!({"room": "chat:open"}), "NOT_JOINED").await;
    server.stop().await;
}
