//! Reaching a room through the registry, and chasing it when it stopped.

use actix::{Addr, Arbiter, Handler, Message};

use crate::protocol::WireError;
use crate::lifecycle::RoomKind;
use crate::registry::{OpenRoom, Registry};

/// Sends `msg` to a room from outside a session (the HTTP API), resolving
/// the room through the registry and chasing it if it stopped meanwhile.
pub async fn call_room<R, M>(registry: &Addr<Registry>, id: R::Id, msg: M) -> Result<M::Result, WireError>
where
    R: RoomKind + Handler<M>,
    R::Context: actix::dev::ToEnvelope<R, M>,
    M: Message + Clone + Send + 'static,
    M::Result: Send,
    Registry: Handler<OpenRoom<R>>,
{
    let mut stale = None;
    for _ in 0..3 {
        let addr = registry.send(OpenRoom::<R> { id: id.clone(), stale: stale.take(), home: Arbiter::current() }).await?;
        match addr.send(msg.clone()).await {
            Ok(answer) => return Ok(answer),
            Err(actix::MailboxError::Closed) => stale = Some(addr),
            Err(e) => return Err(e.into()),
        }
    }
    Err(WireError::busy("the room kept restarting; retry"))
}
