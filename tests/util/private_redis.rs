//! A Redis server of one test's own (`redis-server` as a child process, on a free port, with
//! its data directory in a tempdir and persistence off), which the test may stop and start
//! again on the same port. The machine's shared Redis is never touched.

use super::private_service::{find_binary, free_port, stop_child, wait_until};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A private `redis-server`; killed when dropped.
pub struct PrivateRedis {
    binary: PathBuf,
    child: Option<Child>,
    /// The port it listens on (kept across restarts).
    pub port: u16,
    dir: tempfile::TempDir,
    /// Extra `redis-server` arguments (`--requirepass`, say), kept across restarts.
    extra: Vec<String>,
}

impl PrivateRedis {
    /// Starts a fresh instance. `None` (skip) when `redis-server` is not installed, unless
    /// `CHAT_REQUIRE_SERVICES=1`.
    pub fn start() -> Option<PrivateRedis> {
        PrivateRedis::start_with(&[])
    }

    /// Starts a fresh instance with extra `redis-server` arguments (`--requirepass PW`,
    /// `--user NAME on >PW ~* &* +@all`, ...). It counts as up once it answers PING, with PONG
    /// or with NOAUTH.
    pub fn start_with(extra: &[&str]) -> Option<PrivateRedis> {
        let binary = find_binary(&["redis-server"], "private Redis test")?;
        let dir = tempfile::tempdir().expect("temp dir for Redis");
        let mut redis = PrivateRedis {
            binary,
            child: None,
            port: 0,
            dir,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        // The probed port may be taken between the probe and the bind: try a few.
        for _ in 0..5 {
            redis.port = free_port();
            if redis.spawn() {
                return Some(redis);
            }
        }
        panic!("private redis-server did not start: {}", redis.log_tail());
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The redis-server's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Whether it answers PING now.
    pub fn is_up(&self) -> bool {
        ping(self.port)
    }

    /// Stops the instance (SIGTERM, SIGKILL after 10 s) and waits until it has exited.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child, libc::SIGTERM, Duration::from_secs(10));
        }
    }

    /// Starts it again on the same port (and directory), waiting until it answers.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "private Redis is still running");
        assert!(
            self.spawn(),
            "private redis-server did not restart on port {}: {}",
            self.port,
            self.log_tail()
        );
    }

    fn spawn(&mut self) -> bool {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("redis.log"))
            .expect("Redis log file");
        let child = Command::new(&self.binary)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(&self.extra)
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let port = self.port;
        let child = self.child.as_mut().expect("child");
        let up = wait_until(
            Duration::from_secs(10),
            || child.try_wait().ok().flatten().is_some(),
            || ping(port),
        );
        if !up {
            self.stop();
        }
        up
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether a Redis on `port` answers PING: with PONG, or with NOAUTH when it wants a password.
fn ping(port: u16) -> bool {
    let addr = ([127, 0, 0, 1], port).into();
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut reply = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok()
        && s.read_exact(&mut reply).is_ok()
        && (&reply == b"+PONG\r\n" || &reply == b"-NOAUTH")
}

/// Whether the installed `redis-server` has ACL users (`--user`, `AUTH user password`): Redis
/// 6 and later. False when it is not installed.
pub fn supports_acl_users() -> bool {
    let Some(binary) = find_binary(&["redis-server"], "private Redis test") else {
        return false;
    };
    let Ok(out) = Command::new(binary).arg("--version").output() else {
        return false;
    };
    // "Redis server v=7.0.15 sha=..."
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .find_map(|w| w.strip_prefix("v="))
        .and_then(|v| v.split('.').next()?.parse::<u32>().ok())
        .is_some_and(|major| major >= 6)
}
