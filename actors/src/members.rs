//! The members of a room (document or chat) and how pushes reach them:
//! joining and leaving, presence (instant `user:joined` / `user:left`, or
//! `presence:diff` batches in large rooms), `presence:list`, and awareness.
//!
//! A push is encoded once and the same bytes are offered to every member
//! with `try_send`; members whose queue is full (slow consumers) or gone are
//! removed on the spot, and the others hear that they left, so a stalled
//! client never holds a room back.
//!
//! The state lives in plain structs with their own tests
//! ([`Presence`], [`DiffLog`], [`Awareness`]); this file moves their
//! answers onto the wire. Batched presence and coalesced awareness need a
//! timer: `Members` asks its room to be sent a [`Tick`] later, only while
//! something is pending, and the room hands it back to [`Members::tick`].
//!
//! In cluster mode the room is one part of a room that spans the nodes:
//! `Members` tells the cluster each change of a user's connections here
//! and each awareness push, and takes the other nodes' ([`Members::remote`])
//! as if they happened here: `user:joined` / `user:left` (or the diff)
//! when a user's first connection in the whole cluster appears or its last
//! goes, counts and lists over every node.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::{Message, WeakRecipient};
use bytestring::ByteString;
use serde::Serialize;

use crate::awareness::{Awareness, Set, Update};
use crate::cluster::{Cluster, RoomEvent};
use crate::config::Settings;
use crate::ids::{NodeId, RoomName, SessionId, UserId};
use crate::observer::Observer;
use crate::peer::{Delivery, Peer, Requester};
use crate::presence::diff::{Diff, DiffLog, Recorded};
use crate::presence::{Joined, Presence, RemoteChange};
use crate::protocol::frames::{Empty, PresencePage, PresenceSnapshot, RoomOnly};
use crate::protocol::{AwarenessState, Push, WireError};

/// A connection leaves a room: a `*:leave` request (with a requester to
/// ack) or a disconnect (without).
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct Leave {
    pub session_id: SessionId,
    pub requester: Option<Requester>,
}

/// A request a member makes of the room's members; the room answers a
/// non-member itself and hands the others to [`Members::answer`].
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct MemberRequest {
    pub requester: Requester,
    pub ask: Ask,
}

#[derive(Clone, Debug)]
pub enum Ask {
    /// `presence:list`: a page of the room's users.
    List { after_user_id: Option<UserId>, limit: usize },
    /// `awareness:set` (`None` clears).
    SetAwareness(Option<AwarenessState>),
}

/// A page of the room's users for the server itself (the HTTP API's
/// `GET /api/rooms/{room}/presence`), which needs no membership.
#[derive(Message, Clone, Debug)]
#[rtype(result = "PresenceReply")]
pub struct PresenceQuery {
    pub after_user_id: Option<UserId>,
    pub limit: usize,
}

/// The answer to a [`PresenceQuery`], serialized as the route's body.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct PresenceReply {
    pub members: Vec<Member>,
    pub has_more: bool,
    pub member_count: usize,
}

/// One user present, as [`PresenceReply`] lists it.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Member {
    pub user_id: UserId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub connections: usize,
}

/// A room's timer rang: the room passes it to [`Members::tick`].
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "()")]
pub enum Tick {
    /// Send the open `presence:diff` batch.
    Presence,
    /// Push the awareness states that waited.
    Awareness,
}

/// What the room keeps for each connection.
struct Slot {
    peer: Peer,
    /// The presence clock when this connection's view of the room was taken
    /// (its join ack): the batch it joined in tells it only what changed
    /// after.
    seen_at: u64,
}

/// The settings `Members` follows (docs/protocol.md, "Large rooms",
/// "Awareness").
#[derive(Clone, Copy, Debug)]
struct Limits {
    max_listed: usize,
    max_instant: usize,
    presence_interval: Duration,
    awareness_interval: Duration,
}

/// The members of one room and the pushes that keep them informed.
pub struct Members {
    room: RoomName,
    presence: Presence<Slot>,
    diffs: DiffLog,
    awareness: Awareness,
    limits: Limits,
    observer: Arc<dyn Observer>,
    /// Where [`Tick`]s go: the room, once started ([`Members::ring_at`]).
    alarm: Option<WeakRecipient<Tick>>,
    /// Cluster mode only: the other nodes, told of this node's changes.
    cluster: Option<Arc<dyn Cluster>>,
}

impl Members {
    pub fn new(room: RoomName, observer: Arc<dyn Observer>, settings: &Settings, cluster: Option<Arc<dyn Cluster>>) -> Members {
        let limits = Limits {
            max_listed: settings.presence_max_listed,
            max_instant: settings.presence_max_instant,
            presence_interval: settings.presence_interval,
            awareness_interval: settings.awareness_interval,
        };
        Members {
            room,
            presence: Presence::default(),
            diffs: DiffLog::default(),
            awareness: Awareness::default(),
            limits,
            observer,
            alarm: None,
            cluster,
        }
    }

    /// Where to send [`Tick`]s: the room, which calls this when it starts.
    /// A weak address, so the timers never keep a stopped room alive.
    pub fn ring_at(&mut self, room: WeakRecipient<Tick>) {
        self.alarm = Some(room);
    }

    pub fn room(&self) -> &RoomName {
        &self.room
    }

    pub fn contains(&self, session: SessionId) -> bool {
        self.presence.contains(session)
    }

    pub fn is_empty(&self) -> bool {
        self.presence.is_empty()
    }

    pub fn connection_count(&self) -> usize {
        self.presence.connection_count()
    }

    /// Whether the user has a connection in the room on this node.
    pub fn has_user(&self, user: &UserId) -> bool {
        !self.presence.sessions_of(user).is_empty()
    }

    pub fn sessions_of(&self, user: &UserId) -> Vec<SessionId> {
        self.presence.sessions_of(user).to_vec()
    }

    /// The users connected on this node, with their connections.
    pub fn local_users(&self) -> Vec<(UserId, Vec<SessionId>)> {
        self.presence.local().map(|(u, s)| (u.clone(), s.to_vec())).collect()
    }

    /// Admits the requester: adds it, acks with `ack` (given the room and
    /// what it shows of the members: the first `presence_max_listed` users,
    /// the newcomer among them if it sorts there, their count, the others'
    /// awareness states), then tells the others if its user is new to the
    /// room and the room announces changes at once.
    pub fn admit(&mut self, req: &Requester, ack: impl FnOnce(&RoomName, PresenceSnapshot<'_>)) {
        self.prune_listed();
        let peer = &req.peer;
        let (session, user, name) = (peer.session_id, peer.user_id.clone(), peer.name.clone());
        let slot = Slot { peer: peer.clone(), seen_at: 0 };
        let announce = match self.presence.join(session, user.clone(), name.clone(), slot) {
            Joined::FirstConnection => self.record(&user, name.as_ref(), true),
            Joined::AnotherConnection | Joined::AlreadyMember => false,
        };
        if let Some(cluster) = &self.cluster {
            cluster.presence(&self.room, &user, self.presence.sessions_of(&user).len(), name.as_ref());
        }
        let clock = self.diffs.clock();
        if let Some(slot) = self.presence.slot_mut(session) {
            slot.seen_at = clock;
        }
        let max = self.limits.max_listed;
        ack(
            &self.room,
            PresenceSnapshot {
                members: self.presence.page(None, max).members,
                member_count: self.presence.member_count(),
                awareness: self.awareness.listing(session, max),
            },
        );
        if announce {
            self.push(Push::UserJoined { user_id: &user, name: name.as_deref() }, Some(session));
        }
    }

    /// Connections that died without saying so are dropped from the part
    /// of the room a join ack lists, so that no ack lists a ghost. (Their
    /// `Leave` is on its way; elsewhere in the room it, or the next push
    /// that finds them gone, removes them.) Each ghost is removed once, so
    /// this costs a join O(`presence_max_listed`) checks.
    fn prune_listed(&mut self) {
        loop {
            let gone: Vec<SessionId> = self
                .presence
                .listed_slots(self.limits.max_listed)
                .filter(|(_, slot)| slot.peer.is_gone())
                .map(|(s, _)| s)
                .collect();
            if gone.is_empty() {
                return;
            }
            for s in gone {
                self.remove(s);
            }
        }
    }

    /// Records a user's change of presence; true when it is to be announced
    /// now (an instant event), false when a batch carries it.
    fn record(&mut self, user: &UserId, name: Option<&Arc<str>>, joined: bool) -> bool {
        let above = self.presence.member_count() > self.limits.max_instant;
        match self.diffs.record(user, name, joined, above) {
            Recorded::Instant => true,
            Recorded::Batched { opened } => {
                if opened {
                    self.ring(Tick::Presence, self.limits.presence_interval);
                }
                false
            }
        }
    }

    /// Removes a connection: the others hear its awareness state cleared
    /// (if they could have seen one) and, if it was its user's last
    /// connection, that the user left. Returns the removed peer.
    pub fn remove(&mut self, session: SessionId) -> Option<Peer> {
        let left = self.presence.leave(session)?;
        if let Some(cluster) = &self.cluster {
            cluster.presence(&self.room, &left.user_id, left.here, None);
        }
        if let Some(user_id) = self.awareness.leave(session) {
            let cleared = Update { session_id: session, user_id, state: None };
            self.push_awareness(&cleared, None);
        }
        if left.last_connection && self.record(&left.user_id, None, false) {
            self.push(Push::UserLeft { user_id: &left.user_id }, None);
        }
        Some(left.slot.peer)
    }

    /// Pushes a connection's awareness state here, and to the other nodes.
    fn push_awareness(&mut self, update: &Update, except: Option<SessionId>) {
        let frame = self.push(Push::Awareness(update), except);
        if let Some(cluster) = &self.cluster {
            cluster.awareness(&self.room, frame);
        }
    }

    /// Takes an event of the room's presence on other nodes (cluster mode).
    pub fn remote(&mut self, event: RoomEvent) {
        match event {
            RoomEvent::UserPresence { node, stamp, user } => {
                let change = self.presence.remote_set(&node, stamp, user);
                self.announce(&node, change);
            }
            RoomEvent::Presence(nodes) => {
                for presence in nodes {
                    let node = presence.node.clone();
                    let change = self.presence.remote_replace(presence);
                    self.announce(&node, change);
                }
            }
            RoomEvent::NodeGone { node, incarnation } => {
                for cleared in self.awareness.remote_clear(&node, None) {
                    self.push(Push::Awareness(&cleared), None);
                }
                let change = self.presence.remote_gone(&node, incarnation);
                self.announce(&node, change);
            }
            RoomEvent::Awareness { node, stamp, update, frame } => {
                if !self.presence.elsewhere().takes(&node, stamp) {
                    return;
                }
                let room_for = self.presence.elsewhere().connections_on(&node);
                if self.awareness.remote_set(&node, &update, room_for) {
                    self.broadcast(frame, None);
                } else {
                    log::debug!("{}: node {node} sent more awareness states than it has connections; one dropped", self.room);
                }
            }
            RoomEvent::AwarenessWanted { node } => {
                let Some(cluster) = &self.cluster else { return };
                for update in self.awareness.local_states() {
                    cluster.awareness_to(&node, &self.room, Push::Awareness(&update).encode(&self.room));
                }
            }
            RoomEvent::ChatMessage { .. } | RoomEvent::DocumentVersion(_) | RoomEvent::Revoked { .. } | RoomEvent::Contended => {}
        }
    }

    /// Tells this node's members what another node's report changed: the
    /// states of users gone from it are cleared, and users who joined or
    /// left the room as a whole are announced.
    fn announce(&mut self, node: &NodeId, change: RemoteChange) {
        if !change.departed.is_empty() {
            for cleared in self.awareness.remote_clear(node, Some(&change.departed)) {
                self.push(Push::Awareness(&cleared), None);
            }
        }
        for moved in change.moved {
            if self.record(&moved.user_id, moved.name.as_ref(), moved.joined) {
                let push = if moved.joined {
                    Push::UserJoined { user_id: &moved.user_id, name: moved.name.as_deref() }
                } else {
                    Push::UserLeft { user_id: &moved.user_id }
                };
                self.push(push, None);
            }
        }
    }

    /// `GET /api/rooms/{room}/presence`: a page of the users as they are
    /// now, on every node.
    pub fn query(&self, q: &PresenceQuery) -> PresenceReply {
        let page = self.presence.page(q.after_user_id.as_ref(), q.limit);
        let members = page
            .members
            .iter()
            .map(|m| Member { user_id: m.user_id.clone(), name: m.name.map(String::from), connections: m.connections })
            .collect();
        PresenceReply { members, has_more: page.has_more, member_count: self.presence.member_count() }
    }

    /// Encodes `push` once and offers it to every member but `except`;
    /// returns the encoded frame.
    pub fn push(&mut self, push: Push<'_>, except: Option<SessionId>) -> ByteString {
        let frame = push.encode(&self.room);
        self.broadcast(frame.clone(), except);
        frame
    }

    /// Offers an already encoded frame (a push another node encoded, or one
    /// kept for later) to every member but `except`.
    pub fn broadcast(&mut self, frame: ByteString, except: Option<SessionId>) {
        self.deliver_each(|session, _| (Some(session) != except).then(|| frame.clone()));
    }

    /// Offers an already encoded frame to every member for which `skip` is
    /// false.
    pub fn broadcast_unless(&mut self, frame: ByteString, skip: impl Fn(SessionId) -> bool) {
        self.deliver_each(|session, _| (!skip(session)).then(|| frame.clone()));
    }

    /// Offers each member the frame `frame_for` gives it (if any). Members
    /// that cannot take it are removed (which may announce that they left).
    fn deliver_each(&mut self, mut frame_for: impl FnMut(SessionId, &Slot) -> Option<ByteString>) {
        let mut failed = Vec::new();
        let mut delivered = 0;
        for (session, slot) in self.presence.slots() {
            let Some(frame) = frame_for(session, slot) else { continue };
            match slot.peer.deliver(frame) {
                Delivery::Queued => delivered += 1,
                Delivery::Full => {
                    log::info!("{}: session {session} is a slow consumer; removed", self.room);
                    failed.push(session);
                }
                Delivery::Gone => failed.push(session),
            }
        }
        self.observer.pushes(delivered);
        for session in failed {
            self.remove(session);
        }
    }

    /// Handles a [`Leave`]: acks it (`{room}`) and tells the others.
    pub fn leave(&mut self, leave: Leave) {
        let was_member = self.remove(leave.session_id).is_some();
        if let Some(req) = leave.requester {
            if was_member {
                req.ack(RoomOnly { room: &self.room });
            } else {
                req.fail(&WireError::not_joined(&self.room));
            }
        }
    }

    /// Answers a member's request.
    pub fn answer(&mut self, msg: MemberRequest) {
        match msg.ask {
            Ask::List { after_user_id, limit } => self.list(&msg.requester, after_user_id.as_ref(), limit),
            Ask::SetAwareness(state) => self.set_awareness(&msg.requester, state),
        }
    }

    /// `presence:list`: the users after `after`, as they are now.
    fn list(&mut self, req: &Requester, after: Option<&UserId>, limit: usize) {
        let page = self.presence.page(after, limit);
        // The page ends at its last user, or runs to the end of the room.
        let through = if page.has_more { page.last } else { None };
        self.diffs.looked_at(after, through);
        let member_count = self.presence.member_count();
        req.ack(PresencePage { members: page.members, has_more: page.has_more, member_count });
    }

    /// `awareness:set`: acked, and pushed to the others now or when the
    /// timer rings.
    fn set_awareness(&mut self, req: &Requester, state: Option<AwarenessState>) {
        let peer = &req.peer;
        let session = peer.session_id;
        let set = self.awareness.set(session, &peer.user_id, state);
        req.ack(Empty {});
        if set == Set::Now {
            if let Some(update) = self.awareness.current(session) {
                self.push_awareness(&update, Some(session));
            }
            self.awareness.pushed(session);
            self.ring(Tick::Awareness, self.limits.awareness_interval);
        }
    }

    /// A timer the room was asked for rang.
    pub fn tick(&mut self, tick: Tick) {
        match tick {
            Tick::Presence => self.send_diffs(),
            Tick::Awareness => {
                for update in self.awareness.tick() {
                    self.push_awareness(&update, Some(update.session_id));
                }
                if self.awareness.ticking() {
                    self.ring(Tick::Awareness, self.limits.awareness_interval);
                }
            }
        }
    }

    /// Sends the open batch: one shared frame for the members that were in
    /// the room before it opened, and for each later view (a newcomer's
    /// ack) the changes after it, encoded once per view; long diffs are
    /// truncated (`presence::diff`), all to one shared frame.
    fn send_diffs(&mut self) {
        let Some(window) = self.diffs.take() else { return };
        let room = self.room.clone();
        let member_count = self.presence.member_count();
        let cap = self.limits.max_listed;
        let frame = |diff: Diff<'_>| {
            (!diff.is_empty()).then(|| {
                Push::PresenceDiff { joined: &diff.joined, left: &diff.left, member_count, truncated: diff.truncated }.encode(&room)
            })
        };
        // Every truncated diff is the same frame: encoded once, shared.
        let mut truncated = None;
        let mut encode = |diff: Diff<'_>| match diff.truncated {
            true => truncated.get_or_insert_with(|| frame(diff)).clone(),
            false => frame(diff),
        };
        let shared = encode(window.shared(cap));
        let mut later: HashMap<u64, Option<ByteString>> = HashMap::new();
        let opened_at = window.opened_at();
        self.deliver_each(|_, slot| {
            if slot.seen_at <= opened_at {
                return shared.clone();
            }
            later.entry(slot.seen_at).or_insert_with(|| encode(window.since(slot.seen_at, cap))).clone()
        });
    }

    /// Asks the room for `tick` after `after`. Only one of each kind is
    /// ever outstanding: `Members` asks again only once the last one rang.
    fn ring(&self, tick: Tick, after: Duration) {
        let Some(alarm) = self.alarm.clone() else {
            log::error!("{}: no timer to ring ({tick:?}); the room did not call ring_at", self.room);
            return;
        };
        actix::spawn(async move {
            actix::clock::sleep(after).await;
            if let Some(room) = alarm.upgrade() {
                room.do_send(tick);
            }
        });
    }
}
