//! A TCP connection as the rest of the program sees it: a thread-safe handle, the public face
//! of muduo's `TcpConnection`.
//!
//! The socket and its buffers belong to the IO loop thread that owns the connection (the
//! `EventLoop`); this handle only queues work to that loop, so it can be cloned into any
//! thread. Every method here is thread safe.
//!
//! Frames go out with [`send`](TcpConnection::send), or with
//! [`deliver`](TcpConnection::deliver) when the application must know what became of each one
//! (a message it has to account for): a delivered frame carries a `u64` tag and is reported
//! exactly once, on the owning loop's thread, either as written (`Handler::on_written`, whose
//! tag is cumulative: the last frame fully taken by the kernel, all frames queued before it
//! included) or as not written (`Handler::on_undelivered`, with the frame, when the connection
//! was closed, was cut off at `max_output`, closed, or the server stopped before the frame's
//! last byte was written). "Written" means the socket's `write` accepted the bytes; it says
//! nothing of whether the peer read them.
//!
//! Two controls protect the server from its peers: [`stop_read`](TcpConnection::stop_read) /
//! [`start_read`](TcpConnection::start_read) (input backpressure: while stopped the loop reads
//! nothing from the socket, so TCP flow control holds the peer back), and
//! [`set_authenticated`](TcpConnection::set_authenticated) (unauthenticated connections are
//! counted per source address and closed after `ServerOptions::auth_timeout`).

use crate::admission::{Admission, AuthState};
use crate::loop_shared::{LoopShared, Task};
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};

/// Room for one frame prefix (see [`TcpConnection::set_frame_prefix`]), in bytes.
pub const MAX_PREFIX: usize = 16;

/// Writes the prefix of a frame whose payload is `len` bytes (the frame and its terminator)
/// into `out` and returns how many bytes it wrote (at most [`MAX_PREFIX`]). A plain function:
/// it runs on the loop thread for every frame queued, and must be cheap.
pub type FramePrefix = fn(len: usize, out: &mut [u8; MAX_PREFIX]) -> usize;

/// A shared handle to a connection (muduo's `TcpConnectionPtr`).
pub type ConnRef<C> = Arc<TcpConnection<C>>;

/// One client connection, with application state `C` (muduo's `context`). The state is
/// created with `C::default()` when the connection is registered; use interior mutability
/// for what changes.
pub struct TcpConnection<C> {
    id: u64,
    pub(crate) token: usize,
    peer: SocketAddr,
    /// Index of the listener that accepted it.
    listener: usize,
    /// Written before each frame once set (a transport's framing, e.g. WebSocket's header).
    prefix: OnceLock<FramePrefix>,
    pub(crate) owner: Arc<LoopShared<C>>,
    closed: AtomicBool,
    terminator: AtomicU8,
    /// Reading stopped by [`stop_read`](Self::stop_read).
    read_stopped: AtomicBool,
    pub(crate) auth: AuthState,
    pub(crate) admission: Arc<Admission>,
    context: C,
}

impl<C> TcpConnection<C> {
    /// A handle for a connection the loop is registering. The owning loop's thread.
    pub(crate) fn new(
        id: u64,
        token: usize,
        peer: SocketAddr,
        listener: usize,
        owner: Arc<LoopShared<C>>,
        admission: Arc<Admission>,
        context: C,
    ) -> Self {
        TcpConnection {
            id,
            token,
            peer,
            listener,
            prefix: OnceLock::new(),
            owner,
            closed: AtomicBool::new(false),
            terminator: AtomicU8::new(b'\n'),
            read_stopped: AtomicBool::new(false),
            auth: AuthState::new(),
            admission,
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

    /// The index of the listener that accepted this connection, in the order given to
    /// [`TcpServer::start_on`](crate::TcpServer::start_on) (0 for [`TcpServer::start`]'s one):
    /// which port, and so which protocol, the peer came in on. Thread safe.
    pub fn listener(&self) -> usize {
        self.listener
    }

    /// Frames every later frame sent with [`send`](Self::send) or
    /// [`deliver`](Self::deliver): the loop writes `prefix(frame length + 1)` before each
    /// frame and its terminator (WebSocket's frame header, say, after an upgrade; the reactor
    /// knows nothing of what the prefix means). Set once for the life of the connection: false
    /// if it was already set. The loop reads it when it appends a frame to the output, so it
    /// applies to the frames it has not yet taken from its queue. Thread safe.
    pub fn set_frame_prefix(&self, prefix: FramePrefix) -> bool {
        self.prefix.set(prefix).is_ok()
    }

    /// The prefix set with [`set_frame_prefix`](Self::set_frame_prefix), if any. Thread safe.
    pub fn frame_prefix(&self) -> Option<FramePrefix> {
        self.prefix.get().copied()
    }

    /// The application state attached to this connection (muduo's `getContext`; there is no
    /// `setContext`: the state lives as long as the connection). Thread safe (`C` decides how
    /// its contents are shared).
    pub fn context(&self) -> &C {
        &self.context
    }

    /// Whether the connection has closed; sends after that are dropped (or reported, for
    /// [`deliver`](Self::deliver)). Thread safe.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Records that the loop dropped the connection. Loop thread only (the owning loop's).
    pub(crate) fn mark_closed(&self) {
        self.closed.store(true, Ordering::Release);
    }

    /// Sets the byte appended to every frame sent: `\n` by default, NUL for peers that use
    /// NUL (the old C++ client reads replies as C strings). The loop reads it when it appends
    /// a frame to the output, so it applies to the frames the loop has not yet taken from its
    /// queue. Thread safe.
    pub fn set_terminator(&self, byte: u8) {
        self.terminator.store(byte, Ordering::Relaxed);
    }

    /// The byte appended to every frame sent. Thread safe.
    pub fn terminator(&self) -> u8 {
        self.terminator.load(Ordering::Relaxed)
    }

    /// Whether the loop reads from this connection (muduo's `isReading`): false between
    /// [`stop_read`](Self::stop_read) and [`start_read`](Self::start_read). Thread safe.
    pub fn is_reading(&self) -> bool {
        !self.read_stopped.load(Ordering::SeqCst)
    }

    /// Stops reading (muduo's `stopRead`): input backpressure, for a peer that sends faster
    /// than its requests are handled. From the loop thread inside `Handler::on_message` it
    /// takes effect when that call returns: the loop reads nothing more from the socket (the
    /// kernel's buffer fills and TCP flow control holds the peer back) and drops its read
    /// interest; the input `on_message` did not consume is kept, and offered again after
    /// [`start_read`](Self::start_read). From another thread, it takes effect at the loop's
    /// next read of this connection. A connection that is not reading is still written to,
    /// and still closed by `auth_timeout`. Thread safe.
    pub fn stop_read(&self) {
        self.read_stopped.store(true, Ordering::SeqCst);
    }

    /// Whether the peer has authenticated, as the application last said through
    /// [`set_authenticated`](Self::set_authenticated) (false for a new connection). Thread
    /// safe.
    pub fn is_authenticated(&self) -> bool {
        self.auth.is_authenticated()
    }
}

impl<C: Send + Sync + 'static> TcpConnection<C> {
    /// Queues `frame` (plus the terminator) for sending (muduo's `send`; unlike it, the frame
    /// is queued even on the loop thread). Thread safe: from another thread it wakes the owning
    /// loop; frames queued by one thread go out in the order queued. Output queued in one loop
    /// iteration is written at the end of it, in one system call when the socket takes it all.
    /// Dropped if the connection is closed, or closed for it if its unwritten output would pass
    /// `ServerOptions::max_output`.
    pub fn send(self: &Arc<Self>, frame: Bytes) {
        self.owner.queue(Task::Send {
            conn: Arc::clone(self),
            frame,
            tag: None,
        });
    }

    /// Like [`send`](Self::send), but the frame is accounted for: once all its bytes
    /// (terminator included) have been written to the socket, `Handler::on_written` reports
    /// `tag` or a later frame's (the report is cumulative, in the order the loop queued the
    /// frames: for one calling thread, the order of its calls); if instead the connection
    /// turns out to be closed, is cut off by this frame passing `max_output`, or closes (the
    /// peer, an error, a cut-off, `ServerHandle::stop`) before the frame is fully written, the
    /// frame is handed back through `Handler::on_undelivered` with `tag`. Either way on the
    /// owning loop's thread, exactly once per frame, so no message is silently lost. (One gap:
    /// a frame queued after `stop` has ended the owning loop is dropped, as no thread is left
    /// to report it.) The tag is the caller's business (the reactor only reports it). Thread
    /// safe.
    pub fn deliver(self: &Arc<Self>, frame: Bytes, tag: u64) {
        self.owner.queue(Task::Send {
            conn: Arc::clone(self),
            frame,
            tag: Some(tag),
        });
    }

    /// Queues `bytes` as they are: no prefix, no terminator, not accounted for (an HTTP
    /// response, a WebSocket control frame), in order with the frames queued by the same
    /// thread. Dropped if the connection is closed, or closed for it past
    /// `ServerOptions::max_output`. Thread safe.
    pub fn send_raw(self: &Arc<Self>, bytes: Bytes) {
        self.owner.queue(Task::SendRaw(Arc::clone(self), bytes));
    }

    /// Half-closes the connection once everything queued before has been written (muduo's
    /// `shutdown`: the writing side is shut down, so the peer reads all of it and then end of
    /// file); what the peer sends from then on is discarded, and the connection closes (with
    /// `on_close`) when the peer closes its side. Thread safe.
    pub fn shutdown(self: &Arc<Self>) {
        self.owner.queue(Task::Shutdown(Arc::clone(self)));
    }

    /// Closes the connection at once (muduo's `forceClose`): for a peer that stopped
    /// answering, where a [`shutdown`](Self::shutdown) would wait for it forever. Output not
    /// yet written is dropped (tagged frames go to `on_undelivered`), then `on_close` runs.
    /// Thread safe.
    pub fn force_close(self: &Arc<Self>) {
        self.owner.queue(Task::ForceClose(Arc::clone(self)));
    }

    /// Reads again after [`stop_read`](Self::stop_read) (muduo's `startRead`): the loop offers
    /// the input kept back to `Handler::on_message`, then reads the socket. Does nothing if
    /// reading was not stopped. Thread safe (it wakes the owning loop).
    pub fn start_read(self: &Arc<Self>) {
        if self.read_stopped.swap(false, Ordering::SeqCst) {
            self.owner.queue(Task::StartRead(Arc::clone(self)));
        }
    }

    /// Tells the reactor whether the peer has authenticated (what that means is the
    /// application's business: a login). A new connection is unauthenticated: it counts
    /// against `ServerOptions::max_unauthenticated_per_ip` for its source address and is
    /// closed once it has stayed unauthenticated for `ServerOptions::auth_timeout`. An
    /// authenticated one is exempt from both. Setting it back to false (a logout) counts it
    /// again and restarts its timer (it may then be over the per-address limit: that limit
    /// refuses new connections only). No effect on a closed connection. Thread safe.
    pub fn set_authenticated(self: &Arc<Self>, authenticated: bool) {
        let changed = self
            .admission
            .set_authenticated(&self.auth, self.peer.ip(), authenticated);
        if changed && !authenticated {
            self.owner.queue(Task::Unauthenticated(Arc::clone(self)));
        }
    }
}
