//! The reactor, after muduo: one [`EventLoop`](event_loop) per IO thread ("one loop per
//! thread"), a [`TcpServer`](tcp_server::TcpServer) that accepts and hands each connection to a
//! loop round-robin, and [`TcpConnection`](connection::TcpConnection), whose `send` is thread
//! safe. This layer moves bytes; it knows nothing of JSON or chat.

mod buffer;
mod connection;
mod event_loop;
mod tcp_server;

pub use buffer::Buffer;
pub use bytes::Bytes;
pub use connection::{ConnRef, TcpConnection};
pub use tcp_server::{ServerHandle, ServerOptions, TcpServer};

/// The application's side of the reactor. Every callback runs on the connection's IO loop
/// thread, so it must not block: hand blocking work to another thread.
pub trait Handler<C>: Send + Sync + 'static {
    /// A new connection was registered with its loop.
    fn on_connection(&self, _conn: &ConnRef<C>) {}

    /// Bytes arrived. `input` holds everything not consumed before; return how many bytes were
    /// consumed (the rest is kept and offered again with the next read).
    fn on_message(&self, conn: &ConnRef<C>, input: &[u8]) -> usize;

    /// The connection is closed (peer gone, error, overflow or shutdown). Called once.
    fn on_close(&self, conn: &ConnRef<C>);

    /// A frame queued with [`TcpConnection::deliver`] could not be written because the
    /// connection had closed: the application can store it elsewhere.
    fn on_undelivered(&self, _conn: &ConnRef<C>, _frame: Bytes, _tag: u64) {}
}
