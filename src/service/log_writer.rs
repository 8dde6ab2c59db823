//! The log writer: stores chat messages in batches (group commit), then acks their senders and
//! pushes them to their receivers.
//!
//! Every chat goes through here: nobody hears of a message (neither its sender's ACK nor any
//! receiver) before the transaction holding it has committed. Whatever was submitted while a
//! transaction ran goes into the next one, so the cost of a commit is shared by every message
//! that arrived meanwhile, and messages are stored, acked and pushed in the order submitted
//! (one connection's chats keep their order; so does one conversation's).
//!
//! **Who commits.** One thread at a time holds the *committing role*; it takes the queue
//! batch by batch and looks at it again before letting go. On a store that appends locally
//! (SQLite), the IO loop that read a 1:1 chat commits it itself at the end of its loop
//! iteration ([`Handler::on_reads_done`](clusterchat_net::Handler::on_reads_done)) when the
//! role is free, so a message goes from read to stored to acked on one thread with no wake-up
//! in between (before, every message crossed to a writer thread and back: 0.40 context
//! switches per message at `chatbench pairs --window 1`, 0.09 now; see BENCHMARKS.md). An IO
//! loop never waits: a busy log (another append, a checkpoint's rest, an index pass due), a
//! group message (its fan-out may be long) or a receiver it would have to look up sends the
//! batch back to the queue's front and the role to the writer thread, as does a queue that is
//! still not empty after `LOOP_ROUNDS` batches. The writer thread commits everything else: workers'
//! submissions (group chats), and all of them on MySQL (each commit is a network round trip).

use super::context::ChatConn;
use super::{send_error, send_value, ChatService, ServiceError};
use crate::bus::Outgoing;
use crate::metrics::Kind;
use crate::store::{Append, Appended, ConvId};
use crate::sync::LockExt;
use clusterchat_net::Bytes;
use clusterchat_proto::{errno, reply, GroupId, UserId};
use crossbeam_channel::{Receiver, Sender};
use serde_json::value::RawValue;
use std::cell::Cell;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Most messages one transaction stores.
const MAX_BATCH: usize = 1024;

/// Who receives a stored message.
pub(crate) enum Recipients {
    /// The other party of a 1:1 conversation (they must exist).
    One(UserId),
    /// The members of a group other than the sender.
    Group(GroupId, Vec<UserId>),
}

/// A chat message to store, with what to do once it is stored.
pub(crate) struct Submission {
    /// The sender's connection: its ACK or error goes there.
    pub(crate) conn: ChatConn,
    /// The request's msgid (ONE_CHAT or GROUP_CHAT).
    pub(crate) request: i64,
    /// The request's reqid: with it the sender gets an ACK carrying the seq.
    pub(crate) reqid: Option<Box<RawValue>>,
    /// The conversation.
    pub(crate) conv: ConvId,
    /// The sender.
    pub(crate) sender: UserId,
    /// The client's message id, if any.
    pub(crate) cmid: Option<Box<str>>,
    /// The frame to forward, without `seq`.
    pub(crate) body: Bytes,
    /// When it arrived (Unix ms).
    pub(crate) created_ms: i64,
    /// When the server took the request (checked it and submitted it), for the delivery
    /// latency metric.
    pub(crate) taken: std::time::Instant,
    /// Who gets it.
    pub(crate) to: Recipients,
    /// Counts it in the sender's requests in progress until it is dropped, answered.
    pub(crate) _work: super::backpressure::Work,
}

/// Submissions waiting for a transaction, and whether a thread is committing.
#[derive(Default)]
struct Pending {
    queue: Vec<Submission>,
    /// Some thread holds the committing role: it looks at the queue again before it lets go,
    /// so whatever was queued meanwhile is taken by it (or by the thread it passes the role
    /// to). One holder at a time keeps the commits, acks and pushes in submission order.
    committing: bool,
}

/// What the writer thread is told.
enum Wake {
    /// The committing role is now the writer's.
    Commit,
    /// Store what is queued, then end.
    Stop,
}

/// The log writer: the queue of submissions and the writer thread. Who commits: the thread
/// that holds the committing role, taken by an IO loop at the end of its iteration when the
/// role is free and the store appends locally (SQLite; no thread hop at all), and otherwise by
/// the writer thread (a worker's submission, a MySQL store, or an IO loop's hand-off after
/// [`LOOP_ROUNDS`]).
pub(crate) struct LogWriter {
    pending: Mutex<Pending>,
    wake_tx: Sender<Wake>,
    wake_rx: Receiver<Wake>,
    /// Receivers known to exist (looked up once per id: accounts are never deleted). Used
    /// by the committing role's holder only.
    known: Mutex<HashSet<UserId>>,
    /// Whether IO loops commit what they submitted (set at start: the store is exclusive).
    on_loop: AtomicBool,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// Batches an IO loop commits before it passes the role to the writer thread (its own
/// connections wait meanwhile; the later batches are what the other loops submitted during
/// the first). `benches/ab_pairs.sh`, 8 against 1: 1.11x msgs/s at window 1, 1.03x at window
/// 16 (4: 1.05x / 1.06x; 64: 1.10x / 0.99x).
const LOOP_ROUNDS: usize = 8;

/// Who commits a batch.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Committer {
    /// An IO loop at the end of its iteration: never waits.
    Loop,
    /// The writer thread: may wait for the log.
    Writer,
}

thread_local! {
    /// This IO loop queued a submission in this iteration and has not committed it yet.
    static SUBMITTED: Cell<bool> = const { Cell::new(false) };
}

impl Default for LogWriter {
    fn default() -> Self {
        let (wake_tx, wake_rx) = crossbeam_channel::unbounded();
        LogWriter {
            pending: Mutex::default(),
            wake_tx,
            wake_rx,
            known: Mutex::default(),
            on_loop: AtomicBool::new(false),
            thread: Mutex::new(None),
        }
    }
}

impl LogWriter {
    /// Queues a message for the next transaction. Never blocks for long. `on_loop`: called
    /// on an IO loop, which then commits it at the end of its iteration (see
    /// [`ChatService::commit_submitted`]) if the store allows it.
    pub(crate) fn submit(&self, s: Submission, on_loop: bool) {
        let mut p = self.pending.locked();
        p.queue.push(s);
        if p.committing {
            return;
        }
        if on_loop && self.on_loop.load(Ordering::Relaxed) {
            SUBMITTED.set(true);
            return;
        }
        p.committing = true;
        drop(p);
        let _ = self.wake_tx.send(Wake::Commit);
    }
}

impl ChatService {
    /// Starts the writer thread.
    pub(crate) fn start_log_writer(self: &Arc<Self>) -> std::io::Result<()> {
        // Only a store that no other process writes appends without a network round trip.
        let on_loop = self.store.exclusive();
        self.writer.on_loop.store(on_loop, Ordering::Relaxed);
        let service = Arc::clone(self);
        let rx = self.writer.wake_rx.clone();
        let thread = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || service.writer_loop(&rx))?;
        *self.writer.thread.locked() = Some(thread);
        Ok(())
    }

    /// Stores what was submitted so far, then stops the writer thread.
    pub(crate) fn stop_log_writer(&self) {
        let _ = self.writer.wake_tx.send(Wake::Stop);
        if let Some(t) = self.writer.thread.locked().take() {
            let _ = t.join();
        }
    }

    /// An IO loop's iteration is over: if it submitted anything and nobody is committing, it
    /// commits the queue itself (at most [`LOOP_ROUNDS`] batches; more is passed to the
    /// writer thread).
    pub(crate) fn commit_submitted(self: &Arc<Self>) {
        if !SUBMITTED.replace(false) {
            return;
        }
        {
            let mut p = self.writer.pending.locked();
            if p.committing || p.queue.is_empty() {
                return;
            }
            p.committing = true;
        }
        self.commit_rounds(Committer::Loop);
    }

    fn writer_loop(self: &Arc<Self>, rx: &Receiver<Wake>) {
        while let Ok(Wake::Commit) = rx.recv() {
            self.commit_rounds(Committer::Writer);
        }
        // Stopping: wait for an IO loop that holds the role, then store the rest.
        loop {
            while let Ok(Wake::Commit) = rx.try_recv() {
                self.commit_rounds(Committer::Writer);
            }
            let mut p = self.writer.pending.locked();
            if p.queue.is_empty() && !p.committing {
                return;
            }
            if !p.committing {
                p.committing = true;
                drop(p);
                self.commit_rounds(Committer::Writer);
                continue;
            }
            drop(p);
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// Commits batch after batch while the queue has any (an IO loop at most
    /// [`LOOP_ROUNDS`]), then lets go of the committing role, or passes it to the writer
    /// thread when the queue is not empty or an IO loop finds a batch it must not commit
    /// (put back in front: nobody else takes from the queue meanwhile). The caller holds the
    /// role.
    fn commit_rounds(self: &Arc<Self>, by: Committer) {
        let mut known = self.writer.known.locked();
        let rounds = match by {
            Committer::Loop => LOOP_ROUNDS,
            Committer::Writer => usize::MAX,
        };
        for _ in 0..rounds {
            let batch = {
                let mut p = self.writer.pending.locked();
                if p.queue.is_empty() {
                    p.committing = false;
                    return;
                }
                if p.queue.len() <= MAX_BATCH {
                    std::mem::take(&mut p.queue)
                } else {
                    p.queue.drain(..MAX_BATCH).collect()
                }
            };
            if let Some(back) = self.commit(&mut known, batch, by) {
                self.writer.pending.locked().queue.splice(0..0, back);
                break;
            }
        }
        drop(known);
        let mut p = self.writer.pending.locked();
        if p.queue.is_empty() {
            p.committing = false;
        } else {
            drop(p);
            let _ = self.writer.wake_tx.send(Wake::Commit);
        }
    }

    /// Stores one batch in one transaction, then completes each message. An IO loop
    /// (`Committer::Loop`) gets the batch back untouched when it would have to wait or do
    /// long work: a group's fan-out, a receiver to look up in the store, a busy log.
    fn commit(
        self: &Arc<Self>,
        known: &mut HashSet<UserId>,
        batch: Vec<Submission>,
        by: Committer,
    ) -> Option<Vec<Submission>> {
        if by == Committer::Loop && !self.loop_may_commit(known, &batch) {
            return Some(batch);
        }
        let mut ready = Vec::with_capacity(batch.len());
        for s in batch {
            match self.receiver_exists(known, &s.to) {
                Ok(()) => ready.push(s),
                Err(e) => fail(&s, &e),
            }
        }
        if ready.is_empty() {
            return None;
        }
        let appends: Vec<Append<'_>> = ready
            .iter()
            .map(|s| Append {
                conv: s.conv,
                sender: s.sender,
                cmid: s.cmid.as_deref(),
                body: super::chat::as_text(&s.body),
                created_ms: s.created_ms,
            })
            .collect();
        let result = match by {
            Committer::Writer => self.store.append(&appends),
            Committer::Loop => match self.store.try_append(&appends) {
                Some(result) => result,
                None => {
                    drop(appends);
                    return Some(ready);
                }
            },
        };
        match result {
            Ok(outcomes) => {
                drop(appends);
                let mut stored = [0u64; 2];
                let mut elsewhere = Vec::new();
                for (s, outcome) in ready.iter().zip(outcomes) {
                    if let Appended::New(_) = outcome {
                        stored[kind(&s.to) as usize] += 1;
                    }
                    self.complete(s, outcome, &mut elsewhere);
                }
                // One hand-off to the bus for the whole commit (one wake-up of its publisher).
                self.publish_pushes(elsewhere);
                self.metrics.stored(Kind::One, stored[Kind::One as usize]);
                self.metrics
                    .stored(Kind::Group, stored[Kind::Group as usize]);
            }
            Err(e) => {
                drop(appends);
                let e = ServiceError::from(e);
                for s in &ready {
                    fail(s, &e);
                }
            }
        }
        None
    }

    /// Whether an IO loop may commit `batch`: 1:1 messages only (a group's fan-out may be
    /// long), to receivers known to exist (no store lookup).
    fn loop_may_commit(&self, known: &HashSet<UserId>, batch: &[Submission]) -> bool {
        batch.iter().all(|s| match s.to {
            Recipients::One(user) => {
                known.contains(&user) || self.online.connection(user).is_some()
            }
            Recipients::Group(..) => false,
        })
    }

    /// A 1:1 message needs a receiver that exists (looked up once per id, then remembered:
    /// accounts are never deleted).
    fn receiver_exists(
        &self,
        known: &mut HashSet<UserId>,
        to: &Recipients,
    ) -> Result<(), ServiceError> {
        let Recipients::One(user) = *to else {
            return Ok(());
        };
        if known.contains(&user) || self.online.connection(user).is_some() {
            return Ok(());
        }
        match self.store.user(user)? {
            Some(_) => {
                known.insert(user);
                Ok(())
            }
            None => Err(ServiceError::new(
                errno::NOT_FOUND,
                format!("no user {user}"),
            )),
        }
    }

    /// The message is stored: ack its sender, then push it to its receivers (the ACK never
    /// waits for a group's fan-out); what goes to other servers is added to `elsewhere`.
    fn complete(
        self: &Arc<Self>,
        s: &Submission,
        outcome: Appended,
        elsewhere: &mut Vec<Outgoing>,
    ) {
        let seq = match outcome {
            Appended::New(seq) => seq,
            Appended::Duplicate { conv, seq } if conv == s.conv => {
                self.ack(s, seq);
                return;
            }
            Appended::Duplicate { .. } => {
                let e = ServiceError::new(
                    errno::BAD_FIELD,
                    "this cmid was used for another conversation in the last 24 hours; \
                     nothing was stored",
                );
                return fail(s, &e);
            }
        };
        // What the sender sent is not news to its session, except a chat to itself: that is
        // delivered to it like any other (PROTOCOL.md).
        if !matches!(s.to, Recipients::One(to) if to == s.sender) {
            s.conn.context().outbox().note_own(s.sender, s.conv, seq);
        }
        self.ack(s, seq);
        let stored = super::relay::Stored::new(s.conv, seq, &s.body);
        let users = match &s.to {
            Recipients::One(user) => std::slice::from_ref(user),
            Recipients::Group(_, members) => members.as_slice(),
        };
        // One clock read per message, not per receiver (a group's pushes are quick).
        let latency = s.taken.elapsed();
        for _ in 0..self.push(users, s.conv, seq, &stored, elsewhere) {
            self.metrics.delivery_latency(latency);
        }
    }

    /// The sender's ACK with the message's seq, if the request carried a `reqid`.
    fn ack(&self, s: &Submission, seq: crate::store::Seq) {
        if let Some(reqid) = &s.reqid {
            let group = match s.to {
                Recipients::Group(g, _) => Some(g),
                Recipients::One(_) => None,
            };
            send_value(&s.conn, &reply::ack_seq(s.request, reqid, seq, group));
        }
    }
}

/// The metrics' kind of a message for these recipients.
fn kind(to: &Recipients) -> Kind {
    match to {
        Recipients::One(_) => Kind::One,
        Recipients::Group(..) => Kind::Group,
    }
}

fn fail(s: &Submission, e: &ServiceError) {
    send_error(&s.conn, e, Some(s.request), s.reqid.as_deref());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::testing::{connection, line};
    use clusterchat_proto::msgid;

    /// A service on a fresh SQLite file with its writer started, and the file's directory.
    fn service() -> (Arc<ChatService>, tempfile::TempDir) {
        let (service, dir) = crate::service::testing::sqlite_service(Arc::new(
            crate::bus::local::LocalBus::new("n1"),
        ));
        service.start_log_writer().unwrap();
        (service, dir)
    }

    /// A chat from user 1 to `to` (a user) or to group `group`'s other member 2, with reqid
    /// `n`, acked on `conn`.
    fn chat(conn: &ChatConn, n: i64, to: Recipients) -> Submission {
        let conv = match to {
            Recipients::One(user) => ConvId::pair(1, user),
            Recipients::Group(g, _) => ConvId::group(g),
        };
        Submission {
            _work: super::super::backpressure::Work::chat(conn, 2),
            conn: Arc::clone(conn),
            request: msgid::ONE_CHAT,
            reqid: Some(RawValue::from_string(n.to_string()).unwrap()),
            conv,
            sender: 1,
            cmid: None,
            body: Bytes::from(format!("{{\"n\":{n}}}")),
            created_ms: 1,
            taken: std::time::Instant::now(),
            to,
        }
    }

    fn stored(service: &ChatService, conv: ConvId) -> Vec<String> {
        let rows = service.store.read_after(conv, 0, 100).unwrap();
        rows.iter().map(|m| m.body.to_string()).collect()
    }

    /// On SQLite the IO loop that submitted a 1:1 chat to a known receiver stores it itself,
    /// before `commit_submitted` returns (the writer thread is not even woken).
    #[test]
    fn a_loop_commits_what_it_submitted() {
        let (service, _dir) = service();
        let (conn, mut reader, _server) = connection();
        service.writer.known.locked().insert(2);
        for n in 1..=2 {
            service
                .writer
                .submit(chat(&conn, n, Recipients::One(2)), true);
        }
        assert!(stored(&service, ConvId::pair(1, 2)).is_empty());
        service.commit_submitted();
        assert_eq!(stored(&service, ConvId::pair(1, 2)).len(), 2);
        assert!(line(&mut reader).contains("\"seq\":1"));
        assert!(line(&mut reader).contains("\"seq\":2"));
        service.stop_log_writer();
    }

    /// A batch an IO loop must not commit (a group's fan-out, a receiver it would have to
    /// look up) goes to the writer thread whole and in order: every message is stored and
    /// acked, in submission order.
    #[test]
    fn what_a_loop_must_not_commit_goes_to_the_writer_in_order() {
        let (service, _dir) = service();
        let (conn, mut reader, _server) = connection();
        service.store.register("a", "x").unwrap();
        service.store.register("b", "x").unwrap();
        let group = service.store.create_group(1, "g", "").unwrap();
        service.store.join_group(2, group).unwrap();
        service.writer.known.locked().insert(2);
        service
            .writer
            .submit(chat(&conn, 1, Recipients::One(2)), true);
        service
            .writer
            .submit(chat(&conn, 2, Recipients::Group(group, vec![2])), true);
        service
            .writer
            .submit(chat(&conn, 3, Recipients::One(2)), true);
        service.commit_submitted();
        for n in 1..=3 {
            assert!(line(&mut reader).contains(&format!("\"reqid\":{n}")));
        }
        assert_eq!(stored(&service, ConvId::pair(1, 2)).len(), 2);
        assert_eq!(stored(&service, ConvId::group(group)).len(), 1);
        // A receiver that is neither known nor online: the writer looks it up (it exists).
        service.writer.known.locked().clear();
        service
            .writer
            .submit(chat(&conn, 4, Recipients::One(2)), true);
        service.commit_submitted();
        assert!(line(&mut reader).contains("\"reqid\":4"));
        service.stop_log_writer();
    }

    /// What an IO loop submitted but had not committed when the server stops is stored by
    /// the stop.
    #[test]
    fn a_stop_stores_what_a_loop_left() {
        let (service, _dir) = service();
        let (conn, _reader, _server) = connection();
        service.writer.known.locked().insert(2);
        service
            .writer
            .submit(chat(&conn, 1, Recipients::One(2)), true);
        service.stop_log_writer();
        assert_eq!(stored(&service, ConvId::pair(1, 2)).len(), 1);
    }
}
