//! Cluster mode: the link between this node and the others, over Redis
//! (`HUDDLE_REDIS_URL`). It implements the rooms' [`Cluster`] interface
//! and serves the HTTP API's cluster-wide requests.
//!
//! Layout (each concept one file):
//! - [`wire`]: channel names and payloads;
//! - [`subscriptions`]: which rooms listen to which channel, the one task
//!   that (re)subscribes them, and the catch-up after the link came back;
//! - [`router`]: every message Redis pushes, to its room or to [`node`];
//! - [`publisher`]: the bounded queue of everything this node writes;
//! - [`presence`]: this node's presence and connection counts in Redis,
//!   reading the others', removing the dead's;
//! - [`node`]: heartbeats, the peers this node hears (and which died), and
//!   requests to every node (closing a user's connections).
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
pub mod presence;
pub mod publisher;
pub mod router;
pub mod subscriptions;
pub mod wire;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use actix::{Addr, Arbiter, Recipient};
use bytestring::ByteString;
use huddle_actors::cluster::{Admitted, Cluster, Confirmed, Remote, RoomEvent};
use huddle_actors::ids::{NodeId, RoomName, UserId};
use huddle_actors::registry::Registry;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{IntoConnectionInfo, ProtocolVersion};
use tokio::sync::{mpsc, oneshot, Notify};

use crate::metrics::Metrics;

/// How long a starting room waits for its subscription (and the other
/// nodes' presence) before it goes on without (the link is down; the
/// periodic check covers it meanwhile, and the presence comes when the
/// link is back). A subscription on a live link takes two round trips.
pub const SUBSCRIBE_WAIT: Duration = Duration::from_secs(1);
/// How long a connection waits for the cluster-wide count of its user's
/// connections before it is admitted on this node's count alone (a
/// local Redis answers in well under a millisecond; see
/// [`presence`] for what happens while Redis is away).
pub const ADMIT_WAIT: Duration = Duration::from_secs(1);
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
    /// Since when the link is up (`None`: down).
    up_since: Mutex<Option<Instant>>,
    /// This node's presence, as the shared store should hold it.
    mirror: Mutex<presence::Mirror>,
    /// The incarnation this node's presence is published under (0 until
    /// the first republish).
    incarnation: AtomicU64,
    /// Numbers this node's presence changes within an incarnation.
    seq: AtomicU64,
    /// Asks the publisher to write this node's presence again.
    republish: Notify,
    /// Test-only fault point (see [`fault_point`]).
    exit_before_publish: Option<AtomicU64>,
}

/// `HUDDLE_TEST_EXIT_BEFORE_PUBLISH=n`, for tests only: the process exits
/// at once instead of publishing its n-th chat message or document
/// version (counted together), after the commit and before anyone is
/// told: a node that dies between commit and publish. Off unless set.
const FAULT_POINT: &str = "HUDDLE_TEST_EXIT_BEFORE_PUBLISH";

fn fault_point() -> Option<AtomicU64> {
    let n: u64 = std::env::var(FAULT_POINT).ok()?.parse().ok()?;
    log::warn!("{FAULT_POINT}={n}: this node will exit before publishing its event number {n} (a test fault point)");
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
                up_since: Mutex::new(None),
                mirror: Mutex::new(presence::Mirror::default()),
                incarnation: AtomicU64::new(0),
                seq: AtomicU64::new(0),
                republish: Notify::new(),
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
        *lock(&self.inner.up_since) = None;
        self.inner.trouble.notify_one();
    }

    /// How long the link has been up (zero while down).
    fn up_for(&self) -> Duration {
        lock(&self.inner.up_since).map_or(Duration::ZERO, |since| since.elapsed())
    }

    /// Asks for this node's presence to be written again, whole.
    fn request_republish(&self) {
        self.inner.republish.notify_one();
    }

    fn incarnation(&self) -> u64 {
        self.inner.incarnation.load(Ordering::Acquire)
    }

    /// A new incarnation: later than the last, and than any this node id
    /// had in an earlier process (the clock, in milliseconds, unless it
    /// went back).
    fn next_incarnation(&self) -> u64 {
        let now = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0);
        let previous = self.inner.incarnation.load(Ordering::Acquire);
        let next = now.max(previous + 1);
        self.inner.incarnation.store(next, Ordering::Release);
        next
    }

    fn next_seq(&self) -> u64 {
        self.inner.seq.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Asks the other nodes for their connections' awareness states in
    /// `room` (it just opened here, or this node's link came back): they
    /// answer this node alone, as pushes the room forwards to its members.
    /// Redis keeps no awareness state to read instead.
    fn ask_awareness(&self, room: &RoomName) {
        publisher::send_raw(self, wire::room_channel(room), wire::encode("want", 0, self.node(), b""));
    }

    /// Queues a write of this node's presence; when the queue is full the
    /// change waits in the mirror, and the whole presence is written again.
    fn queue_write(&self, item: publisher::Outgoing) {
        if self.inner.publisher.try_send(item).is_err() {
            self.request_republish();
        }
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
        let confirmed = self.inner.subscriptions.add(wire::room_channel(&room), id, inbox.clone());
        let link = self.clone();
        let waited = async move {
            // Then read the others' presence: whatever they change after
            // the read reaches the room as events (and what came before
            // is older: see `presence::remote`).
            let read = async {
                confirmed.await;
                let (tx, rx) = oneshot::channel();
                link.ask_awareness(&room);
                let to = publisher::SnapshotTo { waiter: Some(tx), inbox };
                link.inner.publisher.send(publisher::Outgoing::Snapshot { room, to }).await.ok()?;
                rx.await.ok()
            };
            // Gone or late: either way the room goes on (see SUBSCRIBE_WAIT).
            tokio::time::timeout(SUBSCRIBE_WAIT, read).await.ok().flatten()
        };
        (id, Box::pin(waited))
    }

    fn unsubscribe(&self, room: &RoomName, id: u64) {
        self.inner.subscriptions.remove(&wire::room_channel(room), id);
    }

    fn publish(&self, room: &RoomName, event: RoomEvent) {
        let committed = matches!(event, RoomEvent::ChatMessage { .. } | RoomEvent::DocumentVersion(_));
        if let (Some(left), true) = (&self.inner.exit_before_publish, committed) {
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

    fn presence(&self, room: &RoomName, user: &UserId, connections: usize, name: Option<&Arc<str>>) {
        let connections = u32::try_from(connections).unwrap_or(u32::MAX);
        lock(&self.inner.mirror).set_presence(room, user, connections, name);
        self.queue_write(publisher::Outgoing::Presence { room: room.clone(), user: user.clone() });
    }

    fn awareness(&self, room: &RoomName, frame: ByteString) {
        // Ephemeral: a full queue drops it (the next change is pushed).
        let outgoing = publisher::Outgoing::Awareness { room: room.clone(), frame };
        if self.inner.publisher.try_send(outgoing).is_err() {
            self.metrics().publish_failed(1);
        }
    }

    fn awareness_to(&self, node: &NodeId, _room: &RoomName, frame: ByteString) {
        // The frame names its room.
        let payload = wire::encode_awareness(self.node(), self.incarnation(), &frame);
        publisher::send_raw(self, wire::node_channel(node.as_str()), payload);
    }

    fn admit(&self, user: &UserId, connections: usize, limit: usize) -> Admitted {
        lock(&self.inner.mirror).set_connections(user, u32::try_from(connections).unwrap_or(u32::MAX));
        if !self.is_up() {
            // Redis away: this node's count alone decides (presence.rs).
            return Box::pin(std::future::ready(true));
        }
        let (reply, answer) = oneshot::channel();
        let outgoing = publisher::Outgoing::Admit { user: user.clone(), connections, limit, reply };
        if self.inner.publisher.try_send(outgoing).is_err() {
            self.request_republish();
            return Box::pin(std::future::ready(true));
        }
        Box::pin(async move { tokio::time::timeout(ADMIT_WAIT, answer).await.ok().and_then(Result::ok).unwrap_or(true) })
    }

    fn connections(&self, user: &UserId, connections: usize) {
        lock(&self.inner.mirror).set_connections(user, u32::try_from(connections).unwrap_or(u32::MAX));
        self.queue_write(publisher::Outgoing::Connections { user: user.clone() });
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
    NodeId::parse(id).map(drop).map_err(|e| format!("HUDDLE_NODE_ID {e} (got {id:?})"))
}

/// Shared by the tasks: a lock that a panicking holder cannot poison for
/// the others (the data stays consistent: every update is one statement).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
