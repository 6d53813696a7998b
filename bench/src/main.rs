//! `huddle-bench`: run a load scenario against a Huddle server (started
//! here with `--server-bin`, or given with `--url` and `--secret`), print a
//! table on stderr and one JSON line per run on stdout; or merge shard
//! outputs and summarize repeated runs.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use huddle_bench::server::{fresh_secret, Server, ServerOptions};
use huddle_bench::{report, Placement, Report, RunOptions, Scenario, Shard, Target};

#[derive(Parser)]
#[command(name = "huddle-bench", about = "Load harness for Huddle (see bench/README.md)")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
    #[command(flatten)]
    global: Global,
}

#[derive(Args)]
struct Global {
    /// Start this `huddle` binary for the run (fresh database in /tmp).
    #[arg(long, global = true, conflicts_with = "url")]
    server_bin: Option<PathBuf>,
    /// Pin the started server with `taskset -c LIST` (e.g. 0).
    #[arg(long, global = true)]
    server_cpus: Option<String>,
    /// HUDDLE_SQLITE_SYNCHRONOUS for the started server: full or normal.
    #[arg(long, global = true, default_value = "full")]
    sync: String,
    /// HUDDLE_WORKERS for the started server.
    #[arg(long, global = true)]
    server_workers: Option<usize>,
    /// Extra KEY=VALUE environment for the started server (repeatable).
    #[arg(long = "server-env", global = true)]
    server_env: Vec<String>,
    /// Start this many nodes of a cluster (with --server-bin). They need
    /// --server-env DATABASE_URL=postgres://... and
    /// --server-env HUDDLE_REDIS_URL=redis://...
    #[arg(long, global = true, default_value_t = 1)]
    nodes: usize,
    /// A running server instead: ws://HOST:PORT/ws; repeat it for the
    /// nodes of a cluster.
    #[arg(long, global = true)]
    url: Vec<String>,
    /// Where connections go when there are several nodes.
    #[arg(long, global = true, value_enum, default_value = "round-robin")]
    placement: Placement,
    /// The running server's HUDDLE_JWT_SECRET.
    #[arg(long, global = true, env = "HUDDLE_JWT_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// The running server's pid, for CPU and RSS figures (repeat it for
    /// the nodes of a cluster: summed).
    #[arg(long, global = true)]
    server_pid: Vec<u32>,
    /// Runs of the scenario, one report each.
    #[arg(long, global = true, default_value_t = 1)]
    repeat: usize,
    /// This process's part: i/n (connections, rooms or documents i mod n).
    #[arg(long, global = true)]
    shard: Option<String>,
    /// Name prefix for users, chats and documents; shards of one run need
    /// the same one. Default: derived from the clock.
    #[arg(long, global = true)]
    run_id: Option<String>,
    /// Free text stored in the report (e.g. sync=full).
    #[arg(long, global = true, default_value = "")]
    label: String,
    /// Fail a run when nothing arrives for this many seconds.
    #[arg(long, global = true, default_value_t = 15)]
    stall_s: u64,
    /// Connections opened at once.
    #[arg(long, global = true, default_value_t = 64)]
    connect_concurrency: usize,
    /// Also append each JSON line to this file.
    #[arg(long, global = true)]
    out: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Cmd {
    /// One chat: S subscribers, P publishers sending M messages each.
    Fanout {
        #[arg(short = 'S', long, default_value_t = 1000)]
        subscribers: usize,
        #[arg(short = 'P', long, default_value_t = 1)]
        publishers: usize,
        #[arg(short = 'M', long, default_value_t = 2000)]
        messages: u64,
        #[arg(short = 'W', long, default_value_t = 16)]
        window: u32,
        /// Messages per second over all publishers (latency runs).
        #[arg(long)]
        rate: Option<f64>,
    },
    /// R chats of K subscribers and one publisher each.
    Rooms {
        #[arg(short = 'R', long, default_value_t = 100)]
        rooms: usize,
        #[arg(short = 'K', long, default_value_t = 10)]
        members: usize,
        #[arg(short = 'M', long, default_value_t = 200)]
        messages: u64,
        #[arg(short = 'W', long, default_value_t = 16)]
        window: u32,
        #[arg(long)]
        rate: Option<f64>,
    },
    /// D documents with E editors, M accepted updates per editor (or, with
    /// --ops, M operations per editor).
    Docs {
        #[arg(short = 'D', long, default_value_t = 10)]
        docs: usize,
        #[arg(short = 'E', long, default_value_t = 4)]
        editors: usize,
        #[arg(short = 'M', long, default_value_t = 100)]
        updates: u64,
        /// Send small text operations (documents:op) instead of whole
        /// contents: each editor replaces its own 20-character slot.
        #[arg(long)]
        ops: bool,
        /// With --ops: bytes of text after the editors' slots, which no
        /// operation touches (what a commit costs on a large document).
        #[arg(long, default_value_t = 0, requires = "ops")]
        filler: usize,
    },
    /// C idle connections, each joined to a chat.
    Conns {
        #[arg(short = 'C', long, default_value_t = 10_000)]
        connections: usize,
        #[arg(long, default_value_t = 10)]
        room_size: usize,
        /// Keep the connections open this long after setup.
        #[arg(long, default_value_t = 0.0)]
        hold_s: f64,
    },
    /// Subscribers drop and recover with since_seq while messages flow.
    Recovery {
        #[arg(short = 'S', long, default_value_t = 100)]
        subscribers: usize,
        #[arg(short = 'M', long, default_value_t = 2000)]
        messages: u64,
        #[arg(short = 'W', long, default_value_t = 16)]
        window: u32,
        #[arg(long, default_value_t = 2)]
        drops: u32,
    },
    /// Connect, join, leave, close, as fast as the server takes it.
    Churn {
        #[arg(long, default_value_t = 50)]
        clients: usize,
        #[arg(long, default_value_t = 10.0)]
        duration_s: f64,
        #[arg(long)]
        max_cycles: Option<u64>,
    },
    /// The harness alone, against a built-in fake server: its ceiling.
    Ceiling {
        #[arg(short = 'S', long, default_value_t = 100)]
        subscribers: usize,
        #[arg(short = 'M', long, default_value_t = 20_000)]
        messages: u64,
        /// Pin the fake server thread to this core.
        #[arg(long)]
        fake_cpu: Option<usize>,
    },
    /// Merge shard outputs (JSON lines) into one report per run.
    Merge { files: Vec<PathBuf> },
    /// Median and spread of repeated runs (JSON lines).
    Summary { files: Vec<PathBuf> },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("huddle-bench: {e}");
            ExitCode::from(2)
        }
    }
}

/// Ok(false): every run completed but at least one failed its checks.
fn run(cli: Cli) -> Result<bool, String> {
    let g = cli.global;
    let mut fake_cpu = None;
    let scenario = match cli.command {
        Cmd::Merge { files } => {
            let merged = report::merge(read_reports(&files)?);
            for r in &merged {
                eprint!("{}", r.table());
                emit(r, g.out.as_ref())?;
            }
            return Ok(merged.iter().all(|r| r.ok));
        }
        Cmd::Summary { files } => {
            print!("{}", report::summary(&read_reports(&files)?));
            return Ok(true);
        }
        Cmd::Fanout { subscribers, publishers, messages, window, rate } => {
            Scenario::Fanout { subscribers, publishers, messages, window, rate }
        }
        Cmd::Rooms { rooms, members, messages, window, rate } => Scenario::Rooms { rooms, members, messages, window, rate },
        Cmd::Docs { docs, editors, updates, ops, filler } => Scenario::Docs { docs, editors, updates, ops, filler },
        Cmd::Conns { connections, room_size, hold_s } => {
            Scenario::Conns { connections, room_size, hold: secs(hold_s)? }
        }
        Cmd::Recovery { subscribers, messages, window, drops } => Scenario::Recovery { subscribers, messages, window, drops },
        Cmd::Churn { clients, duration_s, max_cycles } => Scenario::Churn { clients, duration: secs(duration_s)?, max_cycles },
        Cmd::Ceiling { subscribers, messages, fake_cpu: cpu } => {
            fake_cpu = cpu;
            Scenario::Ceiling { subscribers, messages }
        }
    };

    let mut servers = Vec::new();
    let target = match (&g.server_bin, g.url.is_empty()) {
        _ if matches!(scenario, Scenario::Ceiling { .. }) => Target::single("", "", None),
        (Some(bin), _) => {
            let env = g
                .server_env
                .iter()
                .map(|kv| kv.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
                .collect::<Option<Vec<_>>>()
                .ok_or("--server-env takes KEY=VALUE")?;
            if g.nodes > 1 && !env.iter().any(|(k, _)| k == "HUDDLE_REDIS_URL") {
                return Err("--nodes above 1 starts a cluster: give --server-env HUDDLE_REDIS_URL=redis://... and \
                            --server-env DATABASE_URL=postgres://... (a database the nodes share)"
                    .into());
            }
            let secret = fresh_secret();
            for node in 0..g.nodes.max(1) {
                let s = Server::spawn(&ServerOptions {
                    bin: bin.clone(),
                    cpus: g.server_cpus.clone(),
                    sync: g.sync.clone(),
                    workers: g.server_workers,
                    env: env.clone(),
                    secret: secret.clone(),
                    node_id: (g.nodes > 1).then(|| format!("bench-{node}")),
                })?;
                eprintln!("server: pid {} at {} (log {})", s.pid, s.url, s.log.display());
                servers.push(s);
            }
            Target {
                urls: servers.iter().map(|s| s.url.clone()).collect(),
                secret,
                server_pids: servers.iter().map(|s| s.pid).collect(),
                placement: g.placement,
            }
        }
        (None, false) => Target {
            urls: g.url.clone(),
            secret: g.secret.clone().ok_or("--url needs --secret (or HUDDLE_JWT_SECRET)")?,
            server_pids: g.server_pid.clone(),
            placement: g.placement,
        },
        (None, true) => return Err("give --server-bin PATH or --url ws://HOST:PORT/ws".into()),
    };

    let base_id = g.run_id.clone().unwrap_or_else(|| format!("b{:x}", huddle_bench::stats::now_ns() / 1_000_000));
    let shard = g.shard.as_deref().map(Shard::parse).transpose()?.unwrap_or(Shard::WHOLE);
    let server_desc = g.server_bin.as_ref().map(|b| {
        let nodes = if g.nodes > 1 { format!(" nodes={} placement={:?}", g.nodes, g.placement) } else { String::new() };
        format!("{} sync={} cpus={}{nodes}", b.display(), g.sync, g.server_cpus.as_deref().unwrap_or("any"))
    });
    let system = actix::System::new();
    let mut all_ok = true;
    for i in 0..g.repeat.max(1) {
        let run_id = if g.repeat > 1 { format!("{base_id}-{i}") } else { base_id.clone() };
        let options = RunOptions {
            run_id,
            label: g.label.clone(),
            shard,
            stall: Duration::from_secs(g.stall_s.max(1)),
            connect_concurrency: g.connect_concurrency,
            fake_cpu,
        };
        let mut r: Report = system.block_on(huddle_bench::run(&scenario, &target, &options));
        r.server = server_desc.clone();
        eprint!("{}", r.table());
        emit(&r, g.out.as_ref())?;
        all_ok &= r.ok;
    }
    for mut s in servers {
        let problems = s.stop()?;
        if !problems.is_empty() {
            let n = problems.lines().count();
            let head: Vec<&str> = problems.lines().take(10).collect();
            eprintln!("server log ({}): {n} lines worth a look:\n{}", s.log.display(), head.join("\n"));
        } else if all_ok {
            let _ = std::fs::remove_dir_all(&s.dir);
        }
    }
    Ok(all_ok)
}

fn secs(s: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(s).map_err(|e| format!("bad duration {s}: {e}"))
}

fn emit(r: &Report, out: Option<&PathBuf>) -> Result<(), String> {
    let line = r.json_line();
    println!("{line}");
    if let Some(path) = out {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        writeln!(f, "{line}").map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

fn read_reports(files: &[PathBuf]) -> Result<Vec<Report>, String> {
    let mut out = Vec::new();
    for path in files {
        let f = std::fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        for (n, line) in std::io::BufReader::new(f).lines().enumerate() {
            let line = line.map_err(|e| format!("{}: {e}", path.display()))?;
            if line.trim().is_empty() {
                continue;
            }
            let r: Report =
                serde_json::from_str(&line).map_err(|e| format!("{}:{}: not a report: {e}", path.display(), n + 1))?;
            out.push(r);
        }
    }
    Ok(out)
}
