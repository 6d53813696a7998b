//! The command line and its settings. Every setting is a flag and an
//! environment variable (`HUDDLE_<NAME>`); `huddle --help` lists them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use huddle_actors::config::Settings;

use crate::auth::JwtAlgorithm;
use crate::cluster::{check_node_id, generated_node_id, ClusterConfig};
use crate::db::connection::{SqliteSync, Target};

#[derive(Parser, Debug)]
#[command(
    name = "huddle",
    version,
    about = "Huddle: a realtime engine for collaborative documents and chat",
    long_about = "Huddle: a realtime engine for collaborative documents and chat.\n\n\
        Clients connect over WebSocket at /ws and speak JSON (see docs/protocol.md).\n\
        With no subcommand, `huddle` runs `serve`. Every option can also be set\n\
        through the environment variable shown beside it.",
    // `huddle --bind ...` is `huddle serve --bind ...`; each subcommand
    // takes (and lists in its --help) only the options it uses.
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub options: Options,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server (the default).
    Serve(Box<Options>),
    /// Print a token signed with the server's secret, to connect at once.
    Token(TokenArgs),
    /// Apply database migrations and exit.
    Migrate(MigrateArgs),
}

/// The `--database-url` help of the commands that open the database.
const DATABASE_HELP: &str = "Database: a SQLite file path, sqlite://PATH, or postgres://...";
/// The shortest `node_timeout_ms` taken: heartbeats go out four times per
/// timeout, and more often than every 25 ms would be noise.
const MIN_NODE_TIMEOUT_MS: u64 = 100;

/// A SQLite file in the working directory: nothing to set up.
pub const DEFAULT_DATABASE_URL: &str = "huddle.db";

#[derive(Args, Debug)]
pub struct TokenArgs {
    /// The user id (the token's `sub`).
    #[arg(long)]
    pub sub: String,
    /// A display name (the token's `name`).
    #[arg(long)]
    pub name: Option<String>,
    /// How long the token is valid, e.g. 30m, 1h, 7d.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub ttl: Duration,
    /// The server's database: the secret the server generated is beside it
    /// (FILE.jwt-secret; huddle.jwt-secret for PostgreSQL). Not read with
    /// --jwt-secret.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub database_url: String,
    #[command(flatten)]
    pub jwt: JwtOptions,
}

#[derive(Args, Debug)]
pub struct MigrateArgs {
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, help = DATABASE_HELP)]
    pub database_url: String,
    /// SQLite durability while migrating (see `huddle serve --help`).
    #[arg(long, env = "HUDDLE_SQLITE_SYNCHRONOUS", value_enum, default_value = "full")]
    pub sqlite_synchronous: SqliteSync,
}

/// How tokens are signed and what they must claim: the server checks them
/// with these, and `huddle token` signs with the same.
#[derive(Args, Debug, Clone)]
pub struct JwtOptions {
    /// HS256 secret for tokens. Unset: `serve` generates one and keeps it
    /// beside the database (FILE.jwt-secret, mode 0600), where `token`
    /// finds it.
    #[arg(long, env = "HUDDLE_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Token algorithm (`token` mints HS256 only).
    #[arg(long, env = "HUDDLE_JWT_ALGORITHM", value_enum, default_value = "HS256")]
    pub jwt_algorithm: JwtAlgorithm,
    /// Required `iss` claim, if set.
    #[arg(long, env = "HUDDLE_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Required `aud` claim, if set.
    #[arg(long, env = "HUDDLE_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct Options {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "HUDDLE_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, help = DATABASE_HELP)]
    pub database_url: String,
    /// SQLite durability: `full` fsyncs every commit (an acked write
    /// survives power loss); `normal` survives process crashes only.
    #[arg(long, env = "HUDDLE_SQLITE_SYNCHRONOUS", value_enum, default_value = "full")]
    pub sqlite_synchronous: SqliteSync,
    #[command(flatten)]
    pub jwt: JwtOptions,
    /// PEM public key file for RS256 / ES256.
    #[arg(long, env = "HUDDLE_JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<PathBuf>,
    /// Clock leeway for `exp` and `nbf`, in seconds.
    #[arg(long, env = "HUDDLE_JWT_LEEWAY_S", default_value_t = 5)]
    pub jwt_leeway_s: u64,
    /// Bearer key for the /api routes (unset: /api answers 401).
    #[arg(long, env = "HUDDLE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Bearer token for /metrics (unset: /metrics is open).
    #[arg(long, env = "HUDDLE_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
    /// Serve the demo page at / and demo tokens at /demo/token. Insecure:
    /// anyone can get a token.
    #[arg(long, env = "HUDDLE_DEMO")]
    pub demo: bool,

    /// Largest frame accepted, in bytes.
    #[arg(long, env = "HUDDLE_MAX_FRAME_BYTES", default_value_t = 4_194_304)]
    pub max_frame_bytes: usize,
    /// Largest document content, in UTF-8 bytes.
    #[arg(long, env = "HUDDLE_MAX_DOCUMENT_BYTES", default_value_t = 1_048_576)]
    pub max_document_bytes: usize,
    /// Longest chat message, in characters.
    #[arg(long, env = "HUDDLE_MAX_MESSAGE_CHARS", default_value_t = 4000)]
    pub max_message_chars: usize,
    /// Frames that may wait for one connection before it is closed as a
    /// slow consumer (4008).
    #[arg(long, env = "HUDDLE_MAX_OUTBOUND_QUEUE", default_value_t = 1024)]
    pub max_outbound_queue: usize,
    /// Bytes of frames that may wait for one connection before it is
    /// closed as a slow consumer (4008); a single frame above it still
    /// goes out to a connection that reads.
    #[arg(long, env = "HUDDLE_MAX_OUTBOUND_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_outbound_bytes: usize,
    /// Messages replayed by a join with since_seq; document changes replayed
    /// by a join with since_version, and how many recent changes a document
    /// room keeps to rebase operations over.
    #[arg(long, env = "HUDDLE_MAX_RECOVERY", default_value_t = 1000)]
    pub max_recovery: u32,
    /// WebSocket Ping interval; connections silent for twice this are closed.
    #[arg(long, env = "HUDDLE_HEARTBEAT_MS", default_value_t = 25_000)]
    pub heartbeat_ms: u64,
    /// Time a new connection has to authenticate.
    #[arg(long, env = "HUDDLE_AUTH_TIMEOUT_MS", default_value_t = 10_000)]
    pub auth_timeout_ms: u64,
    /// Requests per connection per second.
    #[arg(long, env = "HUDDLE_RATE_PER_SECOND", default_value_t = 100)]
    pub rate_per_second: u32,
    /// Requests a connection may send at once.
    #[arg(long, env = "HUDDLE_RATE_BURST", default_value_t = 200)]
    pub rate_burst: u32,
    /// Rooms one connection may join.
    #[arg(long, env = "HUDDLE_MAX_ROOMS_PER_CONNECTION", default_value_t = 100)]
    pub max_rooms_per_connection: usize,
    /// Concurrent connections of one user (in a cluster, on every node
    /// together; on this node's count alone while Redis is unreachable).
    #[arg(long, env = "HUDDLE_MAX_CONNECTIONS_PER_USER", default_value_t = 20)]
    pub max_connections_per_user: usize,
    /// How long an empty room actor stays warm, in milliseconds.
    #[arg(long, env = "HUDDLE_ROOM_IDLE_MS", default_value_t = 30_000)]
    pub room_idle_ms: u64,
    /// Users (and awareness states) listed in a join ack; presence:list
    /// pages the rest.
    #[arg(long, env = "HUDDLE_PRESENCE_MAX_LISTED", default_value_t = 100)]
    pub presence_max_listed: usize,
    /// Users in a room above which presence is sent as presence:diff
    /// batches instead of one user:joined / user:left per change. 50, not
    /// the contract's starting point of 100: measured, a room at the
    /// threshold sets up joins at 86 % of the rate of rooms of 10, and at
    /// 100 at 70 % (BENCHMARKS.md, "Large rooms").
    #[arg(long, env = "HUDDLE_PRESENCE_MAX_INSTANT", default_value_t = 50)]
    pub presence_max_instant: usize,
    /// At most one presence:diff per room per this many milliseconds.
    #[arg(long, env = "HUDDLE_PRESENCE_INTERVAL_MS", default_value_t = 1000)]
    pub presence_interval_ms: u64,
    /// Largest awareness state, in bytes as serialized.
    #[arg(long, env = "HUDDLE_MAX_AWARENESS_BYTES", default_value_t = 1024)]
    pub max_awareness_bytes: usize,
    /// At most one awareness push per connection and room per this many
    /// milliseconds.
    #[arg(long, env = "HUDDLE_AWARENESS_INTERVAL_MS", default_value_t = 50)]
    pub awareness_interval_ms: u64,
    /// Longest a document room holds its next group of edits for the
    /// connections whose edits it just acked (never longer than that
    /// commit took; 0: never): busy editors' edits then commit together.
    #[arg(long, env = "HUDDLE_EDIT_GATHER_MS", default_value_t = 5)]
    pub edit_gather_ms: u64,

    /// HTTP worker threads (0: one per core).
    #[arg(long, env = "HUDDLE_WORKERS", default_value_t = 0)]
    pub workers: usize,
    /// Threads that run database calls.
    #[arg(long, env = "HUDDLE_DB_THREADS", default_value_t = 4)]
    pub db_threads: usize,
    /// Threads that run the reads clients ask for (history pages, document
    /// versions), apart from the commits and room loads.
    #[arg(long, env = "HUDDLE_DB_READ_THREADS", default_value_t = 2)]
    pub db_read_threads: usize,
    /// Threads that run room actors; 0: each room runs on the connection
    /// thread of whoever opened it.
    #[arg(long, env = "HUDDLE_ROOM_THREADS", default_value_t = 1)]
    pub room_threads: usize,
    /// On SIGTERM / SIGINT, how long in-flight work may take before exit.
    #[arg(long, env = "HUDDLE_DRAIN_TIMEOUT_MS", default_value_t = 10_000)]
    pub drain_timeout_ms: u64,

    /// Cluster mode: the Redis that carries events between the nodes
    /// (redis://host:port). Needs a postgres:// database shared by every
    /// node. Unset: a single node.
    #[arg(long, env = "HUDDLE_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// This node's name in the cluster (A-Za-z0-9_.-, at most 64);
    /// generated from the host name when unset.
    #[arg(long, env = "HUDDLE_NODE_ID")]
    pub node_id: Option<String>,
    /// Cluster mode: a node not heard from for this long is dead, and its
    /// users leave every room on the other nodes.
    #[arg(long, env = "HUDDLE_NODE_TIMEOUT_MS", default_value_t = 10_000)]
    pub node_timeout_ms: u64,
    /// Cluster mode: how long a gap in a room's order may stay open before
    /// it is filled from the database.
    #[arg(long, env = "HUDDLE_GAP_WAIT_MS", default_value_t = 100)]
    pub gap_wait_ms: u64,
    /// Cluster mode: how often a node reads the positions of all its open
    /// rooms from the database (one query), to repair what Redis lost.
    #[arg(long, env = "HUDDLE_CHECK_INTERVAL_MS", default_value_t = 2000)]
    pub check_interval_ms: u64,
}

impl Options {
    pub fn settings(&self) -> Settings {
        Settings {
            max_frame_bytes: self.max_frame_bytes,
            max_document_bytes: self.max_document_bytes,
            max_message_chars: self.max_message_chars,
            max_outbound_queue: self.max_outbound_queue.max(1),
            max_outbound_bytes: self.max_outbound_bytes,
            max_recovery: self.max_recovery,
            heartbeat: Duration::from_millis(self.heartbeat_ms.max(1)),
            auth_timeout: Duration::from_millis(self.auth_timeout_ms.max(1)),
            rate_per_second: self.rate_per_second,
            rate_burst: self.rate_burst,
            max_rooms_per_connection: self.max_rooms_per_connection,
            max_connections_per_user: self.max_connections_per_user,
            jwt_leeway_s: self.jwt_leeway_s,
            room_idle: Duration::from_millis(self.room_idle_ms),
            gap_wait: Duration::from_millis(self.gap_wait_ms),
            check_interval: Duration::from_millis(self.check_interval_ms.max(1)),
            presence_max_listed: self.presence_max_listed,
            presence_max_instant: self.presence_max_instant,
            presence_interval: Duration::from_millis(self.presence_interval_ms.max(1)),
            max_awareness_bytes: self.max_awareness_bytes,
            awareness_interval: Duration::from_millis(self.awareness_interval_ms.max(1)),
            edit_gather: Duration::from_millis(self.edit_gather_ms),
        }
    }

    /// Cluster mode's settings, `None` for a single node (no Redis URL).
    /// Refuses SQLite: every node must share one database.
    pub fn cluster(&self) -> Result<Option<ClusterConfig>, String> {
        let Some(redis_url) = self.redis_url.as_deref().filter(|u| !u.is_empty()) else { return Ok(None) };
        if !matches!(Target::parse(&self.database_url), Target::Postgres(_)) {
            return Err(format!(
                "cluster mode (HUDDLE_REDIS_URL is set) needs a PostgreSQL database that every node shares, \
                 and DATABASE_URL is the SQLite file {}: set DATABASE_URL=postgres://..., or unset \
                 HUDDLE_REDIS_URL to run a single node",
                self.database_url
            ));
        }
        let node_id = match &self.node_id {
            Some(id) => {
                check_node_id(id)?;
                id.clone()
            }
            None => generated_node_id(),
        };
        Ok(Some(ClusterConfig {
            redis_url: redis_url.to_owned(),
            node_id,
            node_timeout: Duration::from_millis(self.node_timeout_ms.max(MIN_NODE_TIMEOUT_MS)),
        }))
    }

    /// The options as if nothing were set (tests start from here).
    pub fn defaults() -> Options {
        Cli::parse_from(["huddle"]).options
    }
}
