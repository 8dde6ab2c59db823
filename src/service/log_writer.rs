//! The log writer: one thread that stores chat messages in batches (group commit), then acks
//! their senders and pushes them to their receivers.
//!
//! Every chat goes through here: nobody hears of a message (neither its sender's ACK nor any
//! receiver) before the transaction holding it has committed. Whatever was submitted while a
//! transaction ran goes into the next one, so the cost of a commit is shared by every message
//! that arrived meanwhile, and messages are stored, acked and pushed in the order submitted
//! (one connection's chats keep their order; so does one conversation's).
//!
//! Where a batch commits depends on the store. A shared database (MySQL) costs a network
//! round trip per transaction: every chat goes to one writer thread, which commits whatever
//! queued up while the previous transaction ran. An embedded file that this process owns
//! (SQLite, [`Store::exclusive`](crate::store::Store::exclusive)) commits in tens of
//! microseconds: there each IO loop commits the chats it read in one iteration itself, at the
//! end of that iteration (`on_read_complete`), and the ACKs and the pushes to receivers on the
//! same loop go out in that iteration's writes: no thread hop, no wake-up. Chats that reach
//! the log from a worker thread (group chats, and chats queued behind a worker request) still
//! go to the writer thread; while a connection has chats there, its IO thread sends its next
//! ones there too, and a loop commits what it holds before handing a request to a worker, so
//! one connection's chats keep their order. Commits and the pushes that follow them are
//! serialised by one lock, so one conversation's messages are pushed in seq order.

use super::context::{ChatConn, WriterTicket};
use super::{send_error, send_value, ChatService, ServiceError};
use crate::metrics::Kind;
use crate::store::{with_seq, Append, Appended, ConvId};
use clusterchat_net::Bytes;
use clusterchat_proto::{errno, reply, GroupId, UserId};
use crossbeam_channel::{Receiver, Sender};
use serde_json::value::RawValue;
use std::cell::RefCell;
use std::collections::HashSet;
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

pub(crate) enum Job {
    Store(Box<Submission>, WriterTicket),
    Stop,
}

/// The handle to the writer thread, and how batches commit.
pub(crate) struct LogWriter {
    tx: Sender<Job>,
    rx: Receiver<Job>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Whether IO loops commit their own batches (an embedded store; see the module docs).
    on_loops: bool,
    /// Held from a batch's commit until its messages are pushed: one conversation's messages
    /// are pushed in seq order whichever thread commits them.
    order: Mutex<()>,
}

thread_local! {
    /// The chats this IO loop took in its current iteration, committed at its end.
    static LOOP_BATCH: RefCell<Vec<Submission>> = const { RefCell::new(Vec::new()) };
    /// Receivers this thread has seen exist (accounts are never deleted).
    static KNOWN: RefCell<HashSet<UserId>> = RefCell::new(HashSet::new());
}

impl LogWriter {
    /// A writer whose IO loops commit their own batches when `on_loops` (an embedded store).
    pub(crate) fn new(on_loops: bool) -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        LogWriter {
            tx,
            rx,
            thread: Mutex::new(None),
            on_loops,
            order: Mutex::new(()),
        }
    }

    /// Queues a message for the writer thread's next transaction. Never blocks.
    pub(crate) fn submit(&self, s: Submission) {
        let ticket = WriterTicket::new(&s.conn);
        let _ = self.tx.send(Job::Store(Box::new(s), ticket));
    }
}

impl ChatService {
    /// Starts the writer thread.
    pub(crate) fn start_log_writer(self: &Arc<Self>) -> std::io::Result<()> {
        let service = Arc::clone(self);
        let rx = self.writer.rx.clone();
        let thread = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || service.writer_loop(&rx))?;
        *crate::sync::LockExt::locked(&self.writer.thread) = Some(thread);
        Ok(())
    }

    /// Stores what was submitted so far, then stops the writer thread.
    pub(crate) fn stop_log_writer(&self) {
        let _ = self.writer.tx.send(Job::Stop);
        if let Some(t) = crate::sync::LockExt::locked(&self.writer.thread).take() {
            let _ = t.join();
        }
    }

    /// Takes a chat read on an IO thread: into this loop's batch when loops commit their own
    /// and the connection has nothing in the writer thread's queue, else into that queue.
    pub(crate) fn submit_on_loop(self: &Arc<Self>, s: Submission) {
        if !self.writer.on_loops || s.conn.context().in_writer() != 0 {
            return self.writer.submit(s);
        }
        let full = LOOP_BATCH.with_borrow_mut(|b| {
            b.push(s);
            b.len() >= MAX_BATCH
        });
        if full {
            self.commit_loop_batch();
        }
    }

    /// Commits the chats this IO loop took so far, then acks and pushes them (at the end of
    /// each loop iteration, and before a request goes to a worker).
    pub(crate) fn commit_loop_batch(self: &Arc<Self>) {
        let batch = LOOP_BATCH.with_borrow_mut(std::mem::take);
        if !batch.is_empty() {
            KNOWN.with_borrow_mut(|known| self.commit(known, batch));
        }
    }

    fn writer_loop(self: &Arc<Self>, rx: &Receiver<Job>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        let mut tickets = Vec::with_capacity(MAX_BATCH);
        let mut stop = false;
        while !stop {
            match rx.recv() {
                Ok(Job::Store(s, t)) => {
                    batch.push(*s);
                    tickets.push(t);
                }
                Ok(Job::Stop) | Err(_) => break,
            }
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(Job::Store(s, t)) => {
                        batch.push(*s);
                        tickets.push(t);
                    }
                    Ok(Job::Stop) => {
                        stop = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            KNOWN.with_borrow_mut(|known| self.commit(known, std::mem::take(&mut batch)));
            // Only now may the connections' next chats commit on their loops.
            tickets.clear();
        }
    }

    /// Stores one batch in one transaction, then completes each message.
    fn commit(self: &Arc<Self>, known: &mut HashSet<UserId>, batch: Vec<Submission>) {
        let mut ready = Vec::with_capacity(batch.len());
        for s in batch {
            match self.receiver_exists(known, &s.to) {
                Ok(()) => ready.push(s),
                Err(e) => fail(&s, &e),
            }
        }
        if ready.is_empty() {
            return;
        }
        let _order = crate::sync::LockExt::locked(&self.writer.order);
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
        match self.store.append(&appends) {
            Ok(outcomes) => {
                drop(appends);
                let mut stored = [0u64; 2];
                for (s, outcome) in ready.iter().zip(outcomes) {
                    if let Appended::New(_) = outcome {
                        stored[kind(&s.to) as usize] += 1;
                    }
                    self.complete(s, outcome);
                }
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
    /// waits for a group's fan-out).
    fn complete(self: &Arc<Self>, s: &Submission, outcome: Appended) {
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
        s.conn.context().outbox().note_own(s.sender, s.conv, seq);
        self.ack(s, seq);
        let frame = Bytes::from(with_seq(&s.body, seq));
        let users = match &s.to {
            Recipients::One(user) => std::slice::from_ref(user),
            Recipients::Group(_, members) => members.as_slice(),
        };
        // One clock read per message, not per receiver (a group's pushes are quick).
        let latency = s.taken.elapsed();
        for _ in 0..self.push(users, s.conv, seq, &frame) {
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
