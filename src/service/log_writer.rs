//! The log writer: one thread that stores chat messages in batches (group commit), then acks
//! their senders and pushes them to their receivers.
//!
//! Every chat goes through here: nobody hears of a message (neither its sender's ACK nor any
//! receiver) before the transaction holding it has committed. Whatever was submitted while a
//! transaction ran goes into the next one, so the cost of a commit is shared by every message
//! that arrived meanwhile, and messages are stored, acked and pushed in the order submitted
//! (one connection's chats keep their order; so does one conversation's).

use super::context::ChatConn;
use super::{send_error, send_value, ChatService, ServiceError};
use crate::bus::Outgoing;
use crate::metrics::Kind;
use crate::store::{Append, Appended, ConvId};
use clusterchat_net::Bytes;
use clusterchat_proto::{errno, reply, GroupId, UserId};
use crossbeam_channel::{Receiver, Sender};
use serde_json::value::RawValue;
use std::collections::HashSet;
use std::sync::Arc;

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
    Store(Box<Submission>),
    Stop,
}

/// The handle to the writer thread.
pub(crate) struct LogWriter {
    tx: Sender<Job>,
    rx: Receiver<Job>,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Default for LogWriter {
    fn default() -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        LogWriter {
            tx,
            rx,
            thread: std::sync::Mutex::new(None),
        }
    }
}

impl LogWriter {
    /// Queues a message for the next transaction. Never blocks.
    pub(crate) fn submit(&self, s: Submission) {
        let _ = self.tx.send(Job::Store(Box::new(s)));
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

    fn writer_loop(self: &Arc<Self>, rx: &Receiver<Job>) {
        let mut known = HashSet::new();
        let mut batch = Vec::with_capacity(MAX_BATCH);
        let mut stop = false;
        while !stop {
            match rx.recv() {
                Ok(Job::Store(s)) => batch.push(*s),
                Ok(Job::Stop) | Err(_) => break,
            }
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(Job::Store(s)) => batch.push(*s),
                    Ok(Job::Stop) => {
                        stop = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.commit(&mut known, std::mem::take(&mut batch));
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
        s.conn.context().outbox().note_own(s.sender, s.conv, seq);
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
