//! A real nginx (stream module) in front of test servers, run from a temporary folder with a
//! config generated from the repository's `nginx.conf` by `scripts/render-nginx-conf.sh` (the
//! renderer `run_cluster.sh` and `benches/run.sh` use), so the tests also check both.

use super::mysql_db::services_required;
use clusterchat_proto::client::Client;
use clusterchat_proto::UserId;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The stream module Debian installs (`libnginx-mod-stream`); the template loads it by this
/// absolute path.
pub const STREAM_MODULE: &str = "/usr/lib/nginx/modules/ngx_stream_module.so";

/// The committed template.
pub fn template_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("nginx.conf")
}

/// The renderer of the runtime config, shared with `run_cluster.sh` and `benches/run.sh`.
pub fn render_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/render-nginx-conf.sh")
}

/// The runtime config, as `scripts/render-nginx-conf.sh` prints it: the committed template
/// with the `server` lines between `# BEGIN servers` and `# END servers` replaced by one line
/// per upstream (each keeping the parameters of the template's first `server` line) and the
/// `listen` line's address replaced by `listen`. Panics with the script's error output if it
/// fails (for example when the template lost its markers or its `listen` line).
pub fn render(upstreams: &[SocketAddr], listen: SocketAddr) -> String {
    render_with_web(upstreams, listen, None)
}

/// [`render`], and with `web` = `(listen, http fronts)` the http block too (the web client and
/// `/ws`, as `run_cluster.sh` renders it: `LISTEN CHAT... -- HTTP_LISTEN HTTP...`).
pub fn render_with_web(
    upstreams: &[SocketAddr],
    listen: SocketAddr,
    web: Option<(SocketAddr, &[SocketAddr])>,
) -> String {
    let script = render_script();
    let mut command = Command::new(&script);
    command
        .arg(listen.to_string())
        .args(upstreams.iter().map(SocketAddr::to_string));
    if let Some((web_listen, fronts)) = web {
        command
            .arg("--")
            .arg(web_listen.to_string())
            .args(fronts.iter().map(SocketAddr::to_string));
    }
    let out = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} failed ({}): {}",
        script.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("nginx.conf is UTF-8")
}

/// An nginx process balancing over some servers, stopped when dropped.
pub struct TestNginx {
    child: Child,
    /// Where clients connect.
    pub addr: SocketAddr,
    /// Where browsers connect, when started with the http block ([`TestNginx::start_with_web`]).
    pub web: Option<SocketAddr>,
    dir: tempfile::TempDir,
}

impl TestNginx {
    /// Starts nginx on a free port in front of `upstreams`. `None` (skip, after a note) when
    /// nginx or its stream module is not installed, unless `CHAT_REQUIRE_SERVICES=1`, which
    /// makes that a panic.
    pub fn start(upstreams: &[SocketAddr]) -> Option<TestNginx> {
        Self::start_with_web(upstreams, None)
    }

    /// [`start`](Self::start), and with `fronts` (the servers' HTTP fronts) the http block on
    /// another free port too ([`TestNginx::web`]).
    pub fn start_with_web(
        upstreams: &[SocketAddr],
        fronts: Option<&[SocketAddr]>,
    ) -> Option<TestNginx> {
        let Some(nginx) = find_nginx() else {
            return missing("nginx is not installed");
        };
        if !Path::new(STREAM_MODULE).exists() {
            return missing(&format!("{STREAM_MODULE} is missing (libnginx-mod-stream)"));
        }
        // A free port can be taken by someone else before nginx binds it: try a few.
        let mut last_error = String::new();
        for _ in 0..5 {
            let dir = tempfile::tempdir().expect("temp dir");
            let listen = free_port();
            let web = fronts.map(|f| (free_port(), f));
            let conf = dir.path().join("nginx.conf");
            std::fs::write(&conf, render_with_web(upstreams, listen, web)).expect("write config");
            let mut prefix = dir.path().as_os_str().to_owned();
            prefix.push("/");
            let child = Command::new(&nginx)
                .arg("-p")
                .arg(&prefix)
                .arg("-c")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start nginx");
            let mut running = TestNginx {
                child,
                addr: listen,
                web: web.map(|(addr, _)| addr),
                dir,
            };
            match running.wait_listening() {
                Ok(()) => return Some(running),
                Err(log) => last_error = log,
            }
        }
        panic!("nginx did not start: {last_error}");
    }

    /// Waits until nginx accepts connections, or returns its error log if it exited.
    fn wait_listening(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Err(format!("exited with {status}: {}", self.error_log()));
            }
            // A probe connection is proxied to a server and closed at once: harmless.
            let listening =
                |a: &SocketAddr| TcpStream::connect_timeout(a, Duration::from_millis(200)).is_ok();
            if listening(&self.addr) && self.web.as_ref().is_none_or(listening) {
                return Ok(());
            }
            assert!(
                Instant::now() < deadline,
                "nginx did not listen in time: {}",
                self.error_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A new client connected through nginx.
    pub fn client(&self) -> Client {
        Client::connect(self.addr).expect("connect through nginx")
    }

    /// A new client, connected through nginx, that registers `name` (password `pw-<name>`)
    /// and logs in.
    pub fn user(&self, name: &str) -> (Client, UserId) {
        let mut c = self.client();
        let id = c.register(name, &format!("pw-{name}")).expect("register");
        c.login(id, &format!("pw-{name}")).expect("login");
        (c, id)
    }

    /// The config nginx runs with.
    pub fn config(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("nginx.conf")).unwrap_or_default()
    }

    /// nginx's error log so far.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for TestNginx {
    fn drop(&mut self) {
        // SIGTERM, not SIGKILL: the master must take its worker down with it.
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill(2) on our own child's pid; it is not reaped yet, so the pid is
            // still ours.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `nginx` from `CHAT_TEST_NGINX`, `/usr/sbin/nginx` or the `PATH`.
pub fn find_nginx() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CHAT_TEST_NGINX") {
        return Some(path.into());
    }
    let sbin = PathBuf::from("/usr/sbin/nginx");
    if sbin.exists() {
        return Some(sbin);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("nginx"))
            .find(|p| p.exists())
    })
}

fn missing(what: &str) -> Option<TestNginx> {
    if services_required() {
        panic!("{what}");
    }
    eprintln!("note: skipping nginx test: {what}");
    None
}

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
}
