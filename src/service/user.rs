//! Register, log in, log out, and the end of a session when a connection closes.

use super::context::{ChatConn, Login};
use super::{body, current, send_value, ChatService, Handled, Outcome, ServiceError};
use crate::store::Claim;
use clusterchat_proto::request::{Login as LoginReq, Register};
use clusterchat_proto::{errno, msgid, reply, LoginAck, UserId};
use serde_json::json;
use serde_json::value::RawValue;
use std::sync::Arc;
use std::time::Duration;

/// Longest accepted user name, in characters (the original's `VARCHAR(50)`).
const MAX_NAME: usize = 50;
/// How long (in 5 ms steps) a login waits for a vanished connection of the same user to be
/// noticed before answering "already online".
const LOCAL_CLOSE_GRACE_STEPS: u32 = 200;

impl ChatService {
    /// REG: hashes the password and creates the account.
    pub(super) fn register(&self, frame: &[u8]) -> Handled {
        let req = body::<Register>(frame)?;
        let name = req.name.trim();
        if name.is_empty() || name.chars().count() > MAX_NAME {
            return Err(ServiceError::new(
                errno::BAD_CREDENTIALS,
                format!("the name must have 1 to {MAX_NAME} characters"),
            ));
        }
        if req.password.is_empty() {
            return Err(ServiceError::new(
                errno::BAD_CREDENTIALS,
                "the password must not be empty",
            ));
        }
        let hash = self.hasher.hash(&req.password);
        let id = self.store.register(name, &hash)?;
        log::debug!("registered user {id}");
        Ok(Outcome::Reply(
            json!({"msgid": msgid::REG_ACK, "errno": 0, "id": id, "name": name}),
        ))
    }

    /// LOGIN: checks the password, claims the user's presence, joins the online table, reads
    /// the offline messages and answers with friends, groups and those messages.
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
        let bad = || ServiceError::new(errno::BAD_CREDENTIALS, "id or password is invalid!");
        let user = self.store.user(req.id)?.ok_or_else(bad)?;
        if !self.hasher.verify(&req.password, &user.password_hash) {
            return Err(bad());
        }
        // Friends and groups first: once the offline queue is taken, nothing may fail before
        // the reply is queued, or those messages would be lost.
        let friends = self.store.friends(user.id)?;
        let mut groups = self.store.groups_of(user.id)?;
        // Read before the claim below, so this user still shows offline there: not for long.
        for member in groups.iter_mut().flat_map(|g| g.users.iter_mut()) {
            if member.user.id == user.id {
                member.user.state = "online".into();
            }
        }
        let claim: Arc<str> = format!("{}/{}", self.node, conn.id()).into();
        let login = Login {
            id: user.id,
            name: user.name.clone().into(),
            claim,
        };
        // Under the user's lock: claim presence, join the table, read the offline queue. A
        // message for this user is then either in that queue or held for after the reply.
        let offline = {
            let _guard = self.locks.lock(user.id);
            self.claim_presence(user.id, &login.claim)?;
            self.bus.subscribe(user.id);
            self.online.begin_login(user.id, conn);
            self.store.take_offline(user.id)
        };
        let offline = match offline {
            Ok(offline) => offline,
            Err(e) => {
                self.end_session(conn, &login);
                return Err(e.into());
            }
        };
        if conn.is_closed() {
            // The client left during its own login: keep its messages for the next one.
            for message in &offline {
                if let Err(e) = self.store.store_offline(user.id, message) {
                    log::error!("user {}: lost an offline message: {e}", user.id);
                }
            }
            self.end_session(conn, &login);
            return Ok(Outcome::Sent);
        }
        let mut ack = LoginAck {
            id: user.id,
            name: user.name.clone(),
            friends,
            groups,
            offline,
        }
        .encode();
        reply::echo_reqid(&mut ack, reqid);
        send_value(conn, &ack);
        self.online.finish_login(user.id, conn);
        conn.context().set_login(login);
        log::debug!("user {} logged in on connection {}", user.id, conn.id());
        Ok(Outcome::Sent)
    }

    /// Marks `user` online under `session`, taking over a claim that a closed connection of
    /// this server or a dead server left behind; refuses while a live one holds it.
    fn claim_presence(&self, user: UserId, session: &str) -> Result<(), ServiceError> {
        let online = || {
            ServiceError::new(
                errno::ALREADY_ONLINE,
                "this account is using, input another!",
            )
        };
        // Two tries: the stale holder may release the claim itself between our claim and our
        // take-over, and then the claim succeeds on the second try.
        for _ in 0..2 {
            let holder = match self.store.claim_session(user, session)? {
                Claim::Claimed => return Ok(()),
                Claim::HeldBy(holder) => holder,
            };
            let holder_node = holder.rsplit_once('/').map_or("", |(node, _)| node);
            let stale = if holder_node == self.node {
                self.local_holder_gone(user)
            } else {
                !self.bus.node_alive(holder_node)?
            };
            if !stale {
                break;
            }
            if self.store.take_over_session(user, &holder, session)? {
                log::info!("user {user}: took over the stale session {holder}");
                return Ok(());
            }
        }
        Err(online())
    }

    /// Whether `user`'s connection on this server is gone. A client that closed its socket
    /// and logged in again at once may be faster than the IO loop noticing the close, so an
    /// open holder gets a short grace period (the caller holds the user's lock, so no other
    /// login of this user can slip in meanwhile).
    fn local_holder_gone(&self, user: UserId) -> bool {
        for _ in 0..LOCAL_CLOSE_GRACE_STEPS {
            if self.online.connection(user).is_none() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    /// LOGOUT: the user goes offline; the connection stays open and may log in again.
    pub(super) fn logout(&self, conn: &ChatConn) -> Handled {
        let login = current(conn)?;
        conn.context().take_login();
        self.end_session(conn, &login);
        Ok(Outcome::Ack)
    }

    /// Takes `login` off this server: out of the online table and the bus, presence released.
    /// Messages that were held for an unfinished login are stored offline.
    pub(super) fn end_session(&self, conn: &ChatConn, login: &Login) {
        let held = {
            let _guard = self.locks.lock(login.id);
            self.online.remove(login.id, conn)
        };
        self.bus.unsubscribe(login.id);
        for frame in held {
            self.redeliver(login.id, frame);
        }
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
