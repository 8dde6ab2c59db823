//! Every feature of the original, end to end over TCP: register, login with friends, groups
//! and offline messages, logout, one-to-one chat, friends, groups, group chat.

mod util;

use clusterchat_proto::client::ClientError;
use clusterchat_proto::{errno, msgid};
use serde_json::{json, Value};
use util::server::TestServer;

fn strings(v: &Value) -> Vec<Value> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|s| serde_json::from_str(s.as_str().expect("a JSON-encoded string")).unwrap())
                .collect()
        })
        .unwrap_or_default()
}

fn register_login_and_chat_online() {
    let srv = TestServer::start();
    let (mut alice, a) = srv.user("alice");
    let (mut bob, b) = srv.user("bob");
    assert_ne!(a, b);
    alice.chat(a, b, "hello bob").unwrap();
    let got = bob.recv_msgid(msgid::ONE_CHAT).unwrap();
    assert_eq!(got["msg"], "hello bob");
    assert_eq!(got["id"], a);
    assert_eq!(got["name"], "alice");
    assert_eq!(got["toid"], b);
    assert!(
        got.get("reqid").is_none(),
        "the sender's reqid is not forwarded"
    );
}

fn login_errors_match_the_original() {
    let srv = TestServer::start();
    let mut c = srv.client();
    let id = c.register("carol", "right").unwrap();
    match c.login(id, "wrong") {
        Err(ClientError::Refused { errno, .. }) => assert_eq!(errno, 1),
        other => panic!("expected errno 1, got {other:?}"),
    }
    match c.login(id + 1000, "right") {
        Err(ClientError::Refused { errno, .. }) => assert_eq!(errno, 1),
        other => panic!("expected errno 1, got {other:?}"),
    }
    c.login(id, "right").unwrap();
    let mut other = srv.client();
    match other.login(id, "right") {
        Err(ClientError::Refused { errno, errmsg }) => {
            assert_eq!(errno, 2);
            assert!(errmsg.contains("using"), "{errmsg}");
        }
        res => panic!("expected errno 2, got {res:?}"),
    }
}

fn offline_messages_arrive_in_order_exactly_once_at_login() {
    let srv = TestServer::start();
    let (mut alice, a) = srv.user("alice");
    let mut bob = srv.client();
    let b = bob.register("bob", "pw").unwrap();
    for i in 0..20 {
        alice.chat(a, b, &format!("m{i}")).unwrap();
    }
    let ack = bob.login(b, "pw").unwrap();
    let offline = strings(&ack["offlinemsg"]);
    let texts: Vec<_> = offline
        .iter()
        .map(|m| m["msg"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(texts, (0..20).map(|i| format!("m{i}")).collect::<Vec<_>>());
    assert!(offline.iter().all(|m| m["id"] == a && m["name"] == "alice"));
    bob.logout(b).unwrap();
    let again = bob.login(b, "pw").unwrap();
    assert!(
        strings(&again["offlinemsg"]).is_empty(),
        "delivered exactly once"
    );
}

fn logout_keeps_the_socket_and_allows_a_new_login() {
    let srv = TestServer::start();
    let (mut alice, a) = srv.user("alice");
    let (mut bob, b) = srv.user("bob");
    bob.logout(b).unwrap();
    alice.chat(a, b, "while away").unwrap();
    match bob.chat(b, a, "not logged in") {
        Err(ClientError::Refused { errno, .. }) => assert_eq!(errno, errno::NOT_LOGGED_IN),
        other => panic!("expected NOT_LOGGED_IN, got {other:?}"),
    }
    let ack = bob.login(b, "pw-bob").unwrap();
    assert_eq!(strings(&ack["offlinemsg"])[0]["msg"], "while away");
}

fn friends_and_groups_appear_in_the_login_reply() {
    let srv = TestServer::start();
    let (mut alice, a) = srv.user("alice");
    let (mut bob, b) = srv.user("bob");
    alice.add_friend(a, b).unwrap();
    alice.add_friend(a, b).unwrap(); // idempotent
    let g = alice
        .create_group(a, "rustaceans", "we like crabs")
        .unwrap();
    bob.join_group(b, g).unwrap();
    alice.logout(a).unwrap();
    let ack = alice.login(a, "pw-alice").unwrap();
    assert_eq!(ack["name"], "alice");
    let friends = strings(&ack["friends"]);
    assert_eq!(
        friends,
        vec![json!({"id": b, "name": "bob", "state": "online"})]
    );
    let groups = strings(&ack["groups"]);
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0]["id"], g);
    assert_eq!(groups[0]["groupname"], "rustaceans");
    assert_eq!(groups[0]["groupdesc"], "we like crabs");
    let users = strings(&groups[0]["users"]);
    let roles: Vec<_> = users
        .iter()
        .map(|u| (u["id"].as_i64().unwrap(), u["role"].clone()))
        .collect();
    assert!(roles.contains(&(a, json!("creator"))));
    assert!(roles.contains(&(b, json!("normal"))));
}

fn group_chat_reaches_online_and_offline_members() {
    let srv = TestServer::start();
    let (mut alice, a) = srv.user("alice");
    let (mut bob, b) = srv.user("bob");
    let (mut carol, c) = srv.user("carol");
    let g = alice.create_group(a, "team", "").unwrap();
    bob.join_group(b, g).unwrap();
    carol.join_group(c, g).unwrap();
    carol.logout(c).unwrap();
    alice.group_chat(a, g, "standup!").unwrap();
    let got = bob.recv_msgid(msgid::GROUP_CHAT).unwrap();
    assert_eq!(
        (
            got["msg"].clone(),
            got["id"].clone(),
            got["groupid"].clone()
        ),
        (json!("standup!"), json!(a), json!(g))
    );
    let ack = carol.login(c, "pw-carol").unwrap();
    assert_eq!(strings(&ack["offlinemsg"])[0]["msg"], "standup!");
    // The sender does not get its own message.
    alice.chat(a, a, "note to self").unwrap();
    assert_eq!(
        alice.recv_msgid(msgid::ONE_CHAT).unwrap()["msg"],
        "note to self"
    );
}

fn create_group_answers_with_the_id_and_refuses_a_taken_name() {
    let srv = TestServer::start();
    let (mut alice, a) = srv.user("alice");
    let g1 = alice.create_group(a, "g", "").unwrap();
    let g2 = alice.create_group(a, "h", "").unwrap();
    assert_ne!(g1, g2);
    assert!(matches!(
        alice.create_group(a, "g", ""),
        Err(ClientError::Refused { .. })
    ));
    // Without reqid (the old client) the reply still comes, as CREATE_GROUP_ACK.
    alice
        .send(&json!({"msgid": msgid::CREATE_GROUP, "id": a, "groupname": "k", "groupdesc": "d"}))
        .unwrap();
    let reply = alice.recv_msgid(msgid::CREATE_GROUP_ACK).unwrap();
    assert!(reply["groupid"].as_i64().unwrap() > g2);
}

fn unicode_quotes_and_backslashes_arrive_byte_for_byte() {
    let srv = TestServer::start();
    let (mut alice, a) = srv.user("爱丽丝");
    let (mut bob, b) = srv.user("bob");
    let text = "你好，世界 🦀🎉 \"quoted\" back\\slash \\\" ' ; DROP TABLE user; -- \u{0}nul? {}[]";
    alice.chat(a, b, text).unwrap();
    let got = bob.recv_msgid(msgid::ONE_CHAT).unwrap();
    assert_eq!(got["msg"], text);
    assert_eq!(got["name"], "爱丽丝");
    bob.logout(b).unwrap();
    alice.chat(a, b, text).unwrap();
    let ack = bob.login(b, "pw-bob").unwrap();
    assert_eq!(strings(&ack["offlinemsg"])[0]["msg"], text);
}

on_both_backends!(
    register_login_and_chat_online,
    login_errors_match_the_original,
    offline_messages_arrive_in_order_exactly_once_at_login,
    logout_keeps_the_socket_and_allows_a_new_login,
    friends_and_groups_appear_in_the_login_reply,
    group_chat_reaches_online_and_offline_members,
    create_group_answers_with_the_id_and_refuses_a_taken_name,
    unicode_quotes_and_backslashes_arrive_byte_for_byte,
);
