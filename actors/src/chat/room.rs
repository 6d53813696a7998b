//! One actor per open chat. It orders the chat's writes without holding its
//! mailbox for them: an append goes to the group commit (whose transaction
//! assigns the gapless `seq` in the database) and the room takes the next
//! request meanwhile, so the next message can share the commit. Finished
//! appends are released in the order they were made ([`Pipeline`]): the
//! room acks the sender, then pushes the message to every member, the
//! sender included, in `seq` order. A join holds the mailbox for its read.

use std::sync::Arc;

use actix::{
    Actor, ActorFutureExt, AsyncContext, AtomicResponse, Context, Handler, Message, Recipient, ResponseActFuture, WrapFuture,
};
use bytestring::ByteString;

use crate::config::Settings;
use crate::ids::{ChatId, RoomName, Seq, UserId};
use crate::protocol::frames::{ChatJoined, OneMessage};
use crate::protocol::{ErrorCode, Push, WireError};
use crate::lifecycle::{HasMembers, IdleStop, RoomKind, RoomStopped, ROOM_MAILBOX};
use crate::members::{Leave, MemberRequest, Members, Tick};
use crate::peer::Requester;
use crate::chat::pipeline::Pipeline;
use crate::store::{Appended, ChatAccess, Db, NewMessage};

/// `chat:join`. Answers whether the connection is now a member.
#[derive(Message, Clone)]
#[rtype(result = "bool")]
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

pub struct ChatRoom {
    id: ChatId,
    members: Members,
    in_flight: Pipeline<Option<Requester>, Result<Appended, WireError>>,
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
    db: Db,
    settings: Arc<Settings>,
    registry: Recipient<RoomStopped<Self>>,
    idle: IdleStop,
}

impl ChatRoom {
    pub fn new(id: ChatId, db: Db, settings: Arc<Settings>, registry: Recipient<RoomStopped<Self>>) -> Self {
        let members = Members::new(RoomName::Chat(id.clone()), db.observer().clone(), &settings);
        ChatRoom {
            id,
            members,
            in_flight: Pipeline::default(),
            pushed_seq: Seq(0),
            joining: None,
            db,
            settings,
            registry,
            idle: IdleStop::default(),
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
        // Know what is stored before the first write or join is handled.
        let id = self.id.clone();
        let last = self.db.run(move |s| s.chat_last_seq(&id));
        ctx.wait(last.into_actor(self).map(|last, room, _| match last {
            Ok(seq) => room.pushed_seq = seq.unwrap_or(Seq(0)),
            Err(e) => log::warn!("{}: cannot read last_seq: {e}", room.members.room()),
        }));
    }

    fn stopped(&mut self, ctx: &mut Context<Self>) {
        self.registry.do_send(RoomStopped { id: self.id.clone(), addr: ctx.address() });
    }
}

impl Handler<JoinChat> for ChatRoom {
    type Result = AtomicResponse<Self, bool>;

    fn handle(&mut self, msg: JoinChat, _: &mut Context<Self>) -> Self::Result {
        let (id, user, since, max) =
            (self.id.clone(), msg.requester.peer.user_id.clone(), msg.since_seq, self.settings.max_recovery);
        let opened = self.db.run(move |s| s.open_chat(&id, &user, since, max));
        // A member re-joining hears these pushes as a member already.
        let rejoin = self.members.contains(msg.requester.peer.session_id);
        self.joining = Some(Vec::new());
        AtomicResponse::new(Box::pin(opened.into_actor(self).map(move |result, room, ctx| {
            let req = msg.requester;
            let missed = room.joining.take().unwrap_or_default();
            match result {
                Ok(mut snapshot) => {
                    // Messages stored but not pushed yet will be pushed to
                    // the new member: leave them out of the answer.
                    if room.in_flight.is_empty() {
                        room.pushed_seq = room.pushed_seq.max(snapshot.last_seq);
                    }
                    let upto = room.pushed_seq.min(snapshot.last_seq);
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
                    true
                }
                Err(e) => {
                    req.fail(&e);
                    false
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
        let new = NewMessage {
            chat_id: self.id.clone(),
            user_id: msg.author.clone(),
            content: String::from(&*msg.content),
            client_msg_id: msg.client_msg_id,
            check_access: msg.requester.is_none(),
        };
        // Not holding the mailbox: the next message can join the same group
        // commit. Acks and pushes still go out in the order of the writes.
        let ticket = self.in_flight.start(msg.requester);
        let stored = self.db.append(new);
        Box::pin(stored.into_actor(self).map(move |result: Result<Appended, WireError>, room, _| {
            for (requester, outcome) in room.in_flight.complete(ticket, result.clone()) {
                room.release(requester, outcome);
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

    /// Acks a finished write and pushes its message, in write order.
    fn release(&mut self, requester: Option<Requester>, outcome: Result<Appended, WireError>) {
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
