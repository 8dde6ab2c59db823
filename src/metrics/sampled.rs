//! The metrics read at scrape time rather than counted as things happen: connection counts and
//! unwritten output from the reactor, users online, the database pool, the worker queue. A
//! prometheus-client [`Collector`] asks the server's [`Sampler`] for them on each scrape, so
//! nothing on the hot path keeps them.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};

/// What one scrape reads from the running server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Samples {
    /// The reactor's counters (TCP connections).
    pub(crate) net: clusterchat_net::NetStats,
    /// Users in this server's online table.
    pub(crate) users_online: u64,
    /// The database pool, if the store has one.
    pub(crate) pool: Option<crate::store::PoolState>,
    /// Worker jobs queued or running.
    pub(crate) worker_jobs: u64,
}

/// Reads [`Samples`]; installed once the server runs (see [`super::Metrics::set_sampler`]).
/// Called on the scraping thread; must not block for long.
pub(crate) type Sampler = Box<dyn Fn() -> Samples + Send + Sync>;

/// The collector: its sampler (empty until the server has started: then every sampled value
/// reads 0) and the connections open per transport, which the reactor callbacks keep
/// (indexed by [`super::Transport`]).
#[derive(Clone, Default)]
pub(crate) struct Sampled {
    pub(crate) sampler: Arc<OnceLock<Sampler>>,
    pub(crate) open: Arc<[AtomicI64; 3]>,
}

impl std::fmt::Debug for Sampled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sampled").finish_non_exhaustive()
    }
}

impl Sampled {
    fn samples(&self) -> Samples {
        self.sampler.get().map(|s| s()).unwrap_or_default()
    }
}

/// Writes one gauge or counter with one label per value.
fn labeled<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    key: &'static str,
    children: &[(&'static str, M)],
) -> Result<(), std::fmt::Error> {
    let Some((_, first)) = children.first() else {
        return Ok(());
    };
    let mut metric = encoder.encode_descriptor(name, help, None, first.metric_type())?;
    for (value, child) in children {
        child.encode(metric.encode_family(&[(key, *value)])?)?;
    }
    Ok(())
}

/// Writes one unlabelled metric.
fn single<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric: M,
) -> Result<(), std::fmt::Error> {
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

impl Collector for Sampled {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self.samples();
        let e = &mut encoder;
        let open =
            |t: super::Transport| ConstGauge::new(self.open[t as usize].load(Ordering::Relaxed));
        labeled(
            e,
            "clusterchat_connections_open",
            "Client connections open now, by transport (tcp: the chat port; http: the HTTP \
             port, not upgraded; websocket: upgraded on /ws).",
            "transport",
            &[
                ("tcp", open(super::Transport::Tcp)),
                ("http", open(super::Transport::Http)),
                ("websocket", open(super::Transport::WebSocket)),
            ],
        )?;
        single(
            e,
            "clusterchat_connections_accepted",
            "TCP connections accepted and admitted since start (both ports).",
            ConstCounter::new(s.net.accepted),
        )?;
        labeled(
            e,
            "clusterchat_connections_refused",
            "TCP connections closed at once since start, by reason (full: --max-connections; \
             address: --max-unauth-per-ip; no_descriptor: out of file descriptors).",
            "reason",
            &[
                ("full", ConstCounter::new(s.net.refused_full)),
                ("address", ConstCounter::new(s.net.refused_address)),
                (
                    "no_descriptor",
                    ConstCounter::new(s.net.refused_no_descriptor),
                ),
            ],
        )?;
        single(
            e,
            "clusterchat_output_queued_bytes",
            "Bytes queued to client connections and not yet written to their sockets.",
            ConstGauge::new(s.net.output_bytes as i64),
        )?;
        single(
            e,
            "clusterchat_users_logged_in",
            "Users logged in on this server.",
            ConstGauge::new(s.users_online as i64),
        )?;
        single(
            e,
            "clusterchat_worker_queue_jobs",
            "Requests queued on or running in the worker pool.",
            ConstGauge::new(s.worker_jobs as i64),
        )?;
        if let Some(pool) = s.pool {
            labeled(
                e,
                "clusterchat_db_pool_connections",
                "Database pool connections open, by state (in_use: lent to a request).",
                "state",
                &[
                    ("in_use", ConstGauge::new(i64::from(pool.in_use))),
                    ("idle", ConstGauge::new(i64::from(pool.idle))),
                ],
            )?;
            single(
                e,
                "clusterchat_db_pool_max_connections",
                "The database pool's size (--db-pool).",
                ConstGauge::new(i64::from(pool.max)),
            )?;
        }
        Ok(())
    }
}
