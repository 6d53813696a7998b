//! A document room's order across nodes (cluster mode): its subscription,
//! and the [`Reorder`] buffer where versions from other nodes and changes
//! read back from the history wait for the versions before them. The room
//! lets out what [`Ordered::next`] gives, in version order: each version
//! joins the room's timeline (later edits are prepared on it, so they rarely
//! find the document moved) and its push goes to the members.
//!
//! The room's own commits never wait here: a group is prepared on the
//! version the room let out last and stored only if the document is still
//! there (the store's conditional update), so its versions are always the
//! next ones; the buffer moves past them ([`Ordered::own`]). For the same
//! reason the room never takes a change read back from the history above
//! the base of a group in flight: it may be the group's own.
//!
//! While other nodes write to the document too, a room that just stored a
//! group waits for another node's version (at most [`COURTESY`]) before it
//! sends the next: the nodes take turns instead of the fastest one winning
//! every race ([`Ordered::own`], [`Ordered::holds_commits`]).
//!
//! A version from another node carries its change in its push frame:
//! `documents:op` has the operation as applied, `documents:updated` the
//! whole new content (whose operation, [`Operation::replace_all`], this
//! room makes from its own text, the text the other node replaced). The
//! frame is read once, when the version is taken ([`Arrived`]), and
//! members receive it as it came. Reading the change from the history on
//! every node instead would cost each version one query per node, and the
//! latency of that query.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytestring::ByteString;
use serde::Deserialize;
use tokio::sync::oneshot;

use crate::cluster::reorder::{Refused, Reorder, REPAIR_CHUNK};
use crate::cluster::{Cluster, DocumentVersion, Subscription};
use crate::document::room::JoinDocument;
use crate::document::timeline::WINDOW_BYTES;
use crate::ids::{UserId, Version};
use crate::model::{Change, ChangeKind, Timestamp};
use crate::ot::Operation;
use crate::protocol::WireError;

/// Most versions from other nodes that wait for an earlier one: past it
/// they are dropped (and read back from the history once the gap is
/// filled). The default `max_recovery`: what a room keeps in its window.
pub const MAX_AHEAD: usize = 1000;
/// Most bytes of frames waiting, for the same purpose: the characters of
/// operations a room keeps in its window ([`WINDOW_BYTES`]). The next
/// version is always taken, whatever its size.
pub const MAX_AHEAD_BYTES: usize = WINDOW_BYTES;
/// After a version from another node, how long the document counts as
/// written through several nodes: long enough to span the pause between
/// an editor's operations (it waits for its ack), short enough that a
/// room alone again commits at once.
const CONTENTION: Duration = Duration::from_millis(200);
/// How long at most a room whose commit just went through waits before its
/// next one while other nodes write to the document: until another node's
/// version arrives, or this long. The others' commits lost the race to it;
/// they hear of its versions through Redis (a millisecond or two), prepare
/// again and send their groups. Without the pause the winner, which sends
/// its next group the moment its commit returns, wins again and again (one
/// node's edits could end up `SERVER_BUSY`); with it the nodes take turns.
/// Its edits wait meanwhile, and go in one group. The pause ends as soon as
/// another node's version arrives, so its length only costs when the
/// others send nothing; it must cover what a busy node needs to hear of the
/// commit, prepare again and commit: with two nodes sharing one core under
/// `docs --ops`, 10 ms still let a node lose 32 times in a row, 50 ms did
/// not (BENCHMARKS.md). A node learns that others are losing from their
/// [`crate::cluster::RoomEvent::Contended`], not only from their versions.
pub const COURTESY: Duration = Duration::from_millis(50);

/// A version that arrived before it could be let out.
pub struct Arrived {
    version: Version,
    user_id: UserId,
    created_at: Timestamp,
    op_id: Option<String>,
    made: Made,
    /// The push as another node encoded it; `None` for a change read back
    /// from the history (its push is encoded when it is let out).
    frame: Option<ByteString>,
}

enum Made {
    /// The operation as applied (for a change from the history, whatever
    /// its kind).
    Ops(Operation, ChangeKind),
    /// A whole-content update another node pushed: the new content.
    Content(String),
}

impl Arrived {
    pub fn from_row(change: Change) -> Arrived {
        let Change { version, ops, user_id, created_at, op_id, kind } = change;
        Arrived { version, user_id, created_at, op_id, made: Made::Ops(ops, kind), frame: None }
    }

    /// Reads the change out of another node's push. `Err` for a frame that
    /// is not a document version's push (another node is trusted, but a
    /// bad frame is only ever dropped: the history has the version).
    pub fn from_remote(v: DocumentVersion) -> Result<Arrived, String> {
        let pushed: Pushed<'_> = serde_json::from_str(&v.frame).map_err(|e| e.to_string())?;
        let PushedData { user_id, version, ops, document } = pushed.data;
        let (made, said) = match (&*pushed.event, ops, document) {
            ("documents:op", Some(ops), _) => (Made::Ops(ops, ChangeKind::Op), version),
            ("documents:updated", _, Some(d)) => (Made::Content(d.content), Some(d.version)),
            (event, _, _) => return Err(format!("a {event} frame is not a document version")),
        };
        if said != Some(v.version.0) {
            return Err(format!("the frame says version {said:?}, its header {}", v.version.0));
        }
        let user_id = UserId::parse(&user_id).map_err(|e| e.to_string())?;
        Ok(Arrived { version: v.version, user_id, created_at: v.created_at, op_id: v.op_id, made, frame: Some(v.frame) })
    }

    /// The change, made on `text` (the content at the version before it),
    /// and the push another node encoded for it, if any.
    pub fn into_change(self, len: usize) -> (Change, Option<ByteString>) {
        let (ops, kind) = match self.made {
            Made::Ops(ops, kind) => (ops, kind),
            Made::Content(content) => (Operation::replace_chars(len, &content), ChangeKind::Update),
        };
        let change =
            Change { version: self.version, ops, user_id: self.user_id, created_at: self.created_at, op_id: self.op_id, kind };
        (change, self.frame)
    }

    fn bytes(&self) -> usize {
        self.frame.as_ref().map_or(0, |frame| frame.len())
    }
}

/// What a document push is read for (fields the room does not need are
/// skipped).
#[derive(Deserialize)]
struct Pushed<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(borrow)]
    data: PushedData<'a>,
}

#[derive(Deserialize)]
struct PushedData<'a> {
    #[serde(borrow)]
    user_id: Cow<'a, str>,
    /// `documents:op`.
    version: Option<i64>,
    ops: Option<Operation>,
    /// `documents:updated`.
    document: Option<PushedDocument>,
}

#[derive(Deserialize)]
struct PushedDocument {
    version: i64,
    content: String,
}

pub struct Ordered {
    pub cluster: Arc<dyn Cluster>,
    /// Held while the room runs; `None` until the room subscribed.
    pub subscription: Option<Subscription>,
    order: Reorder<Arrived>,
    /// Whether `order` starts from the room's timeline (false until it is
    /// loaded, and while it reloads): nothing is let out or repaired before.
    started: bool,
    /// Items and frame bytes waiting in `order`.
    count: usize,
    bytes: usize,
    /// A repair is scheduled or reading: never two at once.
    pub repairing: bool,
    /// Joins reading the versions they asked to recover: no group is
    /// prepared meanwhile (what they read could be its own changes).
    pub joins_reading: usize,
    /// Until when another node counts as writing to the document (it
    /// committed a version lately).
    contended_until: Option<Instant>,
    /// Until when this room leaves the next commit to the others, after
    /// one of its own (see [`Ordered::own`]).
    yield_until: Option<Instant>,
    /// Joins that asked to recover past what the room let out while a
    /// group was in flight: answered after its outcome (see
    /// `DocumentRoom::join`).
    pub joins: VecDeque<(JoinDocument, oneshot::Sender<Result<(), WireError>>)>,
}

impl Ordered {
    pub fn new(cluster: Arc<dyn Cluster>) -> Ordered {
        Ordered {
            cluster,
            subscription: None,
            order: Reorder::new(0),
            started: false,
            count: 0,
            bytes: 0,
            repairing: false,
            joins_reading: 0,
            contended_until: None,
            yield_until: None,
            joins: VecDeque::new(),
        }
    }

    /// Starts the order after `version`, where the room's timeline (just
    /// loaded, after the room subscribed) stands; what waits above it stays.
    /// What was known to be committed beyond is forgotten (the load read
    /// the database after it): a room that reloads after a store reset
    /// does not wait for versions that will never come.
    pub fn start(&mut self, version: Version) {
        let before = std::mem::replace(&mut self.order, Reorder::new(version.0));
        for (pos, arrived) in before.into_waiting() {
            let _ = self.order.offer(pos, arrived);
        }
        self.started = true;
        self.recount();
    }

    /// The timeline is being loaded again: nothing is let out until
    /// [`Ordered::start`].
    pub fn pause(&mut self) {
        self.started = false;
    }

    pub fn released(&self) -> Version {
        Version(self.order.released())
    }

    /// Takes a version another node published (dropped when it was let
    /// out already, or when too much waits: then the history has it).
    pub fn offer_remote(&mut self, v: DocumentVersion) {
        let (pos, released) = (v.version.0, self.order.released());
        if pos <= released {
            return;
        }
        let next = self.started && pos == released + 1;
        let full = self.count >= MAX_AHEAD || self.bytes + v.frame.len() > MAX_AHEAD_BYTES;
        if full && !next {
            log::debug!("document version {pos} dropped: too much waits before it; the history has it");
            self.order.note_known(pos);
            return;
        }
        match Arrived::from_remote(v) {
            Ok(arrived) => {
                self.offer(arrived);
            }
            Err(e) => {
                log::warn!("document version {pos} from another node dropped ({e}); reading it from the history");
                self.order.note_known(pos);
            }
        }
    }

    /// Takes changes read back from the history, up to `upto` (the base
    /// of a group in flight, whose own changes these may be); returns how
    /// many were new.
    pub fn offer_rows(&mut self, rows: Vec<Change>, upto: Option<Version>) -> usize {
        let released = self.order.released();
        let mut new = 0;
        for change in rows {
            let pos = change.version;
            if pos.0 <= released || upto.is_some_and(|upto| pos > upto) {
                continue;
            }
            if self.offer(Arrived::from_row(change)) {
                new += 1;
            }
        }
        new
    }

    /// Whether it was new (not a copy, from the history or Redis, of a
    /// version that waits already, or was let out since).
    fn offer(&mut self, arrived: Arrived) -> bool {
        let (pos, bytes) = (arrived.version.0, arrived.bytes());
        match self.order.offer(pos, arrived) {
            Ok(()) => {
                self.count += 1;
                self.bytes += bytes;
                true
            }
            Err(Refused::Waiting(_) | Refused::Released(_)) => false,
        }
    }

    /// The next version to let out, if it is here.
    pub fn next(&mut self) -> Option<Arrived> {
        if !self.started {
            return None;
        }
        let (_, arrived) = self.order.pop_next()?;
        self.count -= 1;
        self.bytes -= arrived.bytes();
        // Another node's version (through Redis or the history): its turn
        // came, and this room's pause ends.
        self.contended_until = Some(Instant::now() + CONTENTION);
        self.yield_until = None;
        Some(arrived)
    }

    /// Another node's commit to the document lost the race to one of this
    /// node's ([`crate::cluster::RoomEvent::Contended`]).
    pub fn contended(&mut self) {
        self.contended_until = Some(Instant::now() + CONTENTION);
    }

    /// This room let out its own commit, versions up to `top`. While other
    /// nodes write to the document too, returns how long the room should
    /// now leave the next commit to them (see [`COURTESY`]).
    pub fn own(&mut self, top: Version) -> Option<Duration> {
        self.order.skip_to(top.0);
        self.recount();
        let now = Instant::now();
        if self.contended_until.is_some_and(|until| until > now) {
            self.yield_until = Some(now + COURTESY);
            return Some(COURTESY);
        }
        None
    }

    /// The database holds versions up to `version`.
    pub fn note_stored(&mut self, version: Version) {
        self.order.note_known(version.0);
    }

    /// Whether versions are known to be committed that the room has not let
    /// out: a group prepared now would find the document moved.
    pub fn behind(&self) -> bool {
        self.started && self.order.known() > self.order.released()
    }

    /// Whether the room should not send a group to commit now: it is
    /// behind, or a join reads changes that could turn out to be the
    /// group's own.
    pub fn holds_commits(&self) -> bool {
        self.behind() || self.joins_reading > 0 || self.yield_until.is_some_and(|until| until > Instant::now())
    }

    /// The changes a repair should read: `(after, limit)`, or `None` when
    /// nothing is missing.
    pub fn missing(&self) -> Option<(Version, i64)> {
        if !self.started {
            return None;
        }
        let gap = self.order.gap()?;
        Some((Version(gap.start() - 1), (gap.end() - gap.start() + 1).min(REPAIR_CHUNK)))
    }

    fn recount(&mut self) {
        self.count = 0;
        self.bytes = 0;
        for arrived in self.order.waiting() {
            self.count += 1;
            self.bytes += arrived.bytes();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{Admitted, Confirmed, Remote, RoomEvent};
    use crate::ids::{NodeId, RoomName};

    fn frame(json: &str) -> ByteString {
        ByteString::from(json.to_owned())
    }

    fn remote(version: i64, frame: ByteString) -> DocumentVersion {
        DocumentVersion { version: Version(version), created_at: Timestamp(5), op_id: Some("o1".into()), frame }
    }

    #[test]
    fn the_change_is_read_from_the_push_once() {
        let op = frame(r#"{"event":"documents:op","room":"document:d","data":{"document_id":"d","version":3,"ops":[2,"x"],"user_id":"bob"}}"#);
        let arrived = Arrived::from_remote(remote(3, op.clone())).unwrap();
        let (change, pushed) = arrived.into_change(2);
        assert_eq!((change.version, change.kind, change.user_id.as_str()), (Version(3), ChangeKind::Op, "bob"));
        assert_eq!((change.ops.to_json(), change.op_id.as_deref()), (serde_json::json!([2, "x"]), Some("o1")));
        assert_eq!(change.created_at, Timestamp(5));
        assert_eq!(pushed, Some(op));

        let updated = frame(
            r#"{"event":"documents:updated","room":"document:d","data":{"document":{"id":"d","title":"","content":"new \"text\"","version":4,"updated_at":"1970-01-01T00:00:00.005Z","updated_by":"bob"},"user_id":"bob"}}"#,
        );
        let (change, _) = Arrived::from_remote(remote(4, updated)).unwrap().into_change(3);
        assert_eq!(change.kind, ChangeKind::Update);
        assert_eq!(change.ops, Operation::replace_all("old", "new \"text\""));

        // Not a version's push, or not the version the header says.
        let joined = frame(r#"{"event":"user:joined","room":"document:d","data":{"user_id":"bob"}}"#);
        assert!(Arrived::from_remote(remote(3, joined)).is_err());
        let op = frame(r#"{"event":"documents:op","room":"document:d","data":{"document_id":"d","version":3,"ops":[2,"x"],"user_id":"bob"}}"#);
        assert!(Arrived::from_remote(remote(4, op)).is_err());
        let bad = frame(r#"{"event":"documents:op","room":"document:d","data":{"document_id":"d","version":3,"ops":[0],"user_id":"bob"}}"#);
        assert!(Arrived::from_remote(remote(3, bad)).is_err());
    }

    fn op_frame(version: i64) -> ByteString {
        frame(&format!(
            r#"{{"event":"documents:op","room":"document:d","data":{{"document_id":"d","version":{version},"ops":["x"],"user_id":"bob"}}}}"#
        ))
    }

    /// The order never calls its cluster (the room does).
    struct NoCluster;

    impl Cluster for NoCluster {
        fn subscribe(&self, _: RoomName, _: actix::Recipient<Remote>) -> (u64, Confirmed) {
            (0, Box::pin(std::future::ready(None)))
        }
        fn unsubscribe(&self, _: &RoomName, _: u64) {}
        fn publish(&self, _: &RoomName, _: RoomEvent) {}
        fn presence(&self, _: &RoomName, _: &UserId, _: usize, _: Option<&Arc<str>>) {}
        fn awareness(&self, _: &RoomName, _: ByteString) {}
        fn awareness_to(&self, _: &NodeId, _: &RoomName, _: ByteString) {}
        fn admit(&self, _: &UserId, _: usize, _: usize) -> Admitted {
            Box::pin(std::future::ready(true))
        }
        fn connections(&self, _: &UserId, _: usize) {}
    }

    fn versions(o: &mut Ordered) -> Vec<i64> {
        std::iter::from_fn(|| o.next()).map(|a| a.version.0).collect()
    }

    fn row(version: i64) -> Change {
        let user_id = UserId::parse("carol").unwrap();
        let (ops, created_at) = (Operation::noop(), Timestamp(0));
        Change { version: Version(version), ops, user_id, created_at, op_id: None, kind: ChangeKind::Op }
    }

    #[test]
    fn versions_wait_for_the_start_and_for_each_other() {
        let mut o = Ordered::new(Arc::new(NoCluster));
        // Before the timeline is loaded: kept, not let out, nothing to repair.
        o.offer_remote(remote(11, op_frame(11)));
        o.offer_remote(remote(13, op_frame(13)));
        assert!(versions(&mut o).is_empty());
        assert_eq!((o.missing(), o.behind()), (None, false));
        // Loaded at version 11: 11 is older, 13 waits for 12.
        o.start(Version(11));
        assert!(versions(&mut o).is_empty());
        assert!(o.behind());
        assert_eq!(o.missing(), Some((Version(11), 1)));
        // Read back from the history: 12 (and 13, a copy), but not above a
        // group in flight on 12.
        assert_eq!(o.offer_rows(vec![row(12), row(13), row(14)], Some(Version(13))), 1);
        assert_eq!(versions(&mut o), vec![12, 13]);
        assert!(!o.behind());
        // The room's own commit of 14 and 15; a late copy of 15 is dropped.
        o.own(Version(15));
        o.offer_remote(remote(15, op_frame(15)));
        o.offer_remote(remote(16, op_frame(16)));
        assert_eq!(versions(&mut o), vec![16]);
        assert_eq!((o.released(), o.count, o.bytes), (Version(16), 0, 0));
        o.note_stored(Version(18));
        assert!(o.behind());
        assert_eq!(o.missing(), Some((Version(16), 2)));
    }

    #[test]
    fn after_its_own_commit_a_room_leaves_the_next_turn_to_the_others() {
        let mut o = Ordered::new(Arc::new(NoCluster));
        o.start(Version(0));
        // Alone: no pause.
        assert_eq!(o.own(Version(2)), None);
        assert!(!o.holds_commits());
        // Another node wrote: after the room's next commit it pauses...
        o.offer_remote(remote(3, op_frame(3)));
        assert_eq!(versions(&mut o), vec![3]);
        assert_eq!(o.own(Version(4)), Some(COURTESY));
        assert!(o.holds_commits());
        // ...until another node's version comes.
        o.offer_remote(remote(5, op_frame(5)));
        assert_eq!(versions(&mut o), vec![5]);
        assert!(!o.holds_commits());
    }

    #[test]
    fn what_waits_is_bounded_but_the_next_version_is_always_taken() {
        let mut o = Ordered::new(Arc::new(NoCluster));
        o.start(Version(0));
        for v in 2..=MAX_AHEAD as i64 + 1 {
            o.offer_remote(remote(v, op_frame(v)));
        }
        assert_eq!(o.count, MAX_AHEAD);
        o.offer_remote(remote(MAX_AHEAD as i64 + 2, op_frame(MAX_AHEAD as i64 + 2)));
        assert_eq!(o.count, MAX_AHEAD, "dropped, but known");
        assert_eq!(o.missing(), Some((Version(0), 1)));
        o.offer_remote(remote(1, op_frame(1)));
        assert_eq!(versions(&mut o).len(), MAX_AHEAD + 1);
        assert_eq!(o.missing(), Some((Version(MAX_AHEAD as i64 + 1), 1)));
    }
}
