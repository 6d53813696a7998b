//! Starting the `huddle` binary for a run: a fresh SQLite file in a
//! temporary directory, an ephemeral port read back from the server's log,
//! limits raised for load, and optionally `taskset` to pin it to cores.
//! Its log goes to a file; warnings and errors in it are reported at stop.
//! A cluster is several of these with one secret and their own node ids,
//! on the PostgreSQL database and the Redis given in their environment.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long the server may take to log that it listens (a cold SQLite file
/// runs its migrations first).
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a SIGTERM'd server may drain before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// The marker the server logs once it accepts connections.
const LISTENING: &str = "listening on http://";

pub struct ServerOptions {
    pub bin: PathBuf,
    /// `taskset -c` list, e.g. `0`.
    pub cpus: Option<String>,
    /// `full` or `normal` (HUDDLE_SQLITE_SYNCHRONOUS).
    pub sync: String,
    /// HUDDLE_WORKERS, when given.
    pub workers: Option<usize>,
    /// Extra `KEY=VALUE` settings, applied last.
    pub env: Vec<(String, String)>,
    /// The JWT secret (the same on every node of a cluster).
    pub secret: String,
    /// `HUDDLE_NODE_ID`, for a node of a cluster.
    pub node_id: Option<String>,
}

/// A JWT secret for the servers of one harness process.
pub fn fresh_secret() -> String {
    format!("bench-{:x}-{}", crate::stats::now_ns(), std::process::id())
}

pub struct Server {
    child: Child,
    pub pid: u32,
    pub url: String,
    pub secret: String,
    pub dir: PathBuf,
    pub log: PathBuf,
    log_thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    pub fn spawn(o: &ServerOptions) -> Result<Server, String> {
        let stamp = crate::stats::now_ns();
        let dir = std::env::temp_dir().join(format!("huddle-bench-{}-{stamp}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let secret = o.secret.clone();
        let mut cmd = match &o.cpus {
            Some(cpus) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpus).arg(&o.bin);
                c
            }
            None => Command::new(&o.bin),
        };
        cmd.arg("serve")
            .env("HUDDLE_BIND", "127.0.0.1:0")
            .env("DATABASE_URL", dir.join("bench.db"))
            .env("HUDDLE_JWT_SECRET", &secret)
            .env("HUDDLE_SQLITE_SYNCHRONOUS", &o.sync)
            // The harness is one client per connection and may send far
            // faster than a person: lift the per-connection and per-user
            // limits so they are not what is measured.
            .env("HUDDLE_RATE_PER_SECOND", "1000000")
            .env("HUDDLE_RATE_BURST", "1000000")
            .env("HUDDLE_MAX_CONNECTIONS_PER_USER", "100000")
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(w) = o.workers {
            cmd.env("HUDDLE_WORKERS", w.to_string());
        }
        if let Some(node) = &o.node_id {
            cmd.env("HUDDLE_NODE_ID", node);
        }
        for (k, v) in &o.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().map_err(|e| format!("cannot start {}: {e}", o.bin.display()))?;
        let pid = child.id();
        let stderr = child.stderr.take().ok_or("no stderr pipe")?;
        let log = dir.join("server.log");
        let mut file = File::create(&log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let (tx, rx) = mpsc::channel();
        // Copies the log to the file for the whole life of the server (a
        // full pipe would block it) and reports the port once.
        let log_thread = std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(file, "{line}");
                if let Some(at) = line.find(LISTENING) {
                    if let Some(t) = tx.take() {
                        let _ = t.send(line[at + LISTENING.len()..].trim().to_owned());
                    }
                }
            }
        });
        let mut server = Server { child, pid, url: String::new(), secret, dir, log, log_thread: Some(log_thread) };
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(hostport) => {
                server.url = format!("ws://{hostport}/ws");
                Ok(server)
            }
            Err(_) => {
                let tail = server.stop().unwrap_or_default();
                Err(format!("the server did not start within {} s; its log:\n{tail}", START_TIMEOUT.as_secs()))
            }
        }
    }

    /// SIGTERM, wait for the drain, SIGKILL if needed. Returns the lines
    /// of the log that are warnings or errors.
    pub fn stop(&mut self) -> Result<String, String> {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.pid as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
            }
        }
        if let Some(t) = self.log_thread.take() {
            let _ = t.join();
        }
        Ok(problems(&self.log))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.log_thread.is_some() {
            let _ = self.stop();
        }
    }
}

/// The lines of a server log worth a look after a load run: warnings,
/// errors, panics, and slow consumers (logged at INFO).
pub fn problems(log: &Path) -> String {
    match std::fs::read_to_string(log) {
        Ok(text) => text
            .lines()
            .filter(|l| {
                l.contains(" WARN ") || l.contains(" ERROR ") || l.contains("panicked") || l.contains("slow consumer")
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Err(e) => format!("cannot read {}: {e}", log.display()),
    }
}
