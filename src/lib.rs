//! clusterchat: a clustered chat server, wire-compatible with the muduo C++ chat server.
#![warn(missing_docs)]

pub mod bus;
pub mod protocol;
pub mod store;
