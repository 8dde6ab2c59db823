//! An echo handler over a real loopback server: bytes in, the same bytes out, however the
//! client splits or pipelines its writes.

mod common;

use common::{start, Client};
use std::thread::sleep;
use std::time::Duration;

#[test]
fn echoes_a_line() {
    let (server, _recorder, _calls) = start(true, 1, 1 << 20);
    let mut client = Client::connect(server.local_addr());
    client.write(b"hello\n");
    assert_eq!(client.line(), "hello");
    server.stop();
}

#[test]
fn a_line_split_over_writes_comes_back_whole() {
    let (server, recorder, _calls) = start(true, 1, 1 << 20);
    let mut client = Client::connect(server.local_addr());
    for part in [&b"hel"[..], b"lo wo", b"rld", b"\nsecond", b" line\n"] {
        client.write(part);
        // Lets the loop read each part on its own (more likely, not required: no assertion).
        sleep(Duration::from_millis(10));
    }
    assert_eq!(client.line(), "hello world");
    assert_eq!(client.line(), "second line");
    assert_eq!(recorder.lines.load(std::sync::atomic::Ordering::SeqCst), 2);
    server.stop();
}

#[test]
fn pipelined_lines_come_back_in_order() {
    let (server, _recorder, _calls) = start(true, 2, 1 << 20);
    let mut client = Client::connect(server.local_addr());
    let batch: String = (0..2000).map(|i| format!("line {i}\n")).collect();
    client.write(batch.as_bytes());
    for i in 0..2000 {
        assert_eq!(client.line(), format!("line {i}"));
    }
    server.stop();
}

#[test]
fn a_line_longer_than_one_read_comes_back_whole() {
    // Longer than the loop's 64 KiB scratch space: the leftover input buffer must keep it.
    let (server, _recorder, _calls) = start(true, 1, 1 << 20);
    let mut client = Client::connect(server.local_addr());
    let long: String = (0..300_000)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    let writer = client.stream().try_clone().expect("clone");
    let sent = long.clone();
    let t = std::thread::spawn(move || {
        let mut w = &writer;
        std::io::Write::write_all(&mut w, format!("{sent}\nend\n").as_bytes()).expect("write");
    });
    assert_eq!(client.line(), long);
    assert_eq!(client.line(), "end");
    t.join().expect("writer");
    server.stop();
}
