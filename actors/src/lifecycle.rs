//! How a room actor lives: the id it is found by, its mailbox, stopping
//! when idle, and telling the registry it stopped. Rooms import this, not
//! the registry, so the registry can start rooms without a cycle.

use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, ActorContext, Addr, AsyncContext, Context, Message, SpawnHandle};

use crate::cluster::Cluster;
use crate::config::Settings;
use crate::members::Members;
use crate::store::Db;

/// What every room is built with.
#[derive(Clone)]
pub struct RoomDeps {
    pub db: Db,
    pub settings: Arc<Settings>,
    /// Cluster mode only.
    pub cluster: Option<Arc<dyn Cluster>>,
}

/// Room mailboxes hold this many requests; senders wait beyond it.
pub const ROOM_MAILBOX: usize = 4096;

/// Both room kinds, as the registry and sessions handle them.
pub trait RoomKind: Actor<Context = Context<Self>> {
    type Id: Clone + Eq + Hash + Send + Unpin + 'static;
}

/// Sent by a room when it stops, so that the registry forgets its address
/// (unless a newer room already took the id).
pub struct RoomStopped<R: RoomKind> {
    pub id: R::Id,
    pub addr: Addr<R>,
}

impl<R: RoomKind> Message for RoomStopped<R> {
    type Result = ();
}

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
