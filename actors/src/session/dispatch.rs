//! What a session does with each decoded request: answer it itself
//! (`ping`, `auth:refresh`), run it on the store (creations, history), or
//! route it to the room that owns the ordering (joins, updates, messages,
//! leaves, shares, presence lists, awareness). Rooms answer routed requests
//! themselves, on the same queue as their pushes, so an `ack` always
//! precedes the pushes it causes.

use std::sync::Arc;

use actix::{ActorFutureExt, AsyncContext, Context, WrapFuture};

use crate::chat::{not_member_error, ChatRoom, JoinChat, PostMessage};
use crate::document::{ApplyOp, DocumentRoom, JoinDocument, ShareDocument, UpdateDocument};
use crate::ids::{ChatId, RoomName};
use crate::model::Timestamp;
use crate::protocol::frames::{self, Changes, ChatCreated, DocumentCreated, History, Pong, Refreshed, SessionUpdate};
use crate::protocol::{ClientRequest, ErrorCode, Request, WireError};
use crate::members::{Ask, Leave, MemberRequest};
use crate::peer::{Peer, Requester};
use crate::session::routing::{Done, Route};
use crate::session::Session;
use crate::auth::AuthFailure;

impl Session {
    pub(super) fn dispatch(&mut self, request: Request, peer: Peer, ctx: &mut Context<Self>) {
        let Request { r#ref, body } = request;
        let event = body.event();
        let req = Requester { peer, r#ref };
        let user = req.peer.user_id.clone();
        match body {
            ClientRequest::Auth { .. } => {
                let e = WireError::invalid("event", "already authenticated; use auth:refresh to present a new token");
                self.fail(&req, "auth", &e);
            }
            ClientRequest::AuthRefresh { token } => self.refresh(&req, &token, ctx),
            ClientRequest::Ping => {
                req.ack(Pong { server_time: Timestamp::now() });
                self.deps.observer().request_done(event, 0.0);
            }

            ClientRequest::DocumentsCreate { document_id, title, content } => {
                let job = self.deps.db.run(move |s| s.create_document(&document_id, &title, &content, &user));
                self.reply_from_store(ctx, req, "documents:create", job, |r, d| r.ack(DocumentCreated { document: d }));
            }
            ClientRequest::DocumentsJoin { document_id, since_version } => {
                let name = RoomName::Document(document_id.clone());
                if let Some(e) = self.room_limit(&name) {
                    return self.fail(&req, "documents:join", &e);
                }
                let msg = JoinDocument { requester: req.clone(), since_version };
                let route = Route::<DocumentRoom, _> { id: document_id, msg, remember: true };
                self.route(ctx, event, route, self.after_join(name, req));
            }
            ClientRequest::DocumentsUpdate { document_id, content, version } => {
                let msg = UpdateDocument { requester: req.clone(), content: Arc::from(content), version };
                let route = Route::<DocumentRoom, _> { id: document_id, msg, remember: false };
                self.route(ctx, event, route, fail_if_unreached(req, event));
            }
            ClientRequest::DocumentsOp { document_id, base_version, ops, op_id } => {
                let msg = ApplyOp { requester: req.clone(), base_version, ops: Arc::new(ops), op_id };
                let route = Route::<DocumentRoom, _> { id: document_id, msg, remember: false };
                self.route(ctx, event, route, fail_if_unreached(req, event));
            }
            ClientRequest::DocumentsHistory { document_id, after_version, limit } => {
                let job = self.deps.db.read(move |s| s.document_history(&document_id, Some(&user), after_version, limit));
                self.reply_from_store(ctx, req, "documents:history", job, |r, p| {
                    r.ack(Changes { changes: &p.changes, has_more: p.has_more })
                });
            }
            ClientRequest::DocumentsSnapshot { document_id, version } => {
                let job = self.deps.db.read(move |s| s.document_snapshot(&document_id, Some(&user), version));
                self.reply_from_store(ctx, req, "documents:snapshot", job, |r, d| r.ack(DocumentCreated { document: d }));
            }
            ClientRequest::DocumentsLeave { document_id } => {
                self.leave(ctx, RoomName::Document(document_id), req, "documents:leave");
            }
            ClientRequest::DocumentsShare { document_id, user_id, grant } => {
                let msg = ShareDocument { by: Some(user), requester: Some(req.clone()), user_id, grant };
                let route = Route::<DocumentRoom, _> { id: document_id, msg, remember: false };
                self.route(ctx, event, route, fail_if_unreached(req, event));
            }

            ClientRequest::ChatCreate { chat_id, private, members } => {
                let job = self.deps.db.run(move |s| s.create_chat(&chat_id, private, &members, Some(&user)));
                self.reply_from_store(ctx, req, "chat:create", job, |r, c| r.ack(ChatCreated { chat: c }));
            }
            ClientRequest::ChatJoin { chat_id, since_seq } => {
                let name = RoomName::Chat(chat_id.clone());
                if let Some(e) = self.room_limit(&name) {
                    return self.fail(&req, "chat:join", &e);
                }
                let msg = JoinChat { requester: req.clone(), since_seq };
                let route = Route::<ChatRoom, _> { id: chat_id, msg, remember: true };
                self.route(ctx, event, route, self.after_join(name, req));
            }
            ClientRequest::ChatMessage { chat_id, content, client_msg_id } => {
                if !self.in_chat(ctx, &chat_id, &req, event) {
                    return;
                }
                let msg = PostMessage { author: user, requester: Some(req.clone()), content: Arc::from(content), client_msg_id };
                let route = Route::<ChatRoom, _> { id: chat_id, msg, remember: false };
                self.route(ctx, event, route, fail_if_unreached(req, event));
            }
            ClientRequest::ChatHistory { chat_id, before_seq, limit } => {
                let job = self.deps.db.read(move |s| s.history(&chat_id, Some(&user), before_seq, limit));
                self.reply_from_store(ctx, req, "chat:history", job, |r, p| {
                    r.ack(History { messages: &p.messages, has_more: p.has_more })
                });
            }
            ClientRequest::ChatLeave { chat_id } => {
                if self.in_chat(ctx, &chat_id, &req, event) {
                    self.leave(ctx, RoomName::Chat(chat_id), req, event);
                }
            }

            ClientRequest::PresenceList { room, after_user_id, limit } => {
                self.route_to_joined(ctx, room, req, event, Ask::List { after_user_id, limit });
            }
            ClientRequest::AwarenessSet { room, state } => {
                self.route_to_joined(ctx, room, req, event, Ask::SetAwareness(state));
            }
        }
    }

    /// Routes a request of a member to the room it names (either kind), if
    /// this connection joined it; otherwise answers it as a non-member's:
    /// for a chat, access first ([`Session::in_chat`]), for a document
    /// `NOT_JOINED`. The room checks membership again (it has the last
    /// word) and answers.
    fn route_to_joined(&mut self, ctx: &mut Context<Self>, room: RoomName, req: Requester, event: &'static str, ask: Ask) {
        let msg = MemberRequest { requester: req.clone(), ask };
        match room {
            RoomName::Chat(chat_id) => {
                if self.in_chat(ctx, &chat_id, &req, event) {
                    let route = Route::<ChatRoom, _> { id: chat_id, msg, remember: false };
                    self.route(ctx, event, route, fail_if_unreached(req, event));
                }
            }
            RoomName::Document(document_id) => {
                let name = RoomName::Document(document_id.clone());
                if !self.rooms.contains_key(&name) {
                    return self.fail(&req, event, &WireError::not_joined(name));
                }
                let route = Route::<DocumentRoom, _> { id: document_id, msg, remember: false };
                self.route(ctx, event, route, fail_if_unreached(req, event));
            }
        }
    }

    fn fail(&self, req: &Requester, event: &'static str, e: &WireError) {
        self.deps.observer().error(event, e.code);
        req.fail(e);
    }

    /// Answers a request that the store alone serves.
    fn reply_from_store<T, F>(
        &mut self,
        ctx: &mut Context<Self>,
        req: Requester,
        event: &'static str,
        job: impl std::future::Future<Output = Result<T, WireError>> + 'static,
        ack: F,
    ) where
        T: 'static,
        F: FnOnce(&Requester, &T) + 'static,
    {
        let started = self.begin();
        ctx.spawn(job.into_actor(self).map(move |result, act, ctx| {
            match result {
                Ok(v) => ack(&req, &v),
                Err(e) => act.fail(&req, event, &e),
            }
            act.end(event, started, ctx);
        }));
    }

    /// `LIMIT_EXCEEDED` when joining one more room would pass
    /// `max_rooms_per_connection` (re-joining a room does not count).
    fn room_limit(&self, name: &RoomName) -> Option<WireError> {
        let max = self.settings().max_rooms_per_connection;
        if self.rooms.contains_key(name) || self.rooms.len() < max {
            return None;
        }
        Some(WireError::limit(
            "max_rooms_per_connection",
            format!("this connection already joined {max} rooms"),
        ))
    }

    /// Whether this connection is in the chat. If not, the request is
    /// answered with the error of a non-member ([`not_member_error`]:
    /// access is checked first, so a stranger to a private chat hears
    /// `PERMISSION_DENIED`, anyone who could join `NOT_JOINED`).
    fn in_chat(&mut self, ctx: &mut Context<Self>, chat_id: &ChatId, req: &Requester, event: &'static str) -> bool {
        if self.rooms.contains_key(&RoomName::Chat(chat_id.clone())) {
            return true;
        }
        let refusal = not_member_error(&self.deps.db, chat_id.clone(), req.peer.user_id.clone());
        let (req, started) = (req.clone(), self.begin());
        ctx.spawn(refusal.into_actor(self).map(move |e, act, ctx| {
            act.fail(&req, event, &e);
            act.end(event, started, ctx);
        }));
        false
    }

    /// Keeps the room if the join succeeded, forgets it otherwise. The room
    /// leaves a refusal to us so that it goes out after the slot is free: a
    /// client at its room limit may join another room as soon as it reads
    /// the error.
    fn after_join(&self, name: RoomName, req: Requester) -> Done<Result<(), WireError>> {
        let was_member = self.rooms.contains_key(&name);
        Box::new(move |act, _, joined| {
            if let Err(e) = joined.and_then(|answer| answer) {
                if !was_member {
                    act.rooms.remove(&name);
                }
                act.fail(&req, "join", &e);
            }
        })
    }

    fn leave(&mut self, ctx: &mut Context<Self>, name: RoomName, req: Requester, event: &'static str) {
        let Some(room) = self.rooms.remove(&name) else {
            return self.fail(&req, event, &WireError::not_joined(&name));
        };
        let msg = Leave { session_id: self.id, requester: Some(req.clone()) };
        let sent: std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), actix::MailboxError>>>> = match room {
            crate::session::routing::RoomAddr::Document(a) => Box::pin(a.send(msg)),
            crate::session::routing::RoomAddr::Chat(a) => Box::pin(a.send(msg)),
        };
        let started = self.begin();
        ctx.spawn(sent.into_actor(self).map(move |answer, act, ctx| {
            if let Err(e) = answer {
                act.fail(&req, event, &e.into());
            }
            act.end(event, started, ctx);
        }));
    }

    fn refresh(&mut self, req: &Requester, token: &str, ctx: &mut Context<Self>) {
        let current = req.peer.user_id.clone();
        let identity = match self.deps.verifier.verify(token) {
            Ok(i) if i.user_id == current => i,
            Ok(_) => {
                let e = WireError::new(ErrorCode::Unauthenticated, "the new token is for another user; nothing changed");
                return self.fail(req, "auth:refresh", &e);
            }
            Err(f @ AuthFailure::Expired) | Err(f @ AuthFailure::Invalid(_)) => {
                return self.fail(req, "auth:refresh", &f.into());
            }
        };
        let expires_at = identity.expires_at();
        if let Some(old) = &mut self.identity {
            old.expires_at = identity.expires_at;
        }
        self.arm_expiry(ctx);
        req.ack(Refreshed { expires_at });
        let mut rooms: Vec<&RoomName> = self.rooms.keys().collect();
        rooms.sort_by_cached_key(|r| r.to_string());
        let update = frames::session_event("session_update", None, SessionUpdate { user_id: &current, expires_at, rooms });
        self.send(update, ctx);
    }
}

/// For routed requests the room answers; only a failure to reach it is ours
/// to report.
fn fail_if_unreached<T: 'static>(req: Requester, event: &'static str) -> Done<T> {
    Box::new(move |act, _, answer| {
        if let Err(e) = answer {
            act.fail(&req, event, &e);
        }
    })
}
