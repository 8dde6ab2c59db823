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
//! Delivery accounting: a frame queued with [`TcpConnection::deliver`] carries a tag and is
//! reported exactly once, as written to the socket ([`Handler::on_written`], cumulative: at
//! most one call per connection per flush, with the tag of the last frame fully written) or
//! as not written ([`Handler::on_undelivered`], with the frame). Frames queued with
//! [`TcpConnection::send`] are not accounted for. Connections that never use tags pay a
//! check per write.
//!
//! Protection from peers ([`ServerOptions`]): output per connection is capped (`max_output`);
//! each connection is read at most 64 KiB per loop iteration, so one flood does not starve
//! the loop's other connections; a handler applies input backpressure with
//! [`TcpConnection::stop_read`] / [`TcpConnection::start_read`]; the acceptor closes new
//! connections at once past `max_connections` or `max_unauthenticated_per_ip` (the
//! application says who is authenticated with [`TcpConnection::set_authenticated`]) and never
//! spins when out of file descriptors; connections unauthenticated for `auth_timeout` are
//! closed.
//!
//! TLS ([`ServerOptions::tls`]): a server can speak TLS on all its connections; the session
//! sits between the socket and the buffers (rustls, decrypting into the input and encrypting
//! from the output at each flush), so handlers, framing, tags and every limit above work
//! unchanged, on plaintext.
//!
//! Several ports, one reactor: [`TcpServer::start_on`] accepts on several listeners with the
//! same loops and limits, and each connection knows which listener took it
//! ([`TcpConnection::listener`]), so one handler can speak a protocol per port. For a
//! transport that frames messages itself (WebSocket), [`TcpConnection::set_frame_prefix`]
//! writes a prefix before every later frame (without copying the frame, which may be shared
//! by many receivers), and [`TcpConnection::send_raw`] queues bytes with no prefix and no
//! terminator (an HTTP response, a control frame).
//!
//! Monitoring: [`ServerHandle::stats`] (or a detached [`NetStatsSource`]) reads connections
//! admitted, refused and open, and the output waiting in the loops, from counters the reactor
//! keeps where it does its bookkeeping anyway (no cost per message).
//!
//! `examples/echo.rs` and `examples/broadcast.rs` are the smallest servers on the reactor alone.

mod acceptor;
mod admission;
mod buffer;
mod connection;
mod event_loop;
mod loop_shared;
mod stats;
mod tcp_server;
mod tls;
mod written;

pub use buffer::Buffer;
pub use bytes::Bytes;
pub use connection::{ConnRef, FramePrefix, TcpConnection, MAX_PREFIX};
/// The TLS library of `ServerOptions::tls`, re-exported so callers build its config with the
/// same version.
pub use rustls;
pub use stats::{NetStats, NetStatsSource};
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

    /// Every connection that was ready in this loop iteration has been read and the queued
    /// tasks have run; the output they queued is written next. Called after every round of
    /// tasks of an iteration, so after every `on_message` before the loop polls again: the
    /// place to finish in bulk what the reads started one by one (a batch of chat messages
    /// stored in one transaction), so that its replies leave in this iteration's writes. Like
    /// Netty's `channelReadComplete`, but once per loop rather than per connection. Loop
    /// thread.
    fn on_reads_done(&self) {}

    /// Frames queued with [`TcpConnection::deliver`] have been written to the socket (the
    /// kernel took all their bytes, terminator included; that is all it means: whether the
    /// peer reads them is unknown). `tag` is the tag of the last such frame, in the order the
    /// loop queued them, fully written since the previous call for this connection: every
    /// tagged frame queued before it was written too. At most one call per connection after
    /// each flush that completed a tagged frame; frames queued with
    /// [`send`](TcpConnection::send) are never reported. Like muduo's `WriteCompleteCallback`,
    /// but it says which frames, and fires without waiting for the output to drain. Loop
    /// thread.
    ///
    /// Each tagged frame is reported exactly once: here (by the call that names its tag or a
    /// later frame's), or through [`on_undelivered`](Self::on_undelivered). The reactor only
    /// compares positions in the output, never tags: tags that increase in the order frames
    /// are queued (say, a counter per connection) make the report easy to use.
    fn on_written(&self, _conn: &ConnRef<C>, _tag: u64) {}

    /// The connection stayed unauthenticated for `ServerOptions::auth_timeout` (see
    /// [`TcpConnection::set_authenticated`]); it is closed right after this call. What this
    /// returns is written first, with the terminator, as far as the socket takes it at once (a
    /// last word for the peer: why it is closed). Loop thread.
    fn on_auth_timeout(&self, _conn: &ConnRef<C>) -> Option<Bytes> {
        None
    }

    /// A frame queued with [`TcpConnection::deliver`] was not written: the connection was
    /// already closed, this frame cut it off at `max_output`, or it closed (the peer, an error,
    /// a cut-off, or [`ServerHandle::stop`]) before all of the frame's bytes were written. The
    /// frame comes back without its terminator, and the application can store it elsewhere.
    /// A connection's frames come back in the order queued, after its `on_close` (if it gets
    /// one) and after the `on_written` calls for the frames before them. Loop thread.
    fn on_undelivered(&self, _conn: &ConnRef<C>, _frame: Bytes, _tag: u64) {}
}
