//! The storage interface the actors call, and the pool of threads that runs
//! it. The interface is blocking on purpose: implementations (SQL, in
//! `src/db/`) run only on [`DbExecutor`] threads of a `SyncArbiter`, never on
//! an async actor's thread. Actors reach them through [`Db`]: reads with
//! [`Db::run`], writes of messages and document changes through the
//! group-commit [`batch::Batcher`]s.
//!
//! Document history: every accepted change is kept ([`Change`]), and the
//! whole content every [`SNAPSHOT_EVERY`] versions or sooner, once the
//! changes since the last one reach [`SNAPSHOT_BYTES`], so that the
//! content at any version is one snapshot plus fewer than `SNAPSHOT_EVERY`
//! changes, of fewer than `SNAPSHOT_BYTES` bytes in all.

pub mod batch;
mod error;

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use actix::{Actor, Addr, Handler, Message, MessageResult, SyncArbiter, SyncContext};

use crate::ids::{ChatId, DocumentId, Seq, UserId, Version};
use crate::model::{Change, ChangeKind, Chat, Document, Grant, Message as ChatMessage, Role, Timestamp};
use crate::observer::Observer;
use crate::protocol::WireError;

pub use error::{StoreError, StoreResult};

/// A chat as seen by a joining member.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatSnapshot {
    pub chat: Chat,
    pub last_seq: Seq,
    pub messages: Vec<ChatMessage>,
    pub recovered: bool,
}

/// A chat that a join named before it existed: created public, with the
/// other chats named meanwhile, in one transaction (a crowd joining new
/// chats would otherwise pay one commit, and one fsync, per chat).
#[derive(Debug, Clone)]
pub struct NewChat {
    pub id: ChatId,
    pub created_by: UserId,
}

/// A message to store.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// The message's id, chosen by the room before the write: a room that
    /// reads rows back (cluster mode) tells its own writes still in flight
    /// by it. Unused when the send turns out to be a retry.
    pub id: String,
    pub chat_id: ChatId,
    pub user_id: UserId,
    pub content: String,
    pub client_msg_id: Option<String>,
    /// Check that the author may post (HTTP publishes). Room members were
    /// checked when they joined.
    pub check_access: bool,
}

/// A whole content is stored every this many versions (and at version 0),
/// so that reading a document at any version replays fewer than this many
/// changes onto the snapshot before it. 100: a snapshot costs one content
/// per 100 changes (1 % of a document per change, amortised), and a replay
/// of a 1 MiB document at most 99 applications of a change (tens of
/// milliseconds on a database thread, in the worst case).
pub const SNAPSHOT_EVERY: i64 = 100;

/// Bytes of operation JSON one page of a document's history holds
/// (the first change always fits, whatever its size). Without it a page
/// of 1,000 whole-content updates of a 1 MiB document was a gigabyte read
/// into memory and encoded into one frame, at any reader's request.
pub const HISTORY_PAGE_BYTES: usize = 4 * 1024 * 1024;

/// Bytes of operation JSON after which a snapshot is stored whatever
/// the version. Without it, reading a version replayed up to 99 changes,
/// and a whole-content update of a long document is a megabyte or more of
/// JSON: one read of a document (a join to a room not open, a snapshot
/// request) could load a hundred megabytes. With it a read loads one
/// snapshot and under 4 MiB of changes; a document of such updates pays a
/// snapshot every few versions, a fraction of what its changes cost.
pub const SNAPSHOT_BYTES: usize = 4 * 1024 * 1024;

/// Whether a snapshot is stored at `version`, whose change brings the
/// bytes of operation JSON since the last snapshot to `since`
/// (that change's included). Every process sharing the store decides the
/// same on the same history, so a room that integrates changes written
/// by another one knows where that one put its snapshots.
pub fn snapshot_due(version: Version, since: usize) -> bool {
    version.0 % SNAPSHOT_EVERY == 0 || since >= SNAPSHOT_BYTES
}

/// The changes one document room stores in one go: they become the
/// versions after `base`, in order, and only if the document is still at
/// `base` (the conditional update that makes the database, not a room's
/// memory, the serialization point).
#[derive(Debug, Clone)]
pub struct ChangeSet {
    pub document_id: DocumentId,
    pub base: Version,
    pub changes: Vec<NewChange>,
    /// Whole contents to keep, at the versions where [`snapshot_due`].
    pub snapshots: Vec<(Version, String)>,
    /// The count of the document's access list (`access_version`) at which
    /// the store last found every author of this set allowed to edit
    /// ([`CommitOutcome::Stored`]), if the room knows one. With it the
    /// commit checks only that the list has not changed since, instead of
    /// reading each author's role; without it, or if the list changed,
    /// the roles are read.
    pub rights_at: Option<i64>,
}

/// One change of a [`ChangeSet`].
#[derive(Debug, Clone)]
pub struct NewChange {
    pub user_id: UserId,
    /// The operation as applied, in its JSON wire form.
    pub ops: String,
    pub op_id: Option<String>,
    pub kind: ChangeKind,
}

/// A change set on its way to the store, which its room may still extend
/// with edits that arrive meanwhile, until the commit takes it (leaving
/// `None`): an edit that comes while its room's set waits for the
/// database joins that set instead of waiting a whole commit more.
#[derive(Clone)]
pub struct OpenSet(Arc<Mutex<Option<ChangeSet>>>);

impl OpenSet {
    pub fn new(set: ChangeSet) -> OpenSet {
        OpenSet(Arc::new(Mutex::new(Some(set))))
    }

    /// Runs `f` on the set if the commit has not taken it yet.
    pub fn extend<T>(&self, f: impl FnOnce(&mut ChangeSet) -> T) -> Option<T> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).as_mut().map(f)
    }

    /// The set, for the commit; from now on the room cannot extend it.
    pub fn take(&self) -> Option<ChangeSet> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

/// What became of a [`ChangeSet`].
#[derive(Debug, Clone, PartialEq)]
pub enum CommitOutcome {
    /// Stored: the changes are versions `base + 1 ..= base + n`, made at
    /// `at`; their authors may edit as of the access list's count
    /// `rights_at` (see [`ChangeSet::rights_at`]).
    Stored { at: Timestamp, rights_at: i64 },
    /// Nothing stored: the document is at `current`, not at `base`
    /// (another engine process wrote to it).
    Moved { current: Version },
    /// Nothing stored: these changes (by index, ascending) may not be.
    Refused(Vec<(usize, Refusal)>),
}

/// Why one change of a [`ChangeSet`] was not stored.
///
/// A resent `op_id` is not among them: the room that prepared the set
/// knew every change after each operation's base (the set is stored only
/// on the version the room is at), so it recognised a resend before
/// preparing it, and the store keeps no `op_id` index to check again.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// Its author may not edit (or the document is gone).
    Denied(StoreError),
}

/// What a document room starts from: the document, its newest changes
/// (ascending, consecutive, ending at the document's version), and the
/// first version its history knows (documents older than the history
/// table start at their version then).
#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    pub document: Document,
    pub changes: Vec<Change>,
    pub history_start: Version,
    /// Bytes of operation JSON in the changes after the newest
    /// snapshot (see [`snapshot_due`]).
    pub since_snapshot: usize,
}

/// A page of a document's history, ascending by version.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangePage {
    pub changes: Vec<Change>,
    pub has_more: bool,
}

/// The outcome of an append: the stored message, and whether it was stored
/// now (`false`: a retry of an idempotent send that returns the original).
#[derive(Debug, Clone, PartialEq)]
pub struct Appended {
    pub message: ChatMessage,
    pub fresh: bool,
}

/// A page of history, ascending by seq.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub messages: Vec<ChatMessage>,
    pub has_more: bool,
}

/// Where an open document stands in the database (cluster mode's
/// periodic check).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocumentPosition {
    /// Its newest version.
    pub version: Version,
    /// How many times its access list has changed.
    pub access: i64,
}

/// Whether a user may read a chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatAccess {
    Allowed,
    Denied,
    Unknown,
}

/// Everything the engine stores. Each method is one transaction (or one
/// read) and is the serialization point of record: version checks, seq
/// assignment and access checks happen inside it, so several engine
/// processes sharing one database stay correct.
pub trait Store: Send + Sync + 'static {
    /// Creates a document owned by `owner`, at version 0.
    fn create_document(&self, id: &DocumentId, title: &str, content: &str, owner: &UserId) -> StoreResult<Document>;
    /// The user's role on the document: `NotFound` without the document,
    /// `PermissionDenied` without access.
    fn document_role(&self, id: &DocumentId, user: &UserId) -> StoreResult<Role>;
    /// The document (server-to-server reads).
    fn document(&self, id: &DocumentId) -> StoreResult<Document>;
    /// The document and its newest changes: as many as fit in
    /// `max_changes` and `max_bytes` bytes of their operations' JSON.
    fn timeline(&self, id: &DocumentId, max_changes: usize, max_bytes: usize) -> StoreResult<Timeline>;
    /// Up to `limit` changes after version `after`, ascending, for `reader`
    /// (`None`: the server itself), and no more than fit in
    /// [`HISTORY_PAGE_BYTES`] bytes of their operations' JSON (at
    /// least one). `NotFound` for an `after` above the current version or
    /// below the start of the history.
    fn document_history(&self, id: &DocumentId, reader: Option<&UserId>, after: Version, limit: i64) -> StoreResult<ChangePage>;
    /// The document as it was at `version`, for `reader` (`None`: the
    /// server), from the snapshot before it and the changes since.
    fn document_snapshot(&self, id: &DocumentId, reader: Option<&UserId>, version: Version) -> StoreResult<Document>;
    /// The change `user` made with `op_id` among the `within` versions
    /// after `after`, if there is one. An operation made on version `b`
    /// is stored, if at all, within a room's rebase window and one group
    /// after `b`, so a lookup reads a bounded range of the history.
    fn find_change(&self, id: &DocumentId, user: &UserId, op_id: &str, after: Version, within: i64) -> StoreResult<Option<Change>>;
    /// Stores change sets in one transaction, each on its own: a set is
    /// stored whole or not at all (see [`CommitOutcome`]); its authors'
    /// edit rights are checked in the transaction. `Err`
    /// only when the transaction failed as a whole (nothing was stored).
    fn commit_changes(&self, batch: &[ChangeSet]) -> StoreResult<Vec<StoreResult<CommitOutcome>>>;
    /// Grants or revokes a role. `by` must be an owner; `None` is the server
    /// itself (HTTP API). The last owner cannot be revoked or demoted.
    fn share_document(&self, id: &DocumentId, by: Option<&UserId>, user: &UserId, grant: Grant) -> StoreResult<()>;
    /// Creates a chat; `created_by` is `None` for the HTTP API.
    fn create_chat(&self, id: &ChatId, private: bool, members: &[UserId], created_by: Option<&UserId>) -> StoreResult<Chat>;
    /// Opens a chat for `user` and reads what a join returns (see
    /// `chat::recovery`); `None` when no chat has this id.
    fn open_chat(&self, id: &ChatId, user: &UserId, since: Option<Seq>, max_recovery: u32) -> StoreResult<Option<ChatSnapshot>>;
    /// Creates the public chats that joins named, in one transaction. A
    /// chat that exists already (another process created it first) is left
    /// as it is: each item succeeds either way, unless the store fails.
    fn create_public_chats(&self, chats: &[NewChat]) -> StoreResult<Vec<StoreResult<()>>>;
    fn chat_access(&self, id: &ChatId, user: &UserId) -> StoreResult<ChatAccess>;
    /// The chat's newest seq, `None` if it does not exist.
    fn chat_last_seq(&self, id: &ChatId) -> StoreResult<Option<Seq>>;
    /// The newest seq of each chat in `ids` that exists (cluster mode's
    /// periodic check: one query for all of a node's open chats).
    fn chat_positions(&self, ids: &[ChatId]) -> StoreResult<Vec<(ChatId, Seq)>>;
    /// The newest version of each document in `ids` that exists, and how
    /// many times its access list has changed (cluster mode's periodic
    /// check, one query for all of a node's open documents: a room behind
    /// the version reads what it missed from the history; a room whose
    /// access count moved checks its members' roles again).
    fn document_positions(&self, ids: &[DocumentId]) -> StoreResult<Vec<(DocumentId, DocumentPosition)>>;
    /// The document's access count, then the roles of those of `users`
    /// who have one (the others have no access).
    fn document_roles(&self, id: &DocumentId, users: &[UserId]) -> StoreResult<(i64, Vec<(UserId, Role)>)>;
    /// Up to `limit` messages with seq above `after`, ascending (cluster
    /// mode: filling a gap). No access check: the room's members were
    /// checked when they joined.
    fn messages_after(&self, id: &ChatId, after: Seq, limit: i64) -> StoreResult<Vec<ChatMessage>>;
    /// Appends messages in one transaction, in order: each gets its chat's
    /// next seq, or is answered with the stored original for a repeated
    /// `client_msg_id`; each succeeds or fails on its own. `Err` only when
    /// the transaction failed as a whole (nothing was stored).
    fn append_messages(&self, batch: &[NewMessage]) -> StoreResult<Vec<StoreResult<Appended>>>;
    /// Up to `limit` messages before `before` (default: the newest), for
    /// `reader` (`None`: the server itself).
    fn history(&self, id: &ChatId, reader: Option<&UserId>, before: Option<Seq>, limit: i64) -> StoreResult<Page>;
    /// Readiness: `Ok` when a write commits (a full disk still answers
    /// reads), `Unavailable` with the reason while a condition of the
    /// machine lasts. May answer from a check made moments ago.
    fn ping(&self) -> StoreResult<()>;
}

type Job<T> = Box<dyn FnOnce(&dyn Store) -> T + Send>;

/// One unit of blocking work for a [`DbExecutor`].
struct Run<T: Send + 'static>(Job<T>);

impl<T: Send + 'static> Message for Run<T> {
    type Result = T;
}

/// Runs store calls on its own thread; a `SyncArbiter` holds several.
pub struct DbExecutor {
    store: Arc<dyn Store>,
}

impl Actor for DbExecutor {
    type Context = SyncContext<Self>;
}

impl<T: Send + 'static> Handler<Run<T>> for DbExecutor {
    type Result = MessageResult<Run<T>>;

    fn handle(&mut self, job: Run<T>, _: &mut SyncContext<Self>) -> Self::Result {
        MessageResult((job.0)(&*self.store))
    }
}

/// The database executors, cheap to clone.
#[derive(Clone)]
pub struct Executors {
    executors: Addr<DbExecutor>,
    observer: Arc<dyn Observer>,
}

/// A handle to the database: executors for reads and rare writes, and the
/// batchers that group message appends and document changes into shared
/// transactions; and apart from them, executors for the reads a client
/// asks for and nobody else waits on ([`Db::read`]). Cheap to clone.
#[derive(Clone)]
pub struct Db {
    executors: Executors,
    reads: Executors,
    messages: Addr<batch::Batcher<batch::AppendMessages>>,
    documents: Addr<batch::Batcher<batch::CommitChanges>>,
    chats: Addr<batch::Batcher<batch::CreateChats>>,
}

impl Db {
    /// Starts `threads` executors over `store`, the batchers, and
    /// `read_threads` executors for [`Db::read`]. Must run inside an actix
    /// system.
    pub fn start(store: Arc<dyn Store>, threads: usize, read_threads: usize, observer: Arc<dyn Observer>) -> Db {
        let for_reads = store.clone();
        let addr = SyncArbiter::start(threads.max(1), move || DbExecutor { store: store.clone() });
        let reads = SyncArbiter::start(read_threads.max(1), move || DbExecutor { store: for_reads.clone() });
        let reads = Executors { executors: reads, observer: observer.clone() };
        let executors = Executors { executors: addr, observer };
        Db {
            reads,
            messages: batch::Batcher::new(executors.clone()).start(),
            documents: batch::Batcher::new(executors.clone()).start(),
            chats: batch::Batcher::new(executors.clone()).start(),
            executors,
        }
    }

    pub fn observer(&self) -> &Arc<dyn Observer> {
        &self.executors.observer
    }

    /// Runs `f` on an executor thread (see [`Executors::run`]).
    pub fn run<T, F>(&self, f: F) -> impl Future<Output = Result<T, WireError>> + 'static
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
    {
        self.executors.run(f)
    }

    /// Runs a read that a client asked for and only that client waits on
    /// (a page of history, a document at a version) on executors of its
    /// own. How much these cost is the client's choice, within their
    /// bounds, and however many arrive, the commits, room loads and joins
    /// on the other executors do not queue behind them.
    pub fn read<T, F>(&self, f: F) -> impl Future<Output = Result<T, WireError>> + 'static
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
    {
        self.reads.run(f)
    }

    /// Appends a message in the next group commit.
    pub fn append(&self, message: NewMessage) -> impl Future<Output = Result<Appended, WireError>> + 'static {
        batch::submit(&self.messages, message)
    }

    /// Creates a public chat a join named, in the next group commit.
    pub fn create_chat(&self, chat: NewChat) -> impl Future<Output = Result<(), WireError>> + 'static {
        batch::submit(&self.chats, chat)
    }

    /// Stores a room's document changes in the next group commit. The room
    /// may add to the set until the commit takes it ([`OpenSet`]).
    pub fn commit_changes(&self, set: OpenSet) -> impl Future<Output = Result<CommitOutcome, WireError>> + 'static {
        batch::submit(&self.documents, set)
    }
}

impl Executors {
    /// Runs `f` on an executor thread. The executors' mailbox is bounded:
    /// when every thread is busy and the queue is full, callers wait.
    pub fn run<T, F>(&self, f: F) -> impl Future<Output = Result<T, WireError>> + 'static
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
    {
        let observer = self.observer.clone();
        let job: Job<Result<T, StoreError>> = Box::new(move |store| {
            let started = Instant::now();
            let out = f(store);
            observer.db_call(started.elapsed().as_secs_f64());
            out
        });
        let sent = self.executors.send(Run(job));
        async move {
            match sent.await {
                Ok(result) => result.map_err(WireError::from),
                Err(e) => Err(WireError::from(e)),
            }
        }
    }
}
