//! `Handler::on_reads_done`: called after the reads of a loop iteration, so a handler that
//! answers there (in bulk) answers everything it read, whether the bytes came in one read or
//! several, and whether the read was started by a poll event or by `start_read`.

use clusterchat_net::{ConnRef, Handler, ServerHandle, ServerOptions, TcpServer};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Collects whole lines in `on_message`; answers nothing there. `on_reads_done` answers every
/// collected line with how many lines that call answered ("line/N"): the answers wait for it.
#[derive(Default)]
struct Batcher {
    read: Mutex<Vec<(ConnRef<()>, String)>>,
}

impl Handler<()> for Batcher {
    fn on_message(&self, conn: &ConnRef<()>, input: &[u8]) -> usize {
        let Some(end) = input.iter().rposition(|&b| b == b'\n') else {
            return 0;
        };
        let mut read = self.read.lock().unwrap();
        let mut used = 0;
        for line in input[..end].split(|&b| b == b'\n') {
            used += line.len() + 1;
            read.push((conn.clone(), String::from_utf8_lossy(line).into_owned()));
            if line == b"pause" {
                // Stop reading, the rest kept; another thread restarts it (a task to the loop).
                conn.stop_read();
                let again = conn.clone();
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(20));
                    again.start_read();
                });
                break;
            }
        }
        used
    }

    fn on_close(&self, _conn: &ConnRef<()>) {}

    fn on_reads_done(&self) {
        let batch = std::mem::take(&mut *self.read.lock().unwrap());
        let n = batch.len();
        for (conn, line) in batch {
            conn.send(format!("{line}/{n}").into_bytes().into());
        }
    }
}

/// A one-loop server with a [`Batcher`].
fn start() -> ServerHandle<()> {
    let options = ServerOptions {
        io_threads: 1,
        ..ServerOptions::default()
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    TcpServer::start(listener, Arc::new(Batcher::default()), options).unwrap()
}

fn client(addr: std::net::SocketAddr) -> (TcpStream, BufReader<TcpStream>) {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let r = BufReader::new(s.try_clone().unwrap());
    (s, r)
}

fn line(r: &mut BufReader<TcpStream>) -> String {
    let mut s = String::new();
    r.read_line(&mut s)
        .expect("an answer (on_reads_done not called?)");
    s.trim_end().to_string()
}

#[test]
fn what_one_read_brought_is_answered_in_one_call() {
    let server = start();
    let (mut w, mut r) = client(server.local_addr());
    w.write_all(b"a\nb\nc\n").unwrap();
    // One write of three lines: read at once, answered by one call.
    assert_eq!(
        [line(&mut r), line(&mut r), line(&mut r)],
        ["a/3", "b/3", "c/3"]
    );
    w.write_all(b"d\n").unwrap();
    assert_eq!(line(&mut r), "d/1");
    server.stop();
}

#[test]
fn a_read_restarted_by_a_task_is_answered_too() {
    let server = start();
    let (mut w, mut r) = client(server.local_addr());
    // "after" arrives while reading is stopped: it is read when start_read's task runs (no
    // poll event for it), and must still be answered without anything else arriving.
    w.write_all(b"pause\nafter\n").unwrap();
    assert_eq!(line(&mut r), "pause/1");
    assert_eq!(line(&mut r), "after/1");
    server.stop();
}
