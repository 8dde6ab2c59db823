//! A server on loopback port 0 with a handler that records every callback (and echoes lines),
//! and a blocking client. Shared by the reactor's integration tests.
#![allow(dead_code)] // each test binary uses a part

use clusterchat_net::{Bytes, ConnRef, Handler, ServerHandle, ServerOptions, TcpServer};
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::time::Duration;

/// Only to keep a broken reactor from hanging the tests; nothing asserts on time.
pub const WAIT: Duration = Duration::from_secs(20);

/// Records callbacks on channels; echoes every complete `\n`-terminated line when `echo`.
pub struct Recorder {
    echo: bool,
    conns: Sender<ConnRef<()>>,
    closes: Sender<u64>,
    undelivered: Sender<(u64, Bytes, u64)>,
    written: Sender<(u64, u64)>,
    /// Complete lines handed to `on_message`.
    pub lines: AtomicUsize,
    /// `on_close` calls.
    pub closed: AtomicUsize,
}

/// The receiving ends of a [`Recorder`]'s channels.
pub struct Calls {
    pub conns: Receiver<ConnRef<()>>,
    pub closes: Receiver<u64>,
    pub undelivered: Receiver<(u64, Bytes, u64)>,
    /// `on_written` calls: (connection id, tag).
    pub written: Receiver<(u64, u64)>,
}

impl Calls {
    /// The next connection the server registered.
    pub fn next_conn(&self) -> ConnRef<()> {
        self.conns.recv_timeout(WAIT).expect("on_connection")
    }
}

impl Handler<()> for Recorder {
    fn on_connection(&self, conn: &ConnRef<()>) {
        let _ = self.conns.send(Arc::clone(conn));
    }

    fn on_message(&self, conn: &ConnRef<()>, input: &[u8]) -> usize {
        let mut used = 0;
        while let Some(i) = input[used..].iter().position(|&b| b == b'\n') {
            self.lines.fetch_add(1, Ordering::SeqCst);
            if self.echo {
                conn.send(Bytes::copy_from_slice(&input[used..used + i]));
            }
            used += i + 1;
        }
        used
    }

    fn on_close(&self, conn: &ConnRef<()>) {
        self.closed.fetch_add(1, Ordering::SeqCst);
        let _ = self.closes.send(conn.id());
    }

    fn on_undelivered(&self, conn: &ConnRef<()>, frame: Bytes, tag: u64) {
        let _ = self.undelivered.send((conn.id(), frame, tag));
    }

    /// A last line before the login timeout closes the connection.
    fn on_auth_timeout(&self, _conn: &ConnRef<()>) -> Option<Bytes> {
        Some(Bytes::from_static(b"timeout"))
    }

    fn on_written(&self, conn: &ConnRef<()>, tag: u64) {
        let _ = self.written.send((conn.id(), tag));
    }
}

/// Starts a server on 127.0.0.1:0.
pub fn start(
    echo: bool,
    io_threads: usize,
    max_output: usize,
) -> (ServerHandle<()>, Arc<Recorder>, Calls) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    start_on(listener, echo, io_threads, max_output)
}

/// Starts a server on a listener the test prepared.
pub fn start_on(
    listener: std::net::TcpListener,
    echo: bool,
    io_threads: usize,
    max_output: usize,
) -> (ServerHandle<()>, Arc<Recorder>, Calls) {
    let options = ServerOptions {
        io_threads,
        max_output,
        keepalive: None,
        ..ServerOptions::default()
    };
    start_with(listener, echo, options)
}

/// Starts a server with these options on a listener the test prepared.
pub fn start_with(
    listener: std::net::TcpListener,
    echo: bool,
    options: ServerOptions,
) -> (ServerHandle<()>, Arc<Recorder>, Calls) {
    let (conns_tx, conns) = channel();
    let (closes_tx, closes) = channel();
    let (undelivered_tx, undelivered) = channel();
    let (written_tx, written) = channel();
    let recorder = Arc::new(Recorder {
        echo,
        conns: conns_tx,
        closes: closes_tx,
        undelivered: undelivered_tx,
        written: written_tx,
        lines: AtomicUsize::new(0),
        closed: AtomicUsize::new(0),
    });
    let server = TcpServer::start(listener, Arc::clone(&recorder), options).expect("start");
    let calls = Calls {
        conns,
        closes,
        undelivered,
        written,
    };
    (server, recorder, calls)
}

/// A blocking client that reads lines.
pub struct Client {
    pub reader: BufReader<TcpStream>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(WAIT)).expect("timeout");
        Client {
            reader: BufReader::new(stream),
        }
    }

    pub fn stream(&self) -> &TcpStream {
        self.reader.get_ref()
    }

    pub fn write(&self, bytes: &[u8]) {
        let mut s = self.stream();
        s.write_all(bytes).expect("write");
        s.flush().expect("flush");
    }

    /// The next line, without its `\n`; panics on end of file or timeout.
    pub fn line(&mut self) -> String {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).expect("read a line");
        assert!(n > 0 && line.ends_with('\n'), "connection ended: {line:?}");
        line.pop();
        line
    }

    /// Reads until end of file (or a reset) and returns what came; panics on timeout.
    pub fn rest(&mut self) -> Vec<u8> {
        let mut rest = Vec::new();
        if let Err(e) = self.reader.read_to_end(&mut rest) {
            let timed_out = matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut);
            assert!(!timed_out, "the connection did not end");
        }
        rest
    }
}
