//! What a room needs from the other nodes of a cluster, as an interface
//! ([`Cluster`]); the binary implements it over Redis (`src/cluster/`).
//! Without cluster mode there is no implementation at all: rooms hold
//! `None` and run exactly as on a single node.
//!
//! The database stays the record of order (chat `seq`, document
//! `version`); the cluster only carries events between nodes, at most
//! once. A room therefore:
//! - subscribes to its room's events *before* it reads its starting
//!   position, so that nothing committed after the read can be missed;
//! - publishes each of its commits after the commit, never failing an ack
//!   when the publish fails;
//! - merges its own commits and the events of other nodes through one
//!   [`reorder::Reorder`] buffer;
//! - repairs a gap from the database (a chat's messages, a document's
//!   history) when it stays open for `gap_wait`, and when the periodic
//!   check or a reconnect of the link ([`Stored`], [`DocumentStored`])
//!   says the database is ahead.
//!
//! Presence is the other thing rooms share, with the node as the unit of
//! failure: a room tells the cluster each change of its users' connections
//! on this node ([`Cluster::presence`]) and each awareness push
//! ([`Cluster::awareness`]); it hears the other nodes' as [`RoomEvent`]s,
//! starts from what the shared store holds (the answer to its
//! subscription), and hears that a node died ([`RoomEvent::NodeGone`]).
//! The pure bookkeeping is [`crate::presence::remote`]. The per-user
//! connection limit counts every node ([`Cluster::admit`]).

pub mod reorder;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use actix::{Message, Recipient};
use bytestring::ByteString;

use crate::awareness::Update;
use crate::ids::{NodeId, RoomName, Seq, UserId, Version};
use crate::model::Timestamp;
use crate::store::DocumentPosition;
use crate::presence::remote::{NodePresence, NodeUser, Stamp};

/// An event of one room, published by the node where it happened (or, for
/// [`RoomEvent::NodeGone`] and [`RoomEvent::Presence`] read from the
/// shared store, told by this node's link).
#[derive(Clone, Debug, PartialEq)]
pub enum RoomEvent {
    /// A chat message was committed at `seq`; `frame` is its push, as
    /// members receive it (encoded once, by the committing node).
    ChatMessage { seq: Seq, frame: ByteString },
    /// A document version was committed.
    DocumentVersion(DocumentVersion),
    /// A user lost access to the room (a document share revoked): every
    /// node removes that user's connections from the room.
    Revoked { user: UserId },
    /// A change of one user's connections on another node.
    UserPresence { node: NodeId, stamp: Stamp, user: NodeUser },
    /// Nodes' whole presence in the room: one node's after it republished
    /// its state, or every live node's as the shared store holds it.
    Presence(Vec<NodePresence>),
    /// A connection on another node pushed its awareness state; `frame` is
    /// the push, as members receive it.
    Awareness { node: NodeId, stamp: Stamp, update: Update, frame: ByteString },
    /// A node died (silent for `node_timeout_ms`) at `incarnation`: its
    /// users and awareness states are gone from the room.
    NodeGone { node: NodeId, incarnation: u64 },
    /// The room just opened on `node`, which asks for the current
    /// awareness states of this node's connections
    /// ([`Cluster::awareness_to`]).
    AwarenessWanted { node: NodeId },
    /// A node's commit to the document found it moved: another node's
    /// commit won the race. Every node writing the document then leaves
    /// its next commit to the others for a moment (`document::order`), as
    /// it does once it sees another node's version; without this a node
    /// whose commits keep winning never learns that another keeps losing.
    Contended,
}

/// A committed document version, as it travels between nodes: its push,
/// which carries the change itself (the operation as applied, or the
/// whole new content), and what the push leaves out. The receiving room
/// reads the change from the frame once, when it lets the version out
/// (see `document::order`); members receive the frame as it is.
#[derive(Clone, Debug, PartialEq)]
pub struct DocumentVersion {
    pub version: Version,
    pub created_at: Timestamp,
    /// Its author's idempotency key: a resend through another node is
    /// answered from that node's window.
    pub op_id: Option<String>,
    /// `documents:op` or `documents:updated`, as members receive it
    /// (encoded once, by the committing node).
    pub frame: ByteString,
}

/// An event of the room from another node, delivered to the room actor.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Remote(pub RoomEvent);

/// The database's newest position of a chat (its `last_seq`), from
/// the periodic check or a catch-up after the link came back. A room that
/// is behind repairs from the database.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct Stored(pub Seq);

/// Where a document stands in the database (the periodic check, or a
/// catch-up after the link came back). A document room behind its
/// version reads the versions it missed from the history; one whose
/// access count moved since it last checked its members' roles checks them
/// again, so a revocation whose [`RoomEvent::Revoked`] was lost still
/// evicts the user.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct DocumentStored(pub DocumentPosition);

/// The interface rooms use. Implementations must not block: `publish`
/// queues (a bounded queue; a full one drops, counts and carries on, since
/// the commit is the truth and repair covers the rest).
pub trait Cluster: Send + Sync + 'static {
    /// Starts delivering the room's events from other nodes to `inbox`;
    /// returns the subscription's id at once, and a future that resolves
    /// once the subscription is confirmed, to the other nodes' presence in
    /// the room as the shared store holds it, or to `None` when it could
    /// not be in time (the link is down): the room then relies on the
    /// periodic check and on the catch-up that follows the link's return,
    /// and the subscription is made (and the presence read) when the link
    /// is back. Rooms call [`subscribe`], which wraps the id in a
    /// [`Subscription`].
    fn subscribe(&self, room: RoomName, inbox: Recipient<Remote>) -> (u64, Confirmed);

    /// Ends the subscription `id` of `room` (called by [`Subscription`]'s
    /// drop). A newer subscription of the same room is left alone.
    fn unsubscribe(&self, room: &RoomName, id: u64);

    /// Sends a committed event to the other nodes, without waiting.
    fn publish(&self, room: &RoomName, event: RoomEvent);

    /// `user` now has `connections` on this node in `room` (0: none), with
    /// `name`: kept in the shared store and told to the other nodes.
    fn presence(&self, room: &RoomName, user: &UserId, connections: usize, name: Option<&Arc<str>>);

    /// A connection of this node pushed its awareness state in `room`
    /// (`frame`, as members receive it): told to the other nodes.
    fn awareness(&self, room: &RoomName, frame: ByteString);

    /// A current awareness state of a connection of this node in `room`,
    /// for `node` only (which just opened the room and asked).
    fn awareness_to(&self, node: &NodeId, room: &RoomName, frame: ByteString);

    /// May `user` have `connections` on this node (this one included),
    /// given its connections on the other nodes and `limit`? Counts them
    /// in the shared store when it answers yes. Resolves to yes when the
    /// shared store cannot be asked in time (availability over a strict
    /// cap; the local count still holds).
    fn admit(&self, user: &UserId, connections: usize, limit: usize) -> Admitted;

    /// `user` now has `connections` on this node (after one closed, or an
    /// admission was refused).
    fn connections(&self, user: &UserId, connections: usize);
}

/// Resolves when a subscription is in place (or given up for now), to the
/// other nodes' presence in the room.
pub type Confirmed = Pin<Box<dyn Future<Output = Option<Vec<NodePresence>>> + Send>>;

/// The answer to [`Cluster::admit`].
pub type Admitted = Pin<Box<dyn Future<Output = bool> + Send>>;

/// Subscribes `inbox` to `room`'s events: the guard that ends the
/// subscription when dropped, and the future of its confirmation.
pub fn subscribe(cluster: &Arc<dyn Cluster>, room: RoomName, inbox: Recipient<Remote>) -> (Subscription, Confirmed) {
    let (id, confirmed) = cluster.subscribe(room.clone(), inbox);
    (Subscription { room, id, cluster: cluster.clone() }, confirmed)
}

/// A room's subscription; ends when dropped (the room stopped).
pub struct Subscription {
    room: RoomName,
    id: u64,
    cluster: Arc<dyn Cluster>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.cluster.unsubscribe(&self.room, self.id);
    }
}
