//! A document room's memory of its document: the content at the newest
//! committed version and a window of the changes before it, from which
//! operations made on older versions are rebased without a read. Pure: no
//! actor, no I/O.
//!
//! # The window
//!
//! The window holds the newest changes while they fit in two bounds
//! ([`WindowLimits`]): `max_recovery` changes (the setting that also
//! bounds `since_version` recovery) and [`WINDOW_BYTES`] bytes of their
//! operations (their JSON, or their size in memory where that is more). The oldest version it reaches back to is the
//! *floor*: an operation based on the floor or later is rebased; one based
//! on an older version is refused with `VERSION_CONFLICT` (its client
//! reloads and rebases itself), and so is a `since_version` join older
//! than the floor answered with `recovered: false`. Loading the window on
//! a room's start reads exactly what it would have grown to, so the rule
//! does not depend on when the room started.
//!
//! # Preparing a group
//!
//! Edits that arrive while a commit is in flight are prepared together
//! ([`Timeline::prepare`]): each operation is transformed over the
//! committed changes after its base and over the edits before it in the
//! group (committed first wins ties: [`Side::Right`]), then applied; a
//! whole-content update must name the next version and becomes the
//! operation replacing the content. [`Timeline::extend`] adds an edit to
//! a group whose change set was sent and not yet taken by the store, as if
//! it had been prepared with the group. The [`Draft`] holds the group's
//! versions until the store says they are committed
//! ([`Timeline::commit`]); nothing of it is visible before.

use std::cell::OnceCell;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use ropey::Rope;
use serde_json::value::RawValue;

use crate::ids::{UserId, Version};
use crate::model::{Change, ChangeKind, Document, DocumentView, Text, Timestamp};
use crate::ot::{self, OpError, Operation, Side};
use crate::protocol::WireError;
use crate::store::{self, snapshot_due, NewChange};

/// Bytes a room's window of changes may weigh ([`weight`]): about four
/// whole-content updates of a document at the default `max_document_bytes`
/// (1 MiB), or tens of thousands of keystrokes. Per open room, with the
/// content itself.
pub const WINDOW_BYTES: usize = 4 * 1024 * 1024;

/// Changes a join recovers whatever the document's size (see
/// [`Timeline::recovery`]): a short document's editors reconnecting after
/// a few hundred keystrokes get them, not the whole document.
pub const RECOVERY_FLOOR_BYTES: usize = 64 * 1024;

/// Work one operation's rebase may cost the room, in components walked
/// and bytes of text copied (each transformation step walks both
/// operations and copies the inserted text of the one rebased). About the
/// cost of applying an operation to a full 1 MiB document; an operation
/// that needs more (very many components, based far behind a busy
/// document) is refused with `VERSION_CONFLICT`, so one client's edits
/// cannot hold the room's thread for long.
pub const MAX_REBASE_WORK: usize = 1 << 20;

/// How much of a document's history a room keeps.
#[derive(Clone, Copy, Debug)]
pub struct WindowLimits {
    /// Most changes (`max_recovery`).
    pub changes: usize,
    /// Most bytes of their weight ([`WINDOW_BYTES`], [`weight`]).
    pub bytes: usize,
}

/// A change in the window.
struct Entry {
    change: Change,
    /// Characters of the content after it.
    len_after: usize,
    /// What the window counts ([`weight`]).
    weight: usize,
}

/// See the module documentation.
pub struct Timeline {
    /// At the newest committed version, but for its content, which is
    /// `content` (this one's is left empty).
    document: Document,
    /// The content: a rope, which an operation edits in place (a string
    /// was copied whole at every operation) and a draft clones in O(1).
    content: Rope,
    /// Characters of `content`.
    len: usize,
    entries: VecDeque<Entry>,
    /// Sum of the entries' weights.
    weight: usize,
    /// Characters of the content at the floor.
    floor_len: usize,
    /// `(author, op_id)` of the changes in the window.
    op_ids: HashMap<UserId, HashMap<String, Version>>,
    history_start: Version,
    /// Bytes of operation JSON committed since the newest snapshot.
    since_snapshot: usize,
    limits: WindowLimits,
    /// The document at the current version as JSON, once a join asked for
    /// it: a storm of joins (clients reconnecting to a long document)
    /// costs one encoding, not one each. Dropped with the next version,
    /// or by the room soon after ([`Timeline::forget_encoded`]).
    encoded: OnceCell<Box<RawValue>>,
}

/// An edit to prepare, with its author.
pub struct EditRef<'a> {
    pub edit: &'a Edit,
    pub user: &'a UserId,
    pub op_id: Option<&'a str>,
}

/// What an editor asks for.
#[derive(Debug)]
pub enum Edit {
    /// `documents:op`: `ops` made on `base` (shared with the request, which
    /// a stopped room's router may send again).
    Op { base: Version, ops: Arc<Operation> },
    /// `documents:update`: `content` as `version` (current + 1).
    Replace { content: Arc<str>, version: Version },
}

/// Why an edit of a group gets no version.
#[derive(Debug, Clone, PartialEq)]
pub enum Rejection {
    /// `VERSION_CONFLICT`, with the version current when it is answered.
    Conflict,
    Refused(WireError),
    /// Its `(author, op_id)` is in the window: this is the original, and
    /// the resend is answered with its ack.
    Duplicate(Change),
}

/// A change of a draft, waiting for its commit.
pub struct Staged {
    pub version: Version,
    pub ops: Operation,
    pub user_id: UserId,
    pub op_id: Option<String>,
    pub kind: ChangeKind,
    /// The operation's JSON, for the store (taken by [`Draft::change_set`]).
    json: String,
    len_after: usize,
    weight: usize,
}

impl Staged {
    /// The change for the store; its operation's JSON moves into it.
    fn take_change(&mut self) -> NewChange {
        NewChange { user_id: self.user_id.clone(), ops: std::mem::take(&mut self.json), op_id: self.op_id.clone(), kind: self.kind }
    }
}

/// What a change set in the store's queue gains from [`Timeline::extend`].
pub struct Extension {
    pub change: NewChange,
    pub snapshots: Vec<(Version, String)>,
}

impl Extension {
    /// Adds itself to the set it extends.
    pub fn apply(self, set: &mut store::ChangeSet) {
        set.changes.push(self.change);
        set.snapshots.extend(self.snapshots);
    }
}

/// A prepared group: per edit, its change or why it has none; the
/// content after them all; the snapshots due.
pub struct Draft {
    base: Version,
    outcomes: Vec<Result<Staged, Rejection>>,
    /// `None` while no edit changed anything.
    content: Option<Rope>,
    len: usize,
    snapshots: Vec<(Version, String)>,
    /// [`Timeline::since_snapshot`] after the group's changes.
    since_snapshot: usize,
}

impl Timeline {
    pub fn new(loaded: store::Timeline, limits: WindowLimits) -> Timeline {
        let store::Timeline { mut document, changes, history_start, since_snapshot } = loaded;
        let content = Rope::from_str(&std::mem::take(&mut document.content));
        let len = content.len_chars();
        // Lengths backwards from the content's; stop at anything that does
        // not chain (a gap, or an operation that cannot have made it).
        let (mut after, mut expected, mut kept) = (len, document.version, Vec::new());
        for change in changes.into_iter().rev() {
            let before = match change.ops.source_len(after) {
                Some(before) if change.version == expected => before,
                _ => {
                    log::warn!("document {}: history does not chain at version {}", document.id, change.version.0);
                    break;
                }
            };
            let weight = weight(&change.ops, json_bytes(&change.ops));
            kept.push(Entry { change, len_after: after, weight });
            (after, expected) = (before, Version(expected.0 - 1));
        }
        kept.reverse();
        let mut timeline = Timeline {
            document,
            content,
            len,
            entries: VecDeque::new(),
            weight: 0,
            floor_len: after,
            op_ids: HashMap::new(),
            history_start,
            since_snapshot,
            limits,
            encoded: OnceCell::new(),
        };
        for entry in kept {
            timeline.remember(entry);
        }
        timeline.trim();
        timeline
    }

    pub fn version(&self) -> Version {
        self.document.version
    }

    /// The document at [`Timeline::version`], its content written out
    /// (O(its size)).
    #[cfg(test)]
    pub fn document(&self) -> Document {
        Document { content: self.content.to_string(), ..self.document.clone() }
    }

    /// The document at [`Timeline::version`], to encode (whole-document
    /// pushes): its content is written from the rope as it is encoded.
    pub fn view(&self) -> DocumentView<'_> {
        DocumentView { content: Text::Rope(&self.content), ..DocumentView::from(&self.document) }
    }

    /// [`Timeline::view`] as JSON, encoded once per version (join acks).
    pub fn document_json(&self) -> Result<&RawValue, WireError> {
        if let Some(json) = self.encoded.get() {
            return Ok(json);
        }
        let json = serde_json::value::to_raw_value(&self.view()).map_err(|e| WireError::internal("document", &e))?;
        Ok(self.encoded.get_or_init(|| json))
    }

    /// Drops the encoded document: it can be several times the content
    /// (a control character takes six bytes escaped), and a room that is
    /// joined once and then left alone should not hold it.
    pub fn forget_encoded(&mut self) {
        self.encoded = OnceCell::new();
    }

    pub fn title(&self) -> &str {
        &self.document.title
    }

    /// Characters of the content at [`Timeline::version`].
    pub fn chars(&self) -> usize {
        self.len
    }

    /// The oldest version an operation may be based on.
    pub fn floor(&self) -> Version {
        Version(self.version().0 - self.entries.len() as i64)
    }

    pub fn history_start(&self) -> Version {
        self.history_start
    }

    /// Characters of the content at `version` (floor to current).
    fn len_at(&self, version: Version) -> Option<usize> {
        let i = usize::try_from(version.0 - self.floor().0).ok()?;
        match i {
            0 => Some(self.floor_len),
            i => self.entries.get(i - 1).map(|e| e.len_after),
        }
    }

    /// The window's entries after `version`, ascending (empty unless
    /// floor <= version).
    fn entries_after(&self, version: Version) -> std::collections::vec_deque::Iter<'_, Entry> {
        let skip = usize::try_from(version.0 - self.floor().0).unwrap_or(usize::MAX).min(self.entries.len());
        // `range`, not `iter().skip()`: an operation on a recent version
        // starts near the end of a window of up to `max_recovery` changes.
        self.entries.range(skip..)
    }

    /// The changes after `version`, ascending (empty unless floor <= version).
    fn after(&self, version: Version) -> impl Iterator<Item = &Change> + '_ {
        self.entries_after(version).map(|e| &e.change)
    }

    /// The changes a `since_version` join recovers: every change after
    /// `since`, if the window reaches back to it and they weigh no more
    /// than the document itself (or [`RECOVERY_FLOOR_BYTES`]). The join's
    /// ack carries the document anyway, encoded once per version; the
    /// changes are encoded for each join. Without the second condition any
    /// member could make the room encode its whole window (4 MiB) for every
    /// join it sends, on the thread every room shares, while the document
    /// in the same ack said the same in less.
    pub fn recovery(&self, since: Version) -> Option<Vec<&Change>> {
        if since < self.floor() || since > self.version() {
            return None;
        }
        let weight: usize = self.entries_after(since).map(|e| e.weight).sum();
        (weight <= self.content.len_bytes().max(RECOVERY_FLOOR_BYTES)).then(|| self.after(since).collect())
    }

    /// The change `user` made with `op_id`, if it is in the window.
    pub fn find(&self, user: &UserId, op_id: &str) -> Option<&Change> {
        let version = *self.op_ids.get(user)?.get(op_id)?;
        let i = usize::try_from(version.0 - self.floor().0 - 1).ok()?;
        self.entries.get(i).map(|e| &e.change)
    }

    /// Prepares a group of edits on the committed state (see the module
    /// documentation); results above `max_bytes` are refused.
    pub fn prepare<'a>(&self, edits: impl IntoIterator<Item = EditRef<'a>>, max_bytes: usize) -> Draft {
        let mut draft = Draft {
            base: self.version(),
            outcomes: Vec::new(),
            content: None,
            len: self.len,
            snapshots: Vec::new(),
            since_snapshot: self.since_snapshot,
        };
        for edit in edits {
            self.add(&mut draft, &edit, max_bytes);
        }
        draft
    }

    /// Adds one edit to a draft whose change set went to the store already
    /// and may still grow (the batch that commits it has not taken it):
    /// what the set gains, or `None` when the edit is rejected (its
    /// rejection waits in the draft, answered with the group).
    pub fn extend(&self, draft: &mut Draft, edit: &EditRef<'_>, max_bytes: usize) -> Option<Extension> {
        if !self.add(draft, edit, max_bytes) {
            return None;
        }
        let change = draft.outcomes.last_mut()?.as_mut().ok()?.take_change();
        Some(Extension { change, snapshots: std::mem::take(&mut draft.snapshots) })
    }

    /// Stages `edit` on the draft: `true` when it has a change.
    fn add(&self, draft: &mut Draft, edit: &EditRef<'_>, max_bytes: usize) -> bool {
        match self.stage(draft, edit, max_bytes) {
            Ok((staged, content)) => {
                draft.since_snapshot += staged.json.len();
                if snapshot_due(staged.version, draft.since_snapshot) {
                    draft.snapshots.push((staged.version, content.to_string()));
                    draft.since_snapshot = 0;
                }
                draft.len = staged.len_after;
                draft.content = Some(content);
                draft.outcomes.push(Ok(staged));
                true
            }
            Err(rejection) => {
                draft.outcomes.push(Err(rejection));
                false
            }
        }
    }

    /// One edit of a group, on the draft so far.
    fn stage(&self, draft: &Draft, edit: &EditRef<'_>, max_bytes: usize) -> Result<(Staged, Rope), Rejection> {
        // Checked again here, not only when the edit was queued: changes
        // read back from the store since (another engine process stored
        // them) may hold the original. The window holds every change after
        // a base the edit can be rebased from, so this check is complete.
        if let Some(original) = edit.op_id.and_then(|op_id| self.find(edit.user, op_id)) {
            return Err(Rejection::Duplicate(original.clone()));
        }
        let text = draft.content.as_ref().unwrap_or(&self.content);
        let version = draft.top().next();
        let (ops, kind) = match edit.edit {
            Edit::Op { base, ops } => {
                let actual = self.len_at(*base).ok_or(Rejection::Conflict)?;
                if ops.base_len() > actual {
                    return Err(Rejection::Refused(OpError::BaseTooShort { needed: ops.base_len(), actual }.into()));
                }
                let committed = self.after(*base).map(|c| &c.ops);
                let drafted = draft.staged().map(|s| &s.ops);
                (rebase(ops, committed.chain(drafted)).ok_or(Rejection::Conflict)?, ChangeKind::Op)
            }
            Edit::Replace { content, version: wanted } => {
                if *wanted != version {
                    return Err(Rejection::Conflict);
                }
                (Operation::replace_chars(draft.len, content), ChangeKind::Update)
            }
        };
        let content = match edit.edit {
            Edit::Replace { content, .. } => Rope::from_str(content),
            Edit::Op { .. } => {
                let mut next = text.clone();
                ot::apply_to_rope(&mut next, &ops, max_bytes).map_err(|e| Rejection::Refused(e.into()))?;
                next
            }
        };
        let json = serde_json::to_string(&ops).map_err(|e| Rejection::Refused(WireError::internal("ops", &e)))?;
        let weight = weight(&ops, json.len());
        let len_after = ops.target_len(draft.len).unwrap_or_else(|| content.len_chars());
        let staged = Staged {
            version,
            ops,
            user_id: edit.user.clone(),
            op_id: edit.op_id.map(str::to_owned),
            kind,
            json,
            len_after,
            weight,
        };
        Ok((staged, content))
    }

    /// Makes a committed draft part of the timeline. `release` sees every
    /// edit of the group in order, with its change or its rejection, and
    /// the timeline at the group's top version; it runs before the changes
    /// join the window.
    pub fn commit(&mut self, draft: Draft, at: Timestamp, mut release: impl FnMut(usize, Result<&Change, &Rejection>, &Timeline)) {
        let Draft { outcomes, content, len, since_snapshot, .. } = draft;
        self.encoded = OnceCell::new();
        self.since_snapshot = since_snapshot;
        if let Some(content) = content {
            self.content = content;
            self.len = len;
        }
        let mut entries = Vec::new();
        if let Some(last) = outcomes.iter().flatten().last() {
            self.document.version = last.version;
            self.document.updated_at = at;
            self.document.updated_by = last.user_id.clone();
        }
        for (i, outcome) in outcomes.into_iter().enumerate() {
            match outcome {
                Ok(staged) => {
                    let change = Change {
                        version: staged.version,
                        ops: staged.ops,
                        user_id: staged.user_id,
                        created_at: at,
                        op_id: staged.op_id,
                        kind: staged.kind,
                    };
                    release(i, Ok(&change), self);
                    entries.push(Entry { change, len_after: staged.len_after, weight: staged.weight });
                }
                Err(rejection) => release(i, Err(&rejection), self),
            }
        }
        for entry in entries {
            self.remember(entry);
        }
        self.trim();
    }

    /// Adds a change committed elsewhere (by another engine process), found
    /// in the store: it must be the next version and apply.
    pub fn integrate(&mut self, change: Change, max_bytes: usize) -> Result<(), OpError> {
        if change.version != self.version().next() {
            return Err(OpError::BaseTooShort { needed: 0, actual: 0 });
        }
        ot::apply_to_rope(&mut self.content, &change.ops, max_bytes)?;
        self.encoded = OnceCell::new();
        let len_after = self.content.len_chars();
        let json_len = json_bytes(&change.ops);
        let weight = weight(&change.ops, json_len);
        self.since_snapshot += json_len;
        if snapshot_due(change.version, self.since_snapshot) {
            self.since_snapshot = 0;
        }
        self.document.version = change.version;
        self.document.updated_at = change.created_at;
        self.document.updated_by = change.user_id.clone();
        self.len = len_after;
        self.remember(Entry { change, len_after, weight });
        self.trim();
        Ok(())
    }

    fn remember(&mut self, entry: Entry) {
        if let Some(op_id) = &entry.change.op_id {
            self.op_ids.entry(entry.change.user_id.clone()).or_default().insert(op_id.clone(), entry.change.version);
        }
        self.weight += entry.weight;
        self.entries.push_back(entry);
    }

    /// Drops the oldest changes while the window is over a bound.
    fn trim(&mut self) {
        while self.entries.len() > self.limits.changes || self.weight > self.limits.bytes {
            let Some(old) = self.entries.pop_front() else { break };
            self.weight -= old.weight;
            self.floor_len = old.len_after;
            if let Some(op_id) = &old.change.op_id {
                if let Some(ids) = self.op_ids.get_mut(&old.change.user_id) {
                    if ids.get(op_id) == Some(&old.change.version) {
                        ids.remove(op_id);
                    }
                    if ids.is_empty() {
                        self.op_ids.remove(&old.change.user_id);
                    }
                }
            }
        }
    }
}

impl Draft {
    /// The version after the group's last change.
    pub fn top(&self) -> Version {
        self.staged().last().map_or(self.base, |s| s.version)
    }

    fn staged(&self) -> impl Iterator<Item = &Staged> + '_ {
        self.outcomes.iter().filter_map(|o| o.as_ref().ok())
    }

    /// Whether any edit of the group has a change to commit.
    pub fn is_empty(&self) -> bool {
        self.staged().next().is_none()
    }

    /// Per edit: its index among the changes to commit, if it has one.
    pub fn change_index(&self, edit: usize) -> Option<usize> {
        self.outcomes.get(edit)?.as_ref().ok()?;
        Some(self.outcomes[..edit].iter().filter(|o| o.is_ok()).count())
    }

    /// The version the group was prepared on.
    pub fn base_version(&self) -> Version {
        self.base
    }

    /// Per edit, in order: its rejection, or `None` for one with a change.
    pub fn rejections(self) -> impl Iterator<Item = Option<Rejection>> {
        self.outcomes.into_iter().map(|o| o.err())
    }

    /// The authors of the changes (not of the edits refused).
    pub fn authors(&self) -> impl Iterator<Item = &UserId> + '_ {
        self.staged().map(|s| &s.user_id)
    }

    /// What the store is asked to commit; the operations' JSON moves into
    /// it. The draft keeps everything else until the commit is answered.
    pub fn change_set(&mut self, document_id: &crate::ids::DocumentId) -> store::ChangeSet {
        let changes = self.outcomes.iter_mut().filter_map(|o| o.as_mut().ok()).map(Staged::take_change).collect();
        store::ChangeSet {
            document_id: document_id.clone(),
            base: self.base,
            changes,
            snapshots: std::mem::take(&mut self.snapshots),
            rights_at: None,
        }
    }
}

/// `op` transformed over `over` in order ([`Side::Right`]: what was
/// committed first wins ties), or `None` once that costs more than
/// [`MAX_REBASE_WORK`].
fn rebase<'a>(op: &Operation, over: impl Iterator<Item = &'a Operation>) -> Option<Operation> {
    let inserted = op.inserted_bytes();
    let mut work = 0_usize;
    let mut rebased: Option<Operation> = None;
    for b in over {
        let current = rebased.as_ref().unwrap_or(op);
        work = work.saturating_add(current.components().len() + b.components().len() + inserted);
        if work > MAX_REBASE_WORK {
            return None;
        }
        rebased = Some(ot::transform(current, b, Side::Right));
    }
    Some(rebased.unwrap_or_else(|| op.clone()))
}

/// Bytes of an operation's JSON, as the store measures stored ones (SQL
/// `octet_length`, which reads a value's size without reading the value).
fn json_bytes(op: &Operation) -> usize {
    serde_json::to_string(op).map_or(0, |json| json.len())
}

/// What a change weighs in the window: its size in memory, or its JSON's
/// if that is more. In memory a component takes a fixed size whatever its
/// JSON (`1,` is two bytes of it), so a window counted in JSON alone held
/// up to ten times its bound in operations of many keeps and deletes. Never
/// less than the JSON, which is what the store counts when it loads a
/// window: a room started on the history loads at least what the window
/// it would have grown holds, then drops the same oldest changes.
fn weight(op: &Operation, json_len: usize) -> usize {
    let memory = op.components().len().saturating_mul(std::mem::size_of::<ot::Component>()).saturating_add(op.inserted_bytes());
    memory.max(json_len)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::ids::DocumentId;

    fn op(value: serde_json::Value) -> Operation {
        Operation::from_json(&value).unwrap()
    }

    fn user(id: &str) -> UserId {
        UserId::parse(id).unwrap()
    }

    /// An operation of user `a` stored as `version`.
    fn change(version: i64, ops: serde_json::Value, op_id: Option<&str>) -> Change {
        let (user_id, op_id) = (user("a"), op_id.map(str::to_owned));
        Change { version: Version(version), ops: op(ops), user_id, created_at: Timestamp(0), op_id, kind: ChangeKind::Op }
    }

    fn document(content: &str, version: i64) -> Document {
        Document {
            id: DocumentId::parse("d").unwrap(),
            title: String::new(),
            content: content.into(),
            version: Version(version),
            updated_at: Timestamp(0),
            updated_by: user("a"),
        }
    }

    const ROOMY: WindowLimits = WindowLimits { changes: 1000, bytes: WINDOW_BYTES };

    fn fresh(content: &str) -> Timeline {
        Timeline::new(store::Timeline { document: document(content, 0), changes: Vec::new(), history_start: Version(0), since_snapshot: 0 }, ROOMY)
    }

    /// Prepares and commits one group (results above 64 bytes refused);
    /// returns each edit's version and operation, or its rejection.
    fn run(t: &mut Timeline, edits: &[(Edit, &str, Option<&str>)]) -> Vec<Result<(i64, serde_json::Value), Rejection>> {
        run_within(t, edits, 64)
    }

    fn run_within(
        t: &mut Timeline,
        edits: &[(Edit, &str, Option<&str>)],
        max_bytes: usize,
    ) -> Vec<Result<(i64, serde_json::Value), Rejection>> {
        let users: Vec<UserId> = edits.iter().map(|(_, u, _)| user(u)).collect();
        let refs = edits.iter().zip(&users).map(|((edit, _, op_id), user)| EditRef { edit, user, op_id: *op_id });
        let draft = t.prepare(refs, max_bytes);
        let mut out = Vec::new();
        t.commit(draft, Timestamp(1), |_, outcome, _| {
            out.push(outcome.map(|c| (c.version.0, c.ops.to_json())).map_err(Clone::clone));
        });
        out
    }

    fn edit(base: i64, ops: serde_json::Value) -> Edit {
        Edit::Op { base: Version(base), ops: Arc::new(op(ops)) }
    }

    /// A set extended while it waited for the store holds what preparing
    /// the whole group at once would: the same changes, content, snapshots.
    #[test]
    fn extending_a_sent_set_equals_preparing_the_group_at_once() {
        let t = fresh("hello");
        let edits = [
            (edit(0, json!([5, " world"])), user("a"), Some("a1")),
            (edit(0, json!([5, "!"])), user("b"), None),
            (Edit::Replace { content: Arc::from("bye"), version: Version(4) }, user("c"), None),
            (Edit::Replace { content: Arc::from("late"), version: Version(2) }, user("c"), None),
            (edit(0, json!(["<", 5])), user("a"), Some("a2")),
        ];
        let refs = || edits.iter().map(|(edit, user, op_id)| EditRef { edit, user, op_id: *op_id });
        let id = DocumentId::parse("d").unwrap();
        let mut whole = t.prepare(refs(), 64);
        let at_once = whole.change_set(&id);

        let mut draft = t.prepare(refs().take(1), 64);
        let mut set = draft.change_set(&id);
        let mut extended = Vec::new();
        for edit in refs().skip(1) {
            let extension = t.extend(&mut draft, &edit, 64);
            extended.push(extension.is_some());
            if let Some(extension) = extension {
                extension.apply(&mut set);
            }
        }
        // The stale update (version 2, not 4) is rejected and waits in the draft.
        assert_eq!(extended, vec![true, false, false, true]);
        assert_eq!(draft.rejections().map(|r| r.is_some()).collect::<Vec<_>>(), vec![false, false, true, true, false]);
        let ops = |s: &store::ChangeSet| s.changes.iter().map(|c| c.ops.clone()).collect::<Vec<_>>();
        assert_eq!(ops(&set), ops(&at_once));
        assert_eq!(set.snapshots, at_once.snapshots);
        assert_eq!(set.base, at_once.base);
    }

    /// The join ack's document, written from the rope's chunks, is the
    /// `Document` as serde writes it (escapes, characters beyond the BMP,
    /// a text of many chunks), and a new version is encoded anew.
    #[test]
    fn the_encoded_document_is_the_document_and_follows_its_versions() {
        let text = "quote \" backslash \\ newline \n tab \t nul-free 𝄞 é \u{1}".repeat(200);
        let mut t = fresh(&text);
        let json = |t: &Timeline| t.document_json().unwrap().get().to_owned();
        assert_eq!(json(&t), serde_json::to_string(&t.document()).unwrap());
        let first = t.document_json().unwrap() as *const RawValue;
        assert_eq!(first, t.document_json().unwrap() as *const RawValue, "encoded once per version");

        let chars = t.chars() as u64;
        run_within(&mut t, &[(edit(0, json!([chars, "!"])), "a", None)], 1 << 20);
        assert_eq!(t.version(), Version(1));
        assert_eq!(json(&t), serde_json::to_string(&t.document()).unwrap());
        assert!(json(&t).contains(r#"!","version":1,"#));
        // A version committed elsewhere (integrated) too.
        t.integrate(change(2, json!([chars + 1, "?"]), None), 1 << 20).unwrap();
        assert_eq!(json(&t), serde_json::to_string(&t.document()).unwrap());
        assert!(json(&t).contains(r#"!?","version":2,"#));
        t.forget_encoded();
        assert!(t.encoded.get().is_none());
        assert_eq!(json(&t), serde_json::to_string(&t.document()).unwrap());
    }

    #[test]
    fn operations_on_older_versions_are_rebased_and_ties_go_to_the_first_committed() {
        let mut t = fresh("hello");
        let out = run(&mut t, &[(edit(0, json!([5, " world"])), "a", Some("a1")), (edit(0, json!([5, "!"])), "b", None)]);
        assert_eq!(out, vec![Ok((1, json!([5, " world"]))), Ok((2, json!([11, "!"])))]);
        assert_eq!(t.document().content, "hello world!");
        // Based on version 1, it does not see b's "!": rebased over version 2.
        let out = run(&mut t, &[(edit(1, json!([{"d": 1}, "J"])), "c", None)]);
        assert_eq!(out, vec![Ok((3, json!(["J", {"d": 1}])))]);
        assert_eq!((t.document().content.as_str(), t.version()), ("Jello world!", Version(3)));
        assert_eq!(t.find(&user("a"), "a1").map(|c| c.version), Some(Version(1)));
        assert!(t.find(&user("b"), "a1").is_none());
        assert_eq!(t.recovery(Version(1)).unwrap().iter().map(|c| c.version.0).collect::<Vec<_>>(), vec![2, 3]);
        assert_eq!(t.recovery(Version(3)).unwrap().len(), 0);
        assert!(t.recovery(Version(4)).is_none());
    }

    /// The store keeps no `op_id` index: a resend must be recognised by
    /// the timeline, also when its original was integrated from the store
    /// (another engine process stored it) after the resend was queued.
    #[test]
    fn a_resent_op_id_in_the_window_is_its_original_however_it_got_there() {
        let mut t = fresh("abc");
        let out = run(&mut t, &[(edit(0, json!(["x"])), "a", Some("a1"))]);
        assert_eq!(out, vec![Ok((1, json!(["x"])))]);
        t.integrate(change(2, json!([4, "y"]), Some("a2")), 64).unwrap();
        let out = run(
            &mut t,
            &[
                (edit(0, json!(["x"])), "a", Some("a1")),
                (edit(1, json!([4, "y"])), "a", Some("a2")),
                // Another author's "a1" is not a's.
                (edit(0, json!(["z"])), "b", Some("a1")),
            ],
        );
        assert_eq!(
            out,
            vec![Err(Rejection::Duplicate(t.find(&user("a"), "a1").unwrap().clone())), Err(Rejection::Duplicate(change(2, json!([4, "y"]), Some("a2")))), Ok((3, json!([1, "z"])))]
        );
        assert_eq!((t.document().content.as_str(), t.version()), ("xzabcy", Version(3)));
    }

    #[test]
    fn refusals_conflicts_and_whole_content_updates() {
        let mut t = fresh("abc");
        let out = run(
            &mut t,
            &[
                // Newer than current: a conflict.
                (edit(1, json!(["x"])), "a", None),
                // Keeps more than version 0 had.
                (edit(0, json!([4, "x"])), "a", None),
                // Above max_bytes (64).
                (edit(0, json!(["y".repeat(70)])), "a", None),
                (Edit::Replace { content: Arc::from("new"), version: Version(1) }, "b", None),
                // The version was just taken by the update above.
                (Edit::Replace { content: Arc::from("newer"), version: Version(1) }, "b", None),
                (edit(0, json!([3, "!"])), "c", None),
            ],
        );
        assert_eq!(out[0], Err(Rejection::Conflict));
        let Err(Rejection::Refused(e)) = &out[1] else { panic!("{:?}", out[1]) };
        assert_eq!((e.code, e.details.field.as_deref()), (crate::protocol::ErrorCode::InvalidInput, Some("ops")));
        let Err(Rejection::Refused(e)) = &out[2] else { panic!("{:?}", out[2]) };
        assert_eq!((e.code, e.details.field.as_deref()), (crate::protocol::ErrorCode::PayloadTooLarge, Some("ops")));
        assert_eq!(out[3], Ok((1, json!(["new", {"d": 3}]))));
        assert_eq!(out[4], Err(Rejection::Conflict));
        // Made on "abc", rebased over the replacement: the insert survives.
        assert_eq!(out[5], Ok((2, json!([3, "!"]))));
        assert_eq!(t.document().content, "new!");
    }

    #[test]
    fn the_window_keeps_the_newest_changes_within_both_bounds() {
        let limits = WindowLimits { changes: 3, bytes: 1000 };
        let mut t = Timeline::new(store::Timeline { document: document("", 0), changes: Vec::new(), history_start: Version(0), since_snapshot: 0 }, limits);
        for i in 0..5 {
            run(&mut t, &[(edit(i, json!(["x"])), "a", Some(&format!("o{i}")))]);
        }
        assert_eq!((t.version(), t.floor()), (Version(5), Version(2)));
        assert_eq!(run(&mut t, &[(edit(1, json!(["y"])), "a", None)]), vec![Err(Rejection::Conflict)]);
        // Rebased over versions 4 and 5, which inserted before it.
        assert_eq!(run(&mut t, &[(edit(3, json!(["y"])), "a", None)]), vec![Ok((6, json!([2, "y"])))]);
        assert!(t.find(&user("a"), "o0").is_none(), "forgotten with its change");
        assert!(t.find(&user("a"), "o4").is_some());
        assert!(t.recovery(Version(2)).is_none());
        assert_eq!(t.recovery(Version(3)).unwrap().len(), 3);

        // By weight: a change weighs its JSON or its size in memory,
        // whichever is more. One such insert fits, two do not.
        let insert = op(json!(["abcdefghijklmnop"]));
        assert_eq!(weight(&insert, 20), (std::mem::size_of::<ot::Component>() + 16).max(20));
        let scattered = op(json!([1, {"d": 1}, 1, {"d": 1}, 1, {"d": 1}]));
        assert!(weight(&scattered, 31) >= 6 * 16, "six components weigh more than their 31 bytes of JSON");
        let limits = WindowLimits { changes: 100, bytes: weight(&insert, 20) + 1 };
        let mut t = Timeline::new(store::Timeline { document: document("", 0), changes: Vec::new(), history_start: Version(0), since_snapshot: 0 }, limits);
        run(&mut t, &[(edit(0, json!(["abcdefghijklmnop"])), "a", None)]);
        run(&mut t, &[(edit(1, json!(["abcdefghijklmnop"])), "a", None)]);
        assert_eq!(t.floor(), Version(1));
    }

    #[test]
    fn a_loaded_timeline_chains_lengths_back_from_the_content() {
        let changes = vec![
            change(4, json!(["ab"]), Some("x")),
            change(5, json!([2, "c"]), None),
        ];
        let loaded = store::Timeline { document: document("abc", 5), changes, history_start: Version(2), since_snapshot: 0 };
        let mut t = Timeline::new(loaded, ROOMY);
        assert_eq!((t.floor(), t.history_start()), (Version(3), Version(2)));
        assert_eq!(t.find(&user("a"), "x").map(|c| c.version), Some(Version(4)));
        // Version 3 was empty: [1] keeps a character it did not have.
        let out = run(&mut t, &[(edit(3, json!([1, "z"])), "b", None), (edit(3, json!(["z"])), "b", None)]);
        assert!(matches!(&out[0], Err(Rejection::Refused(e)) if e.details.field.as_deref() == Some("ops")));
        // Rebased over "ab" and "c", both committed first: it goes last.
        assert_eq!(out[1], Ok((6, json!([3, "z"]))));
        assert_eq!(t.document().content, "abcz");
        // A history that does not chain is cut where it breaks.
        let changes = vec![
            change(1, json!(["abcdef"]), None),
            change(2, json!([1, {"d": 2}]), None),
        ];
        let t = Timeline::new(store::Timeline { document: document("abc", 2), changes, history_start: Version(0), since_snapshot: 0 }, ROOMY);
        assert_eq!(t.floor(), Version(1));
    }

    #[test]
    fn snapshots_are_due_every_snapshot_every_versions() {
        let mut t = Timeline::new(
            store::Timeline { document: document("", store::SNAPSHOT_EVERY - 2), changes: Vec::new(), history_start: Version(0), since_snapshot: 0 },
            ROOMY,
        );
        let base = t.version().0;
        let edits: Vec<(Edit, &str, Option<&str>)> =
            (0..4).map(|_| (edit(base, json!(["x"])), "a", None)).collect();
        let users = vec![user("a"); 4];
        let mut draft = t.prepare(edits.iter().zip(&users).map(|((e, _, _), u)| EditRef { edit: e, user: u, op_id: None }), 64);
        let set = draft.change_set(&DocumentId::parse("d").unwrap());
        assert_eq!(set.changes.len(), 4);
        assert_eq!(set.snapshots.iter().map(|(v, c)| (v.0, c.len())).collect::<Vec<_>>(), vec![(store::SNAPSHOT_EVERY, 2)]);
        assert_eq!(draft.top().0, base + 4);
        assert_eq!(draft.change_index(2), Some(2));
        t.commit(draft, Timestamp(5), |_, _, _| {});
        assert_eq!(t.document().updated_at, Timestamp(5));
    }

    #[test]
    fn snapshots_are_due_once_the_changes_since_the_last_reach_snapshot_bytes() {
        let near = store::SNAPSHOT_BYTES - 10;
        let loaded = store::Timeline { document: document("", 1), changes: Vec::new(), history_start: Version(0), since_snapshot: near };
        let mut t = Timeline::new(loaded, ROOMY);
        let users = vec![user("a"); 3];
        // `["abc"]` is 7 bytes of JSON: 3 short of the bound. `[3,"defgh"]`
        // (11) reaches it. The third counts from zero again.
        let edits = [edit(1, json!(["abc"])), edit(1, json!(["defgh"])), edit(1, json!(["ij"]))];
        let mut draft = t.prepare(edits.iter().zip(&users).map(|(e, u)| EditRef { edit: e, user: u, op_id: None }), 64);
        let set = draft.change_set(&DocumentId::parse("d").unwrap());
        assert_eq!(set.changes.iter().map(|c| c.ops.as_str()).collect::<Vec<_>>(), [r#"["abc"]"#, r#"[3,"defgh"]"#, r#"[8,"ij"]"#]);
        assert_eq!(set.snapshots, vec![(Version(3), "abcdefgh".to_owned())]);
        t.commit(draft, Timestamp(5), |_, _, _| {});
        assert_eq!(t.since_snapshot, r#"[8,"ij"]"#.len());
        // A change written by another process counts the same way: where
        // it reaches the bound that process stored a snapshot.
        let filler = "x".repeat(store::SNAPSHOT_BYTES);
        t.integrate(change(5, json!([10, filler]), None), usize::MAX).unwrap();
        assert_eq!(t.since_snapshot, 0);
        t.integrate(change(6, json!([1, {"d": 1}]), None), usize::MAX).unwrap();
        assert_eq!(t.since_snapshot, r#"[1,{"d":1}]"#.len());
    }

    #[test]
    fn a_join_recovers_changes_that_weigh_no_more_than_the_document() {
        let mut t = fresh("");
        let big = "x".repeat(RECOVERY_FLOOR_BYTES);
        run_within(&mut t, &[(edit(0, json!([big])), "a", None)], usize::MAX);
        run_within(&mut t, &[(edit(1, json!([{"d": RECOVERY_FLOOR_BYTES}, "short"])), "a", None)], usize::MAX);
        // Since 0: the two changes weigh more than the floor and than
        // "short"; since 1, one small change.
        assert!(t.recovery(Version(0)).is_none());
        assert_eq!(t.recovery(Version(1)).unwrap().len(), 1);
        assert_eq!(t.recovery(Version(2)).unwrap().len(), 0);
        // A document as long as the changes: they are recovered.
        let mut t = fresh(&"y".repeat(2 * RECOVERY_FLOOR_BYTES));
        run_within(&mut t, &[(edit(0, json!([big.clone()])), "a", None)], usize::MAX);
        assert_eq!(t.recovery(Version(0)).unwrap().len(), 1);
    }

    #[test]
    fn a_rebase_that_costs_too_much_is_a_conflict() {
        // An operation of many components, based far behind many changes.
        let mut t = fresh(&"a".repeat(40_000));
        for i in 0..60 {
            run_within(&mut t, &[(edit(i, json!(["b"])), "a", None)], 1 << 20);
        }
        let many: Vec<serde_json::Value> = (0..20_000).map(|i| if i % 2 == 0 { json!(1) } else { json!({"d": 1}) }).collect();
        let out = run_within(&mut t, &[(edit(0, serde_json::Value::Array(many.clone())), "b", None)], 1 << 20);
        assert_eq!(out, vec![Err(Rejection::Conflict)]);
        // The same operation on the current version needs no rebase.
        let out = run_within(&mut t, &[(edit(60, serde_json::Value::Array(many)), "b", None)], 1 << 20);
        assert!(out[0].is_ok());
    }
}
