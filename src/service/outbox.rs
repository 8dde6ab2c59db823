//! What one connection has been sent from the message log, and what reached the kernel.
//!
//! The log is the only copy that matters; a connection's output is a cache of it. The outbox
//! of a connection records, per conversation, the highest seq queued to it (so a message is
//! never queued twice in one session, and never behind a higher seq of its conversation), and
//! the frames still in flight, each with the tag the net layer reports back through
//! `on_written` once its bytes are in the kernel. From those reports it derives
//! *  for a legacy session (the old client, which never confirms), the cursor advances: a
//!    message counts as delivered once written;
//! *  for every session, the bytes in flight, which pace a sync (never the whole backlog in
//!    memory, never a cut-off for backlog).
//!
//! A session is `Syncing` while its backlog is streamed from the log: live messages are not
//! queued then (they are in the log, and the stream will reach them), only noted as `dirty`,
//! so the stream reads the log once more before the session turns `Live`.

use super::context::ChatConn;
use crate::store::{ConvId, Seq};
use crate::sync::LockExt;
use clusterchat_net::Bytes;
use clusterchat_proto::UserId;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// A frame queued to the connection and not yet reported written.
struct Inflight {
    tag: u64,
    conv: ConvId,
    seq: Seq,
    bytes: usize,
    /// A message sent to the peer (not one skipped): counted as delivered once written.
    sent: bool,
}

#[derive(Default)]
struct State {
    /// The session's user; `None` between sessions.
    user: Option<UserId>,
    live: bool,
    dirty: bool,
    legacy: bool,
    /// A sync session whose LOGIN_ACK is queued: it may be sent PRESENCE frames.
    presence: bool,
    sent: HashMap<ConvId, Seq>,
    /// The user's own messages above `sent` in their conversation (they are not pushed back
    /// to their sender): the gaps they leave are not losses.
    own: HashSet<(ConvId, Seq)>,
    /// A resync was asked for and has not started.
    resync_asked: bool,
    last_tag: u64,
    inflight: VecDeque<Inflight>,
    inflight_bytes: usize,
}

/// Most own-message seqs remembered per session; past it they are forgotten, and the next
/// push after one of them reads the log again instead.
const MAX_OWN: usize = 4096;

/// What [`Outbox::push`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// Queued, or not needed (sent already, or the session is syncing and will read it).
    Done,
    /// The session missed something before this message (it came from another server ahead
    /// of an earlier one, or is the first of its conversation in this session): it was not
    /// queued; read the log for the session ([`resync`](Outbox::resync)).
    Gap,
    /// No session on this connection.
    NoSession,
}

/// Cursor advances that writes made (legacy sessions only): `(user, [(conv, seq)])`.
pub(crate) type Advances = Option<(UserId, Vec<(ConvId, Seq)>)>;

/// Messages that writes delivered (reached the kernel), by kind, for the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Delivered {
    /// Of 1:1 conversations.
    pub(crate) one: u64,
    /// Of groups.
    pub(crate) group: u64,
}

/// The log-delivery state of one connection (see the module docs).
#[derive(Default)]
pub(crate) struct Outbox {
    state: Mutex<State>,
    written_tag: AtomicU64,
}

impl Outbox {
    /// Starts `user`'s session: syncing, nothing sent.
    pub(crate) fn begin(&self, user: UserId, legacy: bool) {
        let mut st = self.state.locked();
        st.user = Some(user);
        st.legacy = legacy;
        st.presence = false;
        st.live = false;
        st.dirty = false;
        st.sent.clear();
        st.own.clear();
        st.resync_asked = false;
    }

    /// The session's LOGIN_ACK is queued: from now on a sync session takes PRESENCE frames.
    pub(crate) fn allow_presence(&self) {
        let mut st = self.state.locked();
        st.presence = st.user.is_some() && !st.legacy;
    }

    /// Queues a PRESENCE frame if this is a sync session past its LOGIN_ACK (a legacy session
    /// never gets one: the old client reads each `recv()` as one reply). Returns whether it
    /// was queued.
    pub(crate) fn send_presence(&self, conn: &ChatConn, frame: &Bytes) -> bool {
        let st = self.state.locked();
        if !st.presence || st.user.is_none() || st.legacy {
            return false;
        }
        // Under the lock, so it cannot overtake the end of the session.
        conn.send(frame.clone());
        true
    }

    /// Stops queueing live messages to the session (they wait in the log) and returns the tag
    /// of the last frame queued: once it is written, the session's cursors are complete.
    pub(crate) fn stop_pushes(&self) -> u64 {
        let mut st = self.state.locked();
        st.live = false;
        st.last_tag
    }

    /// Whether every tagged frame up to `tag` has been reported written.
    pub(crate) fn written_up_to(&self, tag: u64) -> bool {
        self.written_tag.load(Ordering::Acquire) >= tag
    }

    /// Ends the session: returns the advances (and deliveries) written so far; frames still
    /// in flight are forgotten (they stay after the cursor and are sent again at the next
    /// login).
    pub(crate) fn end(&self) -> (Advances, Delivered) {
        let mut st = self.state.locked();
        let written = self.take_written(&mut st);
        st.user = None;
        st.presence = false;
        st.live = false;
        st.sent.clear();
        st.own.clear();
        st.inflight.clear();
        st.inflight_bytes = 0;
        written
    }

    /// Turns the session back to syncing (a resync after a bus outage).
    pub(crate) fn resync(&self) {
        let mut st = self.state.locked();
        st.live = false;
        st.dirty = false;
        st.resync_asked = false;
    }

    /// A live message: queued if the session is live and it comes next in its conversation
    /// (after what was sent and the user's own messages); noted as missed if the session is
    /// syncing; a [`Pushed::Gap`] if something before it is missing (asked once until the
    /// resync starts; later gaps meanwhile are left to it).
    pub(crate) fn push(&self, conn: &ChatConn, conv: ConvId, seq: Seq, frame: &Bytes) -> Pushed {
        let mut st = self.state.locked();
        if st.user.is_none() {
            return Pushed::NoSession;
        }
        if !st.live {
            st.dirty = true;
            return Pushed::Done;
        }
        let sent = match st.sent.get(&conv) {
            Some(&sent) => absorb_own(&mut st, conv, sent),
            None if seq == 1 => 0,
            None => return gap(&mut st),
        };
        if seq <= sent {
            return Pushed::Done;
        }
        if seq > sent + 1 {
            return gap(&mut st);
        }
        queue(&mut st, conn, conv, seq, frame.clone());
        absorb_own(&mut st, conv, seq);
        Pushed::Done
    }

    /// `user` sent `seq` in `conv` from this session: a gap it leaves is not a loss.
    pub(crate) fn note_own(&self, user: UserId, conv: ConvId, seq: Seq) {
        let mut st = self.state.locked();
        if st.user != Some(user) {
            return;
        }
        if st.sent.get(&conv) == Some(&(seq - 1)) {
            st.sent.insert(conv, seq);
            absorb_own(&mut st, conv, seq);
        } else {
            if st.own.len() >= MAX_OWN {
                st.own.clear();
            }
            st.own.insert((conv, seq));
        }
    }

    /// A message of the backlog: queued unless this session has had it (or sent it). Returns
    /// whether it was queued.
    pub(crate) fn stream(&self, conn: &ChatConn, conv: ConvId, seq: Seq, frame: Bytes) -> bool {
        let mut st = self.state.locked();
        if st.user.is_none() {
            return false;
        }
        if st.own.remove(&(conv, seq)) {
            let sent = st.sent.entry(conv).or_insert(0);
            *sent = (*sent).max(seq);
            return false;
        }
        queue(&mut st, conn, conv, seq, frame)
    }

    /// One frame holding several messages (a legacy LOGIN_ACK with offline messages).
    pub(crate) fn stream_many(&self, conn: &ChatConn, messages: &[(ConvId, Seq)], frame: Bytes) {
        let mut st = self.state.locked();
        st.last_tag += 1;
        let tag = st.last_tag;
        for &(conv, seq) in messages {
            let sent = st.sent.entry(conv).or_insert(0);
            *sent = (*sent).max(seq);
            st.inflight.push_back(Inflight {
                tag,
                conv,
                seq,
                bytes: 0,
                sent: true,
            });
        }
        // The frame's bytes, on an entry of its own (seq 0 advances nothing).
        st.inflight.push_back(Inflight {
            tag,
            conv: ConvId(0),
            seq: 0,
            bytes: frame.len(),
            sent: false,
        });
        st.inflight_bytes += frame.len();
        conn.deliver(frame, tag);
    }

    /// A message the session does not need to see (a legacy user's own): counts as delivered
    /// once what was queued before it is written.
    pub(crate) fn skip(&self, conv: ConvId, seq: Seq) {
        let mut st = self.state.locked();
        let sent = st.sent.entry(conv).or_insert(0);
        if seq <= *sent {
            return;
        }
        *sent = seq;
        let tag = st.last_tag;
        st.inflight.push_back(Inflight {
            tag,
            conv,
            seq,
            bytes: 0,
            sent: false,
        });
    }

    /// The highest seq of `conv` this session has been sent, if any.
    pub(crate) fn sent(&self, conv: ConvId) -> Option<Seq> {
        self.state.locked().sent.get(&conv).copied()
    }

    /// Where a stream of `conv` starts for a user whose cursor is `cursor`.
    pub(crate) fn after(&self, conv: ConvId, cursor: Seq) -> Seq {
        self.sent(conv).map_or(cursor, |s| s.max(cursor))
    }

    /// Clears the "missed a live message" mark before a read of the log.
    pub(crate) fn clear_dirty(&self) {
        self.state.locked().dirty = false;
    }

    /// Ends a sync: if no live message was missed since [`clear_dirty`](Self::clear_dirty),
    /// the session turns live and `on_live` runs (under the lock, so that what it queues goes
    /// out before any live message); otherwise false: read the log again.
    pub(crate) fn finish_sync(&self, on_live: impl FnOnce()) -> bool {
        let mut st = self.state.locked();
        if st.dirty {
            st.dirty = false;
            return false;
        }
        st.live = true;
        on_live();
        true
    }

    /// Bytes queued to the connection and not yet reported written.
    pub(crate) fn inflight_bytes(&self) -> usize {
        self.state.locked().inflight_bytes
    }

    /// The net layer's report: every tagged frame up to `tag` is in the kernel. `record` gets
    /// the cursor advances this makes for a legacy session while the outbox is still locked:
    /// a session's [`end`](Self::end) takes that lock, so the end of a session (which writes
    /// the user's cursors next) never overtakes an advance reported just before it. Returns
    /// the messages it delivered.
    pub(crate) fn written(
        &self,
        tag: u64,
        record: impl FnOnce(UserId, &[(ConvId, Seq)]),
    ) -> Delivered {
        self.written_tag.fetch_max(tag, Ordering::AcqRel);
        let mut st = self.state.locked();
        let (advances, delivered) = self.take_written(&mut st);
        if let Some((user, advances)) = advances {
            record(user, &advances);
        }
        delivered
    }

    fn take_written(&self, st: &mut State) -> (Advances, Delivered) {
        let written = self.written_tag.load(Ordering::Acquire);
        let mut advances: Vec<(ConvId, Seq)> = Vec::new();
        let mut delivered = Delivered::default();
        while st.inflight.front().is_some_and(|f| f.tag <= written) {
            let Some(f) = st.inflight.pop_front() else {
                break;
            };
            st.inflight_bytes -= f.bytes;
            if f.sent {
                match f.conv.as_group() {
                    Some(_) => delivered.group += 1,
                    None => delivered.one += 1,
                }
            }
            if st.legacy && f.seq > 0 {
                match advances.iter_mut().find(|(c, _)| *c == f.conv) {
                    Some(a) => a.1 = a.1.max(f.seq),
                    None => advances.push((f.conv, f.seq)),
                }
            }
        }
        let advances = match st.user {
            Some(user) if !advances.is_empty() => Some((user, advances)),
            _ => None,
        };
        (advances, delivered)
    }
}

/// Moves `conv`'s sent mark over the user's own messages right above `sent`; returns it.
fn absorb_own(st: &mut State, conv: ConvId, mut sent: Seq) -> Seq {
    if st.own.is_empty() {
        return sent;
    }
    while st.own.remove(&(conv, sent + 1)) {
        sent += 1;
    }
    st.sent.insert(conv, sent);
    sent
}

/// A gap: ask for one resync until it starts.
fn gap(st: &mut State) -> Pushed {
    if st.resync_asked {
        return Pushed::Done;
    }
    st.resync_asked = true;
    Pushed::Gap
}

/// Queues one message frame unless the session has had its seq; the caller holds the lock.
fn queue(st: &mut State, conn: &ChatConn, conv: ConvId, seq: Seq, frame: Bytes) -> bool {
    let sent = st.sent.entry(conv).or_insert(0);
    if seq <= *sent {
        return false;
    }
    *sent = seq;
    st.last_tag += 1;
    let tag = st.last_tag;
    st.inflight_bytes += frame.len();
    st.inflight.push_back(Inflight {
        tag,
        conv,
        seq,
        bytes: frame.len(),
        sent: true,
    });
    conn.deliver(frame, tag);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::testing::{connection, line};

    /// [`Outbox::written`], with what it records returned.
    fn written(outbox: &Outbox, tag: u64) -> (Advances, Delivered) {
        let mut recorded = None;
        let delivered = outbox.written(tag, |user, advances| {
            recorded = Some((user, advances.to_vec()));
        });
        (recorded, delivered)
    }

    fn frame(seq: Seq) -> Bytes {
        Bytes::from(format!("{{\"seq\":{seq}}}"))
    }

    #[test]
    fn a_syncing_session_only_notes_live_messages_and_reads_again() {
        let (conn, mut client, _server) = connection();
        let outbox = conn.context().outbox();
        let c = ConvId::pair(1, 2);
        assert_eq!(outbox.push(&conn, c, 1, &frame(1)), Pushed::NoSession);
        outbox.begin(2, false);
        outbox.clear_dirty();
        assert_eq!(outbox.push(&conn, c, 1, &frame(1)), Pushed::Done);
        assert!(
            !outbox.finish_sync(|| panic!("not live")),
            "a message was missed"
        );
        assert!(outbox.stream(&conn, c, 1, frame(1)), "the read finds it");
        assert!(outbox.finish_sync(|| conn.send(Bytes::from("{\"done\":1}"))));
        assert_eq!(outbox.push(&conn, c, 2, &frame(2)), Pushed::Done);
        assert_eq!(line(&mut client), r#"{"seq":1}"#);
        assert_eq!(line(&mut client), r#"{"done":1}"#);
        assert_eq!(line(&mut client), r#"{"seq":2}"#);
    }

    #[test]
    fn a_session_is_sent_each_seq_once_in_order_and_reads_the_log_at_a_gap() {
        let (conn, mut client, _server) = connection();
        let outbox = conn.context().outbox();
        let (a, g) = (ConvId::pair(1, 2), ConvId::group(7));
        outbox.begin(2, false);
        assert!(outbox.finish_sync(|| ()));
        assert_eq!(outbox.push(&conn, a, 1, &frame(1)), Pushed::Done);
        assert_eq!(
            outbox.push(&conn, a, 1, &frame(1)),
            Pushed::Done,
            "a duplicate"
        );
        // The user's own seq 2 leaves no gap; 4 before 3 does (once, until the resync).
        outbox.note_own(2, a, 2);
        outbox.note_own(9, a, 3); // another user's: ignored
        assert_eq!(outbox.push(&conn, a, 3, &frame(3)), Pushed::Done);
        assert_eq!(outbox.push(&conn, a, 5, &frame(5)), Pushed::Gap);
        assert_eq!(
            outbox.push(&conn, a, 6, &frame(6)),
            Pushed::Done,
            "asked once"
        );
        // The first message of a conversation in this session, unless it is seq 1: a gap.
        outbox.resync();
        assert!(outbox.finish_sync(|| ()));
        assert_eq!(outbox.push(&conn, g, 20, &frame(20)), Pushed::Gap);
        assert!(!outbox.stream(&conn, a, 3, frame(3)), "sent already");
        assert!(outbox.stream(&conn, a, 4, frame(4)));
        assert_eq!(outbox.sent(a), Some(4));
        assert_eq!(outbox.after(a, 1), 4);
        assert_eq!(outbox.after(ConvId::group(8), 4), 4);
        // Own messages ahead of what was sent are absorbed when it catches up.
        outbox.note_own(2, a, 6);
        assert_eq!(outbox.push(&conn, a, 5, &frame(5)), Pushed::Done);
        assert_eq!(outbox.push(&conn, a, 7, &frame(7)), Pushed::Done);
        conn.send(Bytes::from("{\"end\":1}"));
        let got: Vec<String> = (0..6).map(|_| line(&mut client)).collect();
        assert_eq!(
            got,
            [
                r#"{"seq":1}"#,
                r#"{"seq":3}"#,
                r#"{"seq":4}"#,
                r#"{"seq":5}"#,
                r#"{"seq":7}"#,
                r#"{"end":1}"#
            ]
        );
    }

    #[test]
    fn a_legacy_session_advances_its_cursors_only_as_frames_are_written() {
        let (conn, _client, _server) = connection();
        let outbox = conn.context().outbox();
        let (a, g) = (ConvId::pair(1, 2), ConvId::group(7));
        outbox.begin(2, true);
        // A LOGIN_ACK holding two messages (tag 1), then own message skipped, then a frame.
        outbox.stream_many(&conn, &[(a, 1), (g, 4)], Bytes::from("{\"ack\":1}"));
        outbox.skip(a, 2);
        outbox.stream(&conn, a, 3, frame(3));
        assert!(outbox.inflight_bytes() > 0);
        let both = Delivered { one: 1, group: 1 };
        assert_eq!(
            written(outbox, 1),
            (Some((2, vec![(a, 2), (g, 4)])), both),
            "the skipped own message is no delivery"
        );
        let none = Delivered::default();
        assert_eq!(written(outbox, 1), (None, none), "reported once");
        let one = Delivered { one: 1, group: 0 };
        assert_eq!(written(outbox, 2), (Some((2, vec![(a, 3)])), one));
        assert_eq!(outbox.inflight_bytes(), 0);
        outbox.stream(&conn, a, 4, frame(4));
        assert_eq!(
            outbox.end(),
            (None, none),
            "unwritten frames advance nothing"
        );
        assert_eq!(outbox.inflight_bytes(), 0);
        assert_eq!(written(outbox, 3).0, None, "no session: nothing to advance");
    }

    /// The loop reports a frame written while the session ends on a worker: the end (after
    /// which the user's cursors are written) must find the advance recorded, or the next login
    /// gets the frame again (a duplicate for an old client).
    #[test]
    fn a_session_end_waits_for_an_advance_being_recorded() {
        let (conn, _client, _server) = connection();
        let outbox = conn.context().outbox();
        let a = ConvId::pair(1, 2);
        outbox.begin(2, true);
        outbox.stream(&conn, a, 1, frame(1));
        let recorded = std::sync::atomic::AtomicBool::new(false);
        let (started, recording) = std::sync::mpsc::channel();
        std::thread::scope(|s| {
            s.spawn(|| {
                outbox.written(1, |_, _| {
                    started.send(()).expect("signal");
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    recorded.store(true, std::sync::atomic::Ordering::SeqCst);
                })
            });
            recording.recv().expect("recording started");
            outbox.end();
            assert!(
                recorded.load(std::sync::atomic::Ordering::SeqCst),
                "the session ended before the advance was recorded"
            );
        });
    }

    #[test]
    fn presence_goes_only_to_a_sync_session_past_its_login_ack() {
        let (conn, mut client, _server) = connection();
        let outbox = conn.context().outbox();
        let p = Bytes::from(r#"{"msgid":23,"id":5,"state":"online"}"#);
        assert!(!outbox.send_presence(&conn, &p), "no session");
        outbox.begin(2, true);
        outbox.allow_presence();
        assert!(!outbox.send_presence(&conn, &p), "a legacy session");
        outbox.end();
        outbox.begin(2, false);
        assert!(!outbox.send_presence(&conn, &p), "before the LOGIN_ACK");
        outbox.allow_presence();
        assert!(outbox.send_presence(&conn, &p));
        outbox.end();
        assert!(!outbox.send_presence(&conn, &p), "after the session");
        conn.send(Bytes::from("{\"end\":1}"));
        assert_eq!(line(&mut client), r#"{"msgid":23,"id":5,"state":"online"}"#);
        assert_eq!(line(&mut client), r#"{"end":1}"#);
    }

    #[test]
    fn a_sync_session_moves_no_cursor_on_writes() {
        let (conn, _client, _server) = connection();
        let outbox = conn.context().outbox();
        outbox.begin(2, false);
        outbox.stream(&conn, ConvId::pair(1, 2), 1, frame(1));
        let one = Delivered { one: 1, group: 0 };
        assert_eq!(written(outbox, 1), (None, one));
        assert_eq!(outbox.inflight_bytes(), 0, "but the window drains");
    }
}
