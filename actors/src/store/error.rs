//! What can go wrong in the store, and how each failure reads on the wire.

use std::fmt;

use crate::ids::{DocumentId, Version};
use crate::protocol::{ErrorCode, WireError};

/// What went wrong in the store, in terms the protocol can express.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreError {
    /// `what` names the missing thing: "document d1".
    NotFound(String),
    PermissionDenied(String),
    AlreadyExists(String),
    VersionConflict { document: DocumentId, current: Version },
    Invalid { field: &'static str, message: String },
    /// A condition of the machine (disk full, database unreachable): not a
    /// bug, safe to retry. `reason` is short and stable (`disk_full`);
    /// `cause` is the database's own words, for the log.
    Unavailable { reason: &'static str, cause: String },
    /// Anything else: a bug or a corrupt database.
    Internal(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

impl std::error::Error for StoreError {}

pub type StoreResult<T> = Result<T, StoreError>;

impl From<StoreError> for WireError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => {
                WireError::new(ErrorCode::NotFound, format!("no such {what}"))
            }
            StoreError::PermissionDenied(why) => WireError::new(ErrorCode::PermissionDenied, why),
            StoreError::AlreadyExists(what) => {
                WireError::new(ErrorCode::AlreadyExists, format!("{what} already exists"))
            }
            StoreError::VersionConflict { document, current } => {
                let mut w = WireError::new(
                    ErrorCode::VersionConflict,
                    format!("document {document} is at version {}", current.0),
                );
                w.details.current_version = Some(current.0);
                w
            }
            StoreError::Invalid { field, message } => WireError::invalid(field, message),
            // Logged once when the condition starts and once when it ends
            // (by the store), not per request.
            StoreError::Unavailable { reason, .. } => {
                let mut w = WireError::busy(format!("the database is unavailable ({reason}); retry shortly"));
                w.details.reason = Some(reason);
                w
            }
            StoreError::Internal(cause) => WireError::internal("database", &cause),
        }
    }
}
