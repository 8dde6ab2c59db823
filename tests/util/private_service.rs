//! What the private Redis and MariaDB instances share: free ports, finding binaries, signals,
//! and skipping (or failing, with `CHAT_REQUIRE_SERVICES=1`) when a binary is missing.

use super::mysql_db::services_required;
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

/// A TCP port that was free a moment ago on 127.0.0.1 (bind to port 0, read it, close).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("probe a free port")
        .port()
}

/// The first of `names` found on `PATH` or in the sbin directories (often not on a user's
/// `PATH`). `None`, after a note, when none is installed, unless `CHAT_REQUIRE_SERVICES=1`,
/// which makes that a panic.
pub fn find_binary(names: &[&str], purpose: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.extend(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from));
    for name in names {
        for dir in &dirs {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    if services_required() {
        panic!("{purpose}: none of {names:?} is installed");
    }
    eprintln!("note: skipping {purpose}: none of {names:?} is installed");
    None
}

/// Sends `signal` to the child (by its own pid only) and waits up to `timeout` for it to
/// exit; kills it with SIGKILL if it does not. Returns false if SIGKILL was needed.
pub fn stop_child(child: &mut Child, signal: i32, timeout: Duration) -> bool {
    if child.try_wait().ok().flatten().is_some() {
        return true;
    }
    // SAFETY: kill(2) on the pid of a child we spawned and have not reaped yet.
    unsafe {
        libc::kill(child.id() as libc::pid_t, signal);
    }
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

/// Polls `ready` every 100 ms until it is true or `timeout` passes; false if `exited` says the
/// process is gone first.
pub fn wait_until(
    timeout: Duration,
    mut exited: impl FnMut() -> bool,
    mut ready: impl FnMut() -> bool,
) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if ready() {
            return true;
        }
        if exited() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}
