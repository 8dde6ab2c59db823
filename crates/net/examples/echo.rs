//! The smallest server on the reactor: every line a client sends comes back (muduo's
//! examples/simple/echo, by lines since the reactor sends frames with a terminator).
//!
//! Try it:
//!   cargo run -p clusterchat-net --example echo [127.0.0.1:2007]
//!   nc 127.0.0.1 2007        (type lines; each comes back; Ctrl+C stops the server)

use clusterchat_net::{Bytes, ConnRef, Handler, ServerOptions, TcpServer};
use std::sync::Arc;

struct Echo;

impl Handler<()> for Echo {
    /// Called on the connection's IO thread with everything not yet consumed: send back each
    /// complete line (`send` adds the `\n` back) and keep a partial one for the next read.
    fn on_message(&self, conn: &ConnRef<()>, input: &[u8]) -> usize {
        let mut used = 0;
        while let Some(end) = input[used..].iter().position(|&b| b == b'\n') {
            conn.send(Bytes::copy_from_slice(&input[used..used + end]));
            used += end + 1;
        }
        used
    }

    fn on_close(&self, _conn: &ConnRef<()>) {}
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1);
    let listener = std::net::TcpListener::bind(addr.as_deref().unwrap_or("127.0.0.1:2007"))?;
    let options = ServerOptions {
        io_threads: 1,
        max_output: 1 << 20,
        keepalive: None,
        ..ServerOptions::default()
    };
    let server = TcpServer::start(listener, Arc::new(Echo), options)?;
    println!("echo server listening on {}", server.local_addr());
    loop {
        std::thread::park(); // the server runs on its own threads until Ctrl+C
    }
}
