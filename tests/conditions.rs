//! Conditions of the machine, on the real binary: a full disk under
//! SQLite, a lost PostgreSQL connection. Neither is a bug: requests get
//! `SERVER_BUSY` with `details.reason` (never `INTERNAL_ERROR`), `/ready`
//! answers 503 while it lasts, the log says so once when it starts and once
//! when it ends, and nothing acknowledged is lost.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::http::Http;
use common::postgres::TempDatabase;
use common::process::{Process, BIN};
use common::proxy::Proxy;
use common::{gate, token, Client};
use serde_json::{json, Value};

/// The database's filesystem: room for the schema and a few messages.
const DISK_SIZE: &str = "8m";
/// How long the log may take to show a line the test waits for.
const LOG_WAIT: Duration = Duration::from_secs(10);
/// How long a database that came back may take to be used again (r2d2
/// retries a failed connection at most every 2.5 s; the readiness probe
/// runs at most once a second).
const RECOVERY_WAIT: Duration = Duration::from_secs(15);

/// Between two readiness checks while waiting for one to pass (the server
/// probes at most once a second).
const READY_POLL: Duration = Duration::from_millis(100);

const STARTED: &str = "database condition started";
const ENDED: &str = "database condition ended";

/// Mounts a tmpfs on `dir` in a private mount namespace (nothing leaks to
/// the machine, and it goes away with the process) and runs `command`
/// there (`$1`... are `args`).
fn in_small_disk(dir: &Path, command: &str, args: &[&str]) -> Command {
    let mut c = Command::new("unshare");
    c.args(["--mount", "sh", "-c"])
        .arg(format!("mount -t tmpfs -o size={DISK_SIZE} tmpfs \"$0\" && exec {command}"))
        .arg(dir)
        .args(args);
    c
}

/// `huddle serve` with its SQLite file on a small filesystem of its own;
/// `None` (skipped) where mounting one is not allowed. Also returns the
/// directory as the test sees it (through the process's root).
fn start_on_small_disk(dir: &Path) -> Option<(Process, PathBuf)> {
    match in_small_disk(dir, "true", &[]).output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            let why = format!("cannot mount a tmpfs for the database ({})", String::from_utf8_lossy(&out.stderr).trim());
            gate::skip(&why, "run as root with util-linux's unshare (CI does)");
            return None;
        }
        Err(e) => {
            gate::skip(&format!("cannot run unshare to mount a tmpfs for the database ({e})"), "install util-linux and run as root");
            return None;
        }
    }
    let db = dir.join("huddle.db");
    let server = Process::spawn(in_small_disk(dir, "\"$1\" serve", &[BIN]), &db, &[]);
    let seen = PathBuf::from(format!("/proc/{}/root", server.child.id())).join(dir.strip_prefix("/").unwrap_or(dir));
    Some((server, seen))
}

/// Fills the filesystem of `dir` to the last byte.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).expect("create filler");
    let chunk = vec![0u8; 64 * 1024];
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
            Err(e) => panic!("filling the disk: {e}"),
        }
    }
    // A last partial chunk may still fit.
    let mut byte = [0u8; 1];
    while f.write(&byte).is_ok_and(|n| n == 1) {
        byte[0] = 1;
    }
    path
}

/// Sends `content` and returns the ack's message, or the error's data.
async fn send(c: &mut Client, chat: &str, content: &str) -> Result<Value, Value> {
    c.request("chat:message", json!({"chat_id": chat, "content": content})).await.map(|ack| ack["message"].clone())
}

fn count(lines: &[String], needle: &str) -> usize {
    lines.iter().filter(|l| l.contains(needle)).count()
}

async fn ready(http: &Http) -> (u16, Value) {
    let r = http.call("GET", "/ready", None, None).await;
    (r.status, r.body)
}

#[tokio::test]
async fn a_full_disk_is_server_busy_until_space_returns_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let Some((server, disk)) = start_on_small_disk(dir.path()) else { return };
    let http = Http::new(format!("http://{}", server.addr));
    let mut alice = Client::authenticated(&server.ws_url(), &token("alice")).await;
    alice.ok("chat:join", json!({"chat_id": "disk"})).await;
    let mut acked = Vec::new();
    for i in 0..5 {
        acked.push(send(&mut alice, "disk", &format!("before {i}")).await.expect("stored"));
    }

    let filler = fill(&disk);
    // Writes may still fit in pages the database already holds; the first
    // that needs a new one fails, and every one after it.
    let mut refusal = None;
    for i in 0..50 {
        match send(&mut alice, "disk", &format!("full {i}")).await {
            Ok(m) => acked.push(m),
            Err(e) => {
                refusal = Some(e);
                break;
            }
        }
    }
    let e = refusal.expect("a write failed on the full disk");
    assert_eq!((e["code"].clone(), e["details"]["reason"].clone()), (json!("SERVER_BUSY"), json!("disk_full")), "{e}");
    for i in 0..5 {
        let e = send(&mut alice, "disk", &format!("still full {i}")).await.expect_err("the disk is full");
        assert_eq!((e["code"].clone(), e["details"]["reason"].clone()), (json!("SERVER_BUSY"), json!("disk_full")), "{e}");
    }
    let e = alice.fails("documents:create", json!({"document_id": "big", "content": "x".repeat(100_000)}), "SERVER_BUSY").await;
    assert_eq!(e["details"]["reason"], "disk_full");
    let (status, body) = ready(&http).await;
    assert_eq!((status, body["code"].clone(), body["details"]["reason"].clone()), (503, json!("SERVER_BUSY"), json!("disk_full")));
    let mut log = server.log_until(&format!("{STARTED}: disk_full"), LOG_WAIT);

    std::fs::remove_file(filler).expect("free the disk");
    // Nobody writes meanwhile (a balancer has taken the node out): the
    // readiness probe alone sees that writes succeed again.
    let deadline = tokio::time::Instant::now() + RECOVERY_WAIT;
    while ready(&http).await.0 != 200 {
        assert!(tokio::time::Instant::now() < deadline, "/ready stayed 503 after the disk was freed");
        tokio::time::sleep(READY_POLL).await; // paces the polling; the deadline bounds it
    }
    log.extend(server.log_until(ENDED, LOG_WAIT));
    acked.push(send(&mut alice, "disk", "after").await.expect("stored once there is room"));
    assert_eq!((count(&log, STARTED), count(&log, ENDED)), (1, 1), "{log:#?}");
    assert_eq!(count(&log, "incident"), 0, "no INTERNAL_ERROR: {log:#?}");

    // Everything acknowledged is there, in order, without gaps.
    let joined = alice.ok("chat:join", json!({"chat_id": "disk", "since_seq": 0})).await;
    assert_eq!(joined["messages"].as_array().unwrap(), &acked);
    let seqs: Vec<i64> = acked.iter().map(|m| m["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, (1..=acked.len() as i64).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_lost_database_connection_is_server_busy_until_it_returns() {
    let Some(db) = TempDatabase::create() else { return };
    let proxy = Proxy::start(db.address());
    let url = db.url_via(proxy.addr);
    let server = Process::start(Path::new("unused"), &[("DATABASE_URL", &url)]);
    let http = Http::new(format!("http://{}", server.addr));
    let mut alice = Client::authenticated(&server.ws_url(), &token("alice")).await;
    alice.ok("chat:join", json!({"chat_id": "link"})).await;
    let mut acked = vec![send(&mut alice, "link", "before").await.expect("stored")];

    proxy.cut();
    for i in 0..5 {
        let e = send(&mut alice, "link", &format!("cut {i}")).await.expect_err("no database");
        assert_eq!((e["code"].clone(), e["details"]["reason"].clone()), (json!("SERVER_BUSY"), json!("database_unreachable")), "{e}");
    }
    let e = alice.fails("chat:history", json!({"chat_id": "link"}), "SERVER_BUSY").await;
    assert_eq!(e["details"]["reason"], "database_unreachable");
    let (status, body) = ready(&http).await;
    assert_eq!((status, body["details"]["reason"].clone()), (503, json!("database_unreachable")), "{body}");
    let mut log = server.log_until(&format!("{STARTED}: database_unreachable"), LOG_WAIT);
    // The connection to the client is fine meanwhile.
    alice.ok("ping", json!({})).await;

    proxy.restore();
    // Each attempt fails fast while the pool reconnects; no sleep needed.
    let deadline = tokio::time::Instant::now() + RECOVERY_WAIT;
    let stored = loop {
        match send(&mut alice, "link", "after").await {
            Ok(m) => break m,
            Err(e) => {
                assert_eq!(e["code"], "SERVER_BUSY", "{e}");
                assert!(tokio::time::Instant::now() < deadline, "the database did not come back: {e}");
            }
        }
    };
    acked.push(stored);
    assert_eq!(ready(&http).await.0, 200);
    log.extend(server.log_until(ENDED, LOG_WAIT));
    assert_eq!((count(&log, STARTED), count(&log, ENDED)), (1, 1), "{log:#?}");
    assert_eq!(count(&log, "incident"), 0, "no INTERNAL_ERROR: {log:#?}");
    let joined = alice.ok("chat:join", json!({"chat_id": "link", "since_seq": 0})).await;
    assert_eq!(joined["messages"].as_array().unwrap(), &acked);
}
