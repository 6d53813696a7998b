//! A chat room's order across nodes (cluster mode): its subscription, the
//! [`Reorder`] buffer that merges its own commits, other nodes' events and
//! rows read back from the database, and the bookkeeping of gap repairs.
//! The room lets out what [`Ordered::next`] gives, as "acks, then push".

use std::sync::Arc;

use bytestring::ByteString;

use crate::cluster::reorder::{Refused, Reorder, REPAIR_CHUNK};
use crate::cluster::{Cluster, RoomEvent, Subscription};
use crate::ids::{RoomName, Seq};
use crate::model::Message;
use crate::peer::Requester;
use crate::protocol::frames::OneMessage;

/// One position waiting to be let out.
pub struct Slot {
    /// The push every member receives.
    pub frame: ByteString,
    /// This node's requests answered by it (the message's author, and
    /// idempotent retries of it), acked before the push.
    pub acks: Vec<(Requester, Message)>,
}

impl Slot {
    pub fn push(frame: ByteString) -> Slot {
        Slot { frame, acks: Vec::new() }
    }

    /// Acks every request waiting on this position.
    pub fn ack(&mut self) {
        for (req, message) in self.acks.drain(..) {
            req.ack(OneMessage { message: &message });
        }
    }
}

pub struct Ordered {
    pub cluster: Arc<dyn Cluster>,
    /// Held while the room runs; `None` until the room subscribed.
    pub subscription: Option<Subscription>,
    order: Reorder<Slot>,
    /// A repair is scheduled or reading: never two at once.
    pub repairing: bool,
}

impl Ordered {
    pub fn new(cluster: Arc<dyn Cluster>) -> Ordered {
        Ordered { cluster, subscription: None, order: Reorder::new(0), repairing: false }
    }

    /// Starts the order after `released`, what the database held once the
    /// room was subscribed.
    pub fn start(&mut self, released: Seq) {
        self.order = Reorder::new(released.0);
    }

    pub fn released(&self) -> Seq {
        Seq(self.order.released())
    }

    /// Publishes this node's commit to the other nodes.
    pub fn publish(&self, room: &RoomName, seq: Seq, frame: ByteString) {
        self.cluster.publish(room, RoomEvent::ChatMessage { seq, frame });
    }

    /// Takes what is known of position `seq`. A copy of a position that
    /// waits already adds its acks to it; a copy of one already let out
    /// has its acks sent now (the answer to a retried idempotent send,
    /// whose original went out long ago; a repair never lets out a
    /// position of this room's own writes in flight, see
    /// `ChatRoom::repaired`).
    pub fn offer(&mut self, seq: Seq, slot: Slot) {
        match self.order.offer(seq.0, slot) {
            Ok(()) => {}
            Err(Refused::Released(mut late)) => late.ack(),
            Err(Refused::Waiting(copy)) => {
                if let Some(waiting) = self.order.waiting_mut(seq.0) {
                    waiting.acks.extend(copy.acks);
                }
            }
        }
    }

    /// The next position to let out, if it is here.
    pub fn next(&mut self) -> Option<(Seq, Slot)> {
        self.order.pop_next().map(|(pos, slot)| (Seq(pos), slot))
    }

    /// The database holds positions up to `seq`.
    pub fn note_stored(&mut self, seq: Seq) {
        self.order.note_known(seq.0);
    }

    /// The messages a repair should read: `(after, limit)`, or `None` when
    /// nothing is missing.
    pub fn missing(&self) -> Option<(Seq, i64)> {
        let gap = self.order.gap()?;
        Some((Seq(gap.start() - 1), (gap.end() - gap.start() + 1).min(REPAIR_CHUNK)))
    }

    /// The database has nothing after `after` although positions up to the
    /// gap's end were announced (its rows are gone: a store reset). Lets
    /// out what waits beyond instead of waiting forever.
    pub fn give_up_gap(&mut self) -> i64 {
        match self.order.gap() {
            Some(gap) => self.order.skip_to(*gap.end()),
            None => 0,
        }
    }
}
