//! TCP keepalive on accepted connections (`ServerOptions::keepalive`): the kernel runs a
//! keepalive timer on the server's socket when it is on, and none when it is off. The timer is
//! read from /proc/net/tcp (its `tr` column: 2 is the keepalive timer), where the server side
//! of a connection is the line whose local port is the server's and remote port the client's.

mod common;

use clusterchat_net::ServerOptions;
use common::{start_with, Client};
use std::net::SocketAddr;
use std::time::Duration;

/// The `tr` (timer) field of the kernel's line for the socket `local` → `remote`.
fn timer(local: SocketAddr, remote: SocketAddr) -> Option<u32> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let want = (
        format!(":{:04X}", local.port()),
        format!(":{:04X}", remote.port()),
    );
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let matches = f.get(1)?.ends_with(&want.0) && f.get(2)?.ends_with(&want.1);
        // f[5] is "tr:tm->when", e.g. "02:00001234".
        matches.then(|| u32::from_str_radix(f[5].split(':').next()?, 16).ok())?
    })
}

fn server_timer(keepalive: Option<Duration>) -> Option<u32> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let options = ServerOptions {
        io_threads: 1,
        max_output: 1 << 20,
        keepalive,
        ..ServerOptions::default()
    };
    let (server, _recorder, calls) = start_with(listener, true, options);
    let client = Client::connect(server.local_addr());
    let conn = calls.next_conn(); // accepted (and configured) by now
    let t = timer(server.local_addr(), client.stream().local_addr().unwrap());
    drop(conn);
    server.stop();
    t
}

#[test]
fn accepted_connections_get_a_keepalive_timer_only_when_asked() {
    assert_eq!(
        server_timer(Some(Duration::from_secs(30))),
        Some(2),
        "keepalive timer"
    );
    assert_eq!(server_timer(None), Some(0), "no timer without keepalive");
}
