//! Database failures, and the one mapping from them to the store's errors.

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use huddle_actors::model::Message;
use huddle_actors::store::StoreError;

/// What can end a transaction early.
#[derive(Debug)]
pub enum TxError {
    Diesel(DieselError),
    /// A rule of the store refused the operation (rolls back).
    Refused(StoreError),
    /// An idempotent send found its original: roll back, return it.
    Existing(Box<Message>),
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

/// Maps a database error; "busy" and connection failures are retryable.
pub fn from_diesel(e: DieselError) -> StoreError {
    match &e {
        DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection, _) => StoreError::Unavailable(e.to_string()),
        DieselError::DatabaseError(_, info) if is_busy(info.message()) => StoreError::Unavailable(e.to_string()),
        _ => StoreError::Internal(e.to_string()),
    }
}

fn is_busy(message: &str) -> bool {
    message.contains("database is locked") || message.contains("database is busy")
}

pub fn is_unique_violation(e: &TxError) -> bool {
    matches!(e, TxError::Diesel(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)))
}

/// A pool that cannot hand out a connection: the database is unreachable.
pub fn from_pool(e: r2d2::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}
