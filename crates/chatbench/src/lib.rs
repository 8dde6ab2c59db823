//! `chatbench`, the load generator: many clients over the wire protocol against any server that
//! speaks it (this one, the C++ original, a cluster behind nginx), with latency percentiles,
//! loss, and server CPU per delivered message.
//!
//! It speaks exactly as the old C++ client does (NUL-terminated JSON, no `reqid`, so the server
//! sends no acks for chat). Setup (registering and logging in the bench's own uniquely named
//! users, `bench-<pid>-<run>-<n>`) runs on blocking [`clusterchat_proto::client::Client`]s in several
//! threads, because each registration and login costs the server an argon2 hash; it is timed
//! apart from the measured phase. The measured phase runs one or a few mio loops, each driving
//! many non-blocking sockets with writes coalesced per loop iteration, so that the bench is not
//! the bottleneck on a small machine; it reports its own CPU to prove it.
//!
//! Scenarios: [`pairs`] (one-to-one chat), [`group`] (fan-out), [`idle`] (many idle logged-in
//! connections: memory per connection), [`logins`] (registrations/s and logins/s), [`backlog`]
//! (reading a large stored backlog with a sync login). Against a server with the message log,
//! `--sync` sessions log in with `"sync":true`, drop duplicates and count loss by `seq`
//! ([`seqtrack`]); `--cmid` gives every chat a client message id.
//! [`cli`] turns the command line into [`Settings`] and runs them, alone or A/B ([`compare`]).
//! Against a cluster (`--targets`), [`Layout`] puts every pair or group across the servers or
//! on one, and [`redisstat`] counts the Redis commands and CPU each delivered message cost.

pub mod backlog;
pub mod cli;
pub mod compare;
pub mod conn;
pub mod group;
pub mod idle;
pub mod logins;
pub mod pairs;
pub mod procstat;
pub mod redisstat;
pub mod report;
pub mod seqtrack;
pub mod setup;
pub mod stamp;
pub mod ws;

use clusterchat_proto::client::ClientError;
use std::net::SocketAddr;
use std::time::Duration;

/// What can stop a scenario.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Talking to the server failed during setup.
    #[error("{context}: {source}")]
    Client {
        /// What the bench was doing.
        context: String,
        /// The client's error.
        source: ClientError,
    },
    /// A socket or /proc operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What the bench was doing.
        context: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The scenario ran past its hard timeout.
    #[error("hard timeout: {0}")]
    Timeout(String),
    /// The settings cannot be run.
    #[error("bad settings: {0}")]
    Settings(String),
}

/// A scenario's result.
pub type Result<T> = std::result::Result<T, BenchError>;

/// Wraps an I/O error with what the bench was doing.
pub fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> BenchError {
    let context = context.into();
    move |source| BenchError::Io { context, source }
}

/// Wraps a client error with what the bench was doing.
pub fn client_err(context: impl Into<String>) -> impl FnOnce(ClientError) -> BenchError {
    let context = context.into();
    move |source| BenchError::Client { context, source }
}

/// Everything a scenario needs to know; the CLI fills it, tests build it directly.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Servers; where each user connects is [`Settings::pair_target`] or
    /// [`Settings::member_target`] (other scenarios: user `i` on `targets[i % len]`).
    pub targets: Vec<SocketAddr>,
    /// `pairs` and `group` on several targets: across the servers or each on one.
    pub layout: Layout,
    /// Users taking part (pairs: rounded up to even; group: members; idle: connections).
    pub users: usize,
    /// Messages in flight per sender.
    pub window: usize,
    /// Length of the measured phase.
    pub duration: Duration,
    /// After the duration, how long to wait for in-flight messages before counting them lost.
    pub grace: Duration,
    /// Hard bound on a whole run (setup included); past it the run fails.
    pub timeout: Duration,
    /// Event-loop threads of the measured phase.
    pub threads: usize,
    /// Threads (= concurrent blocking clients) for setup, idle logins and `logins`.
    pub concurrency: usize,
    /// `group`: how many members send.
    pub senders: usize,
    /// `idle`: how many 127.0.0.x source addresses to spread connections over (loopback only).
    pub source_addrs: usize,
    /// Server processes to sample for CPU, RSS and threads.
    pub server_pids: Vec<u32>,
    /// Which round of an A/B comparison this is (stamped into messages).
    pub round: u64,
    /// Sync sessions: log in with `"sync":true`, ask for an ACK of every chat (`reqid`), drop
    /// duplicates and count loss by `seq`, confirm with batched RECV.
    pub sync: bool,
    /// Give every chat a unique `cmid` (client message id).
    pub cmid: bool,
    /// `backlog`: messages stored for the offline receiver.
    pub messages: usize,
    /// `backlog`: bytes of each message's text.
    pub msg_bytes: usize,
    /// `backlog`: messages in flight while storing the backlog.
    pub fill_window: usize,
    /// How often each connection of a measuring loop sends PING (chatclient's 20 s).
    pub ping_every: Duration,
    /// A Redis to read `INFO` from around each measured round (`redis://[[USER]:PW@]HOST:PORT`):
    /// commands, PUBLISHes and (without `redis_pids`) CPU per delivered message.
    pub redis: Option<String>,
    /// Redis process(es) to sample for CPU per delivered message.
    pub redis_pids: Vec<u32>,
    /// `pairs`: log the measured connections in over WebSocket at this HTTP address (the
    /// server's `--http`) instead of the chat port (users are still registered there).
    pub ws: Option<SocketAddr>,
}

/// Where the users of `pairs` and `group` sit when there are several targets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Layout {
    /// Every pair split over two servers; a group's members spread over all of them (user `i`
    /// on `targets[i % len]`).
    #[default]
    Across,
    /// Both partners of a pair on one server (pairs spread over the servers, so each carries
    /// its share); all members of a group on the first server.
    Local,
}

impl Layout {
    /// `across` or `local`.
    pub fn name(self) -> &'static str {
        match self {
            Layout::Across => "across",
            Layout::Local => "local",
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            targets: vec![SocketAddr::from(([127, 0, 0, 1], 6000))],
            users: 100,
            window: 1,
            duration: Duration::from_secs(5),
            grace: Duration::from_secs(2),
            timeout: Duration::from_secs(600),
            threads: 2,
            concurrency: 8,
            senders: 1,
            source_addrs: 4,
            server_pids: Vec::new(),
            round: 0,
            sync: false,
            cmid: false,
            messages: 200_000,
            msg_bytes: 100,
            fill_window: 256,
            ping_every: conn::PING_EVERY,
            layout: Layout::Across,
            redis: None,
            redis_pids: Vec::new(),
            ws: None,
        }
    }
}

impl Settings {
    /// The targets as strings, for reports.
    pub fn target_names(&self) -> Vec<String> {
        match self.ws {
            Some(http) => vec![format!("ws://{http}/ws")],
            None => self.targets.iter().map(|t| t.to_string()).collect(),
        }
    }

    /// The layout's name when it matters (several targets), for reports.
    pub fn layout_name(&self) -> Option<String> {
        (self.targets.len() > 1).then(|| self.layout.name().to_string())
    }

    /// The server of `pairs` user `i` (users `2k` and `2k+1` are partners).
    pub fn pair_target(&self, i: usize) -> SocketAddr {
        let n = self.targets.len();
        match self.layout {
            Layout::Across => self.targets[i % n],
            Layout::Local => self.targets[(i / 2) % n],
        }
    }

    /// The server of `group` member `i`.
    pub fn member_target(&self, i: usize) -> SocketAddr {
        match self.layout {
            Layout::Across => self.targets[i % self.targets.len()],
            Layout::Local => self.targets[0],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_place_partners_and_members() {
        let t: Vec<SocketAddr> = (1..=3)
            .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
            .collect();
        let across = Settings {
            targets: t.clone(),
            ..Settings::default()
        };
        let local = Settings {
            layout: Layout::Local,
            ..across.clone()
        };
        for k in 0..6 {
            assert_ne!(across.pair_target(2 * k), across.pair_target(2 * k + 1));
            assert_eq!(local.pair_target(2 * k), local.pair_target(2 * k + 1));
            assert_eq!(
                local.pair_target(2 * k),
                t[k % 3],
                "pairs spread over the servers"
            );
            assert_eq!(across.member_target(k), t[k % 3]);
            assert_eq!(local.member_target(k), t[0]);
        }
        assert_eq!(local.layout_name().as_deref(), Some("local"));
        let one = Settings::default();
        assert_eq!(one.layout_name(), None);
        assert_eq!(one.pair_target(1), one.targets[0]);
    }
}
