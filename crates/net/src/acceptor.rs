//! The acceptor thread (muduo's `Acceptor`, with a thread and a poll of its own): accepts
//! connections, admits them or closes them at once, and hands the admitted ones to the IO
//! loops round-robin.
//!
//! Over a limit (`max_connections`, `max_unauthenticated_per_ip`: see [`Admission`]) a new
//! connection is accepted and closed at once, so it never waits unanswered in the backlog.
//! Out of file descriptors (EMFILE, ENFILE) `accept` cannot take the connection at all, and
//! the listener stays readable: retrying at once would spin. muduo's answer is kept: a spare
//! descriptor (`/dev/null`, its `idleFd_`) is closed to make room, the connection is accepted
//! and closed at once, and the spare is opened again. If that fails too, the acceptor waits
//! [`BACKOFF`] before it tries again. Either way it never spins, and it accepts again as soon
//! as descriptors are free.

use crate::admission::{Admission, Refusal};
use crate::loop_shared::{LoopShared, Task};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Poll, Token};
use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The stop waker's token.
pub(crate) const STOP: Token = Token(0);

/// The token of listener `index` in the acceptor's poll.
pub(crate) fn listener_token(index: usize) -> Token {
    Token(index + 1)
}
/// How long the acceptor waits after an accept error that it cannot work around.
const BACKOFF: Duration = Duration::from_millis(50);
/// Refused connections are logged at most this often (with counts), so a flood of them does
/// not flood the log.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// The acceptor thread's state. Acceptor thread only.
pub(crate) struct Acceptor<C> {
    poll: Poll,
    /// The listeners, each registered as [`listener_token`] of its index; a connection
    /// remembers the index of the one that accepted it.
    listeners: Vec<TcpListener>,
    loops: Vec<Arc<LoopShared<C>>>,
    admission: Arc<Admission>,
    keepalive: Option<Duration>,
    /// A descriptor kept open to be given up when there is no other (muduo's `idleFd_`).
    spare: Option<File>,
    next: usize,
    refusals: Refusals,
    /// An unexpected accept error was logged (and not since followed by a success).
    warned: bool,
}

impl<C: Send + Sync + 'static> Acceptor<C> {
    /// An acceptor for `listeners` (each registered with `poll` as [`listener_token`] of its
    /// index; the stop waker as [`STOP`]). Any thread (it runs on its own once started).
    pub(crate) fn new(
        poll: Poll,
        listeners: Vec<TcpListener>,
        loops: Vec<Arc<LoopShared<C>>>,
        admission: Arc<Admission>,
        keepalive: Option<Duration>,
    ) -> Self {
        Acceptor {
            poll,
            listeners,
            loops,
            admission,
            keepalive,
            spare: open_spare(),
            next: 0,
            refusals: Refusals::default(),
            warned: false,
        }
    }

    /// Accepts until the stop waker fires. The acceptor thread.
    pub(crate) fn run(mut self) {
        let mut events = Events::with_capacity(64);
        let mut backoff = None;
        loop {
            if let Err(e) = self.poll.poll(&mut events, backoff) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                log::error!("acceptor poll failed: {e}");
                break;
            }
            if events.iter().any(|e| e.token() == STOP) {
                break;
            }
            // After a back-off every listener is tried (its readiness may have been reported
            // before); otherwise those reported ready.
            let mut wait = None;
            for index in 0..self.listeners.len() {
                let ready =
                    backoff.is_some() || events.iter().any(|e| e.token() == listener_token(index));
                if ready {
                    wait = wait.or(self.accept_all(index));
                }
            }
            backoff = wait;
        }
    }

    /// Accepts until the backlog is empty. Returns how long to wait before trying again when
    /// an accept failed in a way that retrying at once would not cure.
    fn accept_all(&mut self, index: usize) -> Option<Duration> {
        loop {
            match self.listeners[index].accept() {
                Ok((stream, peer)) => {
                    self.warned = false;
                    self.admit(stream, peer, index);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // The peer reset it while it waited in the backlog: next.
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {}
                Err(e) if out_of_descriptors(&e) => {
                    if !self.shed_one(index) {
                        return Some(BACKOFF);
                    }
                }
                Err(e) => {
                    if !self.warned {
                        log::warn!("accept failed ({e}); retrying shortly");
                        self.warned = true;
                    }
                    return Some(BACKOFF);
                }
            }
        }
    }

    /// Hands an accepted connection to the next loop if the limits admit it; else closes it.
    fn admit(&mut self, stream: TcpStream, peer: SocketAddr, index: usize) {
        if let Err(why) = self.admission.admit(peer.ip()) {
            self.refusals.note(why.into(), peer, &self.admission);
            return drop(stream); // closed at once
        }
        if let Some(idle) = self.keepalive {
            if let Err(e) = set_keepalive(&stream, idle) {
                log::warn!("cannot set TCP keepalive for {peer}: {e}");
            }
        }
        self.loops[self.next % self.loops.len()].queue(Task::Register(stream, peer, index));
        self.next = self.next.wrapping_add(1);
    }

    /// Out of descriptors: gives up the spare to accept one waiting connection and close it
    /// at once, then takes the spare again. False if there was no spare or nothing could be
    /// accepted with it (then the caller backs off).
    fn shed_one(&mut self, index: usize) -> bool {
        let Some(spare) = self.spare.take() else {
            self.spare = open_spare();
            self.refusals.note_failure();
            return false;
        };
        drop(spare);
        let shed = match self.listeners[index].accept() {
            Ok((stream, peer)) => {
                drop(stream);
                self.admission.note_no_descriptor();
                self.refusals.note(Why::NoDescriptor, peer, &self.admission);
                true
            }
            Err(_) => false,
        };
        self.spare = open_spare();
        shed
    }
}

/// Whether an accept error means the process (EMFILE) or the system (ENFILE) is out of file
/// descriptors.
fn out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(EMFILE | ENFILE))
}

/// `EMFILE` and `ENFILE` (Linux, and the BSDs and macOS alike).
const EMFILE: i32 = 24;
const ENFILE: i32 = 23;

/// The spare descriptor.
fn open_spare() -> Option<File> {
    File::open("/dev/null").ok()
}

/// Why a connection was closed at once.
#[derive(Debug, Clone, Copy)]
enum Why {
    Full,
    Address,
    NoDescriptor,
}

impl From<Refusal> for Why {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Full => Why::Full,
            Refusal::Address => Why::Address,
        }
    }
}

/// Counts of refused connections, logged at most every [`LOG_EVERY`].
#[derive(Default)]
struct Refusals {
    full: u64,
    address: u64,
    no_descriptor: u64,
    last_log: Option<Instant>,
}

impl Refusals {
    fn note(&mut self, why: Why, peer: SocketAddr, admission: &Admission) {
        match why {
            Why::Full => self.full += 1,
            Why::Address => self.address += 1,
            Why::NoDescriptor => self.no_descriptor += 1,
        }
        if self.last_log.is_some_and(|t| t.elapsed() < LOG_EVERY) {
            return;
        }
        let (max_connections, max_per_ip) = admission.limits();
        let mut parts = Vec::new();
        if self.full > 0 {
            parts.push(format!(
                "{} at the limit of {} connections",
                self.full,
                max_connections.unwrap_or_default()
            ));
        }
        if self.address > 0 {
            parts.push(format!(
                "{} over the limit of {} unauthenticated connections per address",
                self.address,
                max_per_ip.unwrap_or_default()
            ));
        }
        if self.no_descriptor > 0 {
            parts.push(format!("{} out of file descriptors", self.no_descriptor));
        }
        log::warn!(
            "closed new connections at once: {} (the last from {peer}){}",
            parts.join(", "),
            if self.last_log.is_some() {
                format!(" in the last {} s", LOG_EVERY.as_secs())
            } else {
                String::new()
            }
        );
        *self = Refusals {
            last_log: Some(Instant::now()),
            ..Refusals::default()
        };
    }

    /// Out of descriptors with no spare to give up: the connections wait in the backlog.
    fn note_failure(&mut self) {
        if self.last_log.is_some_and(|t| t.elapsed() < LOG_EVERY) {
            return;
        }
        log::warn!("out of file descriptors: new connections wait in the listen backlog");
        self.last_log = Some(Instant::now());
    }
}

/// Turns TCP keepalive on for an accepted socket (see `ServerOptions::keepalive`).
fn set_keepalive(stream: &TcpStream, idle: Duration) -> io::Result<()> {
    let interval = (idle / 6).max(Duration::from_secs(1));
    let params = socket2::TcpKeepalive::new()
        .with_time(idle)
        .with_interval(interval)
        .with_retries(3);
    socket2::SockRef::from(stream).set_tcp_keepalive(&params)
}
