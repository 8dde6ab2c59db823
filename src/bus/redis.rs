//! The cluster's bus: Redis publish/subscribe, routed by server.
//!
//! * Each server subscribes to its own channel (`<prefix>node:<id>`), on a dedicated
//!   connection read by its own thread ([`super::redis_subscriber`]).
//! * A presence directory (`<prefix>presence`, user -> session) says which server holds which
//!   user: [`Bus::enter`] and [`Bus::leave`] keep this server's entries, through the pool; the
//!   bus remembers them, to write them again after Redis lost them (a restart) or refused one.
//! * Messages go through the publisher thread ([`super::redis_publisher`]): one call of the
//!   routing script ([`super::redis_route`]) per batch, one PUBLISH per destination server.
//! * Each server keeps a key `<prefix>node:<id>` alive with a 3 s expiry, refreshed every
//!   second: a server killed with SIGKILL stops refreshing it, so within seconds the others
//!   may take over the sessions it left behind.
//! * Every connection authenticates with the URL's user and password and selects its database:
//!   the pool's through the redis crate, the subscriber's and publisher's raw sockets through
//!   [`super::redis_endpoint`], on every (re)connection. The password is never logged.
//! * While Redis is unreachable, every call fails fast (no per-message timeouts) and the
//!   outage and the recovery are each logged once.

use super::redis_endpoint::Endpoint;
use super::redis_names::Names;
use super::redis_publisher::Publisher;
use super::redis_route::LEAVE_SCRIPT;
use super::redis_subscriber::Subscriber;
use super::{Bus, BusError, Inbound, PublishDone};
use crate::sync::LockExt;
use clusterchat_proto::UserId;
use std::collections::HashMap;
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
/// Directory entries written per HSET when they are restored.
const RESTORE_CHUNK: usize = 1000;

/// Redis-backed bus for one node of a cluster.
pub(crate) struct RedisBus {
    shared: Arc<Shared>,
    subscriber: Arc<Subscriber>,
    publisher: Mutex<Publisher>,
    heartbeat: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// What the publisher side and the heartbeat thread share.
struct Shared {
    pool: r2d2::Pool<redis::Client>,
    names: Names,
    node: String,
    health: Arc<Health>,
    stopping: AtomicBool,
    /// This server's directory entries (user -> session), as they should be in Redis.
    entries: Mutex<HashMap<UserId, Arc<str>>>,
    /// An entry failed to be written: write them all again (the heartbeat thread tries).
    entries_lost: AtomicBool,
}

/// Fail-fast state and once-per-outage logging.
pub(super) struct Health {
    /// Milliseconds since the epoch until which calls fail without trying.
    down_until_ms: AtomicU64,
    /// Whether the current outage has been logged.
    reported: AtomicBool,
}

impl Health {
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

    /// Records a success (logs the recovery once).
    pub(super) fn succeeded(&self) {
        if self.reported.swap(false, Ordering::AcqRel) {
            log::info!("Redis is reachable again");
        }
    }
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
        let shared = Arc::new(Shared {
            pool,
            names: Names::new(prefix),
            node: node.to_string(),
            health: Arc::new(Health {
                down_until_ms: AtomicU64::new(0),
                reported: AtomicBool::new(false),
            }),
            stopping: AtomicBool::new(false),
            entries: Mutex::new(HashMap::new()),
            entries_lost: AtomicBool::new(false),
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

    fn conn(&self) -> Result<r2d2::PooledConnection<redis::Client>, BusError> {
        self.health.check()?;
        self.pool
            .get()
            .map_err(|e| self.health.failed("no connection", e))
    }

    /// Refreshes this node's liveness key.
    fn beat(&self) -> Result<(), BusError> {
        let mut c = self.conn()?;
        redis::cmd("SET")
            .arg(self.node_key(&self.node))
            .arg(1)
            .arg("EX")
            .arg(NODE_TTL_SECS)
            .query::<()>(&mut *c)
            .map_err(|e| self.health.failed("SET", e))?;
        self.health.succeeded();
        Ok(())
    }

    /// Writes this server's liveness key and every directory entry it holds again, under the
    /// entries' lock (so no login or logout of this server interleaves: a restored entry is
    /// never one its session has left).
    fn restore(&self) -> Result<(), BusError> {
        self.beat()?;
        let entries = self.entries.locked();
        let mut c = self.conn()?;
        let all: Vec<(&UserId, &Arc<str>)> = entries.iter().collect();
        for chunk in all.chunks(RESTORE_CHUNK) {
            let mut cmd = redis::cmd("HSET");
            cmd.arg(self.names.directory());
            for (user, session) in chunk {
                cmd.arg(**user).arg(&***session);
            }
            cmd.query::<()>(&mut *c)
                .map_err(|e| self.health.failed("HSET", e))?;
        }
        self.entries_lost.store(false, Ordering::Release);
        Ok(())
    }

    fn heartbeat_loop(&self, subscriber: &Subscriber) {
        let mut next = Instant::now();
        while !self.stopping.load(Ordering::Acquire) {
            if Instant::now() >= next {
                let _ = self.beat();
                // An entry that failed to be written while the subscriber stayed connected:
                // write them all, then read the log for everyone (they may have missed pushes).
                if self.entries_lost.load(Ordering::Acquire) && self.restore().is_ok() {
                    log::info!("presence directory written again");
                    subscriber.report_restored();
                }
                next = Instant::now() + Duration::from_secs(1);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if let Ok(mut c) = self.pool.get() {
            let _ = redis::cmd("DEL")
                .arg(self.node_key(&self.node))
                .query::<()>(&mut *c);
        }
    }
}

impl Bus for RedisBus {
    fn enter(&self, user: UserId, session: &str) {
        let s = &self.shared;
        let mut entries = s.entries.locked();
        entries.insert(user, session.into());
        let written = s.conn().and_then(|mut c| {
            redis::cmd("HSET")
                .arg(s.names.directory())
                .arg(user)
                .arg(session)
                .query::<()>(&mut *c)
                .map_err(|e| s.health.failed("HSET", e))
        });
        if let Err(e) = written {
            log::debug!("user {user}: presence not written ({e}); will retry");
            s.entries_lost.store(true, Ordering::Release);
        }
    }

    fn leave(&self, user: UserId, session: &str) {
        let s = &self.shared;
        let mut entries = s.entries.locked();
        if entries.get(&user).is_some_and(|e| &**e == session) {
            entries.remove(&user);
        }
        // A failure leaves an entry that names a session which is gone: messages routed by it
        // find nobody here and wait in the log; the user's next login replaces it.
        let removed = s.conn().and_then(|mut c| {
            redis::cmd("EVAL")
                .arg(LEAVE_SCRIPT)
                .arg(1)
                .arg(s.names.directory())
                .arg(user)
                .arg(session)
                .query::<i64>(&mut *c)
                .map_err(|e| s.health.failed("EVAL", e))
        });
        if let Err(e) = removed {
            log::debug!("user {user}: presence not removed ({e})");
        }
    }

    fn publish(&self, users: &[UserId], frame: &[u8]) -> Result<bool, BusError> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.publish_async(
            users.into(),
            bytes::Bytes::copy_from_slice(frame),
            Box::new(move |outcome| {
                let _ = tx.send(outcome);
            }),
        );
        rx.recv_timeout(PUBLISH_WAIT)
            .unwrap_or_else(|_| Err(BusError::Unavailable("no answer from Redis".into())))
    }

    fn publish_async(&self, users: Arc<[UserId]>, frame: bytes::Bytes, done: PublishDone) {
        self.publisher.locked().publish(users, frame, done);
    }

    fn node_alive(&self, node: &str) -> Result<bool, BusError> {
        if node == self.shared.node {
            return Ok(true);
        }
        let s = &self.shared;
        let mut c = s.conn()?;
        let exists: bool = redis::cmd("EXISTS")
            .arg(s.node_key(node))
            .query(&mut *c)
            .map_err(|e| s.health.failed("EXISTS", e))?;
        Ok(exists)
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
    }
}
