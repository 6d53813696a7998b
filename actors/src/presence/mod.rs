//! Who is in a room: connections grouped by user. Pure state shared by both
//! room kinds (no I/O, no timers); [`crate::members::Members`] turns its
//! answers into pushes, and [`diff`] batches those of large rooms into
//! `presence:diff`s. In cluster mode a room also counts the users on other
//! nodes ([`remote::Elsewhere`]): a user is present while it has a
//! connection anywhere, and lists and counts cover the whole cluster.
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
pub mod remote;

use std::collections::{btree_map, BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Arc;

use serde::{Serialize, Serializer};
use smallvec::SmallVec;

use crate::ids::{NodeId, SessionId, UserId};
use crate::presence::remote::{Elsewhere, NodePresence, NodeUser, RemoteUser, Stamp};

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
    /// Another connection of a user already present (here or on another
    /// node).
    AnotherConnection,
    /// This connection was already a member.
    AlreadyMember,
}

/// A connection that left.
#[derive(Debug, PartialEq, Eq)]
pub struct Left<S> {
    pub slot: S,
    pub user_id: UserId,
    /// It was the user's last connection in the cluster: announce
    /// `user:left`.
    pub last_connection: bool,
    /// The user's connections left on this node (what other nodes are
    /// told).
    pub here: usize,
}

/// A user whose presence in the whole cluster began or ended because of
/// another node's report.
#[derive(Debug, PartialEq, Eq)]
pub struct Moved {
    pub user_id: UserId,
    pub joined: bool,
    pub name: Option<Arc<str>>,
}

/// What another node's report changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RemoteChange {
    /// Users who joined or left the room as a whole.
    pub moved: Vec<Moved>,
    /// Users with no connection left on the reporting node.
    pub departed: Vec<UserId>,
}

/// Members of a room, keyed by session; `S` is what the room keeps for
/// each connection (how it reaches it).
pub struct Presence<S> {
    sessions: HashMap<SessionId, Connection<S>>,
    // Ordered by user id: lists are stable, and a page starts anywhere.
    users: BTreeMap<UserId, User>,
    /// Users on other nodes (cluster mode; empty otherwise).
    elsewhere: Elsewhere,
    /// Users present elsewhere and not here: the room's count is
    /// `users.len()` plus these.
    elsewhere_only: usize,
}

impl<S> Default for Presence<S> {
    fn default() -> Self {
        Presence { sessions: HashMap::new(), users: BTreeMap::new(), elsewhere: Elsewhere::default(), elsewhere_only: 0 }
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
                let elsewhere = self.elsewhere.contains(e.key());
                e.insert(User { name, sessions: SmallVec::from_buf([session]) });
                if elsewhere {
                    self.elsewhere_only -= 1;
                    Joined::AnotherConnection
                } else {
                    Joined::FirstConnection
                }
            }
        }
    }

    pub fn leave(&mut self, session: SessionId) -> Option<Left<S>> {
        let Connection { user_id, slot } = self.sessions.remove(&session)?;
        let (last_here, here) = match self.users.get_mut(&user_id) {
            Some(entry) if entry.sessions.len() > 1 => {
                entry.sessions.retain(|s| *s != session);
                (false, entry.sessions.len())
            }
            _ => {
                self.users.remove(&user_id);
                (true, 0)
            }
        };
        let elsewhere = last_here && self.elsewhere.contains(&user_id);
        if elsewhere {
            self.elsewhere_only += 1;
        }
        Some(Left { slot, user_id, last_connection: last_here && !elsewhere, here })
    }

    /// Applies another node's change of presence.
    pub fn remote_set(&mut self, node: &NodeId, stamp: Stamp, user: NodeUser) -> RemoteChange {
        let applied = self.elsewhere.set(node, stamp, user);
        self.absorb(applied)
    }

    /// Applies another node's whole presence (a republish, or what the
    /// shared store held when this room started).
    pub fn remote_replace(&mut self, presence: NodePresence) -> RemoteChange {
        let applied = self.elsewhere.replace(presence);
        self.absorb(applied)
    }

    /// Another node died: its users are gone from it.
    pub fn remote_gone(&mut self, node: &NodeId, incarnation: u64) -> RemoteChange {
        let applied = self.elsewhere.gone(node, incarnation);
        self.absorb(applied)
    }

    /// What this room keeps of the other nodes.
    pub fn elsewhere(&self) -> &Elsewhere {
        &self.elsewhere
    }

    /// Turns changes of presence elsewhere into changes of the room's
    /// presence: a user here already neither joins nor leaves.
    fn absorb(&mut self, applied: remote::Applied) -> RemoteChange {
        let mut change = RemoteChange { moved: Vec::new(), departed: applied.departed };
        for (user_id, joined, name) in applied.moved {
            if self.users.contains_key(&user_id) {
                continue;
            }
            if joined {
                self.elsewhere_only += 1;
            } else {
                self.elsewhere_only -= 1;
            }
            change.moved.push(Moved { user_id, joined, name });
        }
        change
    }

    pub fn contains(&self, session: SessionId) -> bool {
        self.sessions.contains_key(&session)
    }

    pub fn slot_mut(&mut self, session: SessionId) -> Option<&mut S> {
        self.sessions.get_mut(&session).map(|c| &mut c.slot)
    }

    /// The users with connections on this node, and those connections.
    pub fn local(&self) -> impl Iterator<Item = (&UserId, &[SessionId])> {
        self.users.iter().map(|(u, entry)| (u, &entry.sessions[..]))
    }

    /// Sessions of one user in this room (on this node).
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

    /// Users present (on any node).
    pub fn member_count(&self) -> usize {
        self.users.len() + self.elsewhere_only
    }

    /// Up to `limit` users after `after` (from the first without it), in
    /// user id order.
    pub fn page(&self, after: Option<&UserId>, limit: usize) -> Page<'_> {
        let range = match after {
            Some(after) => self.users.range::<UserId, _>((Bound::Excluded(after), Bound::Unbounded)),
            None => self.users.range::<UserId, _>(..),
        };
        let members = Listing { range, remote: self.elsewhere.range(after), limit };
        Page { has_more: members.merged().nth(limit).is_some(), last: members.last(), members }
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
/// `{user_id, name?, connections}` straight from the room's maps (this
/// node's users and the other nodes', merged).
#[derive(Clone)]
pub struct Listing<'a> {
    range: btree_map::Range<'a, UserId, User>,
    remote: btree_map::Range<'a, UserId, RemoteUser>,
    limit: usize,
}

impl<'a> Listing<'a> {
    pub fn iter(&self) -> impl Iterator<Item = MemberView<'a>> + 'a {
        self.merged().take(self.limit)
    }

    /// Every user from the start of the page on, without the limit.
    fn merged(&self) -> impl Iterator<Item = MemberView<'a>> + 'a {
        Merge { here: self.range.clone().peekable(), there: self.remote.clone().peekable() }
    }

    fn last(&self) -> Option<&'a UserId> {
        self.iter().last().map(|m| m.user_id)
    }
}

/// Two ascending runs of users as one: a user in both is one member, with
/// the connections of both.
struct Merge<'a> {
    here: std::iter::Peekable<btree_map::Range<'a, UserId, User>>,
    there: std::iter::Peekable<btree_map::Range<'a, UserId, RemoteUser>>,
}

impl<'a> Iterator for Merge<'a> {
    type Item = MemberView<'a>;

    fn next(&mut self) -> Option<MemberView<'a>> {
        let order = match (self.here.peek(), self.there.peek()) {
            (None, None) => return None,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some((a, _)), Some((b, _))) => a.cmp(b),
        };
        let here = if order.is_le() { self.here.next() } else { None };
        let there = if order.is_ge() { self.there.next() } else { None };
        let (user_id, name, mut connections) = match &here {
            Some((id, u)) => (*id, u.name.as_deref(), u.sessions.len()),
            None => {
                let (id, r) = there?;
                (id, r.name(), 0)
            }
        };
        if let Some((_, r)) = there {
            connections += r.connections();
        }
        let name = name.or_else(|| there.and_then(|(_, r)| r.name()));
        Some(MemberView { user_id, name, connections })
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

    #[test]
    fn users_on_other_nodes_are_members_too() {
        let mut p: Presence<()> = Presence::default();
        let a = NodeId::parse("a").unwrap();
        let at = |seq| Stamp { incarnation: 1, seq };
        let bob_there = |n| NodeUser { user: user("bob"), connections: n, name: Some("Bob".into()) };
        let change = p.remote_set(&a, at(1), bob_there(2));
        assert_eq!(change.moved, vec![Moved { user_id: user("bob"), joined: true, name: Some("Bob".into()) }]);
        assert_eq!(p.member_count(), 1);
        assert!(p.is_empty(), "no connection on this node");
        let here = SessionId::new();
        assert_eq!(p.join(here, user("bob"), None, ()), Joined::AnotherConnection, "bob is in the room already");
        assert_eq!(p.join(SessionId::new(), user("carol"), None, ()), Joined::FirstConnection);
        let listed: Vec<_> = p.page(None, 10).members.iter().collect();
        assert_eq!(
            listed,
            vec![
                MemberView { user_id: &user("bob"), name: Some("Bob"), connections: 3 },
                MemberView { user_id: &user("carol"), name: None, connections: 1 },
            ]
        );
        assert_eq!(p.member_count(), 2);
        // Leaving the other node while here: nobody hears of it.
        assert!(p.remote_set(&a, at(2), bob_there(0)).moved.is_empty());
        p.remote_set(&a, at(3), bob_there(1));
        let left = p.leave(here).unwrap();
        assert_eq!((left.last_connection, left.here), (false, 0), "still on the other node");
        assert_eq!(p.member_count(), 2);
        let change = p.remote_gone(&a, 1);
        assert_eq!(change.moved, vec![Moved { user_id: user("bob"), joined: false, name: Some("Bob".into()) }]);
        assert_eq!(p.member_count(), 1);
    }

    #[test]
    fn pages_merge_this_nodes_users_with_the_others() {
        let mut p: Presence<()> = Presence::default();
        let a = NodeId::parse("a").unwrap();
        for i in 0..30_u64 {
            let id = user(&format!("u{i:02}"));
            if i.is_multiple_of(3) {
                let on = NodeUser { user: id, connections: 1, name: None };
                p.remote_set(&a, Stamp { incarnation: 1, seq: i }, on);
            } else {
                p.join(SessionId::new(), id.clone(), None, ());
                if i.is_multiple_of(5) {
                    p.remote_set(&a, Stamp { incarnation: 1, seq: i }, NodeUser { user: id, connections: 2, name: None });
                }
            }
        }
        assert_eq!(p.member_count(), 30);
        let mut seen = Vec::new();
        let mut after: Option<UserId> = None;
        loop {
            let page = p.page(after.as_ref(), 7);
            for m in page.members.iter() {
                let i: u64 = m.user_id.to_string()[1..].parse().unwrap();
                let expected = if !i.is_multiple_of(3) && i.is_multiple_of(5) { 3 } else { 1 };
                assert_eq!(m.connections, expected, "{}", m.user_id);
                seen.push(m.user_id.to_string());
            }
            if !page.has_more {
                break;
            }
            after = page.last.cloned();
        }
        assert_eq!(seen, (0..30).map(|i| format!("u{i:02}")).collect::<Vec<_>>());
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
