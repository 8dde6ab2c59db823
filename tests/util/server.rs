//! Starts a real `chatserver` process on a free port with its own temporary database, and
//! connects clients to it the way a user would: over TCP.

use clusterchat_proto::client::Client;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

thread_local! {
    /// The database every server of the current test uses when none is named (set by
    /// [`use_mysql`]); `None`: a fresh SQLite file per server.
    static SHARED_DB: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Makes the servers this test thread starts use a fresh MySQL database, dropped with the
/// returned guard. `None` when MySQL is unreachable (the test is then skipped, unless
/// `CHAT_REQUIRE_SERVICES=1`, which makes it fail).
pub fn use_mysql(tag: &str) -> Option<MysqlGuard> {
    let db = super::mysql_db::TestDb::create(tag)?;
    SHARED_DB.with(|d| *d.borrow_mut() = Some(db.url.clone()));
    Some(MysqlGuard { _db: db })
}

/// Keeps the test's MySQL database alive; dropping it drops the database.
pub struct MysqlGuard {
    _db: super::mysql_db::TestDb,
}

impl Drop for MysqlGuard {
    fn drop(&mut self) {
        SHARED_DB.with(|d| *d.borrow_mut() = None);
    }
}

/// Runs each named test function twice: on SQLite, and on a MySQL-backed server.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() { super::$name() } )*
        }
        mod mysql {
            $(
                #[test]
                fn $name() {
                    let Some(_db) = $crate::util::server::use_mysql(stringify!($name)) else {
                        return;
                    };
                    super::$name()
                }
            )*
        }
    };
}

/// A server process for one test.
pub struct TestServer {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Where its HTTP front listens (`None` when started with `--http off`).
    pub http: Option<SocketAddr>,
    /// The `--db` URL it runs with (reused by [`TestServer::restart`]).
    pub db: String,
    extra: Vec<String>,
    open_files: Option<u64>,
    log: Arc<Mutex<Vec<String>>>,
    _dir: Option<Arc<tempfile::TempDir>>,
}

/// Builds a server command line.
pub struct ServerBuilder {
    db: Option<String>,
    args: Vec<String>,
    dir: Option<Arc<tempfile::TempDir>>,
    open_files: Option<u64>,
}

impl ServerBuilder {
    /// Uses this database URL instead of a fresh SQLite file.
    pub fn db(mut self, url: impl Into<String>) -> Self {
        self.db = Some(url.into());
        self
    }

    /// Adds command-line arguments.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|s| s.to_string()));
        self
    }

    /// Runs the server with this open-file limit (soft and hard, so it cannot raise it).
    pub fn open_files(mut self, n: u64) -> Self {
        self.open_files = Some(n);
        self
    }

    /// Starts the process and waits for its `listening on` line.
    pub fn start(self) -> TestServer {
        let db = self.db.or_else(|| SHARED_DB.with(|d| d.borrow().clone()));
        let (db, dir) = match db {
            Some(db) => (db, self.dir),
            None => {
                let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
                let path: PathBuf = dir.path().join("chat.db");
                (format!("sqlite:{}", path.display()), Some(dir))
            }
        };
        spawn(db, self.args, "127.0.0.1:0", dir, self.open_files)
    }
}

fn spawn(
    db: String,
    extra: Vec<String>,
    listen: &str,
    dir: Option<Arc<tempfile::TempDir>>,
    open_files: Option<u64>,
) -> TestServer {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chatserver"));
    if let Some(n) = open_files {
        use std::os::unix::process::CommandExt;
        let limit = libc::rlimit {
            rlim_cur: n as libc::rlim_t,
            rlim_max: n as libc::rlim_t,
        };
        // SAFETY: setrlimit is async-signal-safe and only reads the struct.
        unsafe {
            command.pre_exec(move || {
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    // An ephemeral HTTP port unless the test chose one: parallel tests never share 6080.
    if !extra
        .iter()
        .any(|a| a == "--http" || a.starts_with("--http="))
    {
        command.args(["--http", "127.0.0.1:0"]);
    }
    let mut child = command
        .args(["--listen", listen, "--db", &db])
        .args(&extra)
        .env("CHAT_ARGON2_M_KIB", "256")
        // Tests register many users from one address; tests/throttle.rs sets its own limit.
        .env("CHAT_MAX_REGISTRATIONS_PER_MIN", "0")
        .env("CHAT_LOG_LEVEL", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chatserver");
    let stderr = child.stderr.take().expect("stderr");
    let log = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::channel();
    let http = Arc::new(Mutex::new(None));
    {
        let http = Arc::clone(&http);
        let log = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                // Logged before the "listening on" line.
                if let Some(rest) = line.split("HTTP front on http://").nth(1) {
                    let addr = rest.split('/').next().unwrap_or("");
                    *http.lock().unwrap() = addr.parse::<SocketAddr>().ok();
                }
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or("").to_string();
                    let _ = tx.send(addr);
                }
                if std::env::var_os("CHAT_TEST_SHOW_LOGS").is_some() {
                    eprintln!("[server] {line}");
                }
                log.lock().unwrap().push(line);
            }
        });
    }
    let addr = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(addr) => addr.parse().expect("listen address"),
        Err(_) => {
            let _ = child.kill();
            panic!(
                "chatserver did not start: {:?}",
                log.lock().unwrap().join("\n")
            );
        }
    };
    let http = *http.lock().unwrap();
    TestServer {
        child,
        addr,
        http,
        db,
        extra,
        open_files,
        log,
        _dir: dir,
    }
}

impl TestServer {
    /// A server on a fresh SQLite database.
    pub fn start() -> TestServer {
        TestServer::builder().start()
    }

    /// A builder for other databases or flags.
    pub fn builder() -> ServerBuilder {
        ServerBuilder {
            db: None,
            args: Vec::new(),
            dir: None,
            open_files: None,
        }
    }

    /// A new client connected to this server.
    pub fn client(&self) -> Client {
        Client::connect(self.addr).expect("connect to the test server")
    }

    /// A new client that registers `name` (password `pw-<name>`) and logs in.
    pub fn user(&self, name: &str) -> (Client, i64) {
        let mut c = self.client();
        let id = c.register(name, &format!("pw-{name}")).expect("register");
        c.login(id, &format!("pw-{name}")).expect("login");
        (c, id)
    }

    /// The process id (for signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`TERM`, `INT`, `KILL`).
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{name} failed");
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "server did not exit in time");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Starts a new process on the same database and flags, on the same address if free.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let fresh = spawn(
            self.db.clone(),
            self.extra.clone(),
            &self.addr.to_string(),
            self._dir.clone(),
            self.open_files,
        );
        let old = std::mem::replace(self, fresh);
        drop(old);
    }

    /// Every line the server has logged so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The path of another binary of the workspace (`chatclient`), built beside `chatserver` by
/// `cargo test --workspace`. Panics with the command to build it when it is missing.
pub fn workspace_binary(name: &str) -> PathBuf {
    let path = std::path::Path::new(env!("CARGO_BIN_EXE_chatserver")).with_file_name(name);
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test --workspace` (or `cargo build -p {name}`)",
        path.display()
    );
    path
}

/// A unique-enough suffix for names in one test run.
pub fn unique(tag: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}
