//! Document rooms: one [`DocumentRoom`] actor per open document, the
//! document's [`timeline`] it edits (pure), and the edits it holds until
//! they are answered.

pub mod order;
mod pending;
mod room;
pub mod timeline;

pub use room::{ApplyOp, DocumentRoom, JoinDocument, ShareDocument, UpdateDocument, MAX_GROUP, MAX_WAITING};
pub use pending::MAX_WAITING_PER_CONNECTION;
