//! Shared helpers for the integration tests: servers on free ports, clients with timeouts,
//! private MySQL databases, nginx in front of a cluster, private Redis and MariaDB instances
//! for fault injection and the helpers the fault tests share; for the message log, its
//! requests as raw JSON, frames with their sizes, a receiver with a small receive buffer and a
//! receiver that moves while a stream goes on; stored messages made old; connections from a
//! chosen address and the server's memory and CPU time, for the limits.
#![allow(dead_code)]

pub mod age_log;
pub mod chatlog;
pub mod cluster;
pub mod faults;
pub mod from_addr;
pub mod limits;
pub mod moving_receiver;
pub mod mysql_db;
pub mod nginx;
pub mod peer;
pub mod piped_chatclient;
pub mod private_mysql;
pub mod private_redis;
pub mod private_service;
pub mod raw_conn;
pub mod server;
pub mod small_rcvbuf;
pub mod tls;
pub mod ws;
