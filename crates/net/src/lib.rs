//! The reactor, after muduo: one event loop per IO thread ("one loop per thread", muduo's
//! `EventLoop`, internal here), a [`TcpServer`] that accepts and hands each connection to a
//! loop round-robin, [`TcpConnection`], whose `send` is thread safe, and [`Buffer`]. This
//! layer moves bytes; it knows nothing of JSON or chat.
//!
//! Thread model: a connection's socket and buffers belong to its loop's thread; every
//! [`Handler`] callback for it runs there and must not block. The handles
//! ([`ConnRef`], [`ServerHandle`]) are thread safe: from another thread, `send` queues the
//! frame to the owning loop and wakes it. Each method's doc comment states its contract.
//!
//! `examples/echo.rs` and `examples/broadcast.rs` are the smallest servers on the reactor alone.

mod buffer;
mod connection;
mod event_loop;
mod loop_shared;
mod tcp_server;

pub use buffer::Buffer;
pub use bytes::Bytes;
pub use connection::{ConnRef, TcpConnection};
pub use tcp_server::{ServerHandle, ServerOptions, TcpServer};

/// The application's side of the reactor: muduo's `ConnectionCallback`, `MessageCallback`
/// and (for the application) the disconnect half of `ConnectionCallback`, as one trait.
/// Every callback runs on the connection's IO loop thread, so it must not block: hand blocking
/// work to another thread.
pub trait Handler<C>: Send + Sync + 'static {
    /// A new connection was registered with its loop (muduo's `ConnectionCallback`, connected).
    /// Loop thread.
    fn on_connection(&self, _conn: &ConnRef<C>) {}

    /// Bytes arrived (muduo's `MessageCallback`). `input` holds everything not consumed before
    /// plus what just arrived; return how many bytes were consumed, at most `input.len()` (the
    /// rest is kept and offered again with the next read). Loop thread.
    fn on_message(&self, conn: &ConnRef<C>, input: &[u8]) -> usize;

    /// The connection closed: the peer closed or reset it, a read or write failed, or its
    /// output passed `max_output` (muduo's `ConnectionCallback`, disconnected; its
    /// `CloseCallback` is internal). Called at most once per connection, and not for
    /// connections still open when [`ServerHandle::stop`] ends the loops. Loop thread.
    fn on_close(&self, conn: &ConnRef<C>);

    /// A frame queued with [`TcpConnection::deliver`] was not written because the connection
    /// had closed or was cut off by it: the application can store it elsewhere. Loop thread.
    fn on_undelivered(&self, _conn: &ConnRef<C>, _frame: Bytes, _tag: u64) {}
}
