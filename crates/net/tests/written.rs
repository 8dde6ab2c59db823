//! `deliver`'s accounting: `on_written` reports (cumulatively) the tagged frames the socket
//! took, `on_undelivered` hands back those it did not, and each tagged frame is reported
//! exactly once, whether the client reads, stalls, is cut off, closes, or the server stops.
//!
//! A client that does not read has a small receive buffer, so the kernel holds little of
//! what the server writes (at most the server's send buffer, a few MiB, plus that): a test that
//! queues far more knows the last frames cannot have been written.
#![cfg(target_os = "linux")]

mod common;

use clusterchat_net::{Bytes, ConnRef};
use common::{start, Calls, Client, WAIT};
use std::collections::BTreeSet;
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;

/// How long `on_written` must stay quiet before a test takes its last report as final for the
/// moment (pacing only: the assertions that follow hold whatever the timing).
const QUIET: Duration = Duration::from_millis(300);

/// Sets the socket's SO_RCVBUF (the kernel doubles it and applies its minimum). std has no
/// setter and the crate takes no dependency for a test, hence the declaration.
fn set_rcvbuf(stream: &TcpStream, bytes: i32) {
    extern "C" {
        fn setsockopt(fd: i32, level: i32, name: i32, value: *const i32, len: u32) -> i32;
    }
    const SOL_SOCKET: i32 = 1;
    const SO_RCVBUF: i32 = 8;
    // SAFETY: a valid descriptor and a pointer to an int of the length given.
    let rc = unsafe { setsockopt(stream.as_raw_fd(), SOL_SOCKET, SO_RCVBUF, &bytes, 4) };
    assert_eq!(rc, 0, "setsockopt SO_RCVBUF");
}

/// A client that will not read for a while, with a 4 KiB receive buffer.
fn stalled_client(server: &clusterchat_net::ServerHandle<()>) -> Client {
    let client = Client::connect(server.local_addr());
    set_rcvbuf(client.stream(), 4096);
    client
}

/// Lets a [`stalled_client`] read at full speed (a 4 KiB buffer would make reading megabytes
/// slow).
fn resume(client: &Client) {
    set_rcvbuf(client.stream(), 1 << 20);
}

/// A frame of `len` bytes that starts with its tag (no `\n` inside).
fn frame(tag: u64, len: usize) -> Bytes {
    let mut f = format!("{tag:08}").into_bytes();
    f.resize(len.max(8), b'.');
    Bytes::from(f)
}

/// The tag a received line starts with.
fn tag_of(line: &str) -> u64 {
    line[..8].parse().expect("a tag")
}

/// Takes `on_written` reports for `conn` until one is `target`; each must go forward.
fn written_until(calls: &Calls, conn: &ConnRef<()>, mut last: u64, target: u64) -> u64 {
    while last != target {
        let (id, tag) = calls.written.recv_timeout(WAIT).expect("on_written");
        assert_eq!(id, conn.id());
        assert!(tag > last && tag <= target, "report {tag} after {last}");
        last = tag;
    }
    last
}

/// Takes `on_written` reports for `conn` until none comes for [`QUIET`]; returns the last
/// (or `last` if none came). Each must go forward.
fn written_settled(calls: &Calls, conn: &ConnRef<()>, mut last: u64) -> u64 {
    loop {
        match calls.written.recv_timeout(QUIET) {
            Ok((id, tag)) => {
                assert_eq!(id, conn.id());
                assert!(tag > last, "report {tag} after {last}");
                last = tag;
            }
            Err(RecvTimeoutError::Timeout) => return last,
            Err(e) => panic!("{e}"),
        }
    }
}

/// The reports left once `conn` closed: on_written calls come before on_close on the loop
/// thread, so none is still on its way.
fn written_after_close(calls: &Calls, conn: &ConnRef<()>, mut last: u64) -> u64 {
    while let Ok((id, tag)) = calls.written.try_recv() {
        assert_eq!(id, conn.id());
        assert!(tag > last, "report {tag} after {last}");
        last = tag;
    }
    last
}

/// Takes `on_undelivered` reports until every tag after `written` up to `last` came back,
/// each once, with its frame; then checks that no other report comes (a round trip on a
/// second connection of the same single loop is the fence).
fn undelivered_are_the_rest(
    server: &clusterchat_net::ServerHandle<()>,
    calls: &Calls,
    conn: &ConnRef<()>,
    written: u64,
    last: u64,
    frame_len: usize,
) {
    let mut back = BTreeSet::new();
    for _ in written..last {
        let (id, f, tag) = calls
            .undelivered
            .recv_timeout(WAIT)
            .expect("on_undelivered");
        assert_eq!(id, conn.id());
        assert!(
            tag > written && tag <= last,
            "tag {tag} handed back, but written is {written}, last {last}"
        );
        assert!(back.insert(tag), "tag {tag} handed back twice");
        assert_eq!(f, frame(tag, frame_len), "tag {tag}'s frame");
    }
    let mut fence = Client::connect(server.local_addr());
    fence.write(b"fence\n");
    assert_eq!(fence.line(), "fence");
    assert!(calls.undelivered.try_recv().is_err(), "an extra hand-back");
    assert!(
        calls.written.try_recv().is_err(),
        "a report after the close"
    );
}

#[test]
fn a_reading_client_gets_every_frame_and_the_last_report_is_the_last_tag() {
    const N: u64 = 5000;
    let (server, _recorder, calls) = start(true, 1, 64 << 20);
    let mut client = Client::connect(server.local_addr());
    let conn = calls.next_conn();
    for tag in 1..=N {
        conn.deliver(frame(tag, 8 + (tag as usize * 7) % 300), tag);
    }
    for tag in 1..=N {
        let line = client.line();
        assert_eq!(tag_of(&line), tag);
        assert_eq!(line.len(), 8 + (tag as usize * 7) % 300);
    }
    assert_eq!(written_until(&calls, &conn, 0, N), N);
    assert!(calls.undelivered.try_recv().is_err());
    server.stop();
    assert!(
        calls.undelivered.try_recv().is_err(),
        "nothing left at stop"
    );
}

#[test]
fn reports_stop_while_the_client_does_not_read_and_resume_when_it_does() {
    const N: u64 = 2048;
    const LEN: usize = 4096; // 8 MiB in all: more than the kernel will hold for the client
    let (server, _recorder, calls) = start(true, 1, 64 << 20);
    let mut client = stalled_client(&server);
    let conn = calls.next_conn();
    for tag in 1..=N {
        conn.deliver(frame(tag, LEN), tag);
    }
    let stalled = written_settled(&calls, &conn, 0);
    assert!(stalled >= 1, "the first frames fit in the kernel's buffers");
    assert!(
        stalled < N,
        "all {N} reported written to a client that reads nothing"
    );
    resume(&client);
    for tag in 1..=N {
        assert_eq!(client.line(), frame(tag, LEN));
    }
    written_until(&calls, &conn, stalled, N);
    assert!(calls.undelivered.try_recv().is_err());
    server.stop();
}

#[test]
fn a_cut_off_reports_every_tag_once_as_written_or_undelivered() {
    const MAX_OUTPUT: usize = 64 << 10;
    const LEN: usize = 4 << 10;
    const GIVE_UP: u64 = 64 << 10; // frames: 256 MiB, far past what the kernel holds
    let (server, _recorder, calls) = start(true, 1, MAX_OUTPUT);
    let client = stalled_client(&server); // never reads
    let conn = calls.next_conn();
    let mut last = 0;
    loop {
        assert!(last < GIVE_UP, "{last} frames queued and no cut-off");
        last += 1;
        conn.deliver(frame(last, LEN), last);
        if last % 8 == 0 {
            // Lets the loop catch up, so the queue of tasks stays short (pacing only).
            if let Ok(id) = calls.closes.recv_timeout(Duration::from_millis(1)) {
                assert_eq!(id, conn.id());
                break;
            }
        }
    }
    // Frames delivered after the close come back too.
    for _ in 0..3 {
        last += 1;
        conn.deliver(frame(last, LEN), last);
    }
    let written = written_after_close(&calls, &conn, 0);
    assert!(written < last);
    undelivered_are_the_rest(&server, &calls, &conn, written, last, LEN);
    drop(client);
    server.stop();
}

#[test]
fn interleaved_untagged_frames_count_in_the_offsets() {
    const BIG: usize = 8 << 20; // more than the kernel will hold for a client that does not read
    let (server, _recorder, calls) = start(true, 1, 64 << 20);
    let mut client = stalled_client(&server);
    let conn = calls.next_conn();
    conn.send(Bytes::from_static(b"untagged first"));
    conn.deliver(frame(1, 100), 1);
    conn.send(Bytes::from(vec![b'u'; BIG]));
    conn.deliver(frame(2, 100), 2);
    conn.send(Bytes::from_static(b"untagged between"));
    conn.deliver(frame(3, 5), 3);
    conn.send(Bytes::from_static(b"untagged last"));
    // Frame 2 lies behind 8 MiB that cannot all be written yet: only 1 is reported.
    assert_eq!(written_settled(&calls, &conn, 0), 1);
    resume(&client);
    assert_eq!(client.line(), "untagged first");
    assert_eq!(client.line(), frame(1, 100));
    assert_eq!(client.line().len(), BIG);
    assert_eq!(client.line(), frame(2, 100));
    assert_eq!(client.line(), "untagged between");
    assert_eq!(client.line(), frame(3, 5));
    assert_eq!(client.line(), "untagged last");
    written_until(&calls, &conn, 1, 3);

    // Many small frames, tagged or not, of many sizes, to a reading client.
    let mut tag = 3;
    let mut expected = Vec::new();
    for i in 0..20_000usize {
        let len = 8 + (i * 131) % 2000;
        if i % 3 == 0 {
            let f = frame(1_000_000 + i as u64, len);
            expected.push(f.clone());
            conn.send(f);
        } else {
            tag += 1;
            let f = frame(tag, len);
            expected.push(f.clone());
            conn.deliver(f, tag);
        }
    }
    for f in &expected {
        assert_eq!(client.line(), *f);
    }
    written_until(&calls, &conn, 3, tag);
    assert!(calls.undelivered.try_recv().is_err());
    server.stop();
}

#[test]
fn a_peer_that_closes_gets_its_unwritten_frames_handed_back() {
    const N: u64 = 2048;
    const LEN: usize = 4096;
    let (server, _recorder, calls) = start(true, 1, 64 << 20);
    let client = stalled_client(&server);
    let conn = calls.next_conn();
    for tag in 1..=N {
        conn.deliver(frame(tag, LEN), tag);
    }
    let stalled = written_settled(&calls, &conn, 0);
    assert!(stalled < N);
    drop(client); // unread data: the kernel resets the connection
    assert_eq!(
        calls.closes.recv_timeout(WAIT).expect("on_close"),
        conn.id()
    );
    let written = written_after_close(&calls, &conn, stalled);
    undelivered_are_the_rest(&server, &calls, &conn, written, N, LEN);
    server.stop();
}

#[test]
fn a_shutdown_hands_back_what_the_peer_never_let_it_write() {
    const N: u64 = 2048;
    const LEN: usize = 4096;
    let (server, _recorder, calls) = start(true, 1, 64 << 20);
    let client = stalled_client(&server);
    let conn = calls.next_conn();
    for tag in 1..=N {
        conn.deliver(frame(tag, LEN), tag);
    }
    conn.shutdown();
    let stalled = written_settled(&calls, &conn, 0);
    assert!(stalled < N);
    // The peer closes without reading: the half-closed connection closes.
    drop(client);
    assert_eq!(
        calls.closes.recv_timeout(WAIT).expect("on_close"),
        conn.id()
    );
    let written = written_after_close(&calls, &conn, stalled);
    undelivered_are_the_rest(&server, &calls, &conn, written, N, LEN);
    server.stop();
}

#[test]
fn stop_hands_back_what_was_not_written() {
    const N: u64 = 2048;
    const LEN: usize = 4096;
    let (server, _recorder, calls) = start(true, 1, 64 << 20);
    let _client = stalled_client(&server);
    let conn = calls.next_conn();
    for tag in 1..=N {
        conn.deliver(frame(tag, LEN), tag);
    }
    let stalled = written_settled(&calls, &conn, 0);
    assert!(stalled < N);
    server.stop();
    assert!(conn.is_closed());
    // stop() joined the loop: every report has been made.
    let written = written_after_close(&calls, &conn, stalled);
    let mut back = Vec::new();
    while let Ok((id, f, tag)) = calls.undelivered.try_recv() {
        assert_eq!(id, conn.id());
        assert_eq!(f, frame(tag, LEN));
        back.push(tag);
    }
    let rest: Vec<u64> = (written + 1..=N).collect();
    assert_eq!(back, rest, "every unwritten frame once, in order");
}
