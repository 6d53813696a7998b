//! The scenarios. Each one opens its clients, waits for them to be set up
//! (on events, with a stall timeout), sends the start signal, waits for
//! every client to have seen all it expects, and measures that window.
//!
//! Sharding: with `--shard i/n` a process takes the connections (or the
//! rooms, or the documents) whose index is `i` modulo `n`. In `fanout` and
//! `recovery`, whose one room spans the shards, the publishers live in
//! shard 0 and wait until the room's presence shows every subscriber.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use actix::Addr;
use futures_util::{stream, StreamExt};

use crate::client::{connect, Behaviour, Client, Command, Net};
use crate::fake::FakeServer;
use crate::report::{buckets, Percentiles, Report, SATURATED};
use crate::roles::{ChatClient, Churner, EditMode, Editor, Idle, JoinWhen, Publish};
use crate::stats::{rss_kb, sum_over, Counters, CpuWindow, Shared};
use crate::{token, RunOptions, Scenario, Target};

/// How long the clients of a finished run get to close.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a waiting orchestrator looks at the counters when no
/// milestone woke it (stall detection and presence barriers).
const POLL: Duration = Duration::from_millis(200);
/// How long one churn cycle may take before it counts as failed.
const CYCLE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the orchestration measured, beside the counters.
#[derive(Default)]
struct Measured {
    setup_s: f64,
    elapsed_s: f64,
    connections: u64,
    /// Connections per second of the setup phase (conns, churn).
    connections_per_s: Option<f64>,
    cycles_per_s: Option<f64>,
    server_cpu: Option<f64>,
    harness_cpu: Option<f64>,
    rss_before_kb: Option<u64>,
    rss_after_kb: Option<u64>,
    rss_end_kb: Option<u64>,
}

/// CPU windows on the server and on the harness, opened together.
struct Windows {
    server: CpuWindow,
    harness: CpuWindow,
    start: Instant,
}

impl Windows {
    fn open(server_pids: &[u32]) -> Windows {
        Windows { server: CpuWindow::processes(server_pids), harness: CpuWindow::harness(), start: Instant::now() }
    }

    fn close(&self, m: &mut Measured) {
        m.server_cpu = self.server.share();
        m.harness_cpu = self.harness.share();
    }
}

/// Runs one scenario against `target` and reports. Must run inside an
/// actix system (the client actors live on the current thread).
pub async fn run(scenario: &Scenario, target: &Target, o: &RunOptions) -> Report {
    let shared = Counters::new_shared();
    let mut m = Measured::default();
    let result = match scenario {
        Scenario::Ceiling { subscribers, messages } => ceiling(&shared, *subscribers, *messages, o, &mut m).await,
        _ => {
            let net = Net::spread(&target.urls, target.placement, shared.clone());
            let r = match *scenario {
                Scenario::Fanout { subscribers, publishers, messages, window, rate } => {
                    let plan = fanout_plan(o, "fanout", subscribers, publishers, messages, 0);
                    chat(&net, target, o, plan, messages, window, rate.map(|r| r / publishers.max(1) as f64), &mut m).await
                }
                Scenario::Rooms { rooms, members, messages, window, rate } => {
                    let plan = rooms_plan(o, rooms, members, messages);
                    chat(&net, target, o, plan, messages, window, rate.map(|r| r / rooms.max(1) as f64), &mut m).await
                }
                Scenario::Recovery { subscribers, messages, window, drops } => {
                    let plan = fanout_plan(o, "recovery", subscribers, 1, messages, drops);
                    chat(&net, target, o, plan, messages, window, None, &mut m).await
                }
                Scenario::Docs { docs: d, editors, updates, ops, filler } => docs(&net, target, o, d, editors, updates, ops, filler, &mut m).await,
                Scenario::Conns { connections, room_size, hold } => {
                    conns(&net, target, o, connections, room_size, hold, &mut m).await
                }
                Scenario::Churn { clients, duration, max_cycles } => {
                    churn(&net, target, o, clients, duration, max_cycles, &mut m).await
                }
                Scenario::Ceiling { .. } => Ok(()),
            };
            close_all(&net).await;
            r
        }
    };
    report(scenario, o, &shared, m, result)
}

/// Asks every client to close and waits (bounded) until they have.
async fn close_all(net: &Rc<Net>) {
    net.close_all();
    let deadline = Instant::now() + CLOSE_TIMEOUT;
    let notify = net.shared.borrow().notify.clone();
    while net.open.get() > 0 && Instant::now() < deadline {
        let _ = tokio::time::timeout(POLL, notify.notified()).await;
    }
}

/// Waits until `done` holds. Fails at the first client problem, or when no
/// frame and no connection has arrived for `stall`.
async fn wait_for(shared: &Shared, what: &str, stall: Duration, mut done: impl FnMut(&Counters) -> bool) -> Result<(), String> {
    let notify = shared.borrow().notify.clone();
    let mut last_progress = u64::MAX;
    let mut last_change = Instant::now();
    loop {
        {
            let c = shared.borrow();
            if done(&c) {
                return Ok(());
            }
            if c.errors + c.unexpected_closes + c.connect_failures > 0 {
                return Err(format!("{what}: {}", c.first_problem.as_deref().unwrap_or("a connection failed")));
            }
            let progress = c.frames + c.connected + c.cycles;
            if progress != last_progress {
                last_progress = progress;
                last_change = Instant::now();
            }
        }
        if last_change.elapsed() > stall {
            return Err(format!("{what}: nothing arrived for {} s", stall.as_secs()));
        }
        let _ = tokio::time::timeout(POLL, notify.notified()).await;
    }
}

/// Opens connections, `concurrency` at a time, keeping the input order.
async fn open_all<B: Behaviour>(net: &Rc<Net>, clients: Vec<(String, B)>, concurrency: usize) -> Result<Vec<Addr<Client<B>>>, String> {
    let results: Vec<Result<Addr<Client<B>>, String>> = stream::iter(clients)
        .map(|(token, b)| connect(net.clone(), Rc::from(token), b))
        .buffered(concurrency.max(1))
        .collect()
        .await;
    results.into_iter().collect()
}

/// One chat room of a chat scenario, as this shard sees it.
struct RoomPlan {
    chat: Rc<str>,
    /// Subscribers: user and drop points (recovery).
    subs: Vec<(String, Vec<u64>)>,
    pubs: Vec<String>,
    /// Messages the room will carry.
    expect: u64,
    /// Publishers wait until this many other users are present (the room
    /// spans shards).
    others: Option<i64>,
}

fn fanout_plan(o: &RunOptions, name: &str, subscribers: usize, publishers: usize, messages: u64, drops: u32) -> Vec<RoomPlan> {
    let run = &o.run_id;
    let subs = (0..subscribers)
        .filter(|i| o.shard.owns(*i))
        .map(|i| {
            // Drop points spread over the run, staggered per subscriber so
            // that reconnections do not all land at once.
            let stride = messages / (u64::from(drops) + 1);
            let points = (1..=u64::from(drops)).map(|k| (k * stride + (i as u64 * 7) % (stride / 2 + 1)).max(1)).collect();
            (format!("{run}-{name}-s{i}"), points)
        })
        .collect();
    let pubs = if o.shard.is_first() { (0..publishers).map(|i| format!("{run}-{name}-p{i}")).collect() } else { Vec::new() };
    let others = (o.shard.count > 1).then(|| (subscribers + publishers) as i64 - 1);
    vec![RoomPlan { chat: Rc::from(format!("{run}-{name}")), subs, pubs, expect: messages * publishers as u64, others }]
}

fn rooms_plan(o: &RunOptions, rooms: usize, members: usize, messages: u64) -> Vec<RoomPlan> {
    let run = &o.run_id;
    (0..rooms)
        .filter(|r| o.shard.owns(*r))
        .map(|r| RoomPlan {
            chat: Rc::from(format!("{run}-room{r}")),
            subs: (0..members).map(|k| (format!("{run}-r{r}-m{k}"), Vec::new())).collect(),
            pubs: vec![format!("{run}-r{r}-p")],
            expect: messages,
            others: None,
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
async fn chat(
    net: &Rc<Net>,
    t: &Target,
    o: &RunOptions,
    plan: Vec<RoomPlan>,
    messages: u64,
    window: u32,
    rate_per_publisher: Option<f64>,
    m: &mut Measured,
) -> Result<(), String> {
    let shared = &net.shared;
    let setup = Instant::now();
    let mut clients = Vec::new();
    let mut is_pub = Vec::new();
    let mut barriers: Vec<(Rc<Cell<i64>>, i64)> = Vec::new();
    for room in &plan {
        for (user, drops) in &room.subs {
            let c = ChatClient::new(shared.clone(), room.chat.clone(), room.expect, JoinWhen::AtOnce).dropping_at(drops.clone());
            clients.push((token::mint(&t.secret, user)?, c));
            is_pub.push(false);
        }
        for user in &room.pubs {
            let c = ChatClient::new(shared.clone(), room.chat.clone(), room.expect, JoinWhen::AtOnce)
                .publishing(Publish::new(messages, window, rate_per_publisher));
            if let Some(n) = room.others {
                barriers.push((c.presence(), n));
            }
            clients.push((token::mint(&t.secret, user)?, c));
            is_pub.push(true);
        }
    }
    let n = clients.len() as u64;
    m.connections = n;
    let addrs = open_all(net, clients, o.connect_concurrency).await?;
    wait_for(shared, "joining", o.stall, |c| c.ready >= n).await?;
    for (presence, need) in &barriers {
        wait_for(shared, "waiting for the other shards' subscribers", o.stall, |_| presence.get() >= *need).await?;
    }
    m.setup_s = setup.elapsed().as_secs_f64();
    let w = Windows::open(&t.server_pids);
    for (a, p) in addrs.iter().zip(&is_pub) {
        if *p {
            a.do_send(Command::Go);
        }
    }
    let has_publishers = is_pub.iter().any(|p| *p);
    let waited = wait_for(shared, "delivering", o.stall, |c| c.done >= n).await;
    w.close(m);
    let c = shared.borrow();
    m.elapsed_s = match (has_publishers, c.first_delivery, c.last_delivery) {
        (true, _, Some(last)) => last.saturating_duration_since(w.start).as_secs_f64(),
        // A shard without publishers measures from its first delivery.
        (false, Some(first), Some(last)) => last.saturating_duration_since(first).as_secs_f64(),
        _ => w.start.elapsed().as_secs_f64(),
    };
    waited
}

#[allow(clippy::too_many_arguments)]
async fn docs(
    net: &Rc<Net>,
    t: &Target,
    o: &RunOptions,
    docs: usize,
    editors: usize,
    updates: u64,
    ops: bool,
    filler: usize,
    m: &mut Measured,
) -> Result<(), String> {
    let shared = &net.shared;
    let run = &o.run_id;
    let setup = Instant::now();
    let expect = updates * editors as u64;
    let mut clients = Vec::new();
    let mut creators = 0u64;
    for d in (0..docs).filter(|d| o.shard.owns(*d)) {
        let doc: Rc<str> = Rc::from(format!("{run}-doc{d}"));
        let users: Vec<String> = (0..editors).map(|e| format!("{run}-d{d}-e{e}")).collect();
        for (e, user) in users.iter().enumerate() {
            let share = (e == 0).then(|| users[1..].to_vec());
            creators += u64::from(e == 0);
            let mode = if ops { EditMode::Ops { slot: e, slots: editors, filler } } else { EditMode::Updates };
            clients.push((token::mint(&t.secret, user)?, Editor::new(shared.clone(), doc.clone(), share, updates, expect, mode)));
        }
    }
    let n = clients.len() as u64;
    m.connections = n;
    let addrs = open_all(net, clients, o.connect_concurrency).await?;
    // Creators create, share and join; then the others may join.
    wait_for(shared, "creating documents", o.stall, |c| c.ready >= creators).await?;
    for a in &addrs {
        a.do_send(Command::Join);
    }
    wait_for(shared, "joining documents", o.stall, |c| c.ready >= n).await?;
    m.setup_s = setup.elapsed().as_secs_f64();
    let w = Windows::open(&t.server_pids);
    for a in &addrs {
        a.do_send(Command::Go);
    }
    let waited = wait_for(shared, "updating", o.stall, |c| c.done >= n).await;
    w.close(m);
    m.elapsed_s = w.start.elapsed().as_secs_f64();
    waited
}

async fn conns(
    net: &Rc<Net>,
    t: &Target,
    o: &RunOptions,
    connections: usize,
    room_size: usize,
    hold: Duration,
    m: &mut Measured,
) -> Result<(), String> {
    let shared = &net.shared;
    let run = &o.run_id;
    let mut clients = Vec::new();
    for c in (0..connections).filter(|c| o.shard.owns(*c)) {
        let chat: Rc<str> = Rc::from(format!("{run}-conns{}", c / room_size.max(1)));
        clients.push((token::mint(&t.secret, &format!("{run}-c{c}"))?, Idle::new(shared.clone(), chat)));
    }
    let n = clients.len() as u64;
    m.connections = n;
    m.rss_before_kb = sum_over(&t.server_pids, rss_kb);
    let w = Windows::open(&t.server_pids);
    let _addrs = open_all(net, clients, o.connect_concurrency).await?;
    wait_for(shared, "connecting", o.stall, |c| c.ready >= n).await?;
    m.setup_s = w.start.elapsed().as_secs_f64();
    w.close(m);
    m.connections_per_s = (m.setup_s > 0.0).then(|| n as f64 / m.setup_s);
    m.rss_after_kb = sum_over(&t.server_pids, rss_kb);
    // Holding the connections open is the measurement itself (idle cost,
    // and the other shards' ramp); nothing waits on this sleep.
    tokio::time::sleep(hold).await;
    m.rss_end_kb = sum_over(&t.server_pids, rss_kb);
    m.elapsed_s = w.start.elapsed().as_secs_f64();
    let c = shared.borrow();
    if c.unexpected_closes > 0 {
        return Err(format!("idle connections were closed: {}", c.first_problem.as_deref().unwrap_or("?")));
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn churn(
    net: &Rc<Net>,
    t: &Target,
    o: &RunOptions,
    clients: usize,
    duration: Duration,
    max_cycles: Option<u64>,
    m: &mut Measured,
) -> Result<(), String> {
    let shared = &net.shared;
    let run = &o.run_id;
    let deadline = Instant::now() + duration;
    let budget = Rc::new(Cell::new(max_cycles.unwrap_or(u64::MAX)));
    let mut workers = Vec::new();
    for i in (0..clients).filter(|i| o.shard.owns(*i)) {
        let token: Rc<str> = Rc::from(token::mint(&t.secret, &format!("{run}-churn{i}"))?);
        let chat: Rc<str> = Rc::from(format!("{run}-churn{}", i % 10));
        workers.push(churn_worker(net.clone(), token, chat, deadline, budget.clone()));
    }
    m.connections = 0;
    let w = Windows::open(&t.server_pids);
    let results = futures_util::future::join_all(workers).await;
    w.close(m);
    m.elapsed_s = w.start.elapsed().as_secs_f64();
    let cycles = shared.borrow().cycles;
    m.connections = cycles;
    m.cycles_per_s = (m.elapsed_s > 0.0).then(|| cycles as f64 / m.elapsed_s);
    m.connections_per_s = m.cycles_per_s;
    results.into_iter().collect::<Result<Vec<()>, String>>().map(|_| ())
}

async fn churn_worker(net: Rc<Net>, token: Rc<str>, chat: Rc<str>, deadline: Instant, budget: Rc<Cell<u64>>) -> Result<(), String> {
    while Instant::now() < deadline && budget.get() > 0 {
        budget.set(budget.get() - 1);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let started = Instant::now();
        let churner = Churner::new(net.shared.clone(), chat.clone(), started, tx);
        connect(net.clone(), token.clone(), churner).await?;
        match tokio::time::timeout(CYCLE_TIMEOUT, rx).await {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => return Err("a churn cycle got an error".into()),
            Ok(Err(_)) => return Err("a churn connection ended before its leave was acknowledged".into()),
            Err(_) => return Err(format!("a churn cycle took more than {} s", CYCLE_TIMEOUT.as_secs())),
        }
    }
    Ok(())
}

async fn ceiling(shared: &Shared, subscribers: usize, messages: u64, o: &RunOptions, m: &mut Measured) -> Result<(), String> {
    if o.shard.count > 1 {
        return Err("ceiling runs in one process".into());
    }
    let mut fake = FakeServer::start(subscribers, messages, o.fake_cpu)?;
    let net = Net::new(&format!("ws://{}/ws", fake.addr), shared.clone());
    let setup = Instant::now();
    let clients = (0..subscribers)
        .map(|_| ("fake".to_owned(), ChatClient::new(shared.clone(), Rc::from("ceiling"), messages, JoinWhen::Never)))
        .collect();
    let n = subscribers as u64;
    m.connections = n;
    let result = async {
        let _addrs = open_all(&net, clients, o.connect_concurrency).await?;
        wait_for(shared, "connecting", o.stall, |c| c.ready >= n).await?;
        m.setup_s = setup.elapsed().as_secs_f64();
        let w = Windows::open(&[fake.tid]);
        fake.go();
        let waited = wait_for(shared, "delivering", o.stall, |c| c.done >= n).await;
        w.close(m);
        m.elapsed_s = shared.borrow().last_delivery.map_or(0.0, |l| l.saturating_duration_since(w.start).as_secs_f64());
        waited
    }
    .await;
    close_all(&net).await;
    let served = fake.join();
    result.and(served)
}

fn report(scenario: &Scenario, o: &RunOptions, shared: &Shared, m: Measured, result: Result<(), String>) -> Report {
    let c = shared.borrow();
    // Whatever the trackers were told to expect and never reached.
    let missing = c.expected_positions.saturating_sub(c.consumed_positions);
    let lost = c.lost + missing;
    let mut failure = result.err();
    if failure.is_none() && (lost > 0 || c.duplicated > 0) {
        failure = Some(format!("{lost} messages lost, {} duplicated", c.duplicated));
    }
    if failure.is_none() && c.errors + c.unexpected_closes > 0 {
        failure = Some(c.first_problem.clone().unwrap_or_else(|| "client errors".into()));
    }
    let per_s = |x: u64| if m.elapsed_s > 0.0 { x as f64 / m.elapsed_s } else { 0.0 };
    let bytes_per_connection = match (m.rss_before_kb, m.rss_end_kb.or(m.rss_after_kb)) {
        (Some(b), Some(a)) if m.connections > 0 => Some((a.saturating_sub(b) * 1024) as f64 / m.connections as f64),
        _ => None,
    };
    Report {
        scenario: scenario.name().into(),
        label: o.label.clone(),
        run_id: o.run_id.clone(),
        shard: format!("{}/{}", o.shard.index, o.shard.count),
        params: scenario.params(),
        ok: failure.is_none(),
        failure,
        setup_s: m.setup_s,
        elapsed_s: m.elapsed_s,
        connections: m.connections,
        connect_failures: c.connect_failures,
        connections_per_s: m.connections_per_s,
        deliveries: c.deliveries,
        deliveries_per_s: per_s(c.deliveries),
        acks: c.acks,
        acks_per_s: per_s(c.acks),
        lost,
        duplicated: c.duplicated,
        errors: c.errors,
        unexpected_closes: c.unexpected_closes,
        recovered: c.recovered,
        reconnects: c.reconnects,
        conflicts: c.conflicts,
        cycles: c.cycles,
        cycles_per_s: m.cycles_per_s,
        latency_us: Percentiles::of(&c.latency),
        ack_latency_us: Percentiles::of(&c.ack_latency),
        server_cpu: m.server_cpu,
        harness_cpu: m.harness_cpu,
        harness_saturated: m.harness_cpu.is_some_and(|h| h >= SATURATED),
        rss_before_kb: m.rss_before_kb,
        rss_after_kb: m.rss_after_kb,
        rss_end_kb: m.rss_end_kb,
        bytes_per_connection,
        server: None,
        latency_hist: buckets(&c.latency),
        ack_latency_hist: buckets(&c.ack_latency),
    }
}
