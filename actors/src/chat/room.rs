//! One actor per open chat. It serializes the chat's writes: an append runs
//! its transaction (which assigns the gapless `seq` in the database) while
//! the room holds its mailbox, then the room acks the sender and pushes the
//! message to every member, the sender included, in `seq` order.

use std::sync::Arc;

use actix::{Actor, ActorFutureExt, AsyncContext, AtomicResponse, Context, Handler, Message, Recipient, WrapFuture};

use crate::config::Settings;
use crate::ids::{ChatId, RoomName, Seq, UserId};
use crate::protocol::frames::{self, ChatJoined, OneMessage};
use crate::protocol::{ErrorCode, WireError};
use crate::registry::RoomStopped;
use crate::room::{HasMembers, IdleStop, Leave, Members, ROOM_MAILBOX};
use crate::session::outbound::Requester;
use crate::store::{Appended, ChatAccess, Db, NewMessage};

/// `chat:join`. Answers whether the connection is now a member.
#[derive(Message, Clone)]
#[rtype(result = "bool")]
pub struct JoinChat {
    pub requester: Requester,
    pub since_seq: Option<Seq>,
}

/// `chat:message` (with a requester, which must have joined) or an HTTP
/// publish (without).
#[derive(Message, Clone)]
#[rtype(result = "Result<Appended, WireError>")]
pub struct PostMessage {
    pub author: UserId,
    pub requester: Option<Requester>,
    pub content: String,
    pub client_msg_id: Option<String>,
}

pub struct ChatRoom {
    id: ChatId,
    members: Members,
    db: Db,
    settings: Arc<Settings>,
    registry: Recipient<RoomStopped>,
    idle: IdleStop,
}

impl ChatRoom {
    pub fn new(id: ChatId, db: Db, settings: Arc<Settings>, registry: Recipient<RoomStopped>) -> Self {
        let members = Members::new(RoomName::Chat(id.clone()), db.observer().clone());
        ChatRoom { id, members, db, settings, registry, idle: IdleStop::default() }
    }

    fn membership_changed(&mut self, ctx: &mut Context<Self>) {
        let empty = self.members.is_empty();
        self.idle.update(empty, self.settings.room_idle, ctx);
    }
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
        self.membership_changed(ctx);
    }

    fn stopped(&mut self, ctx: &mut Context<Self>) {
        self.registry.do_send(RoomStopped::Chat(self.id.clone(), ctx.address()));
    }
}

impl Handler<JoinChat> for ChatRoom {
    type Result = AtomicResponse<Self, bool>;

    fn handle(&mut self, msg: JoinChat, _: &mut Context<Self>) -> Self::Result {
        let (id, user, since, max) =
            (self.id.clone(), msg.requester.peer.user_id.clone(), msg.since_seq, self.settings.max_recovery);
        let opened = self.db.run(move |s| s.open_chat(&id, &user, since, max));
        AtomicResponse::new(Box::pin(opened.into_actor(self).map(move |result, room, ctx| {
            let req = msg.requester;
            match result {
                Ok(snapshot) => {
                    let first = room.members.add(req.peer.clone());
                    let members = room.members.list();
                    req.ack(ChatJoined {
                        room: room.members.room(),
                        members: &members,
                        last_seq: snapshot.last_seq,
                        messages: &snapshot.messages,
                        recovered: snapshot.recovered,
                    });
                    if first {
                        room.members.announce_join(&req.peer);
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
    type Result = AtomicResponse<Self, Result<Appended, WireError>>;

    fn handle(&mut self, msg: PostMessage, _: &mut Context<Self>) -> Self::Result {
        if let Some(req) = &msg.requester {
            if !self.members.contains(req.peer.session_id) {
                let refusal = not_member_error(&self.db, self.id.clone(), msg.author.clone());
                return AtomicResponse::new(Box::pin(refusal.into_actor(self).map(move |e, _, _| {
                    if let Some(req) = &msg.requester {
                        req.fail(&e);
                    }
                    Err(e)
                })));
            }
        }
        let new = NewMessage {
            chat_id: self.id.clone(),
            user_id: msg.author.clone(),
            content: msg.content,
            client_msg_id: msg.client_msg_id,
            check_access: msg.requester.is_none(),
        };
        let stored = self.db.append(new);
        let requester = msg.requester;
        AtomicResponse::new(Box::pin(stored.into_actor(self).map(move |result: Result<Appended, WireError>, room, _| {
            if let Some(req) = &requester {
                match &result {
                    Ok(a) => req.ack(OneMessage { message: &a.message }),
                    Err(e) => req.fail(e),
                }
            }
            let appended = result?;
            if appended.fresh {
                let frame = frames::push("chat:message", room.members.room(), OneMessage { message: &appended.message });
                room.members.broadcast(frame, None);
            }
            Ok(appended)
        })))
    }
}

impl Handler<Leave> for ChatRoom {
    type Result = ();

    fn handle(&mut self, msg: Leave, ctx: &mut Context<Self>) {
        self.members.leave(msg);
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
