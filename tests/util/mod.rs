//! Shared helpers for the integration tests: servers on free ports, clients with timeouts,
//! private MySQL databases.
#![allow(dead_code)]

pub mod cluster;
pub mod mysql_db;
pub mod server;
