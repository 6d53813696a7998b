//! Presence in the shared store: what this node keeps there (its users per
//! room, its connections per user), how it republishes all of it, how a
//! room reads every node's presence when it starts, how the per-user limit
//! is counted over every node, and how a dead node's part is removed.
//! The keys are listed in [`super::wire`].
//!
//! The [`Mirror`] holds this node's part in memory, as the rooms and the
//! registry last told it: every write to Redis is made from it when the
//! publisher gets to it (so a burst of changes of one user costs the last
//! one only), and after the link came back, or when this node finds its
//! part gone (Redis restarted, or the others took it for dead), the whole
//! mirror is written again under a new incarnation ([`republish`]).
//!
//! Every multi-key step that others could see half done is one Lua script
//! or one MULTI: Redis runs each alone, so a node judged dead is either
//! cleaned before it republishes or not at all.
//!
//! What happens while Redis is unreachable: rooms keep their last view of
//! the other nodes, changes here wait in the mirror, and a connection is
//! admitted on this node's own count alone (`max_connections_per_user`
//! then holds per node, not for the cluster: availability over a strict
//! cap). Everything is written again when the link is back.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use huddle_actors::ids::{NodeId, RoomName, UserId};
use huddle_actors::presence::remote::{NodePresence, Stamp};
use redis::{Pipeline, Value};

use crate::cluster::wire::{self, CONNS_PREFIX, HEARTBEAT_PREFIX, NODES_KEY, PRESENCE_PREFIX, ROOMS_PREFIX};

/// A user's connections on this node in a room, and its name.
type Here = (u32, Option<Arc<str>>);

/// This node's presence, as written (or to be written) to the shared store.
#[derive(Default)]
pub struct Mirror {
    /// Room → user → its connections here. A room whose users all left
    /// stays (empty) until the store was told.
    rooms: HashMap<RoomName, HashMap<UserId, Here>>,
    /// User → connections on this node.
    users: HashMap<UserId, u32>,
}

impl Mirror {
    pub fn set_presence(&mut self, room: &RoomName, user: &UserId, connections: u32, name: Option<&Arc<str>>) {
        let users = self.rooms.entry(room.clone()).or_default();
        if connections == 0 {
            users.remove(user);
            return;
        }
        let entry = users.entry(user.clone()).or_insert((0, None));
        entry.0 = connections;
        if name.is_some() {
            entry.1 = name.cloned();
        }
    }

    fn presence(&self, room: &RoomName, user: &UserId) -> Here {
        self.rooms.get(room).and_then(|r| r.get(user)).cloned().unwrap_or((0, None))
    }

    /// Forgets a room with no users here once the store knows it.
    pub fn settled(&mut self, room: &RoomName) {
        if self.rooms.get(room).is_some_and(HashMap::is_empty) {
            self.rooms.remove(room);
        }
    }

    pub fn set_connections(&mut self, user: &UserId, connections: u32) {
        if connections == 0 {
            self.users.remove(user);
        } else {
            self.users.insert(user.clone(), connections);
        }
    }

    pub fn connections(&self, user: &UserId) -> u32 {
        self.users.get(user).copied().unwrap_or(0)
    }
}

/// A node's key names inside Lua: `prefix .. node`.
fn lua(text: &str) -> String {
    text.replace("{HEARTBEAT}", HEARTBEAT_PREFIX)
        .replace("{NODES}", NODES_KEY)
        .replace("{PRESENCE}", PRESENCE_PREFIX)
        .replace("{ROOMS}", ROOMS_PREFIX)
        .replace("{CONNS}", CONNS_PREFIX)
}

/// May a user have ARGV[3] connections on node ARGV[1]? Adds the user's
/// connections on every other live node that published its state, and
/// if the sum is within the limit (ARGV[4]), records this node's count.
/// Answers 1 (admitted) or 0.
static ADMIT: LazyLock<String> = LazyLock::new(|| {
    lua(r#"
local total = tonumber(ARGV[3])
for _, node in ipairs(redis.call('HKEYS', '{NODES}')) do
  if node ~= ARGV[1] and redis.call('EXISTS', '{HEARTBEAT}' .. node) == 1 then
    total = total + tonumber(redis.call('HGET', '{CONNS}' .. node, ARGV[2]) or '0')
  end
end
if total > tonumber(ARGV[4]) then return 0 end
redis.call('HSET', '{CONNS}' .. ARGV[1], ARGV[2], ARGV[3])
return 1
"#)
});

/// Every live node's presence in room ARGV[1] but node ARGV[2]'s:
/// `{node, incarnation, {user, value, ...}}` for each node that published
/// its state and whose heartbeat has not expired.
static SNAPSHOT: LazyLock<String> = LazyLock::new(|| {
    lua(r#"
local out = {}
local nodes = redis.call('HGETALL', '{NODES}')
for i = 1, #nodes, 2 do
  local node = nodes[i]
  if node ~= ARGV[2] and redis.call('EXISTS', '{HEARTBEAT}' .. node) == 1 then
    table.insert(out, {node, nodes[i + 1], redis.call('HGETALL', '{PRESENCE}' .. ARGV[1] .. ':' .. node)})
  end
end
return out
"#)
});

/// Removes the part of every node but ARGV[1] whose heartbeat expired:
/// its presence in every room, its connection counts, its entry in the
/// node list. Answers `{node, incarnation, ...}` of the nodes removed. A
/// node that came back has its heartbeat set first, and is left alone.
static SWEEP: LazyLock<String> = LazyLock::new(|| {
    lua(r#"
local out = {}
local nodes = redis.call('HGETALL', '{NODES}')
for i = 1, #nodes, 2 do
  local node = nodes[i]
  if node ~= ARGV[1] and redis.call('EXISTS', '{HEARTBEAT}' .. node) == 0 then
    for _, room in ipairs(redis.call('SMEMBERS', '{ROOMS}' .. node)) do
      redis.call('DEL', '{PRESENCE}' .. room .. ':' .. node)
    end
    redis.call('DEL', '{ROOMS}' .. node, '{CONNS}' .. node)
    redis.call('HDEL', '{NODES}', node)
    table.insert(out, node)
    table.insert(out, nodes[i + 1])
  end
end
return out
"#)
});

/// Node ARGV[1]'s heartbeat (incarnation ARGV[2], expiring after ARGV[3]
/// ms). Answers 1 while the store still holds the node's part under that
/// incarnation, 0 when it must republish (Redis lost it, or another node
/// removed it as dead).
static HEARTBEAT: LazyLock<String> = LazyLock::new(|| {
    lua(r#"
redis.call('SET', '{HEARTBEAT}' .. ARGV[1], ARGV[2], 'PX', ARGV[3])
if redis.call('HGET', '{NODES}', ARGV[1]) == ARGV[2] then return 1 end
return 0
"#)
});

/// Removes node ARGV[1]'s presence from every room and its connection
/// counts (the start of a republish).
static CLEAR: LazyLock<String> = LazyLock::new(|| {
    lua(r#"
for _, room in ipairs(redis.call('SMEMBERS', '{ROOMS}' .. ARGV[1])) do
  redis.call('DEL', '{PRESENCE}' .. room .. ':' .. ARGV[1])
end
redis.call('DEL', '{ROOMS}' .. ARGV[1], '{CONNS}' .. ARGV[1])
return 1
"#)
});

fn eval<'a>(pipe: &'a mut Pipeline, script: &str) -> &'a mut Pipeline {
    pipe.cmd("EVAL").arg(script).arg(0)
}

/// Adds the admission of `user` with `connections` here (its answer is
/// the pipeline's next value).
pub fn admit(pipe: &mut Pipeline, me: &str, user: &UserId, connections: usize, limit: usize) {
    eval(pipe, &ADMIT).arg(me).arg(user.as_str()).arg(connections).arg(limit);
}

/// Adds the read of every other node's presence in `room` (answered as
/// the pipeline's next value, see [`parse_snapshot`]).
pub fn snapshot(pipe: &mut Pipeline, me: &str, room: &RoomName) {
    eval(pipe, &SNAPSHOT).arg(room.to_string()).arg(me);
}

/// Adds the sweep of dead nodes' parts (answered as the next value).
pub fn sweep(pipe: &mut Pipeline, me: &str) {
    eval(pipe, &SWEEP).arg(me);
}

/// Adds this node's heartbeat (answered as the next value: 0 means
/// republish).
pub fn heartbeat(pipe: &mut Pipeline, me: &str, incarnation: u64, ttl_ms: u64) {
    eval(pipe, &HEARTBEAT).arg(me).arg(incarnation).arg(ttl_ms);
}

/// Adds the write of `user`'s connections here in `room`, as the mirror
/// has them now, and its announcement to the other nodes (nothing to
/// read back). Returns whether the room has no users here any more.
pub fn user_changed(pipe: &mut Pipeline, mirror: &Mirror, me: &str, stamp: Stamp, room: &RoomName, user: &UserId) -> bool {
    let (connections, name) = mirror.presence(room, user);
    let key = wire::presence_key(room, me);
    let empty = mirror.rooms.get(room).is_none_or(HashMap::is_empty);
    if empty {
        pipe.cmd("DEL").arg(&key).ignore();
        pipe.cmd("SREM").arg(wire::rooms_key(me)).arg(room.to_string()).ignore();
    } else {
        if connections == 0 {
            pipe.cmd("HDEL").arg(&key).arg(user.as_str()).ignore();
        } else {
            pipe.cmd("HSET").arg(&key).arg(user.as_str()).arg(wire::presence_value(connections, name.as_deref())).ignore();
        }
        pipe.cmd("HSET").arg(&key).arg("").arg(stamp.seq).ignore();
        pipe.cmd("SADD").arg(wire::rooms_key(me)).arg(room.to_string()).ignore();
    }
    let payload = wire::encode_user(me, stamp, user, connections, name.as_deref());
    pipe.cmd("PUBLISH").arg(wire::room_channel(room)).arg(payload).ignore();
    empty
}

/// Adds the write of `user`'s connection count here.
pub fn connections_changed(pipe: &mut Pipeline, mirror: &Mirror, me: &str, user: &UserId) {
    match mirror.connections(user) {
        0 => pipe.cmd("HDEL").arg(wire::conns_key(me)).arg(user.as_str()).ignore(),
        n => pipe.cmd("HSET").arg(wire::conns_key(me)).arg(user.as_str()).arg(n).ignore(),
    };
}

/// This node's whole part, written again under `incarnation` as one
/// transaction (nobody sees it half written, and a sweep runs before or
/// after it, never during): the heartbeat first, then presence in every
/// room with users here, connection counts, and to every room it has (or
/// just had) users in, its whole presence there. `next_seq` numbers the
/// rooms' states. Rooms left empty are forgotten from the mirror.
pub fn republish(mirror: &mut Mirror, me: &str, incarnation: u64, ttl_ms: u64, mut next_seq: impl FnMut() -> u64) -> Pipeline {
    let mut pipe = redis::pipe();
    pipe.atomic();
    pipe.cmd("SET").arg(wire::heartbeat_key(me)).arg(incarnation).arg("PX").arg(ttl_ms).ignore();
    pipe.cmd("HSET").arg(NODES_KEY).arg(me).arg(incarnation).ignore();
    eval(&mut pipe, &CLEAR).arg(me).ignore();
    if !mirror.users.is_empty() {
        let conns = pipe.cmd("HSET").arg(wire::conns_key(me));
        for (user, n) in &mirror.users {
            conns.arg(user.as_str()).arg(*n);
        }
        conns.ignore();
    }
    for (room, users) in &mirror.rooms {
        let stamp = Stamp { incarnation, seq: next_seq() };
        if !users.is_empty() {
            let key = wire::presence_key(room, me);
            let hset = pipe.cmd("HSET").arg(&key).arg("").arg(stamp.seq);
            for (user, (n, name)) in users {
                hset.arg(user.as_str()).arg(wire::presence_value(*n, name.as_deref()));
            }
            hset.ignore();
            pipe.cmd("SADD").arg(wire::rooms_key(me)).arg(room.to_string()).ignore();
        }
        let all = users.iter().map(|(u, (n, name))| (u, *n, name.as_deref()));
        pipe.cmd("PUBLISH").arg(wire::room_channel(room)).arg(wire::encode_all(me, stamp, all)).ignore();
    }
    mirror.rooms.retain(|_, users| !users.is_empty());
    pipe
}

/// The other nodes' presence in a room, from [`snapshot`]'s answer.
/// Malformed parts are skipped.
pub fn parse_snapshot(value: Value) -> Vec<NodePresence> {
    let Value::Array(nodes) = value else { return Vec::new() };
    nodes.into_iter().filter_map(parse_node).collect()
}

fn parse_node(value: Value) -> Option<NodePresence> {
    let Value::Array(parts) = value else { return None };
    let mut parts = parts.into_iter();
    let node = NodeId::parse(&text(parts.next()?)?).ok()?;
    let incarnation = text(parts.next()?)?.parse().ok()?;
    let Value::Array(entries) = parts.next()? else { return None };
    let (mut seq, mut users) = (0, Vec::new());
    let mut entries = entries.into_iter();
    while let (Some(field), Some(value)) = (entries.next(), entries.next()) {
        let (field, value) = (text(field)?, text(value)?);
        if field.is_empty() {
            seq = value.parse().unwrap_or(0);
        } else if let Some(user) = wire::parse_presence_entry(&field, &value) {
            users.push(user);
        }
    }
    Some(NodePresence { node, stamp: Stamp { incarnation, seq }, users })
}

/// The nodes a [`sweep`] removed, with their incarnations.
pub fn parse_swept(value: Value) -> Vec<(NodeId, u64)> {
    let Value::Array(items) = value else { return Vec::new() };
    let mut out = Vec::new();
    let mut items = items.into_iter();
    while let (Some(node), Some(incarnation)) = (items.next(), items.next()) {
        let node = text(node).and_then(|n| NodeId::parse(&n).ok());
        let incarnation = text(incarnation).and_then(|i| i.parse().ok());
        if let (Some(node), Some(incarnation)) = (node, incarnation) {
            out.push((node, incarnation));
        }
    }
    out
}

fn text(value: Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes).ok(),
        Value::SimpleString(s) => Some(s),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scripts_name_the_same_keys_as_the_rest() {
        for script in [&*ADMIT, &*SNAPSHOT, &*SWEEP, &*HEARTBEAT, &*CLEAR] {
            for placeholder in ["{NODES}", "{HEARTBEAT}", "{PRESENCE}", "{ROOMS}", "{CONNS}"] {
                assert!(!script.contains(placeholder), "{script}");
            }
        }
        assert!(SNAPSHOT.contains("'huddle:presence:' .. ARGV[1] .. ':' .. node"));
    }

    #[test]
    fn a_snapshot_reads_back_as_node_presence() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let answer = Value::Array(vec![
            Value::Array(vec![
                bulk("n2"),
                bulk("17"),
                Value::Array(vec![bulk(""), bulk("5"), bulk("bob"), bulk("2 Bob B"), bulk("carol"), bulk("1")]),
            ]),
            Value::Array(vec![bulk("not a node!"), bulk("1"), Value::Array(vec![])]),
            Value::Array(vec![bulk("n3"), bulk("4"), Value::Array(vec![])]),
        ]);
        let nodes = parse_snapshot(answer);
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes[0].stamp, Stamp { incarnation: 17, seq: 5 });
        assert_eq!(nodes[0].users.len(), 2);
        assert_eq!(nodes[0].users[0].name.as_deref(), Some("Bob B"));
        assert_eq!((nodes[1].node.as_str(), nodes[1].stamp.seq, nodes[1].users.len()), ("n3", 0, 0));
    }

    #[test]
    fn the_mirror_keeps_an_emptied_room_until_it_is_settled() {
        let mut m = Mirror::default();
        let room = RoomName::parse("chat:a").unwrap();
        let bob = UserId::parse("bob").unwrap();
        m.set_presence(&room, &bob, 2, Some(&"Bob".into()));
        m.set_presence(&room, &bob, 1, None);
        assert_eq!(m.presence(&room, &bob), (1, Some("Bob".into())));
        m.set_presence(&room, &bob, 0, None);
        assert!(m.rooms.contains_key(&room), "the others must still hear it is empty");
        m.settled(&room);
        assert!(m.rooms.is_empty());
    }
}
