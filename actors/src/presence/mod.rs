//! Who is in a room: connections grouped by user. Pure state shared by both
//! room kinds (no I/O, no timers); [`crate::members::Members`] turns its
//! answers into pushes, and [`diff`] batches those of large rooms into
//! `presence:diff`s.
//!
//! Nothing here grows with the room per operation: a join or a leave is a
//! hash-map insert or remove plus one ordered-map lookup (O(log users));
//! the member count is the ordered map's length; lists (join acks,
//! `presence:list`) walk the ordered map from a starting user for as many
//! users as they show, serializing them as they go, without collecting or
//! copying anything.
//!
//! What one member costs the room (64-bit; checked by a test below): its
//! session's entry in the hash map (the session id, its user id, which is
//! one reference-counted string shared by every copy, and the room's slot
//! `S`: 48 bytes for `Members`, whose slot is the shared
//! [`crate::peer::Peer`] pointer and a clock value, plus hash-map control
//! bytes and spare capacity), and for each user its entry in the ordered
//! map (user id and [`User`]: 56 bytes plus B-tree node overhead). The
//! user's first connection is kept inline, so a user with one connection
//! costs no allocation of its own. About 150 to 200 bytes per member in
//! all; the peer itself is shared with the session and its other rooms.

pub mod diff;

use std::collections::{btree_map, BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Arc;

use serde::{Serialize, Serializer};
use smallvec::SmallVec;

use crate::ids::{SessionId, UserId};

/// One connection in the room.
struct Connection<S> {
    user_id: UserId,
    slot: S,
}

/// One user present in the room.
pub struct User {
    name: Option<Arc<str>>,
    /// Its connections in the room. Almost always one, kept inline; at
    /// most `max_connections_per_user`.
    sessions: SmallVec<[SessionId; 1]>,
}

/// What a join changed.
#[derive(Debug, PartialEq, Eq)]
pub enum Joined {
    /// The user's first connection in the room: announce `user:joined`.
    FirstConnection,
    /// Another connection of a user already present.
    AnotherConnection,
    /// This connection was already a member.
    AlreadyMember,
}

/// A connection that left.
#[derive(Debug, PartialEq, Eq)]
pub struct Left<S> {
    pub slot: S,
    pub user_id: UserId,
    /// It was the user's last connection: announce `user:left`.
    pub last_connection: bool,
}

/// Members of a room, keyed by session; `S` is what the room keeps for
/// each connection (how it reaches it).
pub struct Presence<S> {
    sessions: HashMap<SessionId, Connection<S>>,
    // Ordered by user id: lists are stable, and a page starts anywhere.
    users: BTreeMap<UserId, User>,
}

impl<S> Default for Presence<S> {
    fn default() -> Self {
        Presence { sessions: HashMap::new(), users: BTreeMap::new() }
    }
}

impl<S> Presence<S> {
    /// Adds a connection, or replaces the slot of one already there.
    pub fn join(&mut self, session: SessionId, user: UserId, name: Option<Arc<str>>, slot: S) -> Joined {
        if let Some(c) = self.sessions.get_mut(&session) {
            c.slot = slot;
            return Joined::AlreadyMember;
        }
        self.sessions.insert(session, Connection { user_id: user.clone(), slot });
        match self.users.entry(user) {
            btree_map::Entry::Occupied(mut e) => {
                let entry = e.get_mut();
                entry.sessions.push(session);
                if name.is_some() {
                    entry.name = name;
                }
                Joined::AnotherConnection
            }
            btree_map::Entry::Vacant(e) => {
                e.insert(User { name, sessions: SmallVec::from_buf([session]) });
                Joined::FirstConnection
            }
        }
    }

    pub fn leave(&mut self, session: SessionId) -> Option<Left<S>> {
        let Connection { user_id, slot } = self.sessions.remove(&session)?;
        let last_connection = match self.users.get_mut(&user_id) {
            Some(entry) if entry.sessions.len() > 1 => {
                entry.sessions.retain(|s| *s != session);
                false
            }
            _ => {
                self.users.remove(&user_id);
                true
            }
        };
        Some(Left { slot, user_id, last_connection })
    }

    pub fn contains(&self, session: SessionId) -> bool {
        self.sessions.contains_key(&session)
    }

    pub fn slot_mut(&mut self, session: SessionId) -> Option<&mut S> {
        self.sessions.get_mut(&session).map(|c| &mut c.slot)
    }

    /// Sessions of one user in this room.
    pub fn sessions_of(&self, user: &UserId) -> &[SessionId] {
        self.users.get(user).map_or(&[], |u| &u.sessions)
    }

    pub fn slots(&self) -> impl Iterator<Item = (SessionId, &S)> {
        self.sessions.iter().map(|(s, c)| (*s, &c.slot))
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    pub fn connection_count(&self) -> usize {
        self.sessions.len()
    }

    /// Users present.
    pub fn member_count(&self) -> usize {
        self.users.len()
    }

    /// Up to `limit` users after `after` (from the first without it), in
    /// user id order.
    pub fn page(&self, after: Option<&UserId>, limit: usize) -> Page<'_> {
        let range = match after {
            Some(after) => self.users.range::<UserId, _>((Bound::Excluded(after), Bound::Unbounded)),
            None => self.users.range::<UserId, _>(..),
        };
        let members = Listing { range, limit };
        Page { has_more: members.range.clone().nth(limit).is_some(), last: members.last(), members }
    }

    /// The sessions of the first `limit` users (those a join ack lists) and
    /// their slots.
    pub fn listed_slots(&self, limit: usize) -> impl Iterator<Item = (SessionId, &S)> {
        self.users
            .values()
            .take(limit)
            .flat_map(|u| u.sessions.iter())
            .filter_map(|s| self.sessions.get(s).map(|c| (*s, &c.slot)))
    }
}

/// One page of a room's users.
pub struct Page<'a> {
    pub members: Listing<'a>,
    /// More users follow the page.
    pub has_more: bool,
    /// The last user on the page, where the next page starts.
    pub last: Option<&'a UserId>,
}

/// A run of users in user id order, serialized as a list of members
/// `{user_id, name?, connections}` straight from the room's map.
#[derive(Clone)]
pub struct Listing<'a> {
    range: btree_map::Range<'a, UserId, User>,
    limit: usize,
}

impl<'a> Listing<'a> {
    pub fn iter(&self) -> impl Iterator<Item = MemberView<'a>> + 'a {
        self.range.clone().take(self.limit).map(|(user_id, u)| MemberView {
            user_id,
            name: u.name.as_deref(),
            connections: u.sessions.len(),
        })
    }

    fn last(&self) -> Option<&'a UserId> {
        self.range.clone().take(self.limit).last().map(|(id, _)| id)
    }
}

impl Serialize for Listing<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

/// One user present in a room, as listed.
#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct MemberView<'a> {
    pub user_id: &'a UserId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    pub connections: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(s: &str) -> UserId {
        UserId::parse(s).unwrap()
    }

    #[test]
    fn users_are_counted_across_connections() {
        let mut p: Presence<()> = Presence::default();
        let (a1, a2, b) = (SessionId::new(), SessionId::new(), SessionId::new());
        assert_eq!(p.join(a1, user("alice"), Some("Alice".into()), ()), Joined::FirstConnection);
        assert_eq!(p.join(a2, user("alice"), None, ()), Joined::AnotherConnection);
        assert_eq!(p.join(a2, user("alice"), None, ()), Joined::AlreadyMember);
        assert_eq!(p.join(b, user("bob"), None, ()), Joined::FirstConnection);
        assert_eq!(p.member_count(), 2);
        assert_eq!(p.connection_count(), 3);
        assert_eq!(p.sessions_of(&user("alice")), &[a1, a2]);
        let listed: Vec<_> = p.page(None, 10).members.iter().collect();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0], MemberView { user_id: &user("alice"), name: Some("Alice"), connections: 2 });

        let left = p.leave(a1).unwrap();
        assert!(!left.last_connection);
        assert_eq!(p.sessions_of(&user("alice")), &[a2]);
        assert!(p.leave(a1).is_none(), "leaving twice changes nothing");
        assert!(p.leave(a2).unwrap().last_connection);
        assert!(p.sessions_of(&user("alice")).is_empty());
        assert_eq!(p.member_count(), 1);
        assert!(p.leave(b).unwrap().last_connection);
        assert!(p.is_empty());
    }

    #[test]
    fn pages_walk_the_users_in_order_to_the_end() {
        let mut p: Presence<()> = Presence::default();
        for i in (0..25).rev() {
            p.join(SessionId::new(), user(&format!("u{i:02}")), None, ());
        }
        let mut seen = Vec::new();
        let mut after: Option<UserId> = None;
        loop {
            let page = p.page(after.as_ref(), 10);
            let ids: Vec<String> = page.members.iter().map(|m| m.user_id.to_string()).collect();
            assert_eq!(page.last.map(|u| u.to_string()), ids.last().cloned());
            seen.extend(ids);
            if !page.has_more {
                break;
            }
            after = page.last.cloned();
        }
        let expected: Vec<String> = (0..25).map(|i| format!("u{i:02}")).collect();
        assert_eq!(seen, expected);
        // A page that ends exactly at the last user has no more after it.
        let page = p.page(Some(&user("u14")), 10);
        assert!(!page.has_more);
        assert_eq!(page.last, Some(&user("u24")));
        // After someone who is not there: from the next user on.
        assert_eq!(p.page(Some(&user("u05x")), 1).members.iter().next().unwrap().user_id, &user("u06"));
        assert!(p.page(Some(&user("zzz")), 10).last.is_none());
    }

    #[test]
    fn listings_serialize_as_members() {
        let mut p: Presence<()> = Presence::default();
        p.join(SessionId::new(), user("bob"), None, ());
        p.join(SessionId::new(), user("alice"), Some("Alice".into()), ());
        let json = serde_json::to_string(&p.page(None, 1).members).unwrap();
        assert_eq!(json, r#"[{"user_id":"alice","name":"Alice","connections":1}]"#);
        assert_eq!(p.listed_slots(1).count(), 1);
    }

    // What a member costs: see the module doc. A change that makes these
    // entries larger should say so there.
    #[test]
    fn per_member_entries_stay_small() {
        use std::mem::size_of;
        // The slot `Members` keeps: a Peer (one pointer) and a clock value.
        type Slot = (std::sync::Arc<()>, u64);
        assert!(size_of::<Connection<Slot>>() <= 32, "{}", size_of::<Connection<Slot>>());
        assert!(size_of::<(SessionId, Connection<Slot>)>() <= 48);
        assert!(size_of::<(UserId, User)>() <= 56, "{}", size_of::<(UserId, User)>());
    }
}
