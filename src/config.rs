//! The command line and its settings. Every setting is a flag and an
//! environment variable (`HUDDLE_<NAME>`); `huddle --help` lists them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use huddle_actors::config::Settings;

use crate::auth::JwtAlgorithm;
use crate::db::connection::SqliteSync;

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
    /// Concurrent connections of one user.
    #[arg(long, env = "HUDDLE_MAX_CONNECTIONS_PER_USER", default_value_t = 20)]
    pub max_connections_per_user: usize,
    /// How long an empty room actor stays warm, in milliseconds.
    #[arg(long, env = "HUDDLE_ROOM_IDLE_MS", default_value_t = 30_000)]
    pub room_idle_ms: u64,

    /// HTTP worker threads (0: one per core).
    #[arg(long, env = "HUDDLE_WORKERS", default_value_t = 0)]
    pub workers: usize,
    /// Threads that run database calls.
    #[arg(long, env = "HUDDLE_DB_THREADS", default_value_t = 4)]
    pub db_threads: usize,
    /// Threads that run room actors; 0: each room runs on the connection
    /// thread of whoever opened it.
    #[arg(long, env = "HUDDLE_ROOM_THREADS", default_value_t = 1)]
    pub room_threads: usize,
    /// On SIGTERM / SIGINT, how long in-flight work may take before exit.
    #[arg(long, env = "HUDDLE_DRAIN_TIMEOUT_MS", default_value_t = 10_000)]
    pub drain_timeout_ms: u64,
}

impl Options {
    pub fn settings(&self) -> Settings {
        Settings {
            max_frame_bytes: self.max_frame_bytes,
            max_document_bytes: self.max_document_bytes,
            max_message_chars: self.max_message_chars,
            max_outbound_queue: self.max_outbound_queue.max(1),
            max_recovery: self.max_recovery,
            heartbeat: Duration::from_millis(self.heartbeat_ms.max(1)),
            auth_timeout: Duration::from_millis(self.auth_timeout_ms.max(1)),
            rate_per_second: self.rate_per_second,
            rate_burst: self.rate_burst,
            max_rooms_per_connection: self.max_rooms_per_connection,
            max_connections_per_user: self.max_connections_per_user,
            jwt_leeway_s: self.jwt_leeway_s,
            room_idle: Duration::from_millis(self.room_idle_ms),
        }
    }

    /// The options as if nothing were set (tests start from here).
    pub fn defaults() -> Options {
        Cli::parse_from(["huddle"]).options
    }
}
