//! Database connections: one diesel connection type over both backends,
//! and the r2d2 manager that opens them. The backend is chosen from the URL
//! scheme here, rather than by trying each backend in turn, so that the real
//! error (connection refused, bad password, unwritable file) reaches the
//! user.

use std::fmt;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::{Connection, ConnectionError, PgConnection, SqliteConnection};

/// A connection to whichever backend `DATABASE_URL` names. SQLite is listed
/// last, as diesel's `MultiConnection` requires.
#[derive(diesel::MultiConnection)]
pub enum AnyConnection {
    Postgresql(PgConnection),
    Sqlite(SqliteConnection),
}

/// Where the data lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A SQLite file (or `:memory:`).
    Sqlite(String),
    Postgres(String),
}

impl Target {
    /// Reads `DATABASE_URL`: `postgres://...`, `sqlite://PATH`, or a path.
    pub fn parse(url: &str) -> Target {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Target::Postgres(url.to_owned())
        } else if let Some(path) = url.strip_prefix("sqlite://") {
            Target::Sqlite(path.to_owned())
        } else if let Some(path) = url.strip_prefix("sqlite:") {
            Target::Sqlite(path.to_owned())
        } else {
            Target::Sqlite(url.to_owned())
        }
    }

    pub fn is_memory(&self) -> bool {
        matches!(self, Target::Sqlite(p) if p == ":memory:")
    }
}

impl fmt::Display for Target {
    /// Never shows a PostgreSQL password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Sqlite(p) => write!(f, "sqlite {p}"),
            Target::Postgres(url) => {
                let shown = match (url.find("://"), url.rfind('@')) {
                    (Some(s), Some(at)) if at > s => format!("{}://***{}", &url[..s], &url[at..]),
                    _ => url.clone(),
                };
                write!(f, "postgres {shown}")
            }
        }
    }
}

/// SQLite's `synchronous` setting (see README, "Durability").
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SqliteSync {
    /// fsync at every commit: an acked write survives power loss.
    Full,
    /// fsync at checkpoints only: an acked write survives a crash of the
    /// process, not of the machine.
    Normal,
}

/// Opens connections for r2d2.
pub struct Manager {
    target: Target,
    sync: SqliteSync,
}

/// How long a SQLite writer waits for the lock before giving up. Writers
/// hold it for one short transaction, so this is only reached when the disk
/// stalls.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// WAL pages between checkpoints (40 MB of 4 KiB pages; the WAL file keeps
/// that size on disk). Measured in BENCHMARKS.md: operations +16 %.
const WAL_CHECKPOINT_PAGES: u32 = 10_000;

impl Manager {
    pub fn new(target: Target, sync: SqliteSync) -> Manager {
        Manager { target, sync }
    }
}

impl r2d2::ManageConnection for Manager {
    type Connection = AnyConnection;
    type Error = ConnectionError;

    fn connect(&self) -> Result<AnyConnection, ConnectionError> {
        match &self.target {
            Target::Postgres(url) => Ok(AnyConnection::Postgresql(PgConnection::establish(url)?)),
            Target::Sqlite(path) => {
                let mut conn = SqliteConnection::establish(path)?;
                let sync = match self.sync {
                    SqliteSync::Full => "FULL",
                    SqliteSync::Normal => "NORMAL",
                };
                // Set on every pooled connection: these are per-connection
                // settings (WAL itself persists in the file). A checkpoint
                // every WAL_CHECKPOINT_PAGES rather than SQLite's 1,000: a
                // group commit rewrites the same hot pages (a document's row,
                // the last leaf of its history) batch after batch, and a
                // checkpoint copies each page once however often it changed.
                conn.batch_execute(&format!(
                    "PRAGMA busy_timeout = {}; PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync}; PRAGMA foreign_keys = ON; \
                     PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_PAGES};",
                    SQLITE_BUSY_TIMEOUT.as_millis()
                ))
                .map_err(ConnectionError::CouldntSetupConfiguration)?;
                Ok(AnyConnection::Sqlite(conn))
            }
        }
    }

    fn is_valid(&self, conn: &mut AnyConnection) -> Result<(), ConnectionError> {
        conn.batch_execute("SELECT 1").map_err(ConnectionError::CouldntSetupConfiguration)
    }

    /// A connection whose transaction could not be rolled back (diesel
    /// then marks it broken: typically the server went away mid-write) is
    /// dropped rather than handed out again. A connection that broke
    /// outside a transaction is caught by the `SELECT 1` r2d2 runs at each
    /// checkout (`test_on_check_out`, on by default).
    fn has_broken(&self, conn: &mut AnyConnection) -> bool {
        diesel::r2d2::R2D2Connection::is_broken(conn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_schemes_pick_the_backend() {
        assert_eq!(Target::parse("huddle.db"), Target::Sqlite("huddle.db".into()));
        assert_eq!(Target::parse("sqlite:///tmp/x.db"), Target::Sqlite("/tmp/x.db".into()));
        assert_eq!(Target::parse("sqlite://data/x.db"), Target::Sqlite("data/x.db".into()));
        assert!(matches!(Target::parse("postgres://u@h/db"), Target::Postgres(_)));
        assert!(matches!(Target::parse("postgresql://u@h/db"), Target::Postgres(_)));
    }

    #[test]
    fn passwords_are_not_shown() {
        let t = Target::parse("postgres://user:secret@localhost/db");
        assert_eq!(t.to_string(), "postgres postgres://***@localhost/db");
    }
}
