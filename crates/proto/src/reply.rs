//! The replies: LOGIN_ACK (encoded by the server, decoded by the clients, side by side), the
//! ACK and ERROR shapes, and the one place that echoes a request's `reqid`.
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

impl GroupInfo {
    /// The original's group JSON: `users` is a list of JSON-encoded member strings.
    pub fn encode(&self) -> Value {
        let users: Vec<String> = self
            .users
            .iter()
            .map(|m| {
                let mut v = m.user.encode();
                v["role"] = m.role.as_str().into();
                v.to_string()
            })
            .collect();
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
                .filter_map(|m| {
                    Some(MemberInfo {
                        user: UserInfo::decode(&m)?,
                        role: text(&m["role"]),
                    })
                })
                .collect(),
        })
    }
}

impl LoginAck {
    /// The reply exactly as the original builds it.
    pub fn encode(&self) -> Value {
        let friends: Vec<String> = self
            .friends
            .iter()
            .map(|f| f.encode().to_string())
            .collect();
        let groups: Vec<String> = self.groups.iter().map(|g| g.encode().to_string()).collect();
        json!({
            "msgid": msgid::LOGIN_ACK, "errno": 0, "id": self.id, "name": self.name,
            "friends": friends, "groups": groups, "offlinemsg": self.offline,
        })
    }

    /// Reads a successful LOGIN_ACK, leniently (see the module docs).
    pub fn decode(v: &Value) -> LoginAck {
        let list = |key: &str| -> Vec<Value> {
            v[key]
                .as_array()
                .map(|a| a.iter().map(unstring).collect())
                .unwrap_or_default()
        };
        let offline = v["offlinemsg"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        LoginAck {
            id: v["id"].as_i64().unwrap_or(0),
            name: text(&v["name"]),
            friends: list("friends")
                .iter()
                .filter_map(UserInfo::decode)
                .collect(),
            groups: list("groups")
                .iter()
                .filter_map(GroupInfo::decode)
                .collect(),
            offline: offline.iter().map(text).collect(),
        }
    }
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
}
