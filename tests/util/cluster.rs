//! Several servers sharing one MySQL database and one Redis, each test with its own database
//! and channel prefix so that parallel tests (and other projects) never collide.

use super::mysql_db::{services_required, TestDb};
use super::server::{unique, TestServer};
use std::net::TcpStream;
use std::time::Duration;

/// The Redis the tests use unless `CHAT_TEST_REDIS_URL` names another.
pub const DEFAULT_REDIS: &str = "redis://127.0.0.1:6379";

/// The test Redis URL if it answers; `None` (skip) when it does not, unless
/// `CHAT_REQUIRE_SERVICES=1`, which makes that a panic.
pub fn redis_url() -> Option<String> {
    let url = std::env::var("CHAT_TEST_REDIS_URL").unwrap_or_else(|_| DEFAULT_REDIS.into());
    let hostport = url
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_string();
    let reachable = hostport
        .parse()
        .ok()
        .and_then(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok())
        .is_some();
    match (reachable, services_required()) {
        (true, _) => Some(url),
        (false, true) => panic!("Redis at {url} unreachable"),
        (false, false) => {
            eprintln!("note: skipping cluster test: Redis at {url} unreachable");
            None
        }
    }
}

/// A cluster for one test: its database, its channel prefix, its servers.
pub struct TestCluster {
    /// The servers, in start order.
    pub servers: Vec<TestServer>,
    /// The shared MySQL database (dropped with the cluster).
    pub db: TestDb,
    /// The Redis URL.
    pub redis: String,
    /// This test's channel prefix.
    pub prefix: String,
}

impl TestCluster {
    /// Starts `n` servers on one fresh database and prefix; `None` when a service is missing
    /// (and not required).
    pub fn start(tag: &str, n: usize) -> Option<TestCluster> {
        let redis = redis_url()?;
        let db = TestDb::create(tag)?;
        let prefix = format!("{}:", unique(&format!("cc-test-{tag}")));
        let mut cluster = TestCluster {
            servers: Vec::new(),
            db,
            redis,
            prefix,
        };
        for _ in 0..n {
            cluster.add_server();
        }
        Some(cluster)
    }

    /// Starts one more server in the cluster and returns its index.
    pub fn add_server(&mut self) -> usize {
        self.add_server_with(&[])
    }

    /// Starts one more server with extra flags (another `--redis`, say) and returns its index.
    pub fn add_server_with(&mut self, extra: &[&str]) -> usize {
        let i = self.servers.len();
        let node = format!("{}n{i}", self.prefix.trim_end_matches(':'));
        let redis = self.redis.clone();
        let mut args = vec!["--node-id", &node, "--channel-prefix", &self.prefix];
        if !extra.contains(&"--redis") {
            args.extend(["--redis", &redis]);
        }
        args.extend(extra);
        let server = TestServer::builder()
            .db(self.db.url.clone())
            .args(&args)
            .start();
        self.servers.push(server);
        i
    }
}
