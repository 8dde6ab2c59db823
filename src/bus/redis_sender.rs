//! The publisher's connection and rounds, shared by the publisher thread and the threads that
//! hand it messages.
//!
//! Everything that writes to the publisher's Redis connection or reads from it holds the
//! lock on one [`Sender`]: the connection, the rounds in flight, the requests waiting for a
//! round, the presence cache. So the bytes of rounds never interleave, and rounds go out in
//! the order they were built.
//!
//! **Sent by the caller.** A thread that hands over messages while the publisher has nothing
//! waiting (no queue, no carried-over or repeated round, no bytes left unwritten, room in
//! flight) builds the round and writes it itself ([`Sender::send_now`]), without waking the
//! publisher thread: at window 1 a commit's round went IO loop -> log writer -> publisher ->
//! Redis, each hop a wake-up and a context switch on a busy machine; now the log writer
//! writes to Redis at the end of its commit. The write never waits: what the socket does not
//! take now stays in [`Sender::unsent`] and the publisher thread writes it, before anything
//! else. The publisher thread still reads every answer (it waits on the socket even when
//! nothing is in flight), so a round sent this way is answered, timed out, or sent again
//! after a cut exactly as one the thread sent.

use super::redis::Health;
use super::redis_answers::Answers;
use super::redis_endpoint::Endpoint;
use super::redis_inflight::{fail, Cache, Fault, InFlight, Keys, Request};
use super::redis_publisher::connect;
use std::collections::VecDeque;
use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Instant;

/// Past this many cached entries, the expired ones are dropped.
const CACHE_SWEEP: usize = 64 * 1024;

/// What the publisher's rounds need that never changes: where Redis is, its health, the
/// names the routing script is given.
pub(super) struct Ctx {
    pub(super) endpoint: std::sync::Arc<Endpoint>,
    pub(super) health: std::sync::Arc<Health>,
    pub(super) keys: Keys,
}

/// A live connection: the socket, the answers read from it, the script's SHA1 as this Redis
/// knows it.
pub(super) struct Link {
    pub(super) socket: TcpStream,
    pub(super) answers: Answers,
    pub(super) sha: String,
}

/// The connection and the rounds (see the module docs). Used under its lock only.
pub(super) struct Sender {
    pub(super) link: Option<Link>,
    /// The connection answered with an error: it takes no new round, and is dropped once
    /// its rounds in flight are answered.
    pub(super) poisoned: bool,
    /// Requests taken from the queue that did not fit in the last round.
    pub(super) carry: VecDeque<Request>,
    /// Rounds to send again, first, on a new connection (their connection was cut).
    pub(super) again: VecDeque<Vec<Request>>,
    pub(super) inflight: InFlight,
    cache: Cache,
    /// The queue is closed (the bus stops): finish what is in flight, then end.
    pub(super) closing: bool,
    /// Since when the rounds in flight wait for their next answer (the last answer, or the
    /// send that found nothing in flight).
    pub(super) waiting_since: Instant,
    /// Bytes of rounds in flight that a caller's write left (the socket took no more at
    /// once): written by the publisher thread before anything else goes on the connection.
    pub(super) unsent: Vec<u8>,
}

impl Sender {
    pub(super) fn new() -> Sender {
        Sender {
            link: None,
            poisoned: false,
            carry: VecDeque::new(),
            again: VecDeque::new(),
            inflight: InFlight::new(),
            cache: Cache::new(),
            closing: false,
            waiting_since: Instant::now(),
            unsent: Vec::new(),
        }
    }

    /// Whether a caller may send a round now, ahead of nothing: connected, nothing queued
    /// before it here (the caller checks the queue), nothing left unwritten, room in flight.
    pub(super) fn idle(&self) -> bool {
        self.link.is_some()
            && !self.poisoned
            && !self.closing
            && self.carry.is_empty()
            && self.again.is_empty()
            && self.unsent.is_empty()
            && self.inflight.has_room()
    }

    /// Sends `batch` as a round from the caller's thread ([`idle`](Self::idle) holds), without
    /// waiting: what the socket does not take now is left in `unsent`. Returns whether the
    /// publisher thread must be woken (bytes were left). A write that fails shuts the socket
    /// down: the publisher thread finds it closed and handles the cut as for its own rounds.
    pub(super) fn send_now(&mut self, ctx: &Ctx, batch: Vec<Request>) -> bool {
        let Some(link) = self.link.as_ref() else {
            // Unreachable: `idle` holds.
            return false;
        };
        if self.inflight.is_empty() {
            self.waiting_since = Instant::now();
        }
        let unsent = &mut self.unsent;
        let socket = &link.socket;
        let sent = self
            .inflight
            .send(&ctx.keys, &link.sha, &self.cache, batch, 1, |b| {
                write_now(socket, unsent, b)
            });
        if sent.is_err() {
            let _ = socket.shutdown(Shutdown::Both);
        }
        !self.unsent.is_empty()
    }

    /// Writes what a caller left unwritten (the publisher thread, which may wait for it).
    pub(super) fn flush(&mut self, ctx: &Ctx) {
        let Some(link) = self.link.as_ref() else {
            self.unsent.clear();
            return;
        };
        let written = (&link.socket).write_all(&self.unsent);
        self.unsent.clear();
        if let Err(e) = written {
            let closed = super::redis::closed(&e);
            self.broken(ctx, e, closed);
        }
    }

    /// Sends `batch` as a round (`tries`: 1, or 2 after a cut connection), on the current
    /// connection or a new one (the publisher thread, which may wait for the write).
    pub(super) fn start(&mut self, ctx: &Ctx, batch: Vec<Request>, tries: u8) {
        if batch.is_empty() {
            return;
        }
        if tries == 1 {
            if let Err(e) = ctx.health.check() {
                return fail(batch, &e);
            }
        }
        if self.inflight.is_empty() {
            self.waiting_since = Instant::now();
        }
        let link = match self.link.as_mut() {
            Some(l) => l,
            None => match connect(&ctx.endpoint) {
                Ok(l) => self.link.insert(l),
                Err(e) => {
                    let err = ctx.health.failed("publisher connect", e);
                    return fail(batch, &err);
                }
            },
        };
        let unsent = &mut self.unsent;
        let socket = &link.socket;
        let sent = self
            .inflight
            .send(&ctx.keys, &link.sha, &self.cache, batch, tries, |b| {
                write_all(socket, unsent, b)
            });
        if let Err(e) = sent {
            let closed = super::redis::closed(&e);
            self.broken(ctx, e, closed);
        }
        if self.cache.len() > CACHE_SWEEP {
            let now = Instant::now();
            self.cache.retain(|_, (_, until)| *until > now);
        }
    }

    /// Reads what the socket has (it is readable) and hands each whole answer to its round.
    pub(super) fn read_answers(&mut self, ctx: &Ctx) {
        let Some(link) = self.link.as_mut() else {
            return;
        };
        match link.answers.fill(&link.socket) {
            Ok(0) => return self.broken(ctx, std::io::ErrorKind::UnexpectedEof.into(), true),
            Ok(_) => self.waiting_since = Instant::now(),
            Err(e) => {
                let closed = super::redis::closed(&e);
                return self.broken(ctx, e, closed);
            }
        }
        let health = &ctx.health;
        let refused = |e: String| health.failed("route", e);
        while let Some(link) = self.link.as_mut() {
            let answer = match link.answers.next() {
                None => break,
                Some(Ok(a)) => a,
                Some(Err(e)) => return self.broken(ctx, std::io::Error::other(e), false),
            };
            let socket = &link.socket;
            let unsent = &mut self.unsent;
            match self.inflight.answer(
                answer,
                &ctx.keys,
                &link.sha,
                &mut self.cache,
                &refused,
                |b| write_all(socket, unsent, b),
            ) {
                Ok(0) => {}
                Ok(_) => health.succeeded(),
                Err(Fault::Poisoned) => self.poisoned = true,
                Err(Fault::Io(e)) => {
                    let closed = super::redis::closed(&e);
                    self.broken(ctx, e, closed);
                }
            }
        }
    }

    /// The connection failed (`closed`: found closed, not timed out): it is dropped; rounds in
    /// flight that got no answer go again once, first, on a new connection; the others fail.
    pub(super) fn broken(&mut self, ctx: &Ctx, error: std::io::Error, closed: bool) {
        self.link = None;
        self.poisoned = false;
        self.unsent.clear();
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
            let err = ctx.health.failed("route", error);
            fail(failed, &err);
        }
    }
}

/// Writes `b` after what `unsent` holds, waiting as the socket's write timeout allows.
fn write_all(socket: &TcpStream, unsent: &mut Vec<u8>, b: &[u8]) -> std::io::Result<()> {
    let mut writer = socket;
    if !unsent.is_empty() {
        writer.write_all(unsent)?;
        unsent.clear();
    }
    writer.write_all(b)
}

/// Writes what of `b` the socket takes without waiting; the rest is appended to `unsent`.
fn write_now(socket: &TcpStream, unsent: &mut Vec<u8>, b: &[u8]) -> std::io::Result<()> {
    let mut at = 0;
    while at < b.len() && unsent.is_empty() {
        let rest = &b[at..];
        // SAFETY: sends from a live slice on a socket we hold; MSG_DONTWAIT keeps this call
        // from waiting, MSG_NOSIGNAL turns a closed peer into EPIPE instead of a signal.
        let n = unsafe {
            libc::send(
                socket.as_raw_fd(),
                rest.as_ptr().cast(),
                rest.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            match e.kind() {
                std::io::ErrorKind::Interrupted => continue,
                std::io::ErrorKind::WouldBlock => break,
                _ => return Err(e),
            }
        }
        at += n as usize;
    }
    unsent.extend_from_slice(&b[at..]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{write_all, write_now};
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};

    /// What the socket does not take at once is kept, and goes out before anything written
    /// after it: the peer reads every byte, in order.
    #[test]
    fn what_a_write_leaves_goes_out_first() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let socket = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut peer, _) = listener.accept().unwrap();
        let big: Vec<u8> = (0..32usize << 20).map(|i| (i % 251) as u8).collect();
        let mut unsent = Vec::new();
        // Nobody reads yet: the kernel's buffers take a few MiB at most.
        write_now(&socket, &mut unsent, &big).unwrap();
        assert!(!unsent.is_empty());
        let len = big.len() + 4;
        let reader = std::thread::spawn(move || {
            let mut got = vec![0; len];
            peer.read_exact(&mut got).unwrap();
            got
        });
        write_all(&socket, &mut unsent, b"tail").unwrap();
        assert!(unsent.is_empty());
        let got = reader.join().unwrap();
        assert!(got[..big.len()] == big[..]);
        assert_eq!(&got[big.len()..], b"tail");
    }
}
