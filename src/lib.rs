//! # huddle: the engine's binary crate
//!
//! Wires the actor topology (`huddle-actors`) to the outside world:
//! - [`config`]: command line and settings;
//! - [`auth`]: JWT checking and minting; [`secret`]: the generated secret;
//! - [`db`]: diesel + r2d2 over SQLite or PostgreSQL, migrations, the SQL
//!   store;
//! - [`routes`]: HTTP and WebSocket endpoints; [`metrics`]: Prometheus;
//! - [`cluster`]: cluster mode's link to the other nodes, over Redis;
//! - [`transport`]: an upgraded WebSocket connection (framing, reading,
//!   writing) for one session;
//! - [`engine`]: starting everything on a listener, and graceful shutdown.

pub mod auth;
pub mod cluster;
pub mod config;
pub mod db;
pub mod engine;
pub mod metrics;
pub mod routes;
pub mod secret;
pub mod transport;

pub use engine::{start, Running};
