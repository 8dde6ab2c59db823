//! A [`Bus`] that counts the errors of the bus it wraps: every publish (waited for or not,
//! re-routes too) and liveness check that fails adds one to `clusterchat_bus_errors_total`.
//! Every method is forwarded, the provided ones too, so the wrapped bus's behaviour is
//! unchanged.

use super::atomic::StripedCounter;
use crate::bus::{Bus, BusError, Inbound, Outgoing, PublishDone, SharedBus};
use clusterchat_proto::UserId;
use std::sync::Arc;

/// The wrapper (see the module docs). Thread safe, as the bus it wraps.
pub(crate) struct CountedBus {
    inner: SharedBus,
    errors: StripedCounter,
}

impl CountedBus {
    /// Wraps `inner`, counting its errors in `errors`.
    pub(crate) fn new(inner: SharedBus, errors: StripedCounter) -> Self {
        CountedBus { inner, errors }
    }

    fn count<T>(&self, r: Result<T, BusError>) -> Result<T, BusError> {
        if r.is_err() {
            self.errors.add(1);
        }
        r
    }
}

impl Bus for CountedBus {
    fn enter(&self, user: UserId, session: &str) {
        self.inner.enter(user, session)
    }

    fn leave(&self, user: UserId, session: &str) {
        self.inner.leave(user, session)
    }

    fn publish(&self, users: &[UserId], frame: &[u8]) -> Result<bool, BusError> {
        self.count(self.inner.publish(users, frame))
    }

    fn publish_async(&self, users: Arc<[UserId]>, frame: bytes::Bytes, done: PublishDone) {
        self.inner
            .publish_async(users, frame, counting(self.errors.clone(), done))
    }

    fn publish_batch(&self, mut batch: Vec<Outgoing>) {
        for m in &mut batch {
            let done = std::mem::replace(&mut m.done, Box::new(|_| {}));
            m.done = counting(self.errors.clone(), done);
        }
        self.inner.publish_batch(batch)
    }

    fn reroute(&self, users: Arc<[UserId]>, frame: bytes::Bytes, done: PublishDone) {
        self.inner
            .reroute(users, frame, counting(self.errors.clone(), done))
    }

    fn node_alive(&self, node: &str) -> Result<bool, BusError> {
        self.count(self.inner.node_alive(node))
    }

    fn forget_node(&self, node: &str) {
        self.inner.forget_node(node)
    }

    fn set_inbound(&self, inbound: Inbound) {
        self.inner.set_inbound(inbound)
    }

    fn is_standalone(&self) -> bool {
        self.inner.is_standalone()
    }

    fn shutdown(&self) {
        self.inner.shutdown()
    }
}

/// `done`, counting a failed outcome in `errors` first.
fn counting(errors: StripedCounter, done: PublishDone) -> PublishDone {
    Box::new(move |outcome| {
        if outcome.is_err() {
            errors.add(1);
        }
        done(outcome)
    })
}
