//! The chat server: wires the reactor, the codec, the worker pool and the service together.
//!
//! On an IO thread, [`ChatHandler::on_message`] cuts the input into frames and, for each,
//! either takes the chat fast path (receiver online here, nothing queued for this
//! connection) or queues the frame to the connection's worker, where the service handles it.

use crate::bus::{local::LocalBus, redis::RedisBus, BusEvent, SharedBus};
use crate::codec::{self, Next};
use crate::config::Config;
use crate::net::{Bytes, Handler, ServerHandle, ServerOptions, TcpServer};
use crate::protocol::{errno, msgid, Envelope};
use crate::service::password::Hasher;
use crate::service::{send_error, ChatService, Conn, ServiceError, Session};
use crate::store::{self, SharedStore, StoreError};
use crate::worker_pool::WorkerPool;
use std::net::SocketAddr;
use std::sync::Arc;

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

/// The reactor callbacks of the chat server.
pub struct ChatHandler {
    service: Arc<ChatService>,
    workers: Arc<WorkerPool>,
    max_frame: usize,
}

impl ChatHandler {
    /// Queues `frame` to the connection's worker, behind its earlier requests.
    fn to_worker(&self, conn: &Conn, frame: &[u8]) {
        let service = Arc::clone(&self.service);
        let conn2 = Arc::clone(conn);
        let frame = frame.to_vec();
        conn.context().begin_job();
        self.workers.execute(
            conn.id(),
            Box::new(move || {
                service.handle(&conn2, &frame);
                conn2.context().end_job();
            }),
        );
    }

    /// Replies with an error in order with the connection's other replies.
    fn reject(&self, conn: &Conn, err: ServiceError) {
        if conn.context().pending() == 0 {
            return send_error(conn, &err, None, None);
        }
        let conn2 = Arc::clone(conn);
        conn.context().begin_job();
        self.workers.execute(
            conn.id(),
            Box::new(move || {
                send_error(&conn2, &err, None, None);
                conn2.context().end_job();
            }),
        );
    }
}

impl Handler<Session> for ChatHandler {
    fn on_message(&self, conn: &Conn, input: &[u8]) -> usize {
        let mut used = 0;
        loop {
            match codec::next_frame(&input[used..], self.max_frame) {
                Next::Frame {
                    start,
                    end,
                    consumed,
                } => {
                    let frame = &input[used + start..used + end];
                    if codec::uses_nul(&input[used..used + consumed]) {
                        conn.set_terminator(0);
                    }
                    used += consumed;
                    self.dispatch(conn, frame);
                }
                Next::Incomplete { skip } => {
                    if input[used..used + skip].contains(&0) {
                        conn.set_terminator(0);
                    }
                    return used + skip;
                }
                Next::Invalid { consumed } => {
                    used += consumed;
                    self.reject(
                        conn,
                        ServiceError::new(errno::MALFORMED, "malformed request: not a JSON object"),
                    );
                }
                Next::TooLarge => {
                    log::warn!(
                        "connection {} from {} sent a frame over {} bytes; closing it",
                        conn.id(),
                        conn.peer(),
                        self.max_frame
                    );
                    self.reject(
                        conn,
                        ServiceError::new(
                            errno::TOO_LARGE,
                            format!("request larger than {} bytes; closing", self.max_frame),
                        ),
                    );
                    conn.shutdown();
                    return input.len();
                }
            }
        }
    }

    fn on_close(&self, conn: &Conn) {
        let service = Arc::clone(&self.service);
        let conn2 = Arc::clone(conn);
        self.workers
            .execute(conn.id(), Box::new(move || service.disconnected(&conn2)));
    }

    fn on_undelivered(&self, _conn: &Conn, frame: Bytes, tag: u64) {
        let service = Arc::clone(&self.service);
        self.workers
            .execute(tag, Box::new(move || service.redeliver(tag as i64, frame)));
    }
}

impl ChatHandler {
    /// Routes one frame: the fast path if it applies, else the worker.
    fn dispatch(&self, conn: &Conn, frame: &[u8]) {
        if conn.context().pending() == 0 {
            if let Ok(env) = serde_json::from_slice::<Envelope>(frame) {
                if env.msgid() == Some(msgid::ONE_CHAT)
                    && self.service.try_fast_chat(conn, &env, frame)
                {
                    return;
                }
            }
        }
        self.to_worker(conn, frame);
    }
}

/// A running chat server.
pub struct RunningServer {
    net: ServerHandle,
    service: Arc<ChatService>,
    bus: SharedBus,
    housekeeper: Housekeeper,
}

impl RunningServer {
    /// Opens the store and bus that `config` names, clears stale sessions, binds and starts.
    pub fn start(config: &Config) -> Result<RunningServer, StartError> {
        let node = config.node_id();
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
        ));
        {
            let service = Arc::clone(&service);
            let workers = Arc::clone(&workers);
            bus.set_inbound(Arc::new(move |event: BusEvent<'_>| match event {
                BusEvent::Message { user, frame } => {
                    let service = Arc::clone(&service);
                    let frame = Bytes::copy_from_slice(frame);
                    workers.execute(
                        user as u64,
                        Box::new(move || service.redeliver(user, frame)),
                    );
                }
                BusEvent::Reconnected => {
                    for user in service.online().users() {
                        let service = Arc::clone(&service);
                        workers.execute(user as u64, Box::new(move || service.drain_offline(user)));
                    }
                }
            }));
        }
        let listener =
            std::net::TcpListener::bind(&config.listen).map_err(|source| StartError::Listen {
                addr: config.listen.clone(),
                source,
            })?;
        let handler = Arc::new(ChatHandler {
            service: Arc::clone(&service),
            workers,
            max_frame: config.max_frame,
        });
        let net = TcpServer::start(
            listener,
            handler,
            ServerOptions {
                io_threads: config.io_threads(),
                max_output: config.max_output,
            },
        )?;
        log::info!(
            "node {node} listening on {} (db {}, {} IO threads, {} workers)",
            net.local_addr(),
            store::mask_password(&config.db),
            config.io_threads(),
            config.workers()
        );
        let housekeeper = Housekeeper::start(Arc::clone(&service), !bus.is_standalone())?;
        Ok(RunningServer {
            net,
            service,
            bus,
            housekeeper,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.net.local_addr()
    }

    /// Stops accepting and serving, then sets this server's users offline.
    pub fn stop(self) {
        self.housekeeper.stop();
        self.net.stop();
        match self.service.release_all_sessions() {
            Ok(n) => log::info!("stopped; {n} users set offline"),
            Err(e) => log::error!("stopped, but could not set users offline: {e}"),
        }
        self.bus.shutdown();
    }
}

/// The housekeeping thread: every second, retries what failed during an outage; in a
/// cluster, every few seconds also sets offline the users of servers that died without saying
/// so (their liveness key expired), so friends lists stop showing them online.
struct Housekeeper {
    stop: crossbeam_channel::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Housekeeper {
    const TICK: std::time::Duration = std::time::Duration::from_secs(1);
    const REAP_EVERY: u32 = 5;

    fn start(service: Arc<ChatService>, cluster: bool) -> std::io::Result<Housekeeper> {
        let (stop, stopped) = crossbeam_channel::bounded::<()>(1);
        let thread = std::thread::Builder::new()
            .name("housekeeper".into())
            .spawn(move || {
                let mut tick = 0u32;
                while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(Self::TICK)
                {
                    service.retry_pending();
                    tick = tick.wrapping_add(1);
                    if cluster && tick % Self::REAP_EVERY == 0 {
                        service.reap_dead_nodes();
                    }
                }
            })?;
        Ok(Housekeeper { stop, thread })
    }

    fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}
