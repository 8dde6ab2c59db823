//! One IO thread's loop: poll, read, hand bytes to the handler, run queued tasks, and flush
//! every connection written to in this iteration with one write each.

use crate::buffer::Buffer;
use crate::connection::{ConnRef, TcpConnection};
use crate::Handler;
use bytes::Bytes;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use slab::Slab;
use std::cell::Cell;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// The waker's token; connections use slab keys, which never reach it.
const WAKER: Token = Token(usize::MAX);
/// One read's scratch space, shared by all connections of the loop.
const SCRATCH: usize = 64 * 1024;

static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// The loop running on this thread (its shared part's address), so that a loop queuing
    /// work to itself skips the wake-up system call.
    static CURRENT_LOOP: Cell<usize> = const { Cell::new(0) };
}

/// Work for a loop, queued from any thread.
pub(crate) enum Task<C> {
    /// Adopt a freshly accepted socket.
    Register(TcpStream, SocketAddr),
    /// Write a frame; `tag` set means "report it if the connection is gone".
    Send {
        conn: ConnRef<C>,
        frame: Bytes,
        tag: Option<u64>,
    },
    /// Half-close after flushing.
    Shutdown(ConnRef<C>),
    /// Stop taking requests from every connection (shutdown, phase 1): what arrives is read
    /// and discarded (so that closing later does not reset the connection and destroy replies
    /// the peer has not read yet); requests already taken are still answered.
    StopReading,
    /// Write what can be written without waiting, then leave the loop (shutdown, phase 2).
    Quit,
}

/// The part of a loop that other threads touch: its task queue and its waker.
pub(crate) struct LoopShared<C> {
    inbox: Mutex<Vec<Task<C>>>,
    waker: Waker,
    wake_pending: AtomicBool,
}

impl<C> LoopShared<C> {
    /// Locks the task queue, ignoring poison. The lock is only ever held for a `push` or a
    /// `take` of the Vec, so the queue is consistent even if a holder panicked; and a panic on
    /// another thread (a handler's, a worker's) must never turn into a panic on an IO thread.
    fn inbox(&self) -> MutexGuard<'_, Vec<Task<C>>> {
        self.inbox.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues a task and wakes the loop unless it is the caller's own loop or a wake-up is
    /// already pending. Thread safe.
    pub(crate) fn queue(&self, task: Task<C>) {
        self.inbox().push(task);
        let own = CURRENT_LOOP.with(|c| c.get()) == self as *const _ as usize;
        if !own && !self.wake_pending.swap(true, Ordering::AcqRel) {
            if let Err(e) = self.waker.wake() {
                log::error!("cannot wake IO loop: {e}");
            }
        }
    }
}

/// A connection as its loop holds it.
struct Conn<C> {
    stream: TcpStream,
    handle: ConnRef<C>,
    input: Buffer,
    output: Buffer,
    /// Registered for WRITABLE because output is pending.
    want_write: bool,
    /// Queued for a flush at the end of this iteration.
    dirty: bool,
    /// Shut down once output drains; input is discarded from then on.
    closing: bool,
}

/// Limits that protect the server from one connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LoopLimits {
    /// Output bytes queued for one connection before it is cut off (a client that stopped
    /// reading must not grow the server's memory without bound).
    pub(crate) max_output: usize,
}

/// One IO thread's event loop. Created on, and used only by, its own thread.
pub(crate) struct EventLoop<C, H> {
    poll: Poll,
    shared: Arc<LoopShared<C>>,
    conns: Slab<Conn<C>>,
    dirty: Vec<usize>,
    scratch: Vec<u8>,
    handler: Arc<H>,
    limits: LoopLimits,
    reading: bool,
}

impl<C: Default + Send + Sync + 'static, H: Handler<C>> EventLoop<C, H> {
    /// Creates a loop; its [`LoopShared`] is how other threads reach it.
    pub(crate) fn new(handler: Arc<H>, limits: LoopLimits) -> io::Result<Self> {
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        Ok(EventLoop {
            poll,
            shared: Arc::new(LoopShared {
                inbox: Mutex::new(Vec::new()),
                waker,
                wake_pending: AtomicBool::new(false),
            }),
            conns: Slab::new(),
            dirty: Vec::new(),
            scratch: vec![0; SCRATCH],
            handler,
            limits,
            reading: true,
        })
    }

    pub(crate) fn shared(&self) -> Arc<LoopShared<C>> {
        Arc::clone(&self.shared)
    }

    /// Runs until a [`Task::Quit`]. Loop thread only.
    pub(crate) fn run(mut self) {
        CURRENT_LOOP.with(|c| c.set(Arc::as_ptr(&self.shared) as usize));
        let mut events = Events::with_capacity(1024);
        loop {
            if let Err(e) = self.poll.poll(&mut events, None) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                log::error!("IO loop poll failed: {e}");
                return;
            }
            for event in events.iter() {
                match event.token() {
                    WAKER => {}
                    Token(key) => {
                        let ended = event.is_read_closed() || event.is_error();
                        if event.is_readable() || ended {
                            self.read(key, ended);
                        }
                        if event.is_writable() {
                            self.mark_dirty(key);
                        }
                    }
                }
            }
            if !self.run_tasks() {
                self.flush_dirty();
                break;
            }
            self.flush_dirty();
        }
        // Leaving: drop every socket without callbacks; the server releases sessions itself.
        for conn in self.conns.drain() {
            conn.handle.mark_closed();
        }
    }

    /// Drains the task queue until it stays empty (handlers may queue more). False on Quit.
    fn run_tasks(&mut self) -> bool {
        loop {
            self.shared.wake_pending.store(false, Ordering::Release);
            let tasks = std::mem::take(&mut *self.shared.inbox());
            if tasks.is_empty() {
                return true;
            }
            for task in tasks {
                match task {
                    Task::Register(stream, peer) => self.register(stream, peer),
                    Task::Send { conn, frame, tag } => self.queue_output(&conn, frame, tag),
                    Task::Shutdown(conn) => {
                        if let Some(key) = self.live_key(&conn) {
                            self.conns[key].closing = true;
                            self.mark_dirty(key);
                        }
                    }
                    Task::StopReading => self.reading = false,
                    Task::Quit => return false,
                }
            }
        }
    }

    fn register(&mut self, mut stream: TcpStream, peer: SocketAddr) {
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, Token(key), Interest::READABLE)
        {
            log::warn!("cannot register connection from {peer}: {e}");
            return;
        }
        let _ = stream.set_nodelay(true);
        let id = NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed);
        let handle = Arc::new(TcpConnection::new(
            id,
            key,
            peer,
            Arc::clone(&self.shared),
            C::default(),
        ));
        entry.insert(Conn {
            stream,
            handle: Arc::clone(&handle),
            input: Buffer::new(),
            output: Buffer::new(),
            want_write: false,
            dirty: false,
            closing: false,
        });
        self.handler.on_connection(&handle);
        // Bytes may have arrived before registration.
        self.read(key, false);
    }

    /// The slab key of `conn` if it is still open on this loop.
    fn live_key(&self, conn: &ConnRef<C>) -> Option<usize> {
        match self.conns.get(conn.token) {
            Some(c) if Arc::ptr_eq(&c.handle, conn) => Some(conn.token),
            _ => None,
        }
    }

    fn queue_output(&mut self, conn: &ConnRef<C>, frame: Bytes, tag: Option<u64>) {
        let Some(key) = self.live_key(conn) else {
            if let Some(tag) = tag {
                self.handler.on_undelivered(conn, frame, tag);
            }
            return;
        };
        let c = &mut self.conns[key];
        if c.output.len() + frame.len() + 1 > self.limits.max_output {
            log::warn!(
                "connection {} from {} is not reading: {} bytes queued, closing it",
                c.handle.id(),
                c.handle.peer(),
                c.output.len()
            );
            self.close(key);
            if let Some(tag) = tag {
                self.handler.on_undelivered(conn, frame, tag);
            }
            return;
        }
        c.output.append(&frame);
        c.output.append(&[c.handle.terminator()]);
        self.mark_dirty(key);
    }

    fn mark_dirty(&mut self, key: usize) {
        if let Some(c) = self.conns.get_mut(key) {
            if !c.dirty {
                c.dirty = true;
                self.dirty.push(key);
            }
        }
    }

    /// Reads until the socket is drained, feeding the handler. Loop thread only.
    ///
    /// A read that returns less than the scratch space means the socket's queue was empty at
    /// that moment, and (edge-triggered) any later data raises a new event, so the usual extra
    /// read that only returns WouldBlock is skipped: one system call less per message on the
    /// hot path. With `to_eof` (the peer closed or the socket failed) it reads until the end.
    fn read(&mut self, key: usize, to_eof: bool) {
        loop {
            let Some(c) = self.conns.get_mut(key) else {
                return;
            };
            match c.stream.read(&mut self.scratch) {
                Ok(0) => return self.close(key),
                Ok(n) => {
                    if c.closing || !self.reading {
                        continue; // shutting down: discard what the peer still sends
                    }
                    let handle = Arc::clone(&c.handle);
                    if c.input.is_empty() {
                        let used = self.handler.on_message(&handle, &self.scratch[..n]);
                        if let Some(c) = self.conns.get_mut(key) {
                            c.input.append(&self.scratch[used..n]);
                        }
                    } else {
                        c.input.append(&self.scratch[..n]);
                        let used = self.handler.on_message(&handle, c.input.peek());
                        if let Some(c) = self.conns.get_mut(key) {
                            c.input.consume(used);
                        }
                    }
                    if handle.is_closed() || (n < self.scratch.len() && !to_eof) {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::debug!("read error on connection {}: {e}", c.handle.id());
                    return self.close(key);
                }
            }
        }
    }

    /// Writes every dirty connection's output once (one system call each, in the common
    /// case), then completes pending half-closes. Loop thread only.
    fn flush_dirty(&mut self) {
        let dirty = std::mem::take(&mut self.dirty);
        for &key in &dirty {
            let Some(c) = self.conns.get_mut(key) else {
                continue;
            };
            c.dirty = false;
            if let Err(e) = write_out(c) {
                log::debug!("write error on connection {}: {e}", c.handle.id());
                self.close(key);
                continue;
            }
            if let Err(e) = update_interest(self.poll.registry(), key, c) {
                log::warn!("cannot update interest: {e}");
                self.close(key);
                continue;
            }
            if c.closing && c.output.is_empty() {
                let _ = c.stream.shutdown(Shutdown::Write);
            }
        }
        self.dirty = dirty;
        self.dirty.clear();
    }

    /// Removes a connection and tells the handler. Loop thread only.
    fn close(&mut self, key: usize) {
        if !self.conns.contains(key) {
            return;
        }
        let mut c = self.conns.remove(key);
        let _ = self.poll.registry().deregister(&mut c.stream);
        c.handle.mark_closed();
        self.handler.on_close(&c.handle);
    }
}

/// Writes as much pending output as the socket takes.
fn write_out<C>(c: &mut Conn<C>) -> io::Result<()> {
    while !c.output.is_empty() {
        match c.stream.write(c.output.peek()) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => c.output.consume(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Asks for WRITABLE events only while output is pending (level of interest follows state).
fn update_interest<C>(registry: &Registry, key: usize, c: &mut Conn<C>) -> io::Result<()> {
    let want = !c.output.is_empty();
    if want != c.want_write {
        let interest = if want {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        registry.reregister(&mut c.stream, Token(key), interest)?;
        c.want_write = want;
    }
    Ok(())
}
