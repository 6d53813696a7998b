//! One actor per open document. It serializes the document's operations:
//! each runs its transaction on the database executors while the room holds
//! its mailbox (`AtomicResponse`), then acks the requester and pushes to the
//! members, so every member sees the same order and nothing unacknowledged
//! is ever announced. Version checks happen in the store's transaction: the
//! database, not this actor, is the serialization point of record.
//!
//! The room remembers the newest version it saw committed. An update from
//! an editor that names that version or an older one cannot win (versions
//! only grow in the database), so it is refused at once with
//! `VERSION_CONFLICT` instead of costing a transaction while the room
//! holds its mailbox: when several editors race for one version, the
//! losers no longer queue behind the winner's commit one by one. Newer
//! versions always go to the database, which may know of writes by other
//! engine processes.
//!
//! In cluster mode the room subscribes to its document's events, and a
//! revoked access is published so that every node removes the user's
//! connections from its room; the periodic check repairs a lost one
//! ([`access`]).

mod access;

use std::collections::HashSet;
use std::sync::Arc;

use actix::{
    Actor, ActorFutureExt, AsyncContext, AtomicResponse, Context, Handler, Message, MessageResult, Recipient, WrapFuture,
};

use crate::ids::{DocumentId, RoomName, SessionId, UserId, Version};
use crate::model::{Document, Grant};
use crate::protocol::frames::{DocumentJoined, DocumentUpdatedAck, Shared};
use crate::protocol::{ErrorCode, Push, WireError};
use crate::lifecycle::{HasMembers, IdleStop, RoomDeps, RoomKind, RoomStopped, ROOM_MAILBOX};
use crate::members::{Leave, MemberRequest, Members, PresenceQuery, Tick};
use crate::peer::Requester;
use crate::store::{Db, DocumentUpdate, StoreError};
use crate::config::Settings;
use crate::cluster::{self, Cluster, Remote, RoomEvent, Subscription};

/// `documents:join`. Answers whether the connection is now a member.
#[derive(Message, Clone)]
#[rtype(result = "bool")]
pub struct JoinDocument {
    pub requester: Requester,
}

/// `documents:update`. `content` is shared so that a retry does not copy it.
#[derive(Message, Clone)]
#[rtype(result = "Result<Version, WireError>")]
pub struct UpdateDocument {
    pub requester: Requester,
    pub content: Arc<str>,
    pub version: Version,
}

/// `documents:share` and `PUT /api/documents/{id}/access/{user}`.
#[derive(Message, Clone)]
#[rtype(result = "Result<(), WireError>")]
pub struct ShareDocument {
    /// `None`: the server itself (HTTP API), which may always share.
    pub by: Option<UserId>,
    pub requester: Option<Requester>,
    pub user_id: UserId,
    pub grant: Grant,
}

pub struct DocumentRoom {
    id: DocumentId,
    members: Members,
    db: Db,
    settings: Arc<Settings>,
    registry: Recipient<RoomStopped<Self>>,
    idle: IdleStop,
    /// The newest version this room saw committed (or refused against).
    committed: Option<Version>,
    /// Members whose role lets them edit, as of their join or a later
    /// share through this room. Only their stale updates are refused
    /// here: anyone else hears the store's verdict, `PERMISSION_DENIED`.
    editors: HashSet<SessionId>,
    /// Cluster mode only: the other nodes, and this room's subscription to
    /// its events (held while the room runs).
    cluster: Option<(Arc<dyn Cluster>, Option<Subscription>)>,
    /// Cluster mode: the document's access count as of the last check of
    /// the members' roles (`None`: not checked since the room started).
    access: access::Checked,
}

impl DocumentRoom {
    pub fn new(id: DocumentId, deps: RoomDeps, registry: Recipient<RoomStopped<Self>>) -> Self {
        let RoomDeps { db, settings, cluster } = deps;
        let members = Members::new(RoomName::Document(id.clone()), db.observer().clone(), &settings, cluster.clone());
        DocumentRoom {
            id,
            members,
            db,
            settings,
            registry,
            idle: IdleStop::default(),
            committed: None,
            editors: HashSet::new(),
            cluster: cluster.map(|c| (c, None)),
            access: access::Checked::default(),
        }
    }

    fn saw(&mut self, version: Version) {
        self.committed = Some(self.committed.map_or(version, |v| v.max(version)));
    }

    /// The refusal of an update that names a version already committed.
    fn stale(&self, requester: &Requester, version: Version) -> Option<WireError> {
        let committed = self.committed?;
        if version > committed || !self.editors.contains(&requester.peer.session_id) {
            return None;
        }
        Some(WireError::from(StoreError::VersionConflict { document: self.id.clone(), current: committed }))
    }

    fn membership_changed(&mut self, ctx: &mut Context<Self>) {
        let empty = self.members.is_empty();
        self.idle.update(empty, self.settings.room_idle, ctx);
    }
}

impl RoomKind for DocumentRoom {
    type Id = DocumentId;
}

impl HasMembers for DocumentRoom {
    fn members(&self) -> &Members {
        &self.members
    }
}

impl Actor for DocumentRoom {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(ROOM_MAILBOX);
        self.members.ring_at(ctx.address().downgrade().into());
        self.membership_changed(ctx);
        if let Some((cluster, subscription)) = &mut self.cluster {
            let (sub, confirmed) = cluster::subscribe(cluster, self.members.room().clone(), ctx.address().recipient());
            *subscription = Some(sub);
            ctx.wait(confirmed.into_actor(self).map(|elsewhere, room, _| {
                if let Some(nodes) = elsewhere {
                    room.members.remote(RoomEvent::Presence(nodes));
                }
            }));
        }
    }

    fn stopped(&mut self, ctx: &mut Context<Self>) {
        self.registry.do_send(RoomStopped { id: self.id.clone(), addr: ctx.address() });
    }
}

impl Handler<JoinDocument> for DocumentRoom {
    type Result = AtomicResponse<Self, bool>;

    fn handle(&mut self, msg: JoinDocument, _: &mut Context<Self>) -> Self::Result {
        let (id, user) = (self.id.clone(), msg.requester.peer.user_id.clone());
        let opened = self.db.run(move |s| s.open_document(&id, &user));
        AtomicResponse::new(Box::pin(opened.into_actor(self).map(move |result, room, ctx| {
            let req = msg.requester;
            match result {
                Ok((document, role)) => {
                    room.saw(document.version);
                    if role.can_edit() {
                        room.editors.insert(req.peer.session_id);
                    } else {
                        room.editors.remove(&req.peer.session_id);
                    }
                    room.members.admit(&req, |name, presence| {
                        req.ack(DocumentJoined { room: name, role, document: &document, presence })
                    });
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

impl Handler<UpdateDocument> for DocumentRoom {
    type Result = AtomicResponse<Self, Result<Version, WireError>>;

    fn handle(&mut self, msg: UpdateDocument, _: &mut Context<Self>) -> Self::Result {
        if let Some(e) = self.stale(&msg.requester, msg.version) {
            msg.requester.fail(&e);
            return AtomicResponse::new(Box::pin(actix::fut::ready(Err(e))));
        }
        let stored = self.db.update_document(DocumentUpdate {
            document_id: self.id.clone(),
            user_id: msg.requester.peer.user_id.clone(),
            content: msg.content.clone(),
            version: msg.version,
        });
        AtomicResponse::new(Box::pin(stored.into_actor(self).map(move |result: Result<Document, WireError>, room, _| {
            let req = msg.requester;
            match &result {
                Ok(doc) => {
                    room.saw(doc.version);
                    req.ack(DocumentUpdatedAck { document_id: &doc.id, version: doc.version })
                }
                Err(e) => {
                    if let Some(current) = e.details.current_version {
                        room.saw(Version(current));
                    }
                    req.fail(e)
                }
            }
            let document = result?;
            let updated = Push::DocumentsUpdated { document: &document, user_id: &req.peer.user_id };
            room.members.push(updated, Some(req.peer.session_id));
            Ok(document.version)
        })))
    }
}

impl Handler<ShareDocument> for DocumentRoom {
    type Result = AtomicResponse<Self, Result<(), WireError>>;

    fn handle(&mut self, msg: ShareDocument, _: &mut Context<Self>) -> Self::Result {
        let (id, by, user, grant) = (self.id.clone(), msg.by.clone(), msg.user_id.clone(), msg.grant);
        let stored = self.db.run(move |s| s.share_document(&id, by.as_ref(), &user, grant));
        AtomicResponse::new(Box::pin(stored.into_actor(self).map(move |result, room, ctx| {
            if let Some(req) = &msg.requester {
                match &result {
                    Ok(()) => req.ack(Shared { document_id: &room.id, user_id: &msg.user_id, role: msg.grant }),
                    Err(e) => req.fail(e),
                }
            }
            result?;
            let sessions = room.members.sessions_of(&msg.user_id);
            let can_edit = matches!(msg.grant, Grant::Role(role) if role.can_edit());
            for session in sessions {
                if can_edit {
                    room.editors.insert(session);
                } else {
                    room.editors.remove(&session);
                }
            }
            if msg.grant == Grant::Revoke {
                room.evict(&msg.user_id);
                room.membership_changed(ctx);
                if let Some((cluster, _)) = &room.cluster {
                    cluster.publish(room.members.room(), RoomEvent::Revoked { user: msg.user_id.clone() });
                }
            }
            Ok(())
        })))
    }
}

impl DocumentRoom {
    /// Removes every connection of a user who lost access: each gets
    /// `PERMISSION_DENIED` about the room and stays connected; the others
    /// hear `user:left`.
    fn evict(&mut self, user: &UserId) {
        self.evict_sessions(&self.members.sessions_of(user));
    }

    /// Removes connections that lost access, as [`Self::evict`] does.
    fn evict_sessions(&mut self, sessions: &[SessionId]) {
        if sessions.is_empty() {
            return;
        }
        let room = self.members.room().clone();
        let denied = WireError::new(ErrorCode::PermissionDenied, format!("access to {room} was revoked"));
        let frame = Push::Error(&denied).encode(&room);
        for &session in sessions {
            if let Some(peer) = self.members.remove(session) {
                peer.deliver(frame.clone());
                peer.evicted(room.clone());
            }
        }
    }
}

impl Handler<Remote> for DocumentRoom {
    type Result = ();

    fn handle(&mut self, msg: Remote, ctx: &mut Context<Self>) {
        match msg.0 {
            RoomEvent::Revoked { user } => {
                for session in self.members.sessions_of(&user) {
                    self.editors.remove(&session);
                }
                self.evict(&user);
                self.membership_changed(ctx);
            }
            RoomEvent::ChatMessage { .. } => {}
            presence => {
                self.members.remote(presence);
                // Pushes may have removed slow consumers.
                self.membership_changed(ctx);
            }
        }
    }
}

impl Handler<PresenceQuery> for DocumentRoom {
    type Result = MessageResult<PresenceQuery>;

    fn handle(&mut self, q: PresenceQuery, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.members.query(&q))
    }
}

impl Handler<Leave> for DocumentRoom {
    type Result = ();

    fn handle(&mut self, msg: Leave, ctx: &mut Context<Self>) {
        self.editors.remove(&msg.session_id);
        self.members.leave(msg);
        self.membership_changed(ctx);
    }
}

impl Handler<MemberRequest> for DocumentRoom {
    type Result = ();

    fn handle(&mut self, msg: MemberRequest, _: &mut Context<Self>) {
        if self.members.contains(msg.requester.peer.session_id) {
            self.members.answer(msg);
        } else {
            msg.requester.fail(&WireError::not_joined(self.members.room()));
        }
    }
}

impl Handler<Tick> for DocumentRoom {
    type Result = ();

    fn handle(&mut self, tick: Tick, ctx: &mut Context<Self>) {
        self.members.tick(tick);
        // Pushes may have removed slow consumers.
        self.membership_changed(ctx);
    }
}
