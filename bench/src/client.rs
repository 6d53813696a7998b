//! The simulated client: one actix actor per WebSocket connection.
//!
//! [`Client`] owns the socket (an `awc` framed stream added with
//! `ctx.add_stream`, and a [`SinkWrite`] for outgoing frames) and knows
//! nothing about scenarios. What a client does lives in a [`Behaviour`]:
//! the actor hands it each text frame, already classified by
//! [`scan::event`], and carries out what the behaviour asks through [`Io`]
//! (send a frame, close, drop the connection and reconnect, tick).
//!
//! A frame arrives as `Bytes` cut out of the codec's read buffer: the
//! harness never copies it, never validates it as UTF-8 and never parses it
//! as JSON.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use actix::io::{SinkWrite, WriteHandler};
use actix::{Actor, ActorContext, Addr, AsyncContext, Context, Handler, Message, Recipient, StreamHandler};
use actix_codec::Framed;
use awc::error::WsProtocolError;
use awc::ws::{CloseCode, CloseReason, Codec, Frame, Message as WsMessage};
use awc::BoxedSocket;
use bytes::{Bytes, BytesMut};
use futures_util::stream::SplitSink;
use awc::http;
use futures_util::StreamExt;

use crate::Placement;
use crate::scan::{self, Event};
use crate::stats::{excerpt, Shared};

type WsSink = SplitSink<Framed<BoxedSocket, Codec>, WsMessage>;

/// The largest frame the harness accepts: a recovery join can replay a
/// thousand messages in one ack.
const MAX_FRAME_BYTES: usize = 16 << 20;
/// How long an orderly close may take before the actor just stops.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Where clients connect, and what every client of a run shares.
pub struct Net {
    pub client: awc::Client,
    /// Every node's URL, and how connections are spread over them.
    pub urls: Vec<String>,
    placement: Placement,
    next: std::cell::Cell<usize>,
    pub shared: Shared,
    /// Every client actor of the run, to tell them all to close at the end.
    pub clients: RefCell<Vec<Recipient<Command>>>,
    /// Connections currently open.
    pub open: std::cell::Cell<usize>,
}

/// awc's TCP connector with `TCP_NODELAY` set on each new socket. Without
/// it, a small frame written while the previous one is unacknowledged waits
/// for the server's delayed ACK (up to 40 ms on Linux), and the harness
/// would add that to the latencies it reports.
#[derive(Clone)]
struct NoDelay(actix_tls::connect::ConnectorService);

type TcpConnection = actix_tls::connect::Connection<http::Uri, actix_rt::net::TcpStream>;

impl actix_service::Service<actix_tls::connect::ConnectInfo<http::Uri>> for NoDelay {
    type Response = TcpConnection;
    type Error = actix_tls::connect::ConnectError;
    type Future = futures_util::future::LocalBoxFuture<'static, Result<TcpConnection, Self::Error>>;

    actix_service::always_ready!();

    fn call(&self, req: actix_tls::connect::ConnectInfo<http::Uri>) -> Self::Future {
        let connecting = self.0.call(req);
        Box::pin(async move {
            let connection = connecting.await?;
            // A failure leaves Nagle on: slower, still correct.
            let _ = connection.io_ref().set_nodelay(true);
            Ok(connection)
        })
    }
}

impl Net {
    pub fn new(url: &str, shared: Shared) -> Rc<Net> {
        Self::spread(&[url.to_owned()], Placement::RoundRobin, shared)
    }

    /// Connections to several nodes, placed as `placement` says.
    pub fn spread(urls: &[String], placement: Placement, shared: Shared) -> Rc<Net> {
        let tcp = NoDelay(actix_tls::connect::Connector::default().service());
        let connector = awc::Connector::new()
            .connector(tcp)
            // 0 means no limit: the default (100) would serialize a large
            // connection ramp behind the connector's pool.
            .limit(0)
            .timeout(Duration::from_secs(10));
        let client = awc::Client::builder().connector(connector).timeout(Duration::from_secs(30)).finish();
        Rc::new(Net {
            client,
            urls: urls.to_vec(),
            placement,
            next: std::cell::Cell::new(0),
            shared,
            clients: RefCell::new(Vec::new()),
            open: std::cell::Cell::new(0),
        })
    }

    /// The node the next connection goes to (`publisher`: it publishes).
    pub fn pick(&self, publisher: bool) -> &str {
        let n = self.urls.len();
        let turn = || {
            let i = self.next.get();
            self.next.set(i.wrapping_add(1));
            i
        };
        match self.placement {
            _ if n == 1 => &self.urls[0],
            Placement::RoundRobin => &self.urls[turn() % n],
            Placement::Cross if publisher => &self.urls[0],
            Placement::Cross => &self.urls[1 + turn() % (n - 1)],
        }
    }

    /// Tells every client still open to close.
    pub fn close_all(&self) {
        for c in self.clients.borrow_mut().drain(..) {
            c.do_send(Command::Close);
        }
    }
}

/// What a scenario's orchestrator tells a client.
#[derive(Message, Debug, Clone, Copy, PartialEq, Eq)]
#[rtype(result = "()")]
pub enum Command {
    /// Start the measured work (publish, update).
    Go,
    /// Join now (clients that wait for others to set up first).
    Join,
    /// Close the connection in an orderly way (WebSocket close 1000).
    Close,
}

/// What one kind of client does with its frames.
pub trait Behaviour: Unpin + Sized + 'static {
    /// The `connect` event arrived: the session is authenticated.
    fn on_connect(&mut self, io: &mut Io<'_>);
    /// Any later text frame.
    fn on_frame(&mut self, event: Event, frame: &[u8], io: &mut Io<'_>);
    fn on_command(&mut self, _cmd: Command, _io: &mut Io<'_>) {}
    /// Whether this client publishes (where [`Placement::Cross`] puts it).
    fn publishes(&self) -> bool {
        false
    }
    /// Called on the interval asked for with [`Io::tick_every`].
    fn on_tick(&mut self, _io: &mut Io<'_>) {}
}

/// A behaviour's handle on its connection while it handles one event.
pub struct Io<'a> {
    sink: &'a mut SinkWrite<WsMessage, WsSink>,
    close: bool,
    reconnect: bool,
    tick: Option<Duration>,
    write_failed: bool,
}

impl Io<'_> {
    pub fn send(&mut self, text: String) {
        if self.sink.write(WsMessage::Text(text.into())).is_err() {
            self.write_failed = true;
        }
    }

    /// Close with 1000 once queued frames are written.
    pub fn close(&mut self) {
        self.close = true;
    }

    /// Drop the connection at once (no close frame, as a lost network
    /// would) and open a new one carrying this behaviour over.
    pub fn reconnect(&mut self) {
        self.reconnect = true;
    }

    /// Call [`Behaviour::on_tick`] every `period` from now on.
    pub fn tick_every(&mut self, period: Duration) {
        self.tick = Some(period);
    }
}

pub struct Client<B: Behaviour> {
    sink: SinkWrite<WsMessage, WsSink>,
    /// `None` only while the behaviour moves to a new connection.
    behaviour: Option<B>,
    net: Rc<Net>,
    token: Rc<str>,
    authenticated: bool,
    /// We asked for the end of this connection: its close is no problem.
    closing: bool,
    /// A fragmented message being reassembled (the server does not
    /// fragment today; this keeps the harness correct if it starts to).
    partial: Option<BytesMut>,
}

/// Opens a WebSocket authenticated by a header token and starts a client
/// actor on it.
pub async fn connect<B: Behaviour>(net: Rc<Net>, token: Rc<str>, behaviour: B) -> Result<Addr<Client<B>>, String> {
    let url = net.pick(behaviour.publishes()).to_owned();
    let request = net.client.ws(url.as_str()).bearer_auth(&*token).max_frame_size(MAX_FRAME_BYTES);
    let (_response, framed) = match request.connect().await {
        Ok(ok) => ok,
        Err(e) => {
            net.shared.borrow_mut().connect_failures += 1;
            return Err(format!("WebSocket connect to {url}: {e}"));
        }
    };
    net.shared.borrow_mut().connected += 1;
    let (sink, stream) = framed.split();
    let addr = Client::create(move |ctx| {
        ctx.add_stream(stream);
        Client {
            sink: SinkWrite::new(sink, ctx),
            behaviour: Some(behaviour),
            net,
            token,
            authenticated: false,
            closing: false,
            partial: None,
        }
    });
    Ok(addr)
}

impl<B: Behaviour> Client<B> {
    /// Runs `f` on the behaviour with an [`Io`], then carries out what it asked.
    // `f` is a trait object: a closure that starts the interval calls this
    // function again, and a generic `f` would instantiate it without end.
    fn with_behaviour(&mut self, ctx: &mut Context<Self>, f: &mut dyn FnMut(&mut B, &mut Io<'_>)) {
        let Some(b) = self.behaviour.as_mut() else { return };
        let mut io = Io { sink: &mut self.sink, close: false, reconnect: false, tick: None, write_failed: false };
        f(b, &mut io);
        let (close, reconnect, tick, write_failed) = (io.close, io.reconnect, io.tick, io.write_failed);
        if write_failed && !self.closing {
            self.net.shared.borrow_mut().unexpected_close(|| "write on a closed connection".into());
        }
        if let Some(period) = tick {
            ctx.run_interval(period, |act, ctx| act.with_behaviour(ctx, &mut |b, io| b.on_tick(io)));
        }
        if reconnect {
            self.reconnect(ctx);
        } else if close {
            self.begin_close(ctx);
        }
    }

    fn text(&mut self, frame: &[u8], ctx: &mut Context<Self>) {
        self.net.shared.borrow_mut().frames += 1;
        let event = scan::event(frame);
        if !self.authenticated {
            if event == Event::Connect {
                self.authenticated = true;
                self.with_behaviour(ctx, &mut |b, io| b.on_connect(io));
            } else {
                // The protocol sends nothing before `connect`; an error here
                // is a refused authentication.
                self.net.shared.borrow_mut().problem(|| format!("before connect: {}", excerpt(frame)));
            }
            return;
        }
        self.with_behaviour(ctx, &mut |b, io| b.on_frame(event, frame, io));
    }

    fn begin_close(&mut self, ctx: &mut Context<Self>) {
        if self.closing {
            return;
        }
        self.closing = true;
        let _ = self.sink.write(WsMessage::Close(Some(CloseCode::Normal.into())));
        self.sink.close();
        // The server answers with its own close and ends the stream; if it
        // does not, stop anyway.
        ctx.run_later(CLOSE_GRACE, |_, ctx| ctx.stop());
    }

    fn reconnect(&mut self, ctx: &mut Context<Self>) {
        self.closing = true;
        let Some(behaviour) = self.behaviour.take() else { return };
        let (net, token) = (self.net.clone(), self.token.clone());
        net.shared.borrow_mut().reconnects += 1;
        actix::spawn(async move {
            // `connect` consumes the behaviour; a failed attempt is reported
            // through the shared counters.
            if let Err(e) = connect(net.clone(), token, behaviour).await {
                net.shared.borrow_mut().unexpected_close(|| format!("reconnect failed: {e}"));
            }
        });
        // Stopping drops the socket without a close frame.
        ctx.stop();
    }

    fn continuation(&mut self, item: actix_http::ws::Item, ctx: &mut Context<Self>) {
        use actix_http::ws::Item;
        match item {
            Item::FirstText(b) | Item::FirstBinary(b) => self.partial = Some(BytesMut::from(&b[..])),
            Item::Continue(b) => {
                if let Some(p) = self.partial.as_mut() {
                    p.extend_from_slice(&b);
                }
            }
            Item::Last(b) => {
                if let Some(mut p) = self.partial.take() {
                    p.extend_from_slice(&b);
                    let whole: Bytes = p.freeze();
                    self.text(&whole, ctx);
                }
            }
        }
    }
}

impl<B: Behaviour> Actor for Client<B> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.net.open.set(self.net.open.get() + 1);
        self.net.clients.borrow_mut().push(ctx.address().recipient());
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.net.open.set(self.net.open.get().saturating_sub(1));
        self.net.shared.borrow().notify.notify_one();
    }
}

impl<B: Behaviour> StreamHandler<Result<Frame, WsProtocolError>> for Client<B> {
    fn handle(&mut self, item: Result<Frame, WsProtocolError>, ctx: &mut Context<Self>) {
        match item {
            Ok(Frame::Text(bytes)) => self.text(&bytes, ctx),
            Ok(Frame::Ping(payload)) => {
                let _ = self.sink.write(WsMessage::Pong(payload));
            }
            Ok(Frame::Pong(_)) | Ok(Frame::Binary(_)) => {}
            Ok(Frame::Continuation(item)) => self.continuation(item, ctx),
            Ok(Frame::Close(reason)) => {
                if !self.closing {
                    let code = reason.as_ref().map(|r: &CloseReason| u16::from(r.code));
                    let desc = reason.and_then(|r| r.description).unwrap_or_default();
                    self.net.shared.borrow_mut().unexpected_close(|| format!("server closed the connection: {code:?} {desc}"));
                }
                self.closing = true;
                ctx.stop();
            }
            Err(e) => {
                if !self.closing {
                    self.net.shared.borrow_mut().unexpected_close(|| format!("WebSocket protocol error: {e}"));
                }
                self.closing = true;
                ctx.stop();
            }
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        if !self.closing {
            self.net.shared.borrow_mut().unexpected_close(|| "connection dropped by the server".into());
        }
        ctx.stop();
    }
}

impl<B: Behaviour> WriteHandler<WsProtocolError> for Client<B> {
    fn error(&mut self, err: WsProtocolError, _: &mut Self::Context) -> actix::Running {
        if !self.closing {
            self.net.shared.borrow_mut().unexpected_close(|| format!("write failed: {err}"));
        }
        actix::Running::Stop
    }
}

impl<B: Behaviour> Handler<Command> for Client<B> {
    type Result = ();

    fn handle(&mut self, cmd: Command, ctx: &mut Context<Self>) {
        if cmd == Command::Close {
            self.begin_close(ctx);
            return;
        }
        self.with_behaviour(ctx, &mut |b, io| b.on_command(cmd, io));
    }
}
