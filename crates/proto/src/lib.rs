//! The clusterchat wire protocol, shared by the server, `chatclient`, `chatbench` and the tests:
//! the [`codec`] that finds frames in a byte stream, the message ids and errnos, typed messages,
//! and a small blocking [`client`]. Nothing here knows about sockets beyond that client, and
//! nothing knows about the reactor.
//!
//! Messages 1–10 are exactly those of the C++ muduo chat server, so its menu-driven client works
//! unchanged. Everything newer (acks, errors, the create-group reply) has its own msgid, which
//! the old client ignores. docs/PROTOCOL.md documents every message with an example.

pub mod client;
pub mod codec;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

/// A user's id, as the `user` table numbers them (the original's `int`).
pub type UserId = i64;
/// A group's id, as the `allgroup` table numbers them.
pub type GroupId = i64;

/// The msgid numbers. 1–10 are the original's `EnMsgType`; 11 and up are clusterchat's.
pub mod msgid {
    /// `{"msgid":1,"id":..,"password":".."}`: log in.
    pub const LOGIN: i64 = 1;
    /// Reply to LOGIN, with `friends`, `groups` and `offlinemsg` on success.
    pub const LOGIN_ACK: i64 = 2;
    /// `{"msgid":3,"id":..}`: log out; the socket stays open.
    pub const LOGOUT: i64 = 3;
    /// `{"msgid":4,"name":..,"password":..}`: register a new account.
    pub const REG: i64 = 4;
    /// Reply to REG with the new `id`.
    pub const REG_ACK: i64 = 5;
    /// One-to-one chat: `{"msgid":6,"id":from,"name":..,"toid":..,"msg":..,"time":..}`.
    pub const ONE_CHAT: i64 = 6;
    /// `{"msgid":7,"id":..,"friendid":..}`.
    pub const ADD_FRIEND: i64 = 7;
    /// `{"msgid":8,"id":..,"groupname":..,"groupdesc":..}`.
    pub const CREATE_GROUP: i64 = 8;
    /// `{"msgid":9,"id":..,"groupid":..}`.
    pub const ADD_GROUP: i64 = 9;
    /// Group chat: `{"msgid":10,"id":from,"name":..,"groupid":..,"msg":..,"time":..}`.
    pub const GROUP_CHAT: i64 = 10;
    /// New: reply to CREATE_GROUP with the new `groupid` (always sent).
    pub const CREATE_GROUP_ACK: i64 = 11;
    /// New: success of a request that carried a `reqid` (echoed), for the msgids the original
    /// answers with silence (3, 6, 7, 9, 10).
    pub const ACK: i64 = 12;
    /// New: a request failed; carries `errno`, `errmsg` and the request's `reqid` if any.
    pub const ERROR: i64 = 13;
}

/// The `errno` values of ERROR replies (LOGIN_ACK and REG_ACK keep the original's 1 and 2).
pub mod errno {
    /// LOGIN_ACK: bad id or password. REG_ACK: registration failed.
    pub const BAD_CREDENTIALS: i64 = 1;
    /// LOGIN_ACK: the account is already online.
    pub const ALREADY_ONLINE: i64 = 2;
    /// The frame is not valid JSON, or not a JSON object.
    pub const MALFORMED: i64 = 100;
    /// `msgid` is missing, not an integer, or not a message the server knows.
    pub const UNKNOWN_MSGID: i64 = 101;
    /// A field is missing or has the wrong type.
    pub const BAD_FIELD: i64 = 102;
    /// The frame is larger than the server accepts; the connection is closed after this reply.
    pub const TOO_LARGE: i64 = 103;
    /// The request needs a logged-in session.
    pub const NOT_LOGGED_IN: i64 = 104;
    /// The session may not do this (not a member of the group, acting for another user…).
    pub const FORBIDDEN: i64 = 105;
    /// The user or group named does not exist.
    pub const NOT_FOUND: i64 = 106;
    /// The connection is already logged in.
    pub const ALREADY_LOGGED_IN: i64 = 107;
    /// The database or the message bus failed; the request may be retried.
    pub const UNAVAILABLE: i64 = 108;
}

/// The routing fields of a request, read in one pass over the frame without copying: each is
/// kept raw and typed only when a handler needs it, so a field that a message does not use can
/// never fail that message. Unknown fields (`msg`, `time`, …) are skipped.
#[derive(Debug, Default, Deserialize)]
pub struct Envelope<'a> {
    /// The message id (an integer when valid).
    #[serde(borrow, default)]
    pub msgid: Option<&'a RawValue>,
    /// The client's request tag, echoed verbatim in the ack or error reply.
    #[serde(borrow, default)]
    pub reqid: Option<&'a RawValue>,
    /// The sender's id as the client claims it (never trusted).
    #[serde(borrow, default)]
    pub id: Option<&'a RawValue>,
    /// The sender's name as the client claims it (never trusted).
    #[serde(borrow, default)]
    pub name: Option<&'a RawValue>,
    /// ONE_CHAT's receiver.
    #[serde(borrow, default)]
    pub toid: Option<&'a RawValue>,
    /// GROUP_CHAT's group.
    #[serde(borrow, default)]
    pub groupid: Option<&'a RawValue>,
}

impl Envelope<'_> {
    /// The msgid as an integer, if present and integral.
    pub fn msgid(&self) -> Option<i64> {
        self.msgid
            .and_then(|raw| serde_json::from_str(raw.get()).ok())
    }
}

/// Reads a required integer field from an [`Envelope`]; `Err` names the field.
pub fn int_field(raw: Option<&RawValue>, field: &str) -> Result<i64, String> {
    match raw {
        None => Err(format!("missing field `{field}`")),
        Some(r) => serde_json::from_str(r.get())
            .map_err(|_| format!("field `{field}` must be an integer, got {}", r.get())),
    }
}

/// LOGIN (1).
#[derive(Debug, Deserialize)]
pub struct LoginReq {
    /// Account id.
    pub id: UserId,
    /// Plain password, hashed and compared by the server.
    pub password: String,
}

/// REG (4).
#[derive(Debug, Deserialize)]
pub struct RegisterReq {
    /// Display name (need not be unique).
    pub name: String,
    /// Plain password; only its argon2 hash is stored.
    pub password: String,
}

/// ONE_CHAT (6). Only the routing field is typed; the rest of the object is forwarded as sent.
#[derive(Debug, Deserialize)]
pub struct OneChatReq {
    /// Receiver.
    pub toid: UserId,
}

/// ADD_FRIEND (7).
#[derive(Debug, Deserialize)]
pub struct AddFriendReq {
    /// The user to add.
    pub friendid: UserId,
}

/// CREATE_GROUP (8).
#[derive(Debug, Deserialize)]
pub struct CreateGroupReq {
    /// Group name (unique, as in the original schema).
    pub groupname: String,
    /// Free-form description.
    #[serde(default)]
    pub groupdesc: String,
}

/// ADD_GROUP (9) and, for routing, GROUP_CHAT (10).
#[derive(Debug, Deserialize)]
pub struct GroupReq {
    /// The group.
    pub groupid: GroupId,
}

/// A user as the login reply lists it (`friends`, group `users`): the original's `User` JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    /// Account id.
    pub id: UserId,
    /// Display name.
    pub name: String,
    /// `"online"` or `"offline"`.
    pub state: String,
}

/// A group member: a user and their `role` (`"creator"` or `"normal"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    /// The member.
    pub user: UserInfo,
    /// `"creator"` or `"normal"`.
    pub role: String,
}

/// A group with its members, as the login reply lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    /// Group id.
    pub id: GroupId,
    /// Group name.
    pub name: String,
    /// Group description.
    pub desc: String,
    /// Every member with their role.
    pub users: Vec<MemberInfo>,
}

impl UserInfo {
    /// The original's `User` JSON object (`id`, `name`, `state`).
    pub fn to_json(&self) -> Value {
        json!({"id": self.id, "name": self.name, "state": self.state})
    }
}

impl GroupInfo {
    /// The original's group JSON: `users` is a list of JSON-encoded member strings.
    pub fn to_json(&self) -> Value {
        let users: Vec<String> = self
            .users
            .iter()
            .map(|m| {
                json!({"id": m.user.id, "name": m.user.name, "state": m.user.state, "role": m.role})
                    .to_string()
            })
            .collect();
        json!({"id": self.id, "groupname": self.name, "groupdesc": self.desc, "users": users})
    }
}

/// Builds the successful LOGIN_ACK exactly as the original does: `friends`, `groups` and
/// `offlinemsg` are lists of JSON-encoded strings (each offline message is the chat frame as
/// it was sent).
pub fn login_ok(
    user: &UserInfo,
    friends: &[UserInfo],
    groups: &[GroupInfo],
    offline: &[String],
) -> Value {
    let friends: Vec<String> = friends.iter().map(|f| f.to_json().to_string()).collect();
    let groups: Vec<String> = groups.iter().map(|g| g.to_json().to_string()).collect();
    json!({
        "msgid": msgid::LOGIN_ACK, "errno": 0, "id": user.id, "name": user.name,
        "friends": friends, "groups": groups, "offlinemsg": offline,
    })
}

/// A LOGIN_ACK or REG_ACK failure in the original's shape (`errno`, `errmsg`).
pub fn ack_error(ack_msgid: i64, errno: i64, errmsg: &str) -> Value {
    json!({"msgid": ack_msgid, "errno": errno, "errmsg": errmsg})
}

/// An ERROR reply; `request` is the failed request's msgid when it was readable.
pub fn error(errno: i64, errmsg: &str, request: Option<i64>, reqid: Option<&RawValue>) -> Value {
    let mut v = json!({"msgid": msgid::ERROR, "errno": errno, "errmsg": errmsg});
    if let Some(r) = request {
        v["request"] = json!(r);
    }
    if let Some(id) = reqid {
        v["reqid"] = raw_to_value(id);
    }
    v
}

/// An ACK for a request that carried `reqid`; `extra` fields are merged in.
pub fn ack(request: i64, reqid: &RawValue) -> Value {
    json!({"msgid": msgid::ACK, "errno": 0, "request": request, "reqid": raw_to_value(reqid)})
}

fn raw_to_value(raw: &RawValue) -> Value {
    serde_json::from_str(raw.get()).unwrap_or(Value::Null)
}
