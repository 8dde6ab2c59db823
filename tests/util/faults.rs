//! Helpers shared by the fault-injection tests (`tests/fault_*.rs`): one test at a time, a
//! bound for one reply, registering users, and waiting on the shared inboxes of
//! [`super::peer::Peer`]s.

use super::peer::{Inbox, Inboxes};
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One test at a time: each starts several servers (and maybe a database) of its own.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// A generous bound for one reply from a server (the database pool times out after 5 s).
pub const REPLY: Duration = Duration::from_secs(20);

/// Registers `name` (password `pw-<name>`) through the server at `addr`.
pub fn register(addr: std::net::SocketAddr, name: &str) -> i64 {
    let mut c = clusterchat_proto::client::Client::connect(addr).expect("connect");
    c.register(name, &format!("pw-{name}")).expect("register")
}

/// A snapshot of every inbox.
pub fn inboxes_now(inboxes: &Inboxes) -> HashMap<i64, Inbox> {
    inboxes.lock().unwrap().clone()
}

/// Waits (up to `timeout`) until `done` holds for the inboxes; returns whether it did.
pub fn wait_inboxes(
    inboxes: &Inboxes,
    timeout: Duration,
    done: impl Fn(&HashMap<i64, Inbox>) -> bool,
) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done(&inboxes_now(inboxes)) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
