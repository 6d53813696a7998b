//! How a session reaches rooms: the addresses of joined rooms are kept;
//! others are resolved through the registry. A request is put into the
//! room's mailbox as soon as its address is known, so requests from one
//! connection reach a room in the order they were sent. A room that stopped
//! in between (idle rooms stop) is chased by [`route::deliver`].

use std::time::Instant;

use actix::dev::ToEnvelope;
use actix::{ActorFutureExt, Addr, AsyncContext, Context, Handler, Message, WrapFuture};

use crate::chat::ChatRoom;
use crate::document::DocumentRoom;
use crate::ids::{ChatId, DocumentId, RoomName, SessionId};
use crate::protocol::WireError;
use crate::registry::{route, Hosted};
use crate::members::Leave;
use crate::session::Session;

/// A joined room's actor.
#[derive(Clone)]
pub enum RoomAddr {
    Document(Addr<DocumentRoom>),
    Chat(Addr<ChatRoom>),
}

impl RoomAddr {
    /// Leaves without an answer (the session is stopping).
    pub fn leave(&self, session_id: SessionId) {
        let msg = Leave { session_id, requester: None };
        // do_send: a stopping session must not wait, and each session sends
        // at most one Leave per room it joined.
        match self {
            RoomAddr::Document(a) => a.do_send(msg),
            RoomAddr::Chat(a) => a.do_send(msg),
        }
    }
}

/// Room kinds a session can route to.
pub trait Routable: Hosted {
    fn name(id: &Self::Id) -> RoomName;
    fn cached(addr: &RoomAddr) -> Option<Addr<Self>>;
    fn wrap(addr: Addr<Self>) -> RoomAddr;
}

impl Routable for DocumentRoom {
    fn name(id: &DocumentId) -> RoomName {
        RoomName::Document(id.clone())
    }
    fn cached(addr: &RoomAddr) -> Option<Addr<Self>> {
        match addr {
            RoomAddr::Document(a) => Some(a.clone()),
            RoomAddr::Chat(_) => None,
        }
    }
    fn wrap(addr: Addr<Self>) -> RoomAddr {
        RoomAddr::Document(addr)
    }
}

impl Routable for ChatRoom {
    fn name(id: &ChatId) -> RoomName {
        RoomName::Chat(id.clone())
    }
    fn cached(addr: &RoomAddr) -> Option<Addr<Self>> {
        match addr {
            RoomAddr::Chat(a) => Some(a.clone()),
            RoomAddr::Document(_) => None,
        }
    }
    fn wrap(addr: Addr<Self>) -> RoomAddr {
        RoomAddr::Chat(addr)
    }
}

/// What to do with the room's answer (or the failure to reach it).
pub type Done<T> = Box<dyn FnOnce(&mut Session, &mut Context<Session>, Result<T, WireError>)>;

/// One routed request.
pub struct Route<R: Routable, M> {
    pub id: R::Id,
    pub msg: M,
    /// Keep the room's address for later requests (joins).
    pub remember: bool,
}

impl Session {
    /// Routes a request for `event`; `done` runs once, when the room has
    /// answered (or could not be reached).
    pub(super) fn route<R, M>(
        &mut self,
        ctx: &mut Context<Self>,
        event: &'static str,
        route: Route<R, M>,
        done: Done<M::Result>,
    ) where
        R: Routable + Handler<M>,
        R::Context: ToEnvelope<R, M>,
        M: Message + Clone + Send + 'static,
        M::Result: Send,
    {
        let started = self.begin();
        let done: Done<M::Result> = Box::new(move |act, ctx, answer| {
            done(act, ctx, answer);
            act.end(event, started, ctx);
        });
        let name = R::name(&route.id);
        if !route.remember {
            if let Some(e) = self.touch(&name) {
                return done(self, ctx, Err(e));
            }
        }
        if let Some(addr) = self.rooms.get(&name).and_then(R::cached) {
            self.send_to_room(ctx, name, addr, route, done);
            return;
        }
        let open = route::open::<R>(&self.deps.registry, route.id.clone(), None);
        // Waiting here (a registry round trip, no I/O) keeps this
        // connection's requests in order: the next frame is read only once
        // this one is in the room's mailbox.
        ctx.wait(open.into_actor(self).map(move |opened, act, ctx| match opened {
            Ok(addr) => {
                if route.remember || act.rooms.contains_key(&name) {
                    act.rooms.insert(name.clone(), R::wrap(addr.clone()));
                }
                act.send_to_room(ctx, name, addr, route, done);
            }
            Err(e) => done(act, ctx, Err(e.into())),
        }));
    }

    /// `LIMIT_EXCEEDED` when a request to a room this connection has not
    /// joined (a document's edit or share; chats take only members')
    /// would make it hold more than `max_rooms_per_connection` rooms open:
    /// those it joined and those it sent such requests to within
    /// `room_idle` (a room is loaded to answer, and stays loaded that
    /// long). Without it, edits without joins kept any number of documents
    /// in memory, a connection's rate limit's worth per idle period.
    fn touch(&mut self, name: &RoomName) -> Option<WireError> {
        if self.rooms.contains_key(name) {
            return None;
        }
        let (now, idle, max) = (Instant::now(), self.settings().room_idle, self.settings().max_rooms_per_connection);
        self.touched.retain(|_, at| now.duration_since(*at) < idle);
        if !self.touched.contains_key(name) && self.rooms.len() + self.touched.len() >= max {
            return Some(WireError::limit(
                "max_rooms_per_connection",
                format!("this connection already holds {max} rooms open (joined, or sent edits to in the last {} ms)", idle.as_millis()),
            ));
        }
        self.touched.insert(name.clone(), now);
        None
    }

    fn send_to_room<R, M>(
        &mut self,
        ctx: &mut Context<Self>,
        name: RoomName,
        addr: Addr<R>,
        route: Route<R, M>,
        done: Done<M::Result>,
    ) where
        R: Routable + Handler<M>,
        R::Context: ToEnvelope<R, M>,
        M: Message + Clone + Send + 'static,
        M::Result: Send,
    {
        let delivered = route::deliver(&self.deps.registry, route.id, addr, route.msg);
        ctx.spawn(delivered.into_actor(self).map(move |(answer, addr), act, ctx| {
            // The room may have stopped and been restarted on the way:
            // the next requests go where this one ended.
            if let Some(kept) = act.rooms.get_mut(&name) {
                *kept = R::wrap(addr);
            }
            done(act, ctx, answer);
        }));
    }
}
