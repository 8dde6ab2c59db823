//! One IO thread's loop, muduo's `EventLoop` ("one loop per thread"): poll, read, hand bytes
//! to the handler, run queued tasks (muduo's `doPendingFunctors`), and flush every connection
//! written to in this iteration with one write each, reporting the tagged frames written
//! (`on_written`, from each connection's [`TagQueue`]). Wherever a connection ends (closed by
//! the peer, a read or write error, a cut-off at `max_output`, the loop's end), its tagged
//! frames not fully written go to `on_undelivered`.
//!
//! Thread contracts: [`LoopShared`] is the part other threads may touch (thread safe); the
//! [`EventLoop`] itself, its sockets and buffers are used by its loop thread only, which the
//! loop-thread-only methods check with a `debug_assert!` (muduo's `assertInLoopThread`).

use crate::buffer::Buffer;
use crate::connection::{ConnRef, TcpConnection};
use crate::loop_shared::{LoopShared, Task};
use crate::written::TagQueue;
use crate::Handler;
use bytes::Bytes;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Registry, Token};
use slab::Slab;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

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
    /// Registered for WRITABLE because output is pending.
    want_write: bool,
    /// Queued for a flush at the end of this iteration.
    dirty: bool,
    /// Shut down once output drains; input is discarded from then on.
    closing: bool,
}

/// Limits that protect the server from one connection (from `ServerOptions`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct LoopLimits {
    /// Output bytes queued and not yet written for one connection before it is cut off (a
    /// client that stopped reading must not grow the server's memory without bound).
    pub(crate) max_output: usize,
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
    reading: bool,
    /// Tasks taken with the Quit and queued behind it (see [`leave`](Self::leave)).
    behind_quit: Vec<Task<C>>,
}

impl<C: Default + Send + Sync + 'static, H: Handler<C>> EventLoop<C, H> {
    /// Creates a loop; its [`LoopShared`] is how other threads reach it. Any thread (the loop
    /// is not running yet).
    pub(crate) fn new(handler: Arc<H>, limits: LoopLimits) -> io::Result<Self> {
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
            reading: true,
            behind_quit: Vec::new(),
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
            if let Err(e) = self.poll.poll(&mut events, None) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                log::error!("IO loop poll failed: {e}");
                break;
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
            // A flush that closes a connection (a write error) calls `on_close`, which may
            // queue tasks from this thread, without a wake-up: run them before polling again.
            loop {
                if !self.run_tasks() {
                    self.flush_dirty();
                    break 'run;
                }
                self.flush_dirty();
                if !self.shared.has_tasks() {
                    break;
                }
            }
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
            hand_back(&*self.handler, &mut c);
        }
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
                    Task::Register(stream, peer) => self.register(stream, peer),
                    Task::Send { conn, frame, tag } => self.queue_output(&conn, frame, tag),
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
                    Task::StopReading => self.reading = false,
                    Task::Quit => {
                        self.behind_quit = tasks.collect();
                        return false;
                    }
                }
            }
        }
    }

    /// Adopts an accepted socket (muduo's `TcpConnection::connectEstablished`), tells the
    /// handler, and reads what already arrived. Loop thread only.
    fn register(&mut self, mut stream: TcpStream, peer: SocketAddr) {
        self.assert_in_loop_thread();
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
        entry.insert(Slot {
            stream,
            handle: Arc::clone(&handle),
            input: Buffer::new(),
            output: Buffer::new(),
            tags: None,
            want_write: false,
            dirty: false,
            closing: false,
        });
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

    /// Appends `frame` and the terminator to the connection's output (recording a tagged
    /// frame's place in it) and marks it for the end-of-iteration flush. A connection whose
    /// unwritten output would pass `max_output` is closed instead. A tagged frame that is not
    /// queued goes to `on_undelivered` (after the connection's own unwritten ones, if this
    /// frame cut it off); an untagged one is dropped. Loop thread only.
    fn queue_output(&mut self, conn: &ConnRef<C>, frame: Bytes, tag: Option<u64>) {
        self.assert_in_loop_thread();
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
        if let Some(tag) = tag {
            let buffered = c.output.len();
            c.tags
                .get_or_insert_with(Default::default)
                .push(buffered, frame.len(), tag);
        }
        self.mark_dirty(key);
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

    /// Reads what the socket holds and feeds it to the handler; closes the connection on end
    /// of file or a read error. Loop thread only.
    ///
    /// It stops after a read that returned less than the scratch space, without the final read
    /// that would only return WouldBlock: one system call less per message on the hot path.
    /// That is right with Linux epoll only. mio registers sockets edge-triggered (EPOLLET), and
    /// epoll raises a new event whenever more data arrives, whether or not the last read hit
    /// WouldBlock; a short read took everything the receive queue held at that moment, so no
    /// data is left behind without an event to come. mio itself only promises a new event
    /// after WouldBlock, and other backends rely on that (its Windows one re-arms only then):
    /// on other platforms this must read until WouldBlock.
    ///
    /// With `to_eof` (the peer closed or the socket failed), and while the connection is
    /// closing or the loop has stopped reading (input is then read and discarded), it reads
    /// until end of file, an error or WouldBlock.
    fn read(&mut self, key: usize, to_eof: bool) {
        self.assert_in_loop_thread();
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
                    if n < self.scratch.len() && !to_eof {
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

    /// Writes every dirty connection's output as far as the socket takes it (one system call
    /// each, in the common case), reports the last tagged frame fully written through
    /// `on_written` (one call per connection at most), asks for WRITABLE while output
    /// remains, and completes pending half-closes. Loop thread only.
    fn flush_dirty(&mut self) {
        self.assert_in_loop_thread();
        let dirty = std::mem::take(&mut self.dirty);
        for &key in &dirty {
            let Some(c) = self.conns.get_mut(key) else {
                continue;
            };
            c.dirty = false;
            let wrote = write_out(c);
            // Before a close for a write error: what was written is reported as written.
            if let Some(tag) = c.tags.as_deref_mut().and_then(TagQueue::take_written) {
                self.handler.on_written(&c.handle, tag);
            }
            if let Err(e) = wrote {
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

    /// Removes a connection, dropping its unsent output, and tells the handler (muduo's
    /// `handleClose` and `connectDestroyed`): `on_close`, then `on_undelivered` for each tagged
    /// frame not fully written, in the order queued. Loop thread only.
    fn close(&mut self, key: usize) {
        self.assert_in_loop_thread();
        if !self.conns.contains(key) {
            return;
        }
        let mut c = self.conns.remove(key);
        let _ = self.poll.registry().deregister(&mut c.stream);
        c.handle.mark_closed();
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

/// Writes as much pending output as the socket takes, keeping the tag queue up to date.
fn write_out<C>(c: &mut Slot<C>) -> io::Result<()> {
    while !c.output.is_empty() {
        match c.stream.write(c.output.peek()) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                if let Some(tags) = c.tags.as_deref_mut() {
                    tags.wrote(n, c.output.peek());
                }
                c.output.consume(n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Asks for WRITABLE events only while output is pending (muduo's `enableWriting` /
/// `disableWriting`).
fn update_interest<C>(registry: &Registry, key: usize, c: &mut Slot<C>) -> io::Result<()> {
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
