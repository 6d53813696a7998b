//! The WebSocket transport: drives an upgraded TCP connection for one
//! session, with no HTTP layer left in between.
//!
//! After the handshake (`routes::ws`) the socket is shared by two halves on
//! the connection's worker thread, each using tokio's `&self` readiness
//! calls, so neither needs a lock:
//! - the [`reader::Reader`], a stream of [`Inbound`] items polled by the
//!   session actor in its own context: it reads only when the session wants
//!   its next item, and enforces the session's frame limit from each
//!   frame's header;
//! - the [`writer::Writer`], a future that drains the session's bounded
//!   queue with one vectored write per batch. It is the future the HTTP
//!   server awaits for the connection, so a graceful stop waits for it.
//!
//! The session stops when the writer is done (its `finished` sender drops),
//! and the writer stops when the session is gone (its `abort` sender
//! drops); the socket closes when both have let go of it. After its Close
//! the writer waits (briefly) for the reader to see the client's Close or
//! end, so that the server closes the TCP connection once the close
//! handshake is done and never with unread input.
//!
//! [`Inbound`]: huddle_actors::session::socket::Inbound

pub mod codec;
mod conn;
mod reader;
mod writer;

use bytes::Bytes;
use huddle_actors::auth::Identity;
use huddle_actors::session::{SessionDeps, SessionStarter};
use tokio::net::TcpStream;

use self::conn::Conn;
use self::reader::Reader;
pub use self::writer::Writer;

/// Starts the session on an upgraded connection and returns its writer,
/// which the caller awaits for as long as the connection lasts. `early`:
/// bytes the client sent behind its upgrade request; `preamble`: the 101
/// response, sent ahead of the first frames.
pub fn connect(
    stream: TcpStream,
    early: &[u8],
    preamble: Bytes,
    starter: SessionStarter,
    deps: SessionDeps,
    identity: Option<Identity>,
) -> Writer {
    let conn = Conn::new(stream);
    let reader = Reader::new(conn.clone(), early, starter.frame_limit(), starter.id());
    let (_, outlet) = starter.start(deps, reader, identity);
    Writer::new(conn, outlet, preamble)
}
