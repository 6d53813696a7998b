//! Everything Redis pushes to this node arrives here (on the link's
//! thread, from the connection's reader): a room's event goes to that
//! room's actor, node-level messages to [`node`], and the news that the
//! connection dropped to the subscriptions task. Nothing here waits: a
//! room whose mailbox is full misses the event (counted), which its gap
//! repair reads back (a chat message, a document version), or a fresh read
//! of the room's presence replaces (a change of presence).

use bytes::Bytes;
use huddle_actors::cluster::{Remote, RoomEvent};
use redis::{PushInfo, PushKind, Value};

use crate::cluster::publisher::{Outgoing, SnapshotTo};
use crate::cluster::{node, wire, Link};

pub fn route(link: &Link, push: PushInfo) {
    match push.kind {
        PushKind::Disconnection => link.trouble("Redis closed the connection"),
        PushKind::Message => {
            let mut data = push.data.into_iter();
            let (Some(Value::BulkString(channel)), Some(Value::BulkString(payload))) = (data.next(), data.next()) else {
                return;
            };
            let (Ok(channel), bytes) = (String::from_utf8(channel), Bytes::from(payload)) else { return };
            let Some(header) = wire::decode(&bytes) else {
                log::debug!("cluster: a message on {channel} that is not ours; ignored");
                return;
            };
            if header.origin == link.node() {
                // Our own, already delivered here when it was committed.
                return;
            }
            if channel.starts_with(wire::ROOM_PREFIX) {
                let Some(inbox) = link.inner.subscriptions.inbox(&channel) else { return };
                let Some(event) = wire::decode_event(&header, bytes.clone()) else { return };
                let presence =
                    !matches!(event, RoomEvent::ChatMessage { .. } | RoomEvent::DocumentVersion(_) | RoomEvent::Awareness { .. });
                if inbox.try_send(Remote(event)).is_err() {
                    link.metrics().remote_dropped();
                    // A lost chat message or document version is read back
                    // by gap repair; a lost change of presence by reading
                    // the whole again.
                    if let (true, Some(room)) = (presence, wire::channel_room(&channel)) {
                        let to = SnapshotTo { waiter: None, inbox };
                        let _ = link.inner.publisher.try_send(Outgoing::Snapshot { room, to });
                    }
                }
            } else if header.kind == "aware" {
                // An answer to this node's `want`: about the room its
                // frame names.
                let Some(channel) = wire::awareness_channel(&bytes[header.body_at..]) else { return };
                let Some(inbox) = link.inner.subscriptions.inbox(&channel) else { return };
                let Some(event) = wire::decode_event(&header, bytes.clone()) else { return };
                if inbox.try_send(Remote(event)).is_err() {
                    link.metrics().remote_dropped();
                }
            } else {
                node::incoming(link, &header, &bytes[header.body_at..]);
            }
        }
        _ => {}
    }
}
