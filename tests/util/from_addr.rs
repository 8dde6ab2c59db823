//! Clients that connect from another loopback address than 127.0.0.1, for the limits that
//! count per source address (all of 127.0.0.0/8 is loopback on Linux).

use clusterchat_proto::client::Client;
use std::net::{SocketAddr, TcpStream};

/// A TCP connection to `server` whose source address is `source` (e.g. `"127.0.0.2"`).
pub fn stream_from(source: &str, server: SocketAddr) -> TcpStream {
    super::limits::connect_from(server, source)
}

/// A protocol client to `server` from `source`.
pub fn client_from(source: &str, server: SocketAddr) -> Client {
    Client::from_stream(stream_from(source, server)).expect("client")
}
