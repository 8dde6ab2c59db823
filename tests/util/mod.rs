//! Shared helpers for the integration tests: servers on free ports, clients with timeouts.
#![allow(dead_code)]

pub mod server;
