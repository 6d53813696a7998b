//! Starting the engine on a listener, and stopping it well: on SIGTERM or
//! SIGINT the server stops accepting, tells every session to finish its
//! in-flight requests and close with 1001, waits up to the drain timeout,
//! and checkpoints the database before the process exits.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Addr};
use actix_http::HttpService;
use actix_server::ServerBuilder;
use actix_service::map_config;
use actix_web::dev::{fn_service, AppConfig, Server, ServerHandle};
use actix_web::{web, App};
use huddle_actors::cluster::Cluster;
use huddle_actors::registry::{Registry, RoomDeps, Shutdown};
use huddle_actors::session::SessionDeps;
use huddle_actors::store::Db;
use r2d2::Pool;

use crate::auth::{JwtConfig, JwtVerifier};
use crate::cluster::Link;
use crate::config::Options;
use crate::db::connection::{Manager, Target};
use crate::db::store::{SqlStore, Writers};
use crate::metrics::Metrics;
use crate::routes::{self, AppState};

/// A started engine.
pub struct Running {
    pub addr: SocketAddr,
    pub server: Server,
    pub control: Control,
}

/// What it takes to stop a running engine, from any thread.
#[derive(Clone)]
pub struct Control {
    handle: ServerHandle,
    registry: Addr<Registry>,
    pool: Pool<Manager>,
    drain: Duration,
}

/// Starts the engine and its HTTP server on `listener`. Must be called
/// inside an actix system; the returned server must be awaited.
pub fn start(listener: TcpListener, options: &Options, jwt: JwtConfig) -> Result<Running, String> {
    let cluster = options.cluster()?;
    let target = Target::parse(&options.database_url);
    let threads = options.db_threads.max(1) + options.db_read_threads.max(1);
    let pool = crate::db::open(&target, options.sqlite_synchronous, u32::try_from(threads + 2).unwrap_or(u32::MAX))?;
    let settings = Arc::new(options.settings());
    let metrics = Arc::new(Metrics::new().map_err(|e| format!("metrics: {e}"))?);
    let writers = Writers {
        messages: crate::db::writer(&target, options.sqlite_synchronous, &pool)?,
        documents: crate::db::writer(&target, options.sqlite_synchronous, &pool)?,
    };
    let db = Db::start(Arc::new(SqlStore::new(pool.clone(), writers)), options.db_threads, options.db_read_threads, metrics.clone());
    let link = cluster.map(|c| Link::start(&c, metrics.clone())).transpose()?;
    let rooms = RoomDeps {
        db: db.clone(),
        settings: settings.clone(),
        cluster: link.clone().map(|l| Arc::new(l) as Arc<dyn Cluster>),
    };
    let registry = Registry::new(rooms, options.room_threads).start();
    if let Some(link) = &link {
        link.attach(registry.clone());
    }
    let verifier = Arc::new(JwtVerifier::new(&jwt)?);
    let state = AppState {
        deps: SessionDeps {
            registry: registry.clone(),
            db,
            verifier,
            settings,
        },
        metrics,
        cluster: link,
        jwt: Arc::new(jwt),
        api_key: options.api_key.clone().map(Arc::from),
        metrics_token: options.metrics_token.clone().map(Arc::from),
        demo: options.demo.then(Default::default),
    };
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let drain = Duration::from_millis(options.drain_timeout_ms);
    let mut builder = ServerBuilder::new()
        // Signals are ours: sessions must be told to close before the HTTP
        // server waits for connections to end.
        .disable_signals()
        .shutdown_timeout(drain.as_secs().max(1));
    if options.workers > 0 {
        builder = builder.workers(options.workers);
    }
    // What actix-web's HttpServer builds, plus the upgrade hook: requests
    // for `Upgrade: websocket` reach `routes::ws::upgrade` with the raw
    // connection instead of the app.
    let shutting_down = builder.graceful_shutdown_signal();
    let server = builder
        .listen("huddle", listener, move || {
            let app_state = state.clone();
            let app = App::new()
                .wrap(routes::errors::json_errors())
                .app_data(web::Data::new(state.clone()))
                .configure(move |cfg| routes::configure(cfg, &app_state));
            let upgrade_state = state.clone();
            let signal = shutting_down.clone();
            HttpService::build()
                // Frames are small and latency-bound: never wait on
                // delayed ACKs.
                .tcp_nodelay(true)
                // HttpServer's defaults.
                .client_disconnect_timeout(Duration::from_secs(1))
                .local_addr(addr)
                // Idle keep-alive connections close when a graceful stop
                // begins, as under HttpServer.
                .graceful_shutdown_signal(move || {
                    let signal = signal.clone();
                    async move { signal.notified().await }
                })
                .upgrade(fn_service(move |(req, framed)| routes::ws::upgrade(req, framed, upgrade_state.clone())))
                // No route reads the configured host or address.
                .finish(map_config(app, |_| AppConfig::default()))
                .tcp()
        })
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?
        .run();
    log::info!("database: {target}");
    log::info!("listening on http://{addr}");
    let control = Control { handle: server.handle(), registry, pool, drain };
    Ok(Running { addr, server, control })
}

impl Control {
    /// Graceful stop: close sessions with 1001 after their in-flight work,
    /// stop the HTTP server, checkpoint the database.
    pub async fn shutdown(&self) {
        match self.registry.send(Shutdown).await {
            Ok(n) => log::info!("shutting down: closing {n} sessions"),
            Err(e) => log::warn!("shutting down: registry unreachable: {e}"),
        }
        let stopped = self.handle.stop(true);
        if tokio::time::timeout(self.drain, stopped).await.is_err() {
            log::warn!("drain timeout passed; stopping anyway");
        }
        self.checkpoint().await;
    }

    /// Stops at once (tests, restarts).
    pub async fn stop_now(&self) {
        self.handle.stop(false).await;
    }

    async fn checkpoint(&self) {
        let pool = self.pool.clone();
        let done = web::block(move || -> Result<(), String> {
            use diesel::connection::SimpleConnection;
            let mut c = pool.get().map_err(|e| e.to_string())?;
            if let crate::db::connection::AnyConnection::Sqlite(s) = &mut *c {
                s.batch_execute("PRAGMA wal_checkpoint(TRUNCATE);").map_err(|e| e.to_string())?;
            }
            Ok(())
        })
        .await;
        match done {
            Ok(Ok(())) => log::info!("database checkpointed"),
            Ok(Err(e)) => log::warn!("checkpoint failed: {e}"),
            Err(e) => log::warn!("checkpoint failed: {e}"),
        }
    }
}

impl Running {
    /// Serves until the server stops or SIGTERM / SIGINT arrives.
    pub async fn serve_until_signal(self) -> std::io::Result<()> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let control = self.control.clone();
        // The server future must keep being polled while it stops: it is
        // what carries out the stop command.
        let mut server = actix_web::rt::spawn(self.server);
        tokio::select! {
            result = &mut server => return result.unwrap_or_else(|e| Err(std::io::Error::other(e))),
            _ = term.recv() => log::info!("SIGTERM: draining"),
            _ = int.recv() => log::info!("SIGINT: draining"),
        }
        control.shutdown().await;
        let _ = server.await;
        log::info!("stopped");
        Ok(())
    }
}
