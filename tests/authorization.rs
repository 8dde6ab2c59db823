//! The server trusts nothing a client claims: every request other than register and login
//! needs a logged-in session and acts as that session's user, whatever `id` it carries.

mod util;

use clusterchat_proto::client::ClientError;
use clusterchat_proto::{errno, msgid};
use serde_json::json;
use util::server::TestServer;

fn refused(r: Result<serde_json::Value, ClientError>) -> i64 {
    match r {
        Err(ClientError::Refused { errno, .. }) => errno,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn requests_without_login_are_refused() {
    let srv = TestServer::start();
    let (mut bob, b) = srv.user("bob");
    let mut anon = srv.client();
    for req in [
        json!({"msgid": msgid::ONE_CHAT, "id": b, "toid": b, "msg": "spoof"}),
        json!({"msgid": msgid::ADD_FRIEND, "id": b, "friendid": b}),
        json!({"msgid": msgid::CREATE_GROUP, "id": b, "groupname": "x", "groupdesc": ""}),
        json!({"msgid": msgid::ADD_GROUP, "id": b, "groupid": 1}),
        json!({"msgid": msgid::GROUP_CHAT, "id": b, "groupid": 1, "msg": "x"}),
        json!({"msgid": msgid::LOGOUT, "id": b}),
    ] {
        assert_eq!(refused(anon.request(req, None)), errno::NOT_LOGGED_IN);
    }
    // Without reqid (the old client's way) an error still comes back.
    anon.send(&json!({"msgid": msgid::ONE_CHAT, "id": b, "toid": b, "msg": "spoof"}))
        .unwrap();
    assert_eq!(anon.recv().unwrap()["errno"], errno::NOT_LOGGED_IN);
    // Bob is still online: nobody logged him out.
    bob.chat(b, b, "still me").unwrap();
    assert_eq!(bob.recv_msgid(msgid::ONE_CHAT).unwrap()["msg"], "still me");
}

fn a_client_cannot_act_as_another_user() {
    let srv = TestServer::start();
    let (mut mallory, m) = srv.user("mallory");
    let (mut alice, a) = srv.user("alice");
    let (mut bob, b) = srv.user("bob");
    // Chat claiming to be alice: bob sees mallory.
    mallory
        .request(
            json!({"msgid": 6, "id": a, "name": "alice", "toid": b, "msg": "hi, it's alice"}),
            None,
        )
        .unwrap();
    let got = bob.recv_msgid(msgid::ONE_CHAT).unwrap();
    assert_eq!(
        (got["id"].as_i64(), got["name"].as_str()),
        (Some(m), Some("mallory"))
    );
    // Logout "of alice" logs out mallory only.
    mallory.request(json!({"msgid": 3, "id": a}), None).unwrap();
    alice.chat(a, b, "alice is still online").unwrap();
    assert_eq!(bob.recv_msgid(msgid::ONE_CHAT).unwrap()["id"], a);
    // Friends "for alice" are added to mallory.
    mallory.login(m, "pw-mallory").unwrap();
    mallory
        .request(json!({"msgid": 7, "id": a, "friendid": b}), None)
        .unwrap();
    alice.logout(a).unwrap();
    let ack = alice.login(a, "pw-alice").unwrap();
    assert!(
        ack["friends"].as_array().unwrap().is_empty(),
        "alice got no friend"
    );
}

fn group_rules_hold() {
    let srv = TestServer::start();
    let (mut alice, a) = srv.user("alice");
    let (mut eve, e) = srv.user("eve");
    let g = alice.create_group(a, "private", "").unwrap();
    assert_eq!(refused(eve.group_chat(e, g, "let me in")), errno::FORBIDDEN);
    assert_eq!(refused(eve.join_group(e, g + 1000)), errno::NOT_FOUND);
    assert_eq!(refused(eve.group_chat(e, g + 1000, "x")), errno::NOT_FOUND);
    assert_eq!(refused(eve.add_friend(e, e)), errno::FORBIDDEN);
    assert_eq!(refused(eve.add_friend(e, 987_654)), errno::NOT_FOUND);
    eve.join_group(e, g).unwrap();
    eve.group_chat(e, g, "hello").unwrap();
    assert_eq!(alice.recv_msgid(msgid::GROUP_CHAT).unwrap()["msg"], "hello");
    let mut other = srv.client();
    let o = other.register("o", "pw").unwrap();
    other.login(o, "pw").unwrap();
    assert_eq!(refused(other.login(o, "pw")), errno::ALREADY_LOGGED_IN);
}

on_both_backends!(
    requests_without_login_are_refused,
    a_client_cannot_act_as_another_user,
    group_rules_hold,
);
