//! `/api/cluster`: the live servers and the users online on each, as JSON, from a snapshot
//! at most [`FRESH`] old. Taking a snapshot asks the database (sessions are named
//! `<node>/<connection>`) and the bus (liveness keys), so it runs on a worker, never on an IO
//! thread; IO threads only read the cached one.

use crate::bus::SharedBus;
use crate::store::SharedStore;
use bytes::Bytes;
use serde::Serialize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a snapshot is served before it is taken again.
pub(crate) const FRESH: Duration = Duration::from_secs(1);

/// The body of `/api/cluster`.
#[derive(Serialize)]
struct Snapshot<'a> {
    node: &'a str,
    servers: Vec<Server>,
}

/// One server in it.
#[derive(Serialize)]
struct Server {
    node: String,
    online: u64,
    #[serde(rename = "self")]
    this: bool,
}

/// The cached snapshot and what it is taken from. Thread safe.
pub(crate) struct Cluster {
    store: SharedStore,
    bus: SharedBus,
    node: String,
    cache: Mutex<Option<(Instant, Bytes)>>,
}

impl Cluster {
    pub(crate) fn new(store: SharedStore, bus: SharedBus, node: String) -> Self {
        Cluster {
            store,
            bus,
            node,
            cache: Mutex::new(None),
        }
    }

    /// The cached body, if it is fresh. Any thread (IO threads included: no I/O).
    pub(crate) fn cached(&self) -> Option<Bytes> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        match &*cache {
            Some((at, body)) if at.elapsed() < FRESH => Some(body.clone()),
            _ => None,
        }
    }

    /// Takes a snapshot (or reuses one taken meanwhile by another worker) and caches it.
    /// Blocks on the database and the bus: a worker thread only. Errors: the database's, as
    /// a message for a 503.
    pub(crate) fn refresh(&self) -> Result<Bytes, String> {
        if let Some(body) = self.cached() {
            return Ok(body);
        }
        let counts = self.store.sessions_per_node().map_err(|e| e.to_string())?;
        let mut servers: Vec<Server> = counts
            .into_iter()
            .filter(|(node, _)| {
                // A server whose liveness the bus cannot tell is shown rather than hidden.
                *node == self.node || !matches!(self.bus.node_alive(node), Ok(false))
            })
            .map(|(node, online)| Server {
                this: node == self.node,
                node,
                online,
            })
            .collect();
        if !servers.iter().any(|s| s.this) {
            servers.push(Server {
                node: self.node.clone(),
                online: 0,
                this: true,
            });
        }
        servers.sort_by(|a, b| a.node.cmp(&b.node));
        let body = serde_json::to_vec(&Snapshot {
            node: &self.node,
            servers,
        })
        .expect("JSON serialises");
        let body = Bytes::from(body);
        *self.cache.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((Instant::now(), body.clone()));
        Ok(body)
    }
}
