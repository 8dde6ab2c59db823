//! Test scaffolding: real connections of a real reactor, for the service's unit tests.

use super::{ChatConn, ConnContext};
use crate::sync::LockExt;
use clusterchat_net::{ConnRef, Handler, ServerOptions, TcpServer};
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

/// Hands each new connection to the test; echoes nothing.
struct Grab(Mutex<mpsc::Sender<ChatConn>>);

impl Handler<ConnContext> for Grab {
    fn on_connection(&self, conn: &ConnRef<ConnContext>) {
        let _ = self.0.locked().send(conn.clone());
    }
    fn on_message(&self, _conn: &ConnRef<ConnContext>, input: &[u8]) -> usize {
        input.len()
    }
    fn on_close(&self, _conn: &ConnRef<ConnContext>) {}
}

/// A real connection: the server side's handle and the client's reader.
pub(crate) fn connection() -> (ChatConn, BufReader<TcpStream>, impl Drop) {
    let (tx, rx) = mpsc::channel();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let options = ServerOptions {
        io_threads: 1,
        max_output: 1 << 20,
        keepalive: None,
        ..ServerOptions::default()
    };
    let server = TcpServer::start(listener, Arc::new(Grab(Mutex::new(tx))), options).unwrap();
    let client = TcpStream::connect(server.local_addr()).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let conn = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    struct Stop(Option<clusterchat_net::ServerHandle<ConnContext>>);
    impl Drop for Stop {
        fn drop(&mut self) {
            self.0.take().unwrap().stop();
        }
    }
    (conn, BufReader::new(client), Stop(Some(server)))
}

/// The next newline-terminated frame the client reads.
pub(crate) fn line(reader: &mut BufReader<TcpStream>) -> String {
    let mut s = String::new();
    reader.read_line(&mut s).unwrap();
    s.trim_end().to_string()
}

/// A service on a fresh SQLite file over `bus` (one worker, a cheap hasher), and the
/// directory holding the file (the file goes with it).
pub(crate) fn sqlite_service(
    bus: crate::bus::SharedBus,
) -> (Arc<super::ChatService>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("chat.db").display());
    let store = crate::store::open(&url, 1).unwrap();
    let workers = Arc::new(crate::worker_pool::WorkerPool::new(1).unwrap());
    let service = super::ChatService::new(
        store,
        bus,
        "n1".into(),
        super::password::Hasher::new(8),
        workers,
        4096,
        1 << 20,
    );
    (Arc::new(service), dir)
}
