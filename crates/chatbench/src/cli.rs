//! The `chatbench` command line: one subcommand per scenario, common flags, and what to print.

use crate::compare::{run_compare, run_once, Kind};
use crate::{BenchError, Layout, Result, Settings};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

/// chatbench: load generator for clusterchat (and any server speaking the muduo chat protocol).
#[derive(Debug, Parser)]
#[command(name = "chatbench", version)]
pub struct Cli {
    /// The scenario to run.
    #[command(subcommand)]
    pub scenario: Command,
}

/// The scenarios.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// N users in pairs, each sending to its partner with W messages in flight: msgs/s,
    /// latency percentiles, loss, server CPU per message.
    Pairs(Common),
    /// One group of N members all online, K senders: fan-out deliveries/s and latency to the
    /// last receiver.
    Group(GroupArgs),
    /// Log in N users and hold them idle: login time, server RSS per connection and threads.
    Idle(IdleArgs),
    /// Registrations/s and logins/s with C concurrent clients (--concurrency).
    Logins(Common),
    /// One sender stores N messages to an offline receiver, which then logs in with sync and
    /// reads them all until SYNC_DONE: msgs/s of the read, server RSS growth during it, loss.
    Backlog(BacklogArgs),
}

/// Flags of `backlog`.
#[derive(Debug, Args)]
pub struct BacklogArgs {
    /// Flags every scenario takes (--window, --duration and --threads are not used; --cmid
    /// applies to the stored messages; the read is always a sync login).
    #[command(flatten)]
    pub common: Common,
    /// Messages stored for the offline receiver (N).
    #[arg(long, default_value_t = 200_000)]
    pub messages: usize,
    /// Characters of each message's text.
    #[arg(long, default_value_t = 100)]
    pub msg_bytes: usize,
    /// Messages in flight while storing (each waits for its ACK).
    #[arg(long, default_value_t = 256)]
    pub fill_window: usize,
}

/// Flags of `group`.
#[derive(Debug, Args)]
pub struct GroupArgs {
    /// Flags every scenario takes.
    #[command(flatten)]
    pub common: Common,
    /// How many members send (K).
    #[arg(long, default_value_t = 1)]
    pub senders: usize,
}

/// Flags of `idle`.
#[derive(Debug, Args)]
pub struct IdleArgs {
    /// Flags every scenario takes.
    #[command(flatten)]
    pub common: Common,
    /// Loopback source addresses (127.0.0.1..=127.0.0.K) to spread connections over.
    #[arg(long, default_value_t = 4)]
    pub source_addrs: usize,
}

/// Flags every scenario takes.
#[derive(Debug, Args)]
pub struct Common {
    /// The server.
    #[arg(long, default_value = "127.0.0.1:6000")]
    pub target: String,
    /// Several servers of one cluster (host:port,host:port): users are spread over them as
    /// --layout says. Overrides --target.
    #[arg(long, value_delimiter = ',')]
    pub targets: Vec<String>,
    /// pairs and group on --targets: `across` puts the partners of every pair (the members of
    /// the group) on different servers; `local` puts both partners of each pair on one server
    /// (the pairs spread over the servers) and the whole group on the first; `both` runs local
    /// as A and across as B, alternating --rounds times, and prints across/local (B/A) for
    /// every figure: the cost of crossing servers in one run.
    #[arg(long, value_enum, default_value_t = LayoutArg::Across)]
    pub layout: LayoutArg,
    /// Users (connections) taking part.
    #[arg(long, default_value_t = 100)]
    pub users: usize,
    /// Messages in flight per sender.
    #[arg(long, default_value_t = 1)]
    pub window: usize,
    /// Seconds of measured load.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Seconds to wait after the duration for in-flight messages before counting them lost.
    #[arg(long, default_value_t = 2.0)]
    pub grace: f64,
    /// Hard bound in seconds on each run, setup included (the process exits past it).
    #[arg(long, default_value_t = 600.0)]
    pub timeout: f64,
    /// Event-loop threads of the measured phase (pairs).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Concurrent blocking clients for setup, idle logins and the logins scenario.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Server process to sample for CPU per message, RSS and threads (repeatable: a cluster).
    #[arg(long = "server-pid")]
    pub server_pid: Vec<u32>,
    /// Run the same scenario against this second server too, alternating A B A B.
    #[arg(long)]
    pub compare: Option<String>,
    /// pairs and group: a Redis to read INFO from before and after each round
    /// (redis://[[USER]:PASSWORD@]HOST[:PORT]): redis_cmds_per_msg, redis_publish_per_msg and
    /// redis_cpu_us_per_msg, per delivered message. Redis counts every client: use a Redis
    /// that nothing else uses during the run.
    #[arg(long)]
    pub redis: Option<String>,
    /// pairs and group: a Redis process to sample for redis_cpu_us_per_msg (from /proc, in
    /// clock ticks; --redis's INFO is finer and wins when both are given).
    #[arg(long = "redis-pid")]
    pub redis_pid: Vec<u32>,
    /// pairs: log the measured connections in over WebSocket at this HTTP address (the
    /// server's --http; /ws) instead of the chat port. Users are registered on --target.
    #[arg(long)]
    pub ws: Option<String>,
    /// pairs: run A over TCP to --target and B over WebSocket to this HTTP address (the same
    /// server's --http), alternating A B A B: WS/TCP for every figure in one run.
    #[arg(long)]
    pub compare_ws: Option<String>,
    /// Process(es) of the --compare server to sample.
    #[arg(long = "compare-pid")]
    pub compare_pid: Vec<u32>,
    /// Rounds per server with --compare.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Sync sessions (a server with the message log): log in with "sync":true, ask an ACK
    /// (with the seq) of every chat, drop duplicates and count loss by seq gaps, confirm with
    /// batched RECV. A server without the log still works: loss is then counted by stamps.
    #[arg(long)]
    pub sync: bool,
    /// Give every chat a unique client message id ("cmid":"<user name>-<n>").
    #[arg(long)]
    pub cmid: bool,
    /// Seconds between the PINGs each connection sends while measuring (like chatclient), so
    /// a server's --heartbeat-timeout never cuts a long run.
    #[arg(long, default_value_t = 20.0)]
    pub ping_every: f64,
}

/// `--layout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LayoutArg {
    /// Every pair (the group) split over the servers.
    Across,
    /// Each pair (the group) on one server.
    Local,
    /// Local as A, across as B, alternating: across/local for every figure.
    Both,
}

/// Resolves `host:port` to one socket address.
pub fn resolve(addr: &str) -> Result<SocketAddr> {
    addr.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| BenchError::Settings(format!("cannot resolve {addr:?}")))
}

impl Common {
    /// The settings for server A (the --target or --targets).
    pub fn settings(&self) -> Result<Settings> {
        let names = if self.targets.is_empty() {
            vec![self.target.clone()]
        } else {
            self.targets.clone()
        };
        let secs = |name: &str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(Duration::from_secs_f64(v))
            } else {
                Err(BenchError::Settings(format!(
                    "--{name} must be a number of seconds"
                )))
            }
        };
        Ok(Settings {
            targets: names.iter().map(|n| resolve(n)).collect::<Result<_>>()?,
            users: self.users,
            window: self.window.max(1),
            duration: secs("duration", self.duration)?,
            grace: secs("grace", self.grace)?,
            timeout: secs("timeout", self.timeout)?,
            threads: self.threads.max(1),
            concurrency: self.concurrency.max(1),
            server_pids: self.server_pid.clone(),
            layout: match self.layout {
                LayoutArg::Local => Layout::Local,
                LayoutArg::Across | LayoutArg::Both => Layout::Across,
            },
            redis: self.redis.clone(),
            redis_pids: self.redis_pid.clone(),
            sync: self.sync,
            cmid: self.cmid,
            ping_every: secs("ping-every", self.ping_every)?.max(Duration::from_millis(100)),
            ..Settings::default()
        })
    }
}

impl Cli {
    /// The scenario, its common flags and its settings for server A.
    pub fn resolve(&self) -> Result<(Kind, &Common, Settings)> {
        let (kind, common) = match &self.scenario {
            Command::Pairs(c) => (Kind::Pairs, c),
            Command::Group(g) => (Kind::Group, &g.common),
            Command::Idle(i) => (Kind::Idle, &i.common),
            Command::Logins(c) => (Kind::Logins, c),
            Command::Backlog(b) => (Kind::Backlog, &b.common),
        };
        let mut settings = common.settings()?;
        let layered = matches!(kind, Kind::Pairs | Kind::Group);
        let refuse = |what: &str| Err(BenchError::Settings(what.into()));
        if !layered && common.layout != LayoutArg::Across {
            return refuse("--layout is for pairs and group");
        }
        if !layered && (common.redis.is_some() || !common.redis_pid.is_empty()) {
            return refuse("--redis and --redis-pid are for pairs and group");
        }
        if let Some(url) = &common.redis {
            crate::redisstat::check_url(url)?;
        }
        if common.layout != LayoutArg::Across && settings.targets.len() < 2 {
            return refuse("--layout local or both needs --targets with two servers or more");
        }
        if common.layout == LayoutArg::Both && common.compare.is_some() {
            return refuse("--layout both and --compare are both A/B runs: one at a time");
        }
        let ws = common.ws.is_some() || common.compare_ws.is_some();
        if ws && (kind != Kind::Pairs || common.sync || settings.targets.len() > 1) {
            return refuse("--ws and --compare-ws are for pairs on one server, without --sync");
        }
        if common.compare_ws.is_some() && (common.compare.is_some() || common.ws.is_some()) {
            return refuse("--compare-ws is an A/B run over one server: no --compare or --ws");
        }
        if let Some(http) = &common.ws {
            settings.ws = Some(resolve(http)?);
        }
        match &self.scenario {
            Command::Group(g) => settings.senders = g.senders.max(1),
            Command::Idle(i) => settings.source_addrs = i.source_addrs.max(1),
            Command::Backlog(b) => {
                settings.messages = b.messages;
                settings.msg_bytes = b.msg_bytes;
                settings.fill_window = b.fill_window.max(1);
            }
            _ => {}
        }
        Ok((kind, common, settings))
    }
}

/// Runs what the command line says: prints the table on stdout and writes the JSON file.
pub fn run(cli: &Cli) -> Result<()> {
    let (kind, common, a) = cli.resolve()?;
    let ab = match (&common.compare, common.layout) {
        _ if common.compare_ws.is_some() => Some((
            a.clone(),
            Settings {
                ws: Some(resolve(common.compare_ws.as_deref().unwrap_or_default())?),
                ..a.clone()
            },
        )),
        (Some(other), _) => Some((
            a.clone(),
            Settings {
                targets: vec![resolve(other)?],
                server_pids: common.compare_pid.clone(),
                ..a.clone()
            },
        )),
        (None, LayoutArg::Both) => Some((
            Settings {
                layout: Layout::Local,
                ..a.clone()
            },
            Settings {
                layout: Layout::Across,
                ..a.clone()
            },
        )),
        (None, _) => None,
    };
    let json = if let Some((a, b)) = ab {
        let cmp = run_compare(kind, &a, &b, common.rounds)?;
        for (i, (ra, rb)) in cmp.a.iter().zip(&cmp.b).enumerate() {
            println!(
                "round {} A:\n{}round {} B:\n{}",
                i + 1,
                ra.table(),
                i + 1,
                rb.table()
            );
        }
        print!("{}", cmp.table());
        serde_json::to_string_pretty(&cmp)
    } else {
        let report = run_once(kind, &a)?;
        print!("{}", report.table());
        serde_json::to_string_pretty(&report)
    }
    .expect("reports serialise");
    if let Some(path) = &common.json {
        std::fs::write(path, json + "\n")
            .map_err(crate::io_err(format!("writing {}", path.display())))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_become_settings() {
        let cli = Cli::parse_from([
            "chatbench",
            "group",
            "--targets",
            "127.0.0.1:7001,127.0.0.1:7002",
            "--users",
            "8",
            "--senders",
            "3",
            "--server-pid",
            "10",
            "--server-pid",
            "11",
            "--duration",
            "1.5",
        ]);
        let (kind, _, s) = cli.resolve().unwrap();
        assert_eq!(kind, Kind::Group);
        assert_eq!(s.targets.len(), 2);
        assert_eq!((s.users, s.senders), (8, 3));
        assert_eq!(s.server_pids, [10, 11]);
        assert_eq!(s.duration, Duration::from_millis(1500));
        assert!(!s.sync && !s.cmid);
        let cli = Cli::parse_from(["chatbench", "pairs", "--sync", "--cmid"]);
        let (kind, _, s) = cli.resolve().unwrap();
        assert_eq!(kind, Kind::Pairs);
        assert!(s.sync && s.cmid);
        let cli = Cli::parse_from(["chatbench", "backlog", "--messages", "2000", "--cmid"]);
        let (kind, _, s) = cli.resolve().unwrap();
        assert_eq!(kind, Kind::Backlog);
        assert_eq!((s.messages, s.msg_bytes, s.fill_window), (2000, 100, 256));
        assert!(s.cmid);
        let bad = Cli::parse_from(["chatbench", "pairs", "--duration=-1"]);
        assert!(bad.resolve().is_err());
        let two = "127.0.0.1:7001,127.0.0.1:7002";
        let cli = Cli::parse_from([
            "chatbench",
            "pairs",
            "--targets",
            two,
            "--layout",
            "local",
            "--redis",
            "redis://:pw@127.0.0.1:6379",
            "--redis-pid",
            "12",
        ]);
        let (_, c, s) = cli.resolve().unwrap();
        assert_eq!((s.layout, c.layout), (Layout::Local, LayoutArg::Local));
        assert_eq!(s.redis.as_deref(), Some("redis://:pw@127.0.0.1:6379"));
        assert_eq!(s.redis_pids, [12]);
        let cli = Cli::parse_from(["chatbench", "group", "--targets", two, "--layout", "both"]);
        assert_eq!(cli.resolve().unwrap().2.layout, Layout::Across);
        for bad in [
            vec!["chatbench", "pairs", "--layout", "local"],
            vec!["chatbench", "idle", "--targets", two, "--layout", "local"],
            vec!["chatbench", "logins", "--redis", "redis://h"],
            vec!["chatbench", "pairs", "--redis", "http://h:1"],
            vec![
                "chatbench",
                "pairs",
                "--targets",
                two,
                "--layout",
                "both",
                "--compare",
                "h:1",
            ],
        ] {
            assert!(Cli::parse_from(&bad).resolve().is_err(), "{bad:?}");
        }
    }
}
