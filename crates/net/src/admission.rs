//! Admission control: how many connections are open, and how many of them are not yet
//! authenticated per source address. The acceptor asks before it hands a socket to a loop
//! ([`Admission::admit`]); the application says when a connection authenticates
//! ([`TcpConnection::set_authenticated`](crate::TcpConnection::set_authenticated)); the loop
//! releases a connection when it ends. What "authenticated" means is the application's
//! business (a login): the reactor only counts.
//!
//! Thread safe: the counters sit behind one mutex, taken on an accept, an authentication
//! change and a close (never per message).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Why the acceptor closed a new connection at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// `max_connections` connections are open.
    Full,
    /// `max_unauthenticated_per_ip` unauthenticated connections from this address are open.
    Address,
}

/// A connection's standing, kept in its handle and changed only under the admission lock.
pub(crate) struct AuthState {
    state: AtomicU8,
    /// Bumped on every change, so that a login timer set before a login and a logout can tell
    /// it is stale.
    epoch: AtomicU32,
}

const UNAUTHENTICATED: u8 = 0;
const AUTHENTICATED: u8 = 1;
/// Closed (or never registered): released, counted nowhere.
const GONE: u8 = 2;

impl AuthState {
    /// A new connection: unauthenticated (and counted as such by [`Admission::admit`]).
    pub(crate) fn new() -> Self {
        AuthState {
            state: AtomicU8::new(UNAUTHENTICATED),
            epoch: AtomicU32::new(0),
        }
    }

    /// Whether the application said the peer authenticated. Thread safe.
    pub(crate) fn is_authenticated(&self) -> bool {
        self.state.load(Ordering::Acquire) == AUTHENTICATED
    }

    /// Whether the connection is still unauthenticated since the change numbered `epoch`.
    pub(crate) fn unauthenticated_since(&self, epoch: u32) -> bool {
        self.state.load(Ordering::Acquire) == UNAUTHENTICATED
            && self.epoch.load(Ordering::Acquire) == epoch
    }

    /// The number of the last change.
    pub(crate) fn epoch(&self) -> u32 {
        self.epoch.load(Ordering::Acquire)
    }
}

/// The server's connection counts and limits (from `ServerOptions`), shared by the acceptor,
/// the loops and the connection handles.
pub(crate) struct Admission {
    max_connections: Option<usize>,
    max_unauthenticated_per_ip: Option<usize>,
    counts: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    /// Connections admitted and not yet released.
    open: usize,
    /// Unauthenticated connections per source address (only while a per-address limit is
    /// set; addresses with none are removed).
    unauthenticated: HashMap<IpAddr, usize>,
    /// Totals since start, for [`Admission::stats`].
    totals: crate::NetStats,
}

impl Admission {
    pub(crate) fn new(
        max_connections: Option<usize>,
        max_unauthenticated_per_ip: Option<usize>,
    ) -> Self {
        Admission {
            max_connections,
            max_unauthenticated_per_ip,
            counts: Mutex::default(),
        }
    }

    /// Locks the counts, ignoring poison: they are only changed by a few lines that cannot
    /// panic halfway, and a panic elsewhere must not spread to the acceptor or a loop.
    fn counts(&self) -> MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The limits, for log lines.
    pub(crate) fn limits(&self) -> (Option<usize>, Option<usize>) {
        (self.max_connections, self.max_unauthenticated_per_ip)
    }

    /// Counts a new (unauthenticated) connection from `ip`, or says why it must be closed.
    /// Acceptor thread.
    pub(crate) fn admit(&self, ip: IpAddr) -> Result<(), Refusal> {
        let mut counts = self.counts();
        if self.max_connections.is_some_and(|max| counts.open >= max) {
            counts.totals.refused_full += 1;
            return Err(Refusal::Full);
        }
        if let Some(max) = self.max_unauthenticated_per_ip {
            let n = counts.unauthenticated.entry(ip.to_canonical()).or_insert(0);
            if *n >= max {
                counts.totals.refused_address += 1;
                return Err(Refusal::Address);
            }
            *n += 1;
        }
        counts.open += 1;
        counts.totals.accepted += 1;
        Ok(())
    }

    /// Counts a connection closed at once for want of a file descriptor. Acceptor thread.
    pub(crate) fn note_no_descriptor(&self) {
        self.counts().totals.refused_no_descriptor += 1;
    }

    /// The totals and the open count (`output_bytes` left 0: the loops keep it). Thread safe.
    pub(crate) fn stats(&self) -> crate::NetStats {
        let counts = self.counts();
        crate::NetStats {
            open: counts.open as u64,
            ..counts.totals
        }
    }

    /// Moves a connection from `ip` to `authenticated` (true) or back (false); false when it
    /// already was there or is closed. Thread safe.
    pub(crate) fn set_authenticated(
        &self,
        auth: &AuthState,
        ip: IpAddr,
        authenticated: bool,
    ) -> bool {
        let to = if authenticated {
            AUTHENTICATED
        } else {
            UNAUTHENTICATED
        };
        let mut counts = self.counts();
        let from = auth.state.load(Ordering::Acquire);
        if from == GONE || from == to {
            return false;
        }
        auth.state.store(to, Ordering::Release);
        auth.epoch.fetch_add(1, Ordering::AcqRel);
        if self.max_unauthenticated_per_ip.is_some() {
            if authenticated {
                counts.forget_unauthenticated(ip);
            } else {
                *counts.unauthenticated.entry(ip.to_canonical()).or_insert(0) += 1;
            }
        }
        true
    }

    /// Uncounts a connection that ended (or was never registered). Idempotent. Thread safe.
    pub(crate) fn release(&self, auth: &AuthState, ip: IpAddr) {
        let mut counts = self.counts();
        let from = auth.state.swap(GONE, Ordering::AcqRel);
        if from == GONE {
            return;
        }
        counts.open -= 1;
        if from == UNAUTHENTICATED && self.max_unauthenticated_per_ip.is_some() {
            counts.forget_unauthenticated(ip);
        }
    }
}

impl Counts {
    fn forget_unauthenticated(&mut self, ip: IpAddr) {
        let ip = ip.to_canonical();
        if let Some(n) = self.unauthenticated.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.unauthenticated.remove(&ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Admission, AuthState, Refusal};
    use std::net::IpAddr;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn unauthenticated_connections_are_counted_per_address() {
        let a = Admission::new(None, Some(2));
        let (one, two) = (AuthState::new(), AuthState::new());
        assert_eq!(a.admit(ip("10.0.0.1")), Ok(()));
        assert_eq!(a.admit(ip("10.0.0.1")), Ok(()));
        assert_eq!(a.admit(ip("10.0.0.1")), Err(Refusal::Address));
        assert_eq!(a.admit(ip("10.0.0.2")), Ok(()), "another address");
        // One logs in: room for another; it logs out: full again.
        assert!(a.set_authenticated(&one, ip("10.0.0.1"), true));
        assert!(
            !a.set_authenticated(&one, ip("10.0.0.1"), true),
            "no change"
        );
        assert_eq!(a.admit(ip("::ffff:10.0.0.1")), Ok(()), "the same address");
        assert!(a.set_authenticated(&one, ip("10.0.0.1"), false));
        assert_eq!(a.admit(ip("10.0.0.1")), Err(Refusal::Address));
        // Three now (the logout made it one over): closing frees a place, once.
        a.release(&two, ip("10.0.0.1"));
        a.release(&two, ip("10.0.0.1"));
        assert!(!a.set_authenticated(&two, ip("10.0.0.1"), true), "closed");
        assert_eq!(a.admit(ip("10.0.0.1")), Err(Refusal::Address), "still two");
        a.release(&one, ip("10.0.0.1"));
        assert_eq!(a.admit(ip("10.0.0.1")), Ok(()));
        assert_eq!(a.admit(ip("10.0.0.1")), Err(Refusal::Address));
    }

    #[test]
    fn all_connections_are_counted_against_the_total() {
        let a = Admission::new(Some(2), None);
        let (one, two) = (AuthState::new(), AuthState::new());
        assert_eq!(a.admit(ip("10.0.0.1")), Ok(()));
        assert_eq!(a.admit(ip("10.0.0.2")), Ok(()));
        assert!(a.set_authenticated(&one, ip("10.0.0.1"), true));
        assert_eq!(a.admit(ip("10.0.0.3")), Err(Refusal::Full));
        a.release(&one, ip("10.0.0.1"));
        assert_eq!(a.admit(ip("10.0.0.3")), Ok(()));
        a.release(&two, ip("10.0.0.2"));
        assert_eq!(a.admit(ip("10.0.0.4")), Ok(()));
    }

    #[test]
    fn the_epoch_tells_a_stale_timer() {
        let a = Admission::new(None, None);
        let s = AuthState::new();
        assert!(s.unauthenticated_since(0));
        a.set_authenticated(&s, ip("10.0.0.1"), true);
        assert!(!s.unauthenticated_since(0));
        a.set_authenticated(&s, ip("10.0.0.1"), false);
        assert!(!s.unauthenticated_since(0), "logged in and out since");
        assert!(s.unauthenticated_since(s.epoch()));
    }
}
