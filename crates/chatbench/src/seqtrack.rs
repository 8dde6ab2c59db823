//! Seq accounting for clients of a server with the message log (`--sync`): every forwarded
//! chat frame carries its conversation's `seq` (1, 2, 3, …), and every acked chat tells its
//! sender the `seq` it got. A receiver therefore knows exactly what it should have: in each
//! conversation, every seq up to the highest one known, except those acked to itself as
//! sender (a 1:1 conversation's seqs are shared by both directions; a group's by all senders).
//! The ones it never received are lost; a seq received twice is a duplicate (dropped).
//!
//! [`ConvTracker`] does this per conversation in memory bounded by what is in flight, not by
//! the number of messages: the seqs below the highest received that are still unexplained are
//! kept as ranges ([`Holes`]), the own acked seqs above it in a small set. [`SeqBook`] holds one
//! user's conversations and batches its RECV receipts (14): per conversation the highest seq
//! received, at most every [`RECV_EVERY`] or every [`RECV_BATCH`] new messages.

use crate::conn::Conns;
use crate::report::Report;
use crate::stamp::{self, int_field, push_i64, push_u64};
use clusterchat_proto::msgid;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// A RECV goes out at least this long after the previous one, unless [`RECV_BATCH`] messages
/// arrived first.
pub const RECV_EVERY: Duration = Duration::from_millis(100);
/// New messages after which a RECV goes out at once.
pub const RECV_BATCH: u32 = 256;

/// A conversation as its receiver names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Conv {
    /// One-to-one with this user.
    Peer(i64),
    /// A group.
    Group(i64),
}

impl Conv {
    /// The conversation of a forwarded chat frame: its `groupid` for GROUP_CHAT, the sender's
    /// `id` for ONE_CHAT.
    pub fn of_frame(id: i64, frame: &[u8]) -> Option<Conv> {
        match id {
            msgid::ONE_CHAT => int_field(frame, "id").map(Conv::Peer),
            msgid::GROUP_CHAT => int_field(frame, "groupid").map(Conv::Group),
            _ => None,
        }
    }

    /// Appends a RECV (14) frame for this conversation up to `seq`, NUL-terminated.
    pub fn push_recv(&self, out: &mut Vec<u8>, seq: u64) {
        let (key, id) = match *self {
            Conv::Peer(u) => ("peer", u),
            Conv::Group(g) => ("groupid", g),
        };
        out.extend_from_slice(b"{\"msgid\":14,\"");
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\":");
        push_i64(out, id);
        out.extend_from_slice(b",\"seq\":");
        push_u64(out, seq);
        out.extend_from_slice(b"}\0");
    }
}

/// A set of seqs kept as disjoint inclusive ranges; ranges are only added above all others.
#[derive(Debug, Default, Clone)]
pub struct Holes {
    ranges: BTreeMap<u64, u64>,
    count: u64,
}

impl Holes {
    /// Adds `lo..=hi` (nothing when `lo > hi`); `lo` must lie above every seq held.
    pub fn push_range(&mut self, lo: u64, hi: u64) {
        if lo > hi {
            return;
        }
        self.count += hi - lo + 1;
        if let Some(mut last) = self.ranges.last_entry() {
            debug_assert!(*last.get() < lo, "ranges are added in order");
            if *last.get() + 1 == lo {
                *last.get_mut() = hi;
                return;
            }
        }
        self.ranges.insert(lo, hi);
    }

    /// Removes `s`; false when it was not held.
    pub fn remove(&mut self, s: u64) -> bool {
        let Some((&lo, &hi)) = self.ranges.range(..=s).next_back() else {
            return false;
        };
        if s > hi {
            return false;
        }
        self.ranges.remove(&lo);
        if lo < s {
            self.ranges.insert(lo, s - 1);
        }
        if s < hi {
            self.ranges.insert(s + 1, hi);
        }
        self.count -= 1;
        true
    }

    /// How many seqs are held.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// Whether none are.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn clear(&mut self) {
        self.ranges.clear();
        self.count = 0;
    }
}

/// One receiver's accounting of one conversation.
#[derive(Debug, Default, Clone)]
pub struct ConvTracker {
    /// Seqs up to here are settled (counted in an earlier round): a frame with one is a
    /// duplicate.
    base: u64,
    /// Highest seq received.
    recv_hi: u64,
    /// Seqs in `base+1..recv_hi` neither received nor acked to this user.
    holes: Holes,
    /// Seqs acked to this user (as sender) above `recv_hi`.
    own_ahead: BTreeSet<u64>,
    /// Highest seq acked to this user.
    own_hi: u64,
    /// Highest seq confirmed by RECV.
    confirmed: u64,
}

impl ConvTracker {
    /// A frame with `seq` arrived: true if new, false for a duplicate (drop it).
    pub fn receive(&mut self, seq: u64) -> bool {
        if seq <= self.base {
            return false;
        }
        if seq > self.recv_hi {
            let mut next = self.recv_hi + 1;
            let own: Vec<u64> = self.own_ahead.range(..=seq).copied().collect();
            for s in own {
                self.own_ahead.remove(&s);
                if s < seq {
                    self.holes.push_range(next, s - 1);
                    next = s + 1;
                }
            }
            self.holes.push_range(next, seq - 1);
            self.recv_hi = seq;
            return true;
        }
        self.holes.remove(seq)
    }

    /// The server acked `seq` to this user as the sender of a message in this conversation.
    pub fn own(&mut self, seq: u64) {
        self.own_hi = self.own_hi.max(seq);
        if seq <= self.base {
            return;
        }
        if seq > self.recv_hi {
            self.own_ahead.insert(seq);
        } else {
            self.holes.remove(seq);
        }
    }

    /// The highest seq this user knows of (received, or acked to it).
    pub fn known_hi(&self) -> u64 {
        self.recv_hi.max(self.own_hi)
    }

    /// The highest seq acked to this user as sender.
    pub fn own_hi(&self) -> u64 {
        self.own_hi
    }

    /// The highest seq received.
    pub fn recv_hi(&self) -> u64 {
        self.recv_hi
    }

    /// Seqs up to `upper` (the highest seq anyone knows of in the conversation) that this user
    /// should have and has not received.
    pub fn lost(&self, upper: u64) -> u64 {
        let mut lost = self.holes.len();
        if upper > self.recv_hi {
            let own = self.own_ahead.range(self.recv_hi + 1..=upper).count() as u64;
            lost += upper - self.recv_hi - own;
        }
        lost
    }

    /// Ends a round: everything up to `upper` (and up to what is known) counts as settled, so
    /// a later round counts only its own messages (a straggler of a settled seq is a
    /// duplicate).
    pub fn settle(&mut self, upper: u64) {
        self.base = self.base.max(upper).max(self.known_hi());
        self.recv_hi = self.base;
        self.holes.clear();
        self.own_ahead.clear();
    }
}

/// One user's conversations and RECV batching.
#[derive(Debug, Clone)]
pub struct SeqBook {
    convs: Vec<(Conv, ConvTracker)>,
    unconfirmed: u32,
    last_flush: Instant,
}

impl Default for SeqBook {
    fn default() -> Self {
        SeqBook {
            convs: Vec::new(),
            unconfirmed: 0,
            last_flush: Instant::now(),
        }
    }
}

impl SeqBook {
    /// The tracker of `conv` (made on first use; a user has few conversations).
    pub fn conv(&mut self, conv: Conv) -> &mut ConvTracker {
        let i = match self.convs.iter().position(|(c, _)| *c == conv) {
            Some(i) => i,
            None => {
                self.convs.push((conv, ConvTracker::default()));
                self.convs.len() - 1
            }
        };
        &mut self.convs[i].1
    }

    /// The tracker of `conv` if there is one.
    pub fn get(&self, conv: Conv) -> Option<&ConvTracker> {
        self.convs.iter().find(|(c, _)| *c == conv).map(|(_, t)| t)
    }

    /// Every conversation.
    pub fn convs(&self) -> impl Iterator<Item = (Conv, &ConvTracker)> {
        self.convs.iter().map(|(c, t)| (*c, t))
    }

    /// Every conversation, to settle them.
    pub fn convs_mut(&mut self) -> impl Iterator<Item = (Conv, &mut ConvTracker)> {
        self.convs.iter_mut().map(|(c, t)| (*c, t))
    }

    /// A frame of `conv` with `seq` arrived: true if new (to be confirmed by RECV), false for
    /// a duplicate.
    pub fn receive(&mut self, conv: Conv, seq: u64) -> bool {
        let new = self.conv(conv).receive(seq);
        if new {
            self.unconfirmed += 1;
        }
        new
    }

    /// New messages not confirmed by RECV yet.
    pub fn unconfirmed(&self) -> u32 {
        self.unconfirmed
    }

    /// Whether a RECV is due: [`RECV_BATCH`] new messages, or some and [`RECV_EVERY`] since
    /// the last one.
    pub fn due(&self, now: Instant) -> bool {
        self.unconfirmed >= RECV_BATCH
            || (self.unconfirmed > 0 && now.duration_since(self.last_flush) >= RECV_EVERY)
    }

    /// Appends a RECV for each conversation whose highest received seq is not confirmed yet;
    /// returns how many.
    pub fn flush(&mut self, out: &mut Vec<u8>, now: Instant) -> u64 {
        let mut n = 0;
        for (conv, t) in &mut self.convs {
            if t.recv_hi > t.confirmed {
                conv.push_recv(out, t.recv_hi);
                t.confirmed = t.recv_hi;
                n += 1;
            }
        }
        self.unconfirmed = 0;
        self.last_flush = now;
        n
    }
}

/// What a measuring loop keeps per user across rounds.
#[derive(Debug, Clone, Default)]
pub struct Session {
    /// Seq accounting and RECV batching.
    pub book: SeqBook,
    /// Chats this user sent in all rounds (numbers its `reqid`s and `cmid`s).
    pub chats: u64,
    /// SYNC_DONE's `count`, once it arrived.
    pub sync_done: Option<u64>,
}

impl Session {
    /// Whether a RECV must go out now, without waiting for [`RECV_EVERY`].
    pub fn batch_full(&self) -> bool {
        self.book.unconfirmed >= RECV_BATCH
    }
}

/// What `--sync` counts in a round.
#[derive(Debug, Default, Clone, Copy)]
pub struct SyncCounts {
    /// Chats sent and not acked (nor refused) yet.
    pub acks_pending: u64,
    /// ACKs of chats.
    pub acks: u64,
    /// ACKs without a `seq` (a server without the log).
    pub acks_noseq: u64,
    /// Chat frames without a `seq`.
    pub noseq: u64,
    /// Duplicate chat frames dropped.
    pub dup: u64,
    /// Seqs that should have arrived and did not.
    pub lost_gaps: u64,
    /// RECV frames sent.
    pub recvs: u64,
    /// Whether any chat frame or ACK carried a seq.
    pub seq_seen: bool,
}

impl SyncCounts {
    pub fn add(&mut self, o: &SyncCounts) {
        self.acks_pending += o.acks_pending;
        self.acks += o.acks;
        self.acks_noseq += o.acks_noseq;
        self.noseq += o.noseq;
        self.dup += o.dup;
        self.lost_gaps += o.lost_gaps;
        self.recvs += o.recvs;
        self.seq_seen |= o.seq_seen;
    }

    /// Puts the figures into a `--sync` report: `lost` becomes the seq gaps when seqs were
    /// seen (the stamp count stays as `unreceived`), with notes on what the server lacked.
    pub fn report(&self, r: &mut Report, sessions: &[&Session]) {
        let unreceived = r.lost;
        if self.seq_seen {
            r.lost = self.lost_gaps;
        } else {
            r.notes.push(
                "--sync: no seq in chat frames or ACKs (a server without the message log): \
                 loss counted by stamps only"
                    .into(),
            );
        }
        let done = sessions.iter().filter(|s| s.sync_done.is_some()).count();
        if done == 0 {
            r.notes.push(
                "--sync: no SYNC_DONE (the server does not know sync logins): its LOGIN_ACK \
                 ended the sync"
                    .into(),
            );
        }
        for (k, v) in [
            ("unreceived", unreceived),
            ("dup", self.dup),
            ("acks", self.acks),
            ("acks_missing", self.acks_pending),
            ("recv_sent", self.recvs),
            ("sync_done_users", done as u64),
        ] {
            r.extra.insert(k.into(), v as f64);
        }
        if self.noseq > 0 {
            r.extra.insert("noseq_msgs".into(), self.noseq as f64);
        }
        if self.acks_noseq > 0 {
            r.extra.insert("acks_noseq".into(), self.acks_noseq as f64);
        }
        if unreceived > 0 && self.seq_seen {
            r.notes.push(format!(
                "{unreceived} sent and never received (by stamps; lost counts seq gaps)"
            ));
        }
    }
}

/// How often a loop looks for RECVs that are due.
pub const RECV_SCAN: Duration = Duration::from_millis(10);

/// `--sync` bookkeeping of a frame that arrived on connection `i` of a measuring loop: the seq
/// of a chat frame of kind `chat` (false for a duplicate: drop it), the seq of the ACK of a chat
/// this user sent in conversation `own_conv`, SYNC_DONE. True lets the frame go on to the
/// scenario's own checks (chat frames and ERRORs).
pub fn sync_frame(
    counts: &mut SyncCounts,
    sessions: &mut [Session],
    conns: &mut Conns,
    i: usize,
    frame: &[u8],
    chat: i64,
    own_conv: Conv,
) -> bool {
    match stamp::msgid(frame) {
        Some(id) if id == chat => {
            let Some(seq) = int_field(frame, "seq").filter(|&s| s > 0) else {
                counts.noseq += 1;
                return true;
            };
            counts.seq_seen = true;
            let conv = Conv::of_frame(chat, frame).unwrap_or(own_conv);
            let s = &mut sessions[i];
            if !s.book.receive(conv, seq as u64) {
                counts.dup += 1;
                return false;
            }
            if s.batch_full() {
                counts.recvs += s.book.flush(conns.out(i), Instant::now());
            }
            true
        }
        Some(msgid::ACK) if int_field(frame, "request") == Some(chat) => {
            counts.acks += 1;
            counts.acks_pending = counts.acks_pending.saturating_sub(1);
            match int_field(frame, "seq").filter(|&s| s > 0) {
                Some(seq) => {
                    counts.seq_seen = true;
                    sessions[i].book.conv(own_conv).own(seq as u64);
                }
                None => counts.acks_noseq += 1,
            }
            false
        }
        Some(msgid::ERROR) => {
            if int_field(frame, "request") == Some(chat) {
                counts.acks_pending = counts.acks_pending.saturating_sub(1);
            }
            true
        }
        Some(msgid::SYNC_DONE) => {
            sessions[i].sync_done = Some(int_field(frame, "count").unwrap_or(0).max(0) as u64);
            false
        }
        _ => true,
    }
}

/// Sends the RECVs that are due (all unconfirmed ones when `all`, at the end of a round).
pub fn flush_recvs(
    counts: &mut SyncCounts,
    sessions: &mut [Session],
    conns: &mut Conns,
    now: Instant,
    all: bool,
) {
    for (u, s) in sessions.iter_mut().enumerate() {
        if conns.is_open(u) && (all || s.book.due(now)) {
            counts.recvs += s.book.flush(conns.out(u), now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holes_split_and_merge() {
        let mut h = Holes::default();
        h.push_range(3, 7);
        h.push_range(8, 8);
        h.push_range(5, 4);
        assert_eq!(h.len(), 6);
        assert!(h.remove(5) && h.remove(3) && h.remove(8));
        assert!(!h.remove(5) && !h.remove(2) && !h.remove(9));
        assert_eq!(h.len(), 3);
        assert!(h.remove(4) && h.remove(6) && h.remove(7));
        assert!(h.is_empty());
    }

    #[test]
    fn a_pair_conversation_with_own_messages_between() {
        // 1 and 2 from the peer, 3 mine (acked), 4 from the peer, 5 mine acked late, 6 lost,
        // 7 received before 6's turn, 8 a duplicate of 7's neighbour… then the peer's ack says
        // 9 was stored.
        let mut t = ConvTracker::default();
        assert!(t.receive(1) && t.receive(2));
        t.own(3);
        assert!(t.receive(4));
        assert_eq!(t.lost(4), 0);
        assert!(t.receive(7));
        assert_eq!(t.lost(7), 2, "5 and 6 unexplained");
        t.own(5);
        assert_eq!(t.lost(7), 1);
        assert!(!t.receive(7) && !t.receive(2), "duplicates");
        assert_eq!(t.lost(9), 3, "6, 8 and 9");
        t.own(8);
        assert_eq!(t.lost(9), 2);
        assert!(t.receive(6), "late but new");
        assert_eq!(t.lost(9), 1);
        assert_eq!((t.known_hi(), t.recv_hi(), t.own_hi()), (8, 7, 8));
        t.settle(9);
        assert_eq!(t.lost(9), 0);
        assert!(!t.receive(9), "settled");
        assert!(t.receive(10));
        assert_eq!(t.lost(11), 1);
    }

    #[test]
    fn own_acks_ahead_of_receipts_fill_gaps() {
        let mut t = ConvTracker::default();
        t.own(1);
        t.own(2);
        t.own(4);
        t.own(6);
        assert!(t.receive(3));
        assert!(t.receive(7));
        assert_eq!(t.lost(7), 1, "only 5");
        assert_eq!(t.lost(6), 1);
        let mut fresh = ConvTracker::default();
        fresh.own(2);
        assert_eq!(fresh.lost(3), 2, "1 and 3");
    }

    #[test]
    fn big_jumps_stay_small() {
        let mut t = ConvTracker::default();
        assert!(t.receive(1_000_000_000));
        assert_eq!(t.lost(1_000_000_000), 999_999_999);
        assert!(t.receive(5));
        assert_eq!(t.lost(1_000_000_000), 999_999_998);
    }

    #[test]
    fn the_book_batches_receipts() {
        let t0 = Instant::now();
        let mut b = SeqBook {
            last_flush: t0,
            ..SeqBook::default()
        };
        assert!(!b.due(t0 + RECV_EVERY * 2), "nothing to confirm");
        assert!(b.receive(Conv::Peer(7), 1));
        assert!(!b.receive(Conv::Peer(7), 1));
        assert!(b.receive(Conv::Group(3), 4));
        assert!(!b.due(t0) && b.due(t0 + RECV_EVERY));
        let mut out = Vec::new();
        assert_eq!(b.flush(&mut out, t0), 2);
        assert_eq!(
            out,
            b"{\"msgid\":14,\"peer\":7,\"seq\":1}\0{\"msgid\":14,\"groupid\":3,\"seq\":4}\0"
        );
        out.clear();
        assert_eq!(b.flush(&mut out, t0), 0, "nothing new");
        for s in 2..(2 + RECV_BATCH as u64) {
            b.receive(Conv::Peer(7), s);
        }
        assert!(b.due(t0));
        assert_eq!(
            b.get(Conv::Peer(7)).unwrap().recv_hi(),
            1 + RECV_BATCH as u64
        );
        assert_eq!(b.convs().count(), 2);
    }

    #[test]
    fn conversations_come_from_frames() {
        let one = br#"{"msgid":6,"id":4,"name":"a","toid":5,"msg":"x","time":"t","seq":2}"#;
        let group = br#"{"msgid":10,"id":4,"name":"a","groupid":9,"msg":"x","seq":3}"#;
        assert_eq!(Conv::of_frame(6, one), Some(Conv::Peer(4)));
        assert_eq!(Conv::of_frame(10, group), Some(Conv::Group(9)));
        assert_eq!(Conv::of_frame(12, one), None);
    }
}
