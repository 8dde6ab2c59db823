//! One-to-one and group chat: the hot path.
//!
//! A message goes, in order of preference: to the receiver's connection on this server; else
//! through the bus to the server that has them; else into their offline queue. The sender's
//! `id` and `name` are stamped from the session (never trusted from the frame); when they are
//! right already, the frame is forwarded byte for byte without re-serialising.

use super::context::{ChatConn, Login};
use super::online::Delivery;
use super::{current, ChatService, Handled, Outcome, ServiceError};
use clusterchat_net::Bytes;
use clusterchat_proto::{errno, int_field, msgid, reply, Envelope, GroupId, UserId};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::sync::Arc;

impl ChatService {
    /// The IO-thread fast path for ONE_CHAT: if the sender is logged in, has nothing queued on
    /// a worker, and the receiver is online on this server, the message is queued to the
    /// receiver right here, with no thread hop. Returns false when a worker must handle it.
    ///
    /// In a cluster, a receiver who is not here is handed to the bus from here too, without
    /// waiting (see [`relay`](Self::relay)).
    pub(crate) fn try_fast_chat(
        self: &Arc<Self>,
        conn: &ChatConn,
        env: &Envelope,
        frame: &[u8],
    ) -> bool {
        let session = conn.context();
        if session.pending() != 0 {
            return false;
        }
        let Some(login) = session.login() else {
            return false;
        };
        let (Ok(to), Ok(out)) = (
            int_field(env.toid, "toid"),
            self.stamped_frame(env, frame, &login),
        ) else {
            return false;
        };
        match self.online.deliver(to, out) {
            Delivery::Queued => {
                if let Some(reqid) = env.reqid {
                    super::send_value(conn, &reply::ack(msgid::ONE_CHAT, reqid));
                }
                true
            }
            Delivery::NotHere(_) if self.bus.is_standalone() => false,
            Delivery::NotHere(out) => {
                self.relay(conn, to, out, env.reqid.map(ToOwned::to_owned));
                true
            }
        }
    }

    /// ONE_CHAT on a worker: deliver here, relay through the bus, or store.
    pub(super) fn one_chat(
        self: &Arc<Self>,
        conn: &ChatConn,
        env: &Envelope,
        frame: &[u8],
    ) -> Handled {
        let login = current(conn)?;
        let to = int_field(env.toid, "toid").map_err(bad_field)?;
        let out = self.stamped_frame(env, frame, &login)?;
        if self.bus.is_standalone() {
            self.deliver_or_store(to, out)?;
            return Ok(Outcome::Ack);
        }
        match self.online.deliver(to, out) {
            Delivery::Queued => Ok(Outcome::Ack),
            Delivery::NotHere(out) => {
                self.relay(conn, to, out, env.reqid.map(ToOwned::to_owned));
                Ok(Outcome::Sent)
            }
        }
    }

    /// GROUP_CHAT: to every other member of a group the sender belongs to.
    pub(super) fn group_chat(&self, conn: &ChatConn, env: &Envelope, frame: &[u8]) -> Handled {
        let login = current(conn)?;
        let group: GroupId = int_field(env.groupid, "groupid").map_err(bad_field)?;
        let members = self
            .store
            .group_members(group)?
            .ok_or_else(|| ServiceError::new(errno::NOT_FOUND, format!("no group {group}")))?;
        if !members.contains(&login.id) {
            return Err(ServiceError::new(
                errno::FORBIDDEN,
                format!("you are not a member of group {group}"),
            ));
        }
        let out = self.stamped_frame(env, frame, &login)?;
        let mut later = Vec::new();
        for member in members.into_iter().filter(|m| *m != login.id) {
            let _guard = self.locks.lock(member);
            if !self.deliver_now(member, out.clone())? {
                later.push(member);
            }
        }
        if !later.is_empty() {
            self.store.store_offline_many(&later, as_text(&out))?;
            for member in later {
                self.nudge(member);
            }
        }
        Ok(Outcome::Ack)
    }

    /// Delivers to `user` now (here or through the bus) or stores the frame offline; a user
    /// who is nowhere online and does not exist is NOT_FOUND (checked only then, so live
    /// chat needs no database). Worker threads only: it may block on the bus or the database.
    pub(super) fn deliver_or_store(&self, user: UserId, frame: Bytes) -> Result<(), ServiceError> {
        let stored = {
            let _guard = self.locks.lock(user);
            let text_copy = frame.clone();
            if self.deliver_now(user, frame)? {
                false
            } else if self.store.user(user)?.is_none() {
                return Err(ServiceError::new(
                    errno::NOT_FOUND,
                    format!("no user {user}"),
                ));
            } else {
                self.store.store_offline(user, as_text(&text_copy))?;
                true
            }
        };
        if stored {
            self.nudge(user);
        }
        Ok(())
    }

    /// Called after storing offline for `user` because nobody had them online: if a login of
    /// theirs raced the decision (it read its offline queue before our insert committed), the
    /// message must not wait for their next login. Here: drain the queue to their connection.
    /// Elsewhere in a cluster: an empty message on their channel asks the server that has
    /// them to drain it. When they are still offline both are no-ops.
    pub(super) fn nudge(&self, user: UserId) {
        if self.online.connection(user).is_some() {
            self.drain_offline(user);
        } else if let Err(e) = self.bus.publish(user, b"") {
            log::debug!("cannot nudge user {user} now ({e}); will retry");
            self.retries.nudge_later(user);
        }
    }

    /// Tries this server, then the bus. Ok(false): nobody has the user online. A bus failure
    /// counts as "nobody" (the message is stored, never dropped). Hold the user's lock.
    fn deliver_now(&self, user: UserId, frame: Bytes) -> Result<bool, ServiceError> {
        let frame = match self.online.deliver(user, frame) {
            Delivery::Queued => return Ok(true),
            Delivery::NotHere(frame) => frame,
        };
        match self.bus.publish(user, &frame) {
            Ok(delivered) => Ok(delivered),
            Err(e) => {
                log::debug!("bus publish for user {user} failed ({e}); storing offline");
                Ok(false)
            }
        }
    }

    /// A frame for `user` that could not be written here (the connection closed between the
    /// decision and the write), or that arrived from the bus: write it to the user's current
    /// connection if they have one (they may have logged in again meanwhile), else store it
    /// offline. Worker threads only.
    pub(crate) fn redeliver(&self, user: UserId, frame: Bytes) {
        if frame.is_empty() {
            return self.drain_offline(user); // a nudge: see `nudge`
        }
        let stored = {
            let _guard = self.locks.lock(user);
            match self.online.deliver(user, frame) {
                Delivery::Queued => false,
                Delivery::NotHere(frame) => match self.store.store_offline(user, as_text(&frame)) {
                    Ok(()) => true,
                    Err(e) => {
                        log::error!("lost a message for user {user}: {e}");
                        false
                    }
                },
            }
        };
        // The user may have logged in on another server meanwhile (the message was published
        // to this server's stale subscription): let that server drain it now.
        if stored {
            self.nudge(user);
        }
    }
}

impl ChatService {
    /// Delivers `user`'s offline queue to their connection here, if they have one: after a
    /// bus outage, messages from other servers were stored instead of published. Worker
    /// threads only.
    pub(crate) fn drain_offline(&self, user: UserId) {
        let _guard = self.locks.lock(user);
        if self.online.connection(user).is_none() {
            return;
        }
        let messages = match self.store.take_offline(user) {
            Ok(m) => m,
            Err(e) => return log::warn!("cannot read the offline queue of user {user}: {e}"),
        };
        for message in messages {
            if let Delivery::NotHere(frame) = self.online.deliver(user, Bytes::from(message)) {
                if let Err(e) = self.store.store_offline(user, as_text(&frame)) {
                    log::error!("lost a message for user {user}: {e}");
                }
            }
        }
    }

    /// Retries what failed while the database or the bus was down: presence releases (else a
    /// user who left during a database outage would look online for good) and nudges (else
    /// messages stored while the bus was down would wait for the receiver's next login).
    /// Called periodically by the server's housekeeping thread.
    pub(crate) fn retry_pending(&self) {
        for (user, session) in self.retries.take_releases() {
            if let Err(e) = self.store.release_session(user, &session) {
                log::debug!("user {user}: still cannot mark offline: {e}");
                self.retries.release_later(user, session);
            }
        }
        for user in self.retries.take_nudges() {
            if self.online.connection(user).is_some() {
                self.drain_offline(user);
            } else if self.bus.publish(user, b"").is_err() {
                self.retries.nudge_later(user);
            }
        }
    }

    /// Sets offline the sessions of every server whose liveness lapsed (cluster only).
    pub(crate) fn reap_dead_nodes(&self) {
        let nodes = match self.store.session_nodes() {
            Ok(nodes) => nodes,
            Err(e) => return log::debug!("session reaper: {e}"),
        };
        for node in nodes.iter().filter(|n| **n != self.node) {
            if let Ok(false) = self.bus.node_alive(node) {
                match self.store.release_node(node) {
                    Ok(n) => log::info!("server {node} is gone: set its {n} users offline"),
                    Err(e) => log::warn!("cannot release the sessions of {node}: {e}"),
                }
            }
        }
    }
}

fn bad_field(msg: String) -> ServiceError {
    ServiceError::new(errno::BAD_FIELD, msg)
}

/// Frames are built from valid UTF-8 JSON, so this never fails in practice.
pub(super) fn as_text(frame: &[u8]) -> &str {
    std::str::from_utf8(frame).unwrap_or("")
}

impl ChatService {
    /// The frame to forward, once its text is checked (`msg` a string of at most
    /// `--max-message` bytes, else errno 102): the request itself when its `id` and `name`
    /// already match the session, its `time` is a string and it carries no `reqid`; otherwise
    /// the request with `id` and `name` replaced, `time` stamped by this server's clock when
    /// it was missing or not a string, and `reqid` removed. So every forwarded chat has the
    /// string `msg` and `time` that the old client reads without a check.
    fn stamped_frame(
        &self,
        env: &Envelope,
        frame: &[u8],
        login: &Login,
    ) -> Result<Bytes, ServiceError> {
        let raw = env
            .msg
            .ok_or_else(|| bad_field("missing field `msg`".into()))?
            .get();
        if !raw.starts_with('"') {
            return Err(bad_field("field `msg` must be a string".into()));
        }
        // Escapes only shrink when decoded, so the raw length bounds the text's: most messages
        // are checked without decoding them (the hot path).
        if raw.len() - 2 > self.max_message {
            let text = serde_json::from_str::<Cow<str>>(raw)
                .map_err(|_| bad_field("field `msg` must be a string".into()))?;
            if text.len() > self.max_message {
                return Err(bad_field(format!(
                    "`msg` is {} bytes; at most {} are accepted",
                    text.len(),
                    self.max_message
                )));
            }
        }
        let id_ok = env
            .id
            .and_then(|r| serde_json::from_str::<i64>(r.get()).ok())
            == Some(login.id);
        let name_ok = env
            .name
            .and_then(|r| serde_json::from_str::<Cow<str>>(r.get()).ok())
            .is_some_and(|n| *n == *login.name);
        let time_ok = env.time.is_some_and(|r| r.get().starts_with('"'));
        if id_ok && name_ok && time_ok && env.reqid.is_none() {
            return Ok(Bytes::copy_from_slice(frame));
        }
        let mut object: Map<String, Value> = serde_json::from_slice(frame)
            .map_err(|e| ServiceError::new(errno::MALFORMED, format!("malformed JSON: {e}")))?;
        object.insert("id".into(), login.id.into());
        object.insert("name".into(), login.name.as_ref().into());
        if !time_ok {
            object.insert("time".into(), clusterchat_proto::clock::now().into());
        }
        object.remove("reqid");
        Ok(Bytes::from(
            serde_json::to_vec(&object).expect("JSON serialises"),
        ))
    }
}
