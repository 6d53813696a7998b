//! Cluster mode: a revocation that Redis lost is repaired from the
//! database, the record of access as of everything else. The sharing
//! transaction counts each change of a document's access list; the
//! registry's periodic check reads the counts of every open document
//! ([`DocumentStored`]), and a room whose count moved since it last looked
//! reads its members' roles again: users without access are evicted as
//! by a revocation, editors and viewers are told apart anew.
//!
//! A room checks once after it starts (it cannot know what changed
//! before), and then only when the count moves: access changes are rare,
//! and each costs one query per node where the document is open.

use std::collections::HashMap;

use actix::{ActorFutureExt, AsyncContext, Context, WrapFuture};

use super::DocumentRoom;
#[cfg(doc)]
use crate::cluster::DocumentStored;
use crate::ids::{SessionId, UserId};

/// Where a room stands with its document's access count.
#[derive(Default)]
pub(super) struct Checked {
    /// The count as of the last check of the members' roles.
    version: Option<i64>,
    /// A check is reading.
    reading: bool,
}

impl DocumentRoom {
    /// The database's access count of the document (the periodic check).
    pub(super) fn access_stored(&mut self, count: i64, ctx: &mut Context<Self>) {
        if self.access.version == Some(count) || self.access.reading {
            return;
        }
        if self.members.is_empty() {
            // Whoever joins later has its role read by its join.
            self.access.version = Some(count);
            return;
        }
        self.check_roles(ctx);
    }

    /// Reads the roles of the users connected here, and applies them to the
    /// connections that were members when the read started (a later join
    /// read its role itself).
    fn check_roles(&mut self, ctx: &mut Context<Self>) {
        self.access.reading = true;
        let checked: Vec<(UserId, Vec<SessionId>)> = self.members.local_users();
        let users: Vec<UserId> = checked.iter().map(|(u, _)| u.clone()).collect();
        let id = self.id.clone();
        let read = self.db.run(move |s| s.document_roles(&id, &users));
        ctx.spawn(read.into_actor(self).map(move |result, room, ctx| {
            room.access.reading = false;
            let (version, roles) = match result {
                Ok(found) => found,
                Err(e) => {
                    // The next check tries again: the count did not move here.
                    log::warn!("{}: cannot check the members' access: {e}", room.members.room());
                    return;
                }
            };
            room.access.version = Some(version);
            let roles: HashMap<UserId, _> = roles.into_iter().collect();
            for (user, sessions) in checked {
                let sessions: Vec<SessionId> = sessions.into_iter().filter(|s| room.members.contains(*s)).collect();
                match roles.get(&user) {
                    None => {
                        room.editors.remove(&user);
                        room.evict_sessions(&sessions);
                    }
                    Some(role) if role.can_edit() => {
                        room.editors.insert(user);
                    }
                    Some(_) => {
                        room.editors.remove(&user);
                    }
                }
            }
            room.activity_changed(ctx);
        }));
    }
}
