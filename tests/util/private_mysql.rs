//! A MariaDB server of one test's own: `mariadb-install-db` into a tempdir, then `mariadbd`
//! as a child process on a free port (root with an empty password, TCP on 127.0.0.1 only),
//! which the test may stop (SIGTERM) and start again on the same data directory and port.
//! The machine's shared MariaDB is never touched.

use super::mysql_db::TestDb;
use super::private_service::{find_binary, free_port, stop_child, wait_until};
use mysql::{Conn, OptsBuilder};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A private `mariadbd`; killed when dropped.
pub struct PrivateMysql {
    server: PathBuf,
    child: Option<Child>,
    /// The port it listens on (kept across restarts).
    pub port: u16,
    /// Whether we run as root (then the server runs as the `mysql` user).
    as_root: bool,
    dir: tempfile::TempDir,
}

impl PrivateMysql {
    /// Creates a data directory and starts a server on it. `None` (skip) when the MariaDB
    /// binaries are not installed, unless `CHAT_REQUIRE_SERVICES=1`.
    pub fn start() -> Option<PrivateMysql> {
        let server = find_binary(&["mariadbd", "mysqld"], "private MariaDB test")?;
        let install = find_binary(
            &["mariadb-install-db", "mysql_install_db"],
            "private MariaDB test",
        )?;
        let dir = tempfile::tempdir().expect("temp dir for MariaDB");
        // SAFETY: getuid(2) has no preconditions.
        let as_root = unsafe { libc::getuid() } == 0;
        if as_root {
            // mariadbd refuses to run as root: the data directory must belong to `mysql`.
            chown_to_mysql(dir.path());
        }
        let mut cmd = Command::new(&install);
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", dir.path().join("data").display()))
            .arg("--auth-root-authentication-method=normal")
            .arg("--skip-test-db");
        if as_root {
            cmd.arg("--user=mysql");
        }
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .expect("run mariadb-install-db");
        assert!(
            out.status.success(),
            "mariadb-install-db failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut db = PrivateMysql {
            server,
            child: None,
            port: 0,
            as_root,
            dir,
        };
        for _ in 0..5 {
            db.port = free_port();
            if db.spawn() {
                return Some(db);
            }
        }
        panic!("private mariadbd did not start: {}", db.log_tail());
    }

    /// The server URL (no database) in the form `TestDb` and the chat server accept.
    pub fn base_url(&self) -> String {
        format!(
            "mysql://root@127.0.0.1:{}/mysql?prefer_socket=false",
            self.port
        )
    }

    /// A fresh database for one test on this server.
    pub fn test_db(&self, tag: &str) -> TestDb {
        TestDb::create_on(&self.base_url(), tag).expect("database on the private MariaDB")
    }

    /// Whether it accepts a connection now.
    pub fn is_up(&self) -> bool {
        answers(self.port)
    }

    /// Stops the server (SIGTERM; SIGKILL after 60 s) and waits until it has exited.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child, libc::SIGTERM, Duration::from_secs(60));
        }
    }

    /// Starts it again on the same data directory and port, waiting until it answers.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "private MariaDB is still running");
        assert!(
            self.spawn(),
            "private mariadbd did not restart on port {}: {}",
            self.port,
            self.log_tail()
        );
    }

    fn spawn(&mut self) -> bool {
        let d = self.dir.path();
        let mut cmd = Command::new(&self.server);
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", d.join("data").display()))
            .arg(format!("--port={}", self.port))
            .arg(format!("--socket={}", d.join("sock").display()))
            .arg(format!("--pid-file={}", d.join("mariadbd.pid").display()))
            .arg(format!("--log-error={}", d.join("error.log").display()))
            .arg("--bind-address=127.0.0.1")
            .arg("--skip-name-resolve")
            .arg("--innodb-buffer-pool-size=32M");
        if self.as_root {
            cmd.arg("--user=mysql");
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn mariadbd");
        self.child = Some(child);
        let port = self.port;
        let child = self.child.as_mut().expect("child");
        let up = wait_until(
            Duration::from_secs(60),
            || child.try_wait().ok().flatten().is_some(),
            || answers(port),
        );
        if !up {
            self.stop();
        }
        up
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

impl Drop for PrivateMysql {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether a server on `port` lets root in over TCP.
fn answers(port: u16) -> bool {
    let opts = OptsBuilder::new()
        .ip_or_hostname(Some("127.0.0.1"))
        .tcp_port(port)
        .user(Some("root"))
        .prefer_socket(false)
        .tcp_connect_timeout(Some(Duration::from_millis(500)));
    Conn::new(opts).is_ok()
}

/// Gives `dir` to the `mysql` user (we run as root; mariadbd will not).
fn chown_to_mysql(dir: &Path) {
    let name = std::ffi::CString::new("mysql").expect("C string");
    // SAFETY: getpwnam(3) with a valid C string; the result is read at once, before any other
    // call that could reuse its static buffer.
    let (uid, gid) = unsafe {
        let pw = libc::getpwnam(name.as_ptr());
        assert!(!pw.is_null(), "no `mysql` user to run mariadbd as");
        ((*pw).pw_uid, (*pw).pw_gid)
    };
    std::os::unix::fs::chown(dir, Some(uid), Some(gid)).expect("chown the MariaDB directory");
}
