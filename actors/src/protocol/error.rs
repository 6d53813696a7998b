//! Error codes, close codes, and [`WireError`], the `{code, message,
//! details}` body every failure of the engine becomes. Each layer maps its
//! own error type into it in one place: the store in `store/error.rs`,
//! token checks in `auth.rs`, actor mailboxes here.

use std::fmt;

use serde::Serialize;

/// The protocol's error codes (docs/protocol.md, "Errors").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    Unauthenticated,
    TokenExpired,
    PermissionDenied,
    NotFound,
    InvalidInput,
    AlreadyExists,
    VersionConflict,
    NotJoined,
    RateLimited,
    LimitExceeded,
    PayloadTooLarge,
    ServerBusy,
    InternalError,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Unauthenticated => "UNAUTHENTICATED",
            ErrorCode::TokenExpired => "TOKEN_EXPIRED",
            ErrorCode::PermissionDenied => "PERMISSION_DENIED",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::InvalidInput => "INVALID_INPUT",
            ErrorCode::AlreadyExists => "ALREADY_EXISTS",
            ErrorCode::VersionConflict => "VERSION_CONFLICT",
            ErrorCode::NotJoined => "NOT_JOINED",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::LimitExceeded => "LIMIT_EXCEEDED",
            ErrorCode::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            ErrorCode::ServerBusy => "SERVER_BUSY",
            ErrorCode::InternalError => "INTERNAL_ERROR",
        }
    }

    /// The HTTP status the API answers with for this code.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidInput => 400,
            ErrorCode::Unauthenticated | ErrorCode::TokenExpired => 401,
            ErrorCode::PermissionDenied | ErrorCode::NotJoined => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::AlreadyExists | ErrorCode::VersionConflict => 409,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::RateLimited | ErrorCode::LimitExceeded => 429,
            ErrorCode::ServerBusy => 503,
            ErrorCode::InternalError => 500,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// WebSocket close codes the engine uses (docs/protocol.md, "Close codes").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseCode {
    Normal,
    GoingAway,
    InvalidUtf8,
    Policy,
    TooBig,
    Internal,
    HeartbeatTimeout,
    Unauthenticated,
    /// Closed by the server's HTTP API (`DELETE /api/users/{id}/connections`).
    Disconnected,
    SlowConsumer,
    RateAbuse,
}

impl CloseCode {
    pub fn code(self) -> u16 {
        match self {
            CloseCode::Normal => 1000,
            CloseCode::GoingAway => 1001,
            CloseCode::InvalidUtf8 => 1007,
            CloseCode::Policy => 1008,
            CloseCode::TooBig => 1009,
            CloseCode::Internal => 1011,
            CloseCode::HeartbeatTimeout => 4000,
            CloseCode::Unauthenticated => 4001,
            CloseCode::Disconnected => 4003,
            CloseCode::SlowConsumer => 4008,
            CloseCode::RateAbuse => 4029,
        }
    }

    /// A short reason for the close frame (at most 123 bytes on the wire).
    pub fn reason(self) -> &'static str {
        match self {
            CloseCode::Normal => "bye",
            CloseCode::GoingAway => "server shutting down, reconnect",
            CloseCode::InvalidUtf8 => "invalid UTF-8",
            CloseCode::Policy => "policy violation",
            CloseCode::TooBig => "frame too large",
            CloseCode::Internal => "internal error",
            CloseCode::HeartbeatTimeout => "heartbeat timeout",
            CloseCode::Unauthenticated => "unauthenticated",
            CloseCode::Disconnected => "disconnected by the server; do not reconnect with the same token",
            CloseCode::SlowConsumer => "slow consumer: reconnect and recover",
            CloseCode::RateAbuse => "rate limit abuse",
        }
    }
}

/// `details` of an error. Every field is optional; only the ones that apply
/// to a code are set.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Details {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_version: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incident: Option<String>,
    /// Why a `SERVER_BUSY` is answered, when it is a condition of the
    /// machine (`disk_full`, `database_unreachable`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

/// An error as the client sees it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WireError {
    pub code: ErrorCode,
    pub message: String,
    pub details: Details,
}

impl WireError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        WireError {
            code,
            message: message.into(),
            details: Details::default(),
        }
    }

    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        let mut e = WireError::new(ErrorCode::InvalidInput, message);
        e.details.field = Some(field.into());
        e
    }

    pub fn not_joined(room: impl fmt::Display) -> Self {
        WireError::new(
            ErrorCode::NotJoined,
            format!("join {room} before this request"),
        )
    }

    pub fn limit(setting: &'static str, message: impl Into<String>) -> Self {
        let mut e = WireError::new(ErrorCode::LimitExceeded, message);
        e.details.limit = Some(setting);
        e
    }

    pub fn busy(message: impl Into<String>) -> Self {
        WireError::new(ErrorCode::ServerBusy, message)
    }

    /// An unexpected failure: logged here with a fresh incident id, which is
    /// the only part of it the client sees.
    pub fn internal(context: &str, cause: &dyn fmt::Display) -> Self {
        let incident = uuid::Uuid::new_v4().simple().to_string();
        log::error!("incident {incident}: {context}: {cause}");
        let mut e = WireError::new(
            ErrorCode::InternalError,
            format!("internal error (incident {incident})"),
        );
        e.details.incident = Some(incident);
        e
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// A refused operation (docs/protocol.md, "Operations"): a result above
/// `max_document_bytes` is `PAYLOAD_TOO_LARGE`, anything else about it
/// `INVALID_INPUT`; both name the field `ops`.
impl From<crate::ot::OpError> for WireError {
    fn from(e: crate::ot::OpError) -> Self {
        if e.is_too_large() {
            let mut w = WireError::new(ErrorCode::PayloadTooLarge, e.to_string());
            w.details.field = Some("ops".into());
            w
        } else {
            WireError::invalid("ops", e.to_string())
        }
    }
}

impl From<actix::MailboxError> for WireError {
    fn from(e: actix::MailboxError) -> Self {
        // A mailbox closes only while the engine shuts down or an actor died;
        // either way the client may retry.
        log::warn!("actor mailbox: {e}");
        WireError::busy("the engine is restarting this component; retry")
    }
}
