//! The node as a member of the cluster: its heartbeat, the peers it hears
//! and which of them died, and requests every node answers (closing a
//! user's connections for the HTTP API of any node).
//!
//! Heartbeats go out [`HEARTBEATS_PER_TIMEOUT`] times per
//! `node_timeout_ms`, on the cluster channel (carrying the node's
//! incarnation) and as a key that expires after `node_timeout_ms`. A
//! heartbeat that finds the previous one was more than `node_timeout_ms`
//! ago means this process was paused (SIGSTOP, a frozen VM): whatever the
//! others did meanwhile may be lost to it, and they may have taken it for
//! dead, so the link resynchronises: every room catches up and this
//! node's presence is written again. A heartbeat that finds the store no
//! longer holds this node's presence (Redis restarted, or the others
//! removed it) has it written again too.
//!
//! A peer not heard for `node_timeout_ms` is dead: every open room here
//! is told ([`RoomEvent::NodeGone`]), and pushes `user:left` for its users
//! (and clears their awareness). This node judges only while it can: its
//! link must have been up for a whole `node_timeout_ms` (during a Redis
//! outage everybody is silent) and its own heartbeats on time (right
//! after a pause of its own, everybody looks silent). A node judged dead
//! that turns out alive (its heartbeats come again under the same
//! incarnation) is asked to publish its presence again. Each heartbeat
//! also removes from the store the part of every node whose heartbeat key
//! expired (a Lua script, so a node coming back is never half removed).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use huddle_actors::cluster::{Remote, RoomEvent};
use huddle_actors::ids::{NodeId, UserId};
use huddle_actors::presence::remote::NodePresence;
use huddle_actors::registry::DisconnectUser;
use redis::aio::ConnectionManager;
use redis::Value;
use tokio::sync::mpsc;

use crate::cluster::{lock, presence, publisher, wire, Link};

/// Heartbeats per `node_timeout_ms`: a node is declared dead only after
/// missing several in a row, not one late packet.
pub const HEARTBEATS_PER_TIMEOUT: u32 = 4;
/// A heartbeat tick later than this many intervals means this process was
/// slowed down (or paused briefly): its view of who is silent is not
/// trusted for that tick.
const LATE_TICKS: u32 = 2;
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
    /// Node id → when it was last heard, and its incarnation then.
    heard: Mutex<HashMap<String, (Instant, u64)>>,
    /// Nodes this node declared dead, with the incarnation they died at.
    dead: Mutex<HashMap<String, u64>>,
    /// This node's requests waiting for answers, by request id.
    waiting: Mutex<HashMap<i64, mpsc::Sender<usize>>>,
    requests: mpsc::Sender<Request>,
}

impl Nodes {
    pub fn new(requests: mpsc::Sender<Request>) -> Nodes {
        Nodes {
            heard: Mutex::new(HashMap::new()),
            dead: Mutex::new(HashMap::new()),
            waiting: Mutex::new(HashMap::new()),
            requests,
        }
    }

    /// The nodes heard within `timeout`.
    pub fn peers(&self, timeout: Duration) -> Vec<String> {
        let heard = lock(&self.heard);
        let mut peers: Vec<String> = heard.iter().filter(|(_, (at, _))| at.elapsed() <= timeout).map(|(n, _)| n.clone()).collect();
        peers.sort();
        peers
    }

    /// Takes what a room's snapshot says of the other nodes: the nodes
    /// this node judged dead at the incarnation shown are left out (the
    /// store may not have expired them yet, and a room that starts now was
    /// not told they died); the others are watched from now on, so that
    /// they are judged if they fall silent, even if this node never heard
    /// them before.
    pub fn seen_in(&self, nodes: &mut Vec<NodePresence>) {
        let dead = lock(&self.dead);
        nodes.retain(|n| dead.get(n.node.as_str()).is_none_or(|&died_at| n.stamp.incarnation > died_at));
        drop(dead);
        let mut heard = lock(&self.heard);
        for n in nodes.iter() {
            heard.entry(n.node.as_str().to_owned()).or_insert((Instant::now(), n.stamp.incarnation));
        }
    }

    /// Removes and returns the nodes silent for longer than `timeout`.
    fn expire(&self, timeout: Duration) -> Vec<(String, u64)> {
        let mut heard = lock(&self.heard);
        let silent: Vec<(String, u64)> =
            heard.iter().filter(|(_, (at, _))| at.elapsed() > timeout).map(|(n, (_, inc))| (n.clone(), *inc)).collect();
        let mut dead = lock(&self.dead);
        for (node, incarnation) in &silent {
            heard.remove(node);
            dead.insert(node.clone(), *incarnation);
        }
        silent
    }
}

/// A node-level message from another node.
pub fn incoming(link: &Link, header: &wire::Payload<'_>, body: &[u8]) {
    let nodes = &link.inner.nodes;
    match header.kind {
        "hb" => {
            let incarnation = u64::try_from(header.number).unwrap_or(0);
            lock(&nodes.heard).insert(header.origin.to_owned(), (Instant::now(), incarnation));
            let mut dead = lock(&nodes.dead);
            if let Some(&died_at) = dead.get(header.origin) {
                if incarnation > died_at {
                    // It republished: its rooms heard it again.
                    dead.remove(header.origin);
                } else {
                    // Alive under the incarnation this node buried: it
                    // must say again what it has (each of its heartbeats
                    // asks, until one carries a new incarnation).
                    log::info!("cluster: node {} is alive after all; asking it to publish its presence again", header.origin);
                    publisher::send_raw(link, wire::node_channel(header.origin), wire::encode("republish", 0, link.node(), b""));
                }
            }
        }
        "republish" => link.request_republish(),
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
/// process): beats, notices its own pauses, sweeps the store of dead
/// nodes' parts, and judges who is dead.
pub async fn heartbeat(link: Link, mut redis: ConnectionManager) {
    let timeout = link.inner.node_timeout;
    let interval = timeout / HEARTBEATS_PER_TIMEOUT;
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = Instant::now();
    loop {
        ticks.tick().await;
        let since = last.elapsed();
        last = Instant::now();
        if since > timeout {
            log::warn!("cluster: this node was paused for {since:?} (more than node_timeout_ms); catching up");
            link.trouble("this node was paused");
        }
        let up = link.is_up();
        let incarnation = link.incarnation();
        let mut pipe = redis::pipe();
        pipe.cmd("PUBLISH").arg(wire::CLUSTER_CHANNEL).arg(wire::encode("hb", incarnation as i64, link.node(), b"")).ignore();
        presence::heartbeat(&mut pipe, link.node(), incarnation, timeout.as_millis() as u64);
        if up {
            presence::sweep(&mut pipe, link.node());
        }
        match pipe.query_async::<Vec<Value>>(&mut redis).await {
            Ok(answers) => {
                let mut answers = answers.into_iter();
                let held = matches!(answers.next(), Some(Value::Int(1)));
                // Before the first republish (the link coming up does it)
                // the store holds nothing of this node yet.
                if up && !held && link.is_up() {
                    log::info!("cluster: the shared store lost this node's presence; publishing it again");
                    link.request_republish();
                }
                for (node, incarnation) in answers.next().map(presence::parse_swept).unwrap_or_default() {
                    log::info!("cluster: removed the presence of node {node} (incarnation {incarnation}) from Redis: not heard for node_timeout_ms");
                }
            }
            Err(e) => link.trouble(&format!("heartbeat failed: {e}")),
        }
        if up && link.up_for() >= timeout && since <= interval * LATE_TICKS {
            judge(&link, timeout);
        }
    }
}

/// Declares the nodes silent for `timeout` dead, and tells every room.
fn judge(link: &Link, timeout: Duration) {
    for (node, incarnation) in link.inner.nodes.expire(timeout) {
        let Ok(node) = NodeId::parse(&node) else { continue };
        log::warn!("cluster: node {node} not heard for {timeout:?}: dead; its users leave every room here");
        for inbox in link.inner.subscriptions.inboxes() {
            // Once per room and dead node: past the mailbox's bound rather
            // than lost (a lost one would leave its users present).
            inbox.do_send(Remote(RoomEvent::NodeGone { node: node.clone(), incarnation }));
        }
    }
}
