//! Fair turns at password hashing between source addresses.
//!
//! A LOGIN or REG costs a password hash (~20 ms of CPU at the default cost). Queued on the
//! connection's worker like any request, a flood of them from one address (16 connections ×
//! 2,000 wrong logins) fills every worker's queue, and a login from another address waits
//! behind thousands of hashes. So these requests go through this gate instead: at most
//! `slots` of them are on the workers at once; the others wait here, one queue per address,
//! and a freed turn goes to the next address in round-robin order. A login from a new address
//! therefore waits for at most the turns in flight plus one per address waiting, never for
//! another address's backlog.
//!
//! A connection's order is kept: while its LOGIN or REG waits here, everything it sends after
//! (and its close) waits behind it in the connection's `held` queue
//! ([`Admission`](crate::service::context::Admission)), and follows it to the worker once it
//! gets its turn. The turn ends when the request has hashed
//! ([`ConnContext::end_hash_turn`](crate::service::ConnContext::end_hash_turn)), or at the end
//! of the request: the rest of a login (database, backlog stream) does not hold it.

use crate::service::throttle::addr_key;
use crate::service::ChatConn;
use crate::sync::LockExt;
use crate::worker_pool::{Job, WorkerPool};
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// A request waiting for its turn.
struct Waiting {
    conn: ChatConn,
    job: Job,
}

#[derive(Default)]
struct Turns {
    /// Turns given out and not yet back.
    busy: usize,
    /// Addresses with waiting requests, in the order their next turn comes.
    order: VecDeque<IpAddr>,
    /// The waiting requests of each address, oldest first.
    waiting: HashMap<IpAddr, VecDeque<Waiting>>,
}

/// The gate in front of the workers for requests that hash a password (see the module docs).
pub(crate) struct LoginGate {
    workers: Arc<WorkerPool>,
    slots: usize,
    turns: Mutex<Turns>,
}

/// A turn at hashing: dropping it gives it to the next waiting request.
struct Turn(Arc<LoginGate>);

impl Drop for Turn {
    fn drop(&mut self) {
        self.0.turn_done();
    }
}

impl LoginGate {
    /// A gate that lets `slots` hashing requests (at least one) onto `workers` at once.
    pub(crate) fn new(workers: Arc<WorkerPool>, slots: usize) -> Arc<Self> {
        Arc::new(LoginGate {
            workers,
            slots: slots.max(1),
            turns: Mutex::new(Turns::default()),
        })
    }

    /// Queues `job` on `conn`'s worker, or behind the request of `conn` that waits at the
    /// gate. Thread safe.
    pub(crate) fn execute(&self, conn: &ChatConn, job: Job) {
        let mut admission = conn.context().admission();
        match admission.held.as_mut() {
            Some(held) => held.push_back((false, job)),
            None => self.workers.execute(conn.id(), job),
        }
    }

    /// Queues `job`, a request that hashes a password, for its turn (behind what `conn` has
    /// waiting already). Thread safe.
    pub(crate) fn execute_hashing(self: &Arc<Self>, conn: &ChatConn, job: Job) {
        {
            let mut admission = conn.context().admission();
            match admission.held.as_mut() {
                Some(held) => return held.push_back((true, job)),
                None => admission.held = Some(VecDeque::new()),
            }
        }
        self.enter(conn.clone(), job);
    }

    /// Waits for a turn (or takes a free one at once).
    fn enter(self: &Arc<Self>, conn: ChatConn, job: Job) {
        {
            let mut guard = self.turns.locked();
            let turns = &mut *guard;
            if turns.busy >= self.slots {
                let addr = addr_key(conn.peer());
                let queue = turns.waiting.entry(addr).or_default();
                if queue.is_empty() {
                    turns.order.push_back(addr);
                }
                queue.push_back(Waiting { conn, job });
                return;
            }
            turns.busy += 1;
        }
        self.admit(conn, job);
    }

    /// Starts a request that has its turn, then lets what `conn` holds behind it follow it to
    /// the worker, up to its next hashing request (which waits for a turn of its own).
    fn admit(self: &Arc<Self>, conn: ChatConn, job: Job) {
        let turn = Turn(Arc::clone(self));
        let conn2 = conn.clone();
        self.workers.execute(
            conn.id(),
            Box::new(move || {
                conn2.context().admission().turn = Some(Box::new(turn));
                job();
                conn2.context().end_hash_turn();
            }),
        );
        let next = {
            let mut admission = conn.context().admission();
            let held = admission
                .held
                .as_mut()
                .expect("a connection at the gate holds");
            loop {
                match held.pop_front() {
                    Some((false, job)) => self.workers.execute(conn.id(), job),
                    Some((true, job)) => break Some(job),
                    None => {
                        admission.held = None;
                        break None;
                    }
                }
            }
        };
        if let Some(job) = next {
            self.enter(conn, job);
        }
    }

    /// A turn came back: the next address in line gets it.
    fn turn_done(self: &Arc<Self>) {
        let next = {
            let mut guard = self.turns.locked();
            let turns = &mut *guard;
            let next = turns.order.pop_front().map(|addr| {
                let queue = turns
                    .waiting
                    .get_mut(&addr)
                    .expect("an address in line waits");
                let next = queue.pop_front().expect("an address in line waits");
                if queue.is_empty() {
                    turns.waiting.remove(&addr);
                } else {
                    turns.order.push_back(addr);
                }
                next
            });
            if next.is_none() {
                turns.busy -= 1;
            }
            next
        };
        if let Some(Waiting { conn, job }) = next {
            self.admit(conn, job);
        }
    }
}
