//! A throwaway PostgreSQL database per test. The server is found through
//! `HUDDLE_TEST_POSTGRES` (default `postgres://postgres@127.0.0.1:5432/postgres`),
//! whose user must be allowed to create databases; without one the test
//! is skipped, visibly (see `gate`).

use std::net::{SocketAddr, ToSocketAddrs};

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};

use crate::common::gate::Service;

pub const POSTGRES: Service = Service {
    name: "PostgreSQL",
    var: "HUDDLE_TEST_POSTGRES",
    default_url: "postgres://postgres@127.0.0.1:5432/postgres",
};

/// A database created for one test and dropped after it.
pub struct TempDatabase {
    pub admin_url: String,
    pub name: String,
    /// The database's own URL.
    pub url: String,
}

impl TempDatabase {
    /// A fresh database, or `None` (the test returns) when no server
    /// answers and skipping is allowed.
    pub fn create() -> Option<TempDatabase> {
        let (admin_url, mut admin) = POSTGRES.reach(|url| PgConnection::establish(url).map_err(|e| e.to_string()))?;
        let name = format!("huddle_test_{}", uuid::Uuid::new_v4().simple());
        admin.batch_execute(&format!("CREATE DATABASE {name}")).expect("create database");
        let url = replace_path(&admin_url, &name);
        Some(TempDatabase { admin_url, name, url })
    }

    /// The server's TCP address, from the URL (`host:port`, port 5432 by
    /// default).
    pub fn address(&self) -> SocketAddr {
        let (_, host_port) = split_authority(&self.url);
        let with_port = if host_port.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
            host_port.to_owned()
        } else {
            format!("{host_port}:5432")
        };
        with_port.to_socket_addrs().ok().and_then(|mut a| a.next()).unwrap_or_else(|| panic!("no TCP address in {}", self.url))
    }

    /// The database's URL with the server at `addr` instead (a proxy).
    pub fn url_via(&self, addr: SocketAddr) -> String {
        let (before, host_port) = split_authority(&self.url);
        format!("{before}{addr}{}", &self.url[before.len() + host_port.len()..])
    }
}

impl Drop for TempDatabase {
    fn drop(&mut self) {
        if let Ok(mut admin) = PgConnection::establish(&self.admin_url) {
            let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        }
    }
}

/// `url` with its path (the database name) replaced by `name`; the query
/// string, if any, stays.
fn replace_path(url: &str, name: &str) -> String {
    let (before, host_port) = split_authority(url);
    let rest = &url[before.len() + host_port.len()..];
    let query = rest.find('?').map(|i| &rest[i..]).unwrap_or("");
    format!("{before}{host_port}/{name}{query}")
}

/// `postgres://user@host:port/db?x` as (`postgres://user@`, `host:port`).
fn split_authority(url: &str) -> (&str, &str) {
    let start = url.find("://").map(|i| i + 3).unwrap_or(0);
    let start = url[start..].find('@').map(|i| start + i + 1).filter(|at| !url[start..*at].contains('/')).unwrap_or(start);
    let end = url[start..].find(['/', '?']).map(|i| start + i).unwrap_or(url.len());
    (&url[..start], &url[start..end])
}
