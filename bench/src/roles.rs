//! What each kind of simulated client does: the [`Behaviour`]s.
//!
//! - [`ChatClient`]: a chat member that checks its `seq` run; optionally a
//!   publisher (window of unacknowledged messages, optional fixed rate) and
//!   optionally a subscriber that drops its connection at set points and
//!   recovers with `since_seq`.
//! - [`Editor`]: a document editor updating (or sending operations) as
//!   fast as its acks allow.
//! - [`Idle`]: joins a room and then only answers pings.
//! - [`Churner`]: one connect-join-leave-close cycle.
//!
//! Requests the harness matches use string refs for setup (`"c"` create,
//! `"s"` share, `"j"` join, `"l"` leave) and integer refs for the measured
//! requests, so an ack is classified by the first byte of its ref.

use std::cell::Cell;
use std::fmt::Write as _;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::client::{Behaviour, Command, Io};
use crate::scan::{self, Event, Ref};
use crate::stats::{excerpt, now_ns, SeqTracker, Shared};

/// When a client sends its join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinWhen {
    /// As soon as it is authenticated.
    AtOnce,
    /// On [`Command::Join`].
    OnCommand,
    /// Never: the ceiling test's fake server speaks no protocol.
    Never,
}

fn join_chat(chat: &str, since: Option<u64>) -> String {
    match since {
        Some(s) => format!(r#"{{"event":"chat:join","ref":"j","data":{{"chat_id":"{chat}","since_seq":{s}}}}}"#),
        None => format!(r#"{{"event":"chat:join","ref":"j","data":{{"chat_id":"{chat}"}}}}"#),
    }
}

/// A publisher's side of a [`ChatClient`].
pub struct Publish {
    /// Messages to send.
    pub total: u64,
    /// At most this many unacknowledged at once.
    pub window: u32,
    /// Messages per second for this publisher (fixed-rate latency runs).
    pub rate: Option<f64>,
    sent: u64,
    in_flight: u32,
    started: Option<Instant>,
    /// Reused for every outgoing frame's text before it is copied into the
    /// frame (one allocation per send, none for formatting).
    buf: String,
}

impl Publish {
    pub fn new(total: u64, window: u32, rate: Option<f64>) -> Publish {
        Publish { total, window: window.max(1), rate, sent: 0, in_flight: 0, started: None, buf: String::new() }
    }

    /// Sends what the window (and the rate) allow.
    fn pump(&mut self, chat: &str, io: &mut Io<'_>) {
        let Some(started) = self.started else { return };
        let allowed = match self.rate {
            // Messages due by now, the first one at once.
            Some(rate) => ((started.elapsed().as_secs_f64() * rate) as u64 + 1).min(self.total),
            None => self.total,
        };
        while self.in_flight < self.window && self.sent < allowed {
            self.sent += 1;
            self.in_flight += 1;
            self.buf.clear();
            let _ = write!(
                self.buf,
                r#"{{"event":"chat:message","ref":{},"data":{{"chat_id":"{chat}","content":"t{}"}}}}"#,
                self.sent,
                now_ns()
            );
            io.send(self.buf.clone());
        }
    }
}

/// A chat member; see the module map.
pub struct ChatClient {
    shared: Shared,
    chat: Rc<str>,
    /// Messages the room will carry after this client's first join.
    expect: u64,
    join_when: JoinWhen,
    tracker: SeqTracker,
    joined_once: bool,
    done: bool,
    pub publish: Option<Publish>,
    /// Other users present in the room (join ack members + `user:joined` -
    /// `user:left`): lets a publisher wait for subscribers that live in
    /// another harness process.
    others: Rc<Cell<i64>>,
    /// Recovery: drop the connection once this many of the expected
    /// messages have been seen (live or recovered).
    drops: Vec<u64>,
    first_seq: u64,
    rejoining: bool,
}

impl ChatClient {
    pub fn new(shared: Shared, chat: Rc<str>, expect: u64, join_when: JoinWhen) -> ChatClient {
        ChatClient {
            shared,
            chat,
            expect,
            join_when,
            tracker: SeqTracker::default(),
            joined_once: false,
            done: false,
            publish: None,
            others: Rc::new(Cell::new(0)),
            drops: Vec::new(),
            first_seq: 0,
            rejoining: false,
        }
    }

    pub fn publishing(mut self, p: Publish) -> Self {
        self.publish = Some(p);
        self
    }

    /// Drop and recover after each of these counts of messages seen.
    pub fn dropping_at(mut self, mut points: Vec<u64>) -> Self {
        points.sort_unstable();
        points.dedup();
        self.drops = points;
        self
    }

    /// A handle on the presence count, for the orchestrator.
    pub fn presence(&self) -> Rc<Cell<i64>> {
        self.others.clone()
    }

    fn check_done(&mut self) {
        if !self.done && self.tracker.complete() && self.publish.as_ref().is_none_or(|p| p.sent >= p.total && p.in_flight == 0) {
            self.done = true;
            self.shared.borrow_mut().mark_done();
        }
    }

    fn on_push(&mut self, frame: &[u8], io: &mut Io<'_>) {
        let now = now_ns();
        let Some(seq) = scan::seq(frame) else {
            self.shared.borrow_mut().problem(|| format!("chat:message without seq: {}", excerpt(frame)));
            return;
        };
        {
            let mut c = self.shared.borrow_mut();
            c.delivery(scan::sent_ns(frame), now);
            self.tracker.see(seq, &mut c);
        }
        self.check_done();
        let seen = self.tracker.next.saturating_sub(self.first_seq);
        if !self.done && self.drops.first().is_some_and(|&p| seen >= p) {
            self.drops.retain(|&p| p > seen);
            self.rejoining = true;
            io.reconnect();
        }
    }

    fn on_join_ack(&mut self, frame: &[u8]) {
        if !self.joined_once {
            self.joined_once = true;
            let last = scan::last_seq(frame).unwrap_or(0);
            self.tracker.start_after(last, self.expect, &mut self.shared.borrow_mut());
            self.first_seq = self.tracker.next;
            // Members listed include this connection's own user.
            self.others.set(scan::member_count(frame) as i64 - 1);
            self.shared.borrow_mut().mark_ready();
        } else if self.rejoining {
            self.rejoining = false;
            let mut c = self.shared.borrow_mut();
            if !scan::recovered(frame) {
                c.problem(|| "recovery join answered recovered: false".into());
            }
            let tracker = &mut self.tracker;
            let mut n = 0;
            scan::each_message(frame, |seq, _| {
                n += 1;
                tracker.see(seq, &mut c);
            });
            c.recovered += n;
        }
        self.check_done();
    }
}

impl Behaviour for ChatClient {
    fn publishes(&self) -> bool {
        self.publish.is_some()
    }

    fn on_connect(&mut self, io: &mut Io<'_>) {
        if self.rejoining {
            // Recovery: everything after the last seq seen.
            io.send(join_chat(&self.chat, Some(self.tracker.next.saturating_sub(1))));
            return;
        }
        match self.join_when {
            JoinWhen::AtOnce => io.send(join_chat(&self.chat, None)),
            JoinWhen::OnCommand => {}
            JoinWhen::Never => {
                self.joined_once = true;
                let mut c = self.shared.borrow_mut();
                self.tracker.start_after(0, self.expect, &mut c);
                c.mark_ready();
            }
        }
    }

    fn on_frame(&mut self, event: Event, frame: &[u8], io: &mut Io<'_>) {
        match event {
            Event::ChatMessage => self.on_push(frame, io),
            Event::Ack => match scan::reference(frame) {
                Ref::Int(_) => {
                    self.shared.borrow_mut().ack(scan::sent_ns(frame), now_ns());
                    if let Some(p) = self.publish.as_mut() {
                        p.in_flight = p.in_flight.saturating_sub(1);
                        p.pump(&self.chat, io);
                    }
                    self.check_done();
                }
                Ref::Str(b"j") => self.on_join_ack(frame),
                _ => {}
            },
            Event::Error => {
                self.shared.borrow_mut().problem(|| format!("chat client: {}", excerpt(frame)));
                if let (Ref::Int(_), Some(p)) = (scan::reference(frame), self.publish.as_mut()) {
                    p.in_flight = p.in_flight.saturating_sub(1);
                    p.pump(&self.chat, io);
                }
            }
            Event::UserJoined => self.others.set(self.others.get() + 1),
            Event::UserLeft => self.others.set(self.others.get() - 1),
            _ => {}
        }
    }

    fn on_command(&mut self, cmd: Command, io: &mut Io<'_>) {
        match cmd {
            Command::Join => io.send(join_chat(&self.chat, None)),
            Command::Go => {
                if let Some(p) = self.publish.as_mut() {
                    p.started = Some(Instant::now());
                    if let Some(rate) = p.rate {
                        // Pacing only: the interval decides when the next
                        // message is due, it synchronizes nothing.
                        let period = Duration::from_secs_f64((1.0 / rate).clamp(0.001, 0.1));
                        io.tick_every(period);
                    }
                    p.pump(&self.chat, io);
                }
            }
            Command::Close => {}
        }
    }

    fn on_tick(&mut self, io: &mut Io<'_>) {
        if let Some(p) = self.publish.as_mut() {
            p.pump(&self.chat, io);
        }
    }
}

/// What an [`Editor`] sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EditMode {
    /// `documents:update` of the whole content `t<nanos>`, on the version
    /// it knows (the race the whole-content protocol has).
    Updates,
    /// `documents:op` on the version it knows, replacing its own slot of
    /// [`SLOT`] characters: the document is `slots` slots long and stays
    /// so, and editors never touch each other's text, so no operation can
    /// be refused and none grows the document. `filler` bytes follow the
    /// slots, untouched.
    Ops { slot: usize, slots: usize, filler: usize },
}

/// One editor's slot in `EditMode::Ops`: `t` and the 19 digits of a send
/// time in nanoseconds (until the year 2286).
const SLOT: usize = 20;

/// A document editor; see the module map.
pub struct Editor {
    shared: Shared,
    doc: Rc<str>,
    /// Users to share the document with (the creating editor only).
    share_with: Option<Vec<String>>,
    pending_shares: usize,
    /// Successful updates to make.
    updates: u64,
    made: u64,
    /// Versions every editor of the document will see (acks + pushes).
    expect: u64,
    known: u64,
    tracker: SeqTracker,
    go: bool,
    last_send_ns: u64,
    done: bool,
    mode: EditMode,
}

impl Editor {
    /// `share_with` is `Some` for the editor that creates the document.
    pub fn new(shared: Shared, doc: Rc<str>, share_with: Option<Vec<String>>, updates: u64, expect: u64, mode: EditMode) -> Editor {
        Editor {
            shared,
            doc,
            share_with,
            pending_shares: 0,
            updates,
            made: 0,
            expect,
            known: 0,
            tracker: SeqTracker::default(),
            go: false,
            last_send_ns: 0,
            done: false,
            mode,
        }
    }

    fn join(&self, io: &mut Io<'_>) {
        io.send(format!(r#"{{"event":"documents:join","ref":"j","data":{{"document_id":"{}"}}}}"#, self.doc));
    }

    fn update(&mut self, io: &mut Io<'_>) {
        self.last_send_ns = now_ns();
        if let EditMode::Ops { slot, .. } = self.mode {
            let keep = if slot == 0 { String::new() } else { format!("{},", slot * SLOT) };
            io.send(format!(
                r#"{{"event":"documents:op","ref":{n},"data":{{"document_id":"{}","base_version":{},"ops":[{keep}"t{:019}",{{"d":{SLOT}}}],"op_id":"{n}"}}}}"#,
                self.doc,
                self.known,
                self.last_send_ns,
                n = self.made + 1,
            ));
            return;
        }
        io.send(format!(
            r#"{{"event":"documents:update","ref":{},"data":{{"document_id":"{}","content":"t{}","version":{}}}}}"#,
            self.made + 1,
            self.doc,
            self.last_send_ns,
            self.known + 1
        ));
    }

    fn check_done(&mut self) {
        if !self.done && self.made >= self.updates && self.tracker.complete() {
            self.done = true;
            self.shared.borrow_mut().mark_done();
        }
    }
}

impl Behaviour for Editor {
    fn on_connect(&mut self, io: &mut Io<'_>) {
        if self.share_with.is_some() {
            let content = match self.mode {
                EditMode::Ops { slots, filler, .. } => format!("t{:019}", 0).repeat(slots) + &".".repeat(filler),
                EditMode::Updates => String::new(),
            };
            io.send(format!(
                r#"{{"event":"documents:create","ref":"c","data":{{"document_id":"{}","title":"bench","content":"{content}"}}}}"#,
                self.doc
            ));
        }
    }

    fn on_frame(&mut self, event: Event, frame: &[u8], io: &mut Io<'_>) {
        match event {
            Event::DocumentUpdated | Event::DocumentOp => {
                let now = now_ns();
                let sent = if event == Event::DocumentOp { scan::op_sent_ns(frame) } else { scan::sent_ns(frame) };
                let mut c = self.shared.borrow_mut();
                c.delivery(sent, now);
                match scan::version(frame) {
                    Some(v) => {
                        self.tracker.see(v, &mut c);
                        self.known = self.known.max(v);
                    }
                    None => c.problem(|| format!("documents:updated without version: {}", excerpt(frame))),
                }
                drop(c);
                self.check_done();
            }
            Event::Ack => match scan::reference(frame) {
                Ref::Int(_) => {
                    let now = now_ns();
                    let mut c = self.shared.borrow_mut();
                    c.ack(Some(self.last_send_ns), now);
                    match scan::version(frame) {
                        Some(v) => {
                            self.tracker.see(v, &mut c);
                            self.known = self.known.max(v);
                        }
                        None => c.problem(|| format!("update ack without version: {}", excerpt(frame))),
                    }
                    drop(c);
                    self.made += 1;
                    if self.made < self.updates {
                        self.update(io);
                    }
                    self.check_done();
                }
                Ref::Str(b"c") => {
                    let users = self.share_with.take().unwrap_or_default();
                    self.pending_shares = users.len();
                    for u in &users {
                        io.send(format!(
                            r#"{{"event":"documents:share","ref":"s","data":{{"document_id":"{}","user_id":"{u}","role":"editor"}}}}"#,
                            self.doc
                        ));
                    }
                    if users.is_empty() {
                        self.join(io);
                    }
                }
                Ref::Str(b"s") => {
                    self.pending_shares = self.pending_shares.saturating_sub(1);
                    if self.pending_shares == 0 {
                        self.join(io);
                    }
                }
                Ref::Str(b"j") => {
                    let v = scan::version(frame).unwrap_or(0);
                    self.known = v;
                    let mut c = self.shared.borrow_mut();
                    self.tracker.start_after(v, self.expect, &mut c);
                    c.mark_ready();
                }
                _ => {}
            },
            Event::Error => {
                // An operation is never refused: any error fails the run.
                if scan::error_code(frame) == b"VERSION_CONFLICT" && self.mode == EditMode::Updates {
                    let current = scan::current_version(frame);
                    self.shared.borrow_mut().conflicts += 1;
                    if let Some(v) = current {
                        self.known = self.known.max(v);
                    }
                    // Retry on the current version.
                    self.update(io);
                } else {
                    self.shared.borrow_mut().problem(|| format!("editor: {}", excerpt(frame)));
                }
            }
            _ => {}
        }
    }

    fn on_command(&mut self, cmd: Command, io: &mut Io<'_>) {
        match cmd {
            // The creating editor joins by itself once it has shared.
            Command::Join if self.share_with.is_none() && !self.tracker.started => self.join(io),
            Command::Go if !self.go => {
                self.go = true;
                if self.updates > 0 {
                    self.update(io);
                }
                self.check_done();
            }
            _ => {}
        }
    }
}

/// Joins one chat and then stays idle (the server's pings are answered by
/// the client actor).
pub struct Idle {
    shared: Shared,
    chat: Rc<str>,
}

impl Idle {
    pub fn new(shared: Shared, chat: Rc<str>) -> Idle {
        Idle { shared, chat }
    }
}

impl Behaviour for Idle {
    fn on_connect(&mut self, io: &mut Io<'_>) {
        io.send(join_chat(&self.chat, None));
    }

    fn on_frame(&mut self, event: Event, frame: &[u8], _io: &mut Io<'_>) {
        match event {
            Event::Ack if scan::reference(frame) == Ref::Str(b"j") => self.shared.borrow_mut().mark_ready(),
            Event::Error => self.shared.borrow_mut().problem(|| format!("idle client: {}", excerpt(frame))),
            _ => {}
        }
    }
}

/// One connect-authenticate-join-message-leave-close cycle (the cycle of
/// issue 9's memory probe); reports on `done`.
pub struct Churner {
    shared: Shared,
    chat: Rc<str>,
    started: Instant,
    done: Option<oneshot::Sender<bool>>,
}

impl Churner {
    /// `started` is taken before the connection was opened, so the cycle
    /// time includes the TCP and WebSocket handshakes.
    pub fn new(shared: Shared, chat: Rc<str>, started: Instant, done: oneshot::Sender<bool>) -> Churner {
        Churner { shared, chat, started, done: Some(done) }
    }

    fn finish(&mut self, ok: bool, io: &mut Io<'_>) {
        io.close();
        if let Some(d) = self.done.take() {
            let _ = d.send(ok);
        }
    }
}

impl Behaviour for Churner {
    fn on_connect(&mut self, io: &mut Io<'_>) {
        io.send(join_chat(&self.chat, None));
    }

    fn on_frame(&mut self, event: Event, frame: &[u8], io: &mut Io<'_>) {
        match (event, scan::reference(frame)) {
            (Event::Ack, Ref::Str(b"j")) => {
                io.send(format!(r#"{{"event":"chat:message","ref":"m","data":{{"chat_id":"{}","content":"churn"}}}}"#, self.chat));
            }
            (Event::Ack, Ref::Str(b"m")) => {
                io.send(format!(r#"{{"event":"chat:leave","ref":"l","data":{{"chat_id":"{}"}}}}"#, self.chat));
            }
            (Event::Ack, Ref::Str(b"l")) => {
                let us = self.started.elapsed().as_micros() as u64;
                let mut c = self.shared.borrow_mut();
                c.cycles += 1;
                c.latency.saturating_record(us.max(1));
                drop(c);
                self.finish(true, io);
            }
            (Event::Error, _) => {
                self.shared.borrow_mut().problem(|| format!("churn client: {}", excerpt(frame)));
                self.finish(false, io);
            }
            _ => {}
        }
    }
}
