//! What the reactor can tell about itself, for monitoring: connections admitted, refused and
//! open, and output bytes waiting in the loops. The counters are kept where the reactor
//! already does its bookkeeping (the admission counts, under the lock the acceptor takes
//! anyway; one plain atomic per loop, stored once per loop iteration), so the hot path pays
//! nothing for them. [`ServerHandle::stats`](crate::ServerHandle::stats) reads a snapshot.

use crate::admission::Admission;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A snapshot of a server's counters (see [`ServerHandle::stats`](crate::ServerHandle::stats)).
/// Totals count since the server started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Connections accepted and admitted (handed to a loop).
    pub accepted: u64,
    /// Connections closed at once because `max_connections` were open.
    pub refused_full: u64,
    /// Connections closed at once because their address had `max_unauthenticated_per_ip`
    /// unauthenticated connections open.
    pub refused_address: u64,
    /// Connections closed at once because the process was out of file descriptors.
    pub refused_no_descriptor: u64,
    /// Connections open now (admitted and not yet closed).
    pub open: u64,
    /// Bytes queued to connections and not yet written to their sockets, summed over the
    /// loops as each last saw it (at the end of its latest iteration).
    pub output_bytes: u64,
}

/// Reads a server's [`NetStats`] (from
/// [`ServerHandle::stats_source`](crate::ServerHandle::stats_source)); it stays valid, reading
/// the last values, after the server stopped. Thread safe; cheap to clone.
#[derive(Clone)]
pub struct NetStatsSource {
    pub(crate) admission: Arc<Admission>,
    pub(crate) loops: Vec<Arc<AtomicUsize>>,
}

impl NetStatsSource {
    /// A snapshot (the connection counts are read under the admission lock, which accepts
    /// and closes take too: call it per scrape, not per message).
    pub fn read(&self) -> NetStats {
        let output: usize = self.loops.iter().map(|l| l.load(Ordering::Relaxed)).sum();
        NetStats {
            output_bytes: output as u64,
            ..self.admission.stats()
        }
    }
}

impl std::fmt::Debug for NetStatsSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("NetStatsSource").field(&self.read()).finish()
    }
}
