//! The chat server: wires the reactor, the codec, the worker pool and the service together.
//!
//! * [`handler`]: on an IO thread, cuts the input into frames and, for each, either takes the
//!   chat fast path (receiver online here, nothing queued for this connection) or queues the
//!   frame to the connection's worker, where the service handles it.
//! * this file: start-up (store, bus, stale sessions, threads) and shutdown.
//! * [`housekeeper`]: the periodic retries and the dead-node reaper.
//! * [`tls`]: the chat port's TLS config from `--tls-cert` / `--tls-key`.

mod handler;
mod housekeeper;
mod login_gate;
pub mod tls;

use crate::bus::{local::LocalBus, redis::RedisBus, BusEvent, SharedBus};
use crate::config::Config;
use crate::http::{cluster::Cluster, HttpFront};
use crate::metrics::{Metrics, Sampler, Samples};
use crate::service::password::Hasher;
use crate::service::{AccountLimits, ChatService, ConnContext};
use crate::store::{self, SharedStore, StoreError};
use crate::worker_pool::WorkerPool;
use clusterchat_net::{ServerHandle, ServerOptions, TcpServer};
use handler::ChatHandler;
use housekeeper::Housekeeper;
use login_gate::LoginGate;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// How long a stopping server waits for requests already read to be handled.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The database could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The message bus could not be set up.
    #[error(transparent)]
    Bus(#[from] crate::bus::BusError),
    /// The listening address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address asked for.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The node id cannot be used (it names sessions as `<node>/<connection>`).
    #[error("bad node id {0:?}: it must be non-empty and must not contain '/'")]
    BadNodeId(String),
    /// The TLS certificate or key could not be used.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// Threads could not be started.
    #[error("cannot start threads: {0}")]
    Threads(#[from] std::io::Error),
}

/// A running chat server.
pub struct RunningServer {
    net: ServerHandle<ConnContext>,
    workers: Arc<WorkerPool>,
    service: Arc<ChatService>,
    bus: SharedBus,
    housekeeper: Housekeeper,
    metrics: Arc<Metrics>,
}

impl RunningServer {
    /// Binds, opens and locks the store, connects the bus that `config` names; only once all
    /// of that worked does it release the sessions of servers proven gone, and start. A start
    /// that fails changes nothing in the database: the users of a server running on it stay
    /// online.
    ///
    /// The locks: a SQLite database is this process's alone (an exclusive lock on
    /// `PATH.lock`, so a second server on the same file fails here); on MySQL this server
    /// holds a lock for its node id (so a second server of the same id fails here, and the
    /// others can tell that this one runs).
    pub fn start(config: &Config) -> Result<RunningServer, StartError> {
        // First: a certificate that cannot be used leaves no trace either.
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(tls::load(cert, key)?),
            _ => None,
        };
        let listener =
            std::net::TcpListener::bind(&config.listen).map_err(|source| StartError::Listen {
                addr: config.listen.clone(),
                source,
            })?;
        let http_listener =
            match config.http_addr() {
                Some(addr) => Some(std::net::TcpListener::bind(addr).map_err(|source| {
                    StartError::Listen {
                        addr: format!("{addr} (--http)"),
                        source,
                    }
                })?),
                None => None,
            };
        let node = config.node_id();
        if node.is_empty() || node.contains('/') {
            return Err(StartError::BadNodeId(node));
        }
        if let Some(url) = &config.redis {
            // Before the database is opened (or created): a server that cannot join its
            // cluster (Redis unreachable, a wrong password) leaves no trace.
            crate::bus::redis::check(url)?;
        }
        let metrics = Arc::new(Metrics::new());
        let store: SharedStore = metrics.count_store(store::open(&config.db, config.db_pool)?);
        store.lock_node(&node)?;
        let bus: SharedBus = metrics.count_bus(match &config.redis {
            Some(url) => Arc::new(RedisBus::connect(url, &config.channel_prefix, &node)?),
            None => Arc::new(LocalBus::new(node.clone())),
        });
        let shared_db = !store.exclusive();
        let workers = Arc::new(WorkerPool::new(config.workers())?);
        let service = Arc::new(
            ChatService::new(
                Arc::clone(&store),
                Arc::clone(&bus),
                node.clone(),
                Hasher::new(config.argon2_m_kib),
                Arc::clone(&workers),
                config.max_message,
                config.max_output,
            )
            .with_account_limits(AccountLimits {
                max_login_failures: config.max_login_failures,
                login_delay: Duration::from_secs(config.login_delay),
                registrations_per_min: config.max_registrations_per_min,
            })
            .with_metrics(Arc::clone(&metrics)),
        );
        let cleared = service.release_stale_sessions()?;
        if cleared > 0 {
            log::info!("cleared {cleared} sessions left by a previous run");
        }
        service.start_log_writer()?;
        {
            let service = Arc::clone(&service);
            bus.set_inbound(Arc::new(move |event: BusEvent<'_>| match event {
                BusEvent::Message {
                    users,
                    frame,
                    direct,
                } => service.inbound(users, frame, direct),
                BusEvent::Reconnected => {
                    for user in service.online().users() {
                        service.schedule_resync(user);
                    }
                }
            }));
        }
        let http = http_listener.as_ref().map(|_| {
            HttpFront::new(
                config.max_frame,
                Cluster::new(Arc::clone(&store), Arc::clone(&bus), node.clone()),
                Arc::clone(&metrics),
            )
        });
        let handler = Arc::new(ChatHandler {
            http,
            service: Arc::clone(&service),
            // Two turns per core: one hashing, one queued on a worker to follow at once.
            gate: LoginGate::new(Arc::clone(&workers), 2 * Hasher::parallelism()),
            max_frame: config.max_frame,
            limits: crate::service::backpressure::Limits::new(config.max_pending),
            login_timeout: config.login_timeout,
            max_msgs_per_sec: config.max_msgs_per_sec,
        });
        // Listener 0: the chat port; 1 (http::HTTP_LISTENER): the HTTP front.
        let net = TcpServer::start_on(
            std::iter::once(listener).chain(http_listener).collect(),
            handler,
            ServerOptions {
                io_threads: config.io_threads(),
                max_output: config.max_output,
                keepalive: (config.keepalive > 0).then(|| Duration::from_secs(config.keepalive)),
                max_connections: Some(config.max_connections()),
                max_unauthenticated_per_ip: (config.max_unauth_per_ip > 0)
                    .then_some(config.max_unauth_per_ip),
                auth_timeout: (config.login_timeout > 0)
                    .then(|| Duration::from_secs(config.login_timeout)),
                tls,
            },
        )?;
        metrics.set_sampler(sampler(&net, &service, &workers));
        if let Some(addr) = net.local_addrs().get(crate::http::HTTP_LISTENER) {
            // Before the "listening on" line: tests read this one first.
            let scheme = if config.tls_cert.is_some() {
                "https"
            } else {
                "http"
            };
            log::info!(
                "HTTP front on {scheme}://{addr}/ (web client, /ws, /healthz, /api/cluster, /metrics)"
            );
        }
        log::info!(
            "node {node} listening on {}{} (db {}, {} IO threads, {} workers)",
            net.local_addr(),
            match &config.tls_cert {
                Some(cert) => format!(" with TLS ({})", cert.display()),
                None => String::new(),
            },
            store::mask_password(&config.db),
            config.io_threads(),
            config.workers()
        );
        log::info!(
            "limits: {} connections, {} without a login per address, login within {}, {} \
             requests in progress per connection",
            config.max_connections(),
            match config.max_unauth_per_ip {
                0 => "any number".to_string(),
                n => n.to_string(),
            },
            match config.login_timeout {
                0 => "any time".to_string(),
                n => format!("{n} s"),
            },
            config.max_pending.max(1)
        );
        let housekeeper = Housekeeper::start(
            Arc::clone(&service),
            shared_db,
            config.retention_days,
            Duration::from_secs(config.heartbeat_timeout),
        )?;
        Ok(RunningServer {
            net,
            workers,
            service,
            bus,
            housekeeper,
            metrics,
        })
    }

    /// The server's metrics (what `GET /metrics` renders).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.net.local_addr()
    }

    /// The address of the HTTP front, if it runs.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.net
            .local_addrs()
            .get(crate::http::HTTP_LISTENER)
            .copied()
    }

    /// Stops without dropping accepted work: stop reading requests, let the workers finish
    /// what was read (their replies and deliveries are still written), close, then set this
    /// server's users offline.
    pub fn stop(self) {
        self.housekeeper.stop();
        self.net.stop_input();
        if !self.workers.wait_idle(SHUTDOWN_GRACE) {
            log::warn!("workers still busy after {SHUTDOWN_GRACE:?}; stopping anyway");
        }
        self.service.stop_log_writer();
        self.net.stop();
        match self.service.release_all_sessions() {
            Ok(n) => log::info!("stopped; {n} users set offline"),
            Err(e) => log::error!("stopped, but could not set users offline: {e}"),
        }
        self.bus.shutdown();
        self.workers.stop();
    }
}

/// What a scrape reads from the running server (see [`crate::metrics`]).
fn sampler(
    net: &ServerHandle<ConnContext>,
    service: &Arc<ChatService>,
    workers: &Arc<WorkerPool>,
) -> Sampler {
    let net = net.stats_source();
    let service = Arc::clone(service);
    let workers = Arc::clone(workers);
    Box::new(move || Samples {
        net: net.read(),
        users_online: service.online().count() as u64,
        pool: service.pool_state(),
        worker_jobs: workers.jobs() as u64,
    })
}
