//! Accepts connections on one thread and spreads them round-robin over the IO loops: muduo's
//! `TcpServer` with its `Acceptor` and `EventLoopThreadPool` (here the acceptor has a thread
//! and a poll of its own rather than running in a base loop).

use crate::event_loop::{EventLoop, LoopLimits};
use crate::loop_shared::{LoopShared, Task};
use crate::Handler;
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

const LISTENER: Token = Token(0);
const STOP: Token = Token(1);

/// How the server runs (muduo's `setThreadNum`, plus the output limit).
#[derive(Debug, Clone, Copy)]
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
        };
        let mut loops = Vec::new();
        let mut threads = Vec::new();
        for i in 0..options.io_threads.max(1) {
            let event_loop = EventLoop::new(Arc::clone(&handler), limits)?;
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
        let acceptor_loops = loops.clone();
        let keepalive = options.keepalive;
        threads.push(
            std::thread::Builder::new()
                .name("acceptor".into())
                .spawn(move || accept_loop(poll, listener, acceptor_loops, keepalive))?,
        );
        Ok(ServerHandle {
            local_addr,
            stop_waker,
            loops,
            threads,
        })
    }
}

/// Accepts until told to stop, handing each socket to the next loop (round-robin). On an
/// accept error (typically running out of file descriptors) it backs off 50 ms instead of
/// spinning (the pending connection stays in the backlog). Acceptor thread only.
fn accept_loop<C>(
    mut poll: Poll,
    listener: TcpListener,
    loops: Vec<Arc<LoopShared<C>>>,
    keepalive: Option<Duration>,
) {
    let mut events = Events::with_capacity(64);
    let mut next = 0usize;
    let mut backoff: Option<Duration> = None;
    let mut warned = false;
    'outer: loop {
        if let Err(e) = poll.poll(&mut events, backoff) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            log::error!("acceptor poll failed: {e}");
            break;
        }
        if events.iter().any(|e| e.token() == STOP) {
            break 'outer;
        }
        backoff = None;
        loop {
            match listener.accept() {
                Ok((stream, peer)) => {
                    warned = false;
                    if let Some(idle) = keepalive {
                        if let Err(e) = set_keepalive(&stream, idle) {
                            log::warn!("cannot set TCP keepalive for {peer}: {e}");
                        }
                    }
                    loops[next % loops.len()].queue(Task::Register(stream, peer));
                    next = next.wrapping_add(1);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if !warned {
                        log::warn!("accept failed ({e}); retrying shortly");
                        warned = true;
                    }
                    backoff = Some(Duration::from_millis(50));
                    break;
                }
            }
        }
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

/// Turns TCP keepalive on for an accepted socket (see [`ServerOptions::keepalive`]).
fn set_keepalive(stream: &mio::net::TcpStream, idle: Duration) -> io::Result<()> {
    let interval = (idle / 6).max(Duration::from_secs(1));
    let params = socket2::TcpKeepalive::new()
        .with_time(idle)
        .with_interval(interval)
        .with_retries(3);
    socket2::SockRef::from(stream).set_tcp_keepalive(&params)
}
