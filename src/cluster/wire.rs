//! What travels through Redis: the channel names and the payloads.
//!
//! Channels: `huddle:room:<room name>` (one per room, e.g.
//! `huddle:room:chat:general`) for room events, `huddle:cluster` for
//! heartbeats and requests to every node, `huddle:node:<node id>` for
//! answers to one node. Keys: `huddle:heartbeat:<node id>`, the time of
//! the node's last heartbeat, expiring after `node_timeout_ms`.
//!
//! A payload is one header line, `<kind> <number> <origin node>`, then the
//! body: for a chat message the push frame exactly as members receive it
//! (encoded once, by the committing node: a receiving node never
//! re-encodes), for a revocation the user id. Kinds:
//!
//! | kind | number | body | channel |
//! | --- | --- | --- | --- |
//! | `msg` | seq | the `chat:message` push frame | room |
//! | `revoke` | 0 | user id | room |
//! | `hb` | 0 | empty | cluster |
//! | `disconnect` | request id | user id | cluster |
//! | `closed` | request id | connections closed (decimal) | node |

use bytes::Bytes;
use bytestring::ByteString;
use huddle_actors::cluster::RoomEvent;
use huddle_actors::ids::{RoomName, Seq, UserId};

pub const ROOM_PREFIX: &str = "huddle:room:";
pub const CLUSTER_CHANNEL: &str = "huddle:cluster";
pub const NODE_PREFIX: &str = "huddle:node:";
pub const HEARTBEAT_PREFIX: &str = "huddle:heartbeat:";

pub fn room_channel(room: &RoomName) -> String {
    format!("{ROOM_PREFIX}{room}")
}

pub fn node_channel(node: &str) -> String {
    format!("{NODE_PREFIX}{node}")
}

pub fn heartbeat_key(node: &str) -> String {
    format!("{HEARTBEAT_PREFIX}{node}")
}

/// A decoded payload.
#[derive(Debug, PartialEq)]
pub struct Payload<'a> {
    pub kind: &'a str,
    pub number: i64,
    pub origin: &'a str,
    /// Where the body starts in the payload.
    pub body_at: usize,
}

pub fn encode(kind: &str, number: i64, origin: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(kind.len() + origin.len() + body.len() + 24);
    out.extend_from_slice(kind.as_bytes());
    out.push(b' ');
    out.extend_from_slice(number.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(origin.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(body);
    out
}

/// Reads the header; `None` for anything that is not ours.
pub fn decode(payload: &[u8]) -> Option<Payload<'_>> {
    let end = payload.iter().position(|&b| b == b'\n')?;
    let header = std::str::from_utf8(&payload[..end]).ok()?;
    let mut parts = header.splitn(3, ' ');
    let (kind, number, origin) = (parts.next()?, parts.next()?.parse().ok()?, parts.next()?);
    Some(Payload { kind, number, origin, body_at: end + 1 })
}

/// A room event's payload.
pub fn encode_event(event: &RoomEvent, origin: &str) -> Vec<u8> {
    match event {
        RoomEvent::ChatMessage { seq, frame } => encode("msg", seq.0, origin, frame.as_bytes()),
        RoomEvent::Revoked { user } => encode("revoke", 0, origin, user.as_str().as_bytes()),
    }
}

/// The room event in a payload (`bytes`, whose header is `payload`).
pub fn decode_event(payload: &Payload<'_>, bytes: Bytes) -> Option<RoomEvent> {
    let body = bytes.slice(payload.body_at..);
    match payload.kind {
        "msg" => Some(RoomEvent::ChatMessage { seq: Seq(payload.number), frame: ByteString::try_from(body).ok()? }),
        "revoke" => Some(RoomEvent::Revoked { user: UserId::parse(std::str::from_utf8(&body).ok()?).ok()? }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_with_their_frame_untouched() {
        let frame = ByteString::from_static(r#"{"event":"chat:message","room":"chat:g","data":{"message":{"seq":7}}}"#);
        let event = RoomEvent::ChatMessage { seq: Seq(7), frame: frame.clone() };
        let bytes = Bytes::from(encode_event(&event, "node-a"));
        let header = decode(&bytes).unwrap();
        assert_eq!((header.kind, header.number, header.origin), ("msg", 7, "node-a"));
        assert_eq!(decode_event(&header, bytes.clone()), Some(event));

        let revoked = RoomEvent::Revoked { user: UserId::parse("bob smith\n2").unwrap() };
        let bytes = Bytes::from(encode_event(&revoked, "n"));
        assert_eq!(decode_event(&decode(&bytes).unwrap(), bytes.clone()), Some(revoked));

        assert_eq!(decode(b"no newline"), None);
        assert_eq!(decode(b"msg x n\n{}"), None);
    }

    #[test]
    fn room_channels_carry_the_room_name() {
        let room = RoomName::Chat(huddle_actors::ids::ChatId::parse("a:b").unwrap());
        assert_eq!(room_channel(&room), "huddle:room:chat:a:b");
    }
}
