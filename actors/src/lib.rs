//! # huddle-actors: the actor topology of the Huddle engine
//!
//! No HTTP and no SQL live here: the binary feeds each session its
//! WebSocket's frames ([`session::socket::Inbound`]), writes the session's
//! [`session::socket::Outlet`] to the connection, and adapts its database
//! to [`store::Store`].
//!
//! ```text
//!   WebSocket ──► Session (one per connection) ──send──► Registry
//!                   │  ▲                                    │ starts, on a few
//!                   │  │ try_send (bounded queue)           ▼ arbiter threads
//!                   │  └──────────── DocumentRoom / ChatRoom (one per open room)
//!                   │                      │ AtomicResponse: hold the mailbox
//!                   │                      ▼ for the commit only
//!                   └──── Db::run ──► DbExecutor × N (SyncArbiter) ──► Store
//! ```
//!
//! Who may message whom:
//! - Sessions `send` to the registry and to rooms and may wait for them.
//! - Rooms never wait on sessions: they `try_send` frames into each
//!   session's bounded outbound queue ([`peer::Peer`]); a full
//!   queue makes the session a slow consumer (closed with 4008).
//! - Rooms and sessions reach the database only through [`store::Db`],
//!   which runs blocking store calls on `SyncArbiter` threads.
//!
//! Who owns what:
//! - [`session::Session`]: authentication, decoding (once, into
//!   [`protocol::ClientRequest`]), per-connection limits, the outbound queue
//!   (which the binary's transport drains).
//! - [`registry::Registry`]: room name → room actor; live sessions per user.
//! - [`document::DocumentRoom`], [`chat::ChatRoom`]: ordering of their
//!   room's operations, presence ([`presence::Presence`]), pushes.
//! - The store: durability, version checks and `seq` assignment (the record
//!   of truth, shared by every engine process).

pub mod auth;
pub mod chat;
pub mod config;
pub mod document;
pub mod ids;
pub mod lifecycle;
pub mod members;
pub mod model;
pub mod observer;
pub mod peer;
pub mod presence;
pub mod protocol;
pub mod registry;
pub mod session;
pub mod store;
