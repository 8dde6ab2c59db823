//! Accepts connections on one thread and spreads them round-robin over the IO loops: muduo's
//! `TcpServer` with its `Acceptor` and `EventLoopThreadPool` (here the acceptor has a thread
//! and a poll of its own rather than running in a base loop: see [`crate::acceptor`]).

use crate::acceptor::{Acceptor, LISTENER, STOP};
use crate::admission::Admission;
use crate::event_loop::{EventLoop, LoopLimits};
use crate::loop_shared::{LoopShared, Task};
use crate::Handler;
use mio::net::TcpListener;
use mio::{Interest, Poll, Waker};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How the server runs (muduo's `setThreadNum`), and the limits that protect it from its
/// peers. [`Default`]: one loop, a 16 MiB output limit, no keepalive, no other limit, plain
/// TCP.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Number of IO loop threads; at least one is started.
    pub io_threads: usize,
    /// Output bytes queued and not yet written for one connection before it is cut off (the
    /// high-water mark; muduo's `setHighWaterMarkCallback`, with closing as the callback).
    pub max_output: usize,
    /// TCP keepalive on every accepted connection: probes start after this much silence, then
    /// every sixth of it (at least a second), and the kernel closes the connection after 3
    /// unanswered probes: a peer that vanished without a FIN (its network went away) is
    /// closed about 1.5 times this after it last sent. `None`: the kernel's default (off).
    pub keepalive: Option<Duration>,
    /// Connections open at once. Past it, a new connection is accepted and closed at once
    /// (it never waits in the listen backlog), whether or not it would authenticate:
    /// connections already open are never closed for it. Keep it below the open-file limit,
    /// so that the rest of the process still gets file descriptors. `None`: no limit (the
    /// open-file limit is then the limit: see [`crate::acceptor`] for what happens there).
    pub max_connections: Option<usize>,
    /// Unauthenticated connections (see
    /// [`TcpConnection::set_authenticated`](crate::TcpConnection::set_authenticated)) at once
    /// from one source address. Past it, a new connection from that address is accepted and
    /// closed at once; authenticated connections neither count nor are ever closed for it.
    /// `None`: no limit.
    pub max_unauthenticated_per_ip: Option<usize>,
    /// How long a connection may stay unauthenticated, from its registration or from its
    /// last `set_authenticated(false)`, before it is closed (`on_close` follows). `None`: no
    /// limit.
    pub auth_timeout: Option<Duration>,
    /// Speak TLS on every connection of this server, with this rustls config (certificate,
    /// key, protocol versions; the crate re-exports [`rustls`](crate::rustls) so the caller
    /// builds it with the same version). The handler sees plaintext as on plain TCP. The
    /// handshake is bounded like any unauthenticated connection (`auth_timeout`,
    /// `max_unauthenticated_per_ip`); a peer that does not speak TLS is closed. `None`:
    /// plain TCP, which pays nothing for this.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            io_threads: 1,
            max_output: 16 << 20,
            keepalive: None,
            max_connections: None,
            max_unauthenticated_per_ip: None,
            auth_timeout: None,
            tls: None,
        }
    }
}

/// Starts the acceptor and the IO loops: muduo's `TcpServer` + `Acceptor` +
/// `EventLoopThreadPool`. Each connection belongs to one loop for its whole life.
pub struct TcpServer;

/// A running server: its address, and the way to stop it. Dropping it stops nothing: the
/// threads run until [`stop`](Self::stop).
pub struct ServerHandle<C> {
    local_addr: SocketAddr,
    stop_waker: Arc<Waker>,
    loops: Vec<Arc<LoopShared<C>>>,
    threads: Vec<JoinHandle<()>>,
}

impl TcpServer {
    /// Binds nothing itself: takes a bound std listener (so the caller reports bind errors and
    /// may pass port 0), starts `io_threads` loop threads (`io-N`) and an `acceptor` thread,
    /// and returns at once. Every `handler` callback runs on a loop thread. Any thread.
    pub fn start<C, H>(
        listener: std::net::TcpListener,
        handler: Arc<H>,
        options: ServerOptions,
    ) -> io::Result<ServerHandle<C>>
    where
        C: Default + Send + Sync + 'static,
        H: Handler<C>,
    {
        listener.set_nonblocking(true)?;
        let local_addr = listener.local_addr()?;
        let limits = LoopLimits {
            max_output: options.max_output,
            auth_timeout: options.auth_timeout,
        };
        let admission = Arc::new(Admission::new(
            options.max_connections,
            options.max_unauthenticated_per_ip,
        ));
        let mut loops = Vec::new();
        let mut threads = Vec::new();
        for i in 0..options.io_threads.max(1) {
            let event_loop = EventLoop::new(
                Arc::clone(&handler),
                limits,
                Arc::clone(&admission),
                options.tls.clone(),
            )?;
            loops.push(event_loop.shared());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("io-{i}"))
                    .spawn(move || event_loop.run())?,
            );
        }
        let poll = Poll::new()?;
        let stop_waker = Arc::new(Waker::new(poll.registry(), STOP)?);
        let mut listener = TcpListener::from_std(listener);
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let acceptor = Acceptor::new(poll, listener, loops.clone(), admission, options.keepalive);
        threads.push(
            std::thread::Builder::new()
                .name("acceptor".into())
                .spawn(move || acceptor.run())?,
        );
        Ok(ServerHandle {
            local_addr,
            stop_waker,
            loops,
            threads,
        })
    }
}

impl<C: Send + Sync + 'static> ServerHandle<C> {
    /// The address the server listens on (useful with port 0). Thread safe.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Shutdown, phase 1: stops accepting (the acceptor thread ends and closes the listener)
    /// and stops reading requests (what arrives from then on is read and discarded, so that
    /// closing later does not reset connections with replies unread). What was read is still
    /// handled and its replies and deliveries are still written, so the caller can let the
    /// workers finish before [`stop`](Self::stop). Thread safe.
    pub fn stop_input(&self) {
        if let Err(e) = self.stop_waker.wake() {
            log::error!("cannot stop the acceptor: {e}");
        }
        for l in &self.loops {
            l.queue(Task::StopReading);
        }
    }

    /// Shutdown, phase 2 (does phase 1 too): every loop writes what it can without waiting
    /// (reporting `on_written`) and exits, dropping its connections without `on_close` (each
    /// handle reports `is_closed`); the frames queued with `deliver` that were not fully
    /// written, including those still in the loop's task queue, go to `on_undelivered`. Waits
    /// for all the threads. Any thread but an IO loop's (it joins them); blocks.
    pub fn stop(self) {
        self.stop_input();
        for l in &self.loops {
            l.queue(Task::Quit);
        }
        for t in self.threads {
            let _ = t.join();
        }
    }
}
