//! The publishing side of the Redis bus for the hot path: one connection, one thread, and
//! batches routed by server.
//!
//! Chat messages for users not on this server are queued here without waiting (the caller
//! gets a callback with the outcome). The thread takes everything queued since its last round
//! and sends it as one call of the routing script ([`super::redis_route`]), which publishes
//! one payload per destination server: under load, many messages share one system call, one
//! Redis wake-up and one PUBLISH per server, instead of a PUBLISH per receiver. One connection
//! and one thread keep the order: messages queued in order are published in order. Each
//! (re)connection authenticates, selects the database and loads the script first. A round
//! that finds the connection closed before any answer came (Redis's `timeout`, `CLIENT KILL`,
//! a proxy's idle cut) goes once more on a new connection; only a second failure fails it.
//!
//! **Presence cache.** The thread keeps what the script told it about recipients (user ->
//! server, for [`CACHE_TTL`]): a message queued with `cached` whose recipients are all known
//! skips the script and is a plain `PUBLISH` of the same payload format to each of their
//! servers' channels, in the same pipelined round, after the script call for the unknown ones
//! (one connection: Redis runs them in order, so each recipient's messages keep theirs). Such
//! a part is unmarked; a server that receives it for a user it does not hold sends that user
//! back through the script ([`super::Bus::reroute`], see `ChatService::inbound`). A PUBLISH
//! that reaches nobody (the server is gone) forgets that server's entries and sends its
//! messages through the script at once. Waited-for publishes (nudges, kicks) and re-routes
//! always go through the script.

use super::redis::{closed, Health};
use super::redis_endpoint::{ConnectError, Endpoint};
use super::redis_names::Names;
use super::redis_route::{add_message, encode_direct, ROUTE_SCRIPT};
use super::{BusError, PublishDone};
use bytes::Bytes;
use clusterchat_proto::UserId;
use crossbeam_channel::{unbounded, Receiver, Sender};
use std::collections::HashMap;
use std::io::{BufReader, Write};
use std::net::TcpStream;
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

/// How long a cached directory entry is used without a lookup.
const CACHE_TTL: Duration = Duration::from_secs(2);
/// Past this many cached entries, the expired ones are dropped.
const CACHE_SWEEP: usize = 64 * 1024;

/// One queued message and its recipients.
struct Request {
    users: Arc<[UserId]>,
    payload: Bytes,
    done: PublishDone,
    /// Whether the presence cache may route it (else: the script, always).
    cached: bool,
}

/// The pipelined publisher and its thread.
pub(super) struct Publisher {
    queue: Option<Sender<Request>>,
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
        let thread = std::thread::Builder::new()
            .name("redis-publisher".into())
            .spawn(move || run(&endpoint, &health, &keys, rx))?;
        Ok(Publisher {
            queue: Some(tx),
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
        match &self.queue {
            Some(q) => {
                if let Err(e) = q.send(request) {
                    (e.into_inner().done)(Err(BusError::Unavailable("bus stopped".into())));
                }
            }
            None => (request.done)(Err(BusError::Unavailable("bus stopped".into()))),
        }
    }

    /// Lets the queued messages go out, then stops the thread.
    pub(super) fn stop(&mut self) {
        self.queue.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The names the routing script is given.
struct Keys {
    directory: String,
    node_prefix: String,
    /// This server (never cached: a user of its own who is not online here goes through
    /// the script).
    node: String,
}

/// A live connection: the socket to write on, a buffered reader of answers, the script's
/// SHA1 as this Redis knows it.
struct Link {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
    parser: redis::Parser,
    sha: String,
}

/// Connects, authenticates and selects the database ([`Endpoint::connect`]).
fn connect(endpoint: &Endpoint) -> Result<Link, ConnectError> {
    let writer = endpoint.connect(Duration::from_secs(1), "publisher")?;
    let io = |source| ConnectError::Unreachable {
        url: endpoint.shown().to_string(),
        source,
    };
    writer
        .set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(io)?;
    writer
        .set_write_timeout(Some(Duration::from_secs(2)))
        .map_err(io)?;
    let mut reader = BufReader::new(writer.try_clone().map_err(io)?);
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
        writer,
        reader,
        parser,
        sha,
    })
}

/// Takes the next round from the queue: the carried-over request first, then what is queued,
/// within [`MAX_BATCH`], [`MAX_RECIPIENTS`] and [`MAX_BYTES`] (the request past them is
/// carried over to the next round).
fn next_batch(
    first: Request,
    queue: &Receiver<Request>,
    carry: &mut Option<Request>,
) -> Vec<Request> {
    let mut recipients = first.users.len();
    let mut bytes = first.payload.len();
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH {
        let Ok(r) = queue.try_recv() else { break };
        recipients += r.users.len();
        bytes += r.payload.len();
        if recipients > MAX_RECIPIENTS || bytes > MAX_BYTES {
            *carry = Some(r);
            break;
        }
        batch.push(r);
    }
    batch
}

/// The thread: take everything queued, route it in one script call, hand out the answers.
fn run(endpoint: &Endpoint, health: &Health, keys: &Keys, queue: Receiver<Request>) {
    let mut link: Option<Link> = None;
    let mut carry: Option<Request> = None;
    let mut cache = Cache::new();
    loop {
        let first = match carry.take() {
            Some(r) => r,
            None => match queue.recv() {
                Ok(r) => r,
                Err(_) => break,
            },
        };
        let batch = next_batch(first, &queue, &mut carry);
        if let Err(e) = health.check() {
            fail_all(batch, &e);
            continue;
        }
        // A connection kept from an earlier round may have been closed meanwhile by Redis
        // (its `timeout`), an operator (CLIENT KILL) or a proxy that cuts idle connections: a
        // round that fails on it before any answer came goes once more on a new connection.
        let mut outcome = None;
        if let Some(l) = link.as_mut() {
            match round(l, keys, &mut cache, &batch) {
                Err(RoundError::Io { error, retry: true }) => {
                    log::debug!("publisher connection closed ({error}); sending on a new one");
                    link = None;
                }
                done => outcome = Some(done),
            }
        }
        let outcome = match outcome {
            Some(done) => done,
            None => match connect(endpoint) {
                Ok(l) => round(link.insert(l), keys, &mut cache, &batch),
                Err(e) => {
                    let err = health.failed("publisher connect", e);
                    fail_all(batch, &err);
                    continue;
                }
            },
        };
        match outcome {
            Ok(reached) => {
                health.succeeded();
                for (r, got) in batch.into_iter().zip(reached) {
                    (r.done)(Ok(got));
                }
            }
            Err(RoundError::Refused(e)) => {
                link = None;
                let err = health.failed("route", e);
                fail_all(batch, &err);
            }
            Err(RoundError::Unexpected(e)) => {
                link = None;
                fail_all(batch, &BusError::Unavailable(e));
            }
            Err(RoundError::Io { error, .. }) => {
                link = None;
                let err = health.failed("route", error);
                fail_all(batch, &err);
            }
        }
        if cache.len() > CACHE_SWEEP {
            let now = Instant::now();
            cache.retain(|_, (_, until)| *until > now);
        }
    }
}

/// user -> (server, valid until).
type Cache = HashMap<UserId, (Arc<str>, Instant)>;

/// Why a round failed (the connection is dropped in every case).
enum RoundError {
    /// Refused (NOAUTH after a password change, NOPERM for an ACL user, NOSCRIPT after a
    /// SCRIPT FLUSH): this connection is of no use; the next one starts afresh.
    Refused(String),
    Unexpected(String),
    /// The connection failed (closed, reset, timed out). `retry`: it was found closed before
    /// any answer of this round came (Redis ran none of it): the round may go again.
    Io {
        error: String,
        retry: bool,
    },
}

/// The parts of a round that go through the script: (request, its recipients there).
type Looked = Vec<(usize, Vec<UserId>)>;

/// One round: the recipients the cache knows go straight to their servers, the others through
/// the script, in one pipelined write; returns, per request, whether some server received it.
fn round(
    l: &mut Link,
    keys: &Keys,
    cache: &mut Cache,
    batch: &[Request],
) -> Result<Vec<bool>, RoundError> {
    let now = Instant::now();
    let mut looked: Looked = Vec::new();
    // Per server (in first-use order): its payload and (request, recipients) in it.
    let mut direct: Vec<(Arc<str>, Vec<u8>, Looked)> = Vec::new();
    let mut index: HashMap<Arc<str>, usize> = HashMap::new();
    for (i, r) in batch.iter().enumerate() {
        let mut unknown = Vec::new();
        let mut known: Vec<(Arc<str>, UserId)> = Vec::new();
        for &u in r.users.iter() {
            match cache.get(&u) {
                Some((node, until)) if r.cached && *until > now => known.push((node.clone(), u)),
                _ => unknown.push(u),
            }
        }
        if !unknown.is_empty() {
            looked.push((i, unknown));
        }
        known.sort_by(|a, b| a.0.cmp(&b.0));
        for group in known.chunk_by(|a, b| a.0 == b.0) {
            let node = &group[0].0;
            let users: Vec<UserId> = group.iter().map(|(_, u)| *u).collect();
            let at = *index.entry(node.clone()).or_insert_with(|| {
                direct.push((node.clone(), Vec::new(), Vec::new()));
                direct.len() - 1
            });
            encode_direct(&mut direct[at].1, &users, &r.payload);
            direct[at].2.push((i, users));
        }
    }
    let mut reached = vec![false; batch.len()];
    // Whether an answer of this round was read (a failure after it is not sent again).
    let mut answered = false;
    let mut packed = Vec::new();
    if !looked.is_empty() {
        packed.extend(script_cmd(l, keys, batch, &looked).get_packed_command());
    }
    for (node, payload, _) in &direct {
        let channel = format!("{}{node}", keys.node_prefix);
        packed.extend(
            redis::cmd("PUBLISH")
                .arg(channel)
                .arg(&payload[..])
                .get_packed_command(),
        );
    }
    l.writer
        .write_all(&packed)
        .map_err(|e| io_failed(&e, closed(&e), answered))?;
    if !looked.is_empty() {
        let answer = read(l, &mut answered)?;
        learn(keys, cache, now, &looked, answer, &mut reached)?;
    }
    let mut fallback: Looked = Vec::new();
    for (node, _, parts) in direct {
        match read(l, &mut answered)? {
            redis::Value::Int(n) if n > 0 => parts.iter().for_each(|(i, _)| reached[*i] = true),
            redis::Value::Int(_) => {
                // Nobody listens there: that server is gone. Its users go through the script.
                cache.retain(|_, (n, _)| *n != node);
                fallback.extend(parts);
            }
            other => return Err(RoundError::Unexpected(format!("{other:?}"))),
        }
    }
    if !fallback.is_empty() {
        let cmd = script_cmd(l, keys, batch, &fallback);
        l.writer
            .write_all(&cmd.get_packed_command())
            .map_err(|e| io_failed(&e, closed(&e), answered))?;
        let answer = read(l, &mut answered)?;
        learn(keys, cache, now, &fallback, answer, &mut reached)?;
    }
    Ok(reached)
}

/// The script call for `looked`.
fn script_cmd(l: &Link, keys: &Keys, batch: &[Request], looked: &Looked) -> redis::Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(&l.sha)
        .arg(1)
        .arg(&keys.directory)
        .arg(&keys.node_prefix);
    for (i, users) in looked {
        add_message(&mut cmd, users, &batch[*i].payload);
    }
    cmd
}

/// Reads one answer (`answered`: set once one came).
fn read(l: &mut Link, answered: &mut bool) -> Result<redis::Value, RoundError> {
    match l.parser.parse_value(&mut l.reader) {
        Ok(redis::Value::ServerError(e)) => Err(RoundError::Refused(format!("{e:?}"))),
        Ok(v) => {
            *answered = true;
            Ok(v)
        }
        Err(e) => Err(io_failed(&e, e.is_connection_dropped(), *answered)),
    }
}

/// A failed write or read: one that found the connection closed before any answer of the
/// round came may be sent again (a timeout may not: Redis may be running it).
fn io_failed(e: &dyn std::fmt::Display, closed: bool, answered: bool) -> RoundError {
    RoundError::Io {
        error: e.to_string(),
        retry: closed && !answered,
    }
}

/// Reads the script's answer for `looked`: marks the requests it reached, and caches the
/// directory entries it read (a user with none, or on this server, is forgotten).
fn learn(
    keys: &Keys,
    cache: &mut Cache,
    now: Instant,
    looked: &Looked,
    answer: redis::Value,
    reached: &mut [bool],
) -> Result<(), RoundError> {
    let redis::Value::Array(mut parts) = answer else {
        return Err(RoundError::Unexpected(format!("routing answer {answer:?}")));
    };
    let (Some(redis::Value::Array(found)), Some(redis::Value::Array(got))) =
        (parts.pop(), parts.pop())
    else {
        return Err(RoundError::Unexpected("routing answer".into()));
    };
    let total: usize = looked.iter().map(|(_, u)| u.len()).sum();
    if got.len() != looked.len() || found.len() != total {
        return Err(RoundError::Unexpected(
            "routing answer of another size".into(),
        ));
    }
    for ((i, _), g) in looked.iter().zip(got) {
        if matches!(g, redis::Value::Int(n) if n > 0) {
            reached[*i] = true;
        }
    }
    let users = looked.iter().flat_map(|(_, u)| u.iter());
    for (&u, entry) in users.zip(found) {
        let node = match &entry {
            redis::Value::BulkString(v) => std::str::from_utf8(v)
                .ok()
                .and_then(|v| v.rsplit_once('/'))
                .map(|(node, _)| node),
            _ => None,
        };
        match node {
            Some(node) if node != keys.node => {
                let node: Arc<str> = match cache.get(&u) {
                    Some((n, _)) if &**n == node => n.clone(),
                    _ => node.into(),
                };
                cache.insert(u, (node, now + CACHE_TTL));
            }
            _ => {
                cache.remove(&u);
            }
        }
    }
    Ok(())
}

fn fail_all(batch: Vec<Request>, e: &BusError) {
    for r in batch {
        (r.done)(Err(e.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every request of a failed round gets the round's error as it is, its message not
    /// wrapped in "message bus unavailable:" a second time.
    #[test]
    fn a_failed_round_reports_its_error_once() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let batch = (0..2)
            .map(|_| {
                let tx = tx.clone();
                Request {
                    users: Arc::from([1]),
                    payload: Bytes::new(),
                    done: Box::new(move |outcome| {
                        let _ = tx.send(outcome.map_err(|e| e.to_string()));
                    }),
                    cached: false,
                }
            })
            .collect();
        fail_all(batch, &BusError::Unavailable("route: closed".into()));
        let got: Vec<_> = rx.try_iter().collect();
        let want = Err("message bus unavailable: route: closed".to_string());
        assert_eq!(got, [want.clone(), want]);
    }
}
