//! How a room actor lives: its mailbox, and stopping when idle.

use std::time::Duration;

use actix::{Actor, ActorContext, AsyncContext, Context, SpawnHandle};

use crate::members::Members;

/// Room mailboxes hold this many requests; senders wait beyond it.
pub const ROOM_MAILBOX: usize = 4096;

/// Stops a room that stayed empty for `after`. Rooms hold only a warm
/// cache and presence; the database holds the state, so a stopped room is
/// restarted on the next request at no loss.
#[derive(Default)]
pub struct IdleStop {
    timer: Option<SpawnHandle>,
}

impl IdleStop {
    /// Call after every change of membership.
    pub fn update<A>(&mut self, empty: bool, after: Duration, ctx: &mut Context<A>)
    where
        A: Actor<Context = Context<A>> + HasMembers,
    {
        if let Some(t) = self.timer.take() {
            ctx.cancel_future(t);
        }
        if empty {
            self.timer = Some(ctx.run_later(after, |act, ctx| {
                if act.members().is_empty() {
                    log::debug!("{}: idle, stopping", act.members().room());
                    ctx.stop();
                }
            }));
        }
    }
}

/// Rooms expose their members to shared helpers.
pub trait HasMembers {
    fn members(&self) -> &Members;
}
