//! The wire protocol (docs/protocol.md, version 1): request decoding, frame
//! encoding, error and close codes. The only module that touches JSON.

pub mod error;
pub mod fields;
pub mod frames;
pub mod request;

pub use error::{CloseCode, Details, ErrorCode, WireError};
pub use request::{decode, ClientRequest, DecodeError, DecodeLimits, Ref, Request};

/// The protocol version announced in `connect`.
pub const PROTOCOL_VERSION: u8 = 1;
