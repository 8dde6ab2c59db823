//! Two and three servers sharing MySQL and Redis: clients on different servers chat one to
//! one and in groups, users on no server get their messages offline, and an account can be
//! online on one server only.

mod util;

use clusterchat_proto::client::ClientError;
use clusterchat_proto::msgid;
use serde_json::Value;
use std::time::Duration;
use util::cluster::TestCluster;

fn offline_texts(ack: &Value) -> Vec<String> {
    ack["offlinemsg"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            serde_json::from_str::<Value>(s.as_str().unwrap()).unwrap()["msg"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[test]
fn one_to_one_chat_across_two_servers() {
    let Some(cluster) = TestCluster::start("cluster_1to1", 2) else {
        return;
    };
    let (mut alice, a) = cluster.servers[0].user("alice");
    let (mut bob, b) = cluster.servers[1].user("bob");
    for i in 0..50 {
        alice.chat(a, b, &format!("a→b {i}")).unwrap();
        bob.chat(b, a, &format!("b→a {i}")).unwrap();
    }
    for i in 0..50 {
        assert_eq!(
            bob.recv_msgid(msgid::ONE_CHAT).unwrap()["msg"],
            format!("a→b {i}")
        );
        assert_eq!(
            alice.recv_msgid(msgid::ONE_CHAT).unwrap()["msg"],
            format!("b→a {i}")
        );
    }
}

#[test]
fn group_chat_with_members_on_three_servers() {
    let Some(cluster) = TestCluster::start("cluster_group", 3) else {
        return;
    };
    let mut members = Vec::new();
    for (i, name) in ["ann", "ben", "cat", "dan", "eve", "fay"]
        .iter()
        .enumerate()
    {
        members.push(cluster.servers[i % 3].user(name));
    }
    let g = {
        let (c, id) = &mut members[0];
        c.create_group(*id, "spread", "members everywhere").unwrap()
    };
    for (c, id) in members.iter_mut().skip(1) {
        c.join_group(*id, g).unwrap();
    }
    // One member is offline: they get it at their next login, on any server.
    let (mut away, away_id) = members.pop().unwrap();
    away.logout(away_id).unwrap();
    {
        let (c, id) = &mut members[1];
        c.group_chat(*id, g, "hello everywhere").unwrap();
    }
    for (i, (c, _)) in members.iter_mut().enumerate() {
        if i != 1 {
            assert_eq!(
                c.recv_msgid(msgid::GROUP_CHAT).unwrap()["msg"],
                "hello everywhere"
            );
        }
    }
    let mut back = cluster.servers[1].client();
    let ack = back.login(away_id, "pw-fay").unwrap();
    assert_eq!(offline_texts(&ack), ["hello everywhere"]);
}

#[test]
fn users_on_no_server_get_their_messages_offline() {
    let Some(cluster) = TestCluster::start("cluster_offline", 2) else {
        return;
    };
    let (mut alice, a) = cluster.servers[0].user("alice");
    let mut bob = cluster.servers[1].client();
    let b = bob.register("bob", "pw").unwrap();
    for i in 0..10 {
        alice.chat(a, b, &format!("m{i}")).unwrap();
    }
    let ack = bob.login(b, "pw").unwrap();
    assert_eq!(
        offline_texts(&ack),
        (0..10).map(|i| format!("m{i}")).collect::<Vec<_>>()
    );
}

#[test]
fn an_account_is_online_on_one_server_only() {
    let Some(cluster) = TestCluster::start("cluster_dup", 2) else {
        return;
    };
    let (_alice, a) = cluster.servers[0].user("alice");
    let mut other = cluster.servers[1].client();
    match other.login(a, "pw-alice") {
        Err(ClientError::Refused { errno, .. }) => assert_eq!(errno, 2),
        res => panic!("expected errno 2, got {res:?}"),
    }
    // Both at the same moment on two servers: exactly one wins.
    let mut c0 = cluster.servers[0].client();
    let id = c0.register("racer", "pw").unwrap();
    let mut c1 = cluster.servers[1].client();
    let login = serde_json::json!({"msgid": 1, "id": id, "password": "pw"});
    c0.send(&login).unwrap();
    c1.send(&login).unwrap();
    let r0 = c0.recv_msgid(msgid::LOGIN_ACK).unwrap();
    let r1 = c1.recv_msgid(msgid::LOGIN_ACK).unwrap();
    let mut errnos = [r0["errno"].as_i64().unwrap(), r1["errno"].as_i64().unwrap()];
    errnos.sort_unstable();
    assert_eq!(errnos, [0, 2]);
}

#[test]
fn a_server_stopping_sets_only_its_own_users_offline() {
    let Some(mut cluster) = TestCluster::start("cluster_stop", 2) else {
        return;
    };
    let (_alice, a) = cluster.servers[0].user("alice");
    let (mut bob, b) = cluster.servers[1].user("bob");
    cluster.servers[0].signal("TERM");
    cluster.servers[0].wait_exit(Duration::from_secs(10));
    // bob is still online on server 1 and still reachable from anyone.
    let mut again = cluster.servers[1].client();
    assert!(matches!(
        again.login(b, "pw-bob"),
        Err(ClientError::Refused { errno: 2, .. })
    ));
    let (mut carol, c) = cluster.servers[1].user("carol");
    carol.chat(c, b, "you are still here").unwrap();
    assert_eq!(
        bob.recv_msgid(msgid::ONE_CHAT).unwrap()["msg"],
        "you are still here"
    );
    // alice was set offline: she can log in on server 1 at once.
    cluster.servers[1].client().login(a, "pw-alice").unwrap();
}
