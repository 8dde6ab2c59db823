//! The publishing side of the Redis bus for the hot path: one connection, one thread, and
//! batches routed by server.
//!
//! Chat messages for users not on this server are queued here without waiting (the caller
//! gets a callback with the outcome); the log writer hands over everything one commit sends
//! elsewhere at once ([`Publisher::publish_batch`]). The thread takes everything queued and
//! sends it as one round: one call of the routing script ([`super::redis_route`]), which
//! publishes one payload per destination server, and the cache's PUBLISHes (below). Under
//! load, many messages share one system call, one Redis wake-up and one PUBLISH per server.
//!
//! **Pipelined rounds.** The thread does not wait for a round's answers before it sends the
//! next: while answers are outstanding it waits in `poll(2)` for either an answer or a new
//! message ([`super::redis_wake`]), and sends what is queued at once, up to a bound on the
//! rounds and bytes in flight ([`super::redis_inflight`], which matches answers to rounds in
//! order). One connection and one thread keep the order: messages queued in order are
//! published in order. Each (re)connection authenticates, selects the database and loads the
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
use super::redis_inflight::{fail, Cache, Fault, InFlight, Keys, Request};
use super::redis_names::Names;
use super::redis_route::ROUTE_SCRIPT;
use super::redis_wake::{Wake, Woken};
use super::{BusError, Outgoing, PublishDone};
use bytes::Bytes;
use clusterchat_proto::UserId;
use crossbeam_channel::{unbounded, Receiver, Sender, TryRecvError};
use std::collections::VecDeque;
use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Most messages sent in one round.
const MAX_BATCH: usize = 1024;
/// Most recipients named in one round (past it, the rest waits for the next round; a single
/// message to more goes alone).
const MAX_RECIPIENTS: usize = 64 * 1024;
/// Most frame bytes in one round (the same).
const MAX_BYTES: usize = 4 << 20;
/// Past this many cached entries, the expired ones are dropped.
const CACHE_SWEEP: usize = 64 * 1024;
/// How long answers may keep the publisher waiting (a write, an answer once due): past it
/// the connection is dropped and the rounds in flight fail.
const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// The pipelined publisher and its thread.
pub(super) struct Publisher {
    queue: Option<Sender<Vec<Request>>>,
    wake: Arc<Wake>,
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
        let keys = Keys {
            directory: names.directory(),
            node_prefix: names.node_prefix(),
            node: node.to_string(),
        };
        let wake = Arc::new(Wake::new()?);
        let thread = {
            let wake = Arc::clone(&wake);
            std::thread::Builder::new()
                .name("redis-publisher".into())
                .spawn(move || Thread::new(&endpoint, &health, &keys, rx, &wake).run())?
        };
        Ok(Publisher {
            queue: Some(tx),
            wake,
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

    fn queue(&self, batch: Vec<Request>) {
        let stopped = |batch| fail(batch, &BusError::Unavailable("bus stopped".into()));
        match &self.queue {
            Some(q) => match q.send(batch) {
                Ok(()) => self.wake.notify(),
                Err(e) => stopped(e.into_inner()),
            },
            None => stopped(batch),
        }
    }

    /// Lets the queued messages go out and their answers come, then stops the thread.
    pub(super) fn stop(&mut self) {
        self.queue.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A live connection: the socket, the answers read from it, the script's SHA1 as this Redis
/// knows it.
struct Link {
    socket: TcpStream,
    answers: Answers,
    sha: String,
}

/// Connects, authenticates and selects the database ([`Endpoint::connect`]), and loads the
/// routing script.
fn connect(endpoint: &Endpoint) -> Result<Link, ConnectError> {
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

/// The publisher thread's state.
struct Thread<'a> {
    endpoint: &'a Endpoint,
    health: &'a Health,
    keys: &'a Keys,
    queue: Receiver<Vec<Request>>,
    wake: &'a Wake,
    link: Option<Link>,
    /// The connection answered with an error: it takes no new round, and is dropped once
    /// its rounds in flight are answered.
    poisoned: bool,
    /// Requests taken from the queue that did not fit in the last round.
    carry: VecDeque<Request>,
    /// Rounds to send again, first, on a new connection (their connection was cut).
    again: VecDeque<Vec<Request>>,
    inflight: InFlight,
    cache: Cache,
    /// The queue is closed (the bus stops): finish what is in flight, then end.
    closing: bool,
    /// Since when the rounds in flight wait for their next answer (the last answer, or the
    /// send that found nothing in flight).
    waiting_since: Instant,
}

impl<'a> Thread<'a> {
    fn new(
        endpoint: &'a Endpoint,
        health: &'a Health,
        keys: &'a Keys,
        queue: Receiver<Vec<Request>>,
        wake: &'a Wake,
    ) -> Thread<'a> {
        Thread {
            endpoint,
            health,
            keys,
            queue,
            wake,
            link: None,
            poisoned: false,
            carry: VecDeque::new(),
            again: VecDeque::new(),
            inflight: InFlight::new(),
            cache: Cache::new(),
            closing: false,
            waiting_since: Instant::now(),
        }
    }

    /// Sends rounds while earlier ones are answered: takes what is queued whenever there is
    /// room in flight, reads answers as they come, until the queue is closed and empty and
    /// nothing is in flight.
    fn run(mut self) {
        loop {
            if let Some(batch) = self.again.pop_front() {
                self.start(batch, 2);
                continue;
            }
            if self.inflight.is_empty() {
                if self.poisoned {
                    self.link = None;
                    self.poisoned = false;
                }
                if self.carry.is_empty() {
                    match self.queue.recv() {
                        Ok(more) => self.carry.extend(more),
                        Err(_) => break,
                    }
                }
                let batch = next_batch(&self.queue, &mut self.carry);
                self.start(batch, 1);
                continue;
            }
            let may_send = self.inflight.has_room() && !self.poisoned && !self.closing;
            if may_send {
                if self.carry.is_empty() {
                    match self.queue.try_recv() {
                        Ok(more) => self.carry.extend(more),
                        Err(TryRecvError::Empty) => {}
                        Err(TryRecvError::Disconnected) => self.closing = true,
                    }
                }
                if !self.carry.is_empty() {
                    let batch = next_batch(&self.queue, &mut self.carry);
                    self.start(batch, 1);
                    continue;
                }
                self.wake.park();
                if !self.queue.is_empty() {
                    self.wake.unpark();
                    continue;
                }
            }
            self.wait(may_send);
        }
    }

    /// Waits for an answer (and, if `queue`, for a new message).
    fn wait(&mut self, queue: bool) {
        let Some(link) = self.link.as_ref() else {
            // Unreachable: rounds in flight have a connection.
            return self.broken(std::io::Error::other("no connection"), false);
        };
        let waited = self.waiting_since.elapsed();
        let left = IO_TIMEOUT.saturating_sub(waited);
        if left.is_zero() {
            return self.broken(std::io::ErrorKind::TimedOut.into(), false);
        }
        match self.wake.wait(link.socket.as_raw_fd(), queue, left) {
            Ok(Woken::Socket) => self.read_answers(),
            Ok(Woken::Queue) => {}
            Ok(Woken::TimedOut) => {
                self.broken(std::io::ErrorKind::TimedOut.into(), false);
            }
            Err(e) => self.broken(e, false),
        }
    }

    /// Sends `batch` as a round (`tries`: 1, or 2 after a cut connection), on the current
    /// connection or a new one.
    fn start(&mut self, batch: Vec<Request>, tries: u8) {
        if batch.is_empty() {
            return;
        }
        if tries == 1 {
            if let Err(e) = self.health.check() {
                return fail(batch, &e);
            }
        }
        if self.inflight.is_empty() {
            self.waiting_since = Instant::now();
        }
        let link = match self.link.as_mut() {
            Some(l) => l,
            None => match connect(self.endpoint) {
                Ok(l) => self.link.insert(l),
                Err(e) => {
                    let err = self.health.failed("publisher connect", e);
                    return fail(batch, &err);
                }
            },
        };
        let writer = &link.socket;
        let sent = self
            .inflight
            .send(self.keys, &link.sha, &self.cache, batch, tries, |b| {
                (&*writer).write_all(b)
            });
        if let Err(e) = sent {
            let closed = super::redis::closed(&e);
            self.broken(e, closed);
        }
        if self.cache.len() > CACHE_SWEEP {
            let now = Instant::now();
            self.cache.retain(|_, (_, until)| *until > now);
        }
    }

    /// Reads what the socket has (it is readable) and hands each whole answer to its round.
    fn read_answers(&mut self) {
        let Some(link) = self.link.as_mut() else {
            return;
        };
        match link.answers.fill(&link.socket) {
            Ok(0) => return self.broken(std::io::ErrorKind::UnexpectedEof.into(), true),
            Ok(_) => self.waiting_since = Instant::now(),
            Err(e) => {
                let closed = super::redis::closed(&e);
                return self.broken(e, closed);
            }
        }
        let health = self.health;
        let refused = |e: String| health.failed("route", e);
        while let Some(link) = self.link.as_mut() {
            let answer = match link.answers.next() {
                None => break,
                Some(Ok(a)) => a,
                Some(Err(e)) => return self.broken(std::io::Error::other(e), false),
            };
            let socket = &link.socket;
            match self.inflight.answer(
                answer,
                self.keys,
                &link.sha,
                &mut self.cache,
                &refused,
                |b| (&*socket).write_all(b),
            ) {
                Ok(0) => {}
                Ok(_) => health.succeeded(),
                Err(Fault::Poisoned) => self.poisoned = true,
                Err(Fault::Io(e)) => {
                    let closed = super::redis::closed(&e);
                    self.broken(e, closed);
                }
            }
        }
    }

    /// The connection failed (`closed`: found closed, not timed out): it is dropped; rounds in
    /// flight that got no answer go again once, first, on a new connection; the others fail.
    fn broken(&mut self, error: std::io::Error, closed: bool) {
        self.link = None;
        self.poisoned = false;
        let (again, failed) = self.inflight.cut(closed);
        if !again.is_empty() {
            log::debug!(
                "publisher connection closed ({error}); sending {} rounds on a new one",
                again.len()
            );
        }
        // Before the rounds queued to go again earlier (none: they go first, and a round
        // sent twice is not sent a third time).
        for batch in again.into_iter().rev() {
            self.again.push_front(batch);
        }
        if !failed.is_empty() {
            let err = self.health.failed("route", error);
            fail(failed, &err);
        }
    }
}

#[cfg(test)]
#[path = "redis_publisher_tests.rs"]
mod pipelined;
