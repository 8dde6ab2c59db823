//! Takeover: a LOGIN with `"takeover":true` ends the account's other session, wherever it is
//! in the cluster, instead of failing with errno 2.
//!
//! * A session on this server is ended by the login's own worker, at once (as a closed
//!   connection's session is, see `local_holder_gone`).
//! * A session on another server: the login publishes a kick to the user (routed to the server
//!   the presence directory names) naming the session (`{"msgid":22,"session":"<node>/<connection>"}`). The server that has that
//!   session ends it on the connection's worker, behind the requests it already read. The
//!   login meanwhile tries its claim every [`TAKEOVER_POLL`], asks again every
//!   [`KICK_REPEAT`] while the same session holds it (a kick may cross the session's own login
//!   or a Redis reconnection), and gives up with errno 2 after [`TAKEOVER_WAIT`]. If that
//!   server dies meanwhile, its session is taken over once it is proven dead, like any other.
//! * The ended session's friends get no PRESENCE "offline": the new session announces
//!   "online" once it is logged in.
//! * The ended session's connection gets KICKED (22) and is shut down: it reads everything sent
//!   before, then end of file; what it sends from then on is ignored. One whose peer does not
//!   close within [`KICK_LINGER`] is closed by force.
//!
//! Nothing acknowledged is lost: the old session's cursors are saved before its presence is
//! released, and the new login, which can only claim the presence after that, reads the log
//! from them.

use super::context::{ChatConn, ConnContext, Login};
use super::{send_value, ChatService, ServiceError};
use crate::sync::LockExt;
use clusterchat_net::TcpConnection;
use clusterchat_proto::{msgid, UserId};
use serde_json::json;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// How long a takeover login waits for the other session to end.
pub(super) const TAKEOVER_WAIT: Duration = Duration::from_secs(5);
/// How often a takeover login tries its claim while it waits.
pub(super) const TAKEOVER_POLL: Duration = Duration::from_millis(20);
/// How often a takeover login asks again while the same remote session holds the account.
const KICK_REPEAT: Duration = Duration::from_millis(500);
/// How long a kicked connection may stay open before it is closed by force.
const KICK_LINGER: Duration = Duration::from_secs(5);
/// What a kick on the bus starts with (chat frames start with their msgid, 6 or 10).
const KICK_PREFIX: &str = "{\"msgid\":22,\"session\":";
/// What the kicked client reads.
const KICKED_MSG: &str = "this account logged in elsewhere; this session has ended";

/// A kick to publish: end the session `session`.
pub(super) fn kick_frame(session: &str) -> Vec<u8> {
    let session = serde_json::to_string(session).expect("a string serialises");
    format!("{KICK_PREFIX}{session}}}").into_bytes()
}

/// The session a bus frame asks to end, if it is a kick.
pub(super) fn kick_target(frame: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Kick {
        session: String,
    }
    if !frame.starts_with(KICK_PREFIX.as_bytes()) {
        return None;
    }
    serde_json::from_slice::<Kick>(frame)
        .ok()
        .map(|k| k.session)
}

/// Kicked connections that have not closed yet, with the time they are closed by force.
#[derive(Default)]
pub(crate) struct Kicked {
    lingering: Mutex<Vec<(Instant, Weak<TcpConnection<ConnContext>>)>>,
}

impl ChatService {
    /// Ends `conn`'s session `old` for a takeover: cursors saved, presence released (see
    /// `end_session`), then KICKED and a shutdown.
    pub(super) fn kick(&self, conn: &ChatConn, old: &Login) {
        // No PRESENCE "offline": the taking-over login announces "online" (no flicker).
        self.finish_session(conn, old, false);
        log::info!("user {}: session {} ended by a takeover", old.id, old.claim);
        if conn.is_closed() {
            return;
        }
        send_value(conn, &json!({"msgid": msgid::KICKED, "errmsg": KICKED_MSG}));
        conn.shutdown();
        self.close_by_force_later(conn);
    }

    /// Closes `conn` (already shut down for writing) by force if its peer has not closed it
    /// within [`KICK_LINGER`]: a kicked session, or a WebSocket whose client sent Close but
    /// keeps the TCP connection open.
    pub(crate) fn close_by_force_later(&self, conn: &ChatConn) {
        self.kicked
            .lingering
            .locked()
            .push((Instant::now() + KICK_LINGER, Arc::downgrade(conn)));
    }

    /// Closes the kicked connections whose peer has not closed them in time. Called every
    /// second by the housekeeper.
    pub(crate) fn sweep_kicked(&self) {
        let now = Instant::now();
        let due: Vec<ChatConn> = {
            let mut lingering = self.kicked.lingering.locked();
            let mut due = Vec::new();
            lingering.retain(|(deadline, conn)| {
                if *deadline > now {
                    return conn.strong_count() > 0;
                }
                due.extend(conn.upgrade());
                false
            });
            due
        };
        for conn in due.into_iter().filter(|c| !c.is_closed()) {
            log::info!("kicked connection {} did not close; closing it", conn.id());
            conn.force_close();
        }
    }

    /// Asks the server of `user`'s session `holder` (on another server) to end it: once, then
    /// again every [`KICK_REPEAT`] while the same session holds the account. `asked` remembers
    /// the last request.
    pub(super) fn ask_kick(
        &self,
        user: UserId,
        holder: &str,
        asked: &mut Option<(String, Instant)>,
    ) -> Result<(), ServiceError> {
        let due = match asked {
            Some((h, at)) if h == holder => at.elapsed() >= KICK_REPEAT,
            _ => true,
        };
        if due {
            let reached = self.bus.publish(&[user], &kick_frame(holder))?;
            log::debug!("user {user}: asked to end session {holder} (reached: {reached})");
            *asked = Some((holder.to_string(), Instant::now()));
        }
        Ok(())
    }

    /// A kick from the bus (on the bus's thread; never blocks): the connection that has
    /// `user`'s session `session` here, if any, ends it on its worker.
    pub(crate) fn kick_requested(self: &Arc<Self>, user: UserId, session: String) {
        let Some(conn) = self.online.holder(user) else {
            return;
        };
        if !holds(&conn, &session) {
            return;
        }
        let service = Arc::clone(self);
        self.workers.execute(
            conn.id(),
            Box::new(move || {
                // On the connection's worker, its logout and disconnect jobs cannot interleave.
                if holds(&conn, &session) {
                    if let Some(old) = conn.context().take_login() {
                        service.kick(&conn, &old);
                    }
                }
            }),
        );
    }
}

/// Whether `conn` is logged in under the presence claim `session`.
fn holds(conn: &ChatConn, session: &str) -> bool {
    conn.context().login().is_some_and(|l| &*l.claim == session)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kick_names_its_session_and_no_chat_frame_is_one() {
        let frame = kick_frame("node-\"1\"/42");
        assert_eq!(kick_target(&frame).as_deref(), Some("node-\"1\"/42"));
        let chat = br#"{"msgid":6,"id":3,"toid":9,"msg":"{\"msgid\":22,\"session\":\"x\"}"}"#;
        assert_eq!(kick_target(chat), None);
        assert_eq!(kick_target(b""), None);
    }
}
