//! # huddle-actors: the actor topology of the Huddle engine
//!
//! No HTTP and no SQL live here: the binary feeds each session its
//! WebSocket's frames ([`session::socket::Inbound`]), writes the session's
//! [`session::socket::Outlet`] to the connection, and adapts its database
//! to [`store::Store`].
//!
//! ```text
//!   WebSocket ─Inbound─► Session ──────────── send ───────────► Registry
//!   (binary)             (one per connection)                     │ starts rooms
//!      ▲                       │             ▲                    │ (on a few threads),
//!      │ drains           send │     Control │ (slow consumer,    │ forgets them on
//!      │                       │   eviction; │ shutdown comes     │ RoomStopped
//!      │                       ▼             │ from the registry) ▼
//!   bounded ◄── try_send ── DocumentRoom / ChatRoom (one per open room)
//!   outbound     (Peer)               │ appends, document change sets
//!   queue                             ▼ (the room waits for the commit)
//!                           Batcher × 2: group commit, one
//!                           transaction for many rooms' writes
//!                                     │
//!   sessions, rooms ── Db::run ──► DbExecutor × N (SyncArbiter) ──► Store
//! ```
//!
//! Who may message whom:
//! - Sessions `send` to the registry (register, resolve a room) and to
//!   rooms, and may wait for them. Requests reach rooms through
//!   [`registry::route::deliver`], the one loop that resolves a room again
//!   when it stopped under a request (idle rooms stop).
//! - Rooms never wait on sessions: they `try_send` frames into each
//!   session's bounded outbound queue ([`peer::Peer`]); a full queue makes
//!   the session a slow consumer (closed with 4008). Other notices
//!   ([`peer::Control`]) go to the session actor; the registry sends one to
//!   every session at shutdown.
//! - Rooms tell the registry that they stopped
//!   ([`lifecycle::RoomStopped`]); they do not import it.
//! - Rooms and sessions reach the database only through [`store::Db`]:
//!   reads and rare writes run on the `SyncArbiter` executors
//!   ([`store::Db::run`]); chat appends and document change sets go to a
//!   group-commit [`store::batch::Batcher`] (one per kind of write), which
//!   stores the writes waiting from every room (up to
//!   [`store::batch::MAX_BATCH`]) in one transaction on an executor. A
//!   room acks and pushes only after its write committed.
//!
//! In cluster mode (the binary passes a [`cluster::Cluster`]), rooms also
//! subscribe to their room's events from other nodes before reading where
//! they start, publish their commits, and receive [`cluster::Remote`]
//! events (from the binary's Redis link) and where the database stands,
//! [`cluster::Stored`] and [`cluster::DocumentStored`] (from the
//! registry's periodic check, [`registry::watch`]); a room lets everything
//! out through one [`cluster::reorder::Reorder`] order (a document room's
//! also feeds its timeline: [`document::order`]).
//! Presence spans the nodes: a room's [`members::Members`] tells the
//! cluster each change of its users' connections and each awareness push,
//! and takes the other nodes' (and the news that one died) into its
//! [`presence::remote::Elsewhere`]; the periodic check also re-reads a
//! document's roles when its access changed; the registry admits a
//! connection against the user's count on every node. Without it none of
//! this runs.
//!
//! Who owns what:
//! - [`session::Session`]: authentication, decoding (once, into
//!   [`protocol::ClientRequest`]), per-connection limits, the outbound queue
//!   (which the binary's transport drains).
//! - [`registry::Registry`]: room name → room actor; live sessions per user.
//! - [`document::DocumentRoom`], [`chat::ChatRoom`]: ordering of their
//!   room's operations and the pushes they cause ([`protocol::Push`]),
//!   through their [`members::Members`] (presence, [`presence::Presence`],
//!   batched into `presence:diff`s by [`presence::diff`] in large rooms;
//!   [`awareness`] states); [`lifecycle`]: their mailbox and idle stop.
//!   A room's only timers besides the idle stop are the presence and
//!   awareness batches: `Members` has a [`members::Tick`] sent to its own
//!   room, and only while something waits. A document room keeps its
//!   document and recent changes in a [`document::timeline::Timeline`]
//!   (pure), which rebases text operations ([`ot`]) over what was
//!   committed since their base version.
//! - [`store::batch::Batcher`]: which writes share a commit.
//! - The store: durability, version checks and `seq` assignment, document
//!   history (the record of truth, shared by every engine process: a room
//!   whose commit finds its document moved catches up from the history).
//! - [`cluster`]: what rooms need from other nodes (an interface, and the
//!   pure reorder buffer); the binary implements it over Redis.

pub mod auth;
pub mod awareness;
pub mod chat;
pub mod cluster;
pub mod config;
pub mod document;
pub mod ids;
pub mod lifecycle;
pub mod members;
pub mod model;
pub mod observer;
pub mod ot;
pub mod peer;
pub mod presence;
pub mod protocol;
pub mod queue;
pub mod registry;
pub mod session;
pub mod store;
