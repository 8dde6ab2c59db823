//! The chat protocol over WebSocket (`/ws` of the HTTP front): the features of
//! tests/chat_features.rs with WebSocket clients, and WebSocket users chatting with TCP users
//! both ways, one-to-one and in a group. Every client here is a regular `Client` bridged over
//! WebSocket (tests/util/ws.rs), so a request takes exactly the path it takes on TCP.

mod util;

use clusterchat_proto::client::ClientError;
use clusterchat_proto::{errno, msgid};
use serde_json::{json, Value};
use util::server::TestServer;
use util::ws::{ws_client, ws_user};

fn strings(v: &Value) -> Vec<Value> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|s| serde_json::from_str(s.as_str().expect("a JSON-encoded string")).unwrap())
                .collect()
        })
        .unwrap_or_default()
}

fn http(srv: &TestServer) -> std::net::SocketAddr {
    srv.http.expect("an HTTP front")
}

fn register_login_and_chat_online() {
    let srv = TestServer::start();
    let (mut alice, a) = ws_user(&srv, "alice");
    let (mut bob, b) = ws_user(&srv, "bob");
    alice.chat(a, b, "hello bob").unwrap();
    let got = bob.recv_msgid(msgid::ONE_CHAT).unwrap();
    assert_eq!(
        (&got["msg"], &got["id"], &got["toid"]),
        (&json!("hello bob"), &json!(a), &json!(b))
    );
    assert_eq!(got["name"], "alice");
}

fn login_errors_match_the_tcp_port() {
    let srv = TestServer::start();
    let mut c = ws_client(http(&srv));
    let id = c.register("carol", "right").unwrap();
    match c.login(id, "wrong") {
        Err(ClientError::Refused { errno, .. }) => assert_eq!(errno, errno::BAD_CREDENTIALS),
        other => panic!("expected errno 1, got {other:?}"),
    }
    c.login(id, "right").unwrap();
    // The same account from the TCP port: already online.
    let mut other = srv.client();
    match other.login(id, "right") {
        Err(ClientError::Refused { errno, .. }) => assert_eq!(errno, errno::ALREADY_ONLINE),
        res => panic!("expected errno 2, got {res:?}"),
    }
}

fn requests_before_login_are_refused() {
    let srv = TestServer::start();
    let mut c = ws_client(http(&srv));
    match c.chat(1, 2, "who am I") {
        Err(ClientError::Refused { errno, .. }) => assert_eq!(errno, errno::NOT_LOGGED_IN),
        other => panic!("expected NOT_LOGGED_IN, got {other:?}"),
    }
}

fn offline_messages_arrive_in_order_exactly_once_at_login() {
    let srv = TestServer::start();
    let (mut alice, a) = ws_user(&srv, "alice");
    let mut bob = ws_client(http(&srv));
    let b = bob.register("bob", "pw").unwrap();
    for i in 0..20 {
        alice.chat(a, b, &format!("m{i}")).unwrap();
    }
    let ack = bob.login(b, "pw").unwrap();
    let texts: Vec<_> = strings(&ack["offlinemsg"])
        .iter()
        .map(|m| m["msg"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(texts, (0..20).map(|i| format!("m{i}")).collect::<Vec<_>>());
    bob.logout(b).unwrap();
    let again = bob.login(b, "pw").unwrap();
    assert!(
        strings(&again["offlinemsg"]).is_empty(),
        "delivered exactly once"
    );
}

fn friends_and_groups_appear_in_the_login_reply() {
    let srv = TestServer::start();
    let (mut alice, a) = ws_user(&srv, "alice");
    let (mut bob, b) = ws_user(&srv, "bob");
    alice.add_friend(a, b).unwrap();
    let g = alice
        .create_group(a, "rustaceans", "we like crabs")
        .unwrap();
    bob.join_group(b, g).unwrap();
    alice.logout(a).unwrap();
    let ack = alice.login(a, "pw-alice").unwrap();
    assert_eq!(
        strings(&ack["friends"]),
        vec![json!({"id": b, "name": "bob", "state": "online"})]
    );
    let groups = strings(&ack["groups"]);
    assert_eq!((groups.len(), &groups[0]["id"]), (1, &json!(g)));
    assert_eq!(strings(&groups[0]["users"]).len(), 2);
}

fn unicode_quotes_and_backslashes_arrive_byte_for_byte() {
    let srv = TestServer::start();
    let (mut alice, a) = ws_user(&srv, "爱丽丝");
    let (mut bob, b) = ws_user(&srv, "bob");
    let text = "你好，世界 🦀🎉 \"quoted\" back\\slash \\\" ' ; DROP TABLE user; -- {}[]";
    alice.chat(a, b, text).unwrap();
    let got = bob.recv_msgid(msgid::ONE_CHAT).unwrap();
    assert_eq!(
        (&got["msg"], &got["name"]),
        (&json!(text), &json!("爱丽丝"))
    );
}

/// A WebSocket user and a TCP user, one-to-one both ways.
fn websocket_and_tcp_users_chat_both_ways() {
    let srv = TestServer::start();
    let (mut web, w) = ws_user(&srv, "web");
    let (mut tcp, t) = srv.user("tcp");
    web.chat(w, t, "from the browser").unwrap();
    let got = tcp.recv_msgid(msgid::ONE_CHAT).unwrap();
    assert_eq!(
        (&got["msg"], &got["id"]),
        (&json!("from the browser"), &json!(w))
    );
    tcp.chat(t, w, "from the terminal").unwrap();
    let got = web.recv_msgid(msgid::ONE_CHAT).unwrap();
    assert_eq!(
        (&got["msg"], &got["id"]),
        (&json!("from the terminal"), &json!(t))
    );
    // Many in a row keep their order (the fast path of the IO loop, over WebSocket).
    for i in 0..200 {
        tcp.send(&json!({"msgid": msgid::ONE_CHAT, "id": t, "toid": w, "msg": format!("n{i}")}))
            .unwrap();
    }
    for i in 0..200 {
        assert_eq!(
            web.recv_msgid(msgid::ONE_CHAT).unwrap()["msg"],
            format!("n{i}")
        );
    }
}

/// A group of WebSocket and TCP members: one fan-out frame reaches both kinds.
fn websocket_and_tcp_members_share_a_group() {
    let srv = TestServer::start();
    let (mut web1, w1) = ws_user(&srv, "web1");
    let (mut web2, w2) = ws_user(&srv, "web2");
    let (mut tcp, t) = srv.user("tcp");
    let g = tcp.create_group(t, "mixed", "").unwrap();
    web1.join_group(w1, g).unwrap();
    web2.join_group(w2, g).unwrap();
    tcp.group_chat(t, g, "hello web").unwrap();
    for c in [&mut web1, &mut web2] {
        let got = c.recv_msgid(msgid::GROUP_CHAT).unwrap();
        assert_eq!(
            (&got["msg"], &got["groupid"]),
            (&json!("hello web"), &json!(g))
        );
    }
    web1.group_chat(w1, g, "hello tcp").unwrap();
    for c in [&mut tcp, &mut web2] {
        let got = c.recv_msgid(msgid::GROUP_CHAT).unwrap();
        assert_eq!((&got["msg"], &got["id"]), (&json!("hello tcp"), &json!(w1)));
    }
}

on_both_backends!(
    register_login_and_chat_online,
    login_errors_match_the_tcp_port,
    requests_before_login_are_refused,
    offline_messages_arrive_in_order_exactly_once_at_login,
    friends_and_groups_appear_in_the_login_reply,
    unicode_quotes_and_backslashes_arrive_byte_for_byte,
    websocket_and_tcp_users_chat_both_ways,
    websocket_and_tcp_members_share_a_group,
);
