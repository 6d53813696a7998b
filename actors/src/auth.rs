//! Who a connection is. Tokens are checked by a [`TokenVerifier`] that the
//! binary provides (JWT in `src/auth.rs`); the actors only see the verified
//! [`Identity`].

use crate::ids::UserId;
use crate::model::Timestamp;
use crate::protocol::{ErrorCode, WireError};

/// A verified token.
#[derive(Clone, Debug, PartialEq)]
pub struct Identity {
    pub user_id: UserId,
    pub name: Option<String>,
    /// The token's `exp`, in Unix seconds.
    pub expires_at: i64,
}

impl Identity {
    pub fn expires_at(&self) -> Timestamp {
        Timestamp::from_unix_seconds(self.expires_at)
    }
}

/// Why a token was refused. The message never contains the token.
#[derive(Clone, Debug, PartialEq)]
pub enum AuthFailure {
    /// Bad signature, wrong algorithm, malformed, future `nbf`, bad claims.
    Invalid(String),
    /// Only `exp` is wrong.
    Expired,
}

impl From<AuthFailure> for WireError {
    fn from(f: AuthFailure) -> Self {
        match f {
            AuthFailure::Invalid(why) => WireError::new(ErrorCode::Unauthenticated, format!("invalid token: {why}")),
            AuthFailure::Expired => WireError::new(ErrorCode::TokenExpired, "the token has expired"),
        }
    }
}

/// Checks tokens. Called on session actor threads: implementations must be
/// CPU-only (signature checks), never I/O.
pub trait TokenVerifier: Send + Sync + 'static {
    fn verify(&self, token: &str) -> Result<Identity, AuthFailure>;
}
