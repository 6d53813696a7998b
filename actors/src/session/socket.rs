//! The seam between a session actor and its WebSocket. The binary adapts
//! actix-ws to [`Socket`] and its message stream to [`Inbound`], so this
//! crate needs no HTTP.

use std::future::Future;

use bytes::Bytes;
use bytestring::ByteString;

use crate::protocol::CloseCode;

/// One thing read from the connection.
#[derive(Debug)]
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

/// The connection is gone.
#[derive(Debug)]
pub struct SocketClosed;

/// Writes to one WebSocket. Every write waits while the connection's send
/// buffer is full, which is what bounds a session's memory.
pub trait Socket: Clone + Unpin + 'static {
    fn text(&mut self, frame: ByteString) -> impl Future<Output = Result<(), SocketClosed>>;
    fn ping(&mut self) -> impl Future<Output = Result<(), SocketClosed>>;
    fn pong(&mut self, payload: Bytes) -> impl Future<Output = Result<(), SocketClosed>>;
    /// Sends a Close frame and ends the connection.
    fn close(self, code: CloseCode) -> impl Future<Output = ()>;
}
