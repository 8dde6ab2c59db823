//! One [`Config`] for the server, from command-line flags and `CHAT_*` environment variables.

use clap::Parser;
use std::path::PathBuf;

/// `--http` of a server alone.
pub const DEFAULT_HTTP: &str = "127.0.0.1:6080";

/// Everything `chatserver` can be told. Every flag also reads an environment variable.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "chatserver",
    version,
    about = "clusterchat server: the muduo cluster chat server's protocol, in Rust",
    long_about = "clusterchat server. Alone it keeps its data in an embedded SQLite file; in a \
                  cluster several servers share MySQL and reach each other's users through Redis."
)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "CHAT_LISTEN", default_value = "127.0.0.1:6000")]
    pub listen: String,

    /// TLS: the chat port speaks TLS with this certificate chain (PEM, leaf first); needs
    /// --tls-key. Without both, plain TCP.
    #[arg(long, env = "CHAT_TLS_CERT", value_name = "PEM")]
    pub tls_cert: Option<PathBuf>,

    /// TLS: the private key (PEM: PKCS#8, PKCS#1 or SEC1) of --tls-cert.
    #[arg(long, env = "CHAT_TLS_KEY", value_name = "PEM")]
    pub tls_key: Option<PathBuf>,

    /// Address of the HTTP front: the web client, `/ws` (the chat protocol over WebSocket),
    /// `/healthz`, `/api/cluster`, `/metrics`; `off` for none. Default: `127.0.0.1:6080` for a server
    /// alone, off in a cluster (`--redis`), where each server needs its own.
    #[arg(long, env = "CHAT_HTTP")]
    pub http: Option<String>,

    /// Database: `sqlite:PATH` (embedded, default) or `mysql://user:pass@host:port/db`.
    #[arg(long, env = "CHAT_DB", default_value = "sqlite:chat.db")]
    pub db: String,

    /// Database connections in the pool.
    #[arg(long, env = "CHAT_DB_POOL", default_value_t = 8)]
    pub db_pool: u32,

    /// Redis URL for a cluster, `redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]`; without it the
    /// server runs alone. Every connection authenticates with the URL's user and password and
    /// selects DB. Prefer CHAT_REDIS for a password: a flag shows in `ps`.
    #[arg(long, env = "CHAT_REDIS", hide_env_values = true)]
    pub redis: Option<String>,

    /// This server's name in the cluster (default: random).
    #[arg(long, env = "CHAT_NODE_ID")]
    pub node_id: Option<String>,

    /// Prefix of every Redis channel and key, so that several clusters can share one Redis.
    #[arg(long, env = "CHAT_CHANNEL_PREFIX", default_value = "chat:")]
    pub channel_prefix: String,

    /// IO loop threads (default: the number of cores).
    #[arg(long, env = "CHAT_IO_THREADS")]
    pub io_threads: Option<usize>,

    /// Worker threads for database, Redis and password hashing (default: 4 per core, at least 8).
    #[arg(long, env = "CHAT_WORKERS")]
    pub workers: Option<usize>,

    /// Log level: error, warn, info, debug or trace.
    #[arg(long, env = "CHAT_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Largest request frame accepted, in bytes; a larger one gets an error and a close.
    #[arg(long, env = "CHAT_MAX_FRAME", default_value_t = clusterchat_proto::codec::DEFAULT_MAX_FRAME)]
    pub max_frame: usize,

    /// Largest chat text (`msg`) accepted, in bytes of UTF-8; a longer one gets errno 102.
    #[arg(long, env = "CHAT_MAX_MESSAGE", default_value_t = 64 << 10)]
    pub max_message: usize,

    /// Output bytes queued for one client before it is disconnected as not reading.
    #[arg(long, env = "CHAT_MAX_OUTPUT", default_value_t = 16 << 20)]
    pub max_output: usize,

    /// TCP keepalive: seconds of silence before the kernel probes a connection (then every
    /// sixth of it, 3 probes), so a peer whose network vanished is closed within 1.5 times
    /// this (90 s by default). 0 turns it off.
    #[arg(long, env = "CHAT_KEEPALIVE", default_value_t = 60)]
    pub keepalive: u64,

    /// Seconds without any input after which a connection that has sent a PING (20) is closed.
    #[arg(long, env = "CHAT_HEARTBEAT_TIMEOUT", default_value_t = 60)]
    pub heartbeat_timeout: u64,

    /// Seconds a connection may stay without a successful login (from its connect, or from its
    /// last LOGOUT) before it is closed. 0: no limit.
    #[arg(long, env = "CHAT_LOGIN_TIMEOUT", default_value_t = 120)]
    pub login_timeout: u64,

    /// Connections without a login at once from one source address; past it a new
    /// connection from that address is closed at once. 0: no limit (behind a TCP proxy every
    /// client has the proxy's address).
    #[arg(long, env = "CHAT_MAX_UNAUTH_PER_IP", default_value_t = 64)]
    pub max_unauth_per_ip: usize,

    /// Connections at once; past it a new connection is closed at once (default: the
    /// open-file limit, raised to the hard limit at start, less 64, 4 per database connection
    /// and 2 per IO thread).
    #[arg(long, env = "CHAT_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,

    /// Requests of one connection in progress (on a worker, or chats waiting to be stored)
    /// before the server stops reading it until they are done (also at 4 worker jobs or 1 MiB).
    #[arg(long, env = "CHAT_MAX_PENDING", default_value_t = 128)]
    pub max_pending: usize,

    /// Days a stored message is kept; older ones are deleted in small batches by a background
    /// pruner. 0 keeps everything.
    #[arg(long, env = "CHAT_RETENTION_DAYS", default_value_t = 0)]
    pub retention_days: u32,

    /// Failed logins of one account, or from one source address, after which each further
    /// attempt must wait (errno 109): --login-delay, doubling with each failure, at most 5
    /// minutes. A successful login clears the account's count. 0: no limit.
    #[arg(long, env = "CHAT_MAX_LOGIN_FAILURES", default_value_t = 5)]
    pub max_login_failures: u32,

    /// Seconds of the first wait after --max-login-failures failed logins.
    #[arg(long, env = "CHAT_LOGIN_DELAY", default_value_t = 1)]
    pub login_delay: u64,

    /// Registrations accepted per source address and minute (more get errno 109). 0: no limit.
    #[arg(long, env = "CHAT_MAX_REGISTRATIONS_PER_MIN", default_value_t = 30)]
    pub max_registrations_per_min: u32,

    /// Chat messages (ONE_CHAT, GROUP_CHAT) one connection may send per second (more get
    /// errno 109). 0: no limit.
    #[arg(long, env = "CHAT_MAX_MSGS_PER_SEC", default_value_t = 0)]
    pub max_msgs_per_sec: u32,

    /// Memory cost of the argon2 password hash in KiB (OWASP's 19456 by default; tests lower it
    /// to run fast). Existing hashes keep the cost they were made with.
    #[arg(long, env = "CHAT_ARGON2_M_KIB", default_value_t = 19_456)]
    pub argon2_m_kib: u32,
}

impl Config {
    /// Checks what clap cannot: `Err` is the one line to print (and exit 2) before anything
    /// starts.
    pub fn check(&self) -> Result<(), String> {
        if !(self.db.starts_with("sqlite:") || self.db.starts_with("mysql://")) {
            return Err(format!(
                "--db must be sqlite:PATH or mysql://user:pass@host:port/db, not {:?}",
                crate::store::mask_password(&self.db)
            ));
        }
        if self
            .db
            .strip_prefix("sqlite:")
            .is_some_and(|p| p.trim().is_empty())
        {
            return Err("--db sqlite: needs a file path, e.g. sqlite:chat.db".into());
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => return Err("--tls-cert needs --tls-key (CHAT_TLS_KEY)".into()),
            (None, Some(_)) => return Err("--tls-key needs --tls-cert (CHAT_TLS_CERT)".into()),
            _ => {}
        }
        Ok(())
    }

    /// The HTTP front's address (`--http`), or `None` when it is off.
    pub fn http_addr(&self) -> Option<&str> {
        match self.http.as_deref() {
            Some("off") | Some("") => None,
            Some(addr) => Some(addr),
            None if self.redis.is_some() => None,
            None => Some(DEFAULT_HTTP),
        }
    }

    /// IO threads to run.
    pub fn io_threads(&self) -> usize {
        self.io_threads.unwrap_or_else(cores).max(1)
    }

    /// Connections to admit at once: `--max-connections`, or what the open-file limit leaves
    /// once the database, the IO loops and the process itself have their descriptors.
    pub fn max_connections(&self) -> usize {
        self.max_connections.unwrap_or_else(|| {
            let limit = crate::os::open_file_limit().unwrap_or(1024);
            let reserve = 64 + 4 * u64::from(self.db_pool) + 2 * self.io_threads() as u64;
            limit.saturating_sub(reserve).max(16) as usize
        })
    }

    /// Worker threads to run.
    pub fn workers(&self) -> usize {
        self.workers.unwrap_or_else(|| (cores() * 4).max(8)).max(1)
    }

    /// The node id, or a fresh random one.
    pub fn node_id(&self) -> String {
        self.node_id.clone().unwrap_or_else(|| {
            use rand::Rng;
            format!("node-{:08x}", rand::rng().random::<u32>())
        })
    }
}

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}
