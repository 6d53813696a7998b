//! One actor per open chat. It orders the chat's writes without holding its
//! mailbox for them: an append goes to the group commit (whose transaction
//! assigns the gapless `seq` in the database) and the room takes the next
//! request meanwhile, so the next message can share the commit. Finished
//! appends are released in the order they were made ([`Pipeline`]): the
//! room acks the sender, then pushes the message to every member, the
//! sender included, in `seq` order. A join holds the mailbox for its read.
//!
//! In cluster mode other nodes commit to the same chat too: the room then
//! subscribes to the chat's events before it reads where the chat stands,
//! publishes each of its commits, and lets out every position (its own,
//! other nodes', rows read back to fill a gap) through one order
//! ([`Ordered`]), so each member sees every message once, in `seq` order.

use std::collections::HashSet;
use std::sync::Arc;

use actix::{
    Actor, ActorContext, ActorFutureExt, AsyncContext, AtomicResponse, Context, Handler, Message, MessageResult, Recipient,
    ResponseActFuture, WrapFuture,
};
use bytestring::ByteString;

use crate::config::Settings;
use crate::ids::{ChatId, RoomName, Seq, SessionId, UserId};
use crate::protocol::frames::{ChatJoined, OneMessage};
use crate::protocol::{ErrorCode, Push, WireError};
use crate::lifecycle::{HasMembers, IdleStop, RoomDeps, RoomKind, RoomStopped, ROOM_MAILBOX};
use crate::members::{Leave, MemberRequest, Members, PresenceQuery, Tick};
use crate::peer::Requester;
use crate::chat::order::{Ordered, Slot};
use crate::chat::pipeline::Pipeline;
use crate::cluster::{self, Remote, RoomEvent, Stored};
use crate::model::Message as ChatMessage;
use crate::store::{Appended, ChatAccess, ChatSnapshot, Db, NewChat, NewMessage, Store, StoreResult};

/// `chat:join`. Answers `Ok` once the connection is a member, or the
/// refusal, which the session sends after it has forgotten the room.
#[derive(Message, Clone)]
#[rtype(result = "Result<(), WireError>")]
pub struct JoinChat {
    pub requester: Requester,
    pub since_seq: Option<Seq>,
}

/// `chat:message` (with a requester, which must have joined) or an HTTP
/// publish (without). `content` is shared so that a retry does not copy it.
#[derive(Message, Clone)]
#[rtype(result = "Result<Appended, WireError>")]
pub struct PostMessage {
    pub author: UserId,
    pub requester: Option<Requester>,
    pub content: Arc<str>,
    pub client_msg_id: Option<String>,
}

/// Most appends one chat may have in flight; past it, SERVER_BUSY.
pub const MAX_IN_FLIGHT: usize = 4096;

/// A write in flight: who waits for its answer, and the id its message
/// will have if it is stored now.
struct InFlight {
    requester: Option<Requester>,
    id: String,
}

pub struct ChatRoom {
    id: ChatId,
    members: Members,
    in_flight: Pipeline<InFlight, Result<Appended, WireError>>,
    /// The newest seq this room pushed (or found stored with nothing in
    /// flight). A join answers with messages up to it; newer ones reach
    /// the joiner as pushes, so nothing is seen twice.
    pushed_seq: Seq,
    /// Set while a join reads the store. The join holds the mailbox, but
    /// appends already in flight can still complete and be pushed before
    /// the read returns; the joiner is not a member yet, so those pushes
    /// are kept here and handed to it after its ack. At most
    /// `MAX_IN_FLIGHT` entries: no append starts while a join waits.
    joining: Option<Vec<(Seq, ByteString)>>,
    /// Cluster mode: members whose join answer reached further than this
    /// room had let out (it was behind the database), and how far: the
    /// room's pushes up to there are not theirs to hear again. Emptied as
    /// the room catches up.
    floors: Vec<(SessionId, Seq)>,
    db: Db,
    settings: Arc<Settings>,
    registry: Recipient<RoomStopped<Self>>,
    idle: IdleStop,
    /// Cluster mode only; `None` on a single node, where commits are let
    /// out as they complete.
    ordered: Option<Ordered>,
}

impl ChatRoom {
    pub fn new(id: ChatId, deps: RoomDeps, registry: Recipient<RoomStopped<Self>>) -> Self {
        let RoomDeps { db, settings, cluster } = deps;
        let members = Members::new(RoomName::Chat(id.clone()), db.observer().clone(), &settings, cluster.clone());
        ChatRoom {
            id,
            members,
            in_flight: Pipeline::default(),
            pushed_seq: Seq(0),
            joining: None,
            floors: Vec::new(),
            db,
            settings,
            registry,
            idle: IdleStop::default(),
            ordered: cluster.map(Ordered::new),
        }
    }

    fn membership_changed(&mut self, ctx: &mut Context<Self>) {
        let empty = self.members.is_empty();
        self.idle.update(empty, self.settings.room_idle, ctx);
    }
}

impl RoomKind for ChatRoom {
    type Id = ChatId;
}

impl HasMembers for ChatRoom {
    fn members(&self) -> &Members {
        &self.members
    }
}

impl Actor for ChatRoom {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(ROOM_MAILBOX);
        self.members.ring_at(ctx.address().downgrade().into());
        self.membership_changed(ctx);
        // Know what is stored before the first write or join is handled. In
        // cluster mode, subscribe first: whatever is committed after the
        // read then reaches this room as an event.
        let subscribed = self.ordered.as_mut().map(|o| {
            let (subscription, confirmed) =
                cluster::subscribe(&o.cluster, self.members.room().clone(), ctx.address().recipient());
            o.subscription = Some(subscription);
            confirmed
        });
        let (id, db) = (self.id.clone(), self.db.clone());
        let last = async move {
            let elsewhere = match subscribed {
                Some(confirmed) => confirmed.await,
                None => None,
            };
            (elsewhere, db.run(move |s| s.chat_last_seq(&id)).await)
        };
        ctx.wait(last.into_actor(self).map(|(elsewhere, last), room, ctx| match last {
            Ok(seq) => {
                if let Some(nodes) = elsewhere {
                    room.members.remote(RoomEvent::Presence(nodes));
                }
                room.pushed_seq = seq.unwrap_or(Seq(0));
                if let Some(o) = &mut room.ordered {
                    o.start(room.pushed_seq);
                }
            }
            Err(e) => {
                log::warn!("{}: cannot read last_seq: {e}", room.members.room());
                // Without a starting position, events of other nodes cannot
                // be ordered: requests waiting here find the room stopped,
                // and the next one starts it again.
                if room.ordered.is_some() {
                    ctx.stop();
                }
            }
        }));
    }

    fn stopped(&mut self, ctx: &mut Context<Self>) {
        self.registry.do_send(RoomStopped { id: self.id.clone(), addr: ctx.address() });
    }
}

impl Handler<JoinChat> for ChatRoom {
    type Result = AtomicResponse<Self, Result<(), WireError>>;

    fn handle(&mut self, msg: JoinChat, _: &mut Context<Self>) -> Self::Result {
        let (id, user, since, max) =
            (self.id.clone(), msg.requester.peer.user_id.clone(), msg.since_seq, self.settings.max_recovery);
        // Cluster mode: a room behind the database reads what it missed in
        // the same call (up to `max_recovery` messages), and lets it out
        // before it admits the joiner. The joiner's answer reaches as far
        // as the database does either way; a room further behind (a node
        // paused for long) repairs the rest afterwards, and keeps those
        // pushes from the joiner (`floors`).
        let behind_from = self.ordered.as_ref().map(Ordered::released);
        let read = move |s: &dyn Store| -> StoreResult<Option<(ChatSnapshot, Vec<ChatMessage>)>> {
            let Some(snapshot) = s.open_chat(&id, &user, since, max)? else { return Ok(None) };
            let behind = match behind_from {
                Some(released) if snapshot.last_seq > released => {
                    s.messages_after(&id, released, (snapshot.last_seq.0 - released.0).min(i64::from(max)))?
                }
                _ => Vec::new(),
            };
            Ok(Some((snapshot, behind)))
        };
        // Joining an unknown chat creates it, public, in the next group
        // commit (with the other chats named meanwhile), then reads it.
        let db = self.db.clone();
        let new = NewChat { id: self.id.clone(), created_by: msg.requester.peer.user_id.clone() };
        let opened = async move {
            if let Some(found) = db.run(read.clone()).await? {
                return Ok(found);
            }
            db.create_chat(new).await?;
            db.run(read).await?.ok_or_else(|| WireError::internal("chat:join", &"the chat created for this join is not there"))
        };
        // A member re-joining hears these pushes as a member already.
        let rejoin = self.members.contains(msg.requester.peer.session_id);
        self.joining = Some(Vec::new());
        AtomicResponse::new(Box::pin(opened.into_actor(self).map(move |result, room, ctx| {
            let req = msg.requester;
            match result {
                Ok((mut snapshot, behind)) => {
                    let upto = if room.ordered.is_some() {
                        room.repaired(Some(snapshot.last_seq), behind);
                        room.let_out(ctx);
                        if room.pushed_seq < snapshot.last_seq {
                            room.floors.push((req.peer.session_id, snapshot.last_seq));
                        }
                        snapshot.last_seq
                    } else {
                        if room.in_flight.is_empty() {
                            // Messages stored but not pushed yet will be
                            // pushed to the new member: leave them out of
                            // the answer.
                            room.pushed_seq = room.pushed_seq.max(snapshot.last_seq);
                        }
                        room.pushed_seq.min(snapshot.last_seq)
                    };
                    let missed = room.joining.take().unwrap_or_default();
                    snapshot.messages.retain(|m| m.seq <= upto);
                    room.members.admit(&req, |name, presence| {
                        req.ack(ChatJoined {
                            room: name,
                            presence,
                            last_seq: upto,
                            messages: &snapshot.messages,
                            recovered: snapshot.recovered,
                        })
                    });
                    // Pushed while the read ran and newer than what it saw:
                    // the joiner hears them after its ack, in seq order.
                    for (_, frame) in missed.into_iter().filter(|(seq, _)| !rejoin && *seq > upto) {
                        req.peer.deliver(frame);
                    }
                    room.membership_changed(ctx);
                    Ok(())
                }
                Err(e) => {
                    room.joining = None;
                    Err(e)
                }
            }
        })))
    }
}

impl Handler<PostMessage> for ChatRoom {
    type Result = ResponseActFuture<Self, Result<Appended, WireError>>;

    fn handle(&mut self, msg: PostMessage, _: &mut Context<Self>) -> Self::Result {
        if let Some(refusal) = self.refuse_non_member(msg.requester.as_ref()) {
            return Box::pin(refusal.map(|e, _, _| Err(e)));
        }
        if self.in_flight.len() >= MAX_IN_FLIGHT {
            let e = WireError::busy("this chat is writing as fast as it can; retry");
            if let Some(req) = &msg.requester {
                req.fail(&e);
            }
            return Box::pin(actix::fut::ready(Err(e)));
        }
        let id = uuid::Uuid::new_v4().simple().to_string();
        let new = NewMessage {
            id: id.clone(),
            chat_id: self.id.clone(),
            user_id: msg.author.clone(),
            content: String::from(&*msg.content),
            client_msg_id: msg.client_msg_id,
            check_access: msg.requester.is_none(),
        };
        // Not holding the mailbox: the next message can join the same group
        // commit. Acks and pushes still go out in the order of the writes.
        let ticket = self.in_flight.start(InFlight { requester: msg.requester, id });
        let stored = self.db.append(new);
        Box::pin(stored.into_actor(self).map(move |result: Result<Appended, WireError>, room, ctx| {
            for (write, outcome) in room.in_flight.complete(ticket, result.clone()) {
                room.release(write.requester, outcome, ctx);
            }
            result
        }))
    }
}

impl ChatRoom {
    /// Answers a request that needs membership from a connection that is
    /// not a member (it joined in vain, or was never let in) with
    /// [`not_member_error`]; `None` for members and for the server itself
    /// (no requester).
    fn refuse_non_member(&self, requester: Option<&Requester>) -> Option<ResponseActFuture<Self, WireError>> {
        let req = requester?;
        if self.members.contains(req.peer.session_id) {
            return None;
        }
        let refusal = not_member_error(&self.db, self.id.clone(), req.peer.user_id.clone());
        let req = req.clone();
        Some(Box::pin(refusal.into_actor(self).map(move |e, _, _| {
            req.fail(&e);
            e
        })))
    }

    /// Acks a finished write and pushes its message, in write order (in
    /// cluster mode: in `seq` order with the other nodes' messages).
    fn release(&mut self, requester: Option<Requester>, outcome: Result<Appended, WireError>, ctx: &mut Context<Self>) {
        if self.ordered.is_some() {
            return self.release_ordered(requester, outcome, ctx);
        }
        if let Some(req) = &requester {
            match &outcome {
                Ok(a) => req.ack(OneMessage { message: &a.message }),
                Err(e) => req.fail(e),
            }
        }
        if let Ok(appended) = outcome {
            if appended.fresh {
                self.pushed_seq = self.pushed_seq.max(appended.message.seq);
                let frame = self.members.push(Push::ChatMessage { message: &appended.message }, None);
                if let Some(missed) = &mut self.joining {
                    missed.push((appended.message.seq, frame));
                }
            }
        }
    }
}

impl Handler<Leave> for ChatRoom {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, msg: Leave, ctx: &mut Context<Self>) -> Self::Result {
        if let Some(refusal) = self.refuse_non_member(msg.requester.as_ref()) {
            return Box::pin(refusal.map(|_, _, _| ()));
        }
        self.members.leave(msg);
        self.membership_changed(ctx);
        Box::pin(actix::fut::ready(()))
    }
}

impl Handler<MemberRequest> for ChatRoom {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, msg: MemberRequest, _: &mut Context<Self>) -> Self::Result {
        if let Some(refusal) = self.refuse_non_member(Some(&msg.requester)) {
            return Box::pin(refusal.map(|_, _, _| ()));
        }
        self.members.answer(msg);
        Box::pin(actix::fut::ready(()))
    }
}

impl Handler<Tick> for ChatRoom {
    type Result = ();

    fn handle(&mut self, tick: Tick, ctx: &mut Context<Self>) {
        self.members.tick(tick);
        // Pushes may have removed slow consumers.
        self.membership_changed(ctx);
    }
}

/// The error for a chat request that needs membership from a connection
/// that has not joined: access is checked first, so a stranger to a private
/// chat hears `PERMISSION_DENIED`, anyone else `NOT_JOINED`.
pub fn not_member_error(db: &Db, chat: ChatId, user: UserId) -> impl std::future::Future<Output = WireError> + 'static {
    let room = RoomName::Chat(chat.clone());
    let access = db.run(move |s| s.chat_access(&chat, &user));
    async move {
        match access.await {
            Ok(ChatAccess::Denied) => WireError::new(ErrorCode::PermissionDenied, format!("{room} is private")),
            Ok(ChatAccess::Allowed | ChatAccess::Unknown) => WireError::not_joined(&room),
            Err(e) => e,
        }
    }
}

/// Cluster mode: one order for this node's commits, other nodes' events
/// and rows read back from the database.
impl ChatRoom {
    /// A finished write of this node: published to the other nodes at
    /// once, let out in `seq` order.
    fn release_ordered(&mut self, requester: Option<Requester>, outcome: Result<Appended, WireError>, ctx: &mut Context<Self>) {
        let Some(ordered) = &mut self.ordered else { return };
        let appended = match outcome {
            Ok(appended) => appended,
            Err(e) => {
                if let Some(req) = requester {
                    req.fail(&e);
                }
                return;
            }
        };
        let seq = appended.message.seq;
        let frame = Push::ChatMessage { message: &appended.message }.encode(self.members.room());
        if appended.fresh {
            // Before anything else: a node that dies right after its commit
            // leaves the other nodes to find the message by their check.
            ordered.publish(self.members.room(), seq, frame.clone());
        }
        // A retry of an idempotent send brings nothing new, but answers at
        // the position of the original, which may still be on its way here.
        let acks = requester.map(|req| vec![(req, appended.message)]).unwrap_or_default();
        ordered.offer(seq, Slot { frame, acks });
        self.let_out(ctx);
    }

    /// Lets out every position that is next, then looks for a gap to
    /// repair.
    fn let_out(&mut self, ctx: &mut Context<Self>) {
        self.release_ready();
        self.schedule_repair(self.settings.gap_wait, ctx);
    }

    /// Lets out every position that is next: acks, then the push.
    fn release_ready(&mut self) {
        let Some(ordered) = &mut self.ordered else { return };
        while let Some((seq, mut slot)) = ordered.next() {
            slot.ack();
            self.pushed_seq = seq;
            if self.floors.is_empty() {
                self.members.broadcast(slot.frame.clone(), None);
            } else {
                let floors = &self.floors;
                let had_it = |s: SessionId| floors.iter().any(|(f, upto)| *f == s && seq <= *upto);
                self.members.broadcast_unless(slot.frame.clone(), had_it);
                self.floors.retain(|(_, upto)| *upto > seq);
            }
            if let Some(missed) = &mut self.joining {
                missed.push((seq, slot.frame));
            }
        }
    }

    /// Takes rows read back from the database (`stored`: the newest
    /// position it holds, when known) and lets out what they complete.
    /// Rows of this room's own writes whose outcome has not come back yet
    /// are left to that outcome, which brings their acks: the ack still
    /// comes before the push, and the position waits at most until the
    /// write's answer arrives (its commit is done, since the row is there).
    fn repaired(&mut self, stored: Option<Seq>, rows: Vec<ChatMessage>) {
        let Some(ordered) = &mut self.ordered else { return };
        if let Some(stored) = stored {
            ordered.note_stored(stored);
        }
        let own: HashSet<&str> = self.in_flight.waiting().map(|w| w.id.as_str()).collect();
        let rows: Vec<ChatMessage> = rows.into_iter().filter(|m| !own.contains(m.id.as_str())).collect();
        if !rows.is_empty() {
            self.db.observer().gap_repaired(rows.len() as u64);
        }
        for message in rows {
            let frame = Push::ChatMessage { message: &message }.encode(self.members.room());
            ordered.offer(message.seq, Slot::push(frame));
        }
        self.release_ready();
    }

    /// Fills the first gap after `wait`, unless a repair is already coming
    /// or nothing is missing.
    fn schedule_repair(&mut self, wait: std::time::Duration, ctx: &mut Context<Self>) {
        let Some(ordered) = &mut self.ordered else { return };
        if ordered.repairing || ordered.missing().is_none() {
            return;
        }
        ordered.repairing = true;
        ctx.run_later(wait, |room, ctx| room.repair(ctx));
    }

    /// Reads the first gap's messages from the database (on an executor:
    /// the room goes on meanwhile).
    fn repair(&mut self, ctx: &mut Context<Self>) {
        let Some(ordered) = &mut self.ordered else { return };
        let Some((after, limit)) = ordered.missing() else {
            ordered.repairing = false;
            return;
        };
        let id = self.id.clone();
        let read = self.db.run(move |s| s.messages_after(&id, after, limit));
        ctx.spawn(read.into_actor(self).map(move |rows, room, ctx| {
            let room_name = room.members.room().clone();
            let Some(ordered) = &mut room.ordered else { return };
            ordered.repairing = false;
            match rows {
                Ok(rows) if rows.is_empty() => {
                    let skipped = ordered.give_up_gap();
                    log::warn!("{room_name}: {skipped} announced messages after seq {} are not in the database; skipped", after.0);
                    room.let_out(ctx);
                }
                Ok(rows) => {
                    // A full read means more of the same gap: read on
                    // without waiting.
                    let wait = if rows.len() as i64 == limit { std::time::Duration::ZERO } else { room.settings.gap_wait };
                    room.repaired(None, rows);
                    room.schedule_repair(wait, ctx);
                }
                Err(e) => {
                    log::warn!("{room_name}: cannot fill a gap after seq {}: {e}", after.0);
                    room.schedule_repair(room.settings.gap_wait, ctx);
                }
            }
        }));
    }
}

impl Handler<Remote> for ChatRoom {
    type Result = ();

    fn handle(&mut self, msg: Remote, ctx: &mut Context<Self>) {
        let Some(ordered) = &mut self.ordered else { return };
        match msg.0 {
            RoomEvent::ChatMessage { seq, frame } => {
                ordered.offer(seq, Slot::push(frame));
                self.let_out(ctx);
            }
            // Chats have no access to revoke, and no races to lose.
            RoomEvent::Revoked { .. } | RoomEvent::Contended => {}
            presence => {
                self.members.remote(presence);
                // Pushes may have removed slow consumers.
                self.membership_changed(ctx);
            }
        }
    }
}

impl Handler<PresenceQuery> for ChatRoom {
    type Result = MessageResult<PresenceQuery>;

    fn handle(&mut self, q: PresenceQuery, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.members.query(&q))
    }
}

impl Handler<Stored> for ChatRoom {
    type Result = ();

    fn handle(&mut self, msg: Stored, ctx: &mut Context<Self>) {
        if let Some(ordered) = &mut self.ordered {
            ordered.note_stored(msg.0);
            self.schedule_repair(self.settings.gap_wait, ctx);
        }
    }
}
