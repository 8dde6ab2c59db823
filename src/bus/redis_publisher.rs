//! The publishing side of the Redis bus for the hot path: one connection, one thread, and
//! pipelining.
//!
//! Chat messages for users on other servers are queued here without waiting (the caller gets
//! a callback with PUBLISH's answer). The thread writes everything queued since its last
//! round in one write and reads the answers in order: under load, many messages share one
//! system call and one Redis wake-up instead of paying a blocking round trip each. A
//! connection per thread keeps Redis's ordering: messages queued in order are published in
//! order. Each (re)connection authenticates and selects the database first.

use super::redis::Health;
use super::redis_endpoint::{ConnectError, Endpoint};
use super::{BusError, PublishDone};
use bytes::Bytes;
use crossbeam_channel::{unbounded, Receiver, Sender};
use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Most messages written in one round.
const MAX_BATCH: usize = 1024;

/// One queued PUBLISH.
struct Request {
    channel: String,
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
    ) -> std::io::Result<Publisher> {
        let (tx, rx) = unbounded();
        let thread = std::thread::Builder::new()
            .name("redis-publisher".into())
            .spawn(move || run(&endpoint, &health, rx))?;
        Ok(Publisher {
            queue: Some(tx),
            thread: Some(thread),
        })
    }

    /// Queues a PUBLISH of `payload` on `channel`; `done` gets whether anyone received it.
    /// Thread safe, never blocks.
    pub(super) fn publish(&self, channel: String, payload: Bytes, done: PublishDone) {
        let request = Request {
            channel,
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

/// A live connection: the socket to write on and a buffered reader of answers.
struct Link {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
    parser: redis::Parser,
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
    let reader = BufReader::new(writer.try_clone().map_err(io)?);
    Ok(Link {
        writer,
        reader,
        parser: redis::Parser::new(),
    })
}

/// The thread: take everything queued, publish it in one write, hand out the answers.
fn run(endpoint: &Endpoint, health: &Health, queue: Receiver<Request>) {
    let mut link: Option<Link> = None;
    let mut packed = Vec::new();
    while let Ok(first) = queue.recv() {
        let batch: Vec<Request> = std::iter::once(first)
            .chain(queue.try_iter().take(MAX_BATCH - 1))
            .collect();
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
        packed.clear();
        for r in &batch {
            packed.extend_from_slice(
                &redis::cmd("PUBLISH")
                    .arg(&r.channel)
                    .arg(&r.payload[..])
                    .get_packed_command(),
            );
        }
        if let Err(e) = l.writer.write_all(&packed) {
            link = None;
            let err = health.failed("PUBLISH", e);
            fail_all(batch, &err);
            continue;
        }
        let mut answers = batch.into_iter();
        let mut refused = false;
        for r in answers.by_ref() {
            match l.parser.parse_value(&mut l.reader) {
                Ok(redis::Value::Int(receivers)) => (r.done)(Ok(receivers > 0)),
                // Refused (NOAUTH after a password change, NOPERM for an ACL user): this
                // connection is of no use; the next one authenticates again.
                Ok(redis::Value::ServerError(e)) => {
                    refused = true;
                    (r.done)(Err(health.failed("PUBLISH", e)));
                }
                Ok(other) => (r.done)(Err(BusError::Unavailable(format!(
                    "unexpected PUBLISH answer {other:?}"
                )))),
                Err(e) => {
                    let err = health.failed("PUBLISH", e);
                    (r.done)(Err(BusError::Unavailable(err.to_string())));
                    link = None;
                    break;
                }
            }
        }
        if refused {
            link = None;
        }
        let rest: Vec<Request> = answers.collect();
        if !rest.is_empty() {
            fail_all(rest, &BusError::Unavailable("Redis connection lost".into()));
        } else if !refused {
            health.succeeded();
        }
    }
}

fn fail_all(batch: Vec<Request>, e: &BusError) {
    for r in batch {
        (r.done)(Err(BusError::Unavailable(e.to_string())));
    }
}
