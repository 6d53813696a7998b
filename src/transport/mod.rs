//! The WebSocket transport: drives an upgraded TCP connection for one
//! session, with no HTTP layer left in between.

pub mod codec;
