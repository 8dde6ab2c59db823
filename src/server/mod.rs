//! The chat server: wires the reactor, the codec, the worker pool and the service together.
//!
//! * [`handler`]: on an IO thread, cuts the input into frames and, for each, either takes the
//!   chat fast path (receiver online here, nothing queued for this connection) or queues the
//!   frame to the connection's worker, where the service handles it.
//! * this file: start-up (store, bus, stale sessions, threads) and shutdown.
//! * [`housekeeper`]: the periodic retries and the dead-node reaper.

mod handler;
mod housekeeper;

use crate::bus::{local::LocalBus, redis::RedisBus, BusEvent, SharedBus};
use crate::config::Config;
use crate::service::password::Hasher;
use crate::service::{ChatService, ConnContext};
use crate::store::{self, SharedStore, StoreError};
use crate::worker_pool::WorkerPool;
use clusterchat_net::{Bytes, ServerHandle, ServerOptions, TcpServer};
use handler::ChatHandler;
use housekeeper::Housekeeper;
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
}

impl RunningServer {
    /// Binds, opens the store and bus that `config` names, then (only once all of that worked)
    /// clears stale sessions and starts. A start that fails changes nothing in the database.
    pub fn start(config: &Config) -> Result<RunningServer, StartError> {
        let listener =
            std::net::TcpListener::bind(&config.listen).map_err(|source| StartError::Listen {
                addr: config.listen.clone(),
                source,
            })?;
        let node = config.node_id();
        if let Some(url) = &config.redis {
            // Before the database is opened (or created): a server that cannot join its
            // cluster (Redis unreachable, a wrong password) leaves no trace.
            crate::bus::redis::check(url)?;
        }
        let store: SharedStore = store::open(&config.db, config.db_pool)?;
        if node.is_empty() || node.contains('/') {
            return Err(StartError::BadNodeId(node));
        }
        let bus: SharedBus = match &config.redis {
            Some(url) => Arc::new(RedisBus::connect(url, &config.channel_prefix, &node)?),
            None => Arc::new(LocalBus::new(node.clone())),
        };
        let cleared = if bus.is_standalone() {
            store.release_all()?
        } else {
            store.release_node(&node)?
        };
        if cleared > 0 {
            log::info!("cleared {cleared} sessions left by a previous run");
        }
        let workers = Arc::new(WorkerPool::new(config.workers())?);
        let service = Arc::new(ChatService::new(
            store,
            Arc::clone(&bus),
            node.clone(),
            Hasher::new(config.argon2_m_kib),
            Arc::clone(&workers),
            config.max_message,
            config.max_output,
        ));
        service.start_log_writer()?;
        {
            let service = Arc::clone(&service);
            bus.set_inbound(Arc::new(move |event: BusEvent<'_>| match event {
                BusEvent::Message { user, frame } => {
                    service.inbound(user, Bytes::copy_from_slice(frame))
                }
                BusEvent::Reconnected => {
                    for user in service.online().users() {
                        service.schedule_resync(user);
                    }
                }
            }));
        }
        let handler = Arc::new(ChatHandler {
            service: Arc::clone(&service),
            workers: Arc::clone(&workers),
            max_frame: config.max_frame,
        });
        let net = TcpServer::start(
            listener,
            handler,
            ServerOptions {
                io_threads: config.io_threads(),
                max_output: config.max_output,
                keepalive: (config.keepalive > 0).then(|| Duration::from_secs(config.keepalive)),
            },
        )?;
        log::info!(
            "node {node} listening on {} (db {}, {} IO threads, {} workers)",
            net.local_addr(),
            store::mask_password(&config.db),
            config.io_threads(),
            config.workers()
        );
        let housekeeper = Housekeeper::start(
            Arc::clone(&service),
            !bus.is_standalone(),
            config.retention_days,
            Duration::from_secs(config.heartbeat_timeout),
        )?;
        Ok(RunningServer {
            net,
            workers,
            service,
            bus,
            housekeeper,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.net.local_addr()
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
