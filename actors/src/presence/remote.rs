//! Presence on the other nodes of a cluster, as one room sees it: for each
//! user, its connections on each other node. Pure state; the room's
//! [`crate::members::Members`] feeds it what the cluster link delivers and
//! turns its answers into pushes.
//!
//! A node's presence in a room reaches this room three ways, in no
//! guaranteed order: changes the node publishes ([`Elsewhere::set`]), its
//! whole presence (after it resynchronised, or read from the shared store
//! when this room started: [`Elsewhere::replace`]), and the news that the
//! node died ([`Elsewhere::gone`]). Each carries a [`Stamp`]: the node's
//! incarnation (a new one each time it republishes its state, so after a
//! pause or a Redis restart) and a sequence number within it. A report
//! older than what this room already applied for that node is ignored, so
//! applying them in any order ends in the newest state, and a node declared
//! dead stays dead until it republishes under a new incarnation.
//!
//! Memory: one entry per user present elsewhere (its id, shared, its name
//! and a (node, count) pair per node it is on, the first inline), and one
//! per node ever heard in the room.

use std::collections::{btree_map, BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Arc;

use smallvec::SmallVec;

use crate::ids::{NodeId, UserId};

/// Where a report of a node's presence stands in that node's history.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stamp {
    /// The node's incarnation: grows each time the node republishes its
    /// whole state.
    pub incarnation: u64,
    /// Grows with each change the node publishes within an incarnation.
    pub seq: u64,
}

/// One user on one node: its connections there (0: none left) and name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeUser {
    pub user: UserId,
    pub connections: u32,
    pub name: Option<Arc<str>>,
}

/// A node's whole presence in a room, as it published it or as the shared
/// store holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodePresence {
    pub node: NodeId,
    pub stamp: Stamp,
    pub users: Vec<NodeUser>,
}

/// What a report changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Users whose presence elsewhere began (`true`) or ended (`false`),
    /// with the name they are known by.
    pub moved: Vec<(UserId, bool, Option<Arc<str>>)>,
    /// Users that have no connection left on the reporting node (their
    /// awareness states there are gone too).
    pub departed: Vec<UserId>,
}

/// A user present on other nodes.
pub struct RemoteUser {
    name: Option<Arc<str>>,
    counts: SmallVec<[(NodeId, u32); 1]>,
}

impl RemoteUser {
    pub fn connections(&self) -> usize {
        self.counts.iter().map(|(_, n)| *n as usize).sum()
    }

    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
}

/// What this room applied of one node.
#[derive(Clone, Copy, Debug, Default)]
struct Known {
    stamp: Stamp,
    /// Declared dead at `stamp.incarnation`: nothing more of that
    /// incarnation is taken.
    gone: bool,
    /// The node's connections in the room.
    connections: usize,
}

#[derive(Default)]
pub struct Elsewhere {
    users: BTreeMap<UserId, RemoteUser>,
    nodes: HashMap<NodeId, Known>,
}

impl Elsewhere {
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Users present on at least one other node.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn get(&self, user: &UserId) -> Option<&RemoteUser> {
        self.users.get(user)
    }

    pub fn contains(&self, user: &UserId) -> bool {
        self.users.contains_key(user)
    }

    /// The users after `after` (from the first without it), in user id order.
    pub fn range(&self, after: Option<&UserId>) -> btree_map::Range<'_, UserId, RemoteUser> {
        match after {
            Some(after) => self.users.range::<UserId, _>((Bound::Excluded(after), Bound::Unbounded)),
            None => self.users.range::<UserId, _>(..),
        }
    }

    /// Connections `node` has in the room (bounds what this room keeps of
    /// its awareness states).
    pub fn connections_on(&self, node: &NodeId) -> usize {
        self.nodes.get(node).map_or(0, |k| k.connections)
    }

    /// Whether reports of `node` at `stamp` are still taken (the node is
    /// not dead at that incarnation).
    pub fn takes(&self, node: &NodeId, stamp: Stamp) -> bool {
        match self.nodes.get(node) {
            Some(k) if k.gone => stamp.incarnation > k.stamp.incarnation,
            _ => true,
        }
    }

    /// A change `node` published: `user` now has `connections` there.
    pub fn set(&mut self, node: &NodeId, stamp: Stamp, user: NodeUser) -> Applied {
        if !self.accept(node, stamp, false) {
            return Applied::default();
        }
        let mut applied = Applied::default();
        self.put(node, user, &mut applied);
        applied
    }

    /// `node`'s whole presence in the room: replaces what was known of it.
    pub fn replace(&mut self, presence: NodePresence) -> Applied {
        let NodePresence { node, stamp, users } = presence;
        if !self.accept(&node, stamp, true) {
            return Applied::default();
        }
        let mut applied = Applied::default();
        let listed: std::collections::HashSet<&UserId> = users.iter().filter(|u| u.connections > 0).map(|u| &u.user).collect();
        let dropped: Vec<UserId> = self
            .users
            .iter()
            .filter(|(id, u)| !listed.contains(id) && u.counts.iter().any(|(n, _)| *n == node))
            .map(|(id, _)| id.clone())
            .collect();
        for user in dropped {
            self.put(&node, NodeUser { user, connections: 0, name: None }, &mut applied);
        }
        for user in users {
            self.put(&node, user, &mut applied);
        }
        applied
    }

    /// `node` died at `incarnation`: its users are gone from it, and
    /// nothing it said under that incarnation is taken any more.
    pub fn gone(&mut self, node: &NodeId, incarnation: u64) -> Applied {
        let stamp = Stamp { incarnation, seq: u64::MAX };
        match self.nodes.get(node) {
            Some(k) if k.stamp.incarnation > incarnation => return Applied::default(),
            _ => {}
        }
        let known = self.nodes.entry(node.clone()).or_default();
        known.stamp = stamp;
        known.gone = true;
        let on_node: Vec<UserId> =
            self.users.iter().filter(|(_, u)| u.counts.iter().any(|(n, _)| n == node)).map(|(id, _)| id.clone()).collect();
        let mut applied = Applied::default();
        for user in on_node {
            self.put(node, NodeUser { user, connections: 0, name: None }, &mut applied);
        }
        applied
    }

    /// Whether a report at `stamp` is newer than what was applied of
    /// `node` (a whole state may repeat the last one); notes it if so.
    fn accept(&mut self, node: &NodeId, stamp: Stamp, whole: bool) -> bool {
        if let Some(k) = self.nodes.get(node) {
            let newer = if whole { stamp >= k.stamp } else { stamp > k.stamp };
            if !newer || (k.gone && stamp.incarnation <= k.stamp.incarnation) {
                return false;
            }
        }
        let known = self.nodes.entry(node.clone()).or_default();
        known.stamp = stamp;
        known.gone = false;
        true
    }

    /// Sets one user's count on one node and records what that changed.
    fn put(&mut self, node: &NodeId, user: NodeUser, applied: &mut Applied) {
        let NodeUser { user, connections, name } = user;
        let before = self.users.contains_key(&user);
        let old = self.users.get(&user).and_then(|u| u.counts.iter().find(|(n, _)| n == node)).map_or(0, |(_, c)| *c);
        if let Some(known) = self.nodes.get_mut(node) {
            known.connections = known.connections + connections as usize - old as usize;
        }
        if connections == 0 {
            let Some(entry) = self.users.get_mut(&user) else { return };
            let had = entry.counts.len();
            entry.counts.retain(|(n, _)| n != node);
            if entry.counts.len() == had {
                return;
            }
            applied.departed.push(user.clone());
            if entry.counts.is_empty() {
                let name = self.users.remove(&user).and_then(|u| u.name);
                applied.moved.push((user, false, name));
            }
            return;
        }
        let entry = self.users.entry(user.clone()).or_insert_with(|| RemoteUser { name: None, counts: SmallVec::new() });
        if name.is_some() {
            entry.name = name;
        }
        match entry.counts.iter_mut().find(|(n, _)| n == node) {
            Some((_, count)) => *count = connections,
            None => entry.counts.push((node.clone(), connections)),
        }
        if !before {
            applied.moved.push((user, true, entry.name.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(s: &str) -> UserId {
        UserId::parse(s).unwrap()
    }

    fn node(s: &str) -> NodeId {
        NodeId::parse(s).unwrap()
    }

    fn at(incarnation: u64, seq: u64) -> Stamp {
        Stamp { incarnation, seq }
    }

    fn on(u: &str, connections: u32) -> NodeUser {
        NodeUser { user: user(u), connections, name: None }
    }

    fn moved(a: &Applied) -> Vec<(String, bool)> {
        a.moved.iter().map(|(u, p, _)| (u.to_string(), *p)).collect()
    }

    #[test]
    fn a_user_is_present_while_any_node_has_a_connection() {
        let mut e = Elsewhere::default();
        let (a, b) = (node("a"), node("b"));
        assert_eq!(moved(&e.set(&a, at(1, 1), on("bob", 1))), vec![("bob".into(), true)]);
        assert!(moved(&e.set(&b, at(7, 1), on("bob", 2))).is_empty(), "already present");
        assert_eq!(e.get(&user("bob")).unwrap().connections(), 3);
        let left_a = e.set(&a, at(1, 2), on("bob", 0));
        assert!(left_a.moved.is_empty(), "still on b");
        assert_eq!(left_a.departed, vec![user("bob")]);
        assert_eq!(moved(&e.set(&b, at(7, 2), on("bob", 0))), vec![("bob".into(), false)]);
        assert!(e.is_empty());
    }

    #[test]
    fn older_reports_are_ignored_whatever_order_they_come_in() {
        let mut e = Elsewhere::default();
        let a = node("a");
        // The whole state at seq 5 came first (a snapshot); changes up to
        // 5 are already in it.
        e.replace(NodePresence { node: a.clone(), stamp: at(1, 5), users: vec![on("bob", 1)] });
        assert!(e.set(&a, at(1, 4), on("bob", 0)).moved.is_empty(), "older than the snapshot");
        assert!(e.contains(&user("bob")));
        assert_eq!(moved(&e.set(&a, at(1, 6), on("bob", 0))), vec![("bob".into(), false)]);
        // The same whole state again changes nothing; an older one is ignored.
        e.replace(NodePresence { node: a.clone(), stamp: at(1, 6), users: vec![] });
        e.replace(NodePresence { node: a.clone(), stamp: at(1, 3), users: vec![on("carol", 1)] });
        assert!(e.is_empty());
    }

    #[test]
    fn a_whole_state_replaces_the_nodes_users() {
        let mut e = Elsewhere::default();
        let (a, b) = (node("a"), node("b"));
        e.set(&a, at(1, 1), on("bob", 1));
        e.set(&a, at(1, 2), on("carol", 1));
        e.set(&b, at(1, 1), on("carol", 1));
        let applied = e.replace(NodePresence { node: a.clone(), stamp: at(2, 1), users: vec![on("dave", 1), on("carol", 3)] });
        let mut got = moved(&applied);
        got.sort();
        assert_eq!(got, vec![("bob".into(), false), ("dave".into(), true)]);
        assert_eq!(applied.departed, vec![user("bob")]);
        assert_eq!(e.get(&user("carol")).unwrap().connections(), 4);
        assert_eq!(e.connections_on(&a), 4);
    }

    #[test]
    fn a_dead_node_stays_dead_until_a_new_incarnation() {
        let mut e = Elsewhere::default();
        let (a, b) = (node("a"), node("b"));
        e.set(&a, at(3, 1), on("bob", 1));
        e.set(&b, at(1, 1), on("bob", 1));
        e.set(&a, at(3, 2), on("carol", 1));
        let gone = e.gone(&a, 3);
        assert_eq!(moved(&gone), vec![("carol".into(), false)], "bob is still on b");
        assert!(!e.takes(&a, at(3, 9)));
        assert!(e.set(&a, at(3, 3), on("dave", 1)).moved.is_empty(), "a late change of the dead incarnation");
        assert!(e.replace(NodePresence { node: a.clone(), stamp: at(3, 4), users: vec![on("dave", 1)] }).moved.is_empty());
        // It paused and came back: it republishes under a new incarnation.
        assert_eq!(moved(&e.replace(NodePresence { node: a.clone(), stamp: at(4, 1), users: vec![on("carol", 1)] })), vec![("carol".into(), true)]);
        // News of an older death changes nothing.
        assert!(e.gone(&a, 3).moved.is_empty());
        assert!(e.contains(&user("carol")));
        // A node never heard of can be declared dead too (its late news is then ignored).
        e.gone(&node("c"), 1);
        assert!(e.set(&node("c"), at(1, 5), on("x", 1)).moved.is_empty());
    }

    #[test]
    fn names_follow_the_latest_join() {
        let mut e = Elsewhere::default();
        let a = node("a");
        let named = NodeUser { user: user("bob"), connections: 1, name: Some("Bob".into()) };
        let applied = e.set(&a, at(1, 1), named);
        assert_eq!(applied.moved[0].2.as_deref(), Some("Bob"));
        e.set(&a, at(1, 2), on("bob", 2));
        assert_eq!(e.get(&user("bob")).unwrap().name(), Some("Bob"), "a change without a name keeps it");
        let ids: Vec<String> = e.range(None).map(|(u, _)| u.to_string()).collect();
        assert_eq!(ids, vec!["bob"]);
        assert_eq!(e.range(Some(&user("bob"))).count(), 0);
    }
}
