//! Reading the log and the groups page by page: HISTORY, MEMBERS, and RECV (a receipt that
//! moves the user's cursor).

use super::context::ChatConn;
use super::{body, current, ChatService, Handled, Outcome, ServiceError};
use crate::store::{ConvId, Logged};
use clusterchat_proto::request::{History, Members, Recv};
use clusterchat_proto::{errno, GroupId, HistoryAck, MembersAck, UserId};
use serde_json::Value;

/// HISTORY's page size when the request names none, and the most it may ask for.
const HISTORY_LIMIT: (u32, u32) = (50, 200);
/// MEMBERS's page size when the request names none, and the most it may ask for.
const MEMBERS_LIMIT: (u32, u32) = (200, 1000);

impl ChatService {
    /// HISTORY: a page of a conversation of the caller, newest last. Group history is for
    /// members only, and starts where they joined.
    pub(super) fn history(&self, conn: &ChatConn, frame: &[u8]) -> Handled {
        let me = current(conn)?.id;
        let req = body::<History>(frame)?;
        let (conv, floor) = match (req.peer, req.groupid) {
            (Some(peer), _) => (ConvId::pair(me, checked_user(peer)?), 0),
            (None, Some(group)) => (ConvId::group(group), self.member_floor(group, me)?),
            (None, None) => return Err(missing_target()),
        };
        let limit = page_size(req.limit, HISTORY_LIMIT);
        let before = req.before.unwrap_or(i64::MAX);
        let (rows, more) = self.store.read_before(conv, before, floor, limit)?;
        if let (true, Some(peer)) = (rows.is_empty(), req.peer) {
            // Nothing stored: say so if the peer does not exist at all.
            if self.store.user(peer)?.is_none() {
                return Err(ServiceError::new(
                    errno::NOT_FOUND,
                    format!("no user {peer}"),
                ));
            }
        }
        let messages = rows.iter().map(|m| page_message(conv, m)).collect();
        Ok(Outcome::Reply(
            HistoryAck {
                peer: req.peer,
                groupid: req.groupid.filter(|_| req.peer.is_none()),
                messages,
                more,
            }
            .encode(),
        ))
    }

    /// MEMBERS: a page of a group's members, by id. Members only.
    pub(super) fn members(&self, conn: &ChatConn, frame: &[u8]) -> Handled {
        let me = current(conn)?.id;
        let req = body::<Members>(frame)?;
        self.member_floor(req.groupid, me)?;
        let limit = page_size(req.limit, MEMBERS_LIMIT);
        let mut users = self
            .store
            .members_page(req.groupid, req.after.unwrap_or(0), limit + 1)?;
        let more = users.len() > limit;
        users.truncate(limit);
        Ok(Outcome::Reply(
            MembersAck {
                groupid: req.groupid,
                users,
                more,
            }
            .encode(),
        ))
    }

    /// RECV: the client holds a conversation up to `seq`. Only what this session was sent can
    /// be confirmed (a higher seq is cut to it; a conversation it was sent nothing of is
    /// ignored), so a receipt can neither skip messages nor touch others' conversations.
    pub(super) fn recv(&self, conn: &ChatConn, frame: &[u8]) -> Handled {
        let me = current(conn)?.id;
        let req = body::<Recv>(frame)?;
        let conv = match (req.peer, req.groupid) {
            (Some(peer), _) => ConvId::pair(me, checked_user(peer)?),
            (None, Some(group)) => ConvId::group(group),
            (None, None) => return Err(missing_target()),
        };
        if let Some(sent) = conn.context().outbox().sent(conv) {
            let seq = req.seq.min(sent);
            if seq > 0 {
                self.cursors.record(me, &[(conv, seq)]);
            }
        }
        Ok(Outcome::Ack)
    }

    /// The seq from which `user` may read `group` (errno 105 when not a member).
    fn member_floor(&self, group: GroupId, user: UserId) -> Result<i64, ServiceError> {
        self.store.join_floor(group, user)?.ok_or_else(|| {
            ServiceError::new(
                errno::FORBIDDEN,
                format!("you are not a member of group {group}"),
            )
        })
    }
}

/// A stored message as HISTORY gives it: the frame with its `seq`. A frame that does not read
/// back as JSON (stored by an earlier version, or a damaged file) is given as
/// `{"seq":S,"unreadable":true}`, so that a page never has a hole a client would take for a
/// loss.
fn page_message(conv: ConvId, m: &Logged) -> Value {
    let framed = crate::store::with_seq(m.body.as_bytes(), m.seq);
    serde_json::from_slice::<Value>(&framed).unwrap_or_else(|e| {
        log::warn!(
            "history: conversation {conv:?} seq {}: unreadable frame ({e})",
            m.seq
        );
        serde_json::json!({"seq": m.seq, "unreadable": true})
    })
}

fn checked_user(id: UserId) -> Result<UserId, ServiceError> {
    if (1..=i64::from(i32::MAX)).contains(&id) {
        Ok(id)
    } else {
        Err(ServiceError::new(errno::NOT_FOUND, format!("no user {id}")))
    }
}

fn missing_target() -> ServiceError {
    ServiceError::new(errno::BAD_FIELD, "give `peer` or `groupid`")
}

/// The page size asked for, or the default, at most the maximum, at least 1.
fn page_size(asked: Option<u32>, (default, max): (u32, u32)) -> usize {
    asked.unwrap_or(default).clamp(1, max) as usize
}

#[cfg(test)]
mod tests {
    use super::page_message;
    use crate::store::{ConvId, Logged};
    use serde_json::json;

    fn logged(seq: i64, body: &str) -> Logged {
        Logged {
            seq,
            body: body.to_string(),
            created_ms: 0,
        }
    }

    #[test]
    fn an_unreadable_frame_keeps_its_place_in_the_page() {
        let conv = ConvId::pair(1, 2);
        let page: Vec<_> = [
            logged(1, r#"{"msgid":6,"id":1,"toid":2,"msg":"a"}"#),
            logged(2, r#"{"msgid":6,"id":1,"toid":2,"msg":"bad\ud800"}"#),
            logged(3, "not json"),
        ]
        .iter()
        .map(|m| page_message(conv, m))
        .collect();
        assert_eq!(page[0]["msg"], "a");
        assert_eq!(page[0]["seq"], 1);
        assert_eq!(page[1], json!({"seq": 2, "unreadable": true}));
        assert_eq!(page[2], json!({"seq": 3, "unreadable": true}));
    }
}
