//! One-to-one and group chat: the hot path.
//!
//! A chat is checked (sender logged in, fields well formed, sender a member of the group),
//! stamped with the sender's `id` and `name` from the session (never trusted from the frame;
//! when they are right already the frame is kept byte for byte), and submitted to the log
//! writer, which stores it, then acks the sender and pushes it to the receivers.

use super::backpressure::Work;
use super::context::{ChatConn, Login};
use super::log_writer::{Recipients, Submission};
use super::{current, ChatService, Handled, Outcome, ServiceError};
use crate::store::ConvId;
use clusterchat_net::Bytes;
use clusterchat_proto::{errno, int_field, msgid, Envelope, GroupId, UserId};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::sync::Arc;

impl ChatService {
    /// The IO-thread fast path for ONE_CHAT: if the sender is logged in, has nothing queued on
    /// a worker and the request is well formed, it is submitted to the log writer right here,
    /// with no thread hop. Returns false when a worker must handle it (and report its error).
    pub(crate) fn try_fast_chat(&self, conn: &ChatConn, env: &Envelope, frame: &[u8]) -> bool {
        let session = conn.context();
        if session.pending() != 0 {
            return false;
        }
        let Some(login) = session.login() else {
            return false;
        };
        self.submit_one(conn, env, frame, &login, true).is_ok()
    }

    /// ONE_CHAT on a worker.
    pub(super) fn one_chat(&self, conn: &ChatConn, env: &Envelope, frame: &[u8]) -> Handled {
        let login = current(conn)?;
        self.submit_one(conn, env, frame, &login, false)?;
        Ok(Outcome::Sent)
    }

    fn submit_one(
        &self,
        conn: &ChatConn,
        env: &Envelope,
        frame: &[u8],
        login: &Login,
        on_loop: bool,
    ) -> Result<(), ServiceError> {
        let to: UserId = int_field(env.toid, "toid").map_err(bad_field)?;
        if !(1..=i64::from(i32::MAX)).contains(&to) {
            return Err(ServiceError::new(errno::NOT_FOUND, format!("no user {to}")));
        }
        let cmid = cmid(env)?;
        let body = self.stamped_frame(env, frame, login)?;
        self.writer.submit(
            Submission {
                _work: Work::chat(conn, body.len()),
                conn: Arc::clone(conn),
                request: msgid::ONE_CHAT,
                reqid: env.reqid.map(ToOwned::to_owned),
                conv: ConvId::pair(login.id, to),
                sender: login.id,
                cmid,
                body,
                created_ms: now_ms(),
                taken: std::time::Instant::now(),
                to: Recipients::One(to),
            },
            on_loop,
        );
        Ok(())
    }

    /// GROUP_CHAT: to every other member of a group the sender belongs to.
    pub(super) fn group_chat(&self, conn: &ChatConn, env: &Envelope, frame: &[u8]) -> Handled {
        let login = current(conn)?;
        let group: GroupId = int_field(env.groupid, "groupid").map_err(bad_field)?;
        let cmid = cmid(env)?;
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
        let body = self.stamped_frame(env, frame, &login)?;
        let others = members.into_iter().filter(|m| *m != login.id).collect();
        self.writer.submit(
            Submission {
                _work: Work::chat(conn, body.len()),
                conn: Arc::clone(conn),
                request: msgid::GROUP_CHAT,
                reqid: env.reqid.map(ToOwned::to_owned),
                conv: ConvId::group(group),
                sender: login.id,
                cmid,
                body,
                created_ms: now_ms(),
                taken: std::time::Instant::now(),
                to: Recipients::Group(group, others),
            },
            false,
        );
        Ok(Outcome::Sent)
    }
}

/// The request's `cmid` (a string of at most 64 bytes), if present; errno 102 otherwise.
fn cmid(env: &Envelope) -> Result<Option<Box<str>>, ServiceError> {
    clusterchat_proto::envelope::cmid_field(env.cmid)
        .map(|c| c.map(Into::into))
        .map_err(bad_field)
}

/// The server's clock in Unix milliseconds.
pub(super) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn bad_field(msg: String) -> ServiceError {
    ServiceError::new(errno::BAD_FIELD, msg)
}

/// Frames are built from valid UTF-8 JSON, so this never fails in practice.
pub(super) fn as_text(frame: &[u8]) -> &str {
    std::str::from_utf8(frame).unwrap_or("")
}

/// Most bytes of a chat request outside its `msg`, `reqid` and `cmid`: what the old client
/// sends there (`msgid`, `id`, `name` of at most 50 characters, `toid` or `groupid`, `time`)
/// is ~250 bytes; the rest is room for a newer client's fields.
const MAX_REST: usize = 4096;

/// Longest `time` kept as the sender wrote it, in bytes of its JSON string (the old client's
/// "YYYY-MM-DD HH:MM:SS" is 21 with its quotes); a longer one is replaced by the server's.
const MAX_TIME: usize = 66;

impl ChatService {
    /// The frame to forward, once its text is checked (`msg` a string of at most
    /// `--max-message` bytes, the other fields at most [`MAX_REST`], else errno 102): the
    /// request itself when its `id` and `name` already match the session, its `time` is a
    /// string and it carries no `reqid`, `cmid`, `seq` or escape; otherwise the request
    /// decoded (errno 100 if a string does not decode) with `id` and `name` replaced, `time`
    /// stamped by this server's clock when it was missing or not a string, and `reqid`,
    /// `cmid` and any `seq` removed. So every forwarded chat has the string `msg` and `time`
    /// that the old client reads without a check.
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
        // A time that is not a short string is replaced (it is stored and forwarded, so it
        // must not carry what `--max-message` keeps out of `msg`).
        let time_ok = env
            .time
            .is_some_and(|r| r.get().starts_with('"') && r.get().len() <= MAX_TIME);
        // What is stored and forwarded besides `msg` (not a request's `reqid` and `cmid`, nor
        // a `time` to be replaced) is bounded too, or extra fields would carry what
        // `--max-message` keeps out of it.
        let dropped = [env.reqid, env.cmid, env.time.filter(|_| !time_ok)];
        let rest = dropped
            .iter()
            .flatten()
            .fold(frame.len().saturating_sub(raw.len()), |n, r| {
                n.saturating_sub(r.get().len())
            });
        if rest > MAX_REST {
            return Err(bad_field(format!(
                "a chat's fields other than `msg`, `reqid` and `cmid` take {rest} bytes; \
                 at most {MAX_REST} are accepted"
            )));
        }
        // A `seq` is the server's to give: a frame that names one (even inside `msg`, which
        // costs a rebuild, never a wrong frame) is rebuilt without it.
        let no_seq = memchr::memmem::find(frame, b"\"seq\"").is_none();
        // A frame is forwarded byte for byte only without escapes: the envelope's parse does
        // not check them all (a lone surrogate would reach receivers whose parsers refuse it),
        // and `"se\u0071"` is `seq` in disguise. The rebuild decodes, checks and re-encodes.
        let no_escape = memchr::memchr(b'\\', frame).is_none();
        if id_ok
            && name_ok
            && time_ok
            && no_seq
            && no_escape
            && env.reqid.is_none()
            && env.cmid.is_none()
        {
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
        object.remove("cmid");
        object.remove("seq");
        Ok(Bytes::from(
            serde_json::to_vec(&object).expect("JSON serialises"),
        ))
    }
}
