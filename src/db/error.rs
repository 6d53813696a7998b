//! Database failures, and the one mapping from them to the store's errors.
//! A failure is either about one operation (a constraint, a corrupt row: a
//! bug, `INTERNAL_ERROR`) or a condition of the machine (disk full,
//! database unreachable: `SERVER_BUSY` with a reason, and `/ready` 503);
//! [`condition`] tells them apart.

use std::fmt;

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use huddle_actors::model::Message;
use huddle_actors::store::StoreError;

/// The conditions of the machine, as sent in `details.reason`. Stable:
/// clients and alerts may match on them.
pub mod reason {
    /// No space left for the database (SQLite's SQLITE_FULL, PostgreSQL's
    /// "No space left on device").
    pub const DISK_FULL: &str = "disk_full";
    /// The disk failed a read or write (SQLITE_IOERR).
    pub const DISK_ERROR: &str = "disk_error";
    /// The database refuses writes: a read-only file, or a PostgreSQL
    /// standby.
    pub const READ_ONLY: &str = "database_read_only";
    /// No connection: refused, lost, or none within the pool's timeout;
    /// or a SQLite file that cannot be opened.
    pub const UNREACHABLE: &str = "database_unreachable";
    /// Another writer held SQLite's lock for longer than `busy_timeout`.
    pub const BUSY: &str = "database_busy";
    pub const OUT_OF_MEMORY: &str = "out_of_memory";
}

/// What can end a transaction early.
#[derive(Debug)]
pub enum TxError {
    Diesel(DieselError),
    /// A rule of the store refused the operation (rolls back).
    Refused(StoreError),
    /// An idempotent send found its original: roll back, return it.
    Existing(Box<Message>),
}

impl TxError {
    /// The condition of the machine behind this failure, if it is one: it
    /// fails a whole batch, where anything else is about one item.
    pub fn condition(&self) -> Option<&'static str> {
        match self {
            TxError::Diesel(e) => condition(e),
            TxError::Refused(StoreError::Unavailable { reason, .. }) => Some(reason),
            TxError::Refused(_) | TxError::Existing(_) => None,
        }
    }
}

impl fmt::Display for TxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TxError::Diesel(e) => e.fmt(f),
            TxError::Refused(e) => e.fmt(f),
            TxError::Existing(m) => write!(f, "duplicate of message {}", m.id),
        }
    }
}

impl From<DieselError> for TxError {
    fn from(e: DieselError) -> Self {
        TxError::Diesel(e)
    }
}

impl From<StoreError> for TxError {
    fn from(e: StoreError) -> Self {
        TxError::Refused(e)
    }
}

impl From<TxError> for StoreError {
    fn from(e: TxError) -> Self {
        match e {
            TxError::Diesel(e) => from_diesel(e),
            TxError::Refused(e) => e,
            TxError::Existing(m) => StoreError::Internal(format!("unhandled duplicate of message {}", m.id)),
        }
    }
}

/// Maps a database error: conditions of the machine are `Unavailable`
/// (retryable), anything else `Internal`.
pub fn from_diesel(e: DieselError) -> StoreError {
    match condition(&e) {
        Some(reason) => StoreError::Unavailable { reason, cause: e.to_string() },
        None => StoreError::Internal(e.to_string()),
    }
}

/// The condition of the machine behind an error, if it is one. Neither
/// diesel nor SQLite's extended codes reach us beyond the kind and the
/// message, so the message is matched: SQLite's are fixed strings
/// (`sqlite3_errstr`), PostgreSQL's come from the server in English unless
/// `lc_messages` says otherwise (then only the kinds below are seen).
pub fn condition(e: &DieselError) -> Option<&'static str> {
    match e {
        DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand, _) => {
            Some(reason::UNREACHABLE)
        }
        DieselError::DatabaseError(DatabaseErrorKind::ReadOnlyTransaction, _) => Some(reason::READ_ONLY),
        DieselError::DatabaseError(_, info) => condition_in(info.message()),
        // A failed commit whose rollback failed too.
        DieselError::RollbackErrorOnCommit { rollback_error, commit_error } => {
            condition(commit_error).or_else(|| condition(rollback_error))
        }
        // A rollback that failed earlier left the connection unusable;
        // the pool replaces it (`Manager::has_broken`).
        DieselError::BrokenTransactionManager => Some(reason::UNREACHABLE),
        _ => None,
    }
}

fn condition_in(message: &str) -> Option<&'static str> {
    const KNOWN: &[(&str, &str)] = &[
        ("database or disk is full", reason::DISK_FULL),
        ("No space left on device", reason::DISK_FULL),
        ("disk I/O error", reason::DISK_ERROR),
        ("attempt to write a readonly database", reason::READ_ONLY),
        ("unable to open database file", reason::UNREACHABLE),
        ("database is locked", reason::BUSY),
        ("database is busy", reason::BUSY),
        ("out of memory", reason::OUT_OF_MEMORY),
    ];
    KNOWN.iter().find(|(needle, _)| message.contains(needle)).map(|(_, reason)| *reason)
}

pub fn is_unique_violation(e: &TxError) -> bool {
    matches!(e, TxError::Diesel(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)))
}

/// A pool that cannot hand out a connection: the database is unreachable.
pub fn from_pool(e: r2d2::Error) -> StoreError {
    StoreError::Unavailable { reason: reason::UNREACHABLE, cause: e.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db_error(kind: DatabaseErrorKind, message: &str) -> DieselError {
        DieselError::DatabaseError(kind, Box::new(message.to_owned()))
    }

    #[test]
    fn conditions_of_the_machine_are_told_from_bugs() {
        use DatabaseErrorKind::*;
        assert_eq!(condition(&db_error(Unknown, "database or disk is full")), Some("disk_full"));
        assert_eq!(
            condition(&db_error(Unknown, "could not extend file \"base/1/2\": No space left on device")),
            Some("disk_full")
        );
        assert_eq!(condition(&db_error(ClosedConnection, "server closed the connection unexpectedly")), Some("database_unreachable"));
        assert_eq!(condition(&db_error(Unknown, "database is locked")), Some("database_busy"));
        assert_eq!(condition(&db_error(Unknown, "invalid byte sequence for encoding \"UTF8\": 0x00")), None);
        assert_eq!(condition(&db_error(UniqueViolation, "UNIQUE constraint failed")), None);
        assert_eq!(condition(&DieselError::NotFound), None);
        let both = DieselError::RollbackErrorOnCommit {
            rollback_error: Box::new(db_error(Unknown, "cannot rollback")),
            commit_error: Box::new(db_error(Unknown, "database or disk is full")),
        };
        assert_eq!(condition(&both), Some("disk_full"));
        assert!(matches!(from_diesel(db_error(Unknown, "disk I/O error")), StoreError::Unavailable { reason: "disk_error", .. }));
        assert!(matches!(from_diesel(db_error(Unknown, "syntax error")), StoreError::Internal(_)));
    }
}
