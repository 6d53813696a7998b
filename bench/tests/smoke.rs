//! Every scenario of the harness, for a second or two each at small sizes,
//! against a real server started in this process. It keeps the harness
//! from rotting: no figure is asserted except the one that is a
//! correctness check, zero lost and zero duplicated messages.

use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use huddle::auth::{JwtAlgorithm, JwtConfig};
use huddle::config::Options;
use huddle::db::connection::SqliteSync;
use huddle::engine::Control;
use huddle_bench::{Report, RunOptions, Scenario, Target};

const SECRET: &str = "smoke-secret-not-for-production";

/// A server on an ephemeral port over a SQLite file in a temporary
/// directory, on its own thread and actix system; stopped when dropped.
struct Server {
    url: String,
    control: Control,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut options = Options::defaults();
        options.database_url = dir.path().join("smoke.db").display().to_string();
        options.sqlite_synchronous = SqliteSync::Normal;
        options.workers = 1;
        options.db_threads = 2;
        options.drain_timeout_ms = 1000;
        options.rate_per_second = 1_000_000;
        options.rate_burst = 1_000_000;
        options.max_connections_per_user = 100_000;
        let jwt = JwtConfig {
            algorithm: JwtAlgorithm::Hs256,
            secret: Some(SECRET.into()),
            public_key_pem: None,
            issuer: None,
            audience: None,
            leeway_s: 5,
        };
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let system = actix_web::rt::System::new();
            system.block_on(async move {
                match huddle::start(listener, &options, jwt) {
                    Ok(running) => {
                        let _ = tx.send(Ok((running.addr, running.control.clone())));
                        let _ = running.server.await;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            });
        });
        let (addr, control) = rx.recv_timeout(Duration::from_secs(30)).expect("server thread").expect("server start");
        Server { url: format!("ws://{addr}/ws"), control, thread: Some(thread), _dir: dir }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let control = self.control.clone();
        let stopper = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build();
            if let Ok(rt) = rt {
                rt.block_on(control.stop_now());
            }
        });
        let _ = stopper.join();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn check(r: &Report) {
    eprint!("{}", r.table());
    assert!(r.ok, "{} failed: {:?}", r.scenario, r.failure);
    assert_eq!((r.lost, r.duplicated), (0, 0), "{}: lost / duplicated", r.scenario);
}

#[test]
fn every_scenario_runs_without_loss() {
    let server = Server::start();
    // The server runs in this process: its CPU and memory are not measured
    // here (they would include the harness).
    let target = Target::single(server.url.clone(), SECRET, None);
    let scenarios = [
        Scenario::Fanout { subscribers: 20, publishers: 2, messages: 50, window: 8, rate: None },
        Scenario::Fanout { subscribers: 5, publishers: 1, messages: 5, window: 1, rate: Some(50.0) },
        Scenario::Rooms { rooms: 4, members: 4, messages: 30, window: 8, rate: None },
        Scenario::Docs { docs: 2, editors: 3, updates: 10, ops: false, filler: 0 },
        Scenario::Docs { docs: 2, editors: 3, updates: 20, ops: true, filler: 0 },
        Scenario::Docs { docs: 2, editors: 3, updates: 20, ops: true, filler: 5000 },
        Scenario::Conns { connections: 50, room_size: 10, hold: Duration::ZERO },
        Scenario::Recovery { subscribers: 6, messages: 150, window: 4, drops: 2 },
        Scenario::Churn { clients: 4, duration: Duration::from_secs(1), max_cycles: Some(40) },
        Scenario::Ceiling { subscribers: 4, messages: 2000 },
    ];
    let system = actix::System::new();
    for (i, s) in scenarios.iter().enumerate() {
        let mut o = RunOptions::new(format!("smoke{i}"));
        o.stall = Duration::from_secs(10);
        let report = system.block_on(huddle_bench::run(s, &target, &o));
        check(&report);
        match s {
            Scenario::Fanout { subscribers, publishers, messages, .. } => {
                let members = (subscribers + publishers) as u64;
                assert_eq!(report.deliveries, members * *publishers as u64 * messages);
                assert_eq!(report.acks, *publishers as u64 * messages);
            }
            Scenario::Recovery { .. } => assert!(report.reconnects > 0, "no subscriber dropped its connection"),
            Scenario::Docs { docs, editors, updates, ops, .. } => {
                assert_eq!(report.acks, (docs * editors) as u64 * updates);
                if *ops {
                    // Every operation reaches the other editors, none is refused.
                    assert_eq!(report.deliveries, (docs * editors * (editors - 1)) as u64 * updates);
                    assert_eq!((report.conflicts, report.errors), (0, 0));
                }
            }
            Scenario::Churn { .. } => assert!(report.cycles > 0),
            _ => {}
        }
    }
}

#[test]
fn a_shard_takes_its_share_and_merging_adds_up() {
    let server = Server::start();
    let target = Target::single(server.url.clone(), SECRET, None);
    let system = actix::System::new();
    let scenario = Scenario::Conns { connections: 30, room_size: 5, hold: Duration::ZERO };
    let mut reports = Vec::new();
    for i in 0..3 {
        let mut o = RunOptions::new("shards");
        o.shard = huddle_bench::Shard { index: i, count: 3 };
        let r = system.block_on(huddle_bench::run(&scenario, &target, &o));
        check(&r);
        assert_eq!(r.connections, 10);
        reports.push(r);
    }
    let merged = huddle_bench::report::merge(reports);
    assert_eq!(merged.len(), 1);
    assert_eq!(merged[0].connections, 30);
    assert!(merged[0].ok);
}
