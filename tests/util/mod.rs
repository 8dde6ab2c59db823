//! Shared helpers for the integration tests: servers on free ports, clients with timeouts,
//! private MySQL databases, nginx in front of a cluster, private Redis and MariaDB instances
//! for fault injection and the helpers the fault tests share.
#![allow(dead_code)]

pub mod cluster;
pub mod faults;
pub mod mysql_db;
pub mod nginx;
pub mod peer;
pub mod private_mysql;
pub mod private_redis;
pub mod private_service;
pub mod server;
