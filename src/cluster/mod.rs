//! Cluster mode: the link between this node and the others, over Redis
//! (`HUDDLE_REDIS_URL`). It implements the rooms' [`Cluster`] interface
//! and serves the HTTP API's cluster-wide requests.
//!
//! Layout (each concept one file):
//! - [`wire`]: channel names and payloads;
//! - [`subscriptions`]: which rooms listen to which channel, the one task
//!   that (re)subscribes them, and the catch-up after the link came back;
//! - [`router`]: every message Redis pushes, to its room or to [`node`];
//! - [`publisher`]: the bounded queue of events to publish;
//! - [`node`]: heartbeats, the peers this node hears, and requests to
//!   every node (closing a user's connections).
//!
//! All Redis I/O runs on one thread of its own (the connection's driver
//! lives on the runtime that made it); rooms and routes reach it through
//! bounded queues and never wait on Redis, except a room that starts,
//! which waits for its subscription (at most [`SUBSCRIBE_WAIT`]).
//!
//! The connection is the `redis` crate's `ConnectionManager` over RESP3: one
//! multiplexed connection carries commands and, as push messages, every
//! subscribed channel's messages and the news that the connection dropped;
//! the manager reconnects with backoff. Subscriptions are restored by
//! [`subscriptions`] rather than the manager, because every open room must
//! catch up from the database *after* they are back, and because a room
//! that started while the link was down has no subscription to restore.

pub mod node;
pub mod publisher;
pub mod router;
pub mod subscriptions;
pub mod wire;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use actix::{Addr, Arbiter, Recipient};
use huddle_actors::cluster::{Cluster, Confirmed, Remote, RoomEvent};
use huddle_actors::ids::{RoomName, UserId};
use huddle_actors::registry::Registry;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{IntoConnectionInfo, ProtocolVersion};
use tokio::sync::{mpsc, Notify};

use crate::metrics::Metrics;

/// How long a starting room waits for its subscription before it goes on
/// without (the link is down; the periodic check covers it meanwhile).
/// A subscription on a live link takes one round trip.
pub const SUBSCRIBE_WAIT: Duration = Duration::from_secs(1);
/// Events waiting to be published; past it, events are dropped and
/// counted (the commit is the truth; the others' checks repair).
pub const PUBLISH_QUEUE: usize = 16_384;
/// Node-level messages (heartbeats, requests) waiting to be handled.
pub const CONTROL_QUEUE: usize = 1024;
/// A Redis command that takes longer is failed (and the link treated as
/// down): a local Redis answers in well under a millisecond.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long to wait to connect to Redis, per attempt.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest pause between two attempts to reconnect (the manager backs off
/// exponentially from 100 ms up to this).
pub const RECONNECT_MAX_DELAY: Duration = Duration::from_millis(500);

/// Cluster settings, from the command line.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    pub redis_url: String,
    pub node_id: String,
    pub node_timeout: Duration,
}

/// This node's link to the others; cheap to clone.
#[derive(Clone)]
pub struct Link {
    inner: Arc<Inner>,
}

struct Inner {
    node: String,
    node_timeout: Duration,
    metrics: Arc<Metrics>,
    /// Whether the link is up: set once subscriptions are back after a
    /// (re)connect, cleared when Redis drops the connection or a command
    /// fails. `/ready` reports it.
    up: AtomicBool,
    /// Wakes the subscriptions task to resynchronise everything: reconnect,
    /// resubscribe, catch up.
    trouble: Notify,
    subscriptions: subscriptions::Table,
    publisher: mpsc::Sender<publisher::Outgoing>,
    nodes: node::Nodes,
    /// Set once the registry is started (it is built with this link).
    registry: OnceLock<Addr<Registry>>,
    next_id: AtomicU64,
    /// Test-only fault point (see [`fault_point`]).
    exit_before_publish: Option<AtomicU64>,
}

/// `HUDDLE_TEST_EXIT_BEFORE_PUBLISH=n`, for tests only: the process exits
/// at once instead of publishing its n-th chat message, after the commit
/// and before anyone is told: a node that dies between commit and publish.
/// Off unless set.
const FAULT_POINT: &str = "HUDDLE_TEST_EXIT_BEFORE_PUBLISH";

fn fault_point() -> Option<AtomicU64> {
    let n: u64 = std::env::var(FAULT_POINT).ok()?.parse().ok()?;
    log::warn!("{FAULT_POINT}={n}: this node will exit before publishing its message number {n} (a test fault point)");
    Some(AtomicU64::new(n))
}

impl Link {
    /// Checks the configuration and starts the link on a thread of its
    /// own. Connects in the background: a Redis that is down now only
    /// delays the link (and `/ready`), it does not stop the node.
    pub fn start(config: &ClusterConfig, metrics: Arc<Metrics>) -> Result<Link, String> {
        let info = config
            .redis_url
            .as_str()
            .into_connection_info()
            .map_err(|e| format!("HUDDLE_REDIS_URL is not a Redis URL: {e}"))?;
        // RESP3: subscribed messages arrive as push messages on the one
        // multiplexed connection, with the news of a disconnection.
        let info = {
            let redis = info.redis_settings().clone().set_protocol(ProtocolVersion::RESP3);
            info.set_redis_settings(redis)
        };
        let client = redis::Client::open(info).map_err(|e| format!("HUDDLE_REDIS_URL: {e}"))?;
        let (publish_tx, publish_rx) = mpsc::channel(PUBLISH_QUEUE);
        let (control_tx, control_rx) = mpsc::channel(CONTROL_QUEUE);
        let link = Link {
            inner: Arc::new(Inner {
                node: config.node_id.clone(),
                node_timeout: config.node_timeout,
                metrics,
                up: AtomicBool::new(false),
                trouble: Notify::new(),
                subscriptions: subscriptions::Table::new(&config.node_id),
                publisher: publish_tx,
                nodes: node::Nodes::new(control_tx),
                registry: OnceLock::new(),
                next_id: AtomicU64::new(1),
                exit_before_publish: fault_point(),
            }),
        };
        let weak = Arc::downgrade(&link.inner);
        let manager_config = ConnectionManagerConfig::new()
            .set_push_sender(move |push| match weak.upgrade() {
                Some(inner) => {
                    router::route(&Link { inner }, push);
                    Ok(())
                }
                None => Err(()),
            })
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_max_delay(RECONNECT_MAX_DELAY);
        let thread = Arbiter::new();
        let started = link.clone();
        thread.spawn(async move {
            let manager = match ConnectionManager::new_lazy_with_config(client, manager_config) {
                Ok(m) => m,
                Err(e) => {
                    log::error!("cluster: cannot set up the Redis connection: {e}");
                    return;
                }
            };
            actix::spawn(subscriptions::run(started.clone(), manager.clone()));
            actix::spawn(publisher::run(started.clone(), manager.clone(), publish_rx));
            actix::spawn(node::heartbeat(started.clone(), manager));
            actix::spawn(node::control(started, control_rx));
        });
        log::info!("cluster: node {}, Redis at {}", config.node_id, redacted(&config.redis_url));
        Ok(link)
    }

    /// Hands the link the registry, which it asks to catch up and to close
    /// users' connections.
    pub fn attach(&self, registry: Addr<Registry>) {
        let _ = self.inner.registry.set(registry);
    }

    pub fn node(&self) -> &str {
        &self.inner.node
    }

    /// Whether Redis answers and this node's subscriptions are in place.
    pub fn is_up(&self) -> bool {
        self.inner.up.load(Ordering::Acquire)
    }

    /// Other nodes heard from within `node_timeout_ms`.
    pub fn peers(&self) -> Vec<String> {
        self.inner.nodes.peers(self.inner.node_timeout)
    }

    /// Closes every connection of `user` on the other nodes with 4003;
    /// resolves to how many they closed (see [`node::disconnect_user`]).
    pub async fn disconnect_user(&self, user: &UserId) -> usize {
        node::disconnect_user(self, user).await
    }

    /// Something failed: the link is down until the subscriptions task has
    /// reconnected, resubscribed and asked every room to catch up.
    fn trouble(&self, why: &str) {
        if self.inner.up.swap(false, Ordering::AcqRel) {
            log::warn!("cluster: Redis link lost ({why}); rooms rely on the database until it is back");
        }
        self.inner.trouble.notify_one();
    }

    fn next_id(&self) -> u64 {
        self.inner.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    fn registry(&self) -> Option<&Addr<Registry>> {
        self.inner.registry.get()
    }
}

impl Cluster for Link {
    fn subscribe(&self, room: RoomName, inbox: Recipient<Remote>) -> (u64, Confirmed) {
        let id = self.next_id();
        let confirmed = self.inner.subscriptions.add(wire::room_channel(&room), id, inbox);
        let waited = async move {
            // Gone or late: either way the room goes on (see SUBSCRIBE_WAIT).
            let _ = tokio::time::timeout(SUBSCRIBE_WAIT, confirmed).await;
        };
        (id, Box::pin(waited))
    }

    fn unsubscribe(&self, room: &RoomName, id: u64) {
        self.inner.subscriptions.remove(&wire::room_channel(room), id);
    }

    fn publish(&self, room: &RoomName, event: RoomEvent) {
        if let (Some(left), RoomEvent::ChatMessage { .. }) = (&self.inner.exit_before_publish, &event) {
            if left.fetch_sub(1, Ordering::AcqRel) == 1 {
                eprintln!("huddle: {FAULT_POINT} reached: exiting between a commit and its publish");
                std::process::exit(86);
            }
        }
        let outgoing = publisher::Outgoing::Room { room: room.clone(), event };
        if self.inner.publisher.try_send(outgoing).is_err() {
            self.metrics().publish_failed(1);
        }
    }
}

/// `redis://user:secret@host` as `redis://user:***@host`.
fn redacted(url: &str) -> String {
    match (url.split_once("://"), url.rsplit_once('@')) {
        (Some((scheme, _)), Some((_, host))) => format!("{scheme}://***@{host}"),
        _ => url.to_owned(),
    }
}

/// A node id for a node started without one: the host's name and a short
/// random suffix (two nodes on one host must differ).
pub fn generated_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host: String = host.trim().chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').take(40).collect();
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    if host.is_empty() {
        format!("node-{suffix}")
    } else {
        format!("{host}-{suffix}")
    }
}

/// A node id given by the operator must be short and plain: it goes into
/// channel names, keys and every payload's header.
pub fn check_node_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!("HUDDLE_NODE_ID must be 1 to 64 characters of A-Za-z0-9_.- (got {id:?})"))
    }
}

/// Shared by the tasks: a lock that a panicking holder cannot poison for
/// the others (the data stays consistent: every update is one statement).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
