//! What the engine reports about itself (the binary turns it into
//! Prometheus metrics). Called on actor and database threads: implementations
//! must be cheap and must not block.

use crate::protocol::ErrorCode;

pub trait Observer: Send + Sync + 'static {
    fn session_opened(&self) {}
    fn session_closed(&self) {}
    /// A decoded request (`event` is its wire name).
    fn request(&self, _event: &'static str) {}
    /// Seconds from a request's arrival to its response being queued.
    fn request_done(&self, _event: &'static str, _seconds: f64) {}
    /// An error sent to a client.
    fn error(&self, _event: &'static str, _code: ErrorCode) {}
    /// Frames offered to members by a room (one per member per push).
    fn pushes(&self, _count: u64) {}
    /// A connection closed because its outbound queue was full.
    fn slow_consumer(&self) {}
    /// Seconds one store call took on its database thread.
    fn db_call(&self, _seconds: f64) {}
    /// A document room prepares `count` edits again: their group's commit
    /// found the document moved (another node or engine process committed
    /// first) or refused another edit of the group.
    fn edits_redone(&self, _count: u64) {}
    /// Cluster mode: a room filled a gap with `count` events read back
    /// from the database.
    fn gap_repaired(&self, _count: u64) {}
    /// Cluster mode: every open room was told to catch up from the
    /// database (the Redis link came back, or this node was paused).
    fn caught_up(&self) {}
}

/// Records nothing.
pub struct NoObserver;

impl Observer for NoObserver {}
