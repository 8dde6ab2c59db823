//! One IO thread's loop, muduo's `EventLoop` ("one loop per thread"): poll, read, hand bytes
//! to the handler, run queued tasks (muduo's `doPendingFunctors`), and flush every connection
//! written to in this iteration with one write each, reporting the tagged frames written
//! (`on_written`, from each connection's [`TagQueue`]). Wherever a connection ends (closed by
//! the peer, a read or write error, a cut-off at `max_output`, the loop's end), its tagged
//! frames not fully written go to `on_undelivered`.
//!
//! Input is read with a budget per connection per iteration (see [`input`]), so one flooding
//! peer gets its share of a loop and no more; a connection whose handler called `stop_read`
//! is not read until `start_read`. Connections that stay unauthenticated past the login
//! timeout are closed (see [`auth_timer`]).
//!
//! Thread contracts: [`LoopShared`] is the part other threads may touch (thread safe); the
//! [`EventLoop`] itself, its sockets and buffers are used by its loop thread only, which the
//! loop-thread-only methods check with a `debug_assert!` (muduo's `assertInLoopThread`).

mod auth_timer;
mod input;
mod output;

use crate::admission::Admission;
use crate::buffer::Buffer;
use crate::connection::{ConnRef, TcpConnection};
use crate::loop_shared::{LoopShared, Task};
use crate::tls::TlsSession;
use crate::written::TagQueue;
use crate::Handler;
use auth_timer::AuthTimers;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The waker's token; connections use slab keys, which never reach it.
const WAKER: Token = Token(usize::MAX);
/// One read's scratch space, shared by all connections of the loop.
const SCRATCH: usize = 64 * 1024;

static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(1);

/// A connection as its loop holds it (its slot in the loop's slab): the socket and buffers that
/// only the loop thread touches, beside the thread-safe [`TcpConnection`] handle.
struct Slot<C> {
    stream: TcpStream,
    handle: ConnRef<C>,
    input: Buffer,
    output: Buffer,
    /// The tagged frames in `output` (`deliver`'s), created with the first one: a connection
    /// that never uses tags pays a pointer and a check.
    tags: Option<Box<TagQueue>>,
    /// The TLS session, on a TLS listener's connections (`None`: plain TCP, which pays a
    /// pointer and a check per read and write).
    tls: Option<Box<TlsSession>>,
    /// What the poll watches for (`None`: deregistered, while reading is stopped and no
    /// output is pending).
    interest: Option<Interest>,
    /// Queued for a flush at the end of this iteration.
    dirty: bool,
    /// Shut down once output drains; input is discarded from then on.
    closing: bool,
    /// Reading stopped (`stop_read` seen): read interest dropped, input kept back.
    paused: bool,
    /// In the loop's ready list: to be read next iteration (its read budget ran out, or
    /// reading restarted).
    ready: bool,
    /// Offer the input kept back to the handler before reading (reading restarted).
    reoffer: bool,
    /// The poll reported the peer's end of file or an error: read to the end.
    ended: bool,
}

/// Limits that protect the server from one connection (from `ServerOptions`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct LoopLimits {
    /// Output bytes queued and not yet written for one connection before it is cut off (a
    /// client that stopped reading must not grow the server's memory without bound).
    pub(crate) max_output: usize,
    /// How long a connection may stay unauthenticated before it is closed.
    pub(crate) auth_timeout: Option<Duration>,
}

/// One IO thread's event loop, muduo's `EventLoop` with the `TcpConnection` internals (socket,
/// input and output buffers) of the connections it owns. Created by `TcpServer::start` and
/// moved to its thread, which [`run`](Self::run) makes the loop thread; used only there.
pub(crate) struct EventLoop<C, H> {
    poll: Poll,
    shared: Arc<LoopShared<C>>,
    conns: Slab<Slot<C>>,
    dirty: Vec<usize>,
    scratch: Vec<u8>,
    handler: Arc<H>,
    limits: LoopLimits,
    admission: Arc<Admission>,
    /// Every connection of this loop speaks TLS with this config (`ServerOptions::tls`).
    tls: Option<Arc<rustls::ServerConfig>>,
    reading: bool,
    /// Connections to read in the next iteration whatever the poll says (their budget ran
    /// out with input left in the socket, or reading restarted).
    ready: Vec<usize>,
    /// When unauthenticated connections are due to be closed.
    auth_timers: AuthTimers,
    /// Tasks taken with the Quit and queued behind it (see [`leave`](Self::leave)).
    behind_quit: Vec<Task<C>>,
    /// Output bytes of all its connections not yet written (published once per iteration).
    output_bytes: usize,
}

impl<C: Default + Send + Sync + 'static, H: Handler<C>> EventLoop<C, H> {
    /// Creates a loop; its [`LoopShared`] is how other threads reach it. Any thread (the loop
    /// is not running yet).
    pub(crate) fn new(
        handler: Arc<H>,
        limits: LoopLimits,
        admission: Arc<Admission>,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> io::Result<Self> {
        let poll = Poll::new()?;
        let shared = Arc::new(LoopShared::new(poll.registry(), WAKER)?);
        Ok(EventLoop {
            poll,
            shared,
            conns: Slab::new(),
            dirty: Vec::new(),
            scratch: vec![0; SCRATCH],
            handler,
            limits,
            admission,
            tls,
            reading: true,
            ready: Vec::new(),
            auth_timers: AuthTimers::default(),
            behind_quit: Vec::new(),
            output_bytes: 0,
        })
    }

    /// The handle other threads queue tasks with. Any thread (before the loop is moved to its
    /// thread).
    pub(crate) fn shared(&self) -> Arc<LoopShared<C>> {
        Arc::clone(&self.shared)
    }

    /// Runs until a [`Task::Quit`] (muduo's `loop`). The calling thread becomes the loop
    /// thread; one loop per thread.
    pub(crate) fn run(mut self) {
        self.shared.enter();
        let mut events = Events::with_capacity(1024);
        'run: loop {
            if let Err(e) = self.poll.poll(&mut events, self.poll_timeout()) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                log::error!("IO loop poll failed: {e}");
                break;
            }
            // Those whose budget ran out last time: read after this poll's events, and put
            // back in the list (for the next iteration) if theirs runs out again.
            let ready = std::mem::take(&mut self.ready);
            for event in events.iter() {
                match event.token() {
                    WAKER => {}
                    Token(key) => {
                        let ended = event.is_read_closed() || event.is_error();
                        if event.is_readable() || ended {
                            self.on_readable(key, ended);
                        }
                        if event.is_writable() {
                            self.mark_dirty(key);
                        }
                    }
                }
            }
            self.read_ready(ready);
            self.expire_auth_timers();
            // A flush that closes a connection (a write error) calls `on_close`, which may
            // queue tasks from this thread, without a wake-up: run them before polling again.
            loop {
                if !self.run_tasks() {
                    self.flush_dirty();
                    break 'run;
                }
                // After every read of this iteration (those restarted by a task included),
                // before its output is written.
                self.handler.on_reads_done();
                self.flush_dirty();
                if !self.shared.has_tasks() {
                    break;
                }
            }
            self.shared.set_output_bytes(self.output_bytes);
        }
        self.leave();
    }

    /// The loop's end: drops every connection without `on_close` (the application releases
    /// its state itself) but hands its unwritten tagged frames to `on_undelivered`, and so the
    /// tagged frames of the tasks behind the Quit and of those still queued (the connections
    /// are closed by then). Tasks queued after it are dropped: no thread would run them. Loop
    /// thread only.
    fn leave(&mut self) {
        self.assert_in_loop_thread();
        for mut c in self.conns.drain() {
            c.handle.mark_closed();
            self.admission.release(&c.handle.auth, c.handle.peer().ip());
            hand_back(&*self.handler, &mut c);
        }
        self.output_bytes = 0;
        self.shared.set_output_bytes(0);
        let mut tasks = std::mem::take(&mut self.behind_quit);
        loop {
            for task in tasks {
                if let Task::Send {
                    conn,
                    frame,
                    tag: Some(tag),
                } = task
                {
                    self.handler.on_undelivered(&conn, frame, tag);
                }
            }
            // The handler may have queued more.
            tasks = self.shared.take();
            if tasks.is_empty() {
                break;
            }
        }
        self.shared.leave();
    }

    /// muduo's `assertInLoopThread`, in debug builds.
    fn assert_in_loop_thread(&self) {
        debug_assert!(
            self.shared.is_in_loop_thread(),
            "EventLoop method called outside its loop thread"
        );
    }

    /// Runs queued tasks until the queue stays empty (handlers may queue more), muduo's
    /// `doPendingFunctors`. False on Quit, keeping the tasks behind it for
    /// [`leave`](Self::leave). Loop thread only.
    fn run_tasks(&mut self) -> bool {
        self.assert_in_loop_thread();
        loop {
            let tasks = self.shared.take();
            if tasks.is_empty() {
                return true;
            }
            let mut tasks = tasks.into_iter();
            while let Some(task) = tasks.next() {
                match task {
                    Task::Register(stream, peer, listener) => self.register(stream, peer, listener),
                    Task::Send { conn, frame, tag } => self.queue_output(&conn, frame, tag),
                    Task::SendRaw(conn, bytes) => self.queue_raw(&conn, &bytes),
                    Task::Shutdown(conn) => {
                        if let Some(key) = self.live_key(&conn) {
                            self.conns[key].closing = true;
                            self.mark_dirty(key);
                        }
                    }
                    Task::ForceClose(conn) => {
                        if let Some(key) = self.live_key(&conn) {
                            self.close(key);
                        }
                    }
                    Task::StartRead(conn) => {
                        if let Some(key) = self.live_key(&conn) {
                            self.resume(key);
                        }
                    }
                    Task::Unauthenticated(conn) => {
                        if let (Some(key), Some(timeout)) =
                            (self.live_key(&conn), self.limits.auth_timeout)
                        {
                            self.auth_timers.start(&conn, key, timeout);
                        }
                    }
                    Task::StopReading => self.stop_reading(),
                    Task::Quit => {
                        self.behind_quit = tasks.collect();
                        return false;
                    }
                }
            }
        }
    }

    /// Adopts an accepted socket (muduo's `TcpConnection::connectEstablished`; the acceptor
    /// has admitted it), starts its login timer, tells the handler, and reads what already
    /// arrived. Loop thread only.
    fn register(&mut self, mut stream: TcpStream, peer: SocketAddr, listener: usize) {
        self.assert_in_loop_thread();
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        let id = NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed);
        let handle = Arc::new(TcpConnection::new(
            id,
            key,
            peer,
            listener,
            Arc::clone(&self.shared),
            Arc::clone(&self.admission),
            C::default(),
        ));
        let tls = match self.tls.as_ref().map(TlsSession::new).transpose() {
            Ok(tls) => tls.map(Box::new),
            Err(e) => {
                log::warn!("cannot start TLS for connection from {peer}: {e}");
                self.admission.release(&handle.auth, peer.ip());
                return;
            }
        };
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, Token(key), Interest::READABLE)
        {
            log::warn!("cannot register connection from {peer}: {e}");
            self.admission.release(&handle.auth, peer.ip());
            return;
        }
        let _ = stream.set_nodelay(true);
        entry.insert(Slot {
            stream,
            handle: Arc::clone(&handle),
            input: Buffer::new(),
            output: Buffer::new(),
            tags: None,
            tls,
            interest: Some(Interest::READABLE),
            dirty: false,
            closing: false,
            paused: false,
            ready: false,
            reoffer: false,
            ended: false,
        });
        if let Some(timeout) = self.limits.auth_timeout {
            self.auth_timers.start(&handle, key, timeout);
        }
        self.handler.on_connection(&handle);
        // Bytes may have arrived before registration: take them now rather than after the
        // next poll (which reports them too).
        self.read(key, false);
    }

    /// The slab key of `conn` if it is still open on this loop (a key may have been reused by
    /// a newer connection, hence the pointer comparison). Loop thread only.
    fn live_key(&self, conn: &ConnRef<C>) -> Option<usize> {
        self.assert_in_loop_thread();
        match self.conns.get(conn.token) {
            Some(c) if Arc::ptr_eq(&c.handle, conn) => Some(conn.token),
            _ => None,
        }
    }

    /// Schedules a connection for the flush at the end of this iteration. Loop thread only.
    fn mark_dirty(&mut self, key: usize) {
        self.assert_in_loop_thread();
        if let Some(c) = self.conns.get_mut(key) {
            if !c.dirty {
                c.dirty = true;
                self.dirty.push(key);
            }
        }
    }

    /// Removes a connection, dropping its unsent output, and tells the handler (muduo's
    /// `handleClose` and `connectDestroyed`): `on_close`, then `on_undelivered` for each tagged
    /// frame not fully written, in the order queued. Loop thread only.
    fn close(&mut self, key: usize) {
        self.assert_in_loop_thread();
        if !self.conns.contains(key) {
            return;
        }
        let mut c = self.conns.remove(key);
        self.output_bytes = self.output_bytes.saturating_sub(c.output.len());
        if c.interest.is_some() {
            let _ = self.poll.registry().deregister(&mut c.stream);
        }
        c.handle.mark_closed();
        self.admission.release(&c.handle.auth, c.handle.peer().ip());
        self.handler.on_close(&c.handle);
        hand_back(&*self.handler, &mut c);
    }
}

/// Hands the tagged frames of a removed connection that were not fully written to
/// `on_undelivered`, in the order queued. Loop thread only.
fn hand_back<C, H: Handler<C>>(handler: &H, c: &mut Slot<C>) {
    if let Some(tags) = c.tags.as_deref_mut() {
        debug_assert!(
            tags.take_written().is_none(),
            "a written tag was not reported"
        );
        let handle = &c.handle;
        tags.hand_back(c.output.peek(), |frame, tag| {
            handler.on_undelivered(handle, frame, tag)
        });
    }
}
