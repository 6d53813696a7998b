//! The node as a member of the cluster: its heartbeat, the peers it hears,
//! and requests every node answers (closing a user's connections for the
//! HTTP API of any node).
//!
//! Heartbeats go out [`HEARTBEATS_PER_TIMEOUT`] times per
//! `node_timeout_ms`, on the cluster channel and as a key that expires
//! after `node_timeout_ms`. A heartbeat that finds the previous one was
//! more than `node_timeout_ms` ago means this process was paused (SIGSTOP,
//! a frozen VM): whatever Redis had for it may be lost, so the link
//! resynchronises and every room catches up.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use huddle_actors::ids::UserId;
use huddle_actors::registry::DisconnectUser;
use redis::aio::ConnectionManager;
use tokio::sync::mpsc;

use crate::cluster::{lock, publisher, wire, Link};

/// Heartbeats per `node_timeout_ms`: a node is declared dead only after
/// missing several in a row, not one late packet.
pub const HEARTBEATS_PER_TIMEOUT: u32 = 4;
/// How long `DELETE /api/users/{id}/connections` waits for the other
/// nodes' counts. Each answers in one round trip through Redis; a node
/// that does not answer in time still closes the connections when the
/// request reaches it, but is not counted.
pub const DISCONNECT_WAIT: Duration = Duration::from_secs(1);
/// Answers that one request may hold before more are dropped (one per
/// peer is expected).
const ANSWERS_PER_REQUEST: usize = 256;

/// A request from another node, handled by [`control`].
pub enum Request {
    Disconnect { request: i64, origin: String, user: UserId },
}

pub struct Nodes {
    /// Node id → when it was last heard.
    heard: Mutex<HashMap<String, Instant>>,
    /// This node's requests waiting for answers, by request id.
    waiting: Mutex<HashMap<i64, mpsc::Sender<usize>>>,
    requests: mpsc::Sender<Request>,
}

impl Nodes {
    pub fn new(requests: mpsc::Sender<Request>) -> Nodes {
        Nodes { heard: Mutex::new(HashMap::new()), waiting: Mutex::new(HashMap::new()), requests }
    }

    /// The nodes heard within `timeout`; forgets the others.
    pub fn peers(&self, timeout: Duration) -> Vec<String> {
        let mut heard = lock(&self.heard);
        heard.retain(|_, at| at.elapsed() <= timeout);
        let mut peers: Vec<String> = heard.keys().cloned().collect();
        peers.sort();
        peers
    }
}

/// A node-level message from another node.
pub fn incoming(link: &Link, header: &wire::Payload<'_>, body: &[u8]) {
    let nodes = &link.inner.nodes;
    lock(&nodes.heard).insert(header.origin.to_owned(), Instant::now());
    match header.kind {
        "hb" => {}
        "disconnect" => {
            let Some(user) = std::str::from_utf8(body).ok().and_then(|u| UserId::parse(u).ok()) else { return };
            let request = Request::Disconnect { request: header.number, origin: header.origin.to_owned(), user };
            if nodes.requests.try_send(request).is_err() {
                log::warn!("cluster: too many requests from other nodes; one was dropped");
            }
        }
        "closed" => {
            let closed = std::str::from_utf8(body).ok().and_then(|n| n.parse().ok()).unwrap_or(0);
            if let Some(answers) = lock(&nodes.waiting).get(&header.number) {
                let _ = answers.try_send(closed);
            }
        }
        other => log::debug!("cluster: unknown message kind {other:?} from {}", header.origin),
    }
}

/// Answers other nodes' requests, one at a time.
pub async fn control(link: Link, mut requests: mpsc::Receiver<Request>) {
    while let Some(request) = requests.recv().await {
        match request {
            Request::Disconnect { request, origin, user } => {
                let closed = match link.registry() {
                    Some(registry) => registry.send(DisconnectUser { user_id: user }).await.unwrap_or(0),
                    None => 0,
                };
                let payload = wire::encode("closed", request, link.node(), closed.to_string().as_bytes());
                publisher::send_raw(&link, wire::node_channel(&origin), payload);
            }
        }
    }
}

/// Asks every other node to close `user`'s connections (4003) and adds up
/// their answers, waiting at most [`DISCONNECT_WAIT`] for the peers this
/// node hears.
pub async fn disconnect_user(link: &Link, user: &UserId) -> usize {
    let request = link.next_id() as i64;
    let expected = link.peers().len();
    let (tx, mut answers) = mpsc::channel(ANSWERS_PER_REQUEST);
    lock(&link.inner.nodes.waiting).insert(request, tx);
    let payload = wire::encode("disconnect", request, link.node(), user.as_str().as_bytes());
    publisher::send_raw(link, wire::CLUSTER_CHANNEL.to_owned(), payload);
    let (mut closed, mut answered) = (0, 0);
    let deadline = tokio::time::sleep(DISCONNECT_WAIT);
    tokio::pin!(deadline);
    while answered < expected {
        tokio::select! {
            answer = answers.recv() => match answer {
                Some(n) => {
                    closed += n;
                    answered += 1;
                }
                None => break,
            },
            _ = &mut deadline => {
                log::warn!("cluster: {} of {expected} nodes answered a disconnect of {user} in time", answered);
                break;
            }
        }
    }
    lock(&link.inner.nodes.waiting).remove(&request);
    closed
}

/// The heartbeat task (runs on the link's thread for the life of the
/// process).
pub async fn heartbeat(link: Link, mut redis: ConnectionManager) {
    let timeout = link.inner.node_timeout;
    let mut ticks = tokio::time::interval(timeout / HEARTBEATS_PER_TIMEOUT);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let channel = wire::CLUSTER_CHANNEL.to_owned();
    let key = wire::heartbeat_key(link.node());
    let beat = wire::encode("hb", 0, link.node(), b"");
    let mut last = Instant::now();
    loop {
        ticks.tick().await;
        let since = last.elapsed();
        last = Instant::now();
        if since > timeout {
            log::warn!("cluster: this node was paused for {since:?} (more than node_timeout_ms); catching up");
            link.trouble("this node was paused");
        }
        let now_ms = chrono::Utc::now().timestamp_millis();
        let sent = redis::pipe()
            .cmd("PUBLISH")
            .arg(&channel)
            .arg(&beat)
            .ignore()
            .cmd("SET")
            .arg(&key)
            .arg(now_ms)
            .arg("PX")
            .arg(timeout.as_millis() as u64)
            .ignore()
            .query_async::<()>(&mut redis)
            .await;
        if let Err(e) = sent {
            link.trouble(&format!("heartbeat failed: {e}"));
        }
    }
}
