//! Cluster mode: the versions a document room did not commit itself. They
//! come from other nodes (through Redis) or are read back from the history
//! (a gap still open after `gap_wait`, a commit that found the document
//! moved, the periodic check, a join that asks for more than the room let
//! out); [`Ordered`] lets them out in order, and the room takes each into
//! its timeline and pushes it. Without cluster mode none of this runs.

use std::time::Duration;

use actix::{ActorFutureExt, AsyncContext, Context, Handler, WrapFuture};

use super::DocumentRoom;
use crate::cluster::DocumentStored;
use crate::document::order::Ordered;
use crate::model::Change;
use crate::protocol::ErrorCode;

impl DocumentRoom {
    /// Changes read back from the history, into the order (never above the
    /// base of a group in flight: they could be its own, which its outcome
    /// lets out with their acks). Returns how many it did not have.
    pub(super) fn take_rows(&mut self, rows: Vec<Change>) -> usize {
        let upto = self.committing.as_ref().map(|f| f.draft.base_version());
        let Some(ordered) = &mut self.ordered else { return 0 };
        let taken = ordered.offer_rows(rows, upto);
        if taken > 0 {
            self.db.observer().gap_repaired(taken as u64);
        }
        taken
    }

    /// Lets out every version that is next, each into the timeline and to
    /// the members, then looks for a gap to repair.
    pub(super) fn let_out(&mut self, ctx: &mut Context<Self>) {
        self.release_ready(ctx);
        self.schedule_repair(self.settings.gap_wait, ctx);
    }

    fn release_ready(&mut self, ctx: &mut Context<Self>) {
        while let Some(timeline) = &self.timeline {
            let len = timeline.chars();
            let Some(arrived) = self.ordered.as_mut().and_then(Ordered::next) else { return };
            let (change, frame) = arrived.into_change(len);
            let version = change.version;
            if let Err(e) = self.integrate(change, frame) {
                log::error!("document {}: version {} does not apply here ({e}); reloading", self.id, version.0);
                return self.reload(ctx);
            }
        }
    }

    /// After a group's outcome, or anything else that may let the next
    /// group go (the room caught up): joins that waited for the group
    /// first, then the next group.
    pub(super) fn resume(&mut self, ctx: &mut Context<Self>) {
        if self.committing.is_none() {
            if let Some((msg, tx)) = self.ordered.as_mut().and_then(|o| o.joins.pop_front()) {
                return self.join(msg, tx, ctx);
            }
        }
        self.submit(ctx);
    }

    /// Fills the first gap after `wait`, unless a repair is coming already,
    /// nothing is missing, or a group is in flight (its outcome says more:
    /// the missing versions may be its own).
    pub(super) fn schedule_repair(&mut self, wait: Duration, ctx: &mut Context<Self>) {
        let in_flight = self.committing.is_some();
        let Some(ordered) = &mut self.ordered else { return };
        if ordered.repairing || in_flight || ordered.missing().is_none() {
            return;
        }
        ordered.repairing = true;
        ctx.run_later(wait, |room, ctx| room.repair(ctx));
    }

    /// Reads the first gap's changes from the history (on an executor: the
    /// room goes on meanwhile).
    fn repair(&mut self, ctx: &mut Context<Self>) {
        let Some(ordered) = &mut self.ordered else { return };
        let missing = ordered.missing();
        let Some((after, limit)) = missing.filter(|_| self.committing.is_none()) else {
            // Filled meanwhile, or a group went out: its outcome looks again.
            ordered.repairing = false;
            return;
        };
        let id = self.id.clone();
        let read = self.db.run(move |s| s.document_history(&id, None, after, limit));
        ctx.spawn(read.into_actor(self).map(move |page, room, ctx| {
            if let Some(ordered) = &mut room.ordered {
                ordered.repairing = false;
            }
            match page {
                Ok(page) if page.changes.is_empty() && room.committing.is_none() => {
                    // Versions were announced that the history does not
                    // have after `after` (the store was reset): start again
                    // from what it has.
                    log::warn!("document {}: no change after version {} in the history; reloading", room.id, after.0);
                    room.reload(ctx);
                }
                Ok(page) => {
                    let full = page.changes.len() as i64 >= limit;
                    room.take_rows(page.changes);
                    room.release_ready(ctx);
                    // A full read means more of the same gap: read on at once.
                    let wait = if full { Duration::ZERO } else { room.settings.gap_wait };
                    room.schedule_repair(wait, ctx);
                    room.resume(ctx);
                }
                Err(e) if e.code == ErrorCode::NotFound => {
                    // Behind the start of the history (or the store was
                    // reset): start again from what it has.
                    log::warn!("document {}: cannot read the changes after version {}: {e}; reloading", room.id, after.0);
                    room.reload(ctx);
                }
                Err(e) => {
                    log::warn!("document {}: cannot read the changes after version {}: {e}", room.id, after.0);
                    // The edits waiting cannot go before the room has them.
                    for pending in room.waiting.drain(..) {
                        pending.fail(&e);
                    }
                    room.activity_changed(ctx);
                    room.schedule_repair(room.settings.gap_wait, ctx);
                }
            }
        }));
    }
}

impl Handler<DocumentStored> for DocumentRoom {
    type Result = ();

    fn handle(&mut self, DocumentStored(position): DocumentStored, ctx: &mut Context<Self>) {
        if let Some(ordered) = &mut self.ordered {
            ordered.note_stored(position.version);
            self.schedule_repair(self.settings.gap_wait, ctx);
        }
        self.access_stored(position.access, ctx);
    }
}
