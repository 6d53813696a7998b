//! Everything this node writes to Redis, but its subscriptions and
//! heartbeats: rooms, the registry and routes hand their items to one
//! bounded queue and go on; one task on the link's thread sends whatever
//! waits as one pipeline (one round trip for many items, in the order they
//! were queued, so Redis applies this node's changes in the order they
//! were made). A full queue or a failed pipeline drops events and counts
//! them: the commit is the truth, the other nodes' checks read messages
//! back, and this node's presence is written again whole (`republish`)
//! once the link is back.

use actix::Recipient;
use bytestring::ByteString;
use huddle_actors::cluster::{Remote, RoomEvent};
use huddle_actors::ids::{RoomName, UserId};
use huddle_actors::presence::remote::{NodePresence, Stamp};
use redis::aio::ConnectionManager;
use redis::Value;
use tokio::sync::{mpsc, oneshot};

use crate::cluster::{lock, presence, wire, Link};

/// Most items in one pipeline: bounds one write's size (events carry
/// whole messages, up to `max_message_chars`).
const PUBLISH_BATCH: usize = 256;

pub enum Outgoing {
    /// A room's event, to its room channel.
    Room { room: RoomName, event: RoomEvent },
    /// A node-level message, already encoded.
    Raw { channel: String, payload: Vec<u8> },
    /// A user's connections here in a room changed (the value is read
    /// from the mirror when sent).
    Presence { room: RoomName, user: UserId },
    /// An awareness push of a connection here.
    Awareness { room: RoomName, frame: ByteString },
    /// May the user have this many connections here? Answered on `reply`.
    Admit { user: UserId, connections: usize, limit: usize, reply: oneshot::Sender<bool> },
    /// A user's connections here changed (read from the mirror).
    Connections { user: UserId },
    /// Read the other nodes' presence in a room.
    Snapshot { room: RoomName, to: SnapshotTo },
    /// Write this node's whole part again under a new incarnation.
    Republish,
}

/// Where a snapshot goes: the room that waits for it as it starts, or
/// (when it gave up waiting, or nobody waits) the room's mailbox.
pub struct SnapshotTo {
    pub waiter: Option<oneshot::Sender<Vec<NodePresence>>>,
    pub inbox: Recipient<Remote>,
}

impl SnapshotTo {
    fn deliver(self, nodes: Vec<NodePresence>) {
        let nodes = match self.waiter {
            Some(waiter) => match waiter.send(nodes) {
                Ok(()) => return,
                Err(nodes) => nodes,
            },
            None => nodes,
        };
        // Rare (a start or a resynchronisation) and small: past the
        // mailbox's bound rather than lost.
        self.inbox.do_send(Remote(RoomEvent::Presence(nodes)));
    }
}

/// What a pipeline's answers are for, in order.
enum Reply {
    Admit(oneshot::Sender<bool>),
    Snapshot(SnapshotTo),
}

/// One pipeline being built.
struct Batch {
    pipe: redis::Pipeline,
    items: usize,
    replies: Vec<Reply>,
    /// Room events in it (for the metrics).
    events: u64,
    /// Rooms left with no users here by it: forgotten once it went through.
    emptied: Vec<RoomName>,
}

impl Batch {
    fn new() -> Batch {
        Batch { pipe: redis::pipe(), items: 0, replies: Vec::new(), events: 0, emptied: Vec::new() }
    }

    fn add(&mut self, link: &Link, item: Outgoing) {
        let me = link.node();
        let pipe = &mut self.pipe;
        self.items += 1;
        match item {
            Outgoing::Room { room, event } => {
                if let Some(payload) = wire::encode_event(&event, me) {
                    self.events += 1;
                    pipe.cmd("PUBLISH").arg(wire::room_channel(&room)).arg(payload).ignore();
                }
            }
            Outgoing::Raw { channel, payload } => {
                pipe.cmd("PUBLISH").arg(channel).arg(payload).ignore();
            }
            Outgoing::Presence { room, user } => {
                let stamp = Stamp { incarnation: link.incarnation(), seq: link.next_seq() };
                if presence::user_changed(pipe, &lock(&link.inner.mirror), me, stamp, &room, &user) {
                    self.emptied.push(room);
                }
            }
            Outgoing::Awareness { room, frame } => {
                let payload = wire::encode_awareness(me, link.incarnation(), &frame);
                pipe.cmd("PUBLISH").arg(wire::room_channel(&room)).arg(payload).ignore();
            }
            Outgoing::Admit { user, connections, limit, reply } => {
                presence::admit(pipe, me, &user, connections, limit);
                self.replies.push(Reply::Admit(reply));
            }
            Outgoing::Connections { user } => presence::connections_changed(pipe, &lock(&link.inner.mirror), me, &user),
            Outgoing::Snapshot { room, to } => {
                presence::snapshot(pipe, me, &room);
                self.replies.push(Reply::Snapshot(to));
            }
            Outgoing::Republish => {}
        }
    }

    async fn send(self, link: &Link, redis: &mut ConnectionManager) {
        if self.items == 0 {
            return;
        }
        match self.pipe.query_async::<Vec<Value>>(redis).await {
            Ok(values) => {
                link.metrics().published(self.events);
                let mut mirror = lock(&link.inner.mirror);
                for room in &self.emptied {
                    mirror.settled(room);
                }
                drop(mirror);
                for (reply, value) in self.replies.into_iter().zip(values) {
                    match reply {
                        Reply::Admit(answer) => {
                            // Anything but a clear no admits (fail open).
                            let _ = answer.send(!matches!(value, Value::Int(0)));
                        }
                        Reply::Snapshot(to) => {
                            let mut nodes = presence::parse_snapshot(value);
                            link.inner.nodes.seen_in(&mut nodes);
                            to.deliver(nodes);
                        }
                    }
                }
            }
            Err(e) => {
                link.metrics().publish_failed(self.events);
                for reply in self.replies {
                    match reply {
                        Reply::Admit(answer) => {
                            let _ = answer.send(true);
                        }
                        // The room reads it again after the resync.
                        Reply::Snapshot(_) => {}
                    }
                }
                link.trouble(&format!("writing to Redis failed: {e}"));
            }
        }
    }
}

pub async fn run(link: Link, mut redis: ConnectionManager, mut queue: mpsc::Receiver<Outgoing>) {
    let mut items = Vec::with_capacity(PUBLISH_BATCH);
    loop {
        tokio::select! {
            n = queue.recv_many(&mut items, PUBLISH_BATCH) => {
                if n == 0 {
                    return;
                }
            }
            _ = link.inner.republish.notified() => items.push(Outgoing::Republish),
        }
        let mut batch = Batch::new();
        for item in items.drain(..) {
            if let Outgoing::Republish = item {
                std::mem::replace(&mut batch, Batch::new()).send(&link, &mut redis).await;
                republish(&link, &mut redis).await;
            } else {
                batch.add(&link, item);
            }
        }
        batch.send(&link, &mut redis).await;
    }
}

/// Writes this node's whole part again, under a new incarnation (after
/// the link came back, or when the store lost it).
async fn republish(link: &Link, redis: &mut ConnectionManager) {
    let incarnation = link.next_incarnation();
    let ttl = link.inner.node_timeout.as_millis() as u64;
    let pipe = presence::republish(&mut lock(&link.inner.mirror), link.node(), incarnation, ttl, || link.next_seq());
    match pipe.query_async::<()>(redis).await {
        Ok(()) => log::info!("cluster: this node's presence is published (incarnation {incarnation})"),
        Err(e) => link.trouble(&format!("republishing failed: {e}")),
    }
}

/// Queues a node-level message; dropped (and logged) when the queue is
/// full.
pub fn send_raw(link: &Link, channel: String, payload: Vec<u8>) {
    if link.inner.publisher.try_send(Outgoing::Raw { channel, payload }).is_err() {
        log::warn!("cluster: the publish queue is full; a node message was dropped");
    }
}
