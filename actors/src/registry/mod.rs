//! The RoomRegistry: finds or starts the actor of a room (on the thread of
//! the connection that asked first, or on dedicated room threads), forgets
//! rooms that stopped, and keeps the list of live sessions per user (for
//! `max_connections_per_user` and shutdown).
//!
//! Sessions ask the registry only to resolve a room; after that they talk
//! to the room directly. A room stops itself when idle; a request that hits
//! a stopped room's address asks again, naming the stale address
//! ([`route`], for sessions and the HTTP API alike).
//!
//! In cluster mode the registry also runs the periodic check of its open
//! rooms ([`watch`]), closes a user's connections when the HTTP API (of
//! any node) asks, and counts `max_connections_per_user` over every node
//! (through the cluster's shared count, after the local one).

pub mod route;
pub mod watch;

use std::collections::HashMap;
use std::future::Future;

use actix::{
    Actor, ActorFutureExt, Addr, Arbiter, ArbiterHandle, AsyncContext, Context, Handler, Message, MessageResult, Recipient,
    ResponseActFuture, WrapFuture,
};

use crate::chat::ChatRoom;
use crate::document::DocumentRoom;
use crate::ids::{ChatId, DocumentId, SessionId, UserId};
use crate::lifecycle::{RoomKind, RoomStopped};
pub use crate::lifecycle::RoomDeps;
use crate::protocol::WireError;
use crate::peer::Control;

pub use route::call_room;

/// Resolves a room's actor, starting it if needed. `stale`: an address the
/// caller found stopped.
pub struct OpenRoom<R: RoomKind> {
    pub id: R::Id,
    pub stale: Option<Addr<R>>,
    /// The caller's thread: where a new room starts when the registry has
    /// no room threads of its own.
    pub home: ArbiterHandle,
}

impl<R: RoomKind> Message for OpenRoom<R> {
    type Result = Addr<R>;
}

/// Room kinds the registry keeps: where it keeps them, and how it makes
/// a new one.
pub trait Hosted: RoomKind {
    fn rooms(registry: &mut Registry) -> &mut HashMap<Self::Id, Addr<Self>>;
    fn build(id: Self::Id, deps: RoomDeps, registry: Recipient<RoomStopped<Self>>) -> Self;
}

impl Hosted for DocumentRoom {
    fn rooms(registry: &mut Registry) -> &mut HashMap<DocumentId, Addr<Self>> {
        &mut registry.documents
    }
    fn build(id: DocumentId, deps: RoomDeps, registry: Recipient<RoomStopped<Self>>) -> Self {
        DocumentRoom::new(id, deps, registry)
    }
}

impl Hosted for ChatRoom {
    fn rooms(registry: &mut Registry) -> &mut HashMap<ChatId, Addr<Self>> {
        &mut registry.chats
    }
    fn build(id: ChatId, deps: RoomDeps, registry: Recipient<RoomStopped<Self>>) -> Self {
        ChatRoom::new(id, deps, registry)
    }
}

/// An authenticated connection announces itself; refused past
/// `max_connections_per_user` or while shutting down.
#[derive(Message)]
#[rtype(result = "Result<(), WireError>")]
pub struct Register {
    pub user_id: UserId,
    pub session_id: SessionId,
    pub control: Recipient<Control>,
}

/// Registers an authenticated connection for its user: the one way both
/// the WebSocket route (header token, before the upgrade) and a session
/// (first-frame `auth`) do it. Refused with `LIMIT_EXCEEDED` past
/// `max_connections_per_user`, or `SERVER_BUSY` while shutting down; the
/// route answers those with their HTTP statuses (429, 503), a session
/// with close 1008 or 1001.
pub fn register(
    registry: &Addr<Registry>,
    user_id: UserId,
    session_id: SessionId,
    control: Recipient<Control>,
) -> impl Future<Output = Result<(), WireError>> + 'static {
    let sent = registry.send(Register { user_id, session_id, control });
    async move { sent.await? }
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Unregister {
    pub user_id: UserId,
    pub session_id: SessionId,
}

/// Tells every session to close with 1001; answers how many were told.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Shutdown;

/// Closes every connection of a user on this node with 4003 (the HTTP
/// API's `DELETE /api/users/{user_id}/connections`, from this node or
/// another); answers how many were closed.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct DisconnectUser {
    pub user_id: UserId,
}

/// Counts for `/metrics`.
#[derive(Message)]
#[rtype(result = "RegistryStats")]
pub struct Stats;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegistryStats {
    pub sessions: usize,
    pub users: usize,
    pub document_rooms: usize,
    pub chat_rooms: usize,
}

pub struct Registry {
    rooms: RoomDeps,
    /// Threads that run room actors. Empty: a room runs on the thread of
    /// the connection that opened it, so that its pushes to members on
    /// that thread wake no other thread (on one core, every push would
    /// otherwise cost a thread switch).
    arbiters: Vec<ArbiterHandle>,
    next_arbiter: usize,
    documents: HashMap<DocumentId, Addr<DocumentRoom>>,
    chats: HashMap<ChatId, Addr<ChatRoom>>,
    users: HashMap<UserId, HashMap<SessionId, Recipient<Control>>>,
    shutting_down: bool,
}

impl Registry {
    /// Creates the registry and `room_threads` arbiters for rooms (none:
    /// rooms run on connection threads).
    pub fn new(rooms: RoomDeps, room_threads: usize) -> Registry {
        let arbiters = (0..room_threads).map(|_| Arbiter::new().handle()).collect();
        Registry {
            rooms,
            arbiters,
            next_arbiter: 0,
            documents: HashMap::new(),
            chats: HashMap::new(),
            users: HashMap::new(),
            shutting_down: false,
        }
    }

    fn arbiter(&mut self, home: ArbiterHandle) -> ArbiterHandle {
        if self.arbiters.is_empty() {
            return home;
        }
        self.next_arbiter = (self.next_arbiter + 1) % self.arbiters.len();
        self.arbiters[self.next_arbiter].clone()
    }
}

impl Actor for Registry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Every session asks here first; let them queue rather than fail.
        ctx.set_mailbox_capacity(4096);
        if self.rooms.cluster.is_some() {
            ctx.run_interval(self.rooms.settings.check_interval, |registry, ctx| registry.check_positions(ctx));
        }
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        for a in &self.arbiters {
            a.stop();
        }
    }
}

/// Returns the live room in `map`, or starts one with `start`.
fn resolve<I, R>(
    map: &mut HashMap<I, Addr<R>>,
    id: I,
    stale: Option<Addr<R>>,
    start: impl FnOnce() -> Addr<R>,
) -> Addr<R>
where
    I: Eq + std::hash::Hash,
    R: Actor,
{
    if let Some(addr) = map.get(&id) {
        if addr.connected() && stale.as_ref() != Some(addr) {
            return addr.clone();
        }
    }
    let addr = start();
    map.insert(id, addr.clone());
    addr
}

impl<R: Hosted> Handler<OpenRoom<R>> for Registry {
    type Result = MessageResult<OpenRoom<R>>;

    fn handle(&mut self, msg: OpenRoom<R>, ctx: &mut Context<Self>) -> Self::Result {
        let (deps, me) = (self.rooms.clone(), ctx.address().recipient());
        let arbiter = self.arbiter(msg.home);
        let id = msg.id.clone();
        MessageResult(resolve(R::rooms(self), msg.id, msg.stale, move || {
            R::start_in_arbiter(&arbiter, move |_| R::build(id, deps, me))
        }))
    }
}

impl<R: Hosted> Handler<RoomStopped<R>> for Registry {
    type Result = ();

    fn handle(&mut self, msg: RoomStopped<R>, _: &mut Context<Self>) {
        let rooms = R::rooms(self);
        if rooms.get(&msg.id) == Some(&msg.addr) {
            rooms.remove(&msg.id);
            shrink(rooms);
        }
    }
}

/// A map that grew in a burst (a storm of reconnections, rooms opened by a
/// crowd) gives its memory back once it is mostly empty: a `HashMap` keeps
/// its largest capacity otherwise. Halving at a quarter full keeps the cost
/// per removal constant on average.
fn shrink<K: Eq + std::hash::Hash, V>(map: &mut HashMap<K, V>) {
    if map.capacity() > 64 && map.len() * 4 < map.capacity() {
        map.shrink_to(map.len() * 2);
    }
}

fn over_limit(user: &UserId, limit: usize) -> WireError {
    WireError::limit("max_connections_per_user", format!("user {user} already has {limit} connections"))
}

impl Handler<Register> for Registry {
    type Result = ResponseActFuture<Self, Result<(), WireError>>;

    fn handle(&mut self, msg: Register, _: &mut Context<Self>) -> Self::Result {
        let refuse = |e| -> Self::Result { Box::pin(actix::fut::ready(Err(e))) };
        if self.shutting_down {
            return refuse(WireError::busy("the server is shutting down; reconnect shortly"));
        }
        let limit = self.rooms.settings.max_connections_per_user;
        let sessions = self.users.entry(msg.user_id.clone()).or_default();
        if sessions.len() >= limit {
            if sessions.is_empty() {
                self.users.remove(&msg.user_id);
            }
            return refuse(over_limit(&msg.user_id, limit));
        }
        // Counted here at once: the registry goes on while the cluster
        // answers, and a second connection must see this one.
        sessions.insert(msg.session_id, msg.control);
        let Some(cluster) = &self.rooms.cluster else { return Box::pin(actix::fut::ready(Ok(()))) };
        let admitted = cluster.admit(&msg.user_id, sessions.len(), limit);
        let (user, session) = (msg.user_id, msg.session_id);
        Box::pin(admitted.into_actor(self).map(move |admitted, registry, _| {
            if admitted {
                return Ok(());
            }
            registry.forget(&user, session);
            Err(over_limit(&user, limit))
        }))
    }
}

impl Registry {
    /// Removes a session from its user's, and tells the cluster the count.
    fn forget(&mut self, user: &UserId, session: SessionId) {
        let Some(sessions) = self.users.get_mut(user) else { return };
        if sessions.remove(&session).is_none() {
            return;
        }
        let left = sessions.len();
        if left == 0 {
            self.users.remove(user);
            shrink(&mut self.users);
        }
        if let Some(cluster) = &self.rooms.cluster {
            cluster.connections(user, left);
        }
    }
}

impl Handler<Unregister> for Registry {
    type Result = ();

    fn handle(&mut self, msg: Unregister, _: &mut Context<Self>) {
        self.forget(&msg.user_id, msg.session_id);
    }
}

impl Handler<Shutdown> for Registry {
    type Result = usize;

    fn handle(&mut self, _: Shutdown, _: &mut Context<Self>) -> usize {
        self.shutting_down = true;
        let mut told = 0;
        for sessions in self.users.values() {
            for control in sessions.values() {
                control.do_send(Control::Shutdown);
                told += 1;
            }
        }
        told
    }
}

impl Handler<DisconnectUser> for Registry {
    type Result = usize;

    fn handle(&mut self, msg: DisconnectUser, _: &mut Context<Self>) -> usize {
        // The sessions are closing from now on: they stop counting for their
        // user here (a second call closes nothing more, and a new connection
        // is not refused for their sake); each one's own Unregister, when it
        // stops, then finds nothing left to forget.
        let Some(sessions) = self.users.remove(&msg.user_id) else { return 0 };
        for control in sessions.values() {
            control.do_send(Control::Disconnect);
        }
        if let Some(cluster) = &self.rooms.cluster {
            cluster.connections(&msg.user_id, 0);
        }
        sessions.len()
    }
}

impl Handler<Stats> for Registry {
    type Result = MessageResult<Stats>;

    fn handle(&mut self, _: Stats, _: &mut Context<Self>) -> Self::Result {
        MessageResult(RegistryStats {
            sessions: self.users.values().map(HashMap::len).sum(),
            users: self.users.len(),
            document_rooms: self.documents.values().filter(|a| a.connected()).count(),
            chat_rooms: self.chats.values().filter(|a| a.connected()).count(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_map_emptied_after_a_burst_gives_its_capacity_back() {
        let mut map: HashMap<u32, u32> = (0..10_000).map(|i| (i, i)).collect();
        let burst = map.capacity();
        for i in 0..10_000 {
            map.remove(&i);
            shrink(&mut map);
            assert!(map.capacity() <= burst);
        }
        assert!(map.capacity() <= 64 * 2, "capacity {} left after the burst", map.capacity());
        // A small map is left alone: shrinking it would only churn.
        let mut small: HashMap<u32, u32> = HashMap::with_capacity(50);
        let cap = small.capacity();
        small.insert(1, 1);
        shrink(&mut small);
        assert_eq!(small.capacity(), cap);
    }
}
