//! How rooms and the registry reach a session. Rooms hold a [`Peer`] for
//! each member (and a [`Requester`] for each request) and offer frames into
//! the session's bounded outbound queue of [`Outbound`] items, which the
//! session itself also writes into and the transport drains (see
//! [`crate::session::socket::Outlet`]). Notices that are not frames
//! ([`Control`]: slow consumer, eviction, and shutdown, which the registry
//! sends) go to the session actor.
//!
//! Rooms never wait on a session: they `try_send` into its queue, and a full
//! queue marks the session a slow consumer (closed with 4008) instead of
//! slowing the room.

use std::sync::Arc;

use actix::{Message, Recipient};
use bytes::Bytes;
use bytestring::ByteString;
use serde::Serialize;

use crate::ids::{RoomName, SessionId, UserId};
use crate::protocol::{frames, CloseCode, Ref, WireError};
use crate::queue::{FrameSender, TrySendError};

/// What the transport writes next.
#[derive(Debug)]
pub enum Outbound {
    Frame(ByteString),
    Ping,
    Pong(Bytes),
    /// Send a Close frame and stop writing.
    Close(CloseCode),
}

/// Out-of-band notices to a session actor. Each room sends at most one per
/// member event (a slow consumer is removed from the room as it is
/// reported), so this path stays bounded without a capacity check.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub enum Control {
    /// A room found the outbound queue full.
    SlowConsumer,
    /// The user lost access to the room; the error was already queued.
    Evicted(RoomName),
    /// The server is stopping: close with 1001.
    Shutdown,
    /// The HTTP API closes the user's connections: close with 4003.
    Disconnect,
}

/// The result of offering a frame to a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Queued,
    /// The queue is full: a slow consumer.
    Full,
    /// The session is gone.
    Gone,
}

/// How rooms reach one session. Cloned for every request (it rides in the
/// [`Requester`]) and for every room joined, so it is one shared
/// allocation: a clone is one reference count, not a copy of the ids plus
/// a boxed actor address.
#[derive(Clone)]
pub struct Peer(Arc<PeerShared>);

pub struct PeerShared {
    pub session_id: SessionId,
    pub user_id: UserId,
    pub name: Option<Arc<str>>,
    frames: FrameSender,
    control: Recipient<Control>,
}

impl std::ops::Deref for Peer {
    type Target = PeerShared;

    fn deref(&self) -> &PeerShared {
        &self.0
    }
}

impl Peer {
    pub fn new(
        session_id: SessionId,
        user_id: UserId,
        name: Option<Arc<str>>,
        frames: FrameSender,
        control: Recipient<Control>,
    ) -> Peer {
        Peer(Arc::new(PeerShared { session_id, user_id, name, frames, control }))
    }

    /// Offers a frame without waiting. On `Full` the session has already
    /// been told it is a slow consumer.
    pub fn deliver(&self, frame: ByteString) -> Delivery {
        match self.frames.try_send(Outbound::Frame(frame)) {
            Ok(()) => Delivery::Queued,
            Err(TrySendError::Full(_)) => {
                self.control.do_send(Control::SlowConsumer);
                Delivery::Full
            }
            Err(TrySendError::Closed(_)) => Delivery::Gone,
        }
    }

    pub fn is_gone(&self) -> bool {
        self.frames.is_closed()
    }

    pub fn evicted(&self, room: RoomName) {
        self.control.do_send(Control::Evicted(room));
    }
}

/// The connection that made a request, and the request's `ref`: where its
/// one response goes.
#[derive(Clone)]
pub struct Requester {
    pub peer: Peer,
    pub r#ref: Option<Ref>,
}

impl Requester {
    /// Sends the `ack` (only when the request had a `ref`).
    pub fn ack<D: Serialize>(&self, data: D) {
        if let Some(r) = &self.r#ref {
            self.peer.deliver(frames::ack(r, data));
        }
    }

    /// Sends the `error` (always: requests without `ref` still hear of
    /// failures).
    pub fn fail(&self, e: &WireError) {
        if let Some(incident) = &e.details.incident {
            log::error!("session {}: answered INTERNAL_ERROR, incident {incident}", self.peer.session_id);
        }
        self.peer.deliver(frames::error(self.r#ref.as_ref(), None, e));
    }
}
