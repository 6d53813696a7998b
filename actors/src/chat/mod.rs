//! Chat rooms: one [`ChatRoom`] actor per open chat, and the recovery rule.

mod order;
mod pipeline;
pub mod recovery;
mod room;

pub use room::{not_member_error, ChatRoom, JoinChat, PostMessage};
