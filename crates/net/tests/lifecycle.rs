//! A connection's end: on_close once, undelivered frames handed back, the output high-water
//! mark, half-close after output drains, and the two-phase server stop.

mod common;

use clusterchat_net::Bytes;
use common::{start, Client, WAIT};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::Ordering;
use std::time::Duration;

#[test]
fn on_close_is_called_once_when_the_peer_closes() {
    let (server, recorder, calls) = start(true, 1, 1 << 20);
    let client = Client::connect(server.local_addr());
    let conn = calls.next_conn();
    client.write(b"hi\n");
    drop(client);
    assert_eq!(
        calls.closes.recv_timeout(WAIT).expect("on_close"),
        conn.id()
    );
    assert!(conn.is_closed());
    // Work for the dead connection must not close it again.
    conn.send(Bytes::from_static(b"late"));
    conn.shutdown();
    // A round trip on a second connection of the same loop: the tasks above have run.
    let mut fence = Client::connect(server.local_addr());
    fence.write(b"fence\n");
    assert_eq!(fence.line(), "fence");
    assert_eq!(recorder.closed.load(Ordering::SeqCst), 1);
    assert!(calls.closes.try_recv().is_err());
    server.stop();
}

#[test]
fn deliver_to_a_closed_connection_hands_the_frame_back_with_its_tag() {
    let (server, _recorder, calls) = start(false, 1, 1 << 20);
    drop(Client::connect(server.local_addr()));
    let conn = calls.next_conn();
    calls.closes.recv_timeout(WAIT).expect("on_close");
    conn.deliver(Bytes::from_static(b"for the store"), 42);
    let (id, frame, tag) = calls
        .undelivered
        .recv_timeout(WAIT)
        .expect("on_undelivered");
    assert_eq!(
        (id, &frame[..], tag),
        (conn.id(), &b"for the store"[..], 42)
    );
    // A plain send is dropped without a report: the next report is the next deliver's.
    conn.send(Bytes::from_static(b"dropped"));
    conn.deliver(Bytes::from_static(b"second"), 43);
    let (_, frame, tag) = calls
        .undelivered
        .recv_timeout(WAIT)
        .expect("on_undelivered");
    assert_eq!((&frame[..], tag), (&b"second"[..], 43));
    server.stop();
}

#[test]
fn a_client_that_never_reads_is_cut_at_the_high_water_mark() {
    const MAX_OUTPUT: usize = 64 << 10;
    const FRAME: usize = 16 << 10;
    // Far more than the kernel's socket buffers plus MAX_OUTPUT can hold.
    const GIVE_UP: usize = 256 << 20;
    let (server, _recorder, calls) = start(false, 1, MAX_OUTPUT);
    let client = Client::connect(server.local_addr()); // never reads
    let conn = calls.next_conn();
    let frame = Bytes::from(vec![b'x'; FRAME]);
    let mut queued = 0;
    let mut tag = 0;
    let closed = loop {
        assert!(
            queued < GIVE_UP,
            "{queued} bytes queued and the client was not cut off"
        );
        conn.deliver(frame.clone(), tag);
        queued += FRAME;
        tag += 1;
        if tag % 8 == 0 {
            // Lets the loop catch up, so the queue of tasks stays short (pacing, no assertion).
            if let Ok(id) = calls.closes.recv_timeout(Duration::from_millis(1)) {
                break id;
            }
        }
    };
    assert_eq!(closed, conn.id());
    assert!(conn.is_closed());
    // The frame that did not fit (and any after it) came back.
    let (id, frame, _) = calls
        .undelivered
        .recv_timeout(WAIT)
        .expect("on_undelivered");
    assert_eq!((id, frame.len()), (conn.id(), FRAME));
    drop(client);
    server.stop();
}

#[test]
fn shutdown_writes_what_was_queued_then_half_closes() {
    let (server, recorder, calls) = start(true, 1, 1 << 20);
    let mut client = Client::connect(server.local_addr());
    let conn = calls.next_conn();
    conn.send(Bytes::from_static(b"one"));
    conn.send(Bytes::from_static(b"two"));
    conn.shutdown();
    assert_eq!(client.line(), "one");
    assert_eq!(client.line(), "two");
    assert!(
        client.rest().is_empty(),
        "end of file after the queued output"
    );
    // Half-closed: the server still takes (and discards) what the client sends, then sees
    // the client's end of file and closes, once.
    client.write(b"ignored\n");
    client.stream().shutdown(Shutdown::Write).expect("shutdown");
    assert_eq!(
        calls.closes.recv_timeout(WAIT).expect("on_close"),
        conn.id()
    );
    assert_eq!(recorder.lines.load(Ordering::SeqCst), 0);
    server.stop();
}

#[test]
fn force_close_closes_at_once_without_waiting_for_the_peer() {
    let (server, recorder, calls) = start(true, 1, 1 << 20);
    let mut client = Client::connect(server.local_addr());
    let conn = calls.next_conn();
    conn.force_close();
    // The peer says nothing and never closes; the server closes anyway, once.
    assert_eq!(
        calls.closes.recv_timeout(WAIT).expect("on_close"),
        conn.id()
    );
    assert!(conn.is_closed());
    client.rest();
    conn.force_close(); // a second one is harmless
    assert!(calls
        .closes
        .recv_timeout(Duration::from_millis(200))
        .is_err());
    assert_eq!(recorder.closed.load(Ordering::SeqCst), 1);
    server.stop();
}

#[test]
fn stop_input_then_stop_ends_the_threads() {
    let (server, recorder, calls) = start(true, 2, 1 << 20);
    let addr = server.local_addr();
    let mut a = Client::connect(addr);
    let conn_a = calls.next_conn();
    let mut b = Client::connect(addr);
    let conn_b = calls.next_conn();
    a.write(b"before\n");
    assert_eq!(a.line(), "before");

    server.stop_input();
    // Replies are still written; this one is queued behind the loop's StopReading.
    conn_a.send(Bytes::from_static(b"after"));
    assert_eq!(a.line(), "after");
    // Requests are no longer taken: this line is read and discarded, then the end of file
    // closes the connection.
    a.write(b"not taken\n");
    a.stream().shutdown(Shutdown::Write).expect("shutdown");
    assert_eq!(
        calls.closes.recv_timeout(WAIT).expect("on_close"),
        conn_a.id()
    );
    assert_eq!(recorder.lines.load(Ordering::SeqCst), 1);
    assert!(a.rest().is_empty());

    let (done_tx, done) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        server.stop();
        let _ = done_tx.send(());
    });
    done.recv_timeout(WAIT)
        .expect("stop() returned (every thread ended)");
    // The loops dropped b without on_close, the acceptor closed the listener.
    assert!(conn_b.is_closed());
    assert!(b.rest().is_empty());
    assert_eq!(recorder.closed.load(Ordering::SeqCst), 1);
    assert!(TcpStream::connect(addr).is_err(), "the listener is closed");
}
