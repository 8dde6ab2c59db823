//! Delivery between servers, behind one trait.
//!
//! A server alone uses [`local::LocalBus`]: there is nobody else to deliver to, so a message
//! for a user who is not connected here waits in the log. A cluster uses the Redis backend,
//! which routes by server, not by user: a presence directory says which server holds which
//! user, a message goes once to each server that has receivers for it (with the list of them),
//! batched with whatever else goes there at the same moment, and that server fans it out to
//! its local connections (see [`redis_route`]).

pub(crate) mod local;
pub(crate) mod redis;
mod redis_answers;
mod redis_directory;
mod redis_endpoint;
mod redis_inflight;
mod redis_names;
mod redis_publisher;
mod redis_route;
mod redis_sender;
mod redis_subscriber;
mod redis_wake;

use clusterchat_proto::UserId;
use std::sync::Arc;

/// What can go wrong on the bus.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BusError {
    /// The broker is unreachable; callers fall back to offline storage.
    #[error("message bus unavailable: {0}")]
    Unavailable(String),
    /// The bus URL could not be understood.
    #[error("bad message bus URL {0}")]
    BadUrl(String),
    /// The broker answers but refuses this server: a wrong password or user, a password it
    /// wants and the URL lacks, a database it may not select. The message says which.
    #[error("{0}")]
    Refused(String),
}

/// What a bus backend reports to the server, from its own thread.
#[derive(Debug)]
pub(crate) enum BusEvent<'a> {
    /// A message arrived for users this server holds (as far as the directory knew when it
    /// was routed): fan it out to their connections.
    Message {
        /// The receivers on this server.
        users: &'a [UserId],
        /// The frame, as published (empty: a nudge, read the log again for them), copied out
        /// of the payload it came in.
        frame: bytes::Bytes,
        /// Sent straight here by a sender's presence cache, which may be stale: a chat
        /// message for a receiver not here must be sent again with [`Bus::reroute`]. `false`:
        /// routed by the directory after the message was stored; a receiver not here may be
        /// skipped.
        direct: bool,
    },
    /// The bus came back after an outage: this server listens again and its users are in the
    /// directory again. Messages sent meanwhile are in the log: the server reads it for them.
    Reconnected,
}

/// Receives the outcome of [`Bus::publish_async`]: `Ok(true)` some server took the message,
/// `Ok(false)` none of its recipients is online anywhere, `Err` the bus is down (it waits in
/// the log; nudge its recipients later).
pub(crate) type PublishDone = Box<dyn FnOnce(Result<bool, BusError>) + Send>;

/// One message of [`Bus::publish_batch`]: its recipients, frame and outcome callback, as
/// [`Bus::publish_async`] takes them.
pub(crate) struct Outgoing {
    pub(crate) users: Arc<[UserId]>,
    pub(crate) frame: bytes::Bytes,
    pub(crate) done: PublishDone,
}

/// The callback that receives [`BusEvent`]s.
pub(crate) type Inbound = Arc<dyn Fn(BusEvent<'_>) + Send + Sync>;

/// Cross-server delivery, presence and node liveness.
pub(crate) trait Bus: Send + Sync {
    /// Records that `user` is online here under `session` (`"<node>/<connection>"`): from now
    /// on their messages are routed to this server. Called at login, after the store's claim
    /// and before the log is read. Blocks for one Redis round trip; a failure is retried by
    /// the bus (and the user's log read again then).
    fn enter(&self, user: UserId, session: &str);

    /// Forgets `user`'s entry if it still names `session` (logout, disconnect, takeover).
    /// Never blocks: the delete may reach Redis later, which is harmless (a message routed
    /// by the old entry finds nobody here and waits in the log).
    fn leave(&self, user: UserId, session: &str);

    /// Sends `frame` to the servers that hold any of `users`, each with the list of those it
    /// holds, and waits. `Ok(true)`: some server took it; `Ok(false)`: none of them is online.
    fn publish(&self, users: &[UserId], frame: &[u8]) -> Result<bool, BusError>;

    /// Like [`publish`](Self::publish) without waiting: `done` is called with the outcome,
    /// possibly on another thread, and must not block. Messages queued in order by one thread
    /// are published in order. The default waits (for buses where that costs nothing).
    fn publish_async(&self, users: Arc<[UserId]>, frame: bytes::Bytes, done: PublishDone) {
        done(self.publish(&users, &frame));
    }

    /// Like [`publish_async`](Self::publish_async) for several messages, published in order:
    /// the log writer hands over everything one commit pushes elsewhere at once, so that the
    /// publisher wakes once for it and sends it in one round (handed over one by one, the
    /// first message woke the publisher and went alone while the writer queued the rest).
    /// The default publishes them one by one.
    fn publish_batch(&self, batch: Vec<Outgoing>) {
        for m in batch {
            self.publish_async(m.users, m.frame, m.done);
        }
    }

    /// Sends a stored message that arrived here by a stale presence cache for `users`, who
    /// are not here, through the directory as it is now (never through a cache, so a second
    /// miss is dropped, not sent again). Never blocks: `done` gets the outcome, as with
    /// [`publish_async`](Self::publish_async) (`Err`: nudge them later). The default (a bus
    /// with no other server) reaches nobody.
    fn reroute(&self, _users: Arc<[UserId]>, _frame: bytes::Bytes, done: PublishDone) {
        done(Ok(false));
    }

    /// Whether the server named `node` is alive as far as the bus can tell (its liveness key;
    /// alone: only this server), so that the sessions a dead server left behind may be taken
    /// over (together with the store's `node_running`).
    fn node_alive(&self, node: &str) -> Result<bool, BusError>;

    /// Deletes the directory entries of `node`, a server proven gone (its users were set
    /// offline): they route nothing already (nobody listens on its channel), this keeps the
    /// directory from growing with them. Called by the housekeeper, and at start-up for this
    /// server's own node (what a previous run under the same id left: it may still route
    /// here, as this node's channel has a listener again); errors are only logged.
    fn forget_node(&self, _node: &str) {}

    /// Installs the callback for inbound messages. Called once, before any login.
    fn set_inbound(&self, inbound: Inbound);

    /// Whether this server runs alone (nobody to publish to).
    fn is_standalone(&self) -> bool;

    /// Stops background threads; called at shutdown.
    fn shutdown(&self) {}
}

/// A shared bus handle.
pub(crate) type SharedBus = Arc<dyn Bus>;
