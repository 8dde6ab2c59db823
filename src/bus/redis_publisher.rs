//! The publishing side of the Redis bus for the hot path: one connection, one thread, and
//! batches routed by server.
//!
//! Chat messages for users not on this server are queued here without waiting (the caller
//! gets a callback with the outcome); the log writer hands over everything one commit sends
//! elsewhere at once ([`Publisher::publish_batch`]). When the publisher has nothing waiting,
//! the caller writes that round to Redis itself, without waking the thread
//! ([`super::redis_sender`]); otherwise the thread takes everything queued and sends it as
//! one round: one call of the routing script ([`super::redis_route`]), which
//! publishes one payload per destination server, and the cache's PUBLISHes (below). Under
//! load, many messages share one system call, one Redis wake-up and one PUBLISH per server.
//!
//! **Pipelined rounds.** The thread does not wait for a round's answers before it sends the
//! next: while answers are outstanding it waits in `poll(2)` for either an answer or a new
//! message ([`super::redis_wake`]), and sends what is queued at once, up to a bound on the
//! rounds and bytes in flight ([`super::redis_inflight`], which matches answers to rounds in
//! order). One connection, written only under one lock, keeps the order: messages queued
//! in order are published in order (a caller sends a round itself only when nothing is
//! queued or in the way). Each (re)connection authenticates, selects the database and loads the
//! script first. When the connection is found closed (Redis's `timeout`, `CLIENT KILL`, a
//! proxy's idle cut), the rounds in flight that got no answer go once more, in order and
//! before anything newer, on a new connection; only a second failure fails them (a round
//! that Redis ran but whose answer was lost is thus published twice: receivers drop the
//! second copy by seq).
//!
//! **Presence cache.** The thread keeps what the script told it about recipients (user ->
//! server, for [`super::redis_inflight::CACHE_TTL`]): a message queued with `cached` whose
//! recipients are all known skips the script and is a plain `PUBLISH` of the same payload
//! format to each of their servers' channels, in the same round, after the script call for
//! the unknown ones (one connection: Redis runs them in order, so each recipient's messages
//! keep theirs). Such a part is unmarked; a server that receives it for a user it does not
//! hold sends that user back through the script ([`super::Bus::reroute`], see
//! `ChatService::inbound`). A PUBLISH that reaches nobody (the server is gone) forgets that
//! server's entries and sends its messages through the script at once. Waited-for publishes
//! (nudges, kicks) and re-routes always go through the script.

use super::redis::Health;
use super::redis_answers::Answers;
use super::redis_endpoint::{ConnectError, Endpoint};
use super::redis_inflight::{fail, Keys, Request};
use super::redis_names::Names;
use super::redis_route::ROUTE_SCRIPT;
use super::redis_sender::{Ctx, Link, Sender as Rounds};
use super::redis_wake::{Wake, Woken};
use super::{BusError, Outgoing, PublishDone};
use crate::sync::LockExt;
use bytes::Bytes;
use clusterchat_proto::UserId;
use crossbeam_channel::{unbounded, Receiver, Sender, TryRecvError};
use std::collections::VecDeque;
use std::io::{BufReader, Write};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Most messages sent in one round.
const MAX_BATCH: usize = 1024;
/// Most recipients named in one round (past it, the rest waits for the next round; a single
/// message to more goes alone).
const MAX_RECIPIENTS: usize = 64 * 1024;
/// Most frame bytes in one round (the same).
const MAX_BYTES: usize = 4 << 20;
/// How long answers may keep the publisher waiting (a write, an answer once due): past it
/// the connection is dropped and the rounds in flight fail.
pub(super) const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// The pipelined publisher and its thread.
pub(super) struct Publisher {
    queue: Option<Sender<Vec<Request>>>,
    wake: Arc<Wake>,
    ctx: Arc<Ctx>,
    rounds: Arc<Mutex<Rounds>>,
    thread: Option<JoinHandle<()>>,
}

impl Publisher {
    /// Starts the thread; it connects (and authenticates) on first use and after failures.
    pub(super) fn start(
        endpoint: Arc<Endpoint>,
        health: Arc<Health>,
        names: &Names,
        node: &str,
    ) -> std::io::Result<Publisher> {
        let (tx, rx) = unbounded();
        let ctx = Arc::new(Ctx {
            endpoint,
            health,
            keys: Keys {
                directory: names.directory(),
                node_prefix: names.node_prefix(),
                node: node.to_string(),
            },
        });
        let wake = Arc::new(Wake::new()?);
        let rounds = Arc::new(Mutex::new(Rounds::new()));
        let thread = {
            let (wake, ctx, rounds) = (Arc::clone(&wake), Arc::clone(&ctx), Arc::clone(&rounds));
            std::thread::Builder::new()
                .name("redis-publisher".into())
                .spawn(move || {
                    Thread {
                        ctx: &ctx,
                        queue: rx,
                        wake: &wake,
                        rounds: &rounds,
                    }
                    .run()
                })?
        };
        Ok(Publisher {
            queue: Some(tx),
            wake,
            ctx,
            rounds,
            thread: Some(thread),
        })
    }

    /// Queues `payload` for the servers of `users`; `done` gets whether any received it.
    /// `cached`: the presence cache may route it. Thread safe, never blocks.
    pub(super) fn publish(
        &self,
        users: Arc<[UserId]>,
        payload: Bytes,
        done: PublishDone,
        cached: bool,
    ) {
        let request = Request {
            users,
            payload,
            done,
            cached,
        };
        self.queue(vec![request]);
    }

    /// Queues `batch`, in order, each message for the servers of its recipients (by the
    /// presence cache if it can), in one hand-off. Thread safe, never blocks.
    pub(super) fn publish_batch(&self, batch: Vec<Outgoing>) {
        let batch: Vec<Request> = batch
            .into_iter()
            .map(|m| Request {
                users: m.users,
                payload: m.frame,
                done: m.done,
                cached: true,
            })
            .collect();
        if !batch.is_empty() {
            self.queue(batch);
        }
    }

    /// Sends `batch` as a round from this thread if the publisher has nothing waiting (see
    /// `bus::redis_sender`), else hands it to the publisher thread.
    fn queue(&self, batch: Vec<Request>) {
        let stopped = |batch| fail(batch, &BusError::Unavailable("bus stopped".into()));
        let Some(q) = &self.queue else {
            return stopped(batch);
        };
        let batch = match self.send_now(q, batch) {
            Ok(()) => return,
            Err(batch) => batch,
        };
        match q.send(batch) {
            Ok(()) => self.wake.notify(),
            Err(e) => stopped(e.into_inner()),
        }
    }

    /// Sends `batch` on this thread if nothing is queued or in the way and it fits in one
    /// round; gives it back otherwise. Never waits (not even for the lock).
    fn send_now(&self, q: &Sender<Vec<Request>>, batch: Vec<Request>) -> Result<(), Vec<Request>> {
        let fits = batch.len() <= MAX_BATCH
            && batch.iter().map(|r| r.users.len()).sum::<usize>() <= MAX_RECIPIENTS
            && batch.iter().map(|r| r.payload.len()).sum::<usize>() <= MAX_BYTES;
        if !fits {
            return Err(batch);
        }
        let Ok(mut rounds) = self.rounds.try_lock() else {
            return Err(batch);
        };
        // The queue is looked at under the lock: the publisher thread takes from it only
        // while it holds the lock, so nothing this thread queued earlier is still on its way.
        if !rounds.idle() || !q.is_empty() || self.ctx.health.check().is_err() {
            return Err(batch);
        }
        let left = rounds.send_now(&self.ctx, batch);
        drop(rounds);
        if left {
            self.wake.notify();
        }
        Ok(())
    }

    /// Lets the queued messages go out and their answers come, then stops the thread.
    pub(super) fn stop(&mut self) {
        self.queue.take();
        self.wake.notify();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Connects, authenticates and selects the database ([`Endpoint::connect`]), and loads the
/// routing script.
pub(super) fn connect(endpoint: &Endpoint) -> Result<Link, ConnectError> {
    let writer = endpoint.connect(Duration::from_secs(1), "publisher")?;
    let io = |source| ConnectError::Unreachable {
        url: endpoint.shown().to_string(),
        source,
    };
    writer.set_read_timeout(Some(IO_TIMEOUT)).map_err(io)?;
    writer.set_write_timeout(Some(IO_TIMEOUT)).map_err(io)?;
    // Nothing else is sent before its answer: the reader reads no further.
    let mut reader = BufReader::new(&writer);
    let mut parser = redis::Parser::new();
    let load = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(ROUTE_SCRIPT)
        .get_packed_command();
    (&writer).write_all(&load).map_err(io)?;
    let sha = match parser.parse_value(&mut reader) {
        Ok(redis::Value::BulkString(sha)) => String::from_utf8_lossy(&sha).into_owned(),
        Ok(other) => {
            return Err(ConnectError::Refused {
                url: endpoint.shown().to_string(),
                command: "SCRIPT LOAD",
                reply: format!("{other:?}"),
            })
        }
        Err(e) => return Err(io(std::io::Error::other(e.to_string()))),
    };
    Ok(Link {
        socket: writer,
        answers: Answers::new(),
        sha,
    })
}

/// Takes the next round: the requests carried over first, then what is queued, within
/// [`MAX_BATCH`], [`MAX_RECIPIENTS`] and [`MAX_BYTES`] (what does not fit is carried over to
/// the next round; a single request past them goes alone). Empty: nothing waits.
fn next_batch(queue: &Receiver<Vec<Request>>, carry: &mut VecDeque<Request>) -> Vec<Request> {
    let mut batch = Vec::new();
    let (mut recipients, mut bytes) = (0, 0);
    loop {
        if carry.is_empty() {
            match queue.try_recv() {
                Ok(more) => carry.extend(more),
                Err(_) => break,
            }
        }
        let Some(r) = carry.front() else { break };
        let full = batch.len() >= MAX_BATCH
            || recipients + r.users.len() > MAX_RECIPIENTS
            || bytes + r.payload.len() > MAX_BYTES;
        if full && !batch.is_empty() {
            break;
        }
        recipients += r.users.len();
        bytes += r.payload.len();
        batch.extend(carry.pop_front());
    }
    batch
}

/// The publisher thread: what it shares with the callers, and its queue.
struct Thread<'a> {
    ctx: &'a Ctx,
    queue: Receiver<Vec<Request>>,
    wake: &'a Wake,
    rounds: &'a Mutex<Rounds>,
}

/// What the publisher thread does next, decided under the lock.
enum Next {
    /// Look again (something was done).
    Again,
    /// Wait for an answer on `fd` (and, if `queue`, for a new message), at most `left`.
    Wait {
        fd: std::os::fd::RawFd,
        queue: bool,
        left: Duration,
    },
    /// Nothing in flight and no connection: wait on the queue.
    Recv,
    /// The queue is closed and everything is done.
    End,
}

impl Thread<'_> {
    /// Sends rounds while earlier ones are answered: takes what is queued whenever there is
    /// room in flight, reads answers as they come, until the queue is closed and empty and
    /// nothing is in flight. Between steps it waits without the lock, on the socket even when
    /// nothing is in flight: a caller may have sent a round meanwhile (`bus::redis_sender`).
    fn run(self) {
        loop {
            let next = self.step(&mut self.rounds.locked());
            match next {
                Next::Again => {}
                Next::End => break,
                Next::Recv => match self.queue.recv() {
                    Ok(more) => self.rounds.locked().carry.extend(more),
                    Err(_) => break,
                },
                Next::Wait { fd, queue, left } => {
                    let woken = self.wake.wait(fd, queue, left);
                    let mut rounds = self.rounds.locked();
                    match woken {
                        Ok(Woken::Socket) => rounds.read_answers(self.ctx),
                        Ok(Woken::Queue) => {}
                        Ok(Woken::TimedOut) => {
                            let due = !rounds.inflight.is_empty()
                                && rounds.waiting_since.elapsed() >= IO_TIMEOUT;
                            if due {
                                rounds.broken(self.ctx, std::io::ErrorKind::TimedOut.into(), false);
                            }
                        }
                        Err(e) => rounds.broken(self.ctx, e, false),
                    }
                }
            }
        }
    }

    /// One step under the lock: write what a caller left, send a round, or say how to wait.
    fn step(&self, rounds: &mut Rounds) -> Next {
        if !rounds.unsent.is_empty() {
            rounds.flush(self.ctx);
            return Next::Again;
        }
        if let Some(batch) = rounds.again.pop_front() {
            rounds.start(self.ctx, batch, 2);
            return Next::Again;
        }
        if rounds.inflight.is_empty() && rounds.poisoned {
            rounds.link = None;
            rounds.poisoned = false;
        }
        // Closing: the queue is empty for good, but what was carried over still goes.
        let may_send = rounds.inflight.has_room() && !rounds.poisoned;
        if may_send {
            if rounds.carry.is_empty() && !rounds.closing {
                match self.queue.try_recv() {
                    Ok(more) => rounds.carry.extend(more),
                    Err(TryRecvError::Empty) => {}
                    Err(TryRecvError::Disconnected) => rounds.closing = true,
                }
            }
            if !rounds.carry.is_empty() {
                let batch = next_batch(&self.queue, &mut rounds.carry);
                rounds.start(self.ctx, batch, 1);
                return Next::Again;
            }
        }
        let idle = rounds.inflight.is_empty();
        if idle && rounds.closing && rounds.carry.is_empty() {
            return Next::End;
        }
        let Some(link) = rounds.link.as_ref() else {
            // Rounds in flight have a connection: nothing is in flight.
            return Next::Recv;
        };
        let fd = link.socket.as_raw_fd();
        let left = match idle {
            true => IO_TIMEOUT,
            false => IO_TIMEOUT.saturating_sub(rounds.waiting_since.elapsed()),
        };
        if left.is_zero() {
            rounds.broken(self.ctx, std::io::ErrorKind::TimedOut.into(), false);
            return Next::Again;
        }
        let queue = may_send && !rounds.closing;
        if queue {
            self.wake.park();
            if !self.queue.is_empty() {
                self.wake.unpark();
                return Next::Again;
            }
        }
        Next::Wait { fd, queue, left }
    }
}

#[cfg(test)]
#[path = "redis_publisher_tests.rs"]
mod pipelined;
