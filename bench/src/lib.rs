//! # huddle-bench: the load harness
//!
//! Every simulated client is an actix actor holding one WebSocket (`awc`),
//! and all of them run on one thread, in one actix system, so that one
//! harness process is one core: pin it with `taskset` away from the server.
//!
//! ```text
//!   main.rs (CLI) ──► scenarios::run ──► client::connect ──► Client<B> actor ─ ws ─► huddle
//!                          │  Go / Join / Close                  │ frames (Bytes)
//!                          └──────────────────────────────► roles::{ChatClient, Editor, Idle, Churner}
//!                                                                │ scan (no JSON parsing)
//!                                                                ▼
//!                                          stats::Counters (Rc<RefCell>, HDR histograms)
//!                                                                │
//!                          report::Report ◄──────────────────────┘ one JSON line + a table
//! ```
//!
//! - [`scenarios`]: fanout, rooms, docs, conns, recovery, churn, ceiling;
//!   each sets clients up, waits for them on events (with a stall timeout,
//!   never a sleep), sends the start signal and measures.
//! - [`client`]: the connection actor and the [`client::Behaviour`] seam.
//! - [`roles`]: what each kind of client does with its frames.
//! - [`scan`]: reading the few fields it counts out of a frame's bytes.
//! - [`stats`]: counters, sequence checking, CPU and RSS from /proc.
//! - [`report`]: the output, shard merging and run summaries.
//! - [`server`]: starting the `huddle` binary (optionally pinned).
//! - [`fake`]: the stand-in server of the `ceiling` scenario.

pub mod client;
pub mod fake;
pub mod report;
pub mod roles;
pub mod scan;
pub mod scenarios;
pub mod server;
pub mod stats;
pub mod token;

use std::time::Duration;

use serde_json::json;

pub use report::Report;
pub use scenarios::run;

/// The server under test: one node, or the nodes of a cluster.
#[derive(Debug, Clone)]
pub struct Target {
    /// `ws://host:port/ws` of each node; clients are spread over them as
    /// `placement` says.
    pub urls: Vec<String>,
    /// The HS256 secret the server checks tokens with (every node's).
    pub secret: String,
    /// The server processes, for CPU and RSS (summed over the nodes;
    /// none: not measured).
    pub server_pids: Vec<u32>,
    pub placement: Placement,
}

impl Target {
    /// One node.
    pub fn single(url: impl Into<String>, secret: impl Into<String>, server_pid: Option<u32>) -> Target {
        Target { urls: vec![url.into()], secret: secret.into(), server_pids: server_pid.into_iter().collect(), placement: Placement::RoundRobin }
    }
}

/// Which node each connection goes to, when there are several.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Placement {
    /// Each new connection (and reconnection) to the next node.
    RoundRobin,
    /// Publishers on the first node, everyone else over the others: every
    /// delivery crosses nodes (cross-node latency).
    Cross,
}

/// This process's part of the connections: `index` of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// Parses `i/n`.
    pub fn parse(s: &str) -> Result<Shard, String> {
        let (i, n) = s.split_once('/').ok_or_else(|| format!("shard `{s}`: expected i/n, e.g. 0/2"))?;
        let index: usize = i.trim().parse().map_err(|_| format!("shard `{s}`: bad index"))?;
        let count: usize = n.trim().parse().map_err(|_| format!("shard `{s}`: bad count"))?;
        if count == 0 || index >= count {
            return Err(format!("shard `{s}`: need 0 <= i < n"));
        }
        Ok(Shard { index, count })
    }

    /// Whether item `i` (a connection, a room, a document) is ours.
    pub fn owns(&self, i: usize) -> bool {
        i % self.count == self.index
    }

    pub fn is_first(&self) -> bool {
        self.index == 0
    }
}

/// How a run is carried out.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Prefix of every user, chat and document name: runs never share state,
    /// and the shards of one run must be given the same id.
    pub run_id: String,
    pub label: String,
    pub shard: Shard,
    /// A run fails when nothing at all happens for this long.
    pub stall: Duration,
    /// Connections being opened at once.
    pub connect_concurrency: usize,
    /// `ceiling`: the core for the fake server thread.
    pub fake_cpu: Option<usize>,
}

impl RunOptions {
    pub fn new(run_id: impl Into<String>) -> RunOptions {
        RunOptions {
            run_id: run_id.into(),
            label: String::new(),
            shard: Shard::WHOLE,
            stall: Duration::from_secs(15),
            connect_concurrency: 64,
            fake_cpu: None,
        }
    }
}

/// What to run. Sizes are totals over all shards.
#[derive(Debug, Clone)]
pub enum Scenario {
    /// One chat, `subscribers` + `publishers` members; each publisher sends
    /// `messages` with at most `window` unacknowledged (`rate`: messages per
    /// second over all publishers, for latency runs).
    Fanout { subscribers: usize, publishers: usize, messages: u64, window: u32, rate: Option<f64> },
    /// `rooms` chats of `members` subscribers plus one publisher each.
    Rooms { rooms: usize, members: usize, messages: u64, window: u32, rate: Option<f64> },
    /// `docs` documents with `editors` each; every editor makes `updates`
    /// accepted updates, retrying on VERSION_CONFLICT; or, with `ops`, sends
    /// `updates` small operations (`documents:op`), the next as soon as the
    /// last is acked, none of which may be refused, on documents `filler`
    /// bytes longer than the editors' slots.
    Docs { docs: usize, editors: usize, updates: u64, ops: bool, filler: usize },
    /// `connections` idle connections joined to chats of `room_size`;
    /// held for `hold` after setup.
    Conns { connections: usize, room_size: usize, hold: Duration },
    /// One publisher, `subscribers` that each drop their connection `drops`
    /// times while messages flow, and recover with `since_seq`.
    Recovery { subscribers: usize, messages: u64, window: u32, drops: u32 },
    /// `clients` loops of connect, join, leave, close for `duration` (or
    /// until `max_cycles` in all).
    Churn { clients: usize, duration: Duration, max_cycles: Option<u64> },
    /// The harness alone against the fake server: its own ceiling.
    Ceiling { subscribers: usize, messages: u64 },
}

impl Scenario {
    pub fn name(&self) -> &'static str {
        match self {
            Scenario::Fanout { .. } => "fanout",
            Scenario::Rooms { .. } => "rooms",
            Scenario::Docs { ops: false, .. } => "docs",
            Scenario::Docs { ops: true, .. } => "docs-ops",
            Scenario::Conns { .. } => "conns",
            Scenario::Recovery { .. } => "recovery",
            Scenario::Churn { .. } => "churn",
            Scenario::Ceiling { .. } => "ceiling",
        }
    }

    /// The sizes, as they appear in reports (and group summaries).
    pub fn params(&self) -> serde_json::Value {
        match *self {
            Scenario::Fanout { subscribers, publishers, messages, window, rate } => {
                json!({"S": subscribers, "P": publishers, "M": messages, "W": window, "rate": rate})
            }
            Scenario::Rooms { rooms, members, messages, window, rate } => {
                json!({"R": rooms, "K": members, "M": messages, "W": window, "rate": rate})
            }
            // Without filler, as before it existed: runs recorded earlier
            // group with new ones.
            Scenario::Docs { docs, editors, updates, ops, filler: 0 } => json!({"D": docs, "E": editors, "M": updates, "ops": ops}),
            Scenario::Docs { docs, editors, updates, ops, filler } => {
                json!({"D": docs, "E": editors, "M": updates, "ops": ops, "filler": filler})
            }
            Scenario::Conns { connections, room_size, hold } => {
                json!({"C": connections, "room_size": room_size, "hold_s": hold.as_secs_f64()})
            }
            Scenario::Recovery { subscribers, messages, window, drops } => {
                json!({"S": subscribers, "M": messages, "W": window, "drops": drops})
            }
            Scenario::Churn { clients, duration, max_cycles } => {
                json!({"clients": clients, "duration_s": duration.as_secs_f64(), "max_cycles": max_cycles})
            }
            Scenario::Ceiling { subscribers, messages } => json!({"S": subscribers, "M": messages}),
        }
    }
}
