//! The WebSocket's response body: it writes a session's [`Outlet`] to the
//! connection.
//!
//! actix-ws's own body reads from a channel that only its async `Session`
//! can fill, so the engine used to run a writer task per connection that
//! moved each frame from the session's bounded queue into that channel.
//! This body reads the session's queue itself: a room's `try_send` wakes
//! the connection's HTTP dispatcher directly, and every frame waiting in
//! the queue is encoded (with actix-http's WebSocket codec) into one chunk,
//! which the dispatcher writes with one `write`. The dispatcher polls the
//! body only while its write buffer has room, so a client that stops
//! reading fills the session's queue, and the room sees a slow consumer.
//!
//! actix-ws still does the handshake and decodes what the client sends.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use actix_codec::Encoder;
use actix_http::ws::{CloseCode as WsCloseCode, CloseReason, Codec, Message};
use actix_web::body::{BodySize, BoxBody, MessageBody};
use bytes::{Bytes, BytesMut};
use huddle_actors::protocol::CloseCode;
use huddle_actors::peer::Outbound;
use huddle_actors::session::socket::Outlet;

/// Most bytes encoded into one chunk: bounds the copy held per connection
/// when a burst is queued; the next chunk follows at once.
const MAX_CHUNK: usize = 64 * 1024;
/// What a chunk starts with: a dozen or so small pushes. Transient (the
/// dispatcher copies the chunk into its own buffer and drops it).
const CHUNK_HINT: usize = 4 * 1024;

pub struct OutletBody {
    outlet: Outlet,
    /// Set once the abort has fired or can no longer fire.
    abort_done: bool,
    codec: Codec,
    /// No more frames: a Close was written or every producer is gone.
    ended: bool,
    /// actix-ws's response body, never polled. Dropping it (with this body,
    /// when the connection ends) is what tells actix-ws's message stream
    /// that the connection is gone.
    _stream_guard: BoxBody,
}

impl OutletBody {
    pub fn new(outlet: Outlet, stream_guard: BoxBody) -> OutletBody {
        OutletBody { outlet, abort_done: false, codec: Codec::new(), ended: false, _stream_guard: stream_guard }
    }

    fn encode(&mut self, message: Message, buf: &mut BytesMut) {
        // Room for a typical burst at once, rather than doubling up to it;
        // only once there is something to write (most polls find nothing).
        if buf.capacity() == 0 {
            buf.reserve(CHUNK_HINT);
        }
        // The codec's encoder fails only for a Close reason too long for a
        // control frame; ours are short constants.
        if let Err(e) = self.codec.encode(message, buf) {
            log::warn!("websocket frame not encoded: {e}");
        }
    }

    fn close(&mut self, code: CloseCode, buf: &mut BytesMut) {
        let reason = CloseReason { code: WsCloseCode::from(code.code()), description: Some(code.reason().to_owned()) };
        self.encode(Message::Close(Some(reason)), buf);
        self.ended = true;
    }
}

impl MessageBody for OutletBody {
    type Error = Infallible;

    fn size(&self) -> BodySize {
        BodySize::Stream
    }

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Infallible>>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        let mut buf = BytesMut::new();
        if !this.abort_done {
            if let Poll::Ready(fired) = Pin::new(&mut this.outlet.abort).poll(cx) {
                this.abort_done = true;
                if let Ok(code) = fired {
                    this.close(code, &mut buf);
                    return Poll::Ready(Some(Ok(buf.freeze())));
                }
            }
        }
        while buf.len() < MAX_CHUNK {
            match this.outlet.queue.poll_recv(cx) {
                Poll::Ready(Some(Outbound::Frame(text))) => this.encode(Message::Text(text), &mut buf),
                Poll::Ready(Some(Outbound::Ping)) => this.encode(Message::Ping(Bytes::new()), &mut buf),
                Poll::Ready(Some(Outbound::Pong(payload))) => this.encode(Message::Pong(payload), &mut buf),
                Poll::Ready(Some(Outbound::Close(code))) => {
                    this.close(code, &mut buf);
                    break;
                }
                Poll::Ready(None) => {
                    this.ended = true;
                    break;
                }
                Poll::Pending => break,
            }
        }
        if !buf.is_empty() {
            Poll::Ready(Some(Ok(buf.freeze())))
        } else if this.ended {
            Poll::Ready(None)
        } else {
            Poll::Pending
        }
    }
}
