//! Edits a document room holds until they are answered: who waits for
//! each, and how much one connection may have waiting.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use actix::dev::ResponseFuture;
use tokio::sync::oneshot;

use crate::document::timeline::Edit;
use crate::ids::{DocumentId, SessionId, UserId, Version};
use crate::model::Change;
use crate::peer::Requester;
use crate::protocol::frames::OpApplied;
use crate::protocol::WireError;

/// Edits one connection may have waiting in one room (queued, being
/// committed, or being checked). The classic client keeps one operation
/// in flight; 16 leaves room for a client that sends whole-content updates
/// without waiting for their acks, and bounds what one connection makes a
/// room hold (16 frames of at most `max_frame_bytes`). Past it:
/// `SERVER_BUSY`, for that connection only.
pub const MAX_WAITING_PER_CONNECTION: usize = 16;

/// The answer every routed edit resolves to (the session measures the
/// request until then; the frames themselves are sent by the room).
pub type Reply = ResponseFuture<Result<Version, WireError>>;

/// One request waiting for an edit's answer. Answered exactly once: one
/// dropped unanswered (the room stopped) answers `SERVER_BUSY`.
pub struct Answer {
    pub requester: Requester,
    reply: Option<oneshot::Sender<Result<Version, WireError>>>,
    _slot: Option<Slot>,
}

impl Answer {
    pub fn new(requester: Requester) -> (Answer, Reply) {
        let (tx, rx) = oneshot::channel();
        let reply: Reply =
            Box::pin(async move { rx.await.unwrap_or_else(|_| Err(WireError::busy("the document room stopped; retry"))) });
        (Answer { requester, reply: Some(tx), _slot: None }, reply)
    }

    /// Sends the ack with `ack` and resolves the request.
    pub fn acked(mut self, version: Version, ack: impl FnOnce(&Requester)) {
        ack(&self.requester);
        self.resolve(Ok(version));
    }

    pub fn failed(mut self, e: &WireError) {
        self.requester.fail(e);
        self.resolve(Err(e.clone()));
    }

    fn resolve(&mut self, result: Result<Version, WireError>) {
        if let Some(reply) = self.reply.take() {
            let _ = reply.send(result);
        }
    }
}

impl Drop for Answer {
    fn drop(&mut self) {
        if self.reply.is_some() {
            let e = WireError::busy("the document room stopped before answering; retry");
            self.requester.fail(&e);
            self.resolve(Err(e));
        }
    }
}

/// An edit waiting for its version, and everyone waiting for it (a resend
/// of an operation with the same `op_id` waits with the original).
pub struct Pending {
    pub edit: Edit,
    pub user: UserId,
    pub op_id: Option<String>,
    pub answers: Vec<Answer>,
    /// How many times its group was prepared again.
    pub redone: u8,
}

impl Pending {
    pub fn new(edit: Edit, user: UserId, op_id: Option<String>, answer: Answer) -> Pending {
        Pending { edit, user, op_id, answers: vec![answer], redone: 0 }
    }

    /// The connection that sent it first.
    pub fn session(&self) -> Option<SessionId> {
        self.answers.first().map(|a| a.requester.peer.session_id)
    }

    pub fn fail(self, e: &WireError) {
        for answer in self.answers {
            answer.failed(e);
        }
    }

    /// Answers with the ack of `change` (an operation stored earlier with
    /// the same `op_id`): the original ack, and nothing pushed.
    pub fn answer_original(self, change: &Change, document_id: &DocumentId) {
        for answer in self.answers {
            answer.acked(change.version, |r| r.ack(OpApplied { document_id, version: change.version, ops: &change.ops }));
        }
    }
}

/// Counts each connection's waiting edits in one room.
#[derive(Clone, Default)]
pub struct Slots(Rc<RefCell<HashMap<SessionId, usize>>>);

/// One waiting edit of a connection; given back when dropped.
struct Slot {
    slots: Slots,
    session: SessionId,
}

impl Slots {
    /// Counts `answer` against its connection; `false` when it has
    /// [`MAX_WAITING_PER_CONNECTION`] waiting already.
    pub fn take(&self, answer: &mut Answer) -> bool {
        let session = answer.requester.peer.session_id;
        let mut counts = self.0.borrow_mut();
        let n = counts.entry(session).or_insert(0);
        if *n >= MAX_WAITING_PER_CONNECTION {
            return false;
        }
        *n += 1;
        answer._slot = Some(Slot { slots: self.clone(), session });
        true
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.slots.0.borrow_mut();
        if let Some(n) = counts.get_mut(&self.session) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.session);
            }
        }
    }
}
