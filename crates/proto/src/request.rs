//! Every request a client can send, typed: one struct per message, whose serde derive is both
//! its parser (the server) and its encoder (the clients), so the two cannot drift apart.
//!
//! [`RequestKind`] names the requests the server knows and says which need a login: a new
//! request must be given a kind (the match in [`RequestKind::needs_login`] has no wildcard),
//! so it cannot start out unauthenticated by accident.
//!
//! Fields the original client sends but the server never trusts (`id`, `name`: the server acts
//! as the session's user) default when absent.

use crate::{msgid, GroupId, UserId};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The requests the server handles, by msgid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// LOGIN (1).
    Login,
    /// LOGOUT (3).
    Logout,
    /// REG (4).
    Register,
    /// ONE_CHAT (6).
    OneChat,
    /// ADD_FRIEND (7).
    AddFriend,
    /// CREATE_GROUP (8).
    CreateGroup,
    /// ADD_GROUP (9).
    AddGroup,
    /// GROUP_CHAT (10).
    GroupChat,
    /// RECV (14).
    Recv,
    /// HISTORY (16).
    History,
    /// MEMBERS (18).
    Members,
}

impl RequestKind {
    /// The kind of a request msgid; `None` for msgids that are not requests.
    pub fn from_msgid(id: i64) -> Option<RequestKind> {
        Some(match id {
            msgid::LOGIN => RequestKind::Login,
            msgid::LOGOUT => RequestKind::Logout,
            msgid::REG => RequestKind::Register,
            msgid::ONE_CHAT => RequestKind::OneChat,
            msgid::ADD_FRIEND => RequestKind::AddFriend,
            msgid::CREATE_GROUP => RequestKind::CreateGroup,
            msgid::ADD_GROUP => RequestKind::AddGroup,
            msgid::GROUP_CHAT => RequestKind::GroupChat,
            msgid::RECV => RequestKind::Recv,
            msgid::HISTORY => RequestKind::History,
            msgid::MEMBERS => RequestKind::Members,
            _ => return None,
        })
    }

    /// The msgid on the wire.
    pub fn msgid(self) -> i64 {
        match self {
            RequestKind::Login => msgid::LOGIN,
            RequestKind::Logout => msgid::LOGOUT,
            RequestKind::Register => msgid::REG,
            RequestKind::OneChat => msgid::ONE_CHAT,
            RequestKind::AddFriend => msgid::ADD_FRIEND,
            RequestKind::CreateGroup => msgid::CREATE_GROUP,
            RequestKind::AddGroup => msgid::ADD_GROUP,
            RequestKind::GroupChat => msgid::GROUP_CHAT,
            RequestKind::Recv => msgid::RECV,
            RequestKind::History => msgid::HISTORY,
            RequestKind::Members => msgid::MEMBERS,
        }
    }

    /// Whether the request needs a logged-in session (everything but LOGIN and REG).
    pub fn needs_login(self) -> bool {
        match self {
            RequestKind::Login | RequestKind::Register => false,
            RequestKind::Logout
            | RequestKind::OneChat
            | RequestKind::AddFriend
            | RequestKind::CreateGroup
            | RequestKind::AddGroup
            | RequestKind::GroupChat
            | RequestKind::Recv
            | RequestKind::History
            | RequestKind::Members => true,
        }
    }
}

/// A request message: its kind, parsed from and encoded to the same JSON object.
pub trait Request: Serialize + DeserializeOwned {
    /// Which request this is.
    const KIND: RequestKind;

    /// The JSON object on the wire, with its `msgid` (and no `reqid`: see
    /// [`crate::reply::echo_reqid`] for how the server echoes one, and the client's
    /// `request` for how it adds one).
    fn encode(&self) -> Value {
        let mut v = serde_json::to_value(self).expect("a request serialises");
        v["msgid"] = Self::KIND.msgid().into();
        v
    }

    /// Parses a request frame, then [`check`](Self::check)s it; the error names the bad or
    /// missing field.
    fn parse(frame: &[u8]) -> Result<Self, String> {
        let req: Self = serde_json::from_slice(frame).map_err(|e| {
            let msg = e.to_string();
            msg.split(" at line").next().unwrap_or(&msg).to_string()
        })?;
        req.check()?;
        Ok(req)
    }

    /// What the types cannot say (one of two fields, a non-negative number…); the error names
    /// the field. Nothing by default.
    fn check(&self) -> Result<(), String> {
        Ok(())
    }
}

/// The longest `cmid` (client message id) a chat may carry, in bytes.
pub const MAX_CMID_BYTES: usize = 64;

/// HISTORY's page size when the request gives no `limit`.
pub const HISTORY_DEFAULT_LIMIT: u32 = 50;
/// HISTORY's largest page; a larger `limit` is lowered to it.
pub const HISTORY_MAX_LIMIT: u32 = 200;
/// MEMBERS' page size when the request gives no `limit`.
pub const MEMBERS_DEFAULT_LIMIT: u32 = 200;
/// MEMBERS' largest page; a larger `limit` is lowered to it.
pub const MEMBERS_MAX_LIMIT: u32 = 1000;

fn is_false(b: &bool) -> bool {
    !*b
}

/// `cmid`, when given, is at most [`MAX_CMID_BYTES`] long.
fn check_cmid(cmid: &Option<String>) -> Result<(), String> {
    match cmid {
        Some(c) if c.len() > MAX_CMID_BYTES => Err(format!(
            "field `cmid` must be at most {MAX_CMID_BYTES} bytes, got {}",
            c.len()
        )),
        _ => Ok(()),
    }
}

/// A conversation named by exactly one of `peer` and `groupid`.
fn check_conversation(peer: Option<UserId>, groupid: Option<GroupId>) -> Result<(), String> {
    match (peer, groupid) {
        (Some(_), None) | (None, Some(_)) => Ok(()),
        (None, None) => Err("missing field `peer` or `groupid` (one of them)".into()),
        (Some(_), Some(_)) => Err("fields `peer` and `groupid` exclude each other".into()),
    }
}

/// A seq field (`seq`, `before`) is not negative.
fn check_seq(value: i64, field: &str) -> Result<(), String> {
    if value < 0 {
        Err(format!("field `{field}` must not be negative, got {value}"))
    } else {
        Ok(())
    }
}

/// A page size: `limit` or the default, at least 1 and at most `max`.
fn page(limit: Option<u32>, default: u32, max: u32) -> u32 {
    limit.unwrap_or(default).clamp(1, max)
}

/// LOGIN (1): `{"msgid":1,"id":..,"password":".."}`, or (new) `"name"` in place of `"id"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Login {
    /// Account id (the original's way; exactly one of `id` and `name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<UserId>,
    /// Account name (new), compared case-insensitively as at registration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Plain password, hashed and compared by the server.
    pub password: String,
    /// A sync session (new): LOGIN_ACK carries no offline messages and group member counts
    /// instead of members; the stored messages follow, then SYNC_DONE. Absent: false.
    #[serde(default, skip_serializing_if = "is_false")]
    pub sync: bool,
    /// Takeover (new): if the account is online elsewhere, end that session (it gets KICKED
    /// and is closed) instead of failing with errno 2. Absent: false.
    #[serde(default, skip_serializing_if = "is_false")]
    pub takeover: bool,
}

impl Request for Login {
    const KIND: RequestKind = RequestKind::Login;

    fn check(&self) -> Result<(), String> {
        match (&self.id, &self.name) {
            (Some(_), None) | (None, Some(_)) => Ok(()),
            (None, None) => Err("missing field `id` or `name` (one of them)".into()),
            (Some(_), Some(_)) => Err("fields `id` and `name` exclude each other".into()),
        }
    }
}

/// LOGOUT (3): `{"msgid":3,"id":..}`; the socket stays open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Logout {
    /// The user as the client names itself (ignored: the session's user logs out).
    #[serde(default)]
    pub id: UserId,
}

impl Request for Logout {
    const KIND: RequestKind = RequestKind::Logout;
}

/// REG (4): `{"msgid":4,"name":..,"password":..}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Register {
    /// Display name.
    pub name: String,
    /// Plain password; only its argon2 hash is stored.
    pub password: String,
}

impl Request for Register {
    const KIND: RequestKind = RequestKind::Register;
}

/// ONE_CHAT (6): `{"msgid":6,"id":from,"name":..,"toid":..,"msg":..,"time":..}`. The receiver
/// gets this object as sent, with `id` and `name` stamped by the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OneChat {
    /// The sender as the client names itself (the server stamps the session's user).
    #[serde(default)]
    pub id: UserId,
    /// The sender's name as the client gives it (stamped by the server too).
    #[serde(default)]
    pub name: String,
    /// Receiver.
    pub toid: UserId,
    /// The text.
    #[serde(default)]
    pub msg: String,
    /// The sender's clock, `YYYY-MM-DD HH:MM:SS`.
    #[serde(default)]
    pub time: String,
    /// The client's message id (new, at most [`MAX_CMID_BYTES`]): a retry with the same
    /// `cmid` within 24 h is neither stored nor delivered again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmid: Option<String>,
}

impl Request for OneChat {
    const KIND: RequestKind = RequestKind::OneChat;

    fn check(&self) -> Result<(), String> {
        check_cmid(&self.cmid)
    }
}

/// ADD_FRIEND (7): `{"msgid":7,"id":..,"friendid":..}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddFriend {
    /// The user as the client names itself (ignored).
    #[serde(default)]
    pub id: UserId,
    /// The user to add.
    pub friendid: UserId,
}

impl Request for AddFriend {
    const KIND: RequestKind = RequestKind::AddFriend;
}

/// CREATE_GROUP (8): `{"msgid":8,"id":..,"groupname":..,"groupdesc":..}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateGroup {
    /// The user as the client names itself (ignored).
    #[serde(default)]
    pub id: UserId,
    /// Group name (unique, as in the original schema).
    pub groupname: String,
    /// Free-form description.
    #[serde(default)]
    pub groupdesc: String,
}

impl Request for CreateGroup {
    const KIND: RequestKind = RequestKind::CreateGroup;
}

/// ADD_GROUP (9): `{"msgid":9,"id":..,"groupid":..}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddGroup {
    /// The user as the client names itself (ignored).
    #[serde(default)]
    pub id: UserId,
    /// The group to join.
    pub groupid: GroupId,
}

impl Request for AddGroup {
    const KIND: RequestKind = RequestKind::AddGroup;
}

/// GROUP_CHAT (10): `{"msgid":10,"id":from,"name":..,"groupid":..,"msg":..,"time":..}`; every
/// other member gets this object as sent, with `id` and `name` stamped by the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupChat {
    /// The sender as the client names itself (the server stamps the session's user).
    #[serde(default)]
    pub id: UserId,
    /// The sender's name as the client gives it (stamped by the server too).
    #[serde(default)]
    pub name: String,
    /// The group.
    pub groupid: GroupId,
    /// The text.
    #[serde(default)]
    pub msg: String,
    /// The sender's clock, `YYYY-MM-DD HH:MM:SS`.
    #[serde(default)]
    pub time: String,
    /// The client's message id (new), as for [`OneChat::cmid`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmid: Option<String>,
}

impl Request for GroupChat {
    const KIND: RequestKind = RequestKind::GroupChat;

    fn check(&self) -> Result<(), String> {
        check_cmid(&self.cmid)
    }
}

/// RECV (14): `{"msgid":14,"peer":..,"seq":..}` or `{"msgid":14,"groupid":..,"seq":..}`. The
/// client has every message of that conversation up to `seq` (cumulative).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recv {
    /// A one-to-one conversation, named by the other party.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<UserId>,
    /// A group conversation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groupid: Option<GroupId>,
    /// The highest seq received (≥ 0).
    pub seq: i64,
}

impl Request for Recv {
    const KIND: RequestKind = RequestKind::Recv;

    fn check(&self) -> Result<(), String> {
        check_conversation(self.peer, self.groupid)?;
        check_seq(self.seq, "seq")
    }
}

/// HISTORY (16): `{"msgid":16,"peer":..}` or `{"msgid":16,"groupid":..}`, optional `before`
/// and `limit`: the stored messages of a conversation before seq `before` (exclusive; absent:
/// the newest), at most `limit` of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// A one-to-one conversation, named by the other party.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<UserId>,
    /// A group conversation (members only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groupid: Option<GroupId>,
    /// Only messages with a lower seq (≥ 0); absent: up to the newest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<i64>,
    /// Page size; see [`History::page_size`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

impl History {
    /// The page size to serve: `limit`, else [`HISTORY_DEFAULT_LIMIT`], within 1 and
    /// [`HISTORY_MAX_LIMIT`].
    pub fn page_size(&self) -> u32 {
        page(self.limit, HISTORY_DEFAULT_LIMIT, HISTORY_MAX_LIMIT)
    }
}

impl Request for History {
    const KIND: RequestKind = RequestKind::History;

    fn check(&self) -> Result<(), String> {
        check_conversation(self.peer, self.groupid)?;
        match self.before {
            Some(before) => check_seq(before, "before"),
            None => Ok(()),
        }
    }
}

/// MEMBERS (18): `{"msgid":18,"groupid":..}`, optional `after` and `limit`: a group's members
/// with an id above `after`, by id, at most `limit` of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Members {
    /// The group (members only).
    pub groupid: GroupId,
    /// Only members with a higher id; absent: from the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<UserId>,
    /// Page size; see [`Members::page_size`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

impl Members {
    /// The page size to serve: `limit`, else [`MEMBERS_DEFAULT_LIMIT`], within 1 and
    /// [`MEMBERS_MAX_LIMIT`].
    pub fn page_size(&self) -> u32 {
        page(self.limit, MEMBERS_DEFAULT_LIMIT, MEMBERS_MAX_LIMIT)
    }
}

impl Request for Members {
    const KIND: RequestKind = RequestKind::Members;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_request_msgid_maps_back_to_its_kind() {
        for id in -1..30 {
            if let Some(kind) = RequestKind::from_msgid(id) {
                assert_eq!(kind.msgid(), id);
            }
        }
        let known: Vec<_> = (0..30).filter_map(RequestKind::from_msgid).collect();
        assert_eq!(known.len(), 11);
        let open: Vec<_> = known.iter().filter(|k| !k.needs_login()).collect();
        assert_eq!(open, [&RequestKind::Login, &RequestKind::Register]);
        assert_eq!(RequestKind::from_msgid(msgid::ACK), None);
    }

    #[test]
    fn encode_then_parse_is_the_identity() {
        let chat = OneChat {
            id: 1,
            name: "alice".into(),
            toid: 2,
            msg: "hi \"there\"".into(),
            time: "2026-01-01 10:00:00".into(),
            cmid: None,
        };
        let v = chat.encode();
        assert_eq!(v["msgid"], 6);
        assert_eq!(OneChat::parse(v.to_string().as_bytes()).unwrap(), chat);
        let group = CreateGroup {
            id: 1,
            groupname: "g".into(),
            groupdesc: String::new(),
        };
        let v = group.encode();
        assert_eq!(
            (v["msgid"].as_i64(), v["groupname"].as_str()),
            (Some(8), Some("g"))
        );
        assert_eq!(CreateGroup::parse(v.to_string().as_bytes()).unwrap(), group);
    }

    #[test]
    fn untrusted_fields_default_and_errors_name_the_field() {
        let f = AddFriend::parse(br#"{"msgid":7,"friendid":5}"#).unwrap();
        assert_eq!((f.id, f.friendid), (0, 5));
        let e = Login::parse(br#"{"msgid":1,"id":"x","password":"p"}"#).unwrap_err();
        assert!(e.contains("invalid type"), "{e}");
        let e = AddGroup::parse(br#"{"msgid":9}"#).unwrap_err();
        assert!(e.contains("groupid"), "{e}");
    }

    #[test]
    fn login_sync_is_sent_only_when_true() {
        let mut login = Login {
            id: Some(1),
            name: None,
            password: "pw".into(),
            sync: false,
            takeover: false,
        };
        assert_eq!(
            login.encode(),
            serde_json::json!({"msgid": 1, "id": 1, "password": "pw"})
        );
        assert!(
            !Login::parse(br#"{"msgid":1,"id":1,"password":"pw"}"#)
                .unwrap()
                .sync
        );
        login.sync = true;
        let v = login.encode();
        assert_eq!(v["sync"], true);
        assert_eq!(Login::parse(v.to_string().as_bytes()).unwrap(), login);
        assert!(v.get("takeover").is_none());
        login.takeover = true;
        let v = login.encode();
        assert_eq!(v["takeover"], true);
        assert_eq!(Login::parse(v.to_string().as_bytes()).unwrap(), login);
    }

    #[test]
    fn login_names_the_account_by_id_or_by_name() {
        let by_name = Login::parse(br#"{"msgid":1,"name":"Alice","password":"pw"}"#).unwrap();
        assert_eq!((by_name.id, by_name.name.as_deref()), (None, Some("Alice")));
        assert_eq!(
            by_name.encode(),
            serde_json::json!({"msgid": 1, "name": "Alice", "password": "pw"})
        );
        let e = Login::parse(br#"{"msgid":1,"password":"pw"}"#).unwrap_err();
        assert!(e.contains("`id` or `name`"), "{e}");
        let e = Login::parse(br#"{"msgid":1,"id":1,"name":"a","password":"pw"}"#).unwrap_err();
        assert!(e.contains("exclude"), "{e}");
    }

    #[test]
    fn cmid_is_sent_only_when_given_and_at_most_64_bytes() {
        let mut chat = GroupChat {
            id: 1,
            name: String::new(),
            groupid: 3,
            msg: "hi".into(),
            time: String::new(),
            cmid: None,
        };
        assert!(chat.encode().get("cmid").is_none());
        chat.cmid = Some("c".repeat(MAX_CMID_BYTES));
        let v = chat.encode();
        assert_eq!(v["cmid"].as_str().map(str::len), Some(64));
        assert_eq!(GroupChat::parse(v.to_string().as_bytes()).unwrap(), chat);
        let long = serde_json::json!({"msgid": 6, "toid": 2, "msg": "x", "cmid": "é".repeat(33)});
        let e = OneChat::parse(long.to_string().as_bytes()).unwrap_err();
        assert!(e.contains("`cmid`") && e.contains("66"), "{e}");
        let e = OneChat::parse(br#"{"msgid":6,"toid":2,"cmid":7}"#).unwrap_err();
        assert!(e.contains("invalid type"), "{e}");
    }

    #[test]
    fn recv_names_exactly_one_conversation_and_a_seq() {
        let r = Recv {
            peer: Some(2),
            groupid: None,
            seq: 9,
        };
        assert_eq!(
            r.encode(),
            serde_json::json!({"msgid": 14, "peer": 2, "seq": 9})
        );
        assert_eq!(Recv::parse(r.encode().to_string().as_bytes()).unwrap(), r);
        let g = Recv::parse(br#"{"msgid":14,"groupid":4,"seq":0}"#).unwrap();
        assert_eq!((g.peer, g.groupid, g.seq), (None, Some(4), 0));
        for (bad, field) in [
            (&br#"{"msgid":14,"seq":1}"#[..], "`peer` or `groupid`"),
            (
                br#"{"msgid":14,"peer":2,"groupid":4,"seq":1}"#,
                "`peer` and `groupid`",
            ),
            (br#"{"msgid":14,"peer":2,"seq":-1}"#, "`seq`"),
            (br#"{"msgid":14,"peer":2}"#, "`seq`"),
        ] {
            let e = Recv::parse(bad).unwrap_err();
            assert!(e.contains(field), "{e}");
        }
    }

    #[test]
    fn history_shape_checks_and_page_size() {
        let h = History {
            peer: None,
            groupid: Some(3),
            before: Some(120),
            limit: Some(20),
        };
        assert_eq!(
            h.encode(),
            serde_json::json!({"msgid": 16, "groupid": 3, "before": 120, "limit": 20})
        );
        assert_eq!(
            History::parse(h.encode().to_string().as_bytes()).unwrap(),
            h
        );
        let bare = History::parse(br#"{"msgid":16,"peer":2}"#).unwrap();
        assert_eq!(bare.encode(), serde_json::json!({"msgid": 16, "peer": 2}));
        assert_eq!(bare.page_size(), HISTORY_DEFAULT_LIMIT);
        let big = History::parse(br#"{"msgid":16,"peer":2,"limit":5000}"#).unwrap();
        assert_eq!(big.page_size(), HISTORY_MAX_LIMIT);
        let zero = History::parse(br#"{"msgid":16,"peer":2,"limit":0}"#).unwrap();
        assert_eq!(zero.page_size(), 1);
        let e = History::parse(br#"{"msgid":16,"peer":2,"before":-5}"#).unwrap_err();
        assert!(e.contains("`before`"), "{e}");
        let e = History::parse(br#"{"msgid":16}"#).unwrap_err();
        assert!(e.contains("`peer` or `groupid`"), "{e}");
        let e = History::parse(br#"{"msgid":16,"peer":2,"groupid":3}"#).unwrap_err();
        assert!(e.contains("`peer` and `groupid`"), "{e}");
    }

    #[test]
    fn members_shape_and_page_size() {
        let m = Members {
            groupid: 3,
            after: Some(17),
            limit: None,
        };
        assert_eq!(
            m.encode(),
            serde_json::json!({"msgid": 18, "groupid": 3, "after": 17})
        );
        assert_eq!(
            Members::parse(m.encode().to_string().as_bytes()).unwrap(),
            m
        );
        assert_eq!(m.page_size(), MEMBERS_DEFAULT_LIMIT);
        let big = Members::parse(br#"{"msgid":18,"groupid":3,"limit":100000}"#).unwrap();
        assert_eq!(big.page_size(), MEMBERS_MAX_LIMIT);
        let e = Members::parse(br#"{"msgid":18}"#).unwrap_err();
        assert!(e.contains("groupid"), "{e}");
    }
}
