//! The members of a room (document or chat) and how pushes reach them;
//! leaving.
//!
//! A push is encoded once and the same bytes are offered to every member
//! with `try_send`; members whose queue is full (slow consumers) or gone are
//! removed on the spot, and the others hear `user:left` for them, so a
//! stalled client never holds a room back.

use std::sync::Arc;

use actix::Message;
use bytestring::ByteString;

use crate::ids::{RoomName, SessionId};
use crate::observer::Observer;
use crate::presence::{Joined, Presence};
use crate::protocol::frames::{MemberInfo, RoomOnly};
use crate::protocol::Push;
use crate::peer::{Delivery, Peer, Requester};

/// A connection leaves a room: a `*:leave` request (with a requester to
/// ack) or a disconnect (without).
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct Leave {
    pub session_id: SessionId,
    pub requester: Option<Requester>,
}

/// The members of one room and the pushes that keep them informed.
pub struct Members {
    room: RoomName,
    presence: Presence<Peer>,
    observer: Arc<dyn Observer>,
}

impl Members {
    pub fn new(room: RoomName, observer: Arc<dyn Observer>) -> Members {
        Members { room, presence: Presence::default(), observer }
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

    pub fn list(&self) -> Vec<MemberInfo> {
        self.presence.members()
    }

    pub fn sessions_of(&self, user: &crate::ids::UserId) -> Vec<SessionId> {
        self.presence.sessions_of(user)
    }

    /// Adds a connection; returns whether the user is new to the room. The
    /// caller acks first, then calls [`Members::announce_join`].
    pub fn add(&mut self, peer: Peer) -> bool {
        // Drop connections that died without saying so, so that `members`
        // never lists ghosts.
        let gone: Vec<SessionId> = self.presence.peers().filter(|(_, p)| p.is_gone()).map(|(s, _)| s).collect();
        for s in gone {
            self.remove(s);
        }
        let (session, user, name) = (peer.session_id, peer.user_id.clone(), peer.name.clone());
        self.presence.join(session, user, name, peer) == Joined::FirstConnection
    }

    /// Admits the requester: adds it, acks with `ack` (given the room and
    /// the member list, the newcomer included), then tells the others if
    /// its user is new to the room.
    pub fn admit(&mut self, req: &Requester, ack: impl FnOnce(&RoomName, &[MemberInfo])) {
        let first = self.add(req.peer.clone());
        let members = self.list();
        ack(&self.room, &members);
        if first {
            self.announce_join(&req.peer);
        }
    }

    /// Tells the others that `peer`'s user arrived.
    pub fn announce_join(&mut self, peer: &Peer) {
        self.push(Push::UserJoined { user_id: &peer.user_id, name: peer.name.as_deref() }, Some(peer.session_id));
    }

    /// Removes a connection and, if it was its user's last one, tells the
    /// others. Returns the removed peer.
    pub fn remove(&mut self, session: SessionId) -> Option<Peer> {
        let left = self.presence.leave(session)?;
        if left.last_connection {
            self.push(Push::UserLeft { user_id: &left.user_id }, None);
        }
        Some(left.peer)
    }

    /// Encodes `push` once and offers it to every member but `except`;
    /// returns the encoded frame.
    pub fn push(&mut self, push: Push<'_>, except: Option<SessionId>) -> ByteString {
        let frame = push.encode(&self.room);
        self.broadcast(frame.clone(), except);
        frame
    }

    /// Offers `frame` to every member but `except`. Members that cannot take
    /// it are removed (which may announce `user:left`).
    pub fn broadcast(&mut self, frame: ByteString, except: Option<SessionId>) {
        let mut failed = Vec::new();
        let mut delivered = 0;
        for (session, peer) in self.presence.peers() {
            if Some(session) == except {
                continue;
            }
            match peer.deliver(frame.clone()) {
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

    /// Handles a [`Leave`]: acks it (`{room}`) and announces `user:left`.
    pub fn leave(&mut self, leave: Leave) {
        let was_member = self.remove(leave.session_id).is_some();
        if let Some(req) = leave.requester {
            if was_member {
                req.ack(RoomOnly { room: &self.room });
            } else {
                req.fail(&crate::protocol::WireError::not_joined(&self.room));
            }
        }
    }
}
