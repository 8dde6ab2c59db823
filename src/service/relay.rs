//! Pushing stored messages to their receivers: here, or through the bus to the server that
//! has them; and receiving what other servers push.
//!
//! A push is only a fast path: the message is in the log before it is pushed, so a push that
//! finds nobody, or fails, loses nothing. The receiver gets it at their next (sync) login, or
//! when their server is nudged to read the log again (after a bus outage).

use super::outbox::Pushed;
use super::ChatService;
use crate::bus::{Outgoing, PublishDone};
use crate::store::{push_with_seq, ConvId, Seq};
use clusterchat_net::Bytes;
use clusterchat_proto::{msgid, UserId};
use std::sync::Arc;

/// Where a pushed frame belongs: what a server receiving it from the bus needs to know.
#[derive(serde::Deserialize)]
struct Routing {
    msgid: i64,
    id: Option<i64>,
    toid: Option<i64>,
    groupid: Option<i64>,
    seq: Option<i64>,
}

/// A stored chat as it is pushed: `frame`, what a client gets, and `bus`, the same bytes
/// behind a head naming the conversation and seq (`#<conv>:<seq>:`), as the bus carries it, so
/// that a receiving server knows where the frame belongs without parsing its JSON. One buffer:
/// `frame` is a view of `bus`.
pub(crate) struct Stored {
    pub(crate) bus: Bytes,
    pub(crate) frame: Bytes,
}

impl Stored {
    /// The frame of a stored `body` with its `seq`, and its bus form.
    pub(crate) fn new(conv: ConvId, seq: Seq, body: &[u8]) -> Stored {
        let mut out = Vec::with_capacity(body.len() + 48);
        let mut n = itoa::Buffer::new();
        out.push(b'#');
        out.extend_from_slice(n.format(conv.0).as_bytes());
        out.push(b':');
        out.extend_from_slice(n.format(seq).as_bytes());
        out.push(b':');
        let head = out.len();
        push_with_seq(&mut out, body, seq);
        let bus = Bytes::from(out);
        Stored {
            frame: bus.slice(head..),
            bus,
        }
    }
}

/// The conversation, seq and frame of a stored chat in its bus form (see [`Stored`]); `None`
/// for anything else (a nudge, a kick, a presence frame, a chat from a server of an earlier
/// version, which carried the bare frame).
fn stored_head(part: &Bytes) -> Option<(ConvId, Seq, Bytes)> {
    fn number(b: &[u8]) -> Option<(i64, usize)> {
        let end = b.iter().position(|c| *c == b':')?;
        let n = std::str::from_utf8(&b[..end]).ok()?.parse().ok()?;
        Some((n, end + 1))
    }
    let rest = part.strip_prefix(b"#")?;
    let (conv, a) = number(rest)?;
    let (seq, b) = number(&rest[a..])?;
    Some((ConvId(conv), seq, part.slice(1 + a + b..)))
}

/// The conversation and seq of a pushed chat frame, if it is one.
pub(super) fn routing(frame: &[u8]) -> Option<(ConvId, Seq)> {
    let r: Routing = serde_json::from_slice(frame).ok()?;
    let conv = match r.msgid {
        msgid::ONE_CHAT => ConvId::pair(r.id?, r.toid?),
        msgid::GROUP_CHAT => ConvId::group(r.groupid?),
        _ => return None,
    };
    Some((conv, r.seq?))
}

/// The sender of a stored chat frame (its `id`).
pub(super) fn sender_of(frame: &[u8]) -> Option<UserId> {
    serde_json::from_slice::<Routing>(frame).ok()?.id
}

/// Whether the stored chat `frame` of `conv` is one `user` sent to somebody else: their
/// sessions are not sent it (HISTORY has it). A chat to themselves is not: it is delivered
/// like any other.
pub(super) fn sent_to_another(user: UserId, conv: ConvId, frame: &[u8]) -> bool {
    conv != ConvId::pair(user, user) && sender_of(frame) == Some(user)
}

impl ChatService {
    /// Pushes a stored message to `users`: queued on the connections of those here (the frame
    /// is shared, serialised once), and added (in its bus form) to `elsewhere` once for all
    /// the others, for [`publish_pushes`](Self::publish_pushes), which sends it once to each
    /// server that holds some of them. A failed publish asks for a nudge of them later (their
    /// servers then read the log again). Returns how many sessions here took it (queued it,
    /// or have it already, or will read it from the log as they sync).
    pub(crate) fn push(
        self: &Arc<Self>,
        users: &[UserId],
        conv: ConvId,
        seq: Seq,
        stored: &Stored,
        bus: &mut Vec<Outgoing>,
    ) -> usize {
        let frame = &stored.frame;
        let mut elsewhere = Vec::new();
        let mut here = 0;
        for &user in users {
            if let Some(conn) = self.online.connection(user) {
                match conn.context().outbox().push(&conn, conv, seq, frame) {
                    Pushed::Done => {
                        here += 1;
                        continue;
                    }
                    Pushed::Gap => {
                        self.resync_later(conn);
                        continue;
                    }
                    Pushed::NoSession => {}
                }
            }
            elsewhere.push(user);
        }
        if elsewhere.is_empty() || self.bus.is_standalone() {
            return here;
        }
        let users: Arc<[UserId]> = elsewhere.into();
        let done = self.nudge_if_failed(Arc::clone(&users), "push");
        bus.push(Outgoing {
            users,
            frame: stored.bus.clone(),
            done,
        });
        here
    }

    /// Hands the bus, in one go and in order, what [`push`](Self::push)es left for other
    /// servers (the log writer: once per commit).
    pub(crate) fn publish_pushes(&self, elsewhere: Vec<Outgoing>) {
        if !elsewhere.is_empty() {
            self.bus.publish_batch(elsewhere);
        }
    }

    /// The outcome callback of a publish to `users` that did not wait: if it failed (the bus
    /// is down), each of them is nudged later (their servers read the log again for them).
    fn nudge_if_failed(self: &Arc<Self>, users: Arc<[UserId]>, what: &'static str) -> PublishDone {
        let service = Arc::clone(self);
        Box::new(move |outcome| {
            if let Err(e) = outcome {
                log::debug!("{what} to {} users failed ({e}); will nudge", users.len());
                for user in users.iter() {
                    service.retries.nudge_later(*user);
                }
            }
        })
    }

    /// A part from the bus for `users` of this server (on the bus's thread, in arrival
    /// order; never blocks): a stored chat in its bus form (see [`Stored`]) is fanned out to
    /// their connections without parsing it (a bare chat frame, as servers of an earlier
    /// version send, is parsed once). An empty part is a nudge: read the log again for them; a kick ends a session here (a takeover
    /// elsewhere); a presence frame goes to the sync sessions here, never stored.
    ///
    /// A user who is not (or no longer) here, for a message routed by the directory
    /// (`direct` false), is skipped: the message is in the log, and the directory entry that
    /// sent it here was read after the message was stored, was written before this user's
    /// session read the log and is replaced only after the session ended, so any later
    /// session of theirs reads the log after the message was stored (see `bus::redis_route`).
    ///
    /// A message sent here by a sender's presence cache (`direct`) has no such guarantee: the
    /// cache may predate the user's move. Those users are handed back to the bus, which routes
    /// them through the directory as it is now (after the message was stored), so the
    /// argument above holds for that second routing: either it finds the new session, or the
    /// new session wrote its entry after it and reads the log after the message was stored.
    /// If the directory names no session, or this server's ended one, the second routing
    /// publishes nothing or comes back here marked as routed, and is skipped: no loop.
    pub(crate) fn inbound(self: &Arc<Self>, users: &[UserId], part: Bytes, direct: bool) {
        let (conv, seq, frame) = match stored_head(&part) {
            Some(stored) => stored,
            None if part.is_empty() => {
                return users.iter().for_each(|u| self.schedule_resync(*u));
            }
            None => {
                if let Some(session) = super::takeover::kick_target(&part) {
                    return users
                        .iter()
                        .for_each(|u| self.kick_requested(*u, session.clone()));
                }
                if super::presence::is_presence(&part) {
                    return self.presence_inbound(users, &part);
                }
                let Some((conv, seq)) = routing(&part) else {
                    return log::warn!("ignored a bus frame that is not a stored chat");
                };
                (conv, seq, part.clone())
            }
        };
        let mut missed = Vec::new();
        for &user in users {
            match self.online.connection(user) {
                Some(conn) => match conn.context().outbox().push(&conn, conv, seq, &frame) {
                    Pushed::Gap => self.resync_later(conn),
                    Pushed::Done => {}
                    // The connection is here but its session is not (yet, or any more).
                    Pushed::NoSession if direct => missed.push(user),
                    Pushed::NoSession => {}
                },
                None if direct => missed.push(user),
                None => log::debug!(
                    "user {user} left before {conv:?} seq {seq} arrived; it waits in the log"
                ),
            }
        }
        if !missed.is_empty() {
            log::debug!(
                "{} users of {conv:?} seq {seq} are not here (a stale cache); routing again",
                missed.len()
            );
            let missed: Arc<[UserId]> = missed.into();
            let done = self.nudge_if_failed(Arc::clone(&missed), "re-route");
            self.bus.reroute(missed, part, done);
        }
    }

    /// Reads the log again for `user` if they are online here, on their connection's worker.
    pub(crate) fn schedule_resync(self: &Arc<Self>, user: UserId) {
        if let Some(conn) = self.online.connection(user) {
            self.resync_later(conn);
        }
    }

    /// Reads the log again for the session of `conn`, on its worker.
    fn resync_later(self: &Arc<Self>, conn: super::ChatConn) {
        let service = Arc::clone(self);
        self.workers
            .execute(conn.id(), Box::new(move || service.resync(&conn)));
    }
}

impl ChatService {
    /// Retries what failed while the database or the bus was down: presence releases (else a
    /// user who left during a database outage would look online for good), nudges (else a
    /// session that missed pushes would wait for its next login), and cursor writes. Called
    /// every second by the server's housekeeping thread.
    pub(crate) fn retry_pending(self: &Arc<Self>) {
        for (user, session) in self.retries.take_releases() {
            if let Err(e) = self.store.release_session(user, &session) {
                log::debug!("user {user}: still cannot mark offline: {e}");
                self.retries.release_later(user, session);
            }
        }
        let mut elsewhere = Vec::new();
        for user in self.retries.take_nudges() {
            if self.online.connection(user).is_some() {
                self.schedule_resync(user);
            } else if !self.bus.is_standalone() {
                elsewhere.push(user);
            }
        }
        // One nudge for all of them, routed to the servers that hold them.
        if !elsewhere.is_empty() && self.bus.publish(&elsewhere, b"").is_err() {
            for user in elsewhere {
                self.retries.nudge_later(user);
            }
        }
        self.cursors.flush(&*self.store);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::{Bus, BusError, Inbound};

    /// A bus whose re-routes end with `outcome` (it keeps what it was given); nothing else is
    /// asked of it here.
    struct RerouteBus {
        outcome: Result<bool, BusError>,
        sent: std::sync::Mutex<Vec<Bytes>>,
    }

    impl Bus for RerouteBus {
        fn enter(&self, _user: UserId, _session: &str) {}
        fn leave(&self, _user: UserId, _session: &str) {}
        fn publish(&self, _users: &[UserId], _frame: &[u8]) -> Result<bool, BusError> {
            unreachable!("not published in these tests")
        }
        fn reroute(&self, _users: Arc<[UserId]>, frame: bytes::Bytes, done: PublishDone) {
            self.sent.lock().unwrap().push(frame);
            done(self.outcome.clone());
        }
        fn node_alive(&self, _node: &str) -> Result<bool, BusError> {
            Ok(true)
        }
        fn set_inbound(&self, _inbound: Inbound) {}
        fn is_standalone(&self) -> bool {
            false
        }
    }

    /// A service on a fresh SQLite file over `bus`, with the directory holding the file.
    fn service(bus: RerouteBus) -> (Arc<ChatService>, Arc<RerouteBus>, tempfile::TempDir) {
        let bus = Arc::new(bus);
        let (service, dir) = crate::service::testing::sqlite_service(Arc::clone(&bus) as _);
        (service, bus, dir)
    }

    /// A message sent here by a stale presence cache for users who are not here goes back to
    /// the bus; if that re-route fails, they are nudged later (like a failed push), else not.
    #[test]
    fn a_failed_reroute_nudges_its_users_later() {
        let frame = Bytes::from_static(br#"{"msgid":6,"id":3,"toid":9,"msg":"x","seq":4}"#);
        let down = BusError::Unavailable("Redis is unreachable".into());
        let (failing, _, _dir) = service(RerouteBus {
            outcome: Err(down),
            sent: Default::default(),
        });
        failing.inbound(&[9], frame.clone(), true);
        assert_eq!(failing.retries.take_nudges(), [9]);
        let (working, _, _dir) = service(RerouteBus {
            outcome: Ok(true),
            sent: Default::default(),
        });
        working.inbound(&[9], frame, true);
        assert!(working.retries.take_nudges().is_empty());
    }

    /// The bus form of a stored chat reads back as its conversation, seq and exact frame,
    /// whatever the frame holds; anything else is not taken for one.
    #[test]
    fn a_stored_chat_s_bus_form_names_its_conversation_and_seq() {
        let body = br##"{"msgid":6,"id":3,"toid":9,"msg":"#1:2:"}"##;
        let stored = Stored::new(ConvId::pair(3, 9), 41, body);
        assert_eq!(&stored.frame[..], &crate::store::with_seq(body, 41)[..]);
        let (conv, seq, frame) = stored_head(&stored.bus).unwrap();
        assert_eq!(
            (conv, seq, frame),
            (ConvId::pair(3, 9), 41, stored.frame.clone())
        );
        let group = Stored::new(ConvId::group(5), 1, br#"{"msgid":10,"groupid":5}"#);
        assert_eq!(stored_head(&group.bus).unwrap().0, ConvId::group(5));
        for other in [&b""[..], b"{\"msgid\":6}", b"#12:", b"#x:1:{}", b"#1:y:{}"] {
            assert_eq!(stored_head(&Bytes::copy_from_slice(other)), None);
        }
    }

    /// A stored chat in its bus form that a stale cache sent here goes back to the bus with
    /// its head (the next server needs it too), and a failed re-route nudges, as for a bare one.
    #[test]
    fn a_stored_chat_is_rerouted_in_its_bus_form() {
        let down = BusError::Unavailable("Redis is unreachable".into());
        let (service, bus, _dir) = service(RerouteBus {
            outcome: Err(down),
            sent: Default::default(),
        });
        let stored = Stored::new(ConvId::pair(3, 9), 4, br#"{"msgid":6,"id":3,"toid":9}"#);
        service.inbound(&[9], stored.bus.clone(), true);
        assert_eq!(service.retries.take_nudges(), [9]);
        // Routed by the directory (not direct): skipped, it waits in the log.
        service.inbound(&[9], stored.bus.clone(), false);
        assert!(service.retries.take_nudges().is_empty());
        assert_eq!(*bus.sent.lock().unwrap(), [stored.bus]);
    }

    #[test]
    fn a_pushed_frame_names_its_conversation_and_seq() {
        let one = br#"{"msgid":6,"id":3,"name":"a","toid":9,"msg":"x","time":"t","seq":4}"#;
        assert_eq!(routing(one), Some((ConvId::pair(9, 3), 4)));
        let group = br#"{"msgid":10,"id":3,"groupid":5,"msg":"x","seq":7}"#;
        assert_eq!(routing(group), Some((ConvId::group(5), 7)));
        assert_eq!(routing(br#"{"msgid":6,"id":3,"toid":9}"#), None);
        assert_eq!(routing(br#"{"msgid":2}"#), None);
        assert_eq!(sender_of(one), Some(3));
    }
}
