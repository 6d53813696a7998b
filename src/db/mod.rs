//! The database layer: connections for both backends, the embedded
//! migrations, and the SQL [`store::SqlStore`] behind the engine's `Store`
//! (document history in `history`).

/// Runs `$body` with `$conn` bound to the backend's own connection. The
/// statement is the same for both; what changes is that diesel's
/// `MultiConnection` rebuilds a statement's SQL text and routes every bind
/// through its backend enum at each execution, while a backend connection
/// reuses its cached statement. Used for the statements that run once
/// per stored message or document change.
macro_rules! on_backend {
    ($c:expr, |$conn:ident| $body:expr) => {
        match $c {
            $crate::db::connection::AnyConnection::Sqlite($conn) => $body,
            $crate::db::connection::AnyConnection::Postgresql($conn) => $body,
        }
    };
}

pub mod connection;
pub mod error;
pub mod health;
mod history;
mod pg_batch;
mod rows;
mod schema;
pub mod store;

use std::time::{Duration, Instant};

use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use huddle_actors::store::StoreResult;
use r2d2::{Pool, PooledConnection};

use self::connection::{AnyConnection, Manager, SqliteSync, Target};
use self::error::{from_pool, reason};
use self::health::Health;

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// How long a request waits for a pooled connection before the database is
/// reported unavailable (`SERVER_BUSY`), when nothing says why sooner.
/// Short, so that a dead database is noticed rather than after r2d2's
/// default 30 s. r2d2 also retries a failed connection every half of it at
/// most: a database that comes back is used again within 2.5 s.
const POOL_TIMEOUT: Duration = Duration::from_secs(5);
/// The waits for a connection are cut in slices this long, so that a
/// failed attempt to connect ends the wait at the next slice rather than
/// after [`POOL_TIMEOUT`], which would also hold a database thread that
/// long for every request. Longer than a connection to a live database
/// takes to open (milliseconds on a LAN), since a slice that ends while
/// one is still opening after a failed attempt gives up on it.
const CHECKOUT_SLICE: Duration = Duration::from_millis(250);

/// Opens the pool and applies pending migrations.
pub fn open(target: &Target, sync: SqliteSync, size: u32) -> Result<Pool<Manager>, String> {
    // An in-memory SQLite database exists once per connection: one only.
    let size = if target.is_memory() { 1 } else { size.max(1) };
    let pool = pool(target, sync, size)?;
    migrate(&pool).map_err(|e| format!("cannot migrate {target}: {e}"))?;
    Ok(pool)
}

/// A pool of one connection for one kind of batched write. Always the same
/// connection: SQLite drops a connection's page cache whenever another
/// connection has written, so a writer that rotated through the shared
/// pool re-read every B-tree page it touched (from the write-ahead log,
/// with `pread`) on each batch. In-memory databases share `pool`, their
/// only connection.
pub fn writer(target: &Target, sync: SqliteSync, pool: &Pool<Manager>) -> Result<Pool<Manager>, String> {
    if target.is_memory() {
        return Ok(pool.clone());
    }
    self::pool(target, sync, 1)
}

/// A connection from `pool`. Fails at once while the database is known
/// unreachable, and as soon as an attempt to connect fails.
pub fn checkout(pool: &Pool<Manager>, health: &Health) -> StoreResult<PooledConnection<Manager>> {
    let deadline = Instant::now() + POOL_TIMEOUT;
    loop {
        let e = match pool.get_timeout(CHECKOUT_SLICE) {
            Ok(c) => return Ok(c),
            Err(e) => e,
        };
        // r2d2 says why ("timed out waiting for connection: <cause>") only
        // when an attempt to connect, or to check an idle connection,
        // failed meanwhile; it has no other way to tell.
        let attempt_failed = e.to_string().contains(": ");
        let known_unreachable = health.condition() == Some(reason::UNREACHABLE);
        if attempt_failed || known_unreachable || Instant::now() >= deadline {
            return Err(from_pool(e));
        }
    }
}

/// r2d2 logs every failed attempt to connect as an error, which while a
/// database is down means a line per retry. The condition is logged once by
/// [`Health`], with the cause; the attempts only at debug level.
#[derive(Debug)]
struct QuietErrors;

impl<E: std::fmt::Display> r2d2::HandleError<E> for QuietErrors {
    fn handle_error(&self, error: E) {
        log::debug!("database connection: {error}");
    }
}

fn pool(target: &Target, sync: SqliteSync, size: u32) -> Result<Pool<Manager>, String> {
    Pool::builder()
        .max_size(size)
        .min_idle(Some(1))
        .connection_timeout(POOL_TIMEOUT)
        .error_handler(Box::new(QuietErrors))
        .build(Manager::new(target.clone(), sync))
        .map_err(|e| format!("cannot open {target}: {e}"))
}

/// Serializes migrations between nodes that start together on one
/// PostgreSQL database (a cluster): an advisory lock, any fixed number.
const MIGRATION_LOCK: i64 = 0x6875_6464_6c65; // "huddle"

/// Applies pending migrations; returns how many ran.
pub fn migrate(pool: &Pool<Manager>) -> Result<usize, String> {
    use diesel::connection::SimpleConnection;
    let mut conn = pool.get().map_err(|e| e.to_string())?;
    let applied = match &mut *conn {
        AnyConnection::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS).map(|v| v.len()),
        AnyConnection::Postgresql(c) => {
            // Held for this session until unlocked, whatever happens between.
            c.batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})")).map_err(|e| e.to_string())?;
            let applied = c.run_pending_migrations(POSTGRES_MIGRATIONS).map(|v| v.len());
            c.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})")).map_err(|e| e.to_string())?;
            applied
        }
    };
    applied.map_err(|e| e.to_string())
}
