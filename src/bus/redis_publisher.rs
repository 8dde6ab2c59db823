//! The publishing side of the Redis bus for the hot path: one connection, one thread, and
//! batches routed by server.
//!
//! Chat messages for users not on this server are queued here without waiting (the caller
//! gets a callback with the outcome). The thread takes everything queued since its last round
//! and sends it as one call of the routing script ([`super::redis_route`]), which publishes
//! one payload per destination server: under load, many messages share one system call, one
//! Redis wake-up and one PUBLISH per server, instead of a PUBLISH per receiver. One connection
//! and one thread keep the order: messages queued in order are published in order. Each
//! (re)connection authenticates, selects the database and loads the script first.

use super::redis::Health;
use super::redis_endpoint::{ConnectError, Endpoint};
use super::redis_names::Names;
use super::redis_route::{add_message, ROUTE_SCRIPT};
use super::{BusError, PublishDone};
use bytes::Bytes;
use clusterchat_proto::UserId;
use crossbeam_channel::{unbounded, Receiver, Sender};
use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Most messages sent in one round.
const MAX_BATCH: usize = 1024;
/// Most recipients named in one round (past it, the rest waits for the next round; a single
/// message to more goes alone).
const MAX_RECIPIENTS: usize = 64 * 1024;
/// Most frame bytes in one round (the same).
const MAX_BYTES: usize = 4 << 20;

/// One queued message and its recipients.
struct Request {
    users: Arc<[UserId]>,
    payload: Bytes,
    done: PublishDone,
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
    ) -> std::io::Result<Publisher> {
        let (tx, rx) = unbounded();
        let keys = Keys {
            directory: names.directory(),
            node_prefix: names.node_prefix(),
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
    /// Thread safe, never blocks.
    pub(super) fn publish(&self, users: Arc<[UserId]>, payload: Bytes, done: PublishDone) {
        let request = Request {
            users,
            payload,
            done,
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
        if link.is_none() {
            match connect(endpoint) {
                Ok(l) => link = Some(l),
                Err(e) => {
                    let err = health.failed("publisher connect", e);
                    fail_all(batch, &err);
                    continue;
                }
            }
        }
        let l = link.as_mut().expect("connected above");
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(&l.sha)
            .arg(1)
            .arg(&keys.directory)
            .arg(&keys.node_prefix);
        for r in &batch {
            add_message(&mut cmd, &r.users, &r.payload);
        }
        if let Err(e) = l.writer.write_all(&cmd.get_packed_command()) {
            link = None;
            let err = health.failed("route", e);
            fail_all(batch, &err);
            continue;
        }
        match l.parser.parse_value(&mut l.reader) {
            Ok(redis::Value::Array(reached)) if reached.len() == batch.len() => {
                health.succeeded();
                for (r, got) in batch.into_iter().zip(reached) {
                    (r.done)(Ok(matches!(got, redis::Value::Int(n) if n > 0)));
                }
            }
            // Refused (NOAUTH after a password change, NOPERM for an ACL user, NOSCRIPT after
            // a SCRIPT FLUSH): this connection is of no use; the next one starts afresh.
            Ok(redis::Value::ServerError(e)) => {
                link = None;
                let err = health.failed("route", e);
                fail_all(batch, &err);
            }
            Ok(other) => {
                link = None;
                let err = BusError::Unavailable(format!("unexpected routing answer {other:?}"));
                fail_all(batch, &err);
            }
            Err(e) => {
                link = None;
                let err = health.failed("route", e);
                fail_all(batch, &err);
            }
        }
    }
}

fn fail_all(batch: Vec<Request>, e: &BusError) {
    for r in batch {
        (r.done)(Err(BusError::Unavailable(e.to_string())));
    }
}
