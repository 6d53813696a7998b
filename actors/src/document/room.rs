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
//! prepared on versions the room has seen committed; an edit that arrives
//! while the group's change set still waits for its batch joins the group
//! ([`OpenSet`]). After a commit the room may hold the next group briefly
//! for the connections it just acked, so that busy editors' edits commit
//! together ([`gather`]).
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
//! In cluster mode the room subscribes to its document's events (before
//! it loads the timeline), publishes each version it commits (its push,
//! which carries the change), and lets out the versions of other nodes in
//! order with its own ([`Ordered`]): each joins the timeline as it is let
//! out, so the next group is prepared on it, and no group is prepared
//! while the room knows it is behind. Versions still missing after
//! `gap_wait`, or that the periodic check finds, are read from the
//! history. A revoked access is published so that every node removes the
//! user's connections from its room; the periodic check repairs a lost one
//! ([`access`]).

mod access;
mod gather;
mod remote;
mod rights;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use actix::dev::ResponseFuture;
use actix::{
    Actor, ActorFutureExt, AsyncContext, AtomicResponse, Context, Handler, Message, MessageResult, Recipient, WrapFuture,
};
use bytestring::ByteString;
use tokio::sync::oneshot;

use crate::config::Settings;
use crate::document::order::Ordered;
use crate::document::pending::{Answer, Pending, Reply, Slots};
use self::gather::Gather;
use self::rights::Confirmed;
use crate::document::timeline::{Draft, Edit, EditRef, Rejection, Timeline, WindowLimits, WINDOW_BYTES};
use crate::ids::{DocumentId, RoomName, SessionId, UserId, Version};
use crate::cluster::{self, Cluster, DocumentVersion, Remote, RoomEvent};
use crate::lifecycle::{HasMembers, IdleStop, RoomDeps, RoomKind, RoomStopped, ROOM_MAILBOX};
use crate::members::{Leave, MemberRequest, Members, PresenceQuery, Tick};
use crate::model::{Change, ChangeKind, DocumentView, Grant, Role, Text, Timestamp};
use crate::ot::Operation;
use crate::peer::Requester;
use crate::protocol::frames::{DocumentJoined, DocumentUpdatedAck, OpApplied, Shared};
use crate::protocol::request::DOCUMENT_HISTORY_LIMIT_MAX;
use crate::protocol::{ErrorCode, Push, WireError};
use crate::store::{CommitOutcome, Db, OpenSet, Refusal, StoreError};

/// Most edits of one room in one commit: bounds the work a group adds to a
/// transaction, and what a redone group prepares again.
pub const MAX_GROUP: usize = 256;

/// How many versions after an operation's base the operation can have been
/// stored as: it was rebased from a base inside the window (at most
/// `max_recovery` changes behind the version then current) and took a
/// place in a group of at most [`MAX_GROUP`]. A resend older than the
/// window is looked up in this range of the history, and nowhere else.
/// (Lowering `max_recovery` narrows it for operations stored before.)
fn op_id_reach(settings: &Settings) -> i64 {
    i64::from(settings.max_recovery) + MAX_GROUP as i64
}
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
/// Cluster mode: how long a room whose commit found the document moved
/// waits for the winning node's versions to come through Redis before it
/// reads them from the history. The winner publishes right after its
/// commit, and Redis brings it within a millisecond or two on a LAN (see
/// `gap_wait`), usually before the loser's own commit has answered.
const MOVED_WAIT: std::time::Duration = std::time::Duration::from_millis(10);
/// How long a room keeps the document it encoded for a join: long enough
/// for a storm of joins (a reconnect after a restart) to share it.
const KEEP_ENCODED: std::time::Duration = std::time::Duration::from_secs(1);

/// `documents:join`. Answers `Ok` once the connection is a member, or the
/// refusal, which the session sends after it has forgotten the room (so a
/// client that reads the error can join another room at once).
#[derive(Message, Clone)]
#[rtype(result = "Result<(), WireError>")]
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
    /// Shared with the group commit, which takes it when it runs.
    set: OpenSet,
    since: Instant,
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
    /// Set after a commit: the next group waits for its acked authors.
    gather: Option<Gather>,
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
    /// Edit rights the store confirmed, to commit without reading roles.
    confirmed: Confirmed,
    /// Cluster mode only: the other nodes, this room's subscription to its
    /// events, and the order of its versions with theirs.
    ordered: Option<Ordered>,
    /// Cluster mode: the document's access count as of the last check of
    /// the members' roles (`None`: not checked since the room started).
    access: access::Checked,
    /// A drop of the timeline's encoded document is scheduled.
    forgetting: bool,
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
            gather: None,
            checking: 0,
            rights_checks: HashMap::new(),
            uncertain: HashMap::new(),
            slots: Slots::default(),
            editors: HashSet::new(),
            confirmed: Confirmed::default(),
            ordered: cluster.map(Ordered::new),
            access: access::Checked::default(),
            forgetting: false,
        }
    }

    /// A room with neither members nor edits to answer stops after
    /// `room_idle`; call whenever either changes.
    fn activity_changed(&mut self, ctx: &mut Context<Self>) {
        // Edit rights are a cache for the users connected here: a room that
        // stays open under a churn of users must not keep every user it has
        // seen. Pruned when it holds twice what the members need, so the
        // cost per leave stays constant on average; a pruned user's next
        // edit reads its role again.
        if self.editors.len() > 2 * self.members.connection_count() + 32 {
            let members = &self.members;
            self.editors.retain(|user| members.has_user(user));
            self.editors.shrink_to(self.editors.len() * 2);
        }
        let members = &self.members;
        self.confirmed.prune(2 * members.connection_count() + 32, |user| members.has_user(user));
        let idle = self.members.is_empty() && self.waiting.is_empty() && self.committing.is_none() && self.checking == 0;
        self.idle.update(idle, self.settings.room_idle, ctx);
    }

    fn limits(&self) -> WindowLimits {
        WindowLimits { changes: self.settings.max_recovery as usize, bytes: WINDOW_BYTES }
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
        let read = self.db.run(move |s| s.timeline(&id, limits.changes, limits.bytes));
        ctx.wait(read.into_actor(self).map(move |read, room, ctx| {
            let result = read.map(|loaded| {
                if room.timeline.is_none() {
                    let timeline = Timeline::new(loaded, limits);
                    if let Some(ordered) = &mut room.ordered {
                        ordered.start(timeline.version());
                    }
                    room.timeline = Some(timeline);
                }
            });
            then(room, ctx, result);
            if room.ordered.is_some() {
                // Versions of other nodes that came while it loaded.
                room.let_out(ctx);
                room.resume(ctx);
            }
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
        if let (Some(gather), Some(session)) = (&mut self.gather, pending.session()) {
            gather.arrived(session);
        }
        let Err(pending) = self.extend(pending) else { return };
        self.waiting.push_back(pending);
        self.submit(ctx);
    }

    /// Adds an edit to the group in flight while the group commit has not
    /// taken its change set yet (it waits for the batch before it): the
    /// edit is then stored with it instead of a whole commit later. Only
    /// when nothing waits before it (the order of a connection's edits
    /// holds), and not in cluster mode, where a group on a version other
    /// nodes moved past is prepared again as a whole.
    fn extend(&mut self, pending: Pending) -> Result<(), Pending> {
        let (Some(flight), Some(timeline)) = (&mut self.committing, &self.timeline) else { return Err(pending) };
        if !self.waiting.is_empty() || self.ordered.is_some() || flight.group.len() >= MAX_GROUP {
            return Err(pending);
        }
        let (draft, confirmed, max_bytes) = (&mut flight.draft, &self.confirmed, self.settings.max_document_bytes);
        let extended = flight.set.extend(|set| {
            let edit = EditRef { edit: &pending.edit, user: &pending.user, op_id: pending.op_id.as_deref() };
            if let Some(extension) = timeline.extend(draft, &edit, max_bytes) {
                extension.apply(set);
                set.rights_at = confirmed.covering(set.changes.iter().map(|c| &c.user_id));
            }
        });
        match extended {
            Some(()) => {
                flight.group.push(pending);
                Ok(())
            }
            None => Err(pending),
        }
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
        let Edit::Op { base, .. } = pending.edit else {
            let current = self.timeline.as_ref().map_or(Version(0), Timeline::version);
            return pending.fail(&self.conflict(current));
        };
        self.checking += 1;
        let (id, user, reach) = (self.id.clone(), pending.user.clone(), op_id_reach(&self.settings));
        let found = self.db.run(move |s| s.find_change(&id, &user, &op_id, base, reach));
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
            // Cluster mode: never on a version known to be old (the group
            // would find the document moved), nor while a join reads.
            if self.ordered.as_ref().is_some_and(Ordered::holds_commits) {
                break;
            }
            if let Some(gather) = &self.gather {
                if !gather.done(Instant::now()) && self.waiting.len() < MAX_GROUP {
                    break;
                }
                self.gather = None;
            }
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
            let mut set = draft.change_set(&self.id);
            set.rights_at = self.confirmed.covering(set.changes.iter().map(|c| &c.user_id));
            let set = OpenSet::new(set);
            let stored = self.db.commit_changes(set.clone());
            self.committing = Some(InFlight { group, draft, set, since: Instant::now() });
            ctx.spawn(stored.into_actor(self).map(|outcome, room, ctx| room.stored(outcome, ctx)));
        }
        self.activity_changed(ctx);
    }

    fn reject(&self, pending: Pending, rejection: Option<&Rejection>, current: Version) {
        match rejection {
            Some(Rejection::Refused(e)) => pending.fail(e),
            Some(Rejection::Duplicate(original)) => pending.answer_original(original, &self.id),
            Some(Rejection::Conflict) | None => pending.fail(&self.conflict(current)),
        }
    }

    /// The store answered the group in flight.
    fn stored(&mut self, outcome: Result<CommitOutcome, WireError>, ctx: &mut Context<Self>) {
        let Some(InFlight { group, draft, since, .. }) = self.committing.take() else { return };
        let on_base = self.timeline.as_ref().is_some_and(|t| t.version() == draft.base_version());
        match outcome {
            Ok(CommitOutcome::Stored { at, rights_at }) if on_base => {
                self.confirmed.stored(rights_at, draft.authors());
                let acked: Vec<SessionId> = group.iter().filter_map(Pending::session).collect();
                if let Some(pause) = self.release(group, draft, at) {
                    ctx.run_later(pause, |room, ctx| room.resume(ctx));
                }
                let queued = self.waiting.iter().filter_map(Pending::session);
                if let Some((gather, wait)) = Gather::after(acked, queued, since.elapsed(), self.settings.edit_gather) {
                    self.gather = Some(gather);
                    ctx.run_later(wait, |room, ctx| room.submit(ctx));
                }
            }
            Ok(CommitOutcome::Stored { .. }) => {
                // The timeline was reloaded meanwhile (a change that did
                // not apply): whether it holds the group cannot be told.
                log::error!("document {}: a group on version {} was stored after a reload", self.id, draft.base_version().0);
                let e = WireError::busy("the document was reloaded while this edit was stored; send it again with its op_id");
                for pending in group {
                    self.remember_uncertain(&pending);
                    pending.fail(&e);
                }
            }
            Ok(CommitOutcome::Moved { current }) => {
                self.redo(group);
                let Some(ordered) = &mut self.ordered else {
                    log::info!("document {}: at version {} in the store, not {}; catching up", self.id, current.0, draft.base_version().0);
                    return self.catch_up(ctx);
                };
                // Another node committed first: its versions are usually
                // on their way through Redis; read them if they are not
                // here soon. The group waits until the room has them.
                log::debug!("document {}: at version {} in the store, not {}", self.id, current.0, draft.base_version().0);
                ordered.note_stored(current);
                // The winner hears it, and gives the next turn away.
                ordered.cluster.publish(self.members.room(), RoomEvent::Contended);
                self.schedule_repair(MOVED_WAIT, ctx);
            }
            Ok(CommitOutcome::Refused(refusals)) => {
                let mut refused: HashMap<usize, Refusal> = refusals.into_iter().collect();
                let mut rest = Vec::new();
                for (i, pending) in group.into_iter().enumerate() {
                    match draft.change_index(i).and_then(|c| refused.remove(&c)) {
                        Some(Refusal::Denied(e)) => {
                            self.confirmed.forget();
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
        // Cluster mode: versions of other nodes that waited behind the
        // group, and gaps a repair waited for the outcome to read.
        self.let_out(ctx);
        self.resume(ctx);
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
        self.db.observer().edits_redone(group.len() as u64);
        for mut pending in group.into_iter().rev() {
            pending.redone += 1;
            if pending.redone > MAX_REDO {
                pending.fail(&WireError::busy(format!("document {} keeps changing under this edit; retry", self.id)));
            } else {
                self.waiting.push_front(pending);
            }
        }
    }

    /// A committed group: acks and pushes, in version order (in cluster
    /// mode each version is published first). Cluster mode: how long to
    /// leave the next commit to other nodes.
    fn release(&mut self, group: Vec<Pending>, draft: Draft, at: Timestamp) -> Option<std::time::Duration> {
        let timeline = self.timeline.as_mut()?;
        let (id, members) = (&self.id, &mut self.members);
        let cluster = self.ordered.as_ref().map(|o| &*o.cluster);
        let top = cluster.map(|_| draft.top());
        let mut group: Vec<Option<Pending>> = group.into_iter().map(Some).collect();
        timeline.commit(draft, at, |i, outcome, now| {
            let Some(pending) = group.get_mut(i).and_then(Option::take) else { return };
            match outcome {
                Ok(change) => announce(id, members, cluster, pending, change, now.title()),
                Err(Rejection::Refused(e)) => pending.fail(e),
                Err(Rejection::Duplicate(original)) => pending.answer_original(original, id),
                Err(Rejection::Conflict) => {
                    pending.fail(&StoreError::VersionConflict { document: id.clone(), current: now.version() }.into())
                }
            }
        });
        self.ordered.as_mut().zip(top).and_then(|(ordered, top)| ordered.own(top))
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
                if let Err(e) = room.integrate(change, None) {
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

    /// One change committed elsewhere (by another node or engine process,
    /// or by a commit whose outcome was unknown): into the timeline, and
    /// to the members as its author's members heard it (`documents:op` or
    /// `documents:updated`): `frame` when another node encoded it.
    fn integrate(&mut self, change: Change, frame: Option<ByteString>) -> Result<(), crate::ot::OpError> {
        let Some(timeline) = self.timeline.as_mut() else { return Ok(()) };
        let sender = match &change.op_id {
            Some(op_id) if !self.uncertain.is_empty() => self.uncertain.remove(&(change.user_id.clone(), op_id.clone())),
            _ => None,
        };
        let room = self.members.room();
        // An operation's push is made before the change moves into the
        // timeline; an update's from the document it makes.
        let frame = match (frame, change.kind) {
            (Some(frame), _) => Some(frame),
            (None, ChangeKind::Op) => {
                let (version, ops, user_id) = (change.version, &change.ops, &change.user_id);
                Some(Push::DocumentsOp { document_id: &self.id, version, ops, user_id }.encode(room))
            }
            (None, ChangeKind::Update) => None,
        };
        timeline.integrate(change, self.settings.max_document_bytes)?;
        let frame = frame.unwrap_or_else(|| {
            let document = timeline.view();
            Push::DocumentsUpdated { document, user_id: document.updated_by }.encode(room)
        });
        self.members.broadcast(frame, sender);
        Ok(())
    }

    /// Forgets the timeline and loads it again; the waiting edits are then
    /// prepared on it, or fail with the store's error. Members that missed
    /// versions on the way hear the document as it is now
    /// (`documents:updated`).
    fn reload(&mut self, ctx: &mut Context<Self>) {
        let before = self.timeline.take().map(|t| t.version());
        if let Some(ordered) = &mut self.ordered {
            ordered.pause();
        }
        self.loaded(ctx, move |room, ctx, loaded| match loaded {
            Ok(()) => {
                if let Some(timeline) = room.timeline.as_ref().filter(|t| before.is_some_and(|b| t.version() > b)) {
                    let document = timeline.view();
                    room.members.push(Push::DocumentsUpdated { document, user_id: document.updated_by }, None);
                }
                room.submit(ctx);
            }
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
/// whole-content update. In cluster mode the push is published first, to
/// the other nodes.
fn announce(
    id: &DocumentId,
    members: &mut Members,
    cluster: Option<&dyn Cluster>,
    pending: Pending,
    change: &Change,
    title: &str,
) {
    let (sender, version, user_id) = (pending.session(), change.version, &change.user_id);
    let frame = match &pending.edit {
        Edit::Op { .. } => Push::DocumentsOp { document_id: id, version, ops: &change.ops, user_id }.encode(members.room()),
        Edit::Replace { content, .. } => {
            let document = DocumentView {
                id,
                title,
                content: Text::Str(content),
                version,
                updated_at: change.created_at,
                updated_by: user_id,
            };
            Push::DocumentsUpdated { document, user_id }.encode(members.room())
        }
    };
    if let Some(cluster) = cluster {
        let (created_at, op_id) = (change.created_at, change.op_id.clone());
        let published = DocumentVersion { version, created_at, op_id, frame: frame.clone() };
        cluster.publish(members.room(), RoomEvent::DocumentVersion(published));
    }
    for answer in pending.answers {
        match &pending.edit {
            Edit::Op { .. } => answer.acked(version, |r| r.ack(OpApplied { document_id: id, version, ops: &change.ops })),
            Edit::Replace { .. } => answer.acked(version, |r| r.ack(DocumentUpdatedAck { document_id: id, version })),
        }
    }
    members.broadcast(frame, sender);
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
        if let Some(ordered) = &mut self.ordered {
            let (sub, confirmed) = cluster::subscribe(&ordered.cluster, self.members.room().clone(), ctx.address().recipient());
            ordered.subscription = Some(sub);
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
    type Result = ResponseFuture<Result<(), WireError>>;

    fn handle(&mut self, msg: JoinDocument, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        self.join(msg, tx, ctx);
        // Dropped unanswered: the room stopped with the join still queued.
        Box::pin(async move { rx.await.unwrap_or_else(|_| Err(WireError::busy("the document room stopped; retry"))) })
    }
}

impl DocumentRoom {
    /// Reads the joiner's role and lets it in. Cluster mode: a joiner that
    /// asks to recover past what this room let out (it saw those versions
    /// through another node) has the room read them from the history first,
    /// in the same call, so that its answer recovers exactly; while a group
    /// is in flight (whose versions they may be), after the group's outcome.
    fn join(&mut self, msg: JoinDocument, tx: oneshot::Sender<Result<(), WireError>>, ctx: &mut Context<Self>) {
        self.loaded(ctx, move |room, ctx, loaded| {
            if let Err(e) = loaded {
                let _ = tx.send(Err(e));
                return;
            }
            let behind = match (&mut room.ordered, msg.since_version) {
                (Some(ordered), Some(since)) if since > ordered.released() => {
                    if room.committing.is_some() {
                        return ordered.joins.push_back((msg, tx));
                    }
                    ordered.joins_reading += 1;
                    Some(ordered.released())
                }
                _ => None,
            };
            let (id, user) = (room.id.clone(), msg.requester.peer.user_id.clone());
            let read = room.db.run(move |s| {
                let role = s.document_role(&id, &user)?;
                let missed = match behind {
                    // A failed read leaves the room as it is; the joiner is
                    // answered from it.
                    Some(after) => s.document_history(&id, None, after, CATCH_UP_PAGE).map_or_else(|_| Vec::new(), |p| p.changes),
                    None => Vec::new(),
                };
                Ok((role, missed))
            });
            // Waiting holds the mailbox and the commit in flight: the ack
            // shows the document as of the last version pushed.
            ctx.wait(read.into_actor(room).map(move |read, room, ctx| {
                let role = read.map(|(role, missed)| {
                    room.take_rows(missed);
                    role
                });
                if room.ordered.is_none() {
                    let _ = tx.send(room.admit(msg, role, ctx));
                    return;
                }
                if let (Some(ordered), Some(_)) = (&mut room.ordered, behind) {
                    ordered.joins_reading -= 1;
                }
                room.let_out(ctx);
                let _ = tx.send(room.admit(msg, role, ctx));
                room.resume(ctx);
            }));
        });
    }

    /// Lets a joiner in (or not, by its role), with the changes it missed
    /// when it asked for them and the window still has them.
    fn admit(&mut self, msg: JoinDocument, role: Result<Role, WireError>, ctx: &mut Context<Self>) -> Result<(), WireError> {
        let req = msg.requester;
        let (role, timeline) = match (role, &self.timeline) {
            (Ok(role), Some(timeline)) => (role, timeline),
            (Err(e), _) => return Err(e),
            (Ok(_), None) => return Err(WireError::busy("the document is reloading; retry")),
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
        let document = timeline.document_json()?;
        self.members.admit(&req, |name, presence| {
            req.ack(DocumentJoined { room: name, role, document, presence, changes, recovered })
        });
        if !std::mem::replace(&mut self.forgetting, true) {
            ctx.run_later(KEEP_ENCODED, |room, _| {
                room.forgetting = false;
                if let Some(timeline) = &mut room.timeline {
                    timeline.forget_encoded();
                }
            });
        }
        self.activity_changed(ctx);
        Ok(())
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
                if let Some(ordered) = &room.ordered {
                    ordered.cluster.publish(room.members.room(), RoomEvent::Revoked { user: msg.user_id.clone() });
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
            RoomEvent::DocumentVersion(version) => {
                let Some(ordered) = &mut self.ordered else { return };
                ordered.offer_remote(version);
                self.let_out(ctx);
                self.resume(ctx);
            }
            RoomEvent::Contended => {
                if let Some(ordered) = &mut self.ordered {
                    ordered.contended();
                }
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
