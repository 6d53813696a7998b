//! The same engine on PostgreSQL: the schema and queries are portable, and
//! the database (not one process's memory) serializes versions and seqs.
//!
//! Needs a PostgreSQL server: `HUDDLE_TEST_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`) must reach it with the
//! right to create databases. Each test creates its own database and drops
//! it. Set `HUDDLE_TEST_POSTGRES=skip` to skip on a machine without one.

mod common;

use common::{jwt, TestServer};
use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};
use serde_json::json;

struct TempDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl TempDatabase {
    fn create() -> Option<TempDatabase> {
        let admin_url = std::env::var("HUDDLE_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        if admin_url == "skip" {
            eprintln!("HUDDLE_TEST_POSTGRES=skip: not testing PostgreSQL");
            return None;
        }
        let mut admin = PgConnection::establish(&admin_url)
            .unwrap_or_else(|e| panic!("PostgreSQL at {admin_url} is needed for this test (or HUDDLE_TEST_POSTGRES=skip): {e}"));
        let name = format!("huddle_test_{}", uuid::Uuid::new_v4().simple());
        admin.batch_execute(&format!("CREATE DATABASE {name}")).expect("create database");
        let base = admin_url.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin_url);
        let url = format!("{base}/{name}");
        Some(TempDatabase { admin_url, name, url })
    }
}

impl Drop for TempDatabase {
    fn drop(&mut self) {
        if let Ok(mut admin) = PgConnection::establish(&self.admin_url) {
            let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        }
    }
}

fn start(db: &TempDatabase) -> TestServer {
    let url = db.url.clone();
    TestServer::start_on(std::path::Path::new("unused"), move |o| o.database_url = url, jwt())
}

#[tokio::test]
async fn documents_and_chats_work_on_postgres_and_survive_a_restart() {
    let Some(db) = TempDatabase::create() else { return };
    let server = start(&db);
    let mut alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    alice.ok("chat:create", json!({"chat_id": "pg", "private": true, "members": ["bob"]})).await;
    alice.ok("chat:join", json!({"chat_id": "pg"})).await;
    bob.ok("chat:join", json!({"chat_id": "pg"})).await;
    let mut refs = Vec::new();
    for i in 0..30 {
        refs.push(alice.send_request("chat:message", json!({"chat_id": "pg", "content": format!("a{i}")})).await);
        refs.push(bob.send_request("chat:message", json!({"chat_id": "pg", "content": format!("b{i}"), "client_msg_id": format!("b{i}")})).await);
    }
    let mut seen = Vec::new();
    while seen.len() < 60 {
        seen.push(bob.expect_push("chat:message", "chat:pg").await["message"]["seq"].as_i64().unwrap());
    }
    assert_eq!(seen, (1..=60).collect::<Vec<_>>());
    let retry = bob.ok("chat:message", json!({"chat_id": "pg", "content": "b0", "client_msg_id": "b0"})).await;
    assert!(retry["message"]["seq"].as_i64().unwrap() <= 60);
    let mut carol = server.client("carol").await;
    carol.fails("chat:history", json!({"chat_id": "pg"}), "PERMISSION_DENIED").await;

    alice.ok("documents:create", json!({"document_id": "d"})).await;
    alice.ok("documents:share", json!({"document_id": "d", "user_id": "bob", "role": "editor"})).await;
    for v in 1..=10 {
        let a = alice.send_request("documents:update", json!({"document_id": "d", "content": "a", "version": v})).await;
        let b = bob.send_request("documents:update", json!({"document_id": "d", "content": "b", "version": v})).await;
        let wins = [alice.response(a).await.is_ok(), bob.response(b).await.is_ok()];
        assert_eq!(wins.iter().filter(|w| **w).count(), 1, "version {v}");
    }
    alice.fails("documents:create", json!({"document_id": "d"}), "ALREADY_EXISTS").await;
    server.stop().await;

    let server = start(&db);
    let mut bob = server.client("bob").await;
    let joined = bob.ok("chat:join", json!({"chat_id": "pg", "since_seq": 55})).await;
    assert_eq!(joined["last_seq"], 60);
    assert_eq!(joined["messages"].as_array().unwrap().len(), 5);
    let page = bob.ok("chat:history", json!({"chat_id": "pg", "limit": 100})).await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 60);
    let doc = bob.ok("documents:join", json!({"document_id": "d"})).await;
    assert_eq!(doc["document"]["version"], 10);
    server.stop().await;
}

#[tokio::test]
async fn a_lost_database_is_server_busy_not_a_crash() {
    let Some(db) = TempDatabase::create() else { return };
    let server = start(&db);
    let mut c = server.client("alice").await;
    c.ok("chat:join", json!({"chat_id": "gone"})).await;
    // The database disappears under the running server.
    let mut admin = PgConnection::establish(&db.admin_url).unwrap();
    admin.batch_execute(&format!("DROP DATABASE {} WITH (FORCE)", db.name)).unwrap();

    let e = c.fails("chat:message", json!({"chat_id": "gone", "content": "anyone?"}), "SERVER_BUSY").await;
    assert!(e["message"].as_str().unwrap().contains("retry"));
    let ready = common::http::Http::new(server.http_url("")).call("GET", "/ready", None, None).await;
    assert_eq!((ready.status, ready.body["code"].clone()), (503, json!("SERVER_BUSY")));
    // The connection itself is fine.
    c.ok("ping", json!({})).await;
    server.stop().await;
}
