//! Which servers are alive, and the sessions of those that are gone.
//!
//! A session row names its server (`"<node>/<connection>"`). A server counts as alive while
//! it holds its node lock on the database (MySQL; see `Store::lock_node`) or, in a cluster,
//! while its liveness key in Redis lives. Only a server proven gone on both counts has its
//! sessions released: a failed or stray start never logs out the users of a running server.

use super::{ChatService, ServiceError};
use crate::store::StoreError;

impl ChatService {
    /// Whether the server named `node` is alive (this one always is).
    pub(super) fn node_alive(&self, node: &str) -> Result<bool, ServiceError> {
        if node == self.node || self.store.node_running(node)? {
            return Ok(true);
        }
        Ok(self.bus.node_alive(node)?)
    }

    /// Start-up, once the store and the bus are locked and connected: releases the sessions
    /// left by servers that are gone and returns how many. A store this process owns
    /// exclusively (SQLite) holds nobody else's sessions, so all go; otherwise this node's own
    /// (its lock, held now, proves the last server of this name gone), then those of every
    /// other server proven gone.
    ///
    /// First, the presence directory entries of this node's previous run go (in a cluster):
    /// a server killed and started again at once under the same node id keeps its liveness
    /// key alive, so no other server ever finds it gone and deletes them, and they would
    /// keep routing its users' messages here.
    pub(crate) fn release_stale_sessions(&self) -> Result<u64, StoreError> {
        self.bus.forget_node(&self.node);
        if self.store.exclusive() {
            return self.store.release_all();
        }
        Ok(self.store.release_node(&self.node)? + self.reap_dead_nodes())
    }

    /// Sets offline the users of every other server proven gone (its liveness key expired,
    /// in a cluster, and nobody holds its node lock on the database); returns how many.
    /// Called at start-up and every few seconds by the housekeeper.
    pub(crate) fn reap_dead_nodes(&self) -> u64 {
        let nodes = match self.store.session_nodes() {
            Ok(nodes) => nodes,
            Err(e) => {
                log::debug!("session reaper: {e}");
                return 0;
            }
        };
        let mut total = 0;
        for node in nodes.iter().filter(|n| **n != self.node) {
            if !matches!(self.bus.node_alive(node), Ok(false)) {
                continue;
            }
            match self.store.release_dead_node(node) {
                Ok(Some(n)) => {
                    if n > 0 {
                        log::info!("server {node} is gone: set its {n} users offline");
                        self.bus.forget_node(node);
                    }
                    total += n;
                }
                Ok(None) => {}
                Err(e) => log::warn!("cannot release the sessions of {node}: {e}"),
            }
        }
        total
    }

    /// Keeps this server's node lock on the database (see `Store::keep_node_lock`). Called
    /// every few seconds by the housekeeper.
    pub(crate) fn keep_node_lock(&self) {
        match self.store.keep_node_lock() {
            Ok(()) => {}
            Err(e @ StoreError::Locked(_)) => log::warn!("node lock: {e}"),
            // The database is down: its outage is reported where requests fail.
            Err(e) => log::debug!("node lock: {e}"),
        }
    }
}
