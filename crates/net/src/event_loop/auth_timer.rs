//! The login timeout (`ServerOptions::auth_timeout`): a connection that stays unauthenticated
//! that long after it was registered, or after it last went back to unauthenticated, is
//! closed (after a last frame from `Handler::on_auth_timeout`, if the handler gives one).
//!
//! Every timer of a loop has the same length and is started on the loop thread, so they expire
//! in the order started: a queue, not a heap. A timer is not cancelled when its connection
//! authenticates or closes; it is checked when it expires (same connection, still
//! unauthenticated, no change since it started) and dropped if stale.

use super::EventLoop;
use crate::connection::TcpConnection;
use crate::Handler;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One connection's deadline.
struct AuthTimer {
    deadline: Instant,
    key: usize,
    id: u64,
    epoch: u32,
}

/// A loop's login timers, soonest first.
#[derive(Default)]
pub(super) struct AuthTimers {
    queue: VecDeque<AuthTimer>,
}

impl AuthTimers {
    /// Starts the timer of `conn` (slab `key`), from its current authentication state.
    pub(super) fn start<C>(&mut self, conn: &TcpConnection<C>, key: usize, timeout: Duration) {
        self.queue.push_back(AuthTimer {
            deadline: Instant::now() + timeout,
            key,
            id: conn.id(),
            epoch: conn.auth.epoch(),
        });
    }

    /// How long until the next timer expires.
    pub(super) fn next_timeout(&self) -> Option<Duration> {
        let first = self.queue.front()?;
        // Rounded up to the millisecond the poll counts in, so it does not wake just before.
        Some(
            first
                .deadline
                .saturating_duration_since(Instant::now())
                .saturating_add(Duration::from_micros(999)),
        )
    }
}

impl<C: Default + Send + Sync + 'static, H: Handler<C>> EventLoop<C, H> {
    /// Closes the connections whose login timer expired while they are still
    /// unauthenticated, after writing what `Handler::on_auth_timeout` gives them (as far as
    /// their sockets take it at once). Loop thread only.
    pub(super) fn expire_auth_timers(&mut self) {
        self.assert_in_loop_thread();
        let now = Instant::now();
        let mut expired = Vec::new();
        while let Some(first) = self.auth_timers.queue.front() {
            if first.deadline > now {
                break;
            }
            let t = self.auth_timers.queue.pop_front().expect("a timer");
            let Some(c) = self.conns.get(t.key) else {
                continue;
            };
            if c.handle.id() != t.id || !c.handle.auth.unauthenticated_since(t.epoch) {
                continue;
            }
            log::info!(
                "connection {} from {} did not authenticate within {:?}; closing it",
                c.handle.id(),
                c.handle.peer(),
                self.limits.auth_timeout.unwrap_or_default()
            );
            let handle = Arc::clone(&c.handle);
            if let Some(frame) = self.handler.on_auth_timeout(&handle) {
                self.queue_output(&handle, frame, None);
            }
            expired.push(handle);
        }
        if expired.is_empty() {
            return;
        }
        self.flush_dirty();
        for conn in expired {
            if let Some(key) = self.live_key(&conn) {
                self.close(key);
            }
        }
    }
}
