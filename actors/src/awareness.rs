//! Awareness: what each connection shares about itself in a room (a
//! cursor, a selection, "typing"), never stored. Pure state; the room's
//! [`crate::members::Members`] rings the timer and pushes.
//!
//! Coalescing (docs/protocol.md, "Awareness"): one timer per room, ringing
//! every `awareness_interval_ms` while anything is pending. A state set
//! while the timer is not running is pushed at once and starts it; states
//! set while it runs wait for the next ring, which pushes the latest state
//! of each connection that changed, and keeps the timer running while it
//! pushed anything. So each connection's pushes are at least one interval
//! apart, and the last state set is always the last pushed.
//!
//! A connection that leaves (or drops) with a state others may have seen
//! is cleared at once (`state: null`), dropping whatever was pending for
//! it.
//!
//! Memory: one entry per connection that has a state (at most
//! `max_awareness_bytes` of JSON each, shared by every frame that carries
//! it), and the ids of those waiting for the timer.
//!
//! In cluster mode the room also keeps the states of connections on other
//! nodes (their node coalesced and pushed them; this room only forwards
//! the frames and lists the states in join acks). Each node may hold at
//! most as many states here as it has connections in the room, so they
//! cost at most `max_awareness_bytes` per connection, like local ones. A
//! node that dies, or whose user left it, has its states cleared.

use std::collections::HashMap;

use serde::{Serialize, Serializer};

use crate::ids::{NodeId, SessionId, UserId};
use crate::protocol::AwarenessState;

struct Entry {
    user_id: UserId,
    state: Option<AwarenessState>,
    /// Others may have seen a state of this connection (pushed, or listed
    /// in a join ack), so clearing it needs a push.
    shown: bool,
    /// Its latest state waits for the timer.
    dirty: bool,
}

/// What [`Awareness::set`] asks of the room.
#[derive(Debug, PartialEq, Eq)]
pub enum Set {
    /// Push the state now and start the timer.
    Now,
    /// The timer will push it (or nothing needs pushing).
    Later,
}

/// One connection's state, as pushed (`awareness`) or listed (join acks).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Update {
    pub session_id: SessionId,
    pub user_id: UserId,
    pub state: Option<AwarenessState>,
}

/// The awareness states of one room's connections.
#[derive(Default)]
pub struct Awareness {
    entries: HashMap<SessionId, Entry>,
    /// Connections whose state waits for the timer (each once while dirty).
    pending: Vec<SessionId>,
    /// The timer runs.
    ticking: bool,
    /// States of connections on other nodes.
    remote: HashMap<SessionId, RemoteEntry>,
    /// How many of `remote` each node holds.
    remote_per_node: HashMap<NodeId, usize>,
}

struct RemoteEntry {
    node: NodeId,
    user_id: UserId,
    state: AwarenessState,
}

impl Awareness {
    /// A connection sets its state (`None` clears it).
    pub fn set(&mut self, session: SessionId, user: &UserId, state: Option<AwarenessState>) -> Set {
        let entry = match (self.entries.get_mut(&session), state.is_some()) {
            (None, false) => return Set::Later,
            (Some(e), false) if !e.shown && !e.dirty => {
                self.entries.remove(&session);
                return Set::Later;
            }
            (Some(e), _) => e,
            (None, true) => self
                .entries
                .entry(session)
                .or_insert(Entry { user_id: user.clone(), state: None, shown: false, dirty: false }),
        };
        entry.shown |= state.is_some();
        entry.state = state;
        if !self.ticking {
            self.ticking = true;
            return Set::Now;
        }
        if !entry.dirty {
            entry.dirty = true;
            self.pending.push(session);
        }
        Set::Later
    }

    /// The states of this node's connections as they are now.
    pub fn local_states(&self) -> impl Iterator<Item = Update> + '_ {
        self.entries.iter().filter_map(|(s, e)| {
            e.state.as_ref().map(|state| Update { session_id: *s, user_id: e.user_id.clone(), state: Some(state.clone()) })
        })
    }

    /// The state of `session` as it is now (after [`Set::Now`]: what to push).
    pub fn current(&self, session: SessionId) -> Option<Update> {
        self.entries.get(&session).map(|e| Update { session_id: session, user_id: e.user_id.clone(), state: e.state.clone() })
    }

    /// The timer rang: the pushes to make now, in the order the
    /// connections first changed. Afterwards [`Awareness::ticking`] says
    /// whether to ring again.
    pub fn tick(&mut self) -> Vec<Update> {
        let mut out = Vec::new();
        for session in std::mem::take(&mut self.pending) {
            let Some(e) = self.entries.get_mut(&session) else { continue };
            if !e.dirty {
                continue;
            }
            e.dirty = false;
            if e.state.is_none() && !e.shown {
                self.entries.remove(&session);
                continue;
            }
            out.push(Update { session_id: session, user_id: e.user_id.clone(), state: e.state.clone() });
            self.settle(session);
        }
        self.ticking = !out.is_empty();
        out
    }

    /// After a push of `session`'s current state.
    pub fn pushed(&mut self, session: SessionId) {
        self.settle(session);
    }

    fn settle(&mut self, session: SessionId) {
        if let Some(e) = self.entries.get_mut(&session) {
            e.shown = e.state.is_some();
            if e.state.is_none() && !e.dirty {
                self.entries.remove(&session);
            }
        }
    }

    pub fn ticking(&self) -> bool {
        self.ticking
    }

    /// A connection left the room: its user, when others must hear its
    /// state cleared.
    pub fn leave(&mut self, session: SessionId) -> Option<UserId> {
        let e = self.entries.remove(&session)?;
        e.shown.then_some(e.user_id)
    }

    /// A connection on `node` pushed `update`. False when it is refused:
    /// a new state from a node that already has `room_for` states here.
    pub fn remote_set(&mut self, node: &NodeId, update: &Update, room_for: usize) -> bool {
        let Some(state) = &update.state else {
            self.remote_remove(update.session_id);
            return true;
        };
        match self.remote.get_mut(&update.session_id) {
            Some(e) if e.node == *node => e.state = state.clone(),
            _ => {
                self.remote_remove(update.session_id);
                let held = self.remote_per_node.entry(node.clone()).or_default();
                if *held >= room_for {
                    return false;
                }
                *held += 1;
                let entry = RemoteEntry { node: node.clone(), user_id: update.user_id.clone(), state: state.clone() };
                self.remote.insert(update.session_id, entry);
            }
        }
        true
    }

    /// Clears the states of `node`'s connections (all of them, or only
    /// those of `users`): the pushes that say so.
    pub fn remote_clear(&mut self, node: &NodeId, users: Option<&[UserId]>) -> Vec<Update> {
        let cleared: Vec<(SessionId, UserId)> = self
            .remote
            .iter()
            .filter(|(_, e)| e.node == *node && users.is_none_or(|u| u.contains(&e.user_id)))
            .map(|(s, e)| (*s, e.user_id.clone()))
            .collect();
        cleared
            .into_iter()
            .map(|(session_id, user_id)| {
                self.remote_remove(session_id);
                Update { session_id, user_id, state: None }
            })
            .collect()
    }

    fn remote_remove(&mut self, session: SessionId) {
        if let Some(e) = self.remote.remove(&session) {
            if let Some(held) = self.remote_per_node.get_mut(&e.node) {
                *held -= 1;
                if *held == 0 {
                    self.remote_per_node.remove(&e.node);
                }
            }
        }
    }

    /// The states of connections other than `except`, at most `limit`, as a
    /// join ack lists them.
    pub fn listing(&self, except: SessionId, limit: usize) -> Listing<'_> {
        Listing { awareness: self, except, limit }
    }
}

/// States listed in a join ack: `[{session_id, user_id, state}]`,
/// serialized straight from the room's map.
pub struct Listing<'a> {
    awareness: &'a Awareness,
    except: SessionId,
    limit: usize,
}

#[derive(Serialize)]
struct ListedState<'a> {
    session_id: SessionId,
    user_id: &'a UserId,
    state: &'a AwarenessState,
}

impl Listing<'_> {
    fn iter(&self) -> impl Iterator<Item = ListedState<'_>> {
        let here = self
            .awareness
            .entries
            .iter()
            .filter(|(s, _)| **s != self.except)
            .filter_map(|(s, e)| e.state.as_ref().map(|state| ListedState { session_id: *s, user_id: &e.user_id, state }));
        let there =
            self.awareness.remote.iter().map(|(s, e)| ListedState { session_id: *s, user_id: &e.user_id, state: &e.state });
        here.chain(there).take(self.limit)
    }
}

impl Serialize for Listing<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{decode, ClientRequest, DecodeLimits};

    fn state(json: &str) -> AwarenessState {
        let limits = DecodeLimits { max_document_bytes: 0, max_message_chars: 0, max_awareness_bytes: 1024 };
        let frame = format!(r#"{{"event":"awareness:set","data":{{"room":"chat:c","state":{json}}}}}"#);
        match decode(&frame, &limits).unwrap().body {
            ClientRequest::AwarenessSet { state: Some(s), .. } => s,
            other => panic!("{other:?}"),
        }
    }

    fn user(s: &str) -> UserId {
        UserId::parse(s).unwrap()
    }

    #[test]
    fn the_first_set_goes_at_once_then_a_burst_waits_and_the_last_state_wins() {
        let mut a = Awareness::default();
        let (s, bob) = (SessionId::new(), user("bob"));
        assert_eq!(a.set(s, &bob, Some(state(r#"{"n":0}"#))), Set::Now);
        assert_eq!(a.current(s).unwrap().state, Some(state(r#"{"n":0}"#)));
        a.pushed(s);
        for n in 1..100 {
            assert_eq!(a.set(s, &bob, Some(state(&format!(r#"{{"n":{n}}}"#)))), Set::Later);
        }
        let pushed = a.tick();
        assert_eq!(pushed, vec![Update { session_id: s, user_id: bob.clone(), state: Some(state(r#"{"n":99}"#)) }]);
        assert!(a.ticking(), "it pushed: ring again");
        // Nothing more: the timer stops, and the next set goes at once.
        assert!(a.tick().is_empty());
        assert!(!a.ticking());
        assert_eq!(a.set(s, &bob, Some(state(r#"{"n":100}"#))), Set::Now);
    }

    #[test]
    fn clears_are_pushed_only_when_a_state_may_have_been_seen() {
        let mut a = Awareness::default();
        let (s, t, bob) = (SessionId::new(), SessionId::new(), user("bob"));
        // Never set: clearing and leaving need no push.
        assert_eq!(a.set(s, &bob, None), Set::Later);
        assert_eq!(a.leave(s), None);
        // Set (pushed at once), then cleared while the timer runs.
        assert_eq!(a.set(s, &bob, Some(state("{}"))), Set::Now);
        a.pushed(s);
        assert_eq!(a.set(s, &bob, None), Set::Later);
        assert_eq!(a.tick(), vec![Update { session_id: s, user_id: bob.clone(), state: None }]);
        assert_eq!(a.leave(s), None, "already cleared");
        // A state that waits when its connection leaves: cleared at once.
        assert_eq!(a.set(t, &bob, Some(state(r#"{"c":1}"#))), Set::Later);
        assert_eq!(a.leave(t), Some(bob.clone()));
        assert!(a.tick().is_empty(), "the pending state is dropped");
    }

    #[test]
    fn states_from_other_nodes_are_listed_bounded_and_cleared_with_their_node() {
        let mut a = Awareness::default();
        let (n1, n2) = (NodeId::parse("n1").unwrap(), NodeId::parse("n2").unwrap());
        let update = |s: SessionId, u: &str, st: Option<AwarenessState>| Update { session_id: s, user_id: user(u), state: st };
        let (s1, s2, s3) = (SessionId::new(), SessionId::new(), SessionId::new());
        assert!(a.remote_set(&n1, &update(s1, "bob", Some(state(r#"{"x":1}"#))), 2));
        assert!(a.remote_set(&n1, &update(s2, "carol", Some(state(r#"{"x":2}"#))), 2));
        assert!(!a.remote_set(&n1, &update(s3, "dave", Some(state("{}"))), 2), "n1 has two connections here");
        assert!(a.remote_set(&n1, &update(s1, "bob", Some(state(r#"{"x":3}"#))), 2), "a known connection may change");
        assert!(a.remote_set(&n2, &update(s3, "dave", Some(state("{}"))), 1));
        let me = SessionId::new();
        a.set(me, &user("me"), Some(state("{}")));
        assert_eq!(serde_json::to_value(a.listing(me, 10)).unwrap().as_array().unwrap().len(), 3);
        let cleared = a.remote_clear(&n1, Some(&[user("carol")]));
        assert_eq!(cleared, vec![update(s2, "carol", None)]);
        let cleared = a.remote_clear(&n1, None);
        assert_eq!(cleared, vec![update(s1, "bob", None)]);
        assert!(a.remote_set(&n1, &update(s2, "carol", Some(state("{}"))), 1), "room again");
        assert!(a.remote_set(&n2, &update(s3, "dave", None), 1));
        assert_eq!(serde_json::to_value(a.listing(me, 10)).unwrap().as_array().unwrap().len(), 1);
    }

    #[test]
    fn join_acks_list_the_others_states() {
        let mut a = Awareness::default();
        let (me, s1, s2, s3) = (SessionId::new(), SessionId::new(), SessionId::new(), SessionId::new());
        a.set(me, &user("me"), Some(state("{}")));
        a.set(s1, &user("a"), Some(state(r#"{"x":1}"#)));
        a.set(s2, &user("b"), Some(state(r#"{"x":2}"#)));
        a.set(s3, &user("c"), None);
        let all = serde_json::to_value(a.listing(me, 10)).unwrap();
        assert_eq!(all.as_array().unwrap().len(), 2);
        assert!(all.as_array().unwrap().iter().all(|e| e["user_id"] != "me" && e["state"]["x"].is_number()));
        assert_eq!(serde_json::to_value(a.listing(me, 1)).unwrap().as_array().unwrap().len(), 1);
    }
}
