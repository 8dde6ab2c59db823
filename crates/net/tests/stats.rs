//! `ServerHandle::stats`: connections admitted, refused and open, and the output waiting in
//! the loops, as the server's metrics read them.

mod common;

use clusterchat_net::{Bytes, NetStats, ServerHandle, ServerOptions};
use common::{start_with, Client, WAIT};
use std::io::Read;
use std::time::Instant;

/// Waits until `check` holds for the server's stats (they change on the server's threads
/// after the client's call returns), then returns them; they fail `check` only after `WAIT`.
fn stats_when(server: &ServerHandle<()>, check: impl Fn(&NetStats) -> bool) -> NetStats {
    let deadline = Instant::now() + WAIT;
    loop {
        let s = server.stats();
        if check(&s) || Instant::now() >= deadline {
            return s;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn admitted_refused_and_open_connections_are_counted() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let options = ServerOptions {
        max_connections: Some(1),
        ..ServerOptions::default()
    };
    let (server, _recorder, calls) = start_with(listener, true, options);
    assert_eq!(server.stats(), NetStats::default());
    let mut first = Client::connect(addr);
    first.write(b"ping\n");
    assert_eq!(first.line(), "ping");
    let _ = calls.next_conn();
    let mut second = Client::connect(addr);
    assert!(second.rest().is_empty(), "closed at once");
    let s = stats_when(&server, |s| s.refused_full == 1);
    assert_eq!((s.accepted, s.refused_full, s.open), (1, 1, 1));
    assert_eq!((s.refused_address, s.refused_no_descriptor), (0, 0));
    drop(first);
    let s = stats_when(&server, |s| s.open == 0);
    assert_eq!((s.accepted, s.open), (1, 0), "closed: no longer open");
    server.stop();
}

#[test]
fn output_waiting_for_a_slow_reader_is_counted_until_it_is_written() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let options = ServerOptions {
        max_output: 64 << 20,
        ..ServerOptions::default()
    };
    let (server, _recorder, calls) = start_with(listener, false, options);
    let mut reader = Client::connect(addr);
    let conn = calls.next_conn();
    // 16 MiB to a peer that reads nothing yet: more than the socket buffers hold.
    let frame = Bytes::from(vec![b'x'; 1 << 20]);
    for _ in 0..16 {
        conn.send(frame.clone());
    }
    let total = 16 * ((1 << 20) + 1);
    let s = stats_when(&server, |s| s.output_bytes > 0);
    assert!(s.output_bytes > 0, "output waits in the loop");
    assert!(
        s.output_bytes <= total as u64,
        "{} > {total}",
        s.output_bytes
    );
    // Read all of it: nothing waits any more.
    let mut buf = vec![0u8; 1 << 20];
    let mut got = 0;
    while got < total {
        got += reader.reader.get_mut().read(&mut buf).expect("read");
    }
    let s = stats_when(&server, |s| s.output_bytes == 0);
    assert_eq!(s.output_bytes, 0);
    server.stop();
}
