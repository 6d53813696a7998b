//! Which rooms of this node listen to which channel, and the one task that
//! keeps Redis subscribed to exactly those (plus the cluster's and this
//! node's own channels).
//!
//! Rooms add and remove their routes without waiting (a room that starts
//! waits only for its confirmation); the task compares what is wanted with
//! what the current connection has, and subscribes or unsubscribes the
//! difference, in order, so a room that stops and starts again never ends
//! unsubscribed. When the link was lost (or this node was paused) the task
//! reconnects, subscribes everything again, and only then asks every room
//! to catch up from the database: whatever was published while the link
//! was down was lost, and is read back. With the same resynchronisation
//! this node writes its presence again (Redis may have lost it, the others
//! may have taken this node for dead) and every room reads the others'
//! presence again (changes published meanwhile were lost).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::Duration;

use actix::Recipient;
use huddle_actors::cluster::Remote;
use huddle_actors::ids::RoomName;
use huddle_actors::registry::watch::CatchUp;
use redis::aio::ConnectionManager;
use tokio::sync::{oneshot, Notify};

use crate::cluster::publisher::{Outgoing, SnapshotTo};
use crate::cluster::{lock, wire, Link};

/// Channels per SUBSCRIBE: a node with thousands of open rooms
/// resubscribes in a few round trips, each reply still small.
const SUBSCRIBE_CHUNK: usize = 500;
/// Pause between two attempts to reach Redis while it is away (on top of
/// the connection manager's own backoff).
const RETRY: Duration = Duration::from_millis(250);

pub struct Table {
    state: Mutex<State>,
    /// Wakes the task when the wanted set changed.
    wake: Notify,
    /// Always wanted: the cluster's channel and this node's.
    fixed: [String; 2],
}

#[derive(Default)]
struct State {
    /// Channel → the room actor listening to it (one per room on a node;
    /// the id tells a newer actor of the room from one that stopped).
    rooms: HashMap<String, (u64, Recipient<Remote>)>,
    /// Channels the current connection is subscribed to.
    subscribed: HashSet<String>,
    /// Rooms waiting for their channel's confirmation.
    waiting: HashMap<String, Vec<oneshot::Sender<()>>>,
}

impl Table {
    pub fn new(node: &str) -> Table {
        Table {
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            fixed: [wire::CLUSTER_CHANNEL.to_owned(), wire::node_channel(node)],
        }
    }

    /// Routes `channel` to `inbox`; resolves once it is subscribed (never,
    /// if the link stays down: callers bound the wait).
    pub fn add(&self, channel: String, id: u64, inbox: Recipient<Remote>) -> impl Future<Output = ()> + Send {
        let (tx, rx) = oneshot::channel();
        {
            let mut state = lock(&self.state);
            if state.subscribed.contains(&channel) {
                let _ = tx.send(());
            } else {
                state.waiting.entry(channel.clone()).or_default().push(tx);
            }
            state.rooms.insert(channel, (id, inbox));
        }
        self.wake.notify_one();
        async move {
            let _ = rx.await;
        }
    }

    /// Ends route `id` of `channel` (a newer one stays).
    pub fn remove(&self, channel: &str, id: u64) {
        let mut state = lock(&self.state);
        if state.rooms.get(channel).is_some_and(|(current, _)| *current == id) {
            state.rooms.remove(channel);
            drop(state);
            self.wake.notify_one();
        }
    }

    /// The room listening to `channel`.
    pub fn inbox(&self, channel: &str) -> Option<Recipient<Remote>> {
        lock(&self.state).rooms.get(channel).map(|(_, inbox)| inbox.clone())
    }

    /// Every room listening here.
    pub fn inboxes(&self) -> Vec<Recipient<Remote>> {
        lock(&self.state).rooms.values().map(|(_, inbox)| inbox.clone()).collect()
    }

    /// Every room listening here, by name.
    fn rooms(&self) -> Vec<(RoomName, Recipient<Remote>)> {
        let state = lock(&self.state);
        state.rooms.iter().filter_map(|(c, (_, inbox))| Some((wire::channel_room(c)?, inbox.clone()))).collect()
    }

    /// What to subscribe and unsubscribe to match the wanted set.
    fn differences(&self) -> (Vec<String>, Vec<String>) {
        let state = lock(&self.state);
        let wanted = |c: &String| state.rooms.contains_key(c) || self.fixed.contains(c);
        let add = state.rooms.keys().chain(self.fixed.iter()).filter(|c| !state.subscribed.contains(*c)).cloned().collect();
        let drop = state.subscribed.iter().filter(|c| !wanted(c)).cloned().collect();
        (add, drop)
    }

    fn subscribed(&self, channels: &[String]) {
        let mut state = lock(&self.state);
        for channel in channels {
            state.subscribed.insert(channel.clone());
            for waiter in state.waiting.remove(channel).unwrap_or_default() {
                let _ = waiter.send(());
            }
        }
    }

    fn unsubscribed(&self, channels: &[String]) {
        let mut state = lock(&self.state);
        for channel in channels {
            state.subscribed.remove(channel);
        }
    }

    /// A new connection has no subscriptions.
    fn reset(&self) {
        lock(&self.state).subscribed.clear();
    }
}

/// The subscriptions task (runs on the link's thread for the life of the
/// process).
pub async fn run(link: Link, mut redis: ConnectionManager) {
    let table = &link.inner.subscriptions;
    // The first connection is a reconnection too: rooms may have started
    // before the link was up.
    let mut resync = true;
    loop {
        if resync {
            // Goes through once the manager has a connection again.
            if let Err(e) = redis::cmd("PING").query_async::<()>(&mut redis).await {
                log::debug!("cluster: Redis does not answer yet: {e}");
                tokio::time::sleep(RETRY).await;
                continue;
            }
            table.reset();
        }
        let (add, drop) = table.differences();
        let mut failed = None;
        for chunk in add.chunks(SUBSCRIBE_CHUNK) {
            match redis.subscribe(chunk).await {
                Ok(()) => table.subscribed(chunk),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        for chunk in drop.chunks(SUBSCRIBE_CHUNK) {
            if failed.is_some() {
                break;
            }
            match redis.unsubscribe(chunk).await {
                Ok(()) => table.unsubscribed(chunk),
                Err(e) => failed = Some(e),
            }
        }
        if let Some(e) = failed {
            link.trouble(&format!("subscribing failed: {e}"));
            tokio::time::sleep(RETRY).await;
        } else if resync {
            resync = false;
            link.inner.up.store(true, Ordering::Release);
            *lock(&link.inner.up_since) = Some(std::time::Instant::now());
            log::info!("cluster: Redis link up; {} channels subscribed; every open room catches up", add.len());
            link.request_republish();
            for (room, inbox) in table.rooms() {
                link.ask_awareness(&room);
                let to = SnapshotTo { waiter: None, inbox };
                if link.inner.publisher.send(Outgoing::Snapshot { room, to }).await.is_err() {
                    return;
                }
            }
            if let Some(registry) = link.registry() {
                registry.do_send(CatchUp);
            }
        }
        tokio::select! {
            _ = table.wake.notified() => {}
            _ = link.inner.trouble.notified() => resync = true,
        }
    }
}
