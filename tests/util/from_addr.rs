//! Clients that connect from another loopback address than 127.0.0.1, for the limits that
//! count per source address (all of 127.0.0.0/8 is loopback on Linux).

use clusterchat_proto::client::Client;
use socket2::{Domain, Socket, Type};
use std::net::{SocketAddr, TcpStream};

/// A TCP connection to `server` whose source address is `source` (e.g. `"127.0.0.2"`).
pub fn stream_from(source: &str, server: SocketAddr) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    let local: SocketAddr = format!("{source}:0").parse().expect("a source address");
    socket.bind(&local.into()).expect("bind the source address");
    socket
        .connect(&server.into())
        .expect("connect to the test server");
    socket.into()
}

/// A protocol client to `server` from `source`.
pub fn client_from(source: &str, server: SocketAddr) -> Client {
    Client::from_stream(stream_from(source, server)).expect("client")
}
