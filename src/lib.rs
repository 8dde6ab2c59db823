//! clusterchat: a clustered chat server, wire-compatible with the muduo C++ chat server.
//!
//! # Map of the workspace
//! | crate | what | depends on |
//! | --- | --- | --- |
//! | `clusterchat-net` (`crates/net`) | the reactor: EventLoop, TcpServer, TcpConnection, Buffer | mio |
//! | `clusterchat-proto` (`crates/proto`) | codec, msgids, errnos, typed messages, blocking client | serde |
//! | `clusterchat` (this crate) | the server and `chatserver` | the two above, drivers |
//! | `chatclient` (`crates/chatclient`) | the terminal client | proto, rustyline |
//! | `chatbench` (`crates/chatbench`) | the load generator | proto, mio, hdrhistogram |
//!
//! # Map of this crate
//! | module | what | depends on |
//! | --- | --- | --- |
//! | [`service`] | the chat logic, one file per capability | `Store`, `Bus` traits |
//! | [`store`] | `Store` trait; SQLite and MySQL backends | their drivers |
//! | [`bus`] | `Bus` trait; in-process and Redis backends | redis |
//! | [`server`] | wires them together; start-up and shutdown | all of the above |
//! | `http` | the HTTP + WebSocket front (`--http`): web client, `/ws`, `/api/cluster` | httparse, tungstenite |
//! | [`worker_pool`] | keyed worker threads for blocking work | crossbeam |
//! | [`metrics`] | Prometheus metrics of one server (`/metrics`) | prometheus-client |
//! | [`config`], [`os`] | flags and environment; process limits | clap, libc |
//!
//! # Threads (muduo's model, no async runtime)
//! * one acceptor thread hands new connections round-robin to N **IO loops** (one `mio::Poll`
//!   each). A loop reads, cuts frames and handles the hot path itself: a chat to a user online
//!   on this server is queued to the receiver's loop without any other thread.
//! * everything that may block (database, Redis, password hashing) runs on the **worker
//!   pool**; a connection's requests always go to the same worker, so they complete in order.
//! * chats are stored by the **log writer** before anyone hears of them (group commit); on
//!   SQLite the loop that read a batch of 1:1 chats commits it itself when that needs no
//!   waiting (`Store::try_append`), else the log writer thread does.
//! * `TcpConnection::send` is thread safe: it queues bytes to the owning loop and wakes it;
//!   each loop writes every connection once per iteration, so writes coalesce under load.
//! * in a cluster, a **publisher** thread routes batches through Redis (one PUBLISH per
//!   destination server, found in a presence directory; the next batch goes out while the
//!   last one's answers are on their way) and a **subscriber** thread receives
//!   what is routed to this server and fans it out to its users; a **housekeeper** retries
//!   what failed during outages and releases the sessions of dead servers.
#![warn(missing_docs)]

pub mod bus;
pub mod config;
pub(crate) mod http;
pub mod metrics;
pub mod os;
pub mod server;
pub(crate) mod service;
pub mod store;
mod sync;
pub(crate) mod worker_pool;
