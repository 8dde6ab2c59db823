//! Admission limits (`ServerOptions::max_connections`, `max_unauthenticated_per_ip`,
//! `auth_timeout`): over a limit a new connection is accepted and closed at once; an
//! authenticated connection is never counted per address nor closed by the timeout.

mod common;

use clusterchat_net::ServerOptions;
use common::{start_with, Client, WAIT};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

/// A client bound to `source` (any 127.x.y.z address is loopback on Linux).
fn connect_from(addr: SocketAddr, source: &str) -> Client {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let source: IpAddr = source.parse().unwrap();
    socket
        .bind(&SocketAddr::new(source, 0).into())
        .expect("bind the source address");
    socket.connect(&addr.into()).expect("connect");
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    Client {
        reader: std::io::BufReader::new(stream),
    }
}

/// Whether the server closed the connection at once: it sends nothing and ends it (a read
/// sees end of file or a reset, not a timeout).
fn refused(mut c: Client) -> bool {
    c.rest().is_empty()
}

/// An echo round trip: the connection is open and served.
fn served(c: &mut Client) -> bool {
    c.write(b"ping\n");
    c.line() == "ping"
}

#[test]
fn unauthenticated_connections_are_limited_per_address() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let options = ServerOptions {
        max_unauthenticated_per_ip: Some(2),
        ..ServerOptions::default()
    };
    let (server, _recorder, calls) = start_with(listener, true, options);
    let addr = server.local_addr();
    let mut first = connect_from(addr, "127.0.0.1");
    let first_conn = calls.next_conn();
    let mut second = connect_from(addr, "127.0.0.1");
    assert!(served(&mut first) && served(&mut second));
    assert!(
        refused(connect_from(addr, "127.0.0.1")),
        "a third is closed"
    );
    let mut other = connect_from(addr, "127.0.0.2");
    assert!(served(&mut other), "another address has its own count");
    // Authenticated, the first no longer counts: room for one more.
    first_conn.set_authenticated(true);
    let mut third = connect_from(addr, "127.0.0.1");
    assert!(served(&mut third));
    assert!(refused(connect_from(addr, "127.0.0.1")));
    assert!(
        served(&mut first),
        "an authenticated connection is never closed for it"
    );
    // Closing one frees its place.
    drop(second);
    calls.closes.recv_timeout(WAIT).expect("on_close");
    let mut fourth = connect_from(addr, "127.0.0.1");
    assert!(served(&mut fourth));
    server.stop();
}

#[test]
fn connections_over_the_total_are_closed_at_once() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let options = ServerOptions {
        max_connections: Some(2),
        ..ServerOptions::default()
    };
    let (server, _recorder, calls) = start_with(listener, true, options);
    let addr = server.local_addr();
    let mut a = Client::connect(addr);
    calls.next_conn().set_authenticated(true);
    let mut b = Client::connect(addr);
    assert!(served(&mut a) && served(&mut b));
    assert!(
        refused(Client::connect(addr)),
        "authenticated or not, all count"
    );
    assert!(refused(connect_from(addr, "127.0.0.3")));
    drop(b);
    calls.closes.recv_timeout(WAIT).expect("on_close");
    let mut c = Client::connect(addr);
    assert!(served(&mut c) && served(&mut a));
    server.stop();
}

#[test]
fn connections_that_stay_unauthenticated_are_closed_after_the_timeout() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let options = ServerOptions {
        auth_timeout: Some(Duration::from_millis(300)),
        ..ServerOptions::default()
    };
    let (server, _recorder, calls) = start_with(listener, true, options);
    let addr = server.local_addr();
    let mut authed = Client::connect(addr);
    calls.next_conn().set_authenticated(true);
    let mut busy = Client::connect(addr); // talks, but never authenticates
    calls.next_conn();
    let mut out_again = Client::connect(addr); // authenticates, then goes back
    let out_conn = calls.next_conn();
    out_conn.set_authenticated(true);
    assert!(served(&mut busy));
    busy.write(b"still here\n");
    assert_eq!(busy.line(), "still here");
    assert_eq!(busy.line(), "timeout", "the handler's last word");
    assert!(
        busy.rest().is_empty(),
        "closed by the timeout, not timed out"
    );
    // The authenticated ones outlived it (and its timer, started when they were registered).
    assert!(served(&mut authed) && served(&mut out_again));
    out_conn.set_authenticated(false);
    assert_eq!(out_again.line(), "timeout", "its timer started again");
    assert!(out_again.rest().is_empty());
    assert!(served(&mut authed));
    server.stop();
}
