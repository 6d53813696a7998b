//! Group commit. A [`Batcher`] collects writes of one kind from every room
//! and stores them in one transaction: while a batch is being committed,
//! the next one gathers, so under load each fsync carries many writes and
//! when idle a write goes out at once (no timer, no added latency).
//!
//! Rooms still wait for their own write before acking, so ordering inside a
//! room is unchanged; what the batch shares is the commit, across rooms.

use std::future::Future;

use actix::{Actor, ActorFutureExt, Addr, AsyncContext, Context, Handler, Message, WrapFuture};
use tokio::sync::oneshot;

use crate::protocol::WireError;
use crate::store::{Appended, ChangeSet, CommitOutcome, Executors, NewChat, NewMessage, OpenSet, Store, StoreError, StoreResult};

/// Most writes in one transaction: bounds the time one commit holds the
/// database lock.
pub const MAX_BATCH: usize = 512;
/// Most writes waiting for a batch; past it, writers hear SERVER_BUSY
/// instead of queueing without bound.
pub const MAX_WAITING: usize = 65_536;

/// A kind of write that can be batched.
pub trait BatchOp: Unpin + 'static {
    type Item: Send + Unpin + 'static;
    type Output: Send + 'static;
    fn run(store: &dyn Store, items: &[Self::Item]) -> StoreResult<Vec<StoreResult<Self::Output>>>;
}

pub struct AppendMessages;

impl BatchOp for AppendMessages {
    type Item = NewMessage;
    type Output = Appended;
    fn run(store: &dyn Store, items: &[NewMessage]) -> StoreResult<Vec<StoreResult<Appended>>> {
        store.append_messages(items)
    }
}

pub struct CommitChanges;

impl BatchOp for CommitChanges {
    type Item = OpenSet;
    type Output = CommitOutcome;
    /// Takes each set only now, on the executor: until then its room may
    /// add the edits that came while it waited.
    fn run(store: &dyn Store, items: &[OpenSet]) -> StoreResult<Vec<StoreResult<CommitOutcome>>> {
        let mut sets: Vec<ChangeSet> = Vec::with_capacity(items.len());
        let taken: Vec<bool> = items.iter().map(|item| item.take().map(|set| sets.push(set)).is_some()).collect();
        let mut outcomes = store.commit_changes(&sets)?.into_iter();
        Ok(taken
            .into_iter()
            .map(|taken| match taken {
                true => outcomes.next().unwrap_or_else(|| Err(StoreError::Internal("a change set had no outcome".into()))),
                false => Err(StoreError::Internal("a change set was taken twice".into())),
            })
            .collect())
    }
}

pub struct CreateChats;

impl BatchOp for CreateChats {
    type Item = NewChat;
    type Output = ();
    fn run(store: &dyn Store, items: &[NewChat]) -> StoreResult<Vec<StoreResult<()>>> {
        store.create_public_chats(items)
    }
}

type Reply<B> = oneshot::Sender<Result<<B as BatchOp>::Output, WireError>>;

/// One write to batch.
pub struct Submit<B: BatchOp> {
    item: B::Item,
    reply: Reply<B>,
}

impl<B: BatchOp> Message for Submit<B> {
    type Result = ();
}

pub struct Batcher<B: BatchOp> {
    executors: Executors,
    waiting: Vec<(B::Item, Reply<B>)>,
    committing: bool,
}

impl<B: BatchOp> Batcher<B> {
    pub fn new(executors: Executors) -> Self {
        Batcher { executors, waiting: Vec::new(), committing: false }
    }

    fn commit_next(&mut self, ctx: &mut Context<Self>) {
        if self.committing || self.waiting.is_empty() {
            return;
        }
        let take = self.waiting.len().min(MAX_BATCH);
        let (items, replies): (Vec<_>, Vec<_>) = self.waiting.drain(..take).unzip();
        self.committing = true;
        let job = self.executors.run(move |store| B::run(store, &items));
        ctx.spawn(job.into_actor(self).map(move |result, act, ctx| {
            match result {
                Ok(outcomes) => {
                    for (reply, outcome) in replies.into_iter().zip(outcomes) {
                        let _ = reply.send(outcome.map_err(WireError::from));
                    }
                }
                Err(e) => {
                    for reply in replies {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
            act.committing = false;
            act.commit_next(ctx);
        }));
    }
}

impl<B: BatchOp> Actor for Batcher<B> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(MAX_BATCH * 4);
    }
}

impl<B: BatchOp> Handler<Submit<B>> for Batcher<B>
where
    B::Item: Unpin,
{
    type Result = ();

    fn handle(&mut self, msg: Submit<B>, ctx: &mut Context<Self>) {
        if self.waiting.len() >= MAX_WAITING {
            let _ = msg.reply.send(Err(WireError::busy("the database is behind; retry shortly")));
            return;
        }
        self.waiting.push((msg.item, msg.reply));
        self.commit_next(ctx);
    }
}

/// Submits one write and waits for its outcome.
pub fn submit<B: BatchOp>(batcher: &Addr<Batcher<B>>, item: B::Item) -> impl Future<Output = Result<B::Output, WireError>> + 'static
where
    B::Item: Unpin,
{
    let (reply, outcome) = oneshot::channel();
    let sent = batcher.send(Submit::<B> { item, reply });
    async move {
        sent.await?;
        outcome.await.map_err(|_| WireError::busy("the database writer stopped; retry"))?
    }
}

