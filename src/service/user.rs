//! Register, log in, log out, and the end of a session when a connection closes.

use super::context::{ChatConn, Login};
use super::names::check_name;
use super::relay::sent_to_another;
use super::takeover::{TAKEOVER_POLL, TAKEOVER_WAIT};
use super::throttle::{addr_key, rate_limited, Subject};
use super::{body, current, send_value, ChatService, Handled, Outcome, ServiceError};
use crate::store::{with_seq, ConvId, Logged, Seq, Store};
use crate::store::{Claim, StoreError, UserRecord};
use clusterchat_net::Bytes;
use clusterchat_proto::request::{Login as LoginReq, Register};
use clusterchat_proto::{errno, msgid, reply, GroupSummary, LoginAck, SyncLoginAck, UserId};
use serde_json::json;
use serde_json::value::RawValue;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest legacy LOGIN_ACK, in bytes: what does not fit follows as ordinary frames.
const MAX_LOGIN_ACK: usize = 64 << 10;
/// How long a LOGOUT waits for the session's last frames to reach the kernel (a client that
/// does not read them gets them again at its next login).
const END_FLUSH_WAIT: Duration = Duration::from_secs(1);
/// How long (in 5 ms steps) a login waits for a vanished connection of the same user to be
/// noticed before answering "already online".
const LOCAL_CLOSE_GRACE_STEPS: u32 = 200;

impl ChatService {
    /// REG: checks the name (valid, not taken) and the address's registration budget, hashes
    /// the password and creates the account. Refusals are REG_ACK errno 1 (bad or taken name,
    /// empty password: the old client shows any non-zero errno as a failed registration) or
    /// 109 (too many registrations from this address).
    pub(super) fn register(&self, conn: &ChatConn, frame: &[u8]) -> Handled {
        let req = body::<Register>(frame)?;
        let refused = |m: String| ServiceError::new(errno::BAD_CREDENTIALS, m);
        let name = check_name(&req.name, "name").map_err(refused)?;
        if req.password.is_empty() {
            return Err(refused("the password must not be empty".into()));
        }
        self.registrations
            .take(addr_key(conn.peer()), Instant::now())
            .map_err(|wait| rate_limited("registrations from your address", wait))?;
        let taken = || refused("name is already taken".into());
        if self.store.user_by_name(name)?.is_some() {
            return Err(taken());
        }
        let hash = self.hasher.hash(&req.password);
        conn.context().end_hash_turn();
        let id = match self.store.register(name, &hash) {
            Ok(id) => id,
            Err(StoreError::Conflict(_)) => return Err(taken()),
            Err(e) => return Err(e.into()),
        };
        log::debug!("registered user {id}");
        Ok(Outcome::Reply(
            json!({"msgid": msgid::REG_ACK, "errno": 0, "id": id, "name": name}),
        ))
    }

    /// LOGIN: checks the password, claims the user's presence, joins the online table,
    /// answers, then streams what the user has not received from the log.
    ///
    /// A sync login (`"sync": true`) gets group member counts instead of member lists and no
    /// offline messages in its LOGIN_ACK; its backlog follows as ordinary frames, then
    /// SYNC_DONE. A legacy login (the old client) gets its offline messages in the LOGIN_ACK
    /// as far as [`MAX_LOGIN_ACK`] allows; the rest follows as ordinary frames.
    pub(super) fn login(&self, conn: &ChatConn, frame: &[u8], reqid: Option<&RawValue>) -> Handled {
        if let Some(login) = conn.context().login() {
            return Err(ServiceError::new(
                errno::ALREADY_LOGGED_IN,
                format!(
                    "this connection is logged in as {} already; log out first",
                    login.id
                ),
            ));
        }
        let req = body::<LoginReq>(frame)?;
        let user = self.check_password(conn, &req)?;
        let legacy = !req.sync;
        let friends = self.store.friends(user.id)?;
        // Whom to tell that this user is online (a legacy LOGIN_ACK may cut its list).
        let friend_ids: Vec<UserId> = friends.iter().map(|f| f.id).collect();
        let mut ack = if legacy {
            let mut groups = self.store.groups_of(user.id)?;
            // Read before the claim below, so this user still shows offline there.
            for member in groups.iter_mut().flat_map(|g| g.users.iter_mut()) {
                if member.user.id == user.id {
                    member.user.state = "online".into();
                }
            }
            LoginReply::Legacy(LoginAck {
                id: user.id,
                name: user.name.clone(),
                friends,
                groups,
                offline: Vec::new(),
            })
        } else {
            let groups = self
                .store
                .group_summaries(user.id)?
                .into_iter()
                .map(|(g, members)| GroupSummary {
                    id: g.id,
                    name: g.name,
                    desc: g.desc,
                    members,
                })
                .collect();
            LoginReply::Sync(SyncLoginAck {
                id: user.id,
                name: user.name.clone(),
                friends,
                groups,
            })
        };
        let claim: Arc<str> = format!("{}/{}", self.node, conn.id()).into();
        let login = Login {
            id: user.id,
            name: user.name.clone().into(),
            claim,
        };
        // The user's lock is held until the reply is queued: a takeover of this session (here,
        // by a login that waits for this lock) queues its KICKED behind this LOGIN_ACK.
        let guard = self.locks.lock(user.id);
        self.claim_presence(user.id, &login.claim, req.takeover)?;
        self.bus.enter(user.id, &login.claim);
        conn.context().outbox().begin(user.id, legacy);
        self.online.insert(user.id, conn);
        // Under the lock: a takeover that finds this connection in the table finds its login.
        conn.context().set_login(login.clone());
        conn.set_authenticated(true); // out of the login timeout and the per-address count
        let sent = match &mut ack {
            LoginReply::Legacy(ack) => self.send_legacy_ack(conn, ack, reqid),
            LoginReply::Sync(ack) => {
                let mut v = ack.encode();
                // Which server of the cluster this session is on (the web client's panel).
                v["node"] = serde_json::Value::from(&*self.node);
                reply::echo_reqid(&mut v, reqid);
                send_value(conn, &v);
                Ok(())
            }
        };
        if let Err(e) = sent {
            conn.context().take_login();
            conn.set_authenticated(false);
            // Never announced online, so nothing to announce.
            self.finish_session(conn, &login, false);
            return Err(e);
        }
        // Behind the LOGIN_ACK: a sync session takes PRESENCE frames from now on.
        conn.context().outbox().allow_presence();
        drop(guard);
        self.announce(user.id, &friend_ids, true, false);
        log::debug!("user {} logged in on connection {}", user.id, conn.id());
        if let Err(e) = self.stream_backlog(conn, user.id, !legacy) {
            if !conn.is_closed() {
                log::warn!("user {}: cannot read the log ({e}); will retry", user.id);
                self.retries.nudge_later(user.id);
            }
        }
        Ok(Outcome::Sent)
    }

    /// [`login`](Self::login), counted in the metrics as a success or a failure by errno.
    pub(super) fn counted_login(
        &self,
        conn: &ChatConn,
        frame: &[u8],
        reqid: Option<&RawValue>,
    ) -> Handled {
        let outcome = self.login(conn, frame, reqid);
        match &outcome {
            Ok(_) => self.metrics.login_succeeded(),
            Err(e) => self.metrics.login_failed(e.errno),
        }
        outcome
    }

    /// The account a LOGIN names (by id or by name), if the password is right. Failures are
    /// counted per account and per source address; while either must wait, the attempt is
    /// refused with 109 before anything is hashed.
    fn check_password(&self, conn: &ChatConn, req: &LoginReq) -> Result<UserRecord, ServiceError> {
        let addr = Subject::Addr(addr_key(conn.peer()));
        let wait = |w| rate_limited("attempts", w);
        self.logins.check(&[addr], Instant::now()).map_err(wait)?;
        let (user, bad) = match (&req.id, &req.name) {
            (Some(id), _) => (self.store.user(*id)?, "id or password is invalid!"),
            (None, Some(name)) => (
                self.store.user_by_name(name)?,
                "name or password is invalid!",
            ),
            (None, None) => (None, "id or password is invalid!"),
        };
        let bad = || ServiceError::new(errno::BAD_CREDENTIALS, bad);
        let Some(user) = user else {
            self.logins.failed(&[addr], Instant::now());
            return Err(bad());
        };
        let both = [addr, Subject::Account(user.id)];
        self.logins.check(&both, Instant::now()).map_err(wait)?;
        let right = self.hasher.verify(&req.password, &user.password_hash);
        conn.context().end_hash_turn();
        if !right {
            self.logins.failed(&both, Instant::now());
            return Err(bad());
        }
        self.logins.succeeded(user.id);
        Ok(user)
    }

    /// Sends a legacy LOGIN_ACK: cut to fit [`MAX_LOGIN_ACK`] (groups, then friends, go
    /// first), then filled with offline messages, oldest first in each conversation, while
    /// they fit. The messages count as delivered once the reply is in the kernel.
    fn send_legacy_ack(
        &self,
        conn: &ChatConn,
        ack: &mut LoginAck,
        reqid: Option<&RawValue>,
    ) -> Result<(), ServiceError> {
        let size = |v: &serde_json::Value| serde_json::to_vec(v).map_or(0, |b| b.len()) + 1;
        let fixed = size(&ack.encode()) + reqid.map_or(0, |r| r.get().len() + 10);
        let mut base = fixed;
        // Each group and friend is carried as a JSON string holding its object (escaped).
        let as_string = |v: serde_json::Value| size(&serde_json::Value::String(v.to_string()));
        let groups: Vec<usize> = ack.groups.iter().map(|g| as_string(g.encode())).collect();
        while base > MAX_LOGIN_ACK * 3 / 4 && !ack.groups.is_empty() {
            ack.groups.pop();
            base -= groups[ack.groups.len()];
        }
        let friends: Vec<usize> = ack.friends.iter().map(|f| as_string(f.encode())).collect();
        while base > MAX_LOGIN_ACK * 3 / 4 && !ack.friends.is_empty() {
            ack.friends.pop();
            base -= friends[ack.friends.len()];
        }
        if base < fixed {
            log::info!(
                "user {}: LOGIN_ACK cut to {} groups and {} friends to fit {MAX_LOGIN_ACK} bytes",
                ack.id,
                ack.groups.len(),
                ack.friends.len()
            );
        }
        let outbox = conn.context().outbox();
        let mut budget = MAX_LOGIN_ACK.saturating_sub(base);
        let mut included = Vec::new();
        // Oldest first across conversations: merge their pages by arrival time.
        let mut heads: Vec<Head> = Vec::new();
        for unread in self.store.unread(ack.id)? {
            let mut head = Head {
                conv: unread.conv,
                after: unread.cursor,
                page: VecDeque::new(),
                more: true,
            };
            head.refill(&*self.store)?;
            heads.push(head);
        }
        loop {
            let next = heads
                .iter()
                .enumerate()
                .filter_map(|(i, h)| h.page.front().map(|m| (m.created_ms, h.conv, i)))
                .min();
            let Some((_, conv, i)) = next else {
                break;
            };
            let m = heads[i].page.front().expect("a head").clone();
            if sent_to_another(ack.id, conv, m.body.as_bytes()) {
                outbox.skip(conv, m.seq);
            } else {
                let text =
                    String::from_utf8(with_seq(m.body.as_bytes(), m.seq)).unwrap_or_default();
                let cost = serde_json::to_string(&text).map_or(0, |s| s.len()) + 1;
                if cost > budget {
                    break;
                }
                budget -= cost;
                ack.offline.push(text);
                included.push((conv, m.seq));
            }
            heads[i].page.pop_front();
            if heads[i].page.is_empty() {
                heads[i].refill(&*self.store)?;
            }
        }
        let mut v = ack.encode();
        reply::echo_reqid(&mut v, reqid);
        let bytes = Bytes::from(serde_json::to_vec(&v).expect("JSON serialises"));
        outbox.stream_many(conn, &included, bytes);
        Ok(())
    }

    /// Marks `user` online under `session`, taking over a claim that a closed connection of
    /// this server or a dead server left behind; refuses while a live one holds it, unless
    /// `takeover`: then that session is ended (see [`super::takeover`]) and the claim tried
    /// again until it is free, for [`TAKEOVER_WAIT`] at most. (The caller holds the user's
    /// lock meanwhile, so logins of the same user here queue behind this one.)
    fn claim_presence(
        &self,
        user: UserId,
        session: &str,
        takeover: bool,
    ) -> Result<(), ServiceError> {
        let deadline = Instant::now() + TAKEOVER_WAIT;
        let mut asked = None;
        // At least two tries: the stale holder may release the claim itself between our
        // claim and our take-over, and then the claim succeeds on the second try.
        for round in 0.. {
            let holder = match self.store.claim_session(user, session)? {
                Claim::Claimed => return Ok(()),
                Claim::HeldBy(holder) => holder,
            };
            let holder_node = holder.rsplit_once('/').map_or("", |(node, _)| node);
            let local = holder_node == self.node;
            let stale = if local {
                self.local_holder_gone(user, takeover)
            } else {
                !self.node_alive(holder_node)?
            };
            if stale {
                if self.store.take_over_session(user, &holder, session)? {
                    log::info!("user {user}: took over the stale session {holder}");
                    return Ok(());
                }
            } else if takeover && !local {
                self.ask_kick(user, &holder, &mut asked)?;
            }
            if !takeover {
                if !stale || round >= 1 {
                    break;
                }
                continue;
            }
            if Instant::now() >= deadline {
                break;
            }
            // Right after a stale holder was ended, claim again at once; otherwise pace.
            if !(stale && round == 0) {
                std::thread::sleep(TAKEOVER_POLL);
            }
        }
        Err(if takeover {
            ServiceError::new(
                errno::ALREADY_ONLINE,
                "this account's other session did not end in time; try again",
            )
        } else {
            ServiceError::new(
                errno::ALREADY_ONLINE,
                "this account is using, input another!",
            )
        })
    }

    /// Whether `user`'s session on this server has ended. A holder whose connection closed
    /// (or any holder, to `kick` it: a takeover) is ended right here (cursors saved, out of
    /// the table, presence released) rather than waited for: its disconnect job may be queued
    /// behind this very login on the same worker. A client that closed its socket and logged
    /// in again at once may be faster than the IO loop noticing the close, so an open holder
    /// gets a short grace period (the caller holds the user's lock, so no other login of this
    /// user can slip in meanwhile).
    fn local_holder_gone(&self, user: UserId, kick: bool) -> bool {
        for _ in 0..LOCAL_CLOSE_GRACE_STEPS {
            let Some(holder) = self.online.holder(user) else {
                return true;
            };
            if holder.is_closed() || kick {
                if let Some(old) = holder.context().take_login() {
                    if kick {
                        self.kick(&holder, &old);
                    } else {
                        self.end_session(&holder, &old);
                    }
                    return true;
                }
                // Else its disconnect job has taken the login and is ending it right now.
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    /// LOGOUT: the user goes offline; the connection stays open and may log in again.
    pub(super) fn logout(&self, conn: &ChatConn) -> Handled {
        let login = current(conn)?;
        conn.context().take_login();
        conn.set_authenticated(false); // its login timer starts again
        self.end_session(conn, &login);
        Ok(Outcome::Ack)
    }

    /// Takes `login` off this server (see [`finish_session`](Self::finish_session)) and tells
    /// the user's friends that they are offline.
    pub(super) fn end_session(&self, conn: &ChatConn, login: &Login) {
        self.finish_session(conn, login, true);
    }

    /// Takes `login` off this server: out of the online table and the bus, what it was sent
    /// and wrote saved as cursors, presence released. With `announce`, the user's friends get
    /// PRESENCE "offline" first (before the release, so that the "online" of a later session
    /// comes after it); a takeover's kick announces nothing, the new session says "online".
    pub(super) fn finish_session(&self, conn: &ChatConn, login: &Login, announce: bool) {
        // Cursors first: a login of this user (here, as soon as they leave the table, or
        // elsewhere) must start from what this session received, including the frames still
        // on their way to the kernel (a LOGOUT's ACK comes after them).
        let outbox = conn.context().outbox();
        let last = outbox.stop_pushes();
        let deadline = std::time::Instant::now() + END_FLUSH_WAIT;
        while !outbox.written_up_to(last) && !conn.is_closed() {
            if std::time::Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let (advances, delivered) = outbox.end();
        self.metrics.delivered(delivered.one, delivered.group);
        if let Some((user, advances)) = advances {
            self.cursors.record(user, &advances);
        }
        self.cursors.flush_user(&*self.store, login.id);
        if announce {
            match self.store.friends(login.id) {
                Ok(friends) => {
                    let ids: Vec<UserId> = friends.iter().map(|f| f.id).collect();
                    self.announce(login.id, &ids, false, true);
                }
                Err(e) => log::debug!("user {}: no offline presence ({e})", login.id),
            }
        }
        // Not under the user's lock: a login waiting for this session to end holds it.
        self.online.remove(login.id, conn);
        self.bus.leave(login.id, &login.claim);
        if let Err(e) = self.store.release_session(login.id, &login.claim) {
            log::warn!(
                "user {}: could not mark offline ({e}); will retry",
                login.id
            );
            self.retries
                .release_later(login.id, Arc::clone(&login.claim));
        }
        log::debug!("user {} logged out of connection {}", login.id, conn.id());
    }
}

/// One conversation's next messages, while a legacy LOGIN_ACK is filled.
struct Head {
    conv: ConvId,
    after: Seq,
    page: VecDeque<Logged>,
    more: bool,
}

impl Head {
    const PAGE: usize = 64;

    fn refill(&mut self, store: &dyn Store) -> Result<(), ServiceError> {
        if !self.more {
            return Ok(());
        }
        let page = store.read_after(self.conv, self.after, Self::PAGE)?;
        self.more = page.len() == Self::PAGE;
        if let Some(last) = page.last() {
            self.after = last.seq;
        }
        self.page.extend(page);
        Ok(())
    }
}

/// The two shapes of LOGIN_ACK.
enum LoginReply {
    Legacy(LoginAck),
    Sync(SyncLoginAck),
}
