//! The database layer: connections for both backends, the embedded
//! migrations, and the SQL [`store::SqlStore`] behind the engine's `Store`.

pub mod connection;
pub mod error;
mod rows;
mod schema;
pub mod store;

use std::time::Duration;

use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use r2d2::Pool;

use self::connection::{AnyConnection, Manager, SqliteSync, Target};

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// How long a request waits for a pooled connection before the database is
/// reported unavailable (`SERVER_BUSY`). Short, so that a dead database is
/// noticed at once rather than after r2d2's default 30 s.
const POOL_TIMEOUT: Duration = Duration::from_secs(5);

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

fn pool(target: &Target, sync: SqliteSync, size: u32) -> Result<Pool<Manager>, String> {
    Pool::builder()
        .max_size(size)
        .min_idle(Some(1))
        .connection_timeout(POOL_TIMEOUT)
        .build(Manager::new(target.clone(), sync))
        .map_err(|e| format!("cannot open {target}: {e}"))
}

/// Applies pending migrations; returns how many ran.
pub fn migrate(pool: &Pool<Manager>) -> Result<usize, String> {
    let mut conn = pool.get().map_err(|e| e.to_string())?;
    let applied = match &mut *conn {
        AnyConnection::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS).map(|v| v.len()),
        AnyConnection::Postgresql(c) => c.run_pending_migrations(POSTGRES_MIGRATIONS).map(|v| v.len()),
    };
    applied.map_err(|e| e.to_string())
}
