//! The engine's limits and timings (docs/protocol.md, "Limits and rate
//! limiting"). The binary fills them from flags and `HUDDLE_*` variables.

use std::time::Duration;

use crate::protocol::DecodeLimits;

#[derive(Clone, Debug)]
pub struct Settings {
    pub max_frame_bytes: usize,
    pub max_document_bytes: usize,
    pub max_message_chars: usize,
    pub max_outbound_queue: usize,
    /// Bytes of frames that may wait for one connection (one frame always
    /// may, whatever its size).
    pub max_outbound_bytes: usize,
    pub max_recovery: u32,
    pub heartbeat: Duration,
    pub auth_timeout: Duration,
    pub rate_per_second: u32,
    pub rate_burst: u32,
    pub max_rooms_per_connection: usize,
    pub max_connections_per_user: usize,
    pub jwt_leeway_s: u64,
    /// How long an empty room actor lingers before it stops, so that a
    /// reconnecting client finds it warm.
    pub room_idle: Duration,
    /// Cluster mode: how long a gap in a room's positions may stay open
    /// before the room fills it from the database. Events from other nodes
    /// arrive through Redis within a millisecond or two on a LAN, and a
    /// node's own commits within a group commit (a few ms); 100 ms leaves
    /// room for a busy node without letting a lost event hold members back
    /// for long.
    pub gap_wait: Duration,
    /// Cluster mode: how often each node reads the newest position of all
    /// its open rooms (one query), to catch a node that died between its
    /// commit and its publish, or a subscription gone silent.
    pub check_interval: Duration,
    /// Users (and awareness states) a join ack lists; `presence:list`
    /// pages the rest.
    pub presence_max_listed: usize,
    /// Users in a room above which presence goes out as `presence:diff`
    /// batches instead of one `user:joined` / `user:left` per change.
    pub presence_max_instant: usize,
    /// At most one `presence:diff` per room per interval.
    pub presence_interval: Duration,
    /// Largest awareness state, in bytes as serialized.
    pub max_awareness_bytes: usize,
    /// At most one `awareness` push per connection and room per interval.
    pub awareness_interval: Duration,
    /// Longest a document room holds its next group for the authors of
    /// the group just acked (never longer than that commit took); zero:
    /// never. See `document::room::gather`.
    pub edit_gather: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_frame_bytes: 4 * 1024 * 1024,
            max_document_bytes: 1024 * 1024,
            max_message_chars: 4000,
            max_outbound_queue: 1024,
            max_outbound_bytes: 16 * 1024 * 1024,
            max_recovery: 1000,
            heartbeat: Duration::from_millis(25_000),
            auth_timeout: Duration::from_millis(10_000),
            rate_per_second: 100,
            rate_burst: 200,
            max_rooms_per_connection: 100,
            max_connections_per_user: 20,
            jwt_leeway_s: 5,
            room_idle: Duration::from_secs(30),
            gap_wait: Duration::from_millis(100),
            check_interval: Duration::from_secs(2),
            // The server's defaults (src/config.rs, chosen from the
            // benchmark sweep in BENCHMARKS.md).
            presence_max_listed: 100,
            presence_max_instant: 50,
            presence_interval: Duration::from_millis(1000),
            max_awareness_bytes: 1024,
            awareness_interval: Duration::from_millis(50),
            edit_gather: Duration::from_millis(5),
        }
    }
}

impl Settings {
    pub fn decode_limits(&self) -> DecodeLimits {
        DecodeLimits {
            max_document_bytes: self.max_document_bytes,
            max_message_chars: self.max_message_chars,
            max_awareness_bytes: self.max_awareness_bytes,
        }
    }
}
