//! Shared helpers for the integration tests: servers on free ports, clients with timeouts,
//! private MySQL databases, nginx in front of a cluster.
#![allow(dead_code)]

pub mod cluster;
pub mod mysql_db;
pub mod nginx;
pub mod server;
