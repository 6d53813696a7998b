//! The `huddle` command as a newcomer meets it: `serve` generates a secret
//! and says how to mint a token; `huddle token` in the same directory mints
//! one the server accepts, elsewhere it refuses to invent a secret and says
//! where it looked; `token --help` lists only what `token` uses; a refusal
//! is printed once.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::process::Process;
use common::Client;

const BIN: &str = env!("CARGO_BIN_EXE_huddle");

/// `huddle ARGS` in `dir`, with none of the settings a developer's shell or
/// cargo may have set.
fn huddle(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command.args(args).current_dir(dir);
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy().into_owned();
        if name.starts_with("HUDDLE_") || name.starts_with("CARGO") || name == "DATABASE_URL" {
            command.env_remove(name);
        }
    }
    command
}

fn run(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Output {
    huddle(dir, args).envs(envs.iter().copied()).output().expect("run huddle")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn a_token_minted_beside_the_server_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let mut serve = huddle(dir.path(), &["serve"]);
    serve.env("HUDDLE_BIND", "127.0.0.1:0").env("RUST_LOG", "info");
    let server = Process::launch(serve);
    assert!(dir.path().join("huddle.db.jwt-secret").exists());
    let hint = format!("mint a token with: {BIN} token --sub alice --name Alice");
    assert!(server.early_log.iter().any(|l| l.ends_with(&hint)), "{:#?}", server.early_log);

    let out = run(dir.path(), &["token", "--sub", "alice", "--name", "Alice"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let token = String::from_utf8(out.stdout).unwrap();
    let client = Client::authenticated(&server.ws_url(), token.trim()).await;
    assert_eq!((client.user_id(), client.connect["data"]["name"].as_str()), ("alice", Some("Alice")));
}

#[test]
fn elsewhere_token_refuses_to_create_a_secret_and_says_where_it_looked() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["token", "--sub", "alice"], &[]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let err = stderr(&out);
    let looked = dir.path().canonicalize().unwrap().join("huddle.db.jwt-secret");
    for needle in [looked.to_str().unwrap(), "--database-url", "DATABASE_URL", "--jwt-secret", "HUDDLE_JWT_SECRET"] {
        assert!(err.contains(needle), "{needle:?} missing from {err}");
    }
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "token created a file");

    // Pointed at the server's database, it finds the secret there.
    let server_dir = tempfile::tempdir().unwrap();
    std::fs::write(server_dir.path().join("h.db.jwt-secret"), "a-secret").unwrap();
    let db = server_dir.path().join("h.db");
    let out = run(dir.path(), &["token", "--sub", "alice", "--database-url", db.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(dir.path(), &["token", "--sub", "alice"], &[("HUDDLE_JWT_SECRET", "given")]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn token_help_lists_only_what_token_uses() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["token", "--help"], &[]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in ["--sub", "--name", "--ttl", "--database-url", "--jwt-secret", "--jwt-algorithm", "--jwt-issuer"] {
        assert!(help.contains(flag), "{flag} missing from\n{help}");
    }
    for flag in ["--bind", "--max-frame-bytes", "--demo", "--api-key", "--workers", "--jwt-public-key"] {
        assert!(!help.contains(flag), "{flag} listed in\n{help}");
    }
    // The server's options stay where they were.
    let out = run(dir.path(), &["serve", "--help"], &[]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("--max-frame-bytes"));
}

#[test]
fn a_refusal_is_printed_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["token", "--sub", "alice"], &[("HUDDLE_JWT_ALGORITHM", "RS256")]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.matches("HS256 tokens only").count(), 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}
