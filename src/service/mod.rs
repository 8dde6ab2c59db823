//! The chat service: one file per capability (user, friend, group, chat), all acting through
//! the [`Store`](crate::store::Store) and [`Bus`](crate::bus::Bus) traits only.
//!
//! Handlers here run on worker threads (they may block on the database, Redis or password
//! hashing), except [`ChatService::try_fast_chat`], which the IO thread calls for the hot path.

pub(crate) mod backpressure;
mod chat;
pub(crate) mod context;
mod cursors;
mod friend;
mod group;
mod heartbeat;
mod history;
mod log_writer;
mod names;
mod nodes;
pub(crate) mod online;
mod outbox;
pub(crate) mod password;
mod presence;
mod relay;
mod retries;
mod sync;
mod takeover;
#[cfg(test)]
mod testing;
pub(crate) mod throttle;
mod user;

use crate::bus::{BusError, SharedBus};
use crate::store::{SharedStore, StoreError};
use crate::worker_pool::WorkerPool;
use clusterchat_net::Bytes;
use clusterchat_proto::request::Request;
use clusterchat_proto::{errno, msgid, reply, Envelope, RequestKind};
pub(crate) use context::{ChatConn, ConnContext, Login};
use online::{OnlineUsers, UserLocks};
use password::Hasher;
use serde_json::value::RawValue;
use serde_json::Value;
use std::sync::Arc;

/// A request that failed: the `errno` and message the client gets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{errmsg} (errno {errno})")]
pub(crate) struct ServiceError {
    /// One of [`clusterchat_proto::errno`].
    pub(crate) errno: i64,
    /// A sentence for the user.
    pub(crate) errmsg: String,
}

impl ServiceError {
    /// An error with this errno and message.
    pub(crate) fn new(errno: i64, errmsg: impl Into<String>) -> Self {
        ServiceError {
            errno,
            errmsg: errmsg.into(),
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        log::warn!("{e}");
        ServiceError::new(errno::UNAVAILABLE, e.to_string())
    }
}

impl From<BusError> for ServiceError {
    fn from(e: BusError) -> Self {
        log::warn!("{e}");
        ServiceError::new(errno::UNAVAILABLE, e.to_string())
    }
}

/// What a successful handler wants sent back.
enum Outcome {
    /// An ACK if the request carried a `reqid`, else nothing (the original's silence).
    Ack,
    /// This reply, always.
    Reply(Value),
    /// The handler has sent its reply itself (login must, before it finishes joining).
    Sent,
}

type Handled = Result<Outcome, ServiceError>;

/// Everything the handlers share. One per server process.
pub(crate) struct ChatService {
    store: SharedStore,
    bus: SharedBus,
    online: OnlineUsers,
    locks: UserLocks,
    hasher: Hasher,
    node: String,
    retries: retries::Retries,
    workers: Arc<WorkerPool>,
    writer: log_writer::LogWriter,
    cursors: cursors::Cursors,
    /// Largest chat text accepted (`--max-message`).
    max_message: usize,
    /// Bytes a backlog stream keeps in flight (see [`sync`]).
    sync_window: usize,
    /// Connections watched by the heartbeat.
    heartbeats: heartbeat::Heartbeats,
    /// Failed logins, per account and per address.
    logins: throttle::LoginThrottle,
    /// Registrations per address.
    registrations: throttle::RegistrationLimit,
    /// Kicked connections not yet closed.
    kicked: takeover::Kicked,
    /// The server's metrics.
    metrics: Arc<crate::metrics::Metrics>,
}

/// The limits on logins and registrations (`--max-login-failures`, `--login-delay`,
/// `--max-registrations-per-min`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct AccountLimits {
    /// Failed logins of an account or address before delays start (0: no limit).
    pub(crate) max_login_failures: u32,
    /// The first delay; it doubles with each further failure.
    pub(crate) login_delay: std::time::Duration,
    /// Registrations per address and minute (0: no limit).
    pub(crate) registrations_per_min: u32,
}

impl Default for AccountLimits {
    fn default() -> Self {
        AccountLimits {
            max_login_failures: 5,
            login_delay: std::time::Duration::from_secs(1),
            registrations_per_min: 30,
        }
    }
}

impl ChatService {
    /// A service over `store` and `bus`, for the server named `node`.
    pub(crate) fn new(
        store: SharedStore,
        bus: SharedBus,
        node: String,
        hasher: Hasher,
        workers: Arc<WorkerPool>,
        max_message: usize,
        max_output: usize,
    ) -> Self {
        ChatService {
            store,
            bus,
            online: OnlineUsers::default(),
            locks: UserLocks::default(),
            hasher,
            node,
            retries: retries::Retries::default(),
            workers,
            writer: log_writer::LogWriter::default(),
            cursors: cursors::Cursors::default(),
            max_message,
            sync_window: sync::window(max_output),
            heartbeats: heartbeat::Heartbeats::default(),
            logins: throttle::LoginThrottle::new(0, std::time::Duration::ZERO),
            registrations: throttle::RegistrationLimit::new(0),
            kicked: takeover::Kicked::default(),
            metrics: Arc::default(),
        }
        .with_account_limits(AccountLimits::default())
    }

    /// The same service with these limits on logins and registrations.
    pub(crate) fn with_account_limits(mut self, limits: AccountLimits) -> Self {
        self.logins = throttle::LoginThrottle::new(limits.max_login_failures, limits.login_delay);
        self.registrations = throttle::RegistrationLimit::new(limits.registrations_per_min);
        self
    }

    /// The same service counting in `metrics` (give it the store and bus that
    /// [`Metrics::count_store`](crate::metrics::Metrics::count_store) and `count_bus` return).
    pub(crate) fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// The server's metrics.
    pub(crate) fn metrics(&self) -> &crate::metrics::Metrics {
        &self.metrics
    }

    /// The store's connection pool, for the metrics.
    pub(crate) fn pool_state(&self) -> Option<crate::store::PoolState> {
        self.store.pool_state()
    }

    /// The users online on this server.
    pub(crate) fn online(&self) -> &OnlineUsers {
        &self.online
    }

    /// Handles one request frame on a worker thread, replying on `conn`.
    pub(crate) fn handle(self: &Arc<Self>, conn: &ChatConn, frame: &[u8]) {
        let env: Envelope = match serde_json::from_slice(frame) {
            Ok(env) => env,
            Err(e) => {
                let err = ServiceError::new(errno::MALFORMED, format!("malformed JSON: {e}"));
                return send_error(conn, &err, None, None);
            }
        };
        let Some(id) = env.msgid() else {
            let err = ServiceError::new(errno::UNKNOWN_MSGID, "missing or non-integer msgid");
            return send_error(conn, &err, None, env.reqid);
        };
        if id == msgid::PING {
            return self.ping(conn, env.reqid);
        }
        let result = match RequestKind::from_msgid(id) {
            None => Err(ServiceError::new(
                errno::UNKNOWN_MSGID,
                format!("unknown msgid {id}"),
            )),
            Some(kind) if kind.needs_login() && !conn.context().is_logged_in() => {
                Err(ServiceError::new(
                    errno::NOT_LOGGED_IN,
                    "log in first: this request needs a logged-in session",
                ))
            }
            Some(RequestKind::Login) => self.counted_login(conn, frame, env.reqid),
            Some(RequestKind::Register) => self.register(conn, frame),
            Some(RequestKind::Logout) => self.logout(conn),
            Some(RequestKind::OneChat) => self.one_chat(conn, &env, frame),
            Some(RequestKind::AddFriend) => self.add_friend(conn, frame),
            Some(RequestKind::CreateGroup) => self.create_group(conn, frame),
            Some(RequestKind::AddGroup) => self.join_group(conn, frame),
            Some(RequestKind::GroupChat) => self.group_chat(conn, &env, frame),
            Some(RequestKind::Recv) => self.recv(conn, frame),
            Some(RequestKind::History) => self.history(conn, frame),
            Some(RequestKind::Members) => self.members(conn, frame),
        };
        match result {
            Ok(Outcome::Ack) => {
                if let Some(reqid) = env.reqid {
                    send_value(conn, &reply::ack(id, reqid));
                }
            }
            Ok(Outcome::Sent) => {}
            Ok(Outcome::Reply(mut v)) => {
                reply::echo_reqid(&mut v, env.reqid);
                send_value(conn, &v)
            }
            Err(e) => send_error(conn, &e, Some(id), env.reqid),
        }
    }

    /// Called when a connection closed: its user (if any) goes offline at once.
    pub(crate) fn disconnected(&self, conn: &ChatConn) {
        self.forget_heartbeat(conn);
        if let Some(login) = conn.context().take_login() {
            self.end_session(conn, &login);
        }
    }

    /// The net layer's report that `conn`'s tagged frames up to `tag` are in the kernel: a
    /// legacy session's cursors move. Called on the IO thread; never blocks.
    pub(crate) fn written(&self, conn: &ChatConn, tag: u64) {
        let delivered = conn
            .context()
            .outbox()
            .written(tag, |user, advances| self.cursors.record(user, advances));
        self.metrics.delivered(delivered.one, delivered.group);
    }

    /// Sets every user of this server offline (graceful shutdown).
    pub(crate) fn release_all_sessions(&self) -> Result<u64, StoreError> {
        self.cursors.flush(&*self.store);
        self.store.release_node(&self.node)
    }

    /// Deletes messages older than `days` days, in small batches with pauses between them so
    /// that the log writer is never held up for long. Called by the housekeeper.
    pub(crate) fn prune_log(&self, days: u32) {
        const BATCH: usize = 500;
        // With no retention, only expired client message ids go.
        let before = if days == 0 {
            i64::MIN
        } else {
            chat::now_ms() - i64::from(days) * 86_400_000
        };
        let mut total = 0;
        loop {
            match self.store.prune(before, BATCH) {
                Ok(n) => {
                    total += n;
                    if (n as usize) < BATCH {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => {
                    log::warn!("log pruner: {e}");
                    break;
                }
            }
        }
        if total > 0 {
            log::info!("pruned {total} messages older than {days} days");
        }
    }
}

/// Serialises and queues one reply.
pub(crate) fn send_value(conn: &ChatConn, value: &Value) {
    conn.send(Bytes::from(
        serde_json::to_vec(value).expect("JSON serialises"),
    ));
}

/// Queues an error reply. LOGIN and REG failures use their own ack msgids with `errno` and
/// `errmsg`, as the original does; everything else gets an ERROR.
pub(crate) fn send_error(
    conn: &ChatConn,
    e: &ServiceError,
    request: Option<i64>,
    reqid: Option<&RawValue>,
) {
    let mut v = match request {
        Some(msgid::LOGIN) => reply::ack_error(msgid::LOGIN_ACK, e.errno, &e.errmsg),
        Some(msgid::REG) => reply::ack_error(msgid::REG_ACK, e.errno, &e.errmsg),
        _ => reply::error(e.errno, &e.errmsg, request, None),
    };
    reply::echo_reqid(&mut v, reqid);
    send_value(conn, &v);
}

/// Parses a request body, naming the bad field on failure.
fn body<R: Request>(frame: &[u8]) -> Result<R, ServiceError> {
    R::parse(frame)
        .map_err(|msg| ServiceError::new(errno::BAD_FIELD, format!("bad request: {msg}")))
}

/// The logged-in user of `conn` (handlers after the login check).
fn current(conn: &ChatConn) -> Result<Login, ServiceError> {
    conn.context()
        .login()
        .ok_or_else(|| ServiceError::new(errno::NOT_LOGGED_IN, "log in first"))
}
