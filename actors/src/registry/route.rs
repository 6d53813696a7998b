//! Reaching a room through the registry, and chasing it when it stopped.
//!
//! A room stops itself when idle (see [`crate::lifecycle::IdleStop`]), so
//! an address may be stale by the time a request reaches it: its mailbox
//! is closed. The request is then sent to the room the registry resolves
//! again, naming the stale address so that a new room is started. Both the
//! HTTP API ([`call_room`]) and sessions (which keep the addresses of the
//! rooms they joined) go through [`deliver`].

use std::future::Future;

use actix::dev::{Request, ToEnvelope};
use actix::{Addr, Arbiter, Handler, MailboxError, Message};

use crate::protocol::WireError;
use crate::registry::{Hosted, OpenRoom, Registry};

/// How many times a request is sent before it gives up on a room that
/// keeps stopping under it. A room stops only after `room_idle` without
/// members, so even one chase is rare; three sends mean something is
/// wrong, and the client is told to retry.
pub const ROUTE_ATTEMPTS: u8 = 3;

/// Asks the registry for the room's actor, started on this thread if the
/// registry has no room threads. `stale`: an address found stopped.
pub fn open<R: Hosted>(registry: &Addr<Registry>, id: R::Id, stale: Option<Addr<R>>) -> Request<Registry, OpenRoom<R>> {
    registry.send(OpenRoom::<R> { id, stale, home: Arbiter::current() })
}

/// Sends `msg` to the room at `addr` and waits for its answer; if the room
/// stopped, resolves it again and resends, up to [`ROUTE_ATTEMPTS`] sends.
/// The first send happens now, before this returns: a caller that reads
/// its next request only afterwards keeps its requests in order. Yields
/// the answer and the address the last send went to.
pub fn deliver<R, M>(
    registry: &Addr<Registry>,
    id: R::Id,
    addr: Addr<R>,
    msg: M,
) -> impl Future<Output = (Result<M::Result, WireError>, Addr<R>)> + 'static
where
    R: Hosted + Handler<M>,
    R::Context: ToEnvelope<R, M>,
    M: Message + Clone + Send + 'static,
    M::Result: Send,
{
    let registry = registry.clone();
    let mut reply = addr.send(msg.clone());
    async move {
        let mut addr = addr;
        let mut sent = 1;
        loop {
            match reply.await {
                Ok(answer) => return (Ok(answer), addr),
                Err(MailboxError::Closed) if sent < ROUTE_ATTEMPTS => {
                    addr = match open(&registry, id.clone(), Some(addr.clone())).await {
                        Ok(fresh) => fresh,
                        Err(e) => return (Err(e.into()), addr),
                    };
                    reply = addr.send(msg.clone());
                    sent += 1;
                }
                Err(MailboxError::Closed) => return (Err(WireError::busy("the room kept restarting; retry")), addr),
                Err(e) => return (Err(e.into()), addr),
            }
        }
    }
}

/// Sends `msg` to a room from outside a session (the HTTP API).
pub async fn call_room<R, M>(registry: &Addr<Registry>, id: R::Id, msg: M) -> Result<M::Result, WireError>
where
    R: Hosted + Handler<M>,
    R::Context: ToEnvelope<R, M>,
    M: Message + Clone + Send + 'static,
    M::Result: Send,
{
    let addr = open::<R>(registry, id.clone(), None).await?;
    deliver(registry, id, addr, msg).await.0
}
