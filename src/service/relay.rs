//! Chat between servers of a cluster: sending without waiting, receiving without a hop.
//!
//! Sending: a one-to-one message for a user who is not on this server is handed to the bus
//! without waiting and completed when PUBLISH answers.
//!
//! The connection is not held back meanwhile: its next messages take the fast path too, and
//! the publisher keeps them in order behind this one (acks may then come out of order; they
//! carry their `reqid`). "Delivered" acks at once; "nobody" or "bus down" stores the message
//! offline on a worker (keyed by the receiver, so stores for one receiver keep their order),
//! under the receiver's lock and after one more look at this server (they may have logged in
//! here meanwhile), then nudges, then acks.

use super::chat::as_text;
use super::context::ChatConn;
use super::online::Delivery;
use super::{send_error, send_value, ChatService, ServiceError};
use crate::sync::LockExt;
use clusterchat_net::Bytes;
use clusterchat_proto::{errno, msgid, reply, UserId};
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Receivers with bus messages still queued on a worker: until those are done, later
/// messages for the same receiver take the same path, so they cannot overtake.
#[derive(Default)]
pub(super) struct Redeliveries {
    pending: Mutex<HashMap<UserId, usize>>,
}

impl Redeliveries {
    fn is_pending(&self, user: UserId) -> bool {
        self.pending.locked().contains_key(&user)
    }

    fn add(&self, user: UserId) {
        *self.pending.locked().entry(user).or_insert(0) += 1;
    }

    fn done(&self, user: UserId) {
        let mut pending = self.pending.locked();
        if let Some(n) = pending.get_mut(&user) {
            *n -= 1;
            if *n == 0 {
                pending.remove(&user);
            }
        }
    }
}

impl ChatService {
    /// A message from the bus for `user` (called on the bus's thread, in arrival order).
    /// Receiving: if the user is online here it is queued to their connection right away, on
    /// the bus thread, which never blocks on it; otherwise (they left, or a login is racing
    /// it), and while earlier messages for them still wait on a worker, a worker delivers or
    /// stores it under the user's lock. An empty message is a nudge: drain their queue.
    pub(crate) fn inbound(self: &Arc<Self>, user: UserId, frame: Bytes) {
        let frame = if frame.is_empty() || self.redeliveries.is_pending(user) {
            frame
        } else {
            match self.online.deliver(user, frame) {
                Delivery::Queued => return,
                Delivery::NotHere(frame) => frame,
            }
        };
        self.redeliveries.add(user);
        let service = Arc::clone(self);
        self.workers.execute(
            user as u64,
            Box::new(move || {
                service.redeliver(user, frame);
                service.redeliveries.done(user);
            }),
        );
    }

    /// Publishes `frame` for `to` without waiting, then completes `conn`'s request.
    pub(super) fn relay(
        self: &Arc<Self>,
        conn: &ChatConn,
        to: UserId,
        frame: Bytes,
        reqid: Option<Box<RawValue>>,
    ) {
        let service = Arc::clone(self);
        let conn = Arc::clone(conn);
        let kept = frame.clone();
        self.bus.publish_async(
            to,
            frame,
            Box::new(move |outcome| match outcome {
                Ok(true) => service.finish_relay(&conn, Ok(()), reqid),
                Ok(false) | Err(_) => {
                    let worker_service = Arc::clone(&service);
                    service.workers.execute(
                        to as u64,
                        Box::new(move || {
                            let result = worker_service.store_relayed(to, kept);
                            worker_service.finish_relay(&conn, result, reqid);
                        }),
                    );
                }
            }),
        );
    }

    /// Nobody took a relayed message: deliver it here if the receiver arrived meanwhile, else
    /// store it (a receiver that does not exist is NOT_FOUND). Worker threads only.
    fn store_relayed(&self, to: UserId, frame: Bytes) -> Result<(), ServiceError> {
        {
            let _guard = self.locks.lock(to);
            let frame = match self.online.deliver(to, frame) {
                Delivery::Queued => return Ok(()),
                Delivery::NotHere(frame) => frame,
            };
            if self.store.user(to)?.is_none() {
                return Err(ServiceError::new(errno::NOT_FOUND, format!("no user {to}")));
            }
            self.store.store_offline(to, as_text(&frame))?;
        }
        self.nudge(to);
        Ok(())
    }

    /// Answers the relayed request.
    fn finish_relay(
        &self,
        conn: &ChatConn,
        result: Result<(), ServiceError>,
        reqid: Option<Box<RawValue>>,
    ) {
        match result {
            Ok(()) => {
                if let Some(reqid) = &reqid {
                    send_value(conn, &reply::ack(msgid::ONE_CHAT, reqid));
                }
            }
            Err(e) => send_error(conn, &e, Some(msgid::ONE_CHAT), reqid.as_deref()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Redeliveries;

    /// The ordering rule of `inbound`: while any bus message for a receiver is still queued on
    /// a worker, the receiver stays pending, so later messages queue behind it instead of
    /// overtaking it on the subscriber thread.
    #[test]
    fn a_receiver_stays_pending_until_its_last_queued_message_is_done() {
        let r = Redeliveries::default();
        assert!(!r.is_pending(5));
        r.add(5);
        r.add(5);
        r.add(6);
        r.done(5);
        assert!(r.is_pending(5), "one message for 5 still waits on a worker");
        r.done(5);
        assert!(!r.is_pending(5));
        assert!(r.is_pending(6), "receivers are counted apart");
        r.done(6);
        r.done(6); // a stray done never underflows into "pending"
        assert!(!r.is_pending(6));
    }
}
