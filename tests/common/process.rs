//! The real `huddle` binary as a child process: for signals, crashes and
//! restarts.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::common::SECRET;

pub struct Process {
    pub child: Child,
    pub addr: SocketAddr,
    /// stderr lines after the ready line.
    pub log: mpsc::Receiver<String>,
    /// stderr lines before it.
    pub early_log: Vec<String>,
}

/// The `huddle` binary cargo built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_huddle");

impl Process {
    /// Starts `huddle serve` on `db` and waits for its ready line.
    pub fn start(db: &Path, envs: &[(&str, &str)]) -> Process {
        let mut command = Command::new(BIN);
        command.arg("serve");
        Self::spawn(command, db, envs)
    }

    /// Runs `command`, which starts `huddle serve` (itself, or through a
    /// wrapper that execs it), with the test settings and `envs`, and
    /// waits for its ready line.
    pub fn spawn(mut command: Command, db: &Path, envs: &[(&str, &str)]) -> Process {
        command
            .env("HUDDLE_BIND", "127.0.0.1:0")
            .env("DATABASE_URL", db)
            .env("HUDDLE_JWT_SECRET", SECRET)
            .env("RUST_LOG", "info")
            .envs(envs.iter().copied());
        Process::launch(command)
    }

    /// Starts `command` (a `huddle serve` the caller set up entirely) and
    /// waits for its ready line; the log lines before it are in `early_log`.
    pub fn launch(mut command: Command) -> Process {
        let mut child = command.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("spawn huddle");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut early_log = Vec::new();
        let addr = loop {
            let line = rx.recv_timeout(Duration::from_secs(30)).expect("huddle did not get ready");
            if let Some(rest) = line.split("listening on http://").nth(1) {
                break rest.trim().parse().expect("address");
            }
            early_log.push(line);
        };
        Process { child, addr, log: rx, early_log }
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill").arg(format!("-{name}")).arg(self.child.id().to_string()).status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{name}");
    }

    /// Waits for the process to exit, up to `limit`.
    pub async fn wait(mut self, limit: Duration) -> ExitStatus {
        tokio::task::spawn_blocking(move || {
            let deadline = std::time::Instant::now() + limit;
            loop {
                if let Some(status) = self.child.try_wait().expect("wait") {
                    return status;
                }
                assert!(std::time::Instant::now() < deadline, "huddle did not exit within {limit:?}");
                std::thread::sleep(Duration::from_millis(20)); // polling a child process, not synchronizing
            }
        })
        .await
        .expect("wait task")
    }

    /// Log lines printed so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.log.try_iter().collect()
    }

    /// Log lines up to and including the first that contains `needle`
    /// (waiting up to `limit` for it).
    pub fn log_until(&self, needle: &str, limit: Duration) -> Vec<String> {
        let deadline = std::time::Instant::now() + limit;
        let mut lines = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = self
                .log
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no log line with {needle:?} within {limit:?}; got {lines:#?}"));
            let found = line.contains(needle);
            lines.push(line);
            if found {
                return lines;
            }
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// A number from `/proc/<pid>/<file>`: the first field after `key` on the
/// line that starts with it (`VmRSS:` of `status` in KiB, `rchar:` of `io`
/// in bytes).
pub fn proc_number(pid: u32, file: &str, key: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).unwrap_or_else(|e| panic!("/proc/{pid}/{file}: {e}"));
    let line = text.lines().find(|l| l.starts_with(key)).unwrap_or_else(|| panic!("no {key} in /proc/{pid}/{file}"));
    line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{line}"))
}
