//! clusterchat: a clustered chat server, wire-compatible with the muduo C++ chat server.
#![warn(missing_docs)]

/// The load generator behind `chatbench`: scenarios, measuring loops and reports.
pub mod bench;
pub mod bus;
/// The interactive terminal client behind `chatclient`: command parsing, rendering of
/// server frames, and the line-editing loop with a background reader thread.
pub mod cli;
pub mod client;
pub mod codec;
pub mod config;
/// The reactor: event loops, connections, buffers (knows nothing of JSON).
pub mod net;
pub mod os;
pub mod protocol;
pub mod server;
pub mod service;
pub mod store;
pub mod worker_pool;
