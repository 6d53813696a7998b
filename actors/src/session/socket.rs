//! The seam between a session actor and its WebSocket. The binary adapts
//! its message stream to [`Inbound`] and writes the session's [`Outlet`]
//! to the connection, so this crate needs no HTTP.

use bytes::Bytes;
use bytestring::ByteString;
use tokio::sync::{mpsc, oneshot};

use crate::protocol::CloseCode;
use crate::session::outbound::Outbound;

/// One thing read from the connection.
#[derive(Debug, PartialEq)]
pub enum Inbound {
    Text(ByteString),
    Binary,
    Ping(Bytes),
    Pong,
    /// The client sent a Close frame.
    Close,
    /// A frame (or a fragmented message) above `max_frame_bytes`.
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
/// [`crate::session::outbound`]).
pub struct Outlet {
    pub queue: mpsc::Receiver<Outbound>,
    /// A close that cannot wait for the queue (a slow consumer's): drop
    /// whatever is queued, send this Close, stop.
    pub abort: oneshot::Receiver<CloseCode>,
    /// Dropped when the transport stops writing, which stops the session.
    pub finished: oneshot::Sender<()>,
}
