//! The cluster's bus: Redis publish/subscribe, routed by server.
//!
//! * Each server subscribes to its own channel (`<prefix>node:<id>`), on a dedicated
//!   connection read by its own thread ([`super::redis_subscriber`]).
//! * A presence directory (`<prefix>presence`, user -> session) says which server holds which
//!   user: [`Bus::enter`] and [`Bus::leave`] keep this server's entries
//!   ([`super::redis_directory`]), which it writes again after Redis lost them (a restart).
//! * Messages go through the publisher thread ([`super::redis_publisher`]): one call of the
//!   routing script ([`super::redis_route`]) per batch, one PUBLISH per destination server.
//! * Each server keeps a key `<prefix>node:<id>` alive with a 3 s expiry, refreshed every
//!   second: a server killed with SIGKILL stops refreshing it, so within seconds the others
//!   may take over the sessions it left behind.
//! * Every connection authenticates with the URL's user and password and selects its database:
//!   the pool's through the redis crate, the subscriber's and publisher's raw sockets through
//!   [`super::redis_endpoint`], on every (re)connection. The password is never logged.
//! * While Redis is unreachable, every call fails fast (no per-message timeouts) and the
//!   outage and the recovery are each logged once. A connection Redis closed while it was kept
//!   (its `timeout`, `CLIENT KILL`, a proxy's idle cut) is no outage: a command that fails on
//!   it before any answer came is sent once more on a new connection ([`with_conn`], and the
//!   publisher's rounds), and only that second failure counts.
//! * At start the server deletes the directory entries its node's previous run left
//!   ([`Bus::forget_node`] of itself, see `ChatService::release_stale_sessions`).

use super::redis_directory::Directory;
use super::redis_endpoint::Endpoint;
use super::redis_names::Names;
use super::redis_publisher::Publisher;
use super::redis_subscriber::Subscriber;
use super::{Bus, BusError, Inbound, Outgoing, PublishDone};
use crate::sync::LockExt;
use clusterchat_proto::UserId;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a node's liveness key lives without a refresh.
const NODE_TTL_SECS: u64 = 3;
/// After a failed call, how long calls fail fast before Redis is tried again.
const BACKOFF: Duration = Duration::from_millis(500);
/// How long a TCP connect to Redis may take at start.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a blocking [`Bus::publish`] waits for its outcome.
const PUBLISH_WAIT: Duration = Duration::from_secs(3);

/// Redis-backed bus for one node of a cluster.
pub(crate) struct RedisBus {
    shared: Arc<Shared>,
    subscriber: Arc<Subscriber>,
    publisher: Mutex<Publisher>,
    heartbeat: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// What the publisher side and the heartbeat thread share.
struct Shared {
    pool: Pool,
    names: Names,
    node: String,
    health: Arc<Health>,
    stopping: AtomicBool,
    /// This server's presence directory entries.
    directory: Directory,
}

/// Fail-fast state and once-per-outage logging.
pub(super) struct Health {
    /// Milliseconds since the epoch until which calls fail without trying.
    down_until_ms: AtomicU64,
    /// Whether the current outage has been logged.
    reported: AtomicBool,
}

impl Health {
    /// Redis taken as reachable until a call fails.
    pub(super) fn new() -> Health {
        Health {
            down_until_ms: AtomicU64::new(0),
            reported: AtomicBool::new(false),
        }
    }

    /// Fails fast while a recent failure says Redis is down.
    pub(super) fn check(&self) -> Result<(), BusError> {
        if now_ms() < self.down_until_ms.load(Ordering::Acquire) {
            return Err(BusError::Unavailable("Redis is unreachable".into()));
        }
        Ok(())
    }

    /// Records a failure (logged once per outage) and returns it as a [`BusError`].
    pub(super) fn failed(&self, what: &str, e: impl std::fmt::Display) -> BusError {
        self.down_until_ms
            .store(now_ms() + BACKOFF.as_millis() as u64, Ordering::Release);
        if !self.reported.swap(true, Ordering::AcqRel) {
            log::warn!("Redis unavailable ({what}: {e}); cross-server messages are stored offline until it is back");
        }
        BusError::Unavailable(format!("{what}: {e}"))
    }

    /// Runs `f` on a pooled connection (see [`with_conn`]), failing fast while Redis is
    /// down; a failure is recorded ([`Self::failed`], `what` names the command).
    pub(super) fn query<T>(
        &self,
        pool: &Pool,
        what: &str,
        f: impl FnMut(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, BusError> {
        self.check()?;
        with_conn(pool, f).map_err(|e| match e {
            PoolError::NoConnection(e) => self.failed("no connection", e),
            PoolError::Command(e) => self.failed(what, e),
        })
    }

    /// Records a success (logs the recovery once).
    pub(super) fn succeeded(&self) {
        if self.reported.swap(false, Ordering::AcqRel) {
            log::info!("Redis is reachable again");
        }
    }
}

/// The pool of connections for the directory and the liveness keys.
pub(super) type Pool = r2d2::Pool<redis::Client>;

/// Why a command on a pooled connection failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum PoolError {
    /// No connection could be had (Redis unreachable).
    #[error("no connection: {0}")]
    NoConnection(#[from] r2d2::Error),
    /// The command failed: an error reply, or the connection broke again.
    #[error(transparent)]
    Command(#[from] redis::RedisError),
}

/// Runs `f` on a pooled connection. If it fails because the connection was closed under us
/// (an IO error that says so, not an error reply: the pool checks a connection with a PING
/// when it hands it out, but Redis may close it between the PING and the command), `f` runs
/// once more on another connection (the pool drops the broken one). Every command sent
/// through here may safely run twice.
pub(super) fn with_conn<T>(
    pool: &Pool,
    mut f: impl FnMut(&mut redis::Connection) -> redis::RedisResult<T>,
) -> Result<T, PoolError> {
    let mut c = pool.get()?;
    match f(&mut c) {
        Err(e) if e.is_connection_dropped() => {
            log::debug!("pooled Redis connection closed ({e}); trying again on another");
            drop(c);
            Ok(f(&mut *pool.get()?)?)
        }
        done => Ok(done?),
    }
}

/// Whether `e` says the connection was closed under us (by Redis's `timeout`, CLIENT KILL, a
/// proxy's idle cut, a restart): a command that failed so, before any answer, may be sent
/// once more on a new connection. A timeout is not one (Redis may be running the command).
pub(super) fn closed(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        BrokenPipe | ConnectionReset | ConnectionAborted | UnexpectedEof | NotConnected
    )
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Checks that the Redis `url` names can be reached and accepts this server's credentials
/// (AUTH, SELECT, PING on one connection), writing nothing: start-up calls it before it opens
/// the database, so a server that cannot join its cluster changes nothing.
pub(crate) fn check(url: &str) -> Result<(), BusError> {
    let (endpoint, _) = Endpoint::parse(url)?;
    endpoint.connect(CONNECT_TIMEOUT, "check")?;
    Ok(())
}

impl RedisBus {
    /// Connects to `url` as node `node`, with every channel and key under `prefix`. Fails if
    /// Redis cannot be reached now or refuses the URL's credentials (a cluster node should not
    /// start blind).
    pub(crate) fn connect(url: &str, prefix: &str, node: &str) -> Result<RedisBus, BusError> {
        let (endpoint, client) = Endpoint::parse(url)?;
        let endpoint = Arc::new(endpoint.for_node(node));
        // The raw handshake first: its errors say what is wrong (unreachable, wrong password,
        // NOAUTH) better than the pool's.
        endpoint.connect(CONNECT_TIMEOUT, "check")?;
        let pool = r2d2::Pool::builder()
            .max_size(16)
            .min_idle(Some(1))
            .connection_timeout(Duration::from_secs(1))
            // Failures are logged once per outage by `Health`, not per reconnection attempt.
            .error_handler(Box::new(r2d2::NopErrorHandler))
            .build(client)
            .map_err(|e| BusError::Unavailable(format!("{}: {e}", endpoint.shown())))?;
        let health = Arc::new(Health::new());
        let shared = Arc::new(Shared {
            pool: pool.clone(),
            names: Names::new(prefix),
            node: node.to_string(),
            health: Arc::clone(&health),
            stopping: AtomicBool::new(false),
            directory: Directory::start(pool.clone(), Names::new(prefix).directory(), health)
                .map_err(|e| BusError::Unavailable(format!("cannot start a thread: {e}")))?,
        });
        shared.beat()?;
        let restore = {
            let shared = Arc::clone(&shared);
            Box::new(move || shared.restore())
        };
        let subscriber = Arc::new(Subscriber::start(
            Arc::clone(&endpoint),
            shared.names.node_channel(node),
            restore,
        )?);
        let publisher = Publisher::start(
            Arc::clone(&endpoint),
            Arc::clone(&shared.health),
            &shared.names,
            node,
        )
        .map_err(|e| BusError::Unavailable(format!("cannot start a thread: {e}")))?;
        let heartbeat = {
            let shared = Arc::clone(&shared);
            let subscriber = Arc::clone(&subscriber);
            std::thread::Builder::new()
                .name("redis-heartbeat".into())
                .spawn(move || shared.heartbeat_loop(&subscriber))
                .map_err(|e| BusError::Unavailable(format!("cannot start a thread: {e}")))?
        };
        log::info!(
            "cluster bus: Redis at {}, channels and keys under {prefix:?}",
            endpoint.shown()
        );
        Ok(RedisBus {
            shared,
            subscriber,
            publisher: Mutex::new(publisher),
            heartbeat: Mutex::new(Some(heartbeat)),
        })
    }
}

impl Shared {
    fn node_key(&self, node: &str) -> String {
        self.names.node_key(node)
    }

    /// Refreshes this node's liveness key.
    fn beat(&self) -> Result<(), BusError> {
        let key = self.node_key(&self.node);
        self.health.query(&self.pool, "SET", |c| {
            redis::cmd("SET")
                .arg(&key)
                .arg(1)
                .arg("EX")
                .arg(NODE_TTL_SECS)
                .query::<()>(c)
        })?;
        self.health.succeeded();
        Ok(())
    }

    /// Writes this server's liveness key and every directory entry it holds again.
    fn restore(&self) -> Result<(), BusError> {
        self.beat()?;
        self.directory.restore()
    }

    fn heartbeat_loop(&self, subscriber: &Subscriber) {
        let mut next = Instant::now();
        while !self.stopping.load(Ordering::Acquire) {
            if Instant::now() >= next {
                let _ = self.beat();
                // An entry that failed to be written, or entries Redis lost, while the
                // subscriber stayed connected: write them all, then read the log for everyone
                // (they may have missed pushes).
                let lost = self.directory.is_lost() || self.directory.vanished();
                if lost && self.restore().is_ok() {
                    log::info!("presence directory written again");
                    subscriber.report_restored();
                }
                next = Instant::now() + Duration::from_secs(1);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let key = self.node_key(&self.node);
        let _ = with_conn(&self.pool, |c| redis::cmd("DEL").arg(&key).query::<()>(c));
    }
}

impl Bus for RedisBus {
    fn enter(&self, user: UserId, session: &str) {
        self.shared.directory.enter(user, session);
    }

    fn leave(&self, user: UserId, session: &str) {
        self.shared.directory.leave(user, session);
    }

    fn publish(&self, users: &[UserId], frame: &[u8]) -> Result<bool, BusError> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        // Waited for (nudges, kicks, presence at logout): through the directory, never a
        // cache (a nudge or kick that reaches a server the user left is not sent again).
        self.publisher.locked().publish(
            users.into(),
            bytes::Bytes::copy_from_slice(frame),
            Box::new(move |outcome| {
                let _ = tx.send(outcome);
            }),
            false,
        );
        rx.recv_timeout(PUBLISH_WAIT)
            .unwrap_or_else(|_| Err(BusError::Unavailable("no answer from Redis".into())))
    }

    fn publish_async(&self, users: Arc<[UserId]>, frame: bytes::Bytes, done: PublishDone) {
        self.publisher.locked().publish(users, frame, done, true);
    }

    fn publish_batch(&self, batch: Vec<Outgoing>) {
        self.publisher.locked().publish_batch(batch);
    }

    fn reroute(&self, users: Arc<[UserId]>, frame: bytes::Bytes, done: PublishDone) {
        self.publisher.locked().publish(users, frame, done, false);
    }

    fn node_alive(&self, node: &str) -> Result<bool, BusError> {
        if node == self.shared.node {
            return Ok(true);
        }
        let s = &self.shared;
        let key = s.node_key(node);
        s.health.query(&s.pool, "EXISTS", |c| {
            redis::cmd("EXISTS").arg(&key).query::<bool>(c)
        })
    }

    fn forget_node(&self, node: &str) {
        let own = node == self.shared.node;
        match self.shared.directory.forget_node(node) {
            Ok(0) => {}
            Ok(n) if own => log::info!("deleted {n} directory entries left by a previous run"),
            Ok(n) => log::info!("server {node} is gone: {n} directory entries deleted"),
            Err(e) if own => {
                log::warn!("directory entries left by a previous run not deleted: {e}")
            }
            Err(e) => log::debug!("directory entries of {node} not deleted: {e}"),
        }
    }

    fn set_inbound(&self, inbound: Inbound) {
        self.subscriber.set_inbound(inbound);
    }

    fn is_standalone(&self) -> bool {
        false
    }

    fn shutdown(&self) {
        self.shared.stopping.store(true, Ordering::Release);
        if let Some(h) = self.heartbeat.locked().take() {
            let _ = h.join();
        }
        self.subscriber.stop();
        self.publisher.locked().stop();
        self.shared.directory.stop();
    }
}
