//! A TCP connection as the rest of the program sees it: a thread-safe handle.
//!
//! The socket and its buffers belong to the IO loop thread that owns the connection; this
//! handle only queues work to that loop, so it can be cloned into any thread.

use crate::event_loop::{LoopShared, Task};
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;

/// A shared handle to a connection.
pub type ConnRef<C> = Arc<TcpConnection<C>>;

/// One client connection, with application state `C` (muduo's `context`).
pub struct TcpConnection<C> {
    id: u64,
    pub(crate) token: usize,
    peer: SocketAddr,
    pub(crate) owner: Arc<LoopShared<C>>,
    closed: AtomicBool,
    terminator: AtomicU8,
    context: C,
}

impl<C> TcpConnection<C> {
    pub(crate) fn new(
        id: u64,
        token: usize,
        peer: SocketAddr,
        owner: Arc<LoopShared<C>>,
        context: C,
    ) -> Self {
        TcpConnection {
            id,
            token,
            peer,
            owner,
            closed: AtomicBool::new(false),
            terminator: AtomicU8::new(b'\n'),
            context,
        }
    }

    /// A number unique to this connection for the life of the process. Thread safe.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The peer's address. Thread safe.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The application state attached to this connection. Thread safe (C decides how).
    pub fn context(&self) -> &C {
        &self.context
    }

    /// Whether the connection has closed; sends after that are dropped (or reported, for
    /// [`deliver`](Self::deliver)). Thread safe.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub(crate) fn mark_closed(&self) {
        self.closed.store(true, Ordering::Release);
    }

    /// The byte appended to every frame sent: `\n` by default, NUL for peers that use NUL
    /// (the old C++ client reads replies as C strings). Thread safe.
    pub fn set_terminator(&self, byte: u8) {
        self.terminator.store(byte, Ordering::Relaxed);
    }

    /// The byte appended to every frame sent.
    pub fn terminator(&self) -> u8 {
        self.terminator.load(Ordering::Relaxed)
    }
}

impl<C: Send + Sync + 'static> TcpConnection<C> {
    /// Queues `frame` (plus the terminator) for sending. Thread safe: from another thread it
    /// wakes the owning loop; frames queued by one thread go out in the order queued. Writes
    /// queued in one loop iteration are flushed together in one system call.
    pub fn send(self: &Arc<Self>, frame: Bytes) {
        self.owner.queue(Task::Send {
            conn: Arc::clone(self),
            frame,
            tag: None,
        });
    }

    /// Like [`send`](Self::send), but if the connection turns out to be closed the frame is
    /// handed back through `Handler::on_undelivered` with `tag`, so no message is silently lost.
    pub fn deliver(self: &Arc<Self>, frame: Bytes, tag: u64) {
        self.owner.queue(Task::Send {
            conn: Arc::clone(self),
            frame,
            tag: Some(tag),
        });
    }

    /// Closes the connection once everything queued before has been written (half-close, so
    /// the peer reads all of it). Thread safe.
    pub fn shutdown(self: &Arc<Self>) {
        self.owner.queue(Task::Shutdown(Arc::clone(self)));
    }
}
