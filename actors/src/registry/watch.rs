//! Cluster mode's periodic check: every `check_interval`, one query reads
//! the newest `seq` of every chat open on this node, and each room is told
//! where the database stands ([`Stored`]); a room behind it repairs. This
//! catches what Redis alone cannot: a node that died between its commit
//! and its publish, a subscription gone silent, a lost event with nothing
//! after it. Likewise one query reads the access count of every open
//! document ([`AccessStored`]): a revocation whose event was lost still
//! evicts. The link asks for the same check at once ([`CatchUp`]) when it
//! comes back after an outage, or finds this node was paused.

use actix::{ActorFutureExt, AsyncContext, Context, Handler, Message, WrapFuture};

use crate::cluster::{AccessStored, Stored};
use crate::ids::{ChatId, DocumentId};
use crate::registry::Registry;

/// Every open room catches up from the database now.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct CatchUp;

impl Registry {
    /// Reads the positions of every open chat and tells each room.
    pub(super) fn check_positions(&mut self, ctx: &mut Context<Self>) {
        self.check_access(ctx);
        let ids: Vec<ChatId> = self.chats.iter().filter(|(_, addr)| addr.connected()).map(|(id, _)| id.clone()).collect();
        if ids.is_empty() {
            return;
        }
        let read = self.rooms.db.run(move |s| s.chat_positions(&ids));
        ctx.spawn(read.into_actor(self).map(|positions, registry, _| match positions {
            Ok(positions) => {
                for (id, seq) in positions {
                    if let Some(room) = registry.chats.get(&id) {
                        // A room whose mailbox is full is busy, not lost:
                        // the next check tells it again.
                        let _ = room.try_send(Stored(seq));
                    }
                }
            }
            Err(e) => log::warn!("cluster check: cannot read the positions of open chats: {e}"),
        }));
    }
}

impl Registry {
    /// Reads the access counts of every open document and tells each room.
    fn check_access(&mut self, ctx: &mut Context<Self>) {
        let ids: Vec<DocumentId> =
            self.documents.iter().filter(|(_, addr)| addr.connected()).map(|(id, _)| id.clone()).collect();
        if ids.is_empty() {
            return;
        }
        let read = self.rooms.db.run(move |s| s.document_access_versions(&ids));
        ctx.spawn(read.into_actor(self).map(|versions, registry, _| match versions {
            Ok(versions) => {
                for (id, version) in versions {
                    if let Some(room) = registry.documents.get(&id) {
                        // Busy: the next check tells it again.
                        let _ = room.try_send(AccessStored(version));
                    }
                }
            }
            Err(e) => log::warn!("cluster check: cannot read the access counts of open documents: {e}"),
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
