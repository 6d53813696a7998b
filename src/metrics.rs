//! Prometheus metrics: the engine's [`Observer`] and the `/metrics` text.

use huddle_actors::observer::Observer;
use huddle_actors::protocol::ErrorCode;
use huddle_actors::registry::RegistryStats;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Latency buckets, in seconds: from 100 µs (an in-memory ack) to 5 s.
const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

pub struct Metrics {
    registry: Registry,
    connections: IntGauge,
    users: IntGauge,
    rooms: IntGaugeVec,
    requests: IntCounterVec,
    errors: IntCounterVec,
    pushes: IntCounter,
    slow_consumers: IntCounter,
    request_seconds: HistogramVec,
    db_seconds: Histogram,
    edits_redone: IntCounter,
    cluster: ClusterMetrics,
}

/// Cluster mode's metrics (zero on a single node).
struct ClusterMetrics {
    publishes: IntCounter,
    publish_failures: IntCounter,
    gap_repairs: IntCounter,
    catch_ups: IntCounter,
    events_dropped: IntCounter,
    peers: IntGauge,
}

impl ClusterMetrics {
    fn new(registry: &Registry) -> Result<ClusterMetrics, prometheus::Error> {
        let counter = |name: &str, help: &str| -> Result<IntCounter, prometheus::Error> {
            let c = IntCounter::new(name, help)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let peers = IntGauge::new("cluster_peers", "Other nodes heard within node_timeout_ms")?;
        registry.register(Box::new(peers.clone()))?;
        Ok(ClusterMetrics {
            publishes: counter("cluster_publishes_total", "Room events published to the other nodes")?,
            publish_failures: counter(
                "cluster_publish_failures_total",
                "Room events not published (queue full, or Redis failed); the other nodes read them back",
            )?,
            gap_repairs: counter(
                "cluster_gap_repairs_total",
                "Chat messages and document changes rooms read back from the database to fill a gap",
            )?,
            catch_ups: counter(
                "cluster_catch_ups_total",
                "Times every open room caught up from the database (Redis link back, or this node paused)",
            )?,
            events_dropped: counter(
                "cluster_events_dropped_total",
                "Events from other nodes dropped at a full room mailbox (read back by gap repair)",
            )?,
            peers,
        })
    }
}

impl Metrics {
    /// Builds the metric set. Fails only on a programming error (a bad
    /// metric name), which start-up reports.
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new_custom(Some("huddle".into()), None)?;
        let connections = IntGauge::new("connections", "Open WebSocket connections")?;
        let users = IntGauge::new("users", "Users with at least one authenticated connection")?;
        let rooms = IntGaugeVec::new(Opts::new("rooms", "Room actors in memory, by kind"), &["kind"])?;
        let requests = IntCounterVec::new(Opts::new("requests_total", "Requests received, by event"), &["event"])?;
        let errors =
            IntCounterVec::new(Opts::new("errors_total", "Errors sent to clients, by event and code"), &["event", "code"])?;
        let pushes = IntCounter::new("pushes_total", "Frames pushed by rooms to members")?;
        let slow_consumers = IntCounter::new("slow_consumers_total", "Connections closed because they did not read (4008)")?;
        let request_seconds = HistogramVec::new(
            HistogramOpts::new("request_duration_seconds", "From a request's arrival to its response being queued")
                .buckets(BUCKETS.to_vec()),
            &["event"],
        )?;
        let edits_redone = IntCounter::new(
            "document_edits_redone_total",
            "Document edits prepared again: their group's commit found the document moved (another node committed first)",
        )?;
        let db_seconds = Histogram::with_opts(
            HistogramOpts::new("db_call_duration_seconds", "One store call on a database thread").buckets(BUCKETS.to_vec()),
        )?;
        registry.register(Box::new(connections.clone()))?;
        registry.register(Box::new(users.clone()))?;
        registry.register(Box::new(rooms.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(pushes.clone()))?;
        registry.register(Box::new(slow_consumers.clone()))?;
        registry.register(Box::new(request_seconds.clone()))?;
        registry.register(Box::new(db_seconds.clone()))?;
        registry.register(Box::new(edits_redone.clone()))?;
        let cluster = ClusterMetrics::new(&registry)?;
        Ok(Metrics {
            registry,
            connections,
            users,
            rooms,
            requests,
            errors,
            pushes,
            slow_consumers,
            request_seconds,
            db_seconds,
            edits_redone,
            cluster,
        })
    }

    /// Room events published to the other nodes.
    pub fn published(&self, count: u64) {
        self.cluster.publishes.inc_by(count);
    }

    /// Room events that could not be published.
    pub fn publish_failed(&self, count: u64) {
        self.cluster.publish_failures.inc_by(count);
    }

    /// An event from another node that a room could not take.
    pub fn remote_dropped(&self) {
        self.cluster.events_dropped.inc();
    }

    pub fn set_peers(&self, count: usize) {
        self.cluster.peers.set(count as i64);
    }

    /// The text exposition, with the registry's current counts.
    pub fn render(&self, stats: RegistryStats) -> String {
        self.users.set(stats.users as i64);
        self.rooms.with_label_values(&["document"]).set(stats.document_rooms as i64);
        self.rooms.with_label_values(&["chat"]).set(stats.chat_rooms as i64);
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            log::error!("metrics encoding failed: {e}");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Observer for Metrics {
    fn session_opened(&self) {
        self.connections.inc();
    }
    fn session_closed(&self) {
        self.connections.dec();
    }
    fn request(&self, event: &'static str) {
        self.requests.with_label_values(&[event]).inc();
    }
    fn request_done(&self, event: &'static str, seconds: f64) {
        self.request_seconds.with_label_values(&[event]).observe(seconds);
    }
    fn error(&self, event: &'static str, code: ErrorCode) {
        self.errors.with_label_values(&[event, code.as_str()]).inc();
    }
    fn pushes(&self, count: u64) {
        self.pushes.inc_by(count);
    }
    fn slow_consumer(&self) {
        self.slow_consumers.inc();
    }
    fn db_call(&self, seconds: f64) {
        self.db_seconds.observe(seconds);
    }
    fn edits_redone(&self, count: u64) {
        self.edits_redone.inc_by(count);
    }
    fn gap_repaired(&self, count: u64) {
        self.cluster.gap_repairs.inc_by(count);
    }
    fn caught_up(&self) {
        self.cluster.catch_ups.inc();
    }
}
