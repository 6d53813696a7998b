//! Test support: a real Huddle server on an ephemeral port over a SQLite
//! file in a temporary directory, tokens, and a WebSocket client whose
//! helpers wait for one event at a time with a timeout (never a sleep).

#![allow(dead_code)]

pub mod client;
pub mod cluster;
pub mod editing;
pub mod gate;
pub mod http;
pub mod postgres;
pub mod process;
pub mod proxy;
pub mod raw;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

use huddle::auth::{JwtAlgorithm, JwtConfig};
use huddle::config::Options;
use huddle::engine::Control;
use serde_json::{json, Value};

pub use client::Client;

pub const SECRET: &str = "test-secret-not-for-production";

/// A running server; stopped when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    pub db_path: PathBuf,
    control: Control,
    thread: Option<JoinHandle<()>>,
    _dir: Option<tempfile::TempDir>,
}

pub fn jwt() -> JwtConfig {
    JwtConfig {
        algorithm: JwtAlgorithm::Hs256,
        secret: Some(SECRET.into()),
        public_key_pem: None,
        issuer: None,
        audience: None,
        leeway_s: 5,
    }
}

impl TestServer {
    pub fn start() -> TestServer {
        Self::start_with(|_| {})
    }

    /// Starts with options adjusted by `tune`.
    pub fn start_with(tune: impl FnOnce(&mut Options)) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let db_path = dir.path().join("huddle.db");
        let mut server = Self::start_on(&db_path, tune, jwt());
        server._dir = Some(dir);
        server
    }

    /// Starts on an existing database file (restart tests).
    pub fn start_on(db_path: &Path, tune: impl FnOnce(&mut Options), jwt: JwtConfig) -> TestServer {
        let mut options = Options::defaults();
        options.database_url = db_path.display().to_string();
        options.workers = 2;
        options.db_threads = 2;
        options.drain_timeout_ms = 2000;
        tune(&mut options);
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
        let (addr, control) = rx.recv().expect("server thread").expect("server start");
        TestServer { addr, db_path: db_path.to_owned(), control, thread: Some(thread), _dir: None }
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Stops the server at once and waits for its thread.
    pub async fn stop(mut self) -> Option<tempfile::TempDir> {
        self.control.stop_now().await;
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        self._dir.take()
    }

    /// Graceful shutdown, as on SIGTERM.
    pub async fn shutdown(&self) {
        self.control.shutdown().await;
    }

    /// A client authenticated as `user` (first-frame auth).
    pub async fn client(&self, user: &str) -> Client {
        Client::authenticated(&self.ws_url(), &token(user)).await
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let control = self.control.clone();
            // Best effort for tests that panicked before stop().
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build();
                if let Ok(rt) = rt {
                    rt.block_on(control.stop_now());
                }
            });
        }
    }
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A valid token for `sub`, one hour long.
pub fn token(sub: &str) -> String {
    sign(&json!({ "sub": sub, "exp": now() + 3600, "name": format!("{sub} (name)") }))
}

/// Signs arbitrary claims with the test secret (HS256).
pub fn sign(claims: &Value) -> String {
    sign_with(claims, SECRET)
}

pub fn sign_with(claims: &Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign")
}
