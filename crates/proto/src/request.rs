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
            | RequestKind::GroupChat => true,
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

    /// Parses a request frame; the error names the bad or missing field.
    fn parse(frame: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(frame).map_err(|e| {
            let msg = e.to_string();
            msg.split(" at line").next().unwrap_or(&msg).to_string()
        })
    }
}

/// LOGIN (1): `{"msgid":1,"id":..,"password":".."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Login {
    /// Account id.
    pub id: UserId,
    /// Plain password, hashed and compared by the server.
    pub password: String,
}

impl Request for Login {
    const KIND: RequestKind = RequestKind::Login;
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
}

impl Request for OneChat {
    const KIND: RequestKind = RequestKind::OneChat;
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
}

impl Request for GroupChat {
    const KIND: RequestKind = RequestKind::GroupChat;
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
        assert_eq!(known.len(), 8);
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
}
