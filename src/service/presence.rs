//! PRESENCE (23): friends learn at once when a user's session starts or ends.
//!
//! When a user logs in, and when their session ends (LOGOUT, a closed connection), every
//! **sync** session of the users in their friend list gets
//! `{"msgid":23,"id":<the user>,"state":"online"|"offline"}`: those on this server directly,
//! those on other servers through the bus (one publish to all of them; the receiving server's
//! [`inbound`](ChatService::inbound) recognises the frame by its prefix and queues it to its
//! local sync sessions of those users). Legacy sessions never get it: the old client reads
//! each `recv()` as one reply and must get nothing it did not ask for.
//!
//! It is best effort: nothing is stored or retried, and a lost frame is corrected by the
//! friend's next LOGIN_ACK (which carries every friend's state). A session ended by a
//! takeover announces nothing: the new session announces "online" itself, so friends see no
//! flicker, and an "offline" from the old server can never arrive after it.

use super::ChatService;
use clusterchat_net::Bytes;
use clusterchat_proto::{msgid, UserId};

/// What a presence frame starts with (on the bus and to clients alike).
const PRESENCE_PREFIX: &str = "{\"msgid\":23,";

/// The PRESENCE frame saying that `user` is now online or offline.
pub(super) fn presence_frame(user: UserId, online: bool) -> Bytes {
    debug_assert_eq!(msgid::PRESENCE, 23);
    let state = if online { "online" } else { "offline" };
    Bytes::from(format!(
        "{PRESENCE_PREFIX}\"id\":{user},\"state\":\"{state}\"}}"
    ))
}

/// Whether a bus frame is a presence frame.
pub(super) fn is_presence(frame: &[u8]) -> bool {
    frame.starts_with(PRESENCE_PREFIX.as_bytes())
}

impl ChatService {
    /// Tells `friends` that `user` is now online or offline: their sync sessions here at once,
    /// the others through the bus. With `wait`, the publish completes before this returns
    /// (an "offline" must be on its way before the user's presence is released, so that a
    /// later "online" from another server cannot overtake it); otherwise fire-and-forget.
    pub(super) fn announce(&self, user: UserId, friends: &[UserId], online: bool, wait: bool) {
        if friends.is_empty() {
            return;
        }
        let frame = presence_frame(user, online);
        let mut elsewhere = Vec::new();
        for &friend in friends {
            match self.online.connection(friend) {
                Some(conn) => {
                    conn.context().outbox().send_presence(&conn, &frame);
                }
                None => elsewhere.push(friend),
            }
        }
        if elsewhere.is_empty() || self.bus.is_standalone() {
            return;
        }
        if wait {
            if let Err(e) = self.bus.publish(&elsewhere, &frame) {
                log::debug!("user {user}: presence not published ({e})");
            }
            return;
        }
        self.bus.publish_async(
            elsewhere.into(),
            frame,
            Box::new(move |outcome| {
                if let Err(e) = outcome {
                    log::debug!("user {user}: presence not published ({e})");
                }
            }),
        );
    }

    /// A presence frame from the bus for `users` of this server: queued to those with a sync
    /// session here, never stored.
    pub(super) fn presence_inbound(&self, users: &[UserId], frame: &Bytes) {
        for &user in users {
            if let Some(conn) = self.online.connection(user) {
                conn.context().outbox().send_presence(&conn, frame);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_presence_frame_is_recognised_and_no_chat_frame_is_one() {
        let on = presence_frame(7, true);
        assert_eq!(&on[..], br#"{"msgid":23,"id":7,"state":"online"}"#);
        let v: serde_json::Value = serde_json::from_slice(&presence_frame(7, false)).unwrap();
        assert_eq!(v["state"], "offline");
        assert!(is_presence(&on));
        let chat = br#"{"msgid":6,"id":3,"toid":9,"msg":"{\"msgid\":23,"}"#;
        assert!(!is_presence(chat));
        assert!(!is_presence(b""));
        assert!(super::super::relay::routing(&on).is_none());
    }
}
