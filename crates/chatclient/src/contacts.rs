//! The session user's friends and groups as the client knows them: the login reply's lists,
//! kept current during the session from the replies to its own requests (ADD_FRIEND,
//! CREATE_GROUP, ADD_GROUP, MEMBERS) and from what chat frames tell (a sender's name; a friend
//! whose live message arrives is online).
//!
//! The protocol has no request that lists friends or groups again, and only the session's
//! own user changes them (friendship is one-directional, and nobody else can add you to a
//! group), so these lists stay exact for the session. What they cannot know: the name of a
//! user added as a friend who never showed up in a frame, the name of a group joined by id,
//! and a friend's state after the login reply unless a frame, a PRESENCE push (23: a friend
//! who added you logged in or out) or a MEMBERS page tells it.

use clusterchat_proto::{GroupId, GroupInfo, LoginAck, MembersAck, UserId, UserInfo};
use serde_json::Value;
use std::collections::HashMap;

/// A friend's `state` as the server spells it.
pub const ONLINE: &str = "online";
/// A friend's `state` as the server spells it.
pub const OFFLINE: &str = "offline";

/// Whether an addition changed the lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// It was not there before.
    New,
    /// It was there already (the server says `ok` either way).
    Already,
}

/// Friends, groups, group sizes and the names of users seen in this session.
#[derive(Debug, Default)]
pub struct Contacts {
    friends: Vec<UserInfo>,
    groups: Vec<GroupInfo>,
    /// Member counts: from a sync login reply, a group created here, a whole MEMBERS page.
    sizes: HashMap<GroupId, u64>,
    /// Names of users seen in frames (senders, members), for friends added by id.
    names: HashMap<UserId, String>,
}

impl Contacts {
    /// The lists of a successful login reply, with the member counts of a sync login.
    pub fn from_login(ack: &LoginAck, sizes: HashMap<GroupId, u64>) -> Contacts {
        let mut names: HashMap<UserId, String> = ack
            .groups
            .iter()
            .flat_map(|g| &g.users)
            .map(|m| (m.user.id, m.user.name.clone()))
            .collect();
        names.extend(ack.friends.iter().map(|f| (f.id, f.name.clone())));
        Contacts {
            friends: ack.friends.clone(),
            groups: ack.groups.clone(),
            sizes,
            names,
        }
    }

    /// The friends, in the order the login listed them, then as added.
    pub fn friends(&self) -> &[UserInfo] {
        &self.friends
    }

    /// The groups, in the order the login listed them, then as created or joined.
    pub fn groups(&self) -> &[GroupInfo] {
        &self.groups
    }

    /// Known member counts by group.
    pub fn sizes(&self) -> &HashMap<GroupId, u64> {
        &self.sizes
    }

    /// The friend with this id, if they are one.
    pub fn friend(&self, id: UserId) -> Option<&UserInfo> {
        self.friends.iter().find(|f| f.id == id)
    }

    /// The group with this id, if the user is in it.
    pub fn group(&self, id: GroupId) -> Option<&GroupInfo> {
        self.groups.iter().find(|g| g.id == id)
    }

    /// The name of a user seen in this session, if any.
    pub fn name_of(&self, id: UserId) -> Option<&str> {
        self.names.get(&id).map(String::as_str)
    }

    /// The server accepted ADD_FRIEND for `id`: a new friend gets the name seen in a frame
    /// (or none) and an unknown state (empty) until a frame or the next login tells it.
    pub fn add_friend(&mut self, id: UserId) -> Added {
        if self.friend(id).is_some() {
            return Added::Already;
        }
        self.friends.push(UserInfo {
            id,
            name: self.names.get(&id).cloned().unwrap_or_default(),
            state: String::new(),
        });
        Added::New
    }

    /// The server accepted ADD_GROUP for `id`: a new group is known by its id only (its name
    /// comes with the next login), its size from a MEMBERS page.
    pub fn join_group(&mut self, id: GroupId) -> Added {
        if self.group(id).is_some() {
            return Added::Already;
        }
        self.groups.push(GroupInfo {
            id,
            name: String::new(),
            desc: String::new(),
            users: Vec::new(),
        });
        Added::New
    }

    /// The server created group `id` with the session user as its only member.
    pub fn created_group(&mut self, id: GroupId, name: &str, desc: &str) {
        if self.group(id).is_none() {
            self.groups.push(GroupInfo {
                id,
                name: name.to_string(),
                desc: desc.to_string(),
                users: Vec::new(),
            });
            self.sizes.insert(id, 1);
        }
    }

    /// A chat frame: its sender's name is noted; with `live` (a message that arrived now, not
    /// one of the backlog) a friend who sent it is online.
    pub fn seen_chat(&mut self, frame: &Value, live: bool) {
        let (Some(id), Some(name)) = (frame["id"].as_i64(), frame["name"].as_str()) else {
            return;
        };
        self.learn(id, name, live.then_some(ONLINE));
    }

    /// A PRESENCE push (23): user `id` is now `state`. Returns whether a friend's state
    /// changed.
    pub fn seen_presence(&mut self, id: UserId, state: &str) -> bool {
        if state != ONLINE && state != OFFLINE {
            return false;
        }
        match self.friends.iter_mut().find(|f| f.id == id) {
            Some(f) if f.state != state => {
                f.state = state.to_string();
                true
            }
            _ => false,
        }
    }

    /// A MEMBERS page: names and states of the members; the group's size when the page is
    /// the whole list (the first, with nothing more).
    pub fn seen_members(&mut self, ack: &MembersAck, first_page: bool) {
        for m in &ack.users {
            self.learn(m.user.id, &m.user.name, Some(m.user.state.as_str()));
        }
        if first_page && !ack.more {
            self.sizes.insert(ack.groupid, ack.users.len() as u64);
        }
    }

    /// Notes a user's name (and state, when known) and updates them if they are a friend.
    fn learn(&mut self, id: UserId, name: &str, state: Option<&str>) {
        if name.is_empty() {
            return;
        }
        self.names.insert(id, name.to_string());
        if let Some(f) = self.friends.iter_mut().find(|f| f.id == id) {
            f.name = name.to_string();
            if let Some(state) = state.filter(|s| !s.is_empty()) {
                f.state = state.to_string();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clusterchat_proto::MemberInfo;
    use serde_json::json;

    fn user(id: UserId, name: &str, state: &str) -> UserInfo {
        UserInfo {
            id,
            name: name.into(),
            state: state.into(),
        }
    }

    fn login() -> Contacts {
        let ack = LoginAck {
            id: 1,
            name: "alice".into(),
            friends: vec![user(2, "bob", OFFLINE)],
            groups: vec![GroupInfo {
                id: 3,
                name: "rust".into(),
                desc: String::new(),
                users: vec![],
            }],
            offline: vec![],
        };
        Contacts::from_login(&ack, HashMap::from([(3, 4)]))
    }

    #[test]
    fn additions_say_whether_they_were_there_already() {
        let mut c = login();
        assert_eq!(c.add_friend(2), Added::Already);
        assert_eq!(c.add_friend(5), Added::New);
        assert_eq!(c.add_friend(5), Added::Already);
        assert_eq!(c.friend(5), Some(&user(5, "", "")));
        assert_eq!(c.join_group(3), Added::Already);
        assert_eq!(c.join_group(8), Added::New);
        assert_eq!(c.join_group(8), Added::Already);
        c.created_group(9, "ops", "night shift");
        assert_eq!(c.join_group(9), Added::Already);
        let ids: Vec<GroupId> = c.groups().iter().map(|g| g.id).collect();
        assert_eq!(ids, [3, 8, 9]);
        assert_eq!(c.group(9).unwrap().name, "ops");
        assert_eq!(c.sizes().get(&9), Some(&1));
        assert_eq!(c.sizes().get(&8), None, "unknown until a MEMBERS page");
    }

    #[test]
    fn frames_tell_names_and_presence() {
        let mut c = login();
        let from = |id: i64, name: &str| json!({"msgid":6,"id":id,"name":name,"msg":"x"});
        // A message of the backlog names its sender but says nothing of presence.
        c.seen_chat(&from(2, "bob"), false);
        assert_eq!(c.friend(2).unwrap().state, OFFLINE);
        c.seen_chat(&from(2, "bob"), true);
        assert_eq!(c.friend(2).unwrap().state, ONLINE);
        // A PRESENCE push changes a friend's state (once); others are ignored.
        assert!(c.seen_presence(2, OFFLINE));
        assert!(!c.seen_presence(2, OFFLINE));
        assert!(!c.seen_presence(2, "away"));
        assert!(!c.seen_presence(99, ONLINE), "not a friend");
        assert_eq!(c.friend(2).unwrap().state, OFFLINE);
        // A user seen before they are added as a friend keeps their name.
        c.seen_chat(&from(6, "carol"), true);
        assert!(c.friend(6).is_none());
        c.add_friend(6);
        assert_eq!(c.friend(6), Some(&user(6, "carol", "")));
        // A MEMBERS page gives names and states, and the size of a whole list.
        c.add_friend(7);
        let page = MembersAck {
            groupid: 3,
            users: vec![MemberInfo {
                user: user(7, "dave", OFFLINE),
                role: "normal".into(),
            }],
            more: false,
        };
        c.seen_members(&page, false);
        assert_eq!(c.friend(7), Some(&user(7, "dave", OFFLINE)));
        assert_eq!(c.sizes().get(&3), Some(&4), "not the first page");
        c.seen_members(&page, true);
        assert_eq!(c.sizes().get(&3), Some(&1));
        assert_eq!(c.name_of(7), Some("dave"));
    }
}
