//! Turning server frames into human lines.
//!
//! Everything here is pure (JSON in, strings out) so the wording can be tested without a
//! server. Every name and text from the server is shown through [`escape`](crate::escape):
//! never a raw control character. The login reply is decoded by [`LoginAck::decode`] (leniently: see
//! [`clusterchat_proto::reply`]).

use crate::command::Conv;
use crate::escape;
use clusterchat_proto::reply::text;
use clusterchat_proto::{
    GroupId, GroupInfo, HistoryAck, LoginAck, MemberInfo, MembersAck, UserId, UserInfo,
};
use serde_json::Value;
use std::collections::HashMap;

/// A chat (msgid 6) or group chat (msgid 10) frame as one line, `None` for other frames.
/// The sender's name and the time are the ones the frame carries.
pub fn chat_line(v: &Value) -> Option<String> {
    let time = match v["time"].as_str() {
        Some(t) if !t.is_empty() => format!("[{}] ", escape::name(t)),
        _ => String::new(),
    };
    let from = format!(
        "{}({})",
        escape::name(&text(&v["name"])),
        escape::name(&text(&v["id"]))
    );
    let msg = text(&v["msg"]);
    let msg = escape::text(&msg);
    match v["msgid"].as_i64()? {
        6 => Some(format!("{time}{from} says: {msg}")),
        10 => Some(format!(
            "{time}group {}: {from} says: {msg}",
            escape::name(&text(&v["groupid"]))
        )),
        _ => None,
    }
}

/// The friends list, one indented line each, or a note that there are none.
pub fn friends_lines(friends: &[UserInfo]) -> Vec<String> {
    if friends.is_empty() {
        return vec!["friends: none".into()];
    }
    let mut out = vec!["friends:".to_string()];
    out.extend(friends.iter().map(|f| {
        let (name, state) = (escape::name(&f.name), escape::name(&f.state));
        match (f.name.is_empty(), f.state.is_empty()) {
            (_, false) => format!("  {} {name} [{state}]", f.id),
            // Added in this session: what the client has not seen comes with the next login.
            (false, true) => format!("  {} {name} (added now; state at next login)", f.id),
            (true, true) => format!("  {} (added now; name and state at next login)", f.id),
        }
    }));
    out
}

/// The groups with their members (state and role), or a note that there are none. A group
/// listed without its members (a sync login lists member counts) shows its count from `sizes`.
pub fn groups_lines(groups: &[GroupInfo], sizes: &HashMap<GroupId, u64>) -> Vec<String> {
    if groups.is_empty() {
        return vec!["groups: none".into()];
    }
    let mut out = vec!["groups:".to_string()];
    for g in groups {
        let name = escape::name(&g.name);
        if g.name.is_empty() {
            // Joined by id in this session: the name comes with the next login.
            out.push(format!("  {} (joined now; name at next login)", g.id));
        } else if g.desc.is_empty() {
            out.push(format!("  {} {name}", g.id));
        } else {
            out.push(format!("  {} {name}: {}", g.id, escape::name(&g.desc)));
        }
        out.extend(g.users.iter().map(|m| member_line("    ", m)));
        match sizes.get(&g.id) {
            Some(1) if g.users.is_empty() => out.push("    1 member".into()),
            Some(n) if g.users.is_empty() => out.push(format!("    {n} members")),
            _ => {}
        }
    }
    out
}

/// Everything a successful login shows: who you are, friends, groups (see [`groups_lines`]
/// for `sizes`), offline messages.
pub fn login_lines(info: &LoginAck, sizes: &HashMap<GroupId, u64>) -> Vec<String> {
    let mut out = vec![format!(
        "logged in as {}({})",
        escape::name(&info.name),
        info.id
    )];
    out.extend(friends_lines(&info.friends));
    out.extend(groups_lines(&info.groups, sizes));
    if !info.offline.is_empty() {
        out.push(format!("offline messages ({}):", info.offline.len()));
        out.extend(info.offline.iter().map(|m| {
            let frame = serde_json::from_str::<Value>(m).ok();
            let line = frame
                .as_ref()
                .and_then(chat_line)
                .unwrap_or_else(|| escape::text(m).into_owned());
            format!("  {line}")
        }));
    }
    out
}

/// SYNC_DONE: how many stored messages the sync login sent (nothing to say when none).
pub fn sync_done_line(count: u64) -> Option<String> {
    match count {
        0 => None,
        1 => Some("1 message while you were away".into()),
        n => Some(format!("{n} messages while you were away")),
    }
}

/// A HISTORY_ACK: a header naming the conversation, then each message as [`chat_line`]
/// shows it (indented, oldest first), then whether older ones remain.
pub fn history_lines(conv: Conv, ack: &HistoryAck) -> Vec<String> {
    if ack.messages.is_empty() {
        return vec![format!("history of {conv}: no messages")];
    }
    let mut out = vec![format!("history of {conv} ({}):", ack.messages.len())];
    out.extend(ack.messages.iter().map(|m| {
        let line = chat_line(m).unwrap_or_else(|| m.to_string());
        format!("  {line}")
    }));
    if ack.more {
        out.push("  (older messages remain)".into());
    }
    out
}

/// What a KICKED (22) frame says: its `errmsg`.
pub fn kicked_text(v: &Value) -> String {
    match v["errmsg"].as_str() {
        Some(m) if !m.is_empty() => escape::name(m).into_owned(),
        _ => "the server ended this session".to_string(),
    }
}

/// A user as lines name them: `bob(2)`, or `user 2` when the name is not known.
pub fn who(id: UserId, name: Option<&str>) -> String {
    match name {
        Some(name) if !name.is_empty() => format!("{}({id})", escape::name(name)),
        _ => format!("user {id}"),
    }
}

/// One member: id, name, `[state]` and role, all escaped, after `indent`.
fn member_line(indent: &str, m: &MemberInfo) -> String {
    format!(
        "{indent}{} {} [{}] {}",
        m.user.id,
        escape::name(&m.user.name),
        escape::name(&m.user.state),
        escape::name(&m.role)
    )
}

/// A MEMBERS_ACK: a header naming the group, each member with state and role, then how to
/// ask for the next page when there is one.
pub fn members_lines(ack: &MembersAck) -> Vec<String> {
    let g = ack.groupid;
    let mut out = vec![format!("members of group {g} ({}):", ack.users.len())];
    out.extend(ack.users.iter().map(|m| member_line("  ", m)));
    if let (true, Some(last)) = (ack.more, ack.users.last()) {
        out.push(format!("  (more: members {g} {})", last.user.id));
    }
    out
}

/// The reason an error reply gives: `errmsg (errno N)`.
pub fn error_text(v: &Value) -> String {
    let msg = match v["errmsg"].as_str() {
        Some(m) if !m.is_empty() => escape::name(m).into_owned(),
        _ => "request failed".to_string(),
    };
    format!("{msg} (errno {})", text(&v["errno"]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clusterchat_proto::{GroupSummary, MemberInfo, SyncLoginAck};
    use serde_json::json;

    fn alice() -> UserInfo {
        UserInfo {
            id: 1,
            name: "alice".into(),
            state: "online".into(),
        }
    }

    #[test]
    fn chat_frames_become_one_line() {
        let one =
            json!({"msgid":6,"id":2,"name":"bob","toid":1,"msg":"hi","time":"2026-01-01 10:00:00"});
        assert_eq!(
            chat_line(&one).unwrap(),
            "[2026-01-01 10:00:00] bob(2) says: hi"
        );
        let group = json!({"msgid":10,"id":2,"name":"bob","groupid":3,"msg":"hey","time":"t"});
        assert_eq!(chat_line(&group).unwrap(), "[t] group 3: bob(2) says: hey");
        let no_time = json!({"msgid":6,"id":2,"name":"bob","msg":"x"});
        assert_eq!(chat_line(&no_time).unwrap(), "bob(2) says: x");
        assert_eq!(chat_line(&json!({"msgid":12})), None);
    }

    #[test]
    fn login_reply_round_trips_through_the_original_encoding() {
        let bob = UserInfo {
            id: 2,
            name: "bob".into(),
            state: "offline".into(),
        };
        let g = GroupInfo {
            id: 3,
            name: "rust".into(),
            desc: "all about rust".into(),
            users: vec![
                MemberInfo {
                    user: alice(),
                    role: "creator".into(),
                },
                MemberInfo {
                    user: bob.clone(),
                    role: "normal".into(),
                },
            ],
        };
        let offline =
            json!({"msgid":6,"id":2,"name":"bob","toid":1,"msg":"while you were out","time":"t"})
                .to_string();
        let reply = LoginAck {
            id: 1,
            name: "alice".into(),
            friends: vec![bob.clone()],
            groups: vec![g.clone()],
            offline: vec![offline],
        }
        .encode();
        let info = LoginAck::decode(&reply);
        assert_eq!((info.id, info.name.as_str()), (1, "alice"));
        assert_eq!(info.friends, [bob]);
        assert_eq!(info.groups, [g]);
        assert_eq!(
            login_lines(&info, &HashMap::new()),
            [
                "logged in as alice(1)",
                "friends:",
                "  2 bob [offline]",
                "groups:",
                "  3 rust: all about rust",
                "    1 alice [online] creator",
                "    2 bob [offline] normal",
                "offline messages (1):",
                "  [t] bob(2) says: while you were out",
            ]
        );
    }

    #[test]
    fn empty_and_odd_lists_are_shown_not_fatal() {
        let reply = json!({"msgid":2,"errno":0,"id":1,"name":"alice",
            "friends":[{"id":5,"name":"eve","state":"online"}, "not json"],
            "offlinemsg":["plain text"]});
        let info = LoginAck::decode(&reply);
        assert_eq!(info.friends.len(), 1);
        assert_eq!(
            groups_lines(&info.groups, &HashMap::new()),
            ["groups: none"]
        );
        assert_eq!(friends_lines(&[]), ["friends: none"]);
        assert_eq!(
            login_lines(&info, &HashMap::new()).last().unwrap(),
            "  plain text"
        );
    }

    #[test]
    fn a_sync_login_shows_member_counts() {
        let reply = SyncLoginAck {
            id: 1,
            name: "alice".into(),
            friends: vec![],
            groups: vec![
                GroupSummary {
                    id: 3,
                    name: "rust".into(),
                    desc: "all about rust".into(),
                    members: 2500,
                },
                GroupSummary {
                    id: 4,
                    name: "solo".into(),
                    desc: String::new(),
                    members: 1,
                },
            ],
        }
        .encode();
        let sizes = SyncLoginAck::decode(&reply)
            .groups
            .iter()
            .map(|g| (g.id, g.members))
            .collect();
        assert_eq!(
            login_lines(&LoginAck::decode(&reply), &sizes),
            [
                "logged in as alice(1)",
                "friends: none",
                "groups:",
                "  3 rust: all about rust",
                "    2500 members",
                "  4 solo",
                "    1 member",
            ]
        );
    }

    #[test]
    fn sync_done_and_history() {
        assert_eq!(sync_done_line(0), None);
        assert_eq!(sync_done_line(1).unwrap(), "1 message while you were away");
        assert_eq!(sync_done_line(7).unwrap(), "7 messages while you were away");
        let ack = HistoryAck {
            peer: None,
            groupid: Some(3),
            messages: vec![
                json!({"msgid":10,"id":2,"name":"bob","groupid":3,"msg":"hey","time":"t","seq":4}),
                json!({"msgid":10,"id":1,"name":"alice","groupid":3,"msg":"yo","time":"u","seq":5}),
            ],
            more: true,
        };
        assert_eq!(
            history_lines(Conv::Group(3), &ack),
            [
                "history of group 3 (2):",
                "  [t] group 3: bob(2) says: hey",
                "  [u] group 3: alice(1) says: yo",
                "  (older messages remain)",
            ]
        );
        let empty = HistoryAck {
            peer: Some(2),
            groupid: None,
            messages: vec![],
            more: false,
        };
        assert_eq!(
            history_lines(Conv::User(2), &empty),
            ["history of user 2: no messages"]
        );
    }

    #[test]
    fn names_and_messages_from_the_server_never_reach_the_terminal_raw() {
        let evil = "\x1b]0;PWNED\x07\x1b[2J\x1b[31m SYSTEM";
        let chat = json!({"msgid":6,"id":2,"name":evil,"msg":"hi\r\x1b[2Kyou\nthere\tok",
            "time":"t\x1b[1A"});
        assert_eq!(
            chat_line(&chat).unwrap(),
            "[t\\e[1A] \\e]0;PWNED\\x07\\e[2J\\e[31m SYSTEM(2) says: \
             hi\\r\\e[2Kyou\nthere\tok"
        );
        let user = UserInfo {
            id: 3,
            name: "a\u{9b}2J\nb".into(),
            state: "online".into(),
        };
        assert_eq!(
            friends_lines(std::slice::from_ref(&user))[1],
            "  3 a\\u{9b}2J\\nb [online]"
        );
        let g = GroupInfo {
            id: 4,
            name: "g\x07".into(),
            desc: "d\r".into(),
            users: vec![MemberInfo {
                user,
                role: "normal".into(),
            }],
        };
        assert_eq!(
            groups_lines(&[g], &HashMap::new())[1..],
            ["  4 g\\x07: d\\r", "    3 a\\u{9b}2J\\nb [online] normal"]
        );
        let e = json!({"msgid":13,"errno":102,"errmsg":"bad \x1b[2J"});
        assert_eq!(error_text(&e), "bad \\e[2J (errno 102)");
        let k = json!({"msgid":22,"errmsg":"bye\x1b[2J"});
        assert_eq!(kicked_text(&k), "bye\\e[2J");
        assert_eq!(who(2, Some("b\x1b[2Jo\nb")), "b\\e[2Jo\\nb(2)");
        let ack = MembersAck {
            groupid: 3,
            users: vec![MemberInfo {
                user: UserInfo {
                    id: 7,
                    name: "m\x1b]0;x\x07".into(),
                    state: "on\rline".into(),
                },
                role: "cre\u{9b}ator".into(),
            }],
            more: false,
        };
        assert_eq!(
            members_lines(&ack)[1],
            "  7 m\\e]0;x\\x07 [on\\rline] cre\\u{9b}ator"
        );
        for line in login_lines(
            &LoginAck::decode(&json!({"msgid":2,"errno":0,"id":1,"name":evil,
                "offlinemsg":["not json \x1b[2J"]})),
            &HashMap::new(),
        ) {
            assert!(!line.chars().any(char::is_control), "{line:?}");
        }
    }

    #[test]
    fn what_was_added_in_this_session_says_what_is_not_known_yet() {
        let friends = [
            alice(),
            UserInfo {
                id: 5,
                name: "eve".into(),
                state: String::new(),
            },
            UserInfo {
                id: 6,
                name: String::new(),
                state: String::new(),
            },
        ];
        assert_eq!(
            friends_lines(&friends),
            [
                "friends:",
                "  1 alice [online]",
                "  5 eve (added now; state at next login)",
                "  6 (added now; name and state at next login)",
            ]
        );
        let joined = GroupInfo {
            id: 4,
            name: String::new(),
            desc: String::new(),
            users: vec![],
        };
        assert_eq!(
            groups_lines(&[joined], &HashMap::from([(4, 3)])),
            [
                "groups:",
                "  4 (joined now; name at next login)",
                "    3 members"
            ]
        );
    }

    #[test]
    fn members_pages_and_names() {
        let member = |user, role: &str| MemberInfo {
            user,
            role: role.into(),
        };
        let mut ack = MembersAck {
            groupid: 3,
            users: vec![member(alice(), "creator")],
            more: true,
        };
        assert_eq!(
            members_lines(&ack),
            [
                "members of group 3 (1):",
                "  1 alice [online] creator",
                "  (more: members 3 1)"
            ]
        );
        ack.more = false;
        assert_eq!(members_lines(&ack).len(), 2);
        assert_eq!(who(2, Some("bob")), "bob(2)");
        assert_eq!(who(2, None), "user 2");
        assert_eq!(who(2, Some("")), "user 2");
    }

    #[test]
    fn errors_show_message_and_number() {
        let e = json!({"msgid":13,"errno":104,"errmsg":"not logged in"});
        assert_eq!(error_text(&e), "not logged in (errno 104)");
        assert_eq!(error_text(&json!({"errno":1})), "request failed (errno 1)");
    }
}
