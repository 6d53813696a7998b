//! How a session reaches rooms: the addresses of joined rooms are kept;
//! others are resolved through the registry. A request is put into the
//! room's mailbox as soon as its address is known, so requests from one
//! connection reach a room in the order they were sent. A room that stopped
//! in between (idle rooms stop) is resolved again and the request resent.

use actix::dev::ToEnvelope;
use actix::{ActorFutureExt, Addr, AsyncContext, Context, Handler, MailboxError, Message, WrapFuture};

use crate::chat::ChatRoom;
use crate::document::DocumentRoom;
use crate::ids::{ChatId, DocumentId, RoomName, SessionId};
use crate::protocol::WireError;
use crate::lifecycle::RoomKind;
use crate::registry::{OpenRoom, Registry};
use crate::members::Leave;
use crate::session::Session;

/// How many times a request chases a room that stopped under it.
const ROUTE_ATTEMPTS: u8 = 3;

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
pub trait Routable: RoomKind {
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
        Registry: Handler<OpenRoom<R>>,
    {
        let started = self.begin();
        let done: Done<M::Result> = Box::new(move |act, ctx, answer| {
            done(act, ctx, answer);
            act.end(event, started, ctx);
        });
        self.route_attempt(ctx, route, None, 1, done);
    }

    fn route_attempt<R, M>(
        &mut self,
        ctx: &mut Context<Self>,
        route: Route<R, M>,
        stale: Option<Addr<R>>,
        attempt: u8,
        done: Done<M::Result>,
    ) where
        R: Routable + Handler<M>,
        R::Context: ToEnvelope<R, M>,
        M: Message + Clone + Send + 'static,
        M::Result: Send,
        Registry: Handler<OpenRoom<R>>,
    {
        let name = R::name(&route.id);
        let cached = match stale {
            None => self.rooms.get(&name).and_then(R::cached),
            Some(_) => None,
        };
        if let Some(addr) = cached {
            self.send_to_room(ctx, addr, route, attempt, done);
            return;
        }
        let open = self.deps.registry.send(OpenRoom::<R> { id: route.id.clone(), stale, home: actix::Arbiter::current() });
        // Waiting here (a registry round trip, no I/O) keeps this
        // connection's requests in order: the next frame is read only once
        // this one is in the room's mailbox.
        ctx.wait(open.into_actor(self).map(move |opened, act, ctx| match opened {
            Ok(addr) => {
                if route.remember || act.rooms.contains_key(&name) {
                    act.rooms.insert(name, R::wrap(addr.clone()));
                }
                act.send_to_room(ctx, addr, route, attempt, done);
            }
            Err(e) => done(act, ctx, Err(e.into())),
        }));
    }

    fn send_to_room<R, M>(
        &mut self,
        ctx: &mut Context<Self>,
        addr: Addr<R>,
        route: Route<R, M>,
        attempt: u8,
        done: Done<M::Result>,
    ) where
        R: Routable + Handler<M>,
        R::Context: ToEnvelope<R, M>,
        M: Message + Clone + Send + 'static,
        M::Result: Send,
        Registry: Handler<OpenRoom<R>>,
    {
        let reply = addr.send(route.msg.clone());
        ctx.spawn(reply.into_actor(self).map(move |answer, act, ctx| match answer {
            Ok(v) => done(act, ctx, Ok(v)),
            Err(MailboxError::Closed) if attempt < ROUTE_ATTEMPTS => {
                act.route_attempt(ctx, route, Some(addr), attempt + 1, done);
            }
            Err(e) => done(act, ctx, Err(e.into())),
        }));
    }
}
