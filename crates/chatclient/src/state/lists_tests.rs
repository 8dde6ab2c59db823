//! Tests of [`super`]: the friends and groups lists, kept current from the replies, and what
//! the acks say with them.

use super::*;

/// Sends `cmd` and answers it with an ACK; returns what the client says.
fn ack(s: &mut ClientState, cmd: Command) -> Vec<String> {
    let req = s.request(&cmd).unwrap();
    let ack = json!({"msgid":12,"errno":0,"request":req["msgid"],"reqid":req["reqid"]});
    s.handle(&ack)
}

/// Alice, logged in with bob (2, offline) as her friend and group 3.
fn with_lists() -> ClientState {
    let mut s = ClientState::new();
    s.request(&Command::Login {
        id: 1,
        password: Some("pw".into()),
        takeover: false,
    });
    s.handle(&json!({"msgid":2,"errno":0,"id":1,"name":"alice",
        "friends":[r#"{"id":2,"name":"bob","state":"offline"}"#],
        "groups":[r#"{"groupdesc":"","groupname":"rust","id":3,"members":2}"#],
        "offlinemsg":[]}));
    s.handle(&json!({"msgid":15,"count":0}));
    s
}

#[test]
fn friends_and_groups_follow_the_acks_of_this_session() {
    let mut s = with_lists();
    assert_eq!(
        ack(&mut s, Command::AddFriend { id: 5 }),
        ["ok: added friend user 5"]
    );
    s.request(&Command::CreateGroup {
        name: "ops".into(),
        desc: "night shift".into(),
    });
    let created = json!({"msgid":11,"errno":0,"groupid":9,"groupname":"ops",
                         "groupdesc":"night shift"});
    assert_eq!(s.handle(&created), ["ok: created group ops with id 9"]);
    assert_eq!(
        ack(&mut s, Command::AddGroup { id: 4 }),
        ["ok: joined group 4"]
    );
    assert_eq!(
        s.local_lines(&Command::Friends).unwrap(),
        [
            "friends:",
            "  2 bob [offline]",
            "  5 (added now; name and state at next login)"
        ]
    );
    assert_eq!(
        s.local_lines(&Command::Groups).unwrap(),
        [
            "groups:",
            "  3 rust",
            "    2 members",
            "  9 ops: night shift",
            "    1 member",
            "  4 (joined now; name at next login)",
        ]
    );
    // A failed request changes nothing.
    let req = s.request(&Command::AddFriend { id: 77 }).unwrap();
    s.handle(&json!({"msgid":13,"errno":106,"errmsg":"no user 77","reqid":req["reqid"]}));
    assert_eq!(s.local_lines(&Command::Friends).unwrap().len(), 3);
    // A MEMBERS page names the new friend and tells their state.
    let req = s
        .request(&Command::Members {
            group: 4,
            after: None,
        })
        .unwrap();
    assert_eq!(req["msgid"], 18);
    assert_eq!(req["groupid"], 4);
    let page = json!({"msgid":19,"groupid":4,"reqid":req["reqid"],"more":false,"users":[
        {"id":1,"name":"alice","state":"online","role":"normal"},
        {"id":5,"name":"eve","state":"online","role":"creator"}]});
    assert_eq!(
        s.handle(&page),
        [
            "members of group 4 (2):",
            "  1 alice [online] normal",
            "  5 eve [online] creator"
        ]
    );
    assert_eq!(
        s.local_lines(&Command::Friends).unwrap()[2],
        "  5 eve [online]"
    );
    assert_eq!(s.local_lines(&Command::Groups).unwrap()[6], "    2 members");
    // Another login starts from its own reply.
    s.handle(&json!({"msgid":2,"errno":0,"id":7,"name":"carol"}));
    assert_eq!(s.local_lines(&Command::Friends).unwrap(), ["friends: none"]);
}

#[test]
fn adding_a_friend_or_joining_a_group_twice_says_already() {
    let mut s = with_lists();
    assert_eq!(
        ack(&mut s, Command::AddFriend { id: 2 }),
        ["ok: bob(2) is already your friend"]
    );
    assert_eq!(
        ack(&mut s, Command::AddGroup { id: 3 }),
        ["ok: already a member of group 3 (rust)"]
    );
    // Added in this session, then again (two requests before either ack, too).
    let first = s.request(&Command::AddFriend { id: 5 }).unwrap();
    let second = s.request(&Command::AddFriend { id: 5 }).unwrap();
    for (req, want) in [
        (first, "ok: added friend user 5"),
        (second, "ok: user 5 is already your friend"),
    ] {
        let reply = json!({"msgid":12,"errno":0,"request":7,"reqid":req["reqid"]});
        assert_eq!(s.handle(&reply), [want]);
    }
    ack(&mut s, Command::AddGroup { id: 4 });
    assert_eq!(
        ack(&mut s, Command::AddGroup { id: 4 }),
        ["ok: already a member of group 4"]
    );
    // The creator of a group is in it.
    let req = s
        .request(&Command::CreateGroup {
            name: "ops".into(),
            desc: String::new(),
        })
        .unwrap();
    s.handle(&json!({"msgid":11,"errno":0,"groupid":9,"reqid":req["reqid"]}));
    assert_eq!(
        ack(&mut s, Command::AddGroup { id: 9 }),
        ["ok: already a member of group 9 (ops)"]
    );
}

#[test]
fn a_chat_to_an_offline_friend_says_it_waits_for_their_login() {
    let mut s = with_lists();
    let chat = |to| Command::Chat {
        to,
        text: "hi".into(),
    };
    assert_eq!(
        ack(&mut s, chat(2)),
        ["ok: stored for bob(2), who was offline when last seen: they get it at their next login"]
    );
    assert_eq!(
        ack(&mut s, chat(8)),
        ["ok: sent to user 8"],
        "state unknown"
    );
    // Bob's live message shows he is online now.
    s.handle(&chat_from(2, 1, 1, "back"));
    assert_eq!(ack(&mut s, chat(2)), ["ok: sent to user 2"]);
}

#[test]
fn a_message_of_the_backlog_does_not_make_its_sender_online() {
    let mut s = ClientState::new();
    s.request(&Command::Login {
        id: 1,
        password: Some("pw".into()),
        takeover: false,
    });
    s.handle(&json!({"msgid":2,"errno":0,"id":1,"name":"alice",
        "friends":[r#"{"id":2,"name":"bob","state":"offline"}"#],"groups":[],"offlinemsg":[]}));
    s.handle(&chat_from(2, 1, 1, "from yesterday"));
    assert_eq!(
        s.local_lines(&Command::Friends).unwrap()[1],
        "  2 bob [offline]"
    );
}

fn chat_from(from: i64, to: i64, seq: i64, msg: &str) -> Value {
    json!({"msgid":6,"id":from,"name":"bob","toid":to,"msg":msg,"time":"t","seq":seq})
}
