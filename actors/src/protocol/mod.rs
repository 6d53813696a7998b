//! The wire protocol, version 1 (docs/protocol.md): request decoding,
//! pushes, frame encoding, error and close codes. The only module of this
//! crate that touches JSON.

pub mod error;
pub mod fields;
pub mod frames;
pub mod push;
pub mod request;
pub mod tree;

pub use error::{CloseCode, Details, ErrorCode, WireError};
pub use push::Push;
pub use request::{decode, AwarenessState, ClientRequest, DecodeError, DecodeLimits, Ref, Request};

/// The protocol version announced in `connect`.
pub const PROTOCOL_VERSION: u8 = 1;
