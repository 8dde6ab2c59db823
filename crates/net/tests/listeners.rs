//! One server on several listeners (`TcpServer::start_on`): each connection knows which one
//! accepted it; a frame prefix set on a connection goes before each later frame; `send_raw`
//! bytes go out exactly as given.

use clusterchat_net::{Bytes, ConnRef, Handler, ServerOptions, TcpServer, MAX_PREFIX};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// Answers each line: `prefix` sets the frame prefix, `raw` sends `RAW` raw, anything else
/// comes back as `<listener>:<line>`.
struct Tagger;

/// A prefix of `<` and the payload length (frame and terminator).
fn prefix(len: usize, out: &mut [u8; MAX_PREFIX]) -> usize {
    out[0] = b'<';
    out[1] = len as u8;
    2
}

impl Handler<()> for Tagger {
    fn on_message(&self, conn: &ConnRef<()>, input: &[u8]) -> usize {
        let mut consumed = 0;
        while let Some(end) = input[consumed..].iter().position(|&b| b == b'\n') {
            let line = &input[consumed..consumed + end];
            consumed += end + 1;
            match line {
                b"prefix" => assert!(conn.set_frame_prefix(prefix)),
                b"raw" => conn.send_raw(Bytes::from_static(b"RAW")),
                other => conn.send(Bytes::from(
                    format!("{}:{}", conn.listener(), String::from_utf8_lossy(other)).into_bytes(),
                )),
            }
        }
        consumed
    }

    fn on_close(&self, _conn: &ConnRef<()>) {}
}

fn read_exact(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    s.read_exact(&mut buf).expect("read");
    buf
}

#[test]
fn each_connection_knows_its_listener_and_prefix_and_raw_bytes_go_out_as_framed() {
    let listeners = vec![
        TcpListener::bind("127.0.0.1:0").unwrap(),
        TcpListener::bind("127.0.0.1:0").unwrap(),
    ];
    let server =
        TcpServer::start_on(listeners, Arc::new(Tagger), ServerOptions::default()).expect("start");
    let addrs = server.local_addrs().to_vec();
    assert_eq!(addrs.len(), 2);
    assert_eq!(server.local_addr(), addrs[0]);
    let connect = |i: usize| {
        let s = TcpStream::connect(addrs[i]).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    };
    let (mut a, mut b) = (connect(0), connect(1));
    a.write_all(b"x\n").unwrap();
    b.write_all(b"y\n").unwrap();
    assert_eq!(read_exact(&mut a, 4), b"0:x\n");
    assert_eq!(read_exact(&mut b, 4), b"1:y\n");
    // After the prefix is set: `<`, the length of "1:zz\n", the frame, its terminator.
    b.write_all(b"prefix\nzz\n").unwrap();
    assert_eq!(read_exact(&mut b, 7), b"<\x051:zz\n");
    // Raw bytes: no prefix, no terminator; then a frame, prefixed again.
    b.write_all(b"raw\nw\n").unwrap();
    assert_eq!(read_exact(&mut b, 3 + 2 + 4), b"RAW<\x041:w\n");
    // The other connection is untouched.
    a.write_all(b"v\n").unwrap();
    assert_eq!(read_exact(&mut a, 4), b"0:v\n");
    server.stop();
}

#[test]
fn no_listener_is_an_error() {
    let r = TcpServer::start_on::<(), _>(Vec::new(), Arc::new(Tagger), ServerOptions::default());
    assert!(r.is_err());
}
