//! Who is in a room: connections grouped by user. Pure state shared by both
//! room kinds; the rooms turn its answers into `user:joined` / `user:left`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::ids::{SessionId, UserId};
use crate::protocol::frames::MemberInfo;

struct UserEntry {
    name: Option<Arc<str>>,
    connections: usize,
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
pub struct Left<P> {
    pub peer: P,
    pub user_id: UserId,
    /// It was the user's last connection: announce `user:left`.
    pub last_connection: bool,
}

/// Members of a room, keyed by session; `P` is how the room reaches one.
pub struct Presence<P> {
    sessions: HashMap<SessionId, (UserId, P)>,
    // BTreeMap keeps `members` lists in a stable order.
    users: BTreeMap<UserId, UserEntry>,
}

impl<P> Default for Presence<P> {
    fn default() -> Self {
        Presence { sessions: HashMap::new(), users: BTreeMap::new() }
    }
}

impl<P> Presence<P> {
    pub fn join(&mut self, session: SessionId, user: UserId, name: Option<Arc<str>>, peer: P) -> Joined {
        if let Some(slot) = self.sessions.get_mut(&session) {
            slot.1 = peer;
            return Joined::AlreadyMember;
        }
        self.sessions.insert(session, (user.clone(), peer));
        match self.users.get_mut(&user) {
            Some(entry) => {
                entry.connections += 1;
                if name.is_some() {
                    entry.name = name;
                }
                Joined::AnotherConnection
            }
            None => {
                self.users.insert(user, UserEntry { name, connections: 1 });
                Joined::FirstConnection
            }
        }
    }

    pub fn leave(&mut self, session: SessionId) -> Option<Left<P>> {
        let (user_id, peer) = self.sessions.remove(&session)?;
        let last_connection = match self.users.get_mut(&user_id) {
            Some(entry) if entry.connections > 1 => {
                entry.connections -= 1;
                false
            }
            _ => {
                self.users.remove(&user_id);
                true
            }
        };
        Some(Left { peer, user_id, last_connection })
    }

    pub fn contains(&self, session: SessionId) -> bool {
        self.sessions.contains_key(&session)
    }

    /// Sessions of one user in this room.
    pub fn sessions_of(&self, user: &UserId) -> Vec<SessionId> {
        self.sessions
            .iter()
            .filter(|(_, (u, _))| u == user)
            .map(|(s, _)| *s)
            .collect()
    }

    pub fn peers(&self) -> impl Iterator<Item = (SessionId, &P)> {
        self.sessions.iter().map(|(s, (_, p))| (*s, p))
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    pub fn connection_count(&self) -> usize {
        self.sessions.len()
    }

    pub fn name_of(&self, user: &UserId) -> Option<Arc<str>> {
        self.users.get(user).and_then(|e| e.name.clone())
    }

    pub fn members(&self) -> Vec<MemberInfo> {
        self.users
            .iter()
            .map(|(user_id, e)| MemberInfo {
                user_id: user_id.clone(),
                name: e.name.as_deref().map(str::to_owned),
                connections: e.connections,
            })
            .collect()
    }
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
        let members = p.members();
        assert_eq!(members.len(), 2);
        assert_eq!(members[0].user_id, user("alice"));
        assert_eq!(members[0].connections, 2);
        assert_eq!(members[0].name.as_deref(), Some("Alice"));

        let left = p.leave(a1).unwrap();
        assert!(!left.last_connection);
        assert!(p.leave(a1).is_none(), "leaving twice changes nothing");
        assert!(p.leave(a2).unwrap().last_connection);
        assert_eq!(p.members().len(), 1);
        assert!(p.leave(b).unwrap().last_connection);
        assert!(p.is_empty());
    }
}
