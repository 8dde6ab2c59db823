//! Input backpressure (`stop_read` / `start_read`) and the read budget: a connection whose
//! handler stopped reading is not read (its input is kept back, bounded) until it starts
//! again, and then loses nothing; a flood on one connection does not keep the loop from
//! another one.

mod common;

use clusterchat_net::{ConnRef, Handler, ServerOptions, TcpServer};
use common::{Client, WAIT};
use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};

/// Counts lines; while `gate` is closed, or at a line saying `stop`, it calls `stop_read` and
/// consumes no further. Lines saying `echo` are echoed; a line saying `go` starts reading
/// every connection a `stop` line stopped, in the order stopped (all from the loop thread, so
/// they are read again in the same iteration).
struct Gate {
    gate_closed: AtomicBool,
    lines: AtomicUsize,
    /// `on_message` calls made while the connection was not reading (must be none).
    calls_while_stopped: AtomicUsize,
    /// The most input one `on_message` call was offered.
    largest_input: AtomicUsize,
    /// `lines` when the last `echo` line was handled.
    lines_at_echo: AtomicUsize,
    /// Connections stopped by a `stop` line.
    stopped: Mutex<Vec<ConnRef<()>>>,
    /// `on_close` calls.
    closed: AtomicUsize,
    conns: Mutex<Sender<ConnRef<()>>>,
}

impl Handler<()> for Gate {
    fn on_connection(&self, conn: &ConnRef<()>) {
        let _ = self.conns.lock().unwrap().send(Arc::clone(conn));
    }

    fn on_message(&self, conn: &ConnRef<()>, input: &[u8]) -> usize {
        if !conn.is_reading() {
            self.calls_while_stopped.fetch_add(1, Ordering::SeqCst);
        }
        self.largest_input.fetch_max(input.len(), Ordering::SeqCst);
        let mut used = 0;
        while let Some(i) = input[used..].iter().position(|&b| b == b'\n') {
            let line = &input[used..used + i];
            used += i + 1;
            let lines = self.lines.fetch_add(1, Ordering::SeqCst) + 1;
            if line == b"echo" {
                self.lines_at_echo.store(lines, Ordering::SeqCst);
                conn.send(clusterchat_net::Bytes::from_static(b"echo"));
            }
            if line == b"go" {
                for c in self.stopped.lock().unwrap().drain(..) {
                    c.start_read();
                }
            }
            if line == b"stop" {
                self.stopped.lock().unwrap().push(Arc::clone(conn));
            }
            if self.gate_closed.load(Ordering::SeqCst) || line == b"stop" {
                conn.stop_read();
                break;
            }
        }
        used
    }

    fn on_close(&self, _conn: &ConnRef<()>) {
        self.closed.fetch_add(1, Ordering::SeqCst);
    }
}

fn start(
    gate_closed: bool,
) -> (
    clusterchat_net::ServerHandle<()>,
    Arc<Gate>,
    Receiver<ConnRef<()>>,
) {
    let (tx, rx) = channel();
    let gate = Arc::new(Gate {
        gate_closed: AtomicBool::new(gate_closed),
        lines: AtomicUsize::new(0),
        calls_while_stopped: AtomicUsize::new(0),
        largest_input: AtomicUsize::new(0),
        lines_at_echo: AtomicUsize::new(0),
        stopped: Mutex::new(Vec::new()),
        closed: AtomicUsize::new(0),
        conns: Mutex::new(tx),
    });
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let server = TcpServer::start(listener, Arc::clone(&gate), ServerOptions::default()).unwrap();
    (server, gate, rx)
}

const LINE: &[u8] = b"0123456789012345678901234567890123456789012345678901234567890123456789\n";

#[test]
fn a_stopped_connection_is_not_read_until_it_starts_again_and_loses_nothing() {
    let (server, gate, conns) = start(true);
    let stream = TcpStream::connect(server.local_addr()).unwrap();
    let conn = conns.recv_timeout(WAIT).unwrap();
    // 7 MiB: more than the kernel buffers on both sides hold, so the writer blocks until the
    // server reads again.
    let n = 100_000;
    let mut writer = stream.try_clone().unwrap();
    let flood = std::thread::spawn(move || {
        for _ in 0..n {
            writer.write_all(LINE).unwrap();
        }
    });
    while gate.lines.load(Ordering::SeqCst) == 0 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(
        gate.lines.load(Ordering::SeqCst),
        1,
        "nothing handled while stopped"
    );
    assert_eq!(gate.calls_while_stopped.load(Ordering::SeqCst), 0);
    assert!(!conn.is_reading());
    assert!(
        !flood.is_finished(),
        "the writer is held back by TCP flow control"
    );
    gate.gate_closed.store(false, Ordering::SeqCst);
    conn.start_read();
    flood.join().unwrap();
    let mut client = Client {
        reader: std::io::BufReader::new(stream),
    };
    client.write(b"echo\n");
    assert_eq!(client.line(), "echo");
    assert_eq!(gate.lines.load(Ordering::SeqCst), n + 1, "every line, once");
    assert_eq!(gate.calls_while_stopped.load(Ordering::SeqCst), 0);
    // What was kept back is bounded by one read (64 KiB) plus a partial line.
    assert!(gate.largest_input.load(Ordering::SeqCst) <= (64 << 10) + LINE.len());
    server.stop();
}

/// A connection whose first line stops it, with as much flood behind it as the kernel holds
/// (a 4 MiB send buffer on the client's side): its socket, once read again, is full.
fn stopped_with_a_backlog(
    addr: std::net::SocketAddr,
    conns: &Receiver<ConnRef<()>>,
) -> (TcpStream, ConnRef<()>, usize) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_send_buffer_size(4 << 20).unwrap();
    socket.connect(&addr.into()).unwrap();
    let mut stream: TcpStream = socket.into();
    let conn = conns.recv_timeout(WAIT).unwrap();
    stream.write_all(b"stop\n").unwrap();
    while conn.is_reading() {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    stream.set_nonblocking(true).unwrap();
    let burst: Vec<u8> = LINE.repeat(100);
    let mut queued = 0;
    loop {
        match stream.write(&burst) {
            Ok(n) => queued += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("{e}"),
        }
    }
    stream.set_nonblocking(false).unwrap();
    (stream, conn, queued)
}

#[test]
fn a_flood_on_one_connection_does_not_keep_the_loop_from_another() {
    let (server, gate, conns) = start(false);
    let addr = server.local_addr();
    let (_flood, flood_conn, queued) = stopped_with_a_backlog(addr, &conns);
    assert!(queued > 1 << 20, "only {queued} bytes queued");
    let mut other = Client::connect(addr);
    let other_conn = conns.recv_timeout(WAIT).unwrap();
    other.write(b"stop\necho\n");
    while other_conn.is_reading() {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    // Both are read again from the same iteration on, the flood first.
    Client::connect(addr).write(b"go\n");
    assert_eq!(other.line(), "echo");
    assert!(flood_conn.is_reading());
    // One read budget (64 KiB) per connection per iteration: the flood got one before the
    // other connection was served, not the megabytes it had waiting.
    // (The count holds the three short lines too.)
    let flood_read = gate.lines_at_echo.load(Ordering::SeqCst).saturating_sub(3) * LINE.len();
    assert!(
        flood_read <= (64 << 10) + LINE.len(),
        "{flood_read} of {queued} flood bytes were read before the other connection's line"
    );
    server.stop();
}

/// Shutdown's first phase reads and discards the input of every connection, stopped ones too:
/// their end of file is seen (unread input would turn the final close into a reset).
#[test]
fn stop_input_discards_what_a_stopped_connection_kept_back() {
    let (server, gate, conns) = start(false);
    let (stream, conn, _) = stopped_with_a_backlog(server.local_addr(), &conns);
    assert!(!conn.is_reading());
    server.stop_input();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while gate.closed.load(Ordering::SeqCst) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the end of file was never read"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(
        gate.lines.load(Ordering::SeqCst),
        1,
        "nothing more was handled"
    );
    server.stop();
}
