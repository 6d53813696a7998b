//! Publishing: rooms hand their committed events to a bounded queue and go
//! on; one task on the link's thread sends whatever waits as one pipeline
//! (one round trip for many events, in the order they were queued). A full
//! queue or a failed pipeline drops events and counts them: the commit is
//! the truth, and the other nodes' checks read it back.

use huddle_actors::cluster::RoomEvent;
use huddle_actors::ids::RoomName;
use redis::aio::ConnectionManager;
use tokio::sync::mpsc;

use crate::cluster::{wire, Link};

/// Most events in one pipeline: bounds one write's size (events carry
/// whole messages, up to `max_message_chars`).
const PUBLISH_BATCH: usize = 256;

pub enum Outgoing {
    /// A room's event, to its room channel.
    Room { room: RoomName, event: RoomEvent },
    /// A node-level message, already encoded.
    Raw { channel: String, payload: Vec<u8> },
}

pub async fn run(link: Link, mut redis: ConnectionManager, mut queue: mpsc::Receiver<Outgoing>) {
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    while queue.recv_many(&mut batch, PUBLISH_BATCH).await > 0 {
        let mut pipe = redis::pipe();
        let mut events = 0;
        for outgoing in batch.drain(..) {
            let (channel, payload) = match outgoing {
                Outgoing::Room { room, event } => {
                    events += 1;
                    (wire::room_channel(&room), wire::encode_event(&event, link.node()))
                }
                Outgoing::Raw { channel, payload } => (channel, payload),
            };
            pipe.cmd("PUBLISH").arg(channel).arg(payload).ignore();
        }
        match pipe.query_async::<()>(&mut redis).await {
            Ok(()) => link.metrics().published(events),
            Err(e) => {
                link.metrics().publish_failed(events);
                link.trouble(&format!("publishing failed: {e}"));
            }
        }
    }
}

/// Queues a node-level message; dropped (and logged) when the queue is
/// full.
pub fn send_raw(link: &Link, channel: String, payload: Vec<u8>) {
    if link.inner.publisher.try_send(Outgoing::Raw { channel, payload }).is_err() {
        log::warn!("cluster: the publish queue is full; a node message was dropped");
    }
}
