//! What the server knows about one connection: who is logged in on it, and how many of its
//! requests are still queued on a worker, and what it has been sent from the log.

use super::backpressure::Flow;
use super::outbox::Outbox;
use super::throttle::TokenBucket;
use crate::sync::{LockExt, RwLockExt};
use crate::worker_pool::Job;
use clusterchat_net::ConnRef;
use clusterchat_proto::UserId;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

/// The logged-in user of a connection.
#[derive(Debug, Clone)]
pub(crate) struct Login {
    /// The user's id: every request on the connection acts as this user.
    pub(crate) id: UserId,
    /// The user's name, stamped on the messages they send.
    pub(crate) name: Arc<str>,
    /// The presence claim, as the user row's `session` column holds it (`"<node>/<connection id>"`).
    pub(crate) claim: Arc<str>,
}

/// Per-connection state (the connection's `context`).
#[derive(Default)]
pub(crate) struct ConnContext {
    login: RwLock<Option<Login>>,
    pending: AtomicUsize,
    outbox: Outbox,
    /// When input last arrived (Unix seconds), for the heartbeat.
    last_input: AtomicU64,
    /// Whether the connection has sent a PING (and is watched by the heartbeat).
    heartbeat: AtomicBool,
    /// Its requests in progress, for input backpressure.
    flow: Flow,
    /// The login gate's and the chat rate limit's state.
    admission: Mutex<Admission>,
}

/// A turn at password hashing (see `server::login_gate`): dropping it lets the next one in.
pub(crate) type HashTurn = Box<dyn Send>;

/// What the login gate and the chat rate limit keep per connection.
#[derive(Default)]
pub(crate) struct Admission {
    /// Work of this connection queued behind a LOGIN or REG that waits for its turn at
    /// password hashing (see `server::login_gate`): `Some` while one waits. A job marked
    /// `true` needs a turn itself.
    pub(crate) held: Option<VecDeque<(bool, Job)>>,
    /// The turn of the login or registration running now, given back once it has hashed.
    pub(crate) turn: Option<HashTurn>,
    /// The chat messages this connection may send now (`--max-msgs-per-sec`).
    pub(crate) chats: Option<TokenBucket>,
}

/// A connection of the chat server.
pub(crate) type ChatConn = ConnRef<ConnContext>;

impl ConnContext {
    /// The user logged in on this connection, if any.
    pub(crate) fn login(&self) -> Option<Login> {
        self.login.read_locked().clone()
    }

    /// Notes that input arrived now. IO thread, once per read.
    pub(crate) fn touch(&self) {
        self.last_input.store(now_secs(), Ordering::Relaxed);
    }

    /// When input last arrived (Unix seconds; 0 before any).
    pub(crate) fn last_input(&self) -> u64 {
        self.last_input.load(Ordering::Relaxed)
    }

    /// Marks the connection as heartbeating; true the first time.
    pub(crate) fn start_heartbeat(&self) -> bool {
        !self.heartbeat.swap(true, Ordering::AcqRel)
    }

    /// Its requests in progress (see [`super::backpressure`]).
    pub(crate) fn flow(&self) -> &Flow {
        &self.flow
    }

    /// What this connection has been sent from the message log.
    pub(crate) fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// The login gate's and the chat rate limit's state (lock briefly).
    pub(crate) fn admission(&self) -> MutexGuard<'_, Admission> {
        self.admission.locked()
    }

    /// Gives back the turn at password hashing, if this connection's running request has one
    /// (a login or registration, once it has hashed).
    pub(crate) fn end_hash_turn(&self) {
        let turn = self.admission().turn.take();
        drop(turn); // outside the lock: it may start another connection's login
    }

    /// Whether a user is logged in on this connection.
    pub(crate) fn is_logged_in(&self) -> bool {
        self.login.read_locked().is_some()
    }

    /// Records a successful login.
    pub(crate) fn set_login(&self, login: Login) {
        *self.login.write_locked() = Some(login);
    }

    /// Forgets the login and returns it.
    pub(crate) fn take_login(&self) -> Option<Login> {
        self.login.write_locked().take()
    }

    /// Requests of this connection queued on a worker and not finished. While it is non-zero,
    /// new requests must queue behind them (never take the IO-thread fast path).
    pub(crate) fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    /// Counts a request handed to a worker.
    pub(crate) fn begin_job(&self) {
        self.pending.fetch_add(1, Ordering::AcqRel);
    }

    /// Counts a worker request done (after its replies are queued).
    pub(crate) fn end_job(&self) {
        self.pending.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The clock in whole Unix seconds.
pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
