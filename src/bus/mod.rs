//! Delivery between servers, behind one trait.
//!
//! A server alone uses [`local::LocalBus`]: there is nobody else to deliver to, so a message
//! for a user who is not connected here is stored offline. A cluster uses the Redis backend:
//! each server subscribes to one channel per user it has online, and publishing reports how
//! many servers received the message (0 means: store it offline).

pub(crate) mod local;
pub(crate) mod redis;
mod redis_endpoint;
mod redis_names;
mod redis_publisher;
mod redis_subscriber;

use clusterchat_proto::UserId;
use std::sync::Arc;

/// What can go wrong on the bus.
#[derive(Debug, thiserror::Error)]
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
    /// A message arrived for a user this server subscribed to.
    Message {
        /// The receiver.
        user: UserId,
        /// The chat frame, as published.
        frame: &'a [u8],
    },
    /// The bus came back after an outage and every local user is subscribed again. Messages
    /// sent meanwhile were stored offline: the server delivers them now.
    Reconnected,
}

/// Receives the outcome of [`Bus::publish_async`]: `Ok(true)` some server took the message,
/// `Ok(false)` nobody has the user online, `Err` the bus is down (store it offline).
pub(crate) type PublishDone = Box<dyn FnOnce(Result<bool, BusError>) + Send>;

/// The callback that receives [`BusEvent`]s.
pub(crate) type Inbound = Arc<dyn Fn(BusEvent<'_>) + Send + Sync>;

/// Cross-server delivery and node liveness.
pub(crate) trait Bus: Send + Sync {
    /// Starts receiving messages for `user` (called at login, before the login reply).
    fn subscribe(&self, user: UserId);

    /// Stops receiving messages for `user` (logout, disconnect).
    fn unsubscribe(&self, user: UserId);

    /// Sends `frame` to whichever server has `user` online. `Ok(true)`: some server took it;
    /// `Ok(false)`: nobody has the user (store it offline).
    fn publish(&self, user: UserId, frame: &[u8]) -> Result<bool, BusError>;

    /// Like [`publish`](Self::publish) without waiting: `done` is called with the outcome,
    /// possibly on another thread, and must not block. Messages queued in order by one thread
    /// are published in order. The default waits (for buses where that costs nothing).
    fn publish_async(&self, user: UserId, frame: bytes::Bytes, done: PublishDone) {
        done(self.publish(user, &frame));
    }

    /// Whether the server named `node` is alive as far as the bus can tell (its liveness key;
    /// alone: only this server), so that the sessions a dead server left behind may be taken
    /// over (together with the store's `node_running`).
    fn node_alive(&self, node: &str) -> Result<bool, BusError>;

    /// Installs the callback for inbound messages. Called once, before any subscribe.
    fn set_inbound(&self, inbound: Inbound);

    /// Whether this server runs alone (nobody to publish to).
    fn is_standalone(&self) -> bool;

    /// Stops background threads; called at shutdown.
    fn shutdown(&self) {}
}

/// A shared bus handle.
pub(crate) type SharedBus = Arc<dyn Bus>;
