//! Cluster mode under test: several real `huddle` processes on free ports,
//! sharing one fresh PostgreSQL database (`postgres::TempDatabase`) and a
//! private `redis-server` on a free port, which a test may kill, restart,
//! or reach through a [`Proxy`] to cut one node's link. Without
//! PostgreSQL or `redis-server` the test is skipped, visibly (see `gate`).

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::common::gate;
use crate::common::http::{Http, Reply};
use crate::common::postgres::TempDatabase;
use crate::common::process::{Process, BIN};
use crate::common::proxy::Proxy;
use crate::common::{token, Client};

/// The API key the nodes are started with.
pub const API_KEY: &str = "cluster-test-api-key";

/// Settings every node gets: short timings so that failures are noticed
/// (and repaired) within a test's patience, and room for the tests' bursts.
pub const NODE_TIMEOUT_MS: u64 = 1000;
pub const CHECK_INTERVAL_MS: u64 = 300;
const NODE_ENV: &[(&str, &str)] = &[
    ("HUDDLE_NODE_TIMEOUT_MS", "1000"),
    ("HUDDLE_CHECK_INTERVAL_MS", "300"),
    ("HUDDLE_API_KEY", API_KEY),
    ("HUDDLE_RATE_PER_SECOND", "100000"),
    ("HUDDLE_RATE_BURST", "100000"),
    // Two cores for the whole suite: each node stays small.
    ("HUDDLE_WORKERS", "1"),
    ("HUDDLE_DB_THREADS", "2"),
    ("HUDDLE_DRAIN_TIMEOUT_MS", "1000"),
];

/// What a node logs once its Redis link is up (again).
pub const LINK_UP: &str = "Redis link up";

/// A `redis-server` of the test's own.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts one on a free port; `None` (after `gate::skip`) when
    /// `redis-server` is not installed.
    pub fn start() -> Option<RedisServer> {
        if Command::new("redis-server").arg("--version").output().is_err() {
            gate::skip("redis-server is not installed", "install it (apt-get install redis-server)");
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
        let mut server = RedisServer { port, child: None, dir: tempfile::tempdir().expect("temp dir") };
        server.restart();
        Some(server)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn url(&self) -> String {
        format!("redis://{}", self.addr())
    }

    /// The URL of the same server reached at `addr` (a proxy).
    pub fn url_via(addr: SocketAddr) -> String {
        format!("redis://{addr}")
    }

    /// Kills the server at once (its state is lost: it persists nothing).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// (Re)starts it on the same port, and waits until it answers.
    pub fn restart(&mut self) {
        self.kill();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(self.addr()).is_err() {
            assert!(std::time::Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(10)); // polling a starting server
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// N nodes on one database and one Redis.
pub struct Cluster {
    pub db: TempDatabase,
    pub redis: RedisServer,
    pub nodes: Vec<Process>,
}

impl Cluster {
    /// Starts `n` nodes (`n0`, `n1`, ...), each with the common settings
    /// and `extra(i)`, and waits until each has its Redis link up. `None`
    /// when PostgreSQL or Redis is missing (the test was skipped).
    pub fn start(n: usize, extra: impl Fn(usize) -> Vec<(String, String)>) -> Option<Cluster> {
        let db = TempDatabase::create()?;
        let redis = RedisServer::start()?;
        let mut cluster = Cluster { db, redis, nodes: Vec::new() };
        for i in 0..n {
            let node = cluster.spawn(i, &extra(i));
            cluster.nodes.push(node);
        }
        Some(cluster)
    }

    /// Starts node `i` with `extra` settings (a Redis URL among them
    /// replaces the cluster's) and waits for its Redis link.
    pub fn spawn(&self, i: usize, extra: &[(String, String)]) -> Process {
        let node_id = format!("n{i}");
        let redis_url = self.redis.url();
        let mut envs: Vec<(&str, &str)> = NODE_ENV.to_vec();
        envs.push(("HUDDLE_NODE_ID", &node_id));
        envs.push(("HUDDLE_REDIS_URL", &redis_url));
        envs.extend(extra.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let mut command = Command::new(BIN);
        command.arg("serve");
        let node = Process::spawn(command, Path::new(&self.db.url), &envs);
        // The link may come up before the node logs that it listens.
        if !node.early_log.iter().any(|l| l.contains(LINK_UP)) {
            node.log_until(LINK_UP, Duration::from_secs(20));
        }
        node
    }

    /// Two nodes, node 0 (with `extra` settings) reaching Redis through a
    /// proxy the test can cut, node 1 directly.
    pub fn start_cuttable(extra: &[(&str, &str)]) -> Option<(Cluster, Proxy)> {
        let mut c = Cluster::start(0, |_| Vec::new())?;
        let proxy = Proxy::start(c.redis.addr());
        let mut settings = vec![("HUDDLE_REDIS_URL".to_owned(), RedisServer::url_via(proxy.addr))];
        settings.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        c.nodes.push(c.spawn(0, &settings));
        c.nodes.push(c.spawn(1, &[]));
        Some((c, proxy))
    }

    pub fn node(&self, i: usize) -> &Process {
        &self.nodes[i]
    }

    /// A client of node `i` authenticated as `user`.
    pub async fn client(&self, i: usize, user: &str) -> Client {
        Client::authenticated(&self.nodes[i].ws_url(), &token(user)).await
    }

    /// The HTTP API of node `i`.
    pub fn http(&self, i: usize) -> Http {
        Http::new(format!("http://{}", self.nodes[i].addr))
    }

    /// `method path` on node `i` with the API key.
    pub async fn api(&self, i: usize, method: &str, path: &str, body: Option<Value>) -> Reply {
        self.http(i).call(method, path, Some(API_KEY), body.map(|b| b.to_string())).await
    }

    /// Every message of `chat`, read from the database (through node 0's
    /// HTTP API, newest 100 at a time).
    pub async fn stored(&self, i: usize, chat: &str) -> Vec<Value> {
        let mut all = Vec::new();
        let mut before = String::new();
        loop {
            let page = self.api(i, "GET", &format!("/api/chats/{chat}/messages?limit=100{before}"), None).await;
            assert_eq!(page.status, 200, "{}", page.text);
            let messages = page.body["messages"].as_array().cloned().unwrap_or_default();
            let first = messages.first().map(|m| m["seq"].as_i64().unwrap_or(0));
            all.splice(0..0, messages);
            match (page.body["has_more"].as_bool(), first) {
                (Some(true), Some(seq)) => before = format!("&before_seq={seq}"),
                _ => return all,
            }
        }
    }

    /// Node `i`'s Prometheus counter or gauge `name` (0 when absent).
    pub async fn metric(&self, i: usize, name: &str) -> f64 {
        let reply = self.http(i).call("GET", "/metrics", None, None).await;
        reply
            .text
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0.0)
    }
}

/// Collects the `chat:message` pushes of `room` on `client` until the one
/// with `last` seq has arrived; returns their seqs in arrival order (a
/// duplicate or a reorder shows in the result).
pub async fn pushes_until(client: &mut Client, room: &str, last: i64) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let message = client.expect_push("chat:message", room).await["message"].clone();
        let seq = message["seq"].as_i64().expect("seq");
        seen.push(message);
        if seq >= last {
            return seen;
        }
    }
}

pub fn seqs(messages: &[Value]) -> Vec<i64> {
    messages.iter().map(|m| m["seq"].as_i64().expect("seq")).collect()
}

/// A member list as `(user_id, connections)` pairs, in its order.
pub fn users(members: &Value) -> Vec<(String, i64)> {
    members
        .as_array()
        .expect("members")
        .iter()
        .map(|m| (m["user_id"].as_str().expect("user_id").to_owned(), m["connections"].as_i64().expect("connections")))
        .collect()
}

/// Asks `presence:list` of `room` until the members are `expected` (news
/// from other nodes comes through Redis: bounded by `WAIT`); the
/// connection's earlier pushes about the room are then all in.
pub async fn until_listed(client: &mut Client, room: &str, expected: &[(&str, i64)]) {
    let expected: Vec<(String, i64)> = expected.iter().map(|(u, n)| (u.to_string(), *n)).collect();
    let deadline = std::time::Instant::now() + crate::common::client::WAIT;
    loop {
        let page = client.ok("presence:list", serde_json::json!({ "room": room })).await;
        let listed = users(&page["members"]);
        if listed == expected {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{room} lists {listed:?}, not {expected:?}");
        tokio::task::yield_now().await;
    }
}

impl Cluster {
    /// `GET /api/rooms/{room}/presence` on node `i`, until it lists
    /// `expected` (bounded by `WAIT`); returns the last answer.
    pub async fn until_presence(&self, i: usize, room: &str, expected: &[(&str, i64)]) -> Value {
        let expected: Vec<(String, i64)> = expected.iter().map(|(u, n)| (u.to_string(), *n)).collect();
        let deadline = std::time::Instant::now() + crate::common::client::WAIT;
        loop {
            let reply = self.api(i, "GET", &format!("/api/rooms/{room}/presence"), None).await;
            assert_eq!(reply.status, 200, "{}", reply.text);
            if users(&reply.body["members"]) == expected {
                return reply.body;
            }
            assert!(std::time::Instant::now() < deadline, "node {i}: {room} lists {}, not {expected:?}", reply.body);
            tokio::task::yield_now().await;
        }
    }
}
