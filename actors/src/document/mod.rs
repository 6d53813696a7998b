//! Document rooms: one [`DocumentRoom`] actor per open document.

mod room;

pub use room::{DocumentRoom, JoinDocument, ShareDocument, UpdateDocument};
