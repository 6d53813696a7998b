//! Cluster mode's periodic check: every `check_interval`, one query reads
//! the newest `seq` of every chat open on this node, and each room is told
//! where the database stands ([`Stored`]); a room behind it repairs. This
//! catches what Redis alone cannot: a node that died between its commit
//! and its publish, a subscription gone silent, a lost event with nothing
//! after it. Likewise one query reads the newest version and the access
//! count of every open document ([`DocumentStored`]): a document room
//! behind repairs from the history, and a revocation whose event was lost
//! still evicts. The link asks for the same check at once ([`CatchUp`])
//! when it comes back after an outage, or finds this node was paused.

use actix::dev::ToEnvelope;
use actix::{ActorFutureExt, AsyncContext, Context, Handler, Message, WrapFuture};

use crate::chat::ChatRoom;
use crate::cluster::{DocumentStored, Stored};
use crate::document::DocumentRoom;
use crate::registry::{Hosted, Registry};
use crate::store::{Store, StoreResult};

/// Every open room catches up from the database now.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct CatchUp;

/// One query for a figure of many rooms: `(room, figure)` for those that
/// exist.
type ReadAll<I, V> = fn(&dyn Store, &[I]) -> StoreResult<Vec<(I, V)>>;

impl Registry {
    /// Reads the positions of every open chat and the versions and access
    /// counts of every open document, and tells each room its own.
    pub(super) fn check_positions(&mut self, ctx: &mut Context<Self>) {
        self.tell_open::<ChatRoom, _, _>(ctx, "the positions of open chats", |s, ids| s.chat_positions(ids), Stored);
        self.tell_open::<DocumentRoom, _, _>(
            ctx,
            "the positions of open documents",
            |s, ids| s.document_positions(ids),
            DocumentStored,
        );
    }

    /// Reads one figure of every open room of kind `R` in one query
    /// (`what` names it in the log), and sends each room its own.
    fn tell_open<R, V, M>(&mut self, ctx: &mut Context<Self>, what: &'static str, read: ReadAll<R::Id, V>, tell: fn(V) -> M)
    where
        R: Hosted + Handler<M>,
        R::Context: ToEnvelope<R, M>,
        M: Message<Result = ()> + Send + 'static,
        V: Send + 'static,
    {
        let ids: Vec<R::Id> = R::rooms(self).iter().filter(|(_, addr)| addr.connected()).map(|(id, _)| id.clone()).collect();
        if ids.is_empty() {
            return;
        }
        let found = self.rooms.db.run(move |s| read(s, &ids));
        ctx.spawn(found.into_actor(self).map(move |found, registry, _| match found {
            Ok(found) => {
                for (id, figure) in found {
                    if let Some(room) = R::rooms(registry).get(&id) {
                        // A room whose mailbox is full is busy, not lost:
                        // the next check tells it again.
                        let _ = room.try_send(tell(figure));
                    }
                }
            }
            Err(e) => log::warn!("cluster check: cannot read {what}: {e}"),
        }));
    }
}

impl Handler<CatchUp> for Registry {
    type Result = ();

    fn handle(&mut self, _: CatchUp, ctx: &mut Context<Self>) {
        self.rooms.db.observer().caught_up();
        self.check_positions(ctx);
    }
}
