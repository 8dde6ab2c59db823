//! Tests of [`super`].

use super::*;
use crate::receipts::{RECEIPT_BATCH, RECEIPT_DELAY};
use std::time::Duration;

fn logged_in() -> ClientState {
    let mut s = ClientState::new();
    let req = s
        .request(&Command::Login {
            id: 1,
            password: Some("pw".into()),
            takeover: false,
        })
        .unwrap();
    assert_eq!(req, json!({"msgid":1,"id":1,"password":"pw","sync":true}));
    assert!(s.awaiting() && s.awaiting_account());
    let lines = s.handle(&json!({"msgid":2,"errno":0,"id":1,"name":"alice"}));
    assert_eq!(lines[0], "logged in as alice(1)");
    assert!(!s.awaiting() && !s.awaiting_account());
    s
}

#[test]
fn requests_carry_reqid_and_the_logged_in_id() {
    let mut s = logged_in();
    assert_eq!(s.prompt(), "alice(1)> ");
    let req = s
        .request(&Command::Chat {
            to: 5,
            text: "hi".into(),
        })
        .unwrap();
    assert_eq!(req["msgid"], 6);
    assert_eq!(
        (req["id"].as_i64(), req["toid"].as_i64()),
        (Some(1), Some(5))
    );
    assert_eq!(
        (req["name"].as_str(), req["msg"].as_str()),
        (Some("alice"), Some("hi"))
    );
    let reqid = req["reqid"].clone();
    assert!(s.awaiting());
    let ack = json!({"msgid":12,"errno":0,"request":6,"reqid":reqid});
    assert_eq!(s.handle(&ack), ["ok: sent to user 5"]);
    assert!(!s.awaiting());
    assert_eq!(s.request(&Command::Friends), None);
}

#[test]
fn errors_name_the_failed_command() {
    let mut s = ClientState::new();
    let req = s.request(&Command::AddGroup { id: 9 }).unwrap();
    let err = json!({"msgid":13,"errno":104,"errmsg":"not logged in","request":9,
                     "reqid":req["reqid"]});
    assert_eq!(
        s.handle(&err),
        ["error (addgroup 9): not logged in (errno 104)"]
    );
    s.request(&Command::Login {
        id: 1,
        password: Some("bad".into()),
        takeover: false,
    });
    let bad = json!({"msgid":2,"errno":1,"errmsg":"id or password is invalid!"});
    assert_eq!(
        s.handle(&bad),
        ["login failed: id or password is invalid! (errno 1)"]
    );
    assert!(s.me.is_none() && !s.awaiting());
}

#[test]
fn register_create_group_and_logout() {
    let mut s = ClientState::new();
    s.request(&Command::Register {
        name: "bob".into(),
        password: Some("pw".into()),
    });
    assert_eq!(
        s.handle(&json!({"msgid":5,"errno":0,"id":7})),
        ["registered bob with id 7; now: login 7"]
    );
    let mut s = logged_in();
    s.request(&Command::CreateGroup {
        name: "rust".into(),
        desc: "d".into(),
    });
    assert_eq!(
        s.handle(&json!({"msgid":11,"errno":0,"groupid":4})),
        ["ok: created group rust with id 4"]
    );
    let req = s.request(&Command::Logout).unwrap();
    assert_eq!(req["msgid"], 3);
    // The prompt waits for the logout's reply, which changes it.
    assert!(s.awaiting_account());
    assert_eq!(s.prompt(), "alice(1)> ");
    assert_eq!(
        s.handle(&json!({"msgid":12,"errno":0,"request":3,"reqid":req["reqid"]})),
        ["ok: logged out"]
    );
    assert!(!s.awaiting_account());
    assert!(s.me.is_none());
    assert_eq!(s.prompt(), "> ");
    assert_eq!(s.local_lines(&Command::Friends).unwrap(), ["not logged in"]);
}

#[test]
fn incoming_chat_and_unknown_frames() {
    let mut s = ClientState::new();
    let req = s.request(&Command::AddGroup { id: 3 }).unwrap();
    let chat = json!({"msgid":10,"id":2,"name":"bob","groupid":3,"msg":"yo","time":"t",
                      "reqid":req["reqid"]});
    assert_eq!(s.handle(&chat), ["[t] group 3: bob(2) says: yo"]);
    assert!(
        s.awaiting(),
        "the sender's reqid must not settle our request"
    );
    assert_eq!(s.handle(&json!({"msgid":99})), [r#"server: {"msgid":99}"#]);
}

fn chat(from: i64, to: i64, seq: i64, msg: &str) -> Value {
    json!({"msgid":6,"id":from,"name":"u","toid":to,"msg":msg,"time":"t","seq":seq})
}

fn group(g: i64, seq: i64, msg: &str) -> Value {
    json!({"msgid":10,"id":2,"name":"bob","groupid":g,"msg":msg,"time":"t","seq":seq})
}

/// A logged-in state whose sync backlog is over and confirmed.
fn synced() -> ClientState {
    let mut s = logged_in();
    s.handle(&json!({"msgid":15,"count":0}));
    assert!(s.receipts_due(Instant::now()).is_empty());
    s
}

#[test]
fn duplicates_are_dropped_by_conversation_and_seq() {
    let mut s = logged_in();
    assert_eq!(s.handle(&chat(2, 1, 1, "a")), ["[t] u(2) says: a"]);
    assert_eq!(s.handle(&chat(2, 1, 2, "b")), ["[t] u(2) says: b"]);
    assert!(s.handle(&chat(2, 1, 2, "b")).is_empty(), "same seq again");
    assert!(s.handle(&chat(2, 1, 1, "a")).is_empty(), "an older seq");
    // The same seq in other conversations is new: another user, a group, and our own
    // message to user 3 (named by its toid).
    assert_eq!(s.handle(&chat(3, 1, 2, "c")).len(), 1);
    assert_eq!(s.handle(&group(7, 2, "d")).len(), 1);
    assert_eq!(s.handle(&chat(1, 3, 3, "mine")), ["[t] u(1) says: mine"]);
    assert!(
        s.handle(&chat(3, 1, 3, "c")).is_empty(),
        "user 3's seq 3 is seen"
    );
    assert!(s.handle(&group(7, 1, "old")).is_empty());
    // A frame without seq (an older server) is always shown.
    let plain = json!({"msgid":6,"id":2,"name":"u","toid":1,"msg":"x","time":"t"});
    assert_eq!(s.handle(&plain).len(), 1);
    assert_eq!(s.handle(&plain).len(), 1);
}

#[test]
fn receipts_wait_for_sync_done_then_confirm_the_highest_seq_per_conversation() {
    let mut s = logged_in();
    s.handle(&chat(2, 1, 4, "a"));
    s.handle(&chat(2, 1, 5, "b"));
    s.handle(&group(7, 9, "c"));
    s.handle(&chat(1, 3, 2, "mine"));
    let later = Instant::now() + Duration::from_secs(5);
    assert!(s.receipts_due(later).is_empty(), "not during the backlog");
    assert_eq!(
        s.handle(&json!({"msgid":15,"count":4})),
        ["4 messages while you were away"]
    );
    assert_eq!(
        s.receipts_due(Instant::now()),
        [
            json!({"msgid":14,"peer":2,"seq":5}),
            json!({"msgid":14,"peer":3,"seq":2}),
            json!({"msgid":14,"groupid":7,"seq":9}),
        ]
    );
    assert!(s.receipts_due(later).is_empty(), "nothing new");
}

#[test]
fn receipts_are_batched_by_time_and_count() {
    let mut s = synced();
    let t0 = Instant::now();
    s.handle(&chat(2, 1, 1, "a"));
    s.handle(&chat(2, 1, 2, "b"));
    assert!(s.receipts_due(t0).is_empty(), "too early");
    assert_eq!(
        s.receipts_due(Instant::now() + RECEIPT_DELAY),
        [json!({"msgid":14,"peer":2,"seq":2})]
    );
    for seq in 3..3 + RECEIPT_BATCH as i64 - 1 {
        s.handle(&group(7, seq, "m"));
    }
    assert!(s.receipts_due(Instant::now()).is_empty(), "one short");
    s.handle(&group(7, 200, "m"));
    assert_eq!(
        s.receipts_due(Instant::now()),
        [json!({"msgid":14,"groupid":7,"seq":200})]
    );
    // Logging out (or quitting) takes whatever is owed at once.
    s.handle(&chat(2, 1, 3, "c"));
    assert_eq!(s.take_receipts(), [json!({"msgid":14,"peer":2,"seq":3})]);
    assert!(s.take_receipts().is_empty());
}

#[test]
fn a_login_of_another_user_forgets_what_was_seen() {
    let mut s = synced();
    s.handle(&chat(2, 1, 1, "a"));
    s.take_receipts();
    // alice again (same connection, after a logout): seq 1 was seen.
    s.handle(&json!({"msgid":2,"errno":0,"id":1,"name":"alice"}));
    assert!(s.handle(&chat(2, 1, 1, "a")).is_empty());
    // bob: a conversation of his own with user 2.
    s.handle(&json!({"msgid":2,"errno":0,"id":5,"name":"bob"}));
    assert_eq!(s.handle(&chat(2, 5, 1, "a")).len(), 1);
}

#[test]
fn sync_done_with_nothing_says_nothing() {
    let mut s = logged_in();
    assert!(s.handle(&json!({"msgid":15,"count":0})).is_empty());
    assert_eq!(
        s.handle(&json!({"msgid":15,"count":1})),
        ["1 message while you were away"]
    );
}

#[test]
fn an_online_account_hints_at_takeover_and_a_kick_ends_the_session() {
    let mut s = ClientState::new();
    let req = s
        .request(&Command::Login {
            id: 1,
            password: Some("pw".into()),
            takeover: true,
        })
        .unwrap();
    assert_eq!(req["takeover"], true);
    let online = json!({"msgid":2,"errno":2,"errmsg":"this account is using, input another!"});
    let lines = s.handle(&online);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[1].contains("--takeover"), "{lines:?}");
    let mut s = logged_in();
    let kicked = json!({"msgid":22,"errmsg":"logged in elsewhere"});
    assert_eq!(s.handle(&kicked), ["kicked: logged in elsewhere"]);
    assert_eq!(s.prompt(), "> ");
    assert_eq!(s.local_lines(&Command::Friends).unwrap(), ["not logged in"]);
}

#[test]
fn a_pong_is_not_shown() {
    let mut s = logged_in();
    assert!(s.handle(&json!({"msgid":21})).is_empty());
    assert!(ClientState::new().handle(&json!({"msgid":21})).is_empty());
}

#[test]
fn a_sync_login_reply_keeps_the_group_sizes() {
    let mut s = ClientState::new();
    s.request(&Command::Login {
        id: 1,
        password: Some("pw".into()),
        takeover: false,
    });
    let reply = json!({"msgid":2,"errno":0,"id":1,"name":"alice","friends":[],
        "groups":[r#"{"groupdesc":"d","groupname":"rust","id":3,"members":12}"#],
        "offlinemsg":[]});
    let lines = s.handle(&reply);
    assert_eq!(lines[lines.len() - 2..], ["  3 rust: d", "    12 members"]);
    assert_eq!(
        s.local_lines(&Command::Groups).unwrap(),
        ["groups:", "  3 rust: d", "    12 members"]
    );
}

#[test]
fn history_requests_and_replies() {
    let mut s = synced();
    let req = s
        .request(&Command::History {
            conv: Conv::Group(3),
            count: Some(2),
        })
        .unwrap();
    assert_eq!(
        (
            req["msgid"].as_i64(),
            req["groupid"].as_i64(),
            req["limit"].as_i64()
        ),
        (Some(16), Some(3), Some(2))
    );
    assert!(req.get("peer").is_none() && req.get("before").is_none());
    let reply = json!({"msgid":17,"groupid":3,"reqid":req["reqid"],"more":false,
        "messages":[group(3, 8, "hi")]});
    assert_eq!(
        s.handle(&reply),
        ["history of group 3 (1):", "  [t] group 3: bob(2) says: hi"]
    );
    assert!(!s.awaiting());
    // History is not the live stream: it neither hides nor confirms live messages.
    assert_eq!(s.handle(&group(3, 8, "hi")).len(), 1);

    let req = s
        .request(&Command::History {
            conv: Conv::User(2),
            count: None,
        })
        .unwrap();
    assert_eq!(req["peer"], 2);
    assert!(req.get("limit").is_none());
    let err = json!({"msgid":13,"errno":105,"errmsg":"not a member","request":16,
                     "reqid":req["reqid"]});
    assert_eq!(
        s.handle(&err),
        ["error (history 2): not a member (errno 105)"]
    );
}
