//! The replies: LOGIN_ACK (encoded by the server, decoded by the clients, side by side), the
//! ACK and ERROR shapes, and the one place that echoes a request's `reqid`; for the message
//! log, the sync session's LOGIN_ACK ([`SyncLoginAck`]), SYNC_DONE, HISTORY_ACK and MEMBERS_ACK.
//!
//! The login reply keeps the original's odd shape: `friends`, `groups` (with nested `users`)
//! and `offlinemsg` are lists of JSON-encoded *strings*. Decoding is lenient (a plain object is
//! accepted too, unreadable entries are skipped) because a client should show what it can
//! rather than fail on a slightly different server.

use crate::{msgid, GroupId, UserId};
use serde_json::value::RawValue;
use serde_json::{json, Value};

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

/// A successful LOGIN_ACK (2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoginAck {
    /// The logged-in user's id.
    pub id: UserId,
    /// The logged-in user's name.
    pub name: String,
    /// Friends with their state.
    pub friends: Vec<UserInfo>,
    /// Groups with their members and roles.
    pub groups: Vec<GroupInfo>,
    /// Messages received while offline: each the chat frame's JSON text, oldest first.
    pub offline: Vec<String>,
}

impl UserInfo {
    /// The original's `User` JSON object (`id`, `name`, `state`).
    pub fn encode(&self) -> Value {
        json!({"id": self.id, "name": self.name, "state": self.state})
    }

    /// Reads a `User` object; `None` without an integer `id`.
    pub fn decode(v: &Value) -> Option<UserInfo> {
        Some(UserInfo {
            id: v["id"].as_i64()?,
            name: text(&v["name"]),
            state: text(&v["state"]),
        })
    }
}

impl MemberInfo {
    /// The original's member JSON object (`id`, `name`, `state`, `role`).
    pub fn encode(&self) -> Value {
        let mut v = self.user.encode();
        v["role"] = self.role.as_str().into();
        v
    }

    /// Reads a member object; `None` without an integer `id`.
    pub fn decode(v: &Value) -> Option<MemberInfo> {
        Some(MemberInfo {
            user: UserInfo::decode(v)?,
            role: text(&v["role"]),
        })
    }
}

impl GroupInfo {
    /// The original's group JSON: `users` is a list of JSON-encoded member strings.
    pub fn encode(&self) -> Value {
        let users: Vec<String> = self.users.iter().map(|m| m.encode().to_string()).collect();
        json!({"id": self.id, "groupname": self.name, "groupdesc": self.desc, "users": users})
    }

    /// Reads a group object; `None` without an integer `id`.
    pub fn decode(v: &Value) -> Option<GroupInfo> {
        let users = v["users"].as_array().map(Vec::as_slice).unwrap_or_default();
        Some(GroupInfo {
            id: v["id"].as_i64()?,
            name: text(&v["groupname"]),
            desc: text(&v["groupdesc"]),
            users: users
                .iter()
                .map(unstring)
                .filter_map(|m| MemberInfo::decode(&m))
                .collect(),
        })
    }
}

/// A successful LOGIN_ACK as the original builds it: `friends`, `groups` and `offlinemsg` are
/// lists of JSON-encoded strings.
fn login_ack(
    id: UserId,
    name: &str,
    friends: &[UserInfo],
    groups: impl Iterator<Item = Value>,
    offline: &[String],
) -> Value {
    let friends: Vec<String> = friends.iter().map(|f| f.encode().to_string()).collect();
    let groups: Vec<String> = groups.map(|g| g.to_string()).collect();
    json!({
        "msgid": msgid::LOGIN_ACK, "errno": 0, "id": id, "name": name,
        "friends": friends, "groups": groups, "offlinemsg": offline,
    })
}

impl LoginAck {
    /// The reply exactly as the original builds it.
    pub fn encode(&self) -> Value {
        login_ack(
            self.id,
            &self.name,
            &self.friends,
            self.groups.iter().map(|g| g.encode()),
            &self.offline,
        )
    }

    /// Reads a successful LOGIN_ACK, leniently (see the module docs).
    pub fn decode(v: &Value) -> LoginAck {
        let offline = v["offlinemsg"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        LoginAck {
            id: v["id"].as_i64().unwrap_or(0),
            name: text(&v["name"]),
            friends: list(v, "friends")
                .iter()
                .filter_map(UserInfo::decode)
                .collect(),
            groups: list(v, "groups")
                .iter()
                .filter_map(GroupInfo::decode)
                .collect(),
            offline: offline.iter().map(text).collect(),
        }
    }
}

/// A group as a sync session's LOGIN_ACK lists it: like [`GroupInfo`], with the number of
/// members instead of the members (MEMBERS pages through them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSummary {
    /// Group id.
    pub id: GroupId,
    /// Group name.
    pub name: String,
    /// Group description.
    pub desc: String,
    /// How many members the group has.
    pub members: u64,
}

impl GroupSummary {
    /// `{"id","groupname","groupdesc","members"}` (the keys of [`GroupInfo`]).
    pub fn encode(&self) -> Value {
        json!({"id": self.id, "groupname": self.name, "groupdesc": self.desc, "members": self.members})
    }

    /// Reads a group summary; `None` without an integer `id` (a missing count reads as 0).
    pub fn decode(v: &Value) -> Option<GroupSummary> {
        Some(GroupSummary {
            id: v["id"].as_i64()?,
            name: text(&v["groupname"]),
            desc: text(&v["groupdesc"]),
            members: v["members"].as_u64().unwrap_or(0),
        })
    }
}

/// A successful LOGIN_ACK (2) to a sync login (`"sync":true`): the original's shape (lists of
/// JSON-encoded strings), with [`GroupSummary`] groups and an empty `offlinemsg` (the stored
/// messages follow as ordinary chat frames, then SYNC_DONE).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncLoginAck {
    /// The logged-in user's id.
    pub id: UserId,
    /// The logged-in user's name.
    pub name: String,
    /// Friends with their state.
    pub friends: Vec<UserInfo>,
    /// Groups with their member counts.
    pub groups: Vec<GroupSummary>,
}

impl SyncLoginAck {
    /// `{"msgid":2,"errno":0,"id","name","friends","groups","offlinemsg":[]}`.
    pub fn encode(&self) -> Value {
        login_ack(
            self.id,
            &self.name,
            &self.friends,
            self.groups.iter().map(|g| g.encode()),
            &[],
        )
    }

    /// Reads a successful sync LOGIN_ACK, leniently (see the module docs).
    pub fn decode(v: &Value) -> SyncLoginAck {
        SyncLoginAck {
            id: v["id"].as_i64().unwrap_or(0),
            name: text(&v["name"]),
            friends: list(v, "friends")
                .iter()
                .filter_map(UserInfo::decode)
                .collect(),
            groups: list(v, "groups")
                .iter()
                .filter_map(GroupSummary::decode)
                .collect(),
        }
    }
}

/// A HISTORY_ACK (17): a page of one conversation's stored messages.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryAck {
    /// The one-to-one conversation asked for (the other party), or `None`.
    pub peer: Option<UserId>,
    /// The group conversation asked for, or `None`.
    pub groupid: Option<GroupId>,
    /// The stored chat frames (6 or 10), each with its `seq`, oldest first.
    pub messages: Vec<Value>,
    /// Whether older messages remain (ask again with `before` = the first message's seq).
    pub more: bool,
}

impl HistoryAck {
    /// `{"msgid":17,"peer"|"groupid","messages":[..],"more":..}`.
    pub fn encode(&self) -> Value {
        let mut v = json!({"msgid": msgid::HISTORY_ACK});
        if let Some(peer) = self.peer {
            v["peer"] = peer.into();
        }
        if let Some(g) = self.groupid {
            v["groupid"] = g.into();
        }
        v["messages"] = Value::Array(self.messages.clone());
        v["more"] = self.more.into();
        v
    }

    /// Reads a HISTORY_ACK; `None` if it is not one (wrong msgid, `messages` not a list).
    /// Messages sent as JSON-encoded strings are decoded too.
    pub fn decode(v: &Value) -> Option<HistoryAck> {
        if v["msgid"] != msgid::HISTORY_ACK {
            return None;
        }
        Some(HistoryAck {
            peer: v["peer"].as_i64(),
            groupid: v["groupid"].as_i64(),
            messages: v["messages"].as_array()?.iter().map(unstring).collect(),
            more: v["more"].as_bool().unwrap_or(false),
        })
    }
}

/// A MEMBERS_ACK (19): a page of a group's members, by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembersAck {
    /// The group.
    pub groupid: GroupId,
    /// Members with their state and role, ordered by id.
    pub users: Vec<MemberInfo>,
    /// Whether more members follow (ask again with `after` = the last user's id).
    pub more: bool,
}

impl MembersAck {
    /// `{"msgid":19,"groupid","users":[{"id","name","state","role"},..],"more":..}`; the users
    /// are plain objects (not the login reply's encoded strings).
    pub fn encode(&self) -> Value {
        let users: Vec<Value> = self.users.iter().map(MemberInfo::encode).collect();
        json!({"msgid": msgid::MEMBERS_ACK, "groupid": self.groupid, "users": users, "more": self.more})
    }

    /// Reads a MEMBERS_ACK; `None` if it is not one (wrong msgid, no integer `groupid`).
    /// Unreadable users are skipped; JSON-encoded strings are decoded.
    pub fn decode(v: &Value) -> Option<MembersAck> {
        if v["msgid"] != msgid::MEMBERS_ACK {
            return None;
        }
        Some(MembersAck {
            groupid: v["groupid"].as_i64()?,
            users: list(v, "users")
                .iter()
                .filter_map(MemberInfo::decode)
                .collect(),
            more: v["more"].as_bool().unwrap_or(false),
        })
    }
}

/// SYNC_DONE (15): the end of a sync login's backlog, `count` messages long.
pub fn sync_done(count: u64) -> Value {
    json!({"msgid": msgid::SYNC_DONE, "count": count})
}

/// The entries of list `key` of `v`, each decoded from its JSON string if it is one.
fn list(v: &Value, key: &str) -> Vec<Value> {
    v[key]
        .as_array()
        .map(|a| a.iter().map(unstring).collect())
        .unwrap_or_default()
}

/// A list entry: a JSON-encoded string is decoded, anything else is taken as is.
fn unstring(v: &Value) -> Value {
    match v {
        Value::String(s) => serde_json::from_str(s).unwrap_or_else(|_| v.clone()),
        _ => v.clone(),
    }
}

/// A field as text: strings as they are, null as empty, anything else as JSON.
pub fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A LOGIN_ACK or REG_ACK failure in the original's shape (`errno`, `errmsg`).
pub fn ack_error(ack_msgid: i64, errno: i64, errmsg: &str) -> Value {
    json!({"msgid": ack_msgid, "errno": errno, "errmsg": errmsg})
}

/// An ERROR (13) reply; `request` is the failed request's msgid when it was readable.
pub fn error(errno: i64, errmsg: &str, request: Option<i64>, reqid: Option<&RawValue>) -> Value {
    let mut v = json!({"msgid": msgid::ERROR, "errno": errno, "errmsg": errmsg});
    if let Some(r) = request {
        v["request"] = json!(r);
    }
    echo_reqid(&mut v, reqid);
    v
}

/// An ACK (12) for request `request` that carried `reqid`.
pub fn ack(request: i64, reqid: &RawValue) -> Value {
    let mut v = json!({"msgid": msgid::ACK, "errno": 0, "request": request});
    echo_reqid(&mut v, Some(reqid));
    v
}

/// An ACK (12) for a chat (`request` 6 or 10) that carried `reqid`: with the message's `seq`
/// and, for a group chat, its `groupid`.
pub fn ack_seq(request: i64, reqid: &RawValue, seq: i64, groupid: Option<GroupId>) -> Value {
    let mut v = json!({"msgid": msgid::ACK, "errno": 0, "request": request, "seq": seq});
    if let Some(g) = groupid {
        v["groupid"] = g.into();
    }
    echo_reqid(&mut v, Some(reqid));
    v
}

/// Copies a request's `reqid`, verbatim, into its reply (JSON-RPC style). The only place a
/// reply gets its `reqid`.
pub fn echo_reqid(reply: &mut Value, reqid: Option<&RawValue>) {
    if let Some(raw) = reqid {
        reply["reqid"] = serde_json::from_str(raw.get()).unwrap_or(Value::Null);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> UserInfo {
        UserInfo {
            id: 1,
            name: "alice".into(),
            state: "online".into(),
        }
    }

    #[test]
    fn login_ack_round_trips_through_the_original_encoding() {
        let g = GroupInfo {
            id: 3,
            name: "rust".into(),
            desc: "all about rust".into(),
            users: vec![MemberInfo {
                user: alice(),
                role: "creator".into(),
            }],
        };
        let ack = LoginAck {
            id: 1,
            name: "alice".into(),
            friends: vec![alice()],
            groups: vec![g],
            offline: vec![r#"{"msgid":6,"msg":"x"}"#.into()],
        };
        let v = ack.encode();
        assert!(v["friends"][0].is_string() && v["groups"][0].is_string());
        assert_eq!(LoginAck::decode(&v), ack);
    }

    #[test]
    fn reqid_is_echoed_verbatim() {
        let raw = RawValue::from_string(r#"{"n":[1,"x"]}"#.into()).unwrap();
        assert_eq!(ack(6, &raw)["reqid"]["n"][1], "x");
        let e = error(106, "no user 9", Some(6), Some(&raw));
        assert_eq!(
            (e["request"].as_i64(), e["reqid"]["n"][0].as_i64()),
            (Some(6), Some(1))
        );
        assert!(error(100, "bad", None, None).get("reqid").is_none());
    }

    #[test]
    fn ack_seq_carries_seq_groupid_and_reqid() {
        let raw = RawValue::from_string("7".into()).unwrap();
        assert_eq!(
            ack_seq(msgid::ONE_CHAT, &raw, 41, None),
            json!({"msgid": 12, "errno": 0, "request": 6, "seq": 41, "reqid": 7})
        );
        assert_eq!(
            ack_seq(msgid::GROUP_CHAT, &raw, 3, Some(9)),
            json!({"msgid": 12, "errno": 0, "request": 10, "seq": 3, "groupid": 9, "reqid": 7})
        );
    }

    #[test]
    fn sync_done_shape() {
        assert_eq!(sync_done(12), json!({"msgid": 15, "count": 12}));
    }

    #[test]
    fn sync_login_ack_shape_and_round_trip() {
        let g = GroupSummary {
            id: 3,
            name: "rust".into(),
            desc: "all about rust".into(),
            members: 2500,
        };
        assert_eq!(
            g.encode(),
            json!({"id": 3, "groupname": "rust", "groupdesc": "all about rust", "members": 2500})
        );
        assert_eq!(GroupSummary::decode(&g.encode()), Some(g.clone()));
        let ack = SyncLoginAck {
            id: 1,
            name: "alice".into(),
            friends: vec![alice()],
            groups: vec![g.clone()],
        };
        let v = ack.encode();
        assert_eq!(
            v,
            json!({
                "msgid": 2, "errno": 0, "id": 1, "name": "alice",
                "friends": [alice().encode().to_string()],
                "groups": [g.encode().to_string()],
                "offlinemsg": [],
            })
        );
        assert_eq!(SyncLoginAck::decode(&v), ack);
        // A legacy reader still sees the friends and the groups (with no users).
        let legacy = LoginAck::decode(&v);
        assert_eq!((legacy.friends.len(), legacy.groups[0].id), (1, 3));
        assert!(legacy.groups[0].users.is_empty() && legacy.offline.is_empty());
    }

    #[test]
    fn history_ack_shape_and_round_trip() {
        let m = json!({"msgid": 10, "id": 2, "name": "bob", "groupid": 3, "msg": "hi",
                       "time": "2026-11-27 05:02:46", "seq": 7});
        let ack = HistoryAck {
            peer: None,
            groupid: Some(3),
            messages: vec![m.clone()],
            more: true,
        };
        assert_eq!(
            ack.encode(),
            json!({"msgid": 17, "groupid": 3, "messages": [m], "more": true})
        );
        assert_eq!(HistoryAck::decode(&ack.encode()), Some(ack));
        let peer = HistoryAck {
            peer: Some(2),
            groupid: None,
            messages: vec![],
            more: false,
        };
        assert_eq!(
            peer.encode(),
            json!({"msgid": 17, "peer": 2, "messages": [], "more": false})
        );
        assert_eq!(HistoryAck::decode(&peer.encode()), Some(peer));
        assert_eq!(HistoryAck::decode(&json!({"msgid": 12})), None);
    }

    #[test]
    fn members_ack_shape_and_round_trip() {
        let ack = MembersAck {
            groupid: 3,
            users: vec![MemberInfo {
                user: alice(),
                role: "creator".into(),
            }],
            more: false,
        };
        assert_eq!(
            ack.encode(),
            json!({"msgid": 19, "groupid": 3, "more": false, "users": [
                {"id": 1, "name": "alice", "state": "online", "role": "creator"}]})
        );
        assert_eq!(MembersAck::decode(&ack.encode()), Some(ack));
        assert_eq!(MembersAck::decode(&json!({"msgid": 19})), None);
    }
}
