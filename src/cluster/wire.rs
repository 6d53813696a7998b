//! What travels through Redis: the channel names, the keys, and the
//! payloads.
//!
//! Channels: `huddle:room:<room name>` (one per room, e.g.
//! `huddle:room:chat:general`) for room events, `huddle:cluster` for
//! heartbeats and requests to every node, `huddle:node:<node id>` for
//! answers and requests to one node.
//!
//! Keys (the shared store; see [`super::presence`] for how they are kept):
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `huddle:heartbeat:<node>` | string, expires after `node_timeout_ms` | the node's incarnation; present while it is alive |
//! | `huddle:nodes` | hash node → incarnation | nodes that published their state since Redis started |
//! | `huddle:presence:<room>:<node>` | hash user → `<connections>[ <name>]` | the node's users in the room; field `""`: the sequence number of its last change |
//! | `huddle:rooms:<node>` | set | rooms where the node has users (to clean up after it) |
//! | `huddle:conns:<node>` | hash user → connections | the node's connections per user (`max_connections_per_user`) |
//!
//! A payload is one header line, `<kind> <number> <origin node>`, then the
//! body: for a chat message the push frame exactly as members receive it
//! (encoded once, by the committing node: a receiving node never
//! re-encodes), for a document version a line of what its push leaves out
//! then the push frame, for a revocation the user id, for presence a small
//! JSON object. Kinds:
//!
//! | kind | number | body | channel |
//! | --- | --- | --- | --- |
//! | `msg` | seq | the `chat:message` push frame | room |
//! | `doc` | version | `{"t": created_at (ms), "o": op_id?}`, a newline, the `documents:op` or `documents:updated` push frame | room |
//! | `revoke` | 0 | user id | room |
//! | `user` | incarnation | `{"s": seq, "u": user, "c": connections, "n": name?}`: one user's connections on the node | room |
//! | `all` | incarnation | `{"s": seq, "users": [{"u", "c", "n"?}]}`: the node's whole presence in the room | room |
//! | `aware` | incarnation | the `awareness` push frame | room, or node (an answer to `want`) |
//! | `want` | 0 | empty: "this room just opened here; what are your awareness states?" | room |
//! | `hb` | incarnation | empty | cluster |
//! | `disconnect` | request id | user id | cluster |
//! | `closed` | request id | connections closed (decimal) | node |
//! | `republish` | 0 | empty: "I thought you dead; say again what you have" | node |

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;
use bytestring::ByteString;
use huddle_actors::awareness::Update;
use huddle_actors::cluster::{DocumentVersion, RoomEvent};
use huddle_actors::ids::{NodeId, RoomName, Seq, SessionId, UserId, Version};
use huddle_actors::model::Timestamp;
use huddle_actors::presence::remote::{NodePresence, NodeUser, Stamp};
use huddle_actors::protocol::AwarenessState;
use serde::{Deserialize, Serialize};

pub const ROOM_PREFIX: &str = "huddle:room:";
pub const CLUSTER_CHANNEL: &str = "huddle:cluster";
pub const NODE_PREFIX: &str = "huddle:node:";
pub const HEARTBEAT_PREFIX: &str = "huddle:heartbeat:";
pub const NODES_KEY: &str = "huddle:nodes";
pub const PRESENCE_PREFIX: &str = "huddle:presence:";
pub const ROOMS_PREFIX: &str = "huddle:rooms:";
pub const CONNS_PREFIX: &str = "huddle:conns:";

pub fn room_channel(room: &RoomName) -> String {
    format!("{ROOM_PREFIX}{room}")
}

/// The room a room channel belongs to.
pub fn channel_room(channel: &str) -> Option<RoomName> {
    RoomName::parse(channel.strip_prefix(ROOM_PREFIX)?).ok()
}

pub fn node_channel(node: &str) -> String {
    format!("{NODE_PREFIX}{node}")
}

pub fn heartbeat_key(node: &str) -> String {
    format!("{HEARTBEAT_PREFIX}{node}")
}

pub fn presence_key(room: &RoomName, node: &str) -> String {
    format!("{PRESENCE_PREFIX}{room}:{node}")
}

pub fn rooms_key(node: &str) -> String {
    format!("{ROOMS_PREFIX}{node}")
}

pub fn conns_key(node: &str) -> String {
    format!("{CONNS_PREFIX}{node}")
}

/// A user's value in a presence hash: `<connections>` or
/// `<connections> <name>`.
pub fn presence_value(connections: u32, name: Option<&str>) -> String {
    match name {
        Some(name) => format!("{connections} {name}"),
        None => connections.to_string(),
    }
}

/// Reads a presence hash entry back; `None` for a malformed one.
pub fn parse_presence_entry(user: &str, value: &str) -> Option<NodeUser> {
    let (count, name) = match value.split_once(' ') {
        Some((count, name)) => (count, Some(Arc::from(name))),
        None => (value, None),
    };
    Some(NodeUser { user: UserId::parse(user).ok()?, connections: count.parse().ok()?, name })
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
    encode_parts(kind, number, origin, &[body])
}

/// [`encode`] with a body in several parts (written one after the other).
fn encode_parts(kind: &str, number: i64, origin: &str, body: &[&[u8]]) -> Vec<u8> {
    let len: usize = body.iter().map(|part| part.len()).sum();
    let mut out = Vec::with_capacity(kind.len() + origin.len() + len + 24);
    out.extend_from_slice(kind.as_bytes());
    out.push(b' ');
    out.extend_from_slice(number.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(origin.as_bytes());
    out.push(b'\n');
    for part in body {
        out.extend_from_slice(part);
    }
    out
}

/// What a document version's push leaves out.
#[derive(Serialize, Deserialize)]
struct VersionMeta<'a> {
    t: i64,
    #[serde(skip_serializing_if = "Option::is_none", borrow)]
    o: Option<Cow<'a, str>>,
}

/// Reads the header; `None` for anything that is not ours.
pub fn decode(payload: &[u8]) -> Option<Payload<'_>> {
    let end = payload.iter().position(|&b| b == b'\n')?;
    let header = std::str::from_utf8(&payload[..end]).ok()?;
    let mut parts = header.splitn(3, ' ');
    let (kind, number, origin) = (parts.next()?, parts.next()?.parse().ok()?, parts.next()?);
    Some(Payload { kind, number, origin, body_at: end + 1 })
}

/// A room event's payload (chat messages, document versions and
/// revocations; presence and awareness have their own encoders below).
pub fn encode_event(event: &RoomEvent, origin: &str) -> Option<Vec<u8>> {
    match event {
        RoomEvent::ChatMessage { seq, frame } => Some(encode("msg", seq.0, origin, frame.as_bytes())),
        RoomEvent::DocumentVersion(v) => {
            let meta = VersionMeta { t: v.created_at.0, o: v.op_id.as_deref().map(Cow::from) };
            let meta = serde_json::to_vec(&meta).ok()?;
            Some(encode_parts("doc", v.version.0, origin, &[&meta, b"\n", v.frame.as_bytes()]))
        }
        RoomEvent::Revoked { user } => Some(encode("revoke", 0, origin, user.as_str().as_bytes())),
        RoomEvent::Contended => Some(encode("contend", 0, origin, b"")),
        _ => None,
    }
}

/// One user on the wire (ids and names may hold anything but NUL, so
/// they are not always borrowable from the JSON text).
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct WireUser<'a> {
    #[serde(borrow)]
    u: Cow<'a, str>,
    c: u32,
    #[serde(skip_serializing_if = "Option::is_none", borrow)]
    n: Option<Cow<'a, str>>,
}

impl WireUser<'_> {
    fn into_user(self) -> Option<NodeUser> {
        Some(NodeUser { user: UserId::parse(&self.u).ok()?, connections: self.c, name: self.n.as_deref().map(Arc::from) })
    }
}

#[derive(Serialize, Deserialize)]
struct UserBody<'a> {
    s: u64,
    #[serde(borrow)]
    u: Cow<'a, str>,
    c: u32,
    #[serde(skip_serializing_if = "Option::is_none", borrow)]
    n: Option<Cow<'a, str>>,
}

#[derive(Serialize, Deserialize)]
struct AllBody<'a> {
    s: u64,
    #[serde(borrow)]
    users: Vec<WireUser<'a>>,
}

/// `user` has `connections` on `origin` (at `stamp`).
pub fn encode_user(origin: &str, stamp: Stamp, user: &UserId, connections: u32, name: Option<&str>) -> Vec<u8> {
    let body = UserBody { s: stamp.seq, u: user.as_str().into(), c: connections, n: name.map(Cow::from) };
    encode("user", stamp.incarnation as i64, origin, &serde_json::to_vec(&body).unwrap_or_default())
}

/// `origin`'s whole presence in a room.
pub fn encode_all<'a>(origin: &str, stamp: Stamp, users: impl Iterator<Item = (&'a UserId, u32, Option<&'a str>)>) -> Vec<u8> {
    let users = users.map(|(u, c, n)| WireUser { u: u.as_str().into(), c, n: n.map(Cow::from) }).collect();
    let body = AllBody { s: stamp.seq, users };
    encode("all", stamp.incarnation as i64, origin, &serde_json::to_vec(&body).unwrap_or_default())
}

/// An awareness push of a connection on `origin`.
pub fn encode_awareness(origin: &str, incarnation: u64, frame: &ByteString) -> Vec<u8> {
    encode("aware", incarnation as i64, origin, frame.as_bytes())
}

/// The `data` of an `awareness` push, as another node encoded it.
#[derive(Deserialize)]
struct AwarenessFrame<'a> {
    #[serde(borrow)]
    room: Cow<'a, str>,
    #[serde(borrow)]
    data: AwarenessData<'a>,
}

/// The room channel an `awareness` frame sent to this node alone is about.
pub fn awareness_channel(frame: &[u8]) -> Option<String> {
    let frame: AwarenessFrame<'_> = serde_json::from_slice(frame).ok()?;
    Some(room_channel(&RoomName::parse(&frame.room).ok()?))
}

#[derive(Deserialize)]
struct AwarenessData<'a> {
    #[serde(borrow)]
    session_id: Cow<'a, str>,
    #[serde(borrow)]
    user_id: Cow<'a, str>,
    state: Option<Box<serde_json::value::RawValue>>,
}

/// The room event in a payload (`bytes`, whose header is `payload`).
/// `None` for a malformed one (another node is trusted, but a bad payload
/// is dropped, never a reason to fail).
pub fn decode_event(payload: &Payload<'_>, bytes: Bytes) -> Option<RoomEvent> {
    let body = bytes.slice(payload.body_at..);
    let stamp = |seq| Stamp { incarnation: u64::try_from(payload.number).unwrap_or(0), seq };
    let node = || NodeId::parse(payload.origin).ok();
    match payload.kind {
        "msg" => Some(RoomEvent::ChatMessage { seq: Seq(payload.number), frame: ByteString::try_from(body).ok()? }),
        "doc" => {
            let end = body.iter().position(|&b| b == b'\n')?;
            let meta: VersionMeta<'_> = serde_json::from_slice(&body[..end]).ok()?;
            let (created_at, op_id) = (Timestamp(meta.t), meta.o.map(Cow::into_owned));
            let frame = ByteString::try_from(body.slice(end + 1..)).ok()?;
            Some(RoomEvent::DocumentVersion(DocumentVersion { version: Version(payload.number), created_at, op_id, frame }))
        }
        "revoke" => Some(RoomEvent::Revoked { user: UserId::parse(std::str::from_utf8(&body).ok()?).ok()? }),
        "contend" => Some(RoomEvent::Contended),
        "user" => {
            let b: UserBody<'_> = serde_json::from_slice(&body).ok()?;
            let user = WireUser { u: b.u, c: b.c, n: b.n }.into_user()?;
            Some(RoomEvent::UserPresence { node: node()?, stamp: stamp(b.s), user })
        }
        "all" => {
            let b: AllBody<'_> = serde_json::from_slice(&body).ok()?;
            let users = b.users.into_iter().map(WireUser::into_user).collect::<Option<Vec<_>>>()?;
            Some(RoomEvent::Presence(vec![NodePresence { node: node()?, stamp: stamp(b.s), users }]))
        }
        "aware" => {
            let frame: AwarenessFrame<'_> = serde_json::from_slice(&body).ok()?;
            let d = frame.data;
            let state = d.state.map(AwarenessState::from_trusted);
            let update =
                Update { session_id: SessionId::parse(&d.session_id).ok()?, user_id: UserId::parse(&d.user_id).ok()?, state };
            Some(RoomEvent::Awareness { node: node()?, stamp: stamp(0), update, frame: ByteString::try_from(body).ok()? })
        }
        "want" => Some(RoomEvent::AwarenessWanted { node: node()? }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(payload: Vec<u8>) -> Option<RoomEvent> {
        let bytes = Bytes::from(payload);
        decode_event(&decode(&bytes).unwrap(), bytes.clone())
    }

    #[test]
    fn events_round_trip_with_their_frame_untouched() {
        let frame = ByteString::from_static(r#"{"event":"chat:message","room":"chat:g","data":{"message":{"seq":7}}}"#);
        let event = RoomEvent::ChatMessage { seq: Seq(7), frame: frame.clone() };
        let bytes = Bytes::from(encode_event(&event, "node-a").unwrap());
        let header = decode(&bytes).unwrap();
        assert_eq!((header.kind, header.number, header.origin), ("msg", 7, "node-a"));
        assert_eq!(decode_event(&header, bytes.clone()), Some(event));

        let frame = ByteString::from_static(r#"{"event":"documents:op","room":"document:d","data":{"version":3}}"#);
        let op_id = Some("op \"1\"\n".to_owned());
        let version = RoomEvent::DocumentVersion(DocumentVersion { version: Version(3), created_at: Timestamp(9), op_id, frame });
        assert_eq!(roundtrip(encode_event(&version, "n").unwrap()), Some(version));
        let frame = ByteString::from_static(r#"{"event":"documents:updated"}"#);
        let version = RoomEvent::DocumentVersion(DocumentVersion { version: Version(4), created_at: Timestamp(9), op_id: None, frame });
        assert_eq!(roundtrip(encode_event(&version, "n").unwrap()), Some(version));

        let revoked = RoomEvent::Revoked { user: UserId::parse("bob smith\n2").unwrap() };
        assert_eq!(roundtrip(encode_event(&revoked, "n").unwrap()), Some(revoked));
        assert_eq!(roundtrip(encode_event(&RoomEvent::Contended, "n").unwrap()), Some(RoomEvent::Contended));

        assert_eq!(decode(b"no newline"), None);
        assert_eq!(decode(b"msg x n\n{}"), None);
    }

    #[test]
    fn presence_round_trips_with_odd_user_ids_and_names() {
        let (node, stamp) = (NodeId::parse("n1").unwrap(), Stamp { incarnation: 1_700_000_000_123, seq: 42 });
        let bob = UserId::parse("bob \"the\" builder\n").unwrap();
        let event = roundtrip(encode_user("n1", stamp, &bob, 2, Some("Bob B"))).unwrap();
        let user = NodeUser { user: bob.clone(), connections: 2, name: Some("Bob B".into()) };
        assert_eq!(event, RoomEvent::UserPresence { node: node.clone(), stamp, user: user.clone() });

        let carol = UserId::parse("carol").unwrap();
        let all = [(&bob, 2, Some("Bob B")), (&carol, 1, None)];
        let event = roundtrip(encode_all("n1", stamp, all.into_iter())).unwrap();
        let carol_user = NodeUser { user: carol, connections: 1, name: None };
        assert_eq!(event, RoomEvent::Presence(vec![NodePresence { node, stamp, users: vec![user, carol_user] }]));
    }

    #[test]
    fn awareness_frames_are_forwarded_as_they_are() {
        let frame = ByteString::from_static(
            r#"{"event":"awareness","room":"chat:g","data":{"session_id":"0123456789abcdef0123456789abcdef","user_id":"bob","state":{"x":1}}}"#,
        );
        let Some(RoomEvent::Awareness { node, stamp, update, frame: got }) = roundtrip(encode_awareness("n2", 9, &frame)) else {
            panic!("not awareness")
        };
        assert_eq!((node.as_str(), stamp.incarnation), ("n2", 9));
        assert_eq!(got, frame);
        assert_eq!(update.user_id.as_str(), "bob");
        assert_eq!(update.state.map(|s| s.json().to_owned()), Some(r#"{"x":1}"#.to_owned()));
        let cleared = ByteString::from_static(
            r#"{"event":"awareness","room":"chat:g","data":{"session_id":"0123456789abcdef0123456789abcdef","user_id":"bob","state":null}}"#,
        );
        let Some(RoomEvent::Awareness { update, .. }) = roundtrip(encode_awareness("n2", 9, &cleared)) else { panic!() };
        assert_eq!(update.state, None);
        assert_eq!(awareness_channel(cleared.as_bytes()).as_deref(), Some("huddle:room:chat:g"));
        let wanted = roundtrip(encode("want", 0, "n3", b""));
        assert_eq!(wanted, Some(RoomEvent::AwarenessWanted { node: NodeId::parse("n3").unwrap() }));
    }

    #[test]
    fn names_of_channels_and_keys() {
        let room = RoomName::Chat(huddle_actors::ids::ChatId::parse("a:b").unwrap());
        assert_eq!(room_channel(&room), "huddle:room:chat:a:b");
        assert_eq!(channel_room("huddle:room:chat:a:b"), Some(room.clone()));
        assert_eq!(presence_key(&room, "n1"), "huddle:presence:chat:a:b:n1");
        assert_eq!(parse_presence_entry("bob", "3 Bob the Builder").unwrap().name.as_deref(), Some("Bob the Builder"));
        assert_eq!(parse_presence_entry("bob", "3").unwrap().connections, 3);
        assert!(parse_presence_entry("bob", "x").is_none());
    }
}
