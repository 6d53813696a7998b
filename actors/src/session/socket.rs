//! The seam between a session actor and its WebSocket. The binary adapts
//! its message stream to [`Inbound`] and writes the session's [`Outlet`]
//! to the connection, so this crate needs no HTTP. The session tells the
//! transport how large a frame it may read through a shared [`FrameLimit`].

use std::cell::Cell;
use std::rc::Rc;

use bytes::Bytes;
use bytestring::ByteString;
use tokio::sync::oneshot;

use crate::protocol::CloseCode;
use crate::queue::FrameQueue;

/// The largest frame read before the connection is authenticated
/// (docs/protocol.md, "Limits"): an `auth` frame needs no more, and
/// anyone who can open a TCP connection can send one.
pub const AUTH_FRAME_LIMIT: usize = 64 * 1024;

/// One thing read from the connection.
#[derive(Debug, PartialEq)]
pub enum Inbound {
    Text(ByteString),
    Binary,
    Ping(Bytes),
    Pong,
    /// The client sent a Close frame.
    Close,
    /// A frame (or a fragmented message) above the [`FrameLimit`], refused
    /// from its header.
    TooLarge,
    /// A text frame that is not UTF-8.
    InvalidUtf8,
    /// The WebSocket framing itself is broken; the connection cannot go on.
    Broken(String),
}

/// A session's outbound side, handed to the transport when the session
/// starts. The transport writes the queued frames out in order, as fast as
/// the connection takes them, and stops after a Close. The session never
/// waits on it: producers `try_send` into the queue (see
/// [`crate::peer`]).
pub struct Outlet {
    pub queue: FrameQueue,
    /// A close that cannot wait for the queue (a slow consumer's): drop
    /// whatever is queued, send this Close, stop.
    pub abort: oneshot::Receiver<CloseCode>,
    /// Dropped when the transport is done with the connection (its Close
    /// sent and the client's Close or end seen, or the socket failed),
    /// which stops the session.
    pub finished: oneshot::Sender<()>,
}

/// The largest frame (or fragmented message) the transport may read for a
/// session, in payload bytes. Shared between the session, which raises it
/// from [`AUTH_FRAME_LIMIT`] to `max_frame_bytes` when it authenticates,
/// and the transport's reader, which refuses a larger frame from its
/// header. Both live on the connection's thread.
#[derive(Clone, Debug)]
pub struct FrameLimit(Rc<Cell<usize>>);

impl FrameLimit {
    pub fn new(bytes: usize) -> FrameLimit {
        FrameLimit(Rc::new(Cell::new(bytes)))
    }

    pub fn get(&self) -> usize {
        self.0.get()
    }

    pub fn set(&self, bytes: usize) {
        self.0.set(bytes);
    }
}
