//! One actor per WebSocket connection. It authenticates the connection,
//! decodes every frame once into a typed request, enforces the
//! per-connection limits (rate, rooms), routes requests to rooms or the
//! store, and owns the connection's bounded outbound queue, which the
//! transport drains into the socket in order ([`socket::Outlet`]).
//!
//! Lifecycle: `AwaitingAuth` (first frame must be `auth`, within
//! `auth_timeout`) → open (requests) → closing (a Close is queued; the actor
//! stops when the transport has sent it). On stop it leaves its rooms and
//! unregisters from the registry.

mod dispatch;
pub mod rate;
mod routing;
pub mod socket;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{
    Actor, ActorContext, ActorFutureExt, Addr, AsyncContext, Context, Handler, SpawnHandle, StreamHandler,
    WrapFuture,
};
use bytestring::ByteString;
use futures_util::Stream;
use tokio::sync::oneshot;

use crate::auth::{Identity, TokenVerifier};
use crate::config::Settings;
use crate::ids::{RoomName, SessionId};
use crate::model::Timestamp;
use crate::observer::Observer;
use crate::protocol::frames::{self, Connect};
use crate::protocol::{decode, ClientRequest, CloseCode, DecodeLimits, ErrorCode, Ref, Request, WireError, PROTOCOL_VERSION};
use crate::registry::{self, Registry, Unregister};
use crate::store::Db;

use crate::peer::{Control, Outbound, Peer};
use crate::queue::{FrameSender, TrySendError};
use self::rate::{RateLimiter, Verdict};
use self::routing::RoomAddr;
use self::socket::{FrameLimit, Inbound, Outlet, AUTH_FRAME_LIMIT};

/// How long a queued Close may take to reach the client before the actor
/// stops anyway (a client that stopped reading never takes it).
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// What a session needs from the rest of the engine.
#[derive(Clone)]
pub struct SessionDeps {
    pub registry: Addr<Registry>,
    pub db: Db,
    pub verifier: Arc<dyn TokenVerifier>,
    pub settings: Arc<Settings>,
}

impl SessionDeps {
    fn observer(&self) -> &Arc<dyn Observer> {
        self.db.observer()
    }
}

pub struct Session {
    id: SessionId,
    deps: SessionDeps,
    queue: FrameSender,
    /// Tells the transport to close at once (slow consumers).
    abort: Option<oneshot::Sender<CloseCode>>,
    /// Resolves when the transport stops writing.
    finished: Option<oneshot::Receiver<()>>,
    identity: Option<Identity>,
    /// Whether the registry counts this session for its user.
    registered: bool,
    closing: bool,
    /// Rooms this connection joined (or is joining), and their actors.
    rooms: HashMap<RoomName, RoomAddr>,
    /// Documents not joined that this connection sent an edit or a share
    /// to, and when it last did: each keeps its room loaded for
    /// `room_idle`, so they count toward `max_rooms_per_connection` for
    /// that long ([`Session::touch`]).
    touched: HashMap<RoomName, Instant>,
    last_heard: Instant,
    limiter: RateLimiter,
    expiry: Option<SpawnHandle>,
    decode_limits: DecodeLimits,
    /// What the transport may read: raised to `max_frame_bytes` once
    /// authenticated.
    frame_limit: FrameLimit,
    peer: Option<Peer>,
    /// Requests whose response is not queued yet.
    inflight: usize,
    /// The server is stopping: refuse new requests, close with 1001 once
    /// `inflight` reaches zero.
    draining: bool,
}

/// Builds a session in two steps, so that its address exists (and can be
/// registered for the per-user limit) before the WebSocket upgrade is
/// answered.
pub struct SessionStarter {
    ctx: Context<Session>,
    id: SessionId,
    frame_limit: FrameLimit,
}

impl Default for SessionStarter {
    fn default() -> Self {
        SessionStarter { ctx: Context::new(), id: SessionId::new(), frame_limit: FrameLimit::new(AUTH_FRAME_LIMIT) }
    }
}

impl SessionStarter {
    pub fn id(&self) -> SessionId {
        self.id
    }

    /// Registers the connection, authenticated before the upgrade, for
    /// its user (see [`registry::register`]).
    pub fn register(&self, registry: &Addr<Registry>, identity: &Identity) -> impl Future<Output = Result<(), WireError>> {
        registry::register(registry, identity.user_id.clone(), self.id, self.ctx.address().recipient())
    }

    /// The limit the transport's reader must enforce on every frame it
    /// reads for this session.
    pub fn frame_limit(&self) -> FrameLimit {
        self.frame_limit.clone()
    }

    /// Starts the actor and returns the outlet the transport must write
    /// out. `identity`: the connection was authenticated (and registered)
    /// before the upgrade.
    pub fn start<I>(mut self, deps: SessionDeps, inbound: I, identity: Option<Identity>) -> (Addr<Session>, Outlet)
    where
        I: Stream<Item = Inbound> + 'static,
    {
        let settings = deps.settings.clone();
        let (queue, outbound) = crate::queue::queue(settings.max_outbound_queue, settings.max_outbound_bytes);
        let (abort, abort_rx) = oneshot::channel();
        let (finished_tx, finished) = oneshot::channel();
        let now = Instant::now();
        let before_auth = AUTH_FRAME_LIMIT.min(settings.max_frame_bytes);
        self.frame_limit.set(if identity.is_some() { settings.max_frame_bytes } else { before_auth });
        let session = Session {
            id: self.id,
            queue,
            abort: Some(abort),
            finished: Some(finished),
            registered: identity.is_some(),
            identity,
            closing: false,
            rooms: HashMap::new(),
            touched: HashMap::new(),
            last_heard: now,
            limiter: RateLimiter::new(settings.rate_per_second, settings.rate_burst, now),
            expiry: None,
            decode_limits: settings.decode_limits(),
            frame_limit: self.frame_limit,
            peer: None,
            inflight: 0,
            draining: false,
            deps,
        };
        self.ctx.add_stream(inbound);
        let outlet = Outlet { queue: outbound, abort: abort_rx, finished: finished_tx };
        (self.ctx.run(session), outlet)
    }
}

impl Actor for Session {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.deps.observer().session_opened();
        if let Some(finished) = self.finished.take() {
            ctx.spawn(finished.into_actor(self).map(|_, _, ctx| ctx.stop()));
        }
        let heartbeat = self.deps.settings.heartbeat;
        ctx.run_interval(heartbeat, |act, ctx| act.heartbeat(ctx));
        if self.identity.is_some() {
            self.authenticated(None, ctx);
        } else {
            ctx.run_later(self.deps.settings.auth_timeout, |act, ctx| {
                if act.identity.is_none() {
                    let e = WireError::new(ErrorCode::Unauthenticated, "not authenticated within auth_timeout_ms");
                    act.refuse_auth(None, &e, ctx);
                }
            });
        }
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        for room in self.rooms.values() {
            room.leave(self.id);
        }
        if let (true, Some(identity)) = (self.registered, &self.identity) {
            self.deps.registry.do_send(Unregister { user_id: identity.user_id.clone(), session_id: self.id });
        }
        self.deps.observer().session_closed();
        log::debug!("session {}: closed", self.id);
    }
}

impl Session {
    fn settings(&self) -> &Settings {
        &self.deps.settings
    }

    /// Queues a frame of our own making.
    fn send(&mut self, frame: ByteString, ctx: &mut Context<Self>) {
        self.enqueue(Outbound::Frame(frame), ctx);
    }

    fn enqueue(&mut self, out: Outbound, ctx: &mut Context<Self>) {
        match self.queue.try_send(out) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => self.slow_consumer(ctx),
            Err(TrySendError::Closed(_)) => ctx.stop(),
        }
    }

    fn send_error(&mut self, r#ref: Option<&Ref>, event: &'static str, e: &WireError, ctx: &mut Context<Self>) {
        self.deps.observer().error(event, e.code);
        if let Some(incident) = &e.details.incident {
            log::error!("session {}: {event}: answered INTERNAL_ERROR, incident {incident}", self.id);
        }
        self.send(frames::error(r#ref, None, e), ctx);
    }

    /// Queues a Close after everything already queued; the actor stops when
    /// the transport has sent it (or after `CLOSE_GRACE`).
    fn close(&mut self, code: CloseCode, ctx: &mut Context<Self>) {
        if self.closing {
            return;
        }
        self.closing = true;
        log::debug!("session {}: closing with {}", self.id, code.code());
        if self.queue.try_send(Outbound::Close(code)).is_err() {
            self.abort(code, ctx);
            return;
        }
        ctx.run_later(CLOSE_GRACE, |_, ctx| ctx.stop());
    }

    /// Closes at once, dropping whatever is queued: the queue is full, so
    /// the Close goes ahead of it, best effort.
    fn abort(&mut self, code: CloseCode, ctx: &mut Context<Self>) {
        self.closing = true;
        if let Some(abort) = self.abort.take() {
            let _ = abort.send(code);
        }
        ctx.run_later(CLOSE_GRACE, |_, ctx| ctx.stop());
    }

    fn slow_consumer(&mut self, ctx: &mut Context<Self>) {
        if self.closing {
            return;
        }
        log::info!("session {}: outbound queue full; closing as a slow consumer", self.id);
        self.deps.observer().slow_consumer();
        self.abort(CloseCode::SlowConsumer, ctx);
    }

    /// A request whose response will be queued later has started.
    fn begin(&mut self) -> Instant {
        self.inflight += 1;
        Instant::now()
    }

    /// Its response is queued.
    fn end(&mut self, event: &'static str, started: Instant, ctx: &mut Context<Self>) {
        self.inflight = self.inflight.saturating_sub(1);
        self.deps.observer().request_done(event, started.elapsed().as_secs_f64());
        if self.draining && self.inflight == 0 {
            self.close(CloseCode::GoingAway, ctx);
        }
    }

    fn refuse_auth(&mut self, r#ref: Option<&Ref>, e: &WireError, ctx: &mut Context<Self>) {
        self.send_error(r#ref, "auth", e, ctx);
        self.close(CloseCode::Unauthenticated, ctx);
    }

    fn heartbeat(&mut self, ctx: &mut Context<Self>) {
        if self.closing {
            return;
        }
        if self.last_heard.elapsed() > self.settings().heartbeat * 2 {
            log::info!("session {}: silent for 2 heartbeats; closing", self.id);
            self.close(CloseCode::HeartbeatTimeout, ctx);
            return;
        }
        self.enqueue(Outbound::Ping, ctx);
    }

    /// The connection is authenticated: announce it and arm the expiry.
    fn authenticated(&mut self, r#ref: Option<&Ref>, ctx: &mut Context<Self>) {
        let Some(identity) = &self.identity else { return };
        log::debug!("session {}: authenticated as {}", self.id, identity.user_id);
        self.frame_limit.set(self.deps.settings.max_frame_bytes);
        self.peer = Some(Peer::new(
            self.id,
            identity.user_id.clone(),
            identity.name.as_deref().map(Arc::from),
            self.queue.clone(),
            ctx.address().recipient(),
        ));
        let frame = frames::session_event(
            "connect",
            r#ref,
            Connect {
                session_id: self.id,
                user_id: &identity.user_id,
                name: identity.name.as_deref(),
                expires_at: identity.expires_at(),
                heartbeat_ms: self.settings().heartbeat.as_millis() as u64,
                protocol: PROTOCOL_VERSION,
            },
        );
        self.send(frame, ctx);
        self.arm_expiry(ctx);
    }

    /// Closes the connection at `exp` + leeway unless a refresh comes first.
    fn arm_expiry(&mut self, ctx: &mut Context<Self>) {
        let Some(identity) = &self.identity else { return };
        if let Some(t) = self.expiry.take() {
            ctx.cancel_future(t);
        }
        let deadline_ms = (identity.expires_at + self.settings().jwt_leeway_s as i64).saturating_mul(1000);
        let wait = Duration::from_millis((deadline_ms - Timestamp::now().millis()).max(0) as u64);
        self.expiry = Some(ctx.run_later(wait, |act, ctx| {
            let e = WireError::new(ErrorCode::TokenExpired, "the token has expired; reconnect with a fresh one");
            act.send_error(None, "auth", &e, ctx);
            act.close(CloseCode::Unauthenticated, ctx);
        }));
    }

    fn on_text(&mut self, text: ByteString, ctx: &mut Context<Self>) {
        let decoded = decode(&text, &self.decode_limits);
        let Some(peer) = self.peer.clone() else {
            self.on_first_frame(decoded, ctx);
            return;
        };
        let (r#ref, event) = match &decoded {
            Ok(r) => (r.r#ref.clone(), r.body.event()),
            Err(e) => (e.r#ref.clone(), "invalid"),
        };
        match self.limiter.check(Instant::now()) {
            Verdict::Allowed => {}
            Verdict::Refused { retry_after_ms } => {
                let mut e = WireError::new(ErrorCode::RateLimited, "too many requests; slow down");
                e.details.retry_after_ms = Some(retry_after_ms);
                self.send_error(r#ref.as_ref(), event, &e, ctx);
                return;
            }
            Verdict::Abusive { retry_after_ms } => {
                let mut e = WireError::new(ErrorCode::RateLimited, "rate limit exceeded again and again; closing");
                e.details.retry_after_ms = Some(retry_after_ms);
                self.send_error(r#ref.as_ref(), event, &e, ctx);
                self.close(CloseCode::RateAbuse, ctx);
                return;
            }
        }
        if self.draining {
            let e = WireError::busy("the server is shutting down; reconnect in a moment");
            self.send_error(r#ref.as_ref(), event, &e, ctx);
            return;
        }
        match decoded {
            Ok(request) => {
                self.deps.observer().request(request.body.event());
                self.dispatch(request, peer, ctx);
            }
            Err(e) => self.send_error(e.r#ref.as_ref(), event, &e.error, ctx),
        }
    }

    /// Before authentication only a valid `auth` is acceptable.
    fn on_first_frame(&mut self, decoded: Result<Request, crate::protocol::DecodeError>, ctx: &mut Context<Self>) {
        let (r#ref, token) = match decoded {
            Ok(Request { r#ref, body: ClientRequest::Auth { token } }) => (r#ref, token),
            Ok(Request { r#ref, .. }) => {
                let e = WireError::new(ErrorCode::Unauthenticated, "authenticate first: send {\"event\":\"auth\",\"data\":{\"token\":\"...\"}}");
                return self.refuse_auth(r#ref.as_ref(), &e, ctx);
            }
            Err(d) => {
                let e = WireError::new(
                    ErrorCode::Unauthenticated,
                    format!("the first frame must be a valid auth request ({})", d.error.message),
                );
                return self.refuse_auth(d.r#ref.as_ref(), &e, ctx);
            }
        };
        let identity = match self.deps.verifier.verify(&token) {
            Ok(i) => i,
            Err(f) => return self.refuse_auth(r#ref.as_ref(), &f.into(), ctx),
        };
        let register = registry::register(&self.deps.registry, identity.user_id.clone(), self.id, ctx.address().recipient());
        // Hold this connection's frames until the registry has answered, so
        // nothing is handled before `connect`.
        ctx.wait(register.into_actor(self).map(move |answer, act, ctx| {
            match answer {
                Ok(()) => {
                    act.identity = Some(identity);
                    act.registered = true;
                    act.authenticated(r#ref.as_ref(), ctx);
                }
                Err(e) => {
                    act.send_error(r#ref.as_ref(), "auth", &e, ctx);
                    let code = if e.code == ErrorCode::LimitExceeded { CloseCode::Policy } else { CloseCode::GoingAway };
                    act.close(code, ctx);
                }
            }
        }));
    }
}

impl StreamHandler<Inbound> for Session {
    fn handle(&mut self, item: Inbound, ctx: &mut Context<Self>) {
        self.last_heard = Instant::now();
        if self.closing {
            return;
        }
        let authenticated = self.peer.is_some();
        match item {
            Inbound::Text(text) => self.on_text(text, ctx),
            Inbound::Ping(payload) => self.enqueue(Outbound::Pong(payload), ctx),
            Inbound::Pong => {}
            Inbound::Close => self.close(CloseCode::Normal, ctx),
            Inbound::TooLarge if !authenticated => {
                let limit = self.frame_limit.get();
                let e = WireError::new(
                    ErrorCode::Unauthenticated,
                    format!("a frame before authentication may be at most {limit} bytes; send an auth request first"),
                );
                self.refuse_auth(None, &e, ctx);
            }
            Inbound::Binary | Inbound::InvalidUtf8 if !authenticated => {
                let e = WireError::new(ErrorCode::Unauthenticated, "the first frame must be a JSON text frame with an auth request");
                self.refuse_auth(None, &e, ctx);
            }
            Inbound::Binary => {
                let e = WireError::new(ErrorCode::InvalidInput, "binary frames are not supported; send JSON in text frames");
                self.send_error(None, "binary", &e, ctx);
            }
            Inbound::TooLarge => {
                let max = self.settings().max_frame_bytes;
                let e = WireError::new(ErrorCode::PayloadTooLarge, format!("frame exceeds max_frame_bytes ({max})"));
                self.send_error(None, "frame", &e, ctx);
                self.close(CloseCode::TooBig, ctx);
            }
            Inbound::InvalidUtf8 => {
                let e = WireError::new(ErrorCode::InvalidInput, "text frame is not valid UTF-8");
                self.send_error(None, "frame", &e, ctx);
                self.close(CloseCode::InvalidUtf8, ctx);
            }
            Inbound::Broken(why) => {
                // Mostly a client that went away without a Close frame
                // (an I/O error): normal life for a server, not news.
                log::debug!("session {}: broken framing: {why}", self.id);
                self.close(CloseCode::Policy, ctx);
            }
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        // The client is gone; nothing queued can reach it any more.
        ctx.stop();
    }
}

impl Handler<Control> for Session {
    type Result = ();

    fn handle(&mut self, msg: Control, ctx: &mut Context<Self>) {
        match msg {
            Control::SlowConsumer => self.slow_consumer(ctx),
            Control::Evicted(room) => {
                self.rooms.remove(&room);
            }
            Control::Disconnect => {
                log::info!("session {}: disconnected by the HTTP API", self.id);
                self.close(CloseCode::Disconnected, ctx);
            }
            Control::Shutdown => {
                self.draining = true;
                if self.inflight == 0 || self.peer.is_none() {
                    self.close(CloseCode::GoingAway, ctx);
                }
            }
        }
    }
}
