//! One actor per open document. It orders the document's edits (text
//! operations and whole-content updates) and the pushes they cause.
//!
//! The room keeps the document's current content and a window of its
//! recent changes ([`Timeline`]), loaded from the store when the room
//! first needs it (holding its mailbox while it loads). An edit is checked
//! against it at once (edit rights, `op_id` idempotency, base version),
//! then queued. The room does not hold its mailbox while it commits: edits
//! that arrive meanwhile wait, and are prepared together (transformed in
//! arrival order) into the next group, which is one change set in the next
//! group commit. One group is in flight at a time, so every group is
//! prepared on versions the room has seen committed.
//!
//! The store commits a group only if the document is still at the version
//! the group was prepared on (the database is the serialization point of
//! record: several engine processes may share it). When it moved, the room
//! reads the changes it missed from the history table, pushes them, and
//! prepares the group again; when the store refuses an edit of a group (an
//! author lost edit rights, an `op_id` stored already), the others are
//! prepared again without it. Acks and pushes go out only after the
//! commit, in version order: on its sender's connection an edit's ack
//! follows the pushes of every earlier version.
//!
//! A join holds the mailbox (and the completion of a commit in flight)
//! while it reads the joiner's role, so its ack shows the document exactly
//! as of the last version pushed; later versions reach the joiner as
//! pushes.
//!
//! In cluster mode the room subscribes to its document's events, and a
//! revoked access is published so that every node removes the user's
//! connections from its room; the periodic check repairs a lost one
//! ([`access`]).

mod access;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use actix::dev::ResponseFuture;
use actix::{
    Actor, ActorFutureExt, AsyncContext, AtomicResponse, Context, Handler, Message, MessageResult, Recipient, WrapFuture,
};
use tokio::sync::oneshot;

use crate::config::Settings;
use crate::document::pending::{Answer, Pending, Reply, Slots};
use crate::document::timeline::{Draft, Edit, EditRef, Rejection, Timeline, WindowLimits, WINDOW_CHARS};
use crate::ids::{DocumentId, RoomName, SessionId, UserId, Version};
use crate::cluster::{self, Cluster, Remote, RoomEvent, Subscription};
use crate::lifecycle::{HasMembers, IdleStop, RoomDeps, RoomKind, RoomStopped, ROOM_MAILBOX};
use crate::members::{Leave, MemberRequest, Members, PresenceQuery, Tick};
use crate::model::{Change, Document, Grant, Role, Timestamp};
use crate::ot::Operation;
use crate::peer::Requester;
use crate::protocol::frames::{DocumentJoined, DocumentUpdatedAck, OpApplied, Shared};
use crate::protocol::request::DOCUMENT_HISTORY_LIMIT_MAX;
use crate::protocol::{ErrorCode, Push, WireError};
use crate::store::{CommitOutcome, Db, Refusal, StoreError};

/// Most edits of one room in one commit: bounds the work a group adds to a
/// transaction, and what a redone group prepares again.
pub const MAX_GROUP: usize = 256;
/// Most edits a room holds waiting (from every connection); past it,
/// `SERVER_BUSY`. The same bound as a chat's appends in flight.
pub const MAX_WAITING: usize = 4096;
/// How many times an edit's group may be prepared again (the document
/// moved under it, or another edit of it was refused) before the edit is
/// answered `SERVER_BUSY` (nothing of it was stored; safe to retry). Each
/// time, another engine process committed to the document first: a
/// document written through several processes at once can keep one
/// process's edits losing that race, and this bounds how long they wait.
const MAX_REDO: u8 = 32;
/// Changes read per store call while catching up with versions another
/// engine process committed.
const CATCH_UP_PAGE: i64 = DOCUMENT_HISTORY_LIMIT_MAX;

/// `documents:join`. Answers whether the connection is now a member.
#[derive(Message, Clone)]
#[rtype(result = "bool")]
pub struct JoinDocument {
    pub requester: Requester,
    pub since_version: Option<Version>,
}

/// `documents:update`. `content` is shared so that a retry does not copy it.
#[derive(Message, Clone)]
#[rtype(result = "Result<Version, WireError>")]
pub struct UpdateDocument {
    pub requester: Requester,
    pub content: Arc<str>,
    pub version: Version,
}

/// `documents:op`. `ops` is shared so that a retry does not copy it.
#[derive(Message, Clone)]
#[rtype(result = "Result<Version, WireError>")]
pub struct ApplyOp {
    pub requester: Requester,
    pub base_version: Version,
    pub ops: Arc<Operation>,
    pub op_id: Option<String>,
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

/// The group whose commit is in flight.
struct InFlight {
    group: Vec<Pending>,
    draft: Draft,
}

pub struct DocumentRoom {
    id: DocumentId,
    members: Members,
    db: Db,
    settings: Arc<Settings>,
    registry: Recipient<RoomStopped<Self>>,
    idle: IdleStop,
    /// `None` until loaded (or while reloading).
    timeline: Option<Timeline>,
    waiting: VecDeque<Pending>,
    committing: Option<InFlight>,
    /// Edits waiting for a store read before they may queue (an edit
    /// right, an old `op_id`).
    checking: usize,
    /// Edits waiting for their author's edit rights to be read, by author:
    /// one read per author at a time, and the author's edits queue in the
    /// order they came.
    rights_checks: HashMap<UserId, Vec<Pending>>,
    /// Edits whose commit failed without saying whether it happened (a
    /// connection lost during COMMIT): `(author, op_id)` → the connection
    /// that sent it. If the changes read while catching up show it was
    /// committed, it is not pushed back to that connection, which will
    /// hear the original ack when it sends it again. At most
    /// [`MAX_WAITING`] entries.
    uncertain: HashMap<(UserId, String), SessionId>,
    slots: Slots,
    /// Users known to have edit rights (from their join, a share through
    /// this room, or a check): their edits need no read. The commit checks
    /// again, in its transaction.
    editors: HashSet<UserId>,
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
            timeline: None,
            waiting: VecDeque::new(),
            committing: None,
            checking: 0,
            rights_checks: HashMap::new(),
            uncertain: HashMap::new(),
            slots: Slots::default(),
            editors: HashSet::new(),
            cluster: cluster.map(|c| (c, None)),
            access: access::Checked::default(),
        }
    }

    /// A room with neither members nor edits to answer stops after
    /// `room_idle`; call whenever either changes.
    fn activity_changed(&mut self, ctx: &mut Context<Self>) {
        let idle = self.members.is_empty() && self.waiting.is_empty() && self.committing.is_none() && self.checking == 0;
        self.idle.update(idle, self.settings.room_idle, ctx);
    }

    fn limits(&self) -> WindowLimits {
        WindowLimits { changes: self.settings.max_recovery as usize, chars: WINDOW_CHARS }
    }

    fn conflict(&self, current: Version) -> WireError {
        StoreError::VersionConflict { document: self.id.clone(), current }.into()
    }

    /// Runs `then` once the timeline is loaded, holding the mailbox while
    /// it loads (so that no other request sees the room without it).
    fn loaded(&mut self, ctx: &mut Context<Self>, then: impl FnOnce(&mut Self, &mut Context<Self>, Result<(), WireError>) + 'static) {
        if self.timeline.is_some() {
            return then(self, ctx, Ok(()));
        }
        let (id, limits) = (self.id.clone(), self.limits());
        let read = self.db.run(move |s| s.timeline(&id, limits.changes, limits.chars));
        ctx.wait(read.into_actor(self).map(move |read, room, ctx| {
            let result = read.map(|loaded| {
                if room.timeline.is_none() {
                    room.timeline = Some(Timeline::new(loaded, limits));
                }
            });
            then(room, ctx, result)
        }));
    }

    // ---- taking an edit ------------------------------------------------------------------

    /// An edit arrives: counted against its connection, then checked once
    /// the timeline is there.
    fn take(&mut self, mut pending: Pending, ctx: &mut Context<Self>) {
        let busy = self.waiting.len() + self.checking >= MAX_WAITING;
        if busy || !pending.answers.iter_mut().all(|a| self.slots.take(a)) {
            let e = WireError::busy(format!("too many edits of document {} are waiting; wait for their acks", self.id));
            return pending.fail(&e);
        }
        self.activity_changed(ctx);
        self.loaded(ctx, move |room, ctx, loaded| match loaded {
            Ok(()) => room.check_rights(pending, ctx),
            Err(e) => pending.fail(&e),
        });
    }

    /// Edit rights: known, or read from the store (without holding the
    /// mailbox). An author's edits that arrive while its rights are read
    /// wait behind the read, in order.
    fn check_rights(&mut self, pending: Pending, ctx: &mut Context<Self>) {
        if let Some(behind) = self.rights_checks.get_mut(&pending.user) {
            self.checking += 1;
            return behind.push(pending);
        }
        if self.editors.contains(&pending.user) {
            return self.queue(pending, ctx);
        }
        self.checking += 1;
        let (id, user) = (self.id.clone(), pending.user.clone());
        self.rights_checks.insert(user.clone(), vec![pending]);
        let role = self.db.run({
            let user = user.clone();
            move |s| s.document_role(&id, &user)
        });
        ctx.spawn(role.into_actor(self).map(move |role, room, ctx| {
            let checked = room.rights_checks.remove(&user).unwrap_or_default();
            room.checking -= checked.len();
            let refusal = match role {
                Ok(role) if role.can_edit() => {
                    room.editors.insert(user);
                    None
                }
                Ok(_) => Some(StoreError::PermissionDenied(format!("viewers may not edit document {}", room.id)).into()),
                Err(e) => Some(e),
            };
            for pending in checked {
                match &refusal {
                    None => room.queue(pending, ctx),
                    Some(e) => pending.fail(e),
                }
            }
            room.activity_changed(ctx);
        }));
    }

    /// What the room can tell at once: a base version it never had (or no
    /// longer has), a resent `op_id`, an update of a version already
    /// taken. Anything else waits for the next group.
    fn queue(&mut self, pending: Pending, ctx: &mut Context<Self>) {
        let Some(timeline) = &self.timeline else {
            return pending.fail(&WireError::busy("the document is reloading; retry"));
        };
        let (current, floor) = (timeline.version(), timeline.floor());
        match &pending.edit {
            Edit::Op { base, .. } => {
                let base = *base;
                if base > current {
                    return pending.fail(&self.conflict(current));
                }
                if let Some(op_id) = pending.op_id.as_deref() {
                    if let Some(original) = timeline.find(&pending.user, op_id) {
                        return pending.answer_original(original, &self.id);
                    }
                    if let Some(same) = self.same_op(&pending.user, op_id) {
                        same.answers.extend(pending.answers);
                        return;
                    }
                }
                if base < floor {
                    return self.look_up(pending, ctx);
                }
            }
            Edit::Replace { version, .. } => {
                if *version <= current {
                    return pending.fail(&self.conflict(current));
                }
            }
        }
        self.waiting.push_back(pending);
        self.submit(ctx);
    }

    /// The waiting or committing edit with this `(author, op_id)`.
    fn same_op(&mut self, user: &UserId, op_id: &str) -> Option<&mut Pending> {
        let committing = self.committing.iter_mut().flat_map(|f| f.group.iter_mut());
        self.waiting.iter_mut().chain(committing).find(|p| &p.user == user && p.op_id.as_deref() == Some(op_id))
    }

    /// An operation based before the window: its original if its `op_id`
    /// was stored, else `VERSION_CONFLICT` (its client rebases it).
    fn look_up(&mut self, pending: Pending, ctx: &mut Context<Self>) {
        let Some(op_id) = pending.op_id.clone() else {
            let current = self.timeline.as_ref().map_or(Version(0), Timeline::version);
            return pending.fail(&self.conflict(current));
        };
        self.checking += 1;
        let (id, user) = (self.id.clone(), pending.user.clone());
        let found = self.db.run(move |s| s.find_change(&id, &user, &op_id));
        ctx.spawn(found.into_actor(self).map(move |found, room, ctx| {
            room.checking -= 1;
            match found {
                Ok(Some(original)) => pending.answer_original(&original, &room.id),
                Ok(None) => {
                    let current = room.timeline.as_ref().map_or(Version(0), Timeline::version);
                    pending.fail(&room.conflict(current));
                }
                Err(e) => pending.fail(&e),
            }
            room.activity_changed(ctx);
        }));
    }

    // ---- committing ----------------------------------------------------------------------

    /// Prepares the waiting edits into a group and hands it to the group
    /// commit, unless a group is in flight already.
    fn submit(&mut self, ctx: &mut Context<Self>) {
        while self.committing.is_none() && !self.waiting.is_empty() {
            let Some(timeline) = &self.timeline else { break };
            let take = self.waiting.len().min(MAX_GROUP);
            let group: Vec<Pending> = self.waiting.drain(..take).collect();
            let edits = group.iter().map(|p| EditRef { edit: &p.edit, user: &p.user, op_id: p.op_id.as_deref() });
            let mut draft = timeline.prepare(edits, self.settings.max_document_bytes);
            if draft.is_empty() {
                let current = timeline.version();
                for (pending, rejection) in group.into_iter().zip(draft.rejections()) {
                    self.reject(pending, rejection.as_ref(), current);
                }
                continue;
            }
            let stored = self.db.commit_changes(draft.change_set(&self.id));
            self.committing = Some(InFlight { group, draft });
            ctx.spawn(stored.into_actor(self).map(|outcome, room, ctx| room.stored(outcome, ctx)));
        }
        self.activity_changed(ctx);
    }

    fn reject(&self, pending: Pending, rejection: Option<&Rejection>, current: Version) {
        match rejection {
            Some(Rejection::Refused(e)) => pending.fail(e),
            Some(Rejection::Conflict) | None => pending.fail(&self.conflict(current)),
        }
    }

    /// The store answered the group in flight.
    fn stored(&mut self, outcome: Result<CommitOutcome, WireError>, ctx: &mut Context<Self>) {
        let Some(InFlight { group, draft }) = self.committing.take() else { return };
        match outcome {
            Ok(CommitOutcome::Stored { at }) => self.release(group, draft, at),
            Ok(CommitOutcome::Moved { current }) => {
                log::info!("document {}: at version {} in the store, not {}; catching up", self.id, current.0, draft.base_version().0);
                self.redo(group);
                return self.catch_up(ctx);
            }
            Ok(CommitOutcome::Refused(refusals)) => {
                let mut refused: HashMap<usize, Refusal> = refusals.into_iter().collect();
                let mut rest = Vec::new();
                for (i, pending) in group.into_iter().enumerate() {
                    match draft.change_index(i).and_then(|c| refused.remove(&c)) {
                        Some(Refusal::Duplicate(original)) => pending.answer_original(&original, &self.id),
                        Some(Refusal::Denied(e)) => {
                            self.editors.remove(&pending.user);
                            pending.fail(&e.into());
                        }
                        None => rest.push(pending),
                    }
                }
                self.redo(rest);
            }
            Err(e) => {
                // Nothing was stored, or (rarely) the store cannot tell:
                // the edits the draft had refused keep their own answer.
                let current = self.timeline.as_ref().map_or(Version(0), Timeline::version);
                for (pending, rejection) in group.into_iter().zip(draft.rejections()) {
                    match rejection {
                        Some(rejection) => self.reject(pending, Some(&rejection), current),
                        None => {
                            self.remember_uncertain(&pending);
                            pending.fail(&e);
                        }
                    }
                }
            }
        }
        self.submit(ctx);
    }

    fn remember_uncertain(&mut self, pending: &Pending) {
        let (Some(op_id), Some(session)) = (&pending.op_id, pending.session()) else { return };
        if self.uncertain.len() >= MAX_WAITING {
            self.uncertain.clear();
        }
        self.uncertain.insert((pending.user.clone(), op_id.clone()), session);
    }

    /// Puts a group back at the head of the queue, to be prepared again.
    fn redo(&mut self, group: Vec<Pending>) {
        for mut pending in group.into_iter().rev() {
            pending.redone += 1;
            if pending.redone > MAX_REDO {
                pending.fail(&WireError::busy(format!("document {} keeps changing under this edit; retry", self.id)));
            } else {
                self.waiting.push_front(pending);
            }
        }
    }

    /// A committed group: acks and pushes, in version order.
    fn release(&mut self, group: Vec<Pending>, draft: Draft, at: Timestamp) {
        let Some(timeline) = self.timeline.as_mut() else { return };
        let (id, members) = (&self.id, &mut self.members);
        let mut group: Vec<Option<Pending>> = group.into_iter().map(Some).collect();
        timeline.commit(draft, at, |i, outcome, document| {
            let Some(pending) = group.get_mut(i).and_then(Option::take) else { return };
            match outcome {
                Ok(change) => announce(id, members, pending, change, document),
                Err(Rejection::Refused(e)) => pending.fail(e),
                Err(Rejection::Conflict) => {
                    pending.fail(&StoreError::VersionConflict { document: id.clone(), current: document.version }.into())
                }
            }
        });
    }

    /// Reads the changes another engine process committed after the
    /// room's version, integrates and pushes them, then goes on with the
    /// queue. Holds the mailbox: nothing is prepared on a stale timeline.
    fn catch_up(&mut self, ctx: &mut Context<Self>) {
        let Some(after) = self.timeline.as_ref().map(Timeline::version) else { return self.reload(ctx) };
        let id = self.id.clone();
        let read = self.db.run(move |s| s.document_history(&id, None, after, CATCH_UP_PAGE));
        ctx.wait(read.into_actor(self).map(move |page, room, ctx| {
            let page = match page {
                Ok(page) => page,
                Err(e) => {
                    log::warn!("document {}: cannot read the changes after version {}: {e}; reloading", room.id, after.0);
                    return room.reload(ctx);
                }
            };
            for change in page.changes {
                if let Err(e) = room.integrate(change) {
                    log::error!("document {}: a stored change does not apply ({e}); reloading", room.id);
                    return room.reload(ctx);
                }
            }
            if page.has_more {
                return room.catch_up(ctx);
            }
            room.submit(ctx);
        }));
    }

    /// One change committed elsewhere (or by a commit whose outcome was
    /// unknown): into the timeline, and to the members.
    fn integrate(&mut self, change: Change) -> Result<(), crate::ot::OpError> {
        let Some(timeline) = self.timeline.as_mut() else { return Ok(()) };
        let (version, ops, user) = (change.version, change.ops.clone(), change.user_id.clone());
        let sender = change.op_id.as_ref().and_then(|op_id| self.uncertain.remove(&(user.clone(), op_id.clone())));
        timeline.integrate(change, self.settings.max_document_bytes)?;
        self.members.push(Push::DocumentsOp { document_id: &self.id, version, ops: &ops, user_id: &user }, sender);
        Ok(())
    }

    /// Forgets the timeline and loads it again; the waiting edits are then
    /// prepared on it, or fail with the store's error.
    fn reload(&mut self, ctx: &mut Context<Self>) {
        self.timeline = None;
        self.loaded(ctx, |room, ctx, loaded| match loaded {
            Ok(()) => room.submit(ctx),
            Err(e) => {
                for pending in room.waiting.drain(..) {
                    pending.fail(&e);
                }
                room.activity_changed(ctx);
            }
        });
    }
}

/// Acks a committed edit to its requesters, then pushes it to the other
/// members: `documents:op` for an operation, `documents:updated` for a
/// whole-content update.
fn announce(id: &DocumentId, members: &mut Members, pending: Pending, change: &Change, current: &Document) {
    let sender = pending.session();
    let version = change.version;
    match &pending.edit {
        Edit::Op { .. } => {
            for answer in pending.answers {
                answer.acked(version, |r| r.ack(OpApplied { document_id: id, version, ops: &change.ops }));
            }
            members.push(Push::DocumentsOp { document_id: id, version, ops: &change.ops, user_id: &change.user_id }, sender);
        }
        Edit::Replace { content, .. } => {
            for answer in pending.answers {
                answer.acked(version, |r| r.ack(DocumentUpdatedAck { document_id: id, version }));
            }
            let document = Document {
                id: id.clone(),
                title: current.title.clone(),
                content: String::from(&**content),
                version,
                updated_at: change.created_at,
                updated_by: change.user_id.clone(),
            };
            members.push(Push::DocumentsUpdated { document: &document, user_id: &change.user_id }, sender);
        }
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
        self.activity_changed(ctx);
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
    type Result = ResponseFuture<bool>;

    fn handle(&mut self, msg: JoinDocument, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        self.loaded(ctx, move |room, ctx, loaded| {
            if let Err(e) = loaded {
                msg.requester.fail(&e);
                let _ = tx.send(false);
                return;
            }
            let (id, user) = (room.id.clone(), msg.requester.peer.user_id.clone());
            let role = room.db.run(move |s| s.document_role(&id, &user));
            // Waiting holds the mailbox and the commit in flight: the ack
            // shows the document as of the last version pushed.
            ctx.wait(role.into_actor(room).map(move |role, room, ctx| {
                let _ = tx.send(room.admit(msg, role, ctx));
            }));
        });
        Box::pin(async move { rx.await.unwrap_or(false) })
    }
}

impl DocumentRoom {
    /// Lets a joiner in (or not, by its role), with the changes it missed
    /// when it asked for them and the window still has them.
    fn admit(&mut self, msg: JoinDocument, role: Result<Role, WireError>, ctx: &mut Context<Self>) -> bool {
        let req = msg.requester;
        let (role, timeline) = match (role, &self.timeline) {
            (Ok(role), Some(timeline)) => (role, timeline),
            (Err(e), _) => {
                req.fail(&e);
                return false;
            }
            (Ok(_), None) => {
                req.fail(&WireError::busy("the document is reloading; retry"));
                return false;
            }
        };
        if role.can_edit() {
            self.editors.insert(req.peer.user_id.clone());
        } else {
            self.editors.remove(&req.peer.user_id);
        }
        let (changes, recovered) = match msg.since_version.map(|since| timeline.recovery(since)) {
            None => (None, None),
            Some(Some(changes)) => (Some(changes), Some(true)),
            Some(None) => (None, Some(false)),
        };
        let document = timeline.document();
        self.members.admit(&req, |name, presence| {
            req.ack(DocumentJoined { room: name, role, document, presence, changes, recovered })
        });
        self.activity_changed(ctx);
        true
    }
}

impl Handler<UpdateDocument> for DocumentRoom {
    type Result = Reply;

    fn handle(&mut self, msg: UpdateDocument, ctx: &mut Context<Self>) -> Self::Result {
        let user = msg.requester.peer.user_id.clone();
        let (answer, reply) = Answer::new(msg.requester);
        let edit = Edit::Replace { content: msg.content, version: msg.version };
        self.take(Pending::new(edit, user, None, answer), ctx);
        reply
    }
}

impl Handler<ApplyOp> for DocumentRoom {
    type Result = Reply;

    fn handle(&mut self, msg: ApplyOp, ctx: &mut Context<Self>) -> Self::Result {
        let user = msg.requester.peer.user_id.clone();
        let (answer, reply) = Answer::new(msg.requester);
        let edit = Edit::Op { base: msg.base_version, ops: msg.ops };
        self.take(Pending::new(edit, user, msg.op_id, answer), ctx);
        reply
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
            match msg.grant {
                Grant::Role(role) if role.can_edit() => room.editors.insert(msg.user_id.clone()),
                _ => room.editors.remove(&msg.user_id),
            };
            if msg.grant == Grant::Revoke {
                room.evict(&msg.user_id);
                room.activity_changed(ctx);
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
                self.editors.remove(&user);
                self.evict(&user);
                self.activity_changed(ctx);
            }
            RoomEvent::ChatMessage { .. } => {}
            presence => {
                self.members.remote(presence);
                // Pushes may have removed slow consumers.
                self.activity_changed(ctx);
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
        self.members.leave(msg);
        self.activity_changed(ctx);
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
        self.activity_changed(ctx);
    }
}
