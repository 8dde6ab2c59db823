//! A broadcast chat on the reactor alone: every line a client sends goes to every connected
//! client, the sender included (muduo's examples/asio/chat server, with lines for frames).
//! The handler keeps the set of connections; `send` is thread safe, so a line read on one IO
//! thread is queued to connections owned by the others.
//!
//! Try it:
//!   cargo run -p clusterchat-net --example broadcast [127.0.0.1:3000]
//!   nc 127.0.0.1 3000        (in two or more terminals; type lines; Ctrl+C stops the server)

use clusterchat_net::{Bytes, ConnRef, Handler, ServerOptions, TcpServer};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Default)]
struct Broadcast {
    /// Every open connection by id. Locked briefly: `send` only queues, it never blocks.
    conns: Mutex<HashMap<u64, ConnRef<()>>>,
}

impl Broadcast {
    fn conns(&self) -> MutexGuard<'_, HashMap<u64, ConnRef<()>>> {
        // A map of handles stays consistent even if a holder panicked.
        self.conns
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Handler<()> for Broadcast {
    fn on_connection(&self, conn: &ConnRef<()>) {
        println!("{} joined", conn.peer());
        self.conns().insert(conn.id(), Arc::clone(conn));
    }

    fn on_message(&self, conn: &ConnRef<()>, input: &[u8]) -> usize {
        let mut used = 0;
        while let Some(end) = input[used..].iter().position(|&b| b == b'\n') {
            let text = String::from_utf8_lossy(&input[used..used + end]);
            let line = Bytes::from(format!("{}: {}", conn.peer(), text.trim_end()));
            for other in self.conns().values() {
                other.send(line.clone()); // shares the bytes: no copy per receiver
            }
            used += end + 1;
        }
        used
    }

    fn on_close(&self, conn: &ConnRef<()>) {
        println!("{} left", conn.peer());
        self.conns().remove(&conn.id());
    }
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1);
    let listener = std::net::TcpListener::bind(addr.as_deref().unwrap_or("127.0.0.1:3000"))?;
    let options = ServerOptions {
        io_threads: 2,
        max_output: 1 << 20,
        keepalive: None,
        ..ServerOptions::default()
    };
    let server = TcpServer::start(listener, Arc::new(Broadcast::default()), options)?;
    println!("broadcast chat listening on {}", server.local_addr());
    loop {
        std::thread::park(); // the server runs on its own threads until Ctrl+C
    }
}
