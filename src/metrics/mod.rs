//! Prometheus metrics of one server (`GET /metrics`): one [`Metrics`] per server, created at
//! start-up and shared (an `Arc`) by the service, the reactor callbacks and the HTTP front.
//!
//! * Counters and the latency histogram are kept as things happen, lock-free (see
//!   [`atomic`]): a chat to an online user adds to striped atomics and takes no lock for
//!   metrics.
//! * Gauges of state that already exists elsewhere (connections, unwritten output, users
//!   online, the database pool, the worker queue) are read at scrape time (see [`sampled`]).
//! * Database and bus errors are counted by wrappers around the store and the bus
//!   ([`counted_store`], [`counted_bus`]), so no call site has to remember to.
//!
//! Rendering uses prometheus-client's encoder for the Prometheus text format (version 0.0.4).
//! The README lists every metric.

mod atomic;
mod counted_bus;
mod counted_store;
mod sampled;

use crate::bus::SharedBus;
use crate::store::SharedStore;
use atomic::{AtomicHistogram, Labeled, StripedCounter};
use clusterchat_proto::errno;
use prometheus_client::registry::{Registry, Unit};
pub(crate) use sampled::{Sampler, Samples};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Upper bounds of the delivery latency buckets, in seconds (0.1 ms to 1 s).
const LATENCY_BOUNDS: [f64; 13] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// The kind of a chat message (the `kind` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// ONE_CHAT: to one user.
    One = 0,
    /// GROUP_CHAT: to a group.
    Group = 1,
}

const KINDS: [&str; 2] = ["one", "group"];

/// How a client connection talks to the server (the `transport` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// The chat port (`--listen`).
    Tcp = 0,
    /// The HTTP port (`--http`), not upgraded.
    Http = 1,
    /// The HTTP port, upgraded to a WebSocket on `/ws`.
    WebSocket = 2,
}

/// Why a login failed (the `reason` label), by the errno it was answered with.
const LOGIN_FAILURES: [&str; 6] = [
    "bad_password",
    "rate_limited",
    "already_online",
    "already_logged_in",
    "unavailable",
    "bad_request",
];

fn login_failure(errno: i64) -> usize {
    match errno {
        errno::BAD_CREDENTIALS => 0,
        errno::RATE_LIMITED => 1,
        errno::ALREADY_ONLINE => 2,
        errno::ALREADY_LOGGED_IN => 3,
        errno::UNAVAILABLE => 4,
        _ => 5,
    }
}

/// The metrics of one server. Every method is thread safe and never blocks; the counting ones
/// are lock-free.
pub struct Metrics {
    registry: Registry,
    received: Labeled<StripedCounter, 2>,
    stored: Labeled<StripedCounter, 2>,
    delivered: Labeled<StripedCounter, 2>,
    latency: AtomicHistogram,
    logins: StripedCounter,
    login_failures: Labeled<StripedCounter, 6>,
    db_errors: StripedCounter,
    bus_errors: StripedCounter,
    sampled: sampled::Sampled,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric at zero; the sampled ones read 0 until [`set_sampler`](Self::set_sampler).
    pub fn new() -> Self {
        let m = Metrics {
            registry: Registry::default(),
            received: Labeled::new("kind", KINDS),
            stored: Labeled::new("kind", KINDS),
            delivered: Labeled::new("kind", KINDS),
            latency: AtomicHistogram::new(&LATENCY_BOUNDS),
            logins: StripedCounter::default(),
            login_failures: Labeled::new("reason", LOGIN_FAILURES),
            db_errors: StripedCounter::default(),
            bus_errors: StripedCounter::default(),
            sampled: sampled::Sampled::default(),
        };
        m.registered()
    }

    fn registered(mut self) -> Self {
        let r = &mut self.registry;
        r.register(
            "clusterchat_messages_received",
            "Chat requests (ONE_CHAT, GROUP_CHAT) read from clients, by kind, refused ones included",
            self.received.clone(),
        );
        r.register(
            "clusterchat_messages_stored",
            "Chat messages appended to the message log, by kind (a group message once)",
            self.stored.clone(),
        );
        r.register(
            "clusterchat_messages_delivered",
            "Chat messages written to receivers' sockets on this server, by kind (one per \
             receiver; backlog and login-reply messages included)",
            self.delivered.clone(),
        );
        r.register_with_unit(
            "clusterchat_delivery_latency",
            "From the server taking a chat request to the committed message being pushed to its \
             receivers' connections (one observation per receiver on this server that takes it \
             live)",
            Unit::Seconds,
            self.latency.clone(),
        );
        r.register(
            "clusterchat_logins_succeeded",
            "Successful logins",
            self.logins.clone(),
        );
        r.register(
            "clusterchat_logins_failed",
            "Refused logins, by reason (the errno answered: bad_password 1, already_online 2, \
             already_logged_in 107, unavailable 108, rate_limited 109, bad_request otherwise)",
            self.login_failures.clone(),
        );
        r.register(
            "clusterchat_db_errors",
            "Database calls that failed (unreachable, or an error answered)",
            self.db_errors.clone(),
        );
        r.register(
            "clusterchat_bus_errors",
            "Message bus (Redis) operations that failed",
            self.bus_errors.clone(),
        );
        r.register_collector(Box::new(self.sampled.clone()));
        self
    }

    /// A chat request of this kind was read. Lock-free.
    pub(crate) fn received(&self, kind: Kind) {
        self.received.get(kind as usize).add(1);
    }

    /// `n` messages of this kind were stored. Lock-free.
    pub(crate) fn stored(&self, kind: Kind, n: u64) {
        if n > 0 {
            self.stored.get(kind as usize).add(n);
        }
    }

    /// Messages were written to a receiver's socket. Lock-free.
    pub(crate) fn delivered(&self, one: u64, group: u64) {
        if one > 0 {
            self.delivered.get(Kind::One as usize).add(one);
        }
        if group > 0 {
            self.delivered.get(Kind::Group as usize).add(group);
        }
    }

    /// A stored message was queued to a receiver `latency` after its request was taken.
    /// Lock-free.
    pub(crate) fn delivery_latency(&self, latency: Duration) {
        self.latency.observe(latency);
    }

    /// A login succeeded.
    pub(crate) fn login_succeeded(&self) {
        self.logins.add(1);
    }

    /// A login was refused with `errno`.
    pub(crate) fn login_failed(&self, errno: i64) {
        self.login_failures.get(login_failure(errno)).add(1);
    }

    /// `store`, with its errors counted in `clusterchat_db_errors_total`.
    pub(crate) fn count_store(&self, store: SharedStore) -> SharedStore {
        Arc::new(counted_store::CountedStore::new(
            store,
            self.db_errors.clone(),
        ))
    }

    /// `bus`, with its errors counted in `clusterchat_bus_errors_total`.
    pub(crate) fn count_bus(&self, bus: SharedBus) -> SharedBus {
        Arc::new(counted_bus::CountedBus::new(bus, self.bus_errors.clone()))
    }

    /// Installs what scrapes read the sampled metrics with (once; later calls are ignored).
    pub(crate) fn set_sampler(&self, sampler: Sampler) {
        let _ = self.sampled.sampler.set(sampler);
    }

    /// A client connection opened (`Handler::on_connection`). Not per message.
    pub(crate) fn connection_opened(&self, transport: Transport) {
        self.sampled.open[transport as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// A client connection closed (`Handler::on_close`), with the transport it had then.
    pub(crate) fn connection_closed(&self, transport: Transport) {
        self.sampled.open[transport as usize].fetch_sub(1, Ordering::Relaxed);
    }

    /// An HTTP connection upgraded to a WebSocket.
    pub(crate) fn upgraded(&self) {
        self.connection_closed(Transport::Http);
        self.connection_opened(Transport::WebSocket);
    }

    /// Every metric in the Prometheus text format ([`CONTENT_TYPE`]). Reads the sampled
    /// metrics (briefly taking the locks that hold them: the online table's shards, the
    /// reactor's admission counts, the pool's); call it per scrape, not per message.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8 << 10);
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests;
