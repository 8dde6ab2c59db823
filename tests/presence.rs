//! PRESENCE (23): a user's friends with a sync session learn at once that the user's session
//! started (login) or ended (logout, a closed connection), on one server and across the
//! servers of a cluster. Legacy sessions never get it (the old client must get nothing it did
//! not ask for), and a takeover shows no "offline" between the two sessions.

mod util;

use clusterchat_proto::client::Client;
use clusterchat_proto::msgid;
use serde_json::Value;
use std::net::SocketAddr;
use util::chatlog::{pw, read_sync, sync_login};
use util::cluster::TestCluster;
use util::faults::register;
use util::server::TestServer;

/// Makes `a` and `b` friends of each other (each adds the other, as friends are
/// one-directional), from setup connections that log out again.
fn befriend(addr: SocketAddr, a: i64, b: i64) {
    for (me, friend) in [(a, b), (b, a)] {
        let mut c = Client::connect(addr).expect("connect");
        let name = if me == a { "alice" } else { "bob" };
        c.login(me, &pw(name)).expect("setup login");
        c.add_friend(me, friend).expect("add friend");
        c.logout(me).expect("setup logout");
    }
}

/// The next PRESENCE frame `c` gets, as `(id, state)` (other frames stay for `recv`).
fn next_presence(c: &mut Client) -> (i64, String) {
    let v = c
        .recv_msgid(msgid::PRESENCE)
        .unwrap_or_else(|e| panic!("no PRESENCE (23) frame: {e}"));
    presence_of(&v)
}

fn presence_of(v: &Value) -> (i64, String) {
    assert_eq!(v["msgid"], msgid::PRESENCE, "{v}");
    let id = v["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("PRESENCE without an id: {v}"));
    let state = v["state"]
        .as_str()
        .unwrap_or_else(|| panic!("PRESENCE without a state: {v}"));
    (id, state.to_string())
}

fn online(id: i64) -> (i64, String) {
    (id, "online".into())
}

fn offline(id: i64) -> (i64, String) {
    (id, "offline".into())
}

/// alice (sync) on `a_addr` sees bob, on `b_addr`, log in, log out, log in again and close
/// his connection.
fn login_logout_and_close_reach_a_sync_friend(a_addr: SocketAddr, b_addr: SocketAddr) {
    let a = register(a_addr, "alice");
    let b = register(b_addr, "bob");
    befriend(a_addr, a, b);
    let (mut alice, _) = sync_login(a_addr, a, &pw("alice"));
    read_sync(&mut alice);

    let mut bob = Client::connect(b_addr).expect("connect");
    bob.login(b, &pw("bob")).expect("bob logs in");
    assert_eq!(next_presence(&mut alice), online(b), "bob's login");
    bob.logout(b).expect("bob logs out");
    assert_eq!(next_presence(&mut alice), offline(b), "bob's logout");
    bob.login_sync(b, &pw("bob"))
        .expect("bob logs in again (sync)");
    assert_eq!(next_presence(&mut alice), online(b), "bob's second login");
    drop(bob);
    assert_eq!(
        next_presence(&mut alice),
        offline(b),
        "bob's connection closed"
    );
}

#[test]
fn presence_on_one_server() {
    let srv = TestServer::start();
    login_logout_and_close_reach_a_sync_friend(srv.addr, srv.addr);
}

#[test]
fn presence_across_two_servers() {
    let Some(cluster) = TestCluster::start("presence_2", 2) else {
        return;
    };
    let (s0, s1) = (cluster.servers[0].addr, cluster.servers[1].addr);
    login_logout_and_close_reach_a_sync_friend(s0, s1);
}

/// A legacy alice gets no PRESENCE: after bob's login, logout and login again, the next frame
/// she reads is the chat he sends her.
#[test]
fn a_legacy_session_gets_no_presence() {
    let srv = TestServer::start();
    let a = register(srv.addr, "alice");
    let b = register(srv.addr, "bob");
    befriend(srv.addr, a, b);
    let mut alice = srv.client();
    alice
        .login(a, &pw("alice"))
        .expect("alice logs in (legacy)");
    // A sync friend of bob's too, to know when his presence has been sent.
    let c = register(srv.addr, "carol");
    {
        let mut s = srv.client();
        s.login(b, &pw("bob")).unwrap();
        s.add_friend(b, c).unwrap();
        s.logout(b).unwrap();
        let mut s = srv.client();
        s.login(c, &pw("carol")).unwrap();
        s.add_friend(c, b).unwrap();
        s.logout(c).unwrap();
    }
    let (mut carol, _) = sync_login(srv.addr, c, &pw("carol"));
    read_sync(&mut carol);

    let mut bob = srv.client();
    bob.login(b, &pw("bob")).expect("bob logs in");
    assert_eq!(next_presence(&mut carol), online(b));
    bob.logout(b).expect("bob logs out");
    assert_eq!(next_presence(&mut carol), offline(b));
    bob.login(b, &pw("bob")).expect("bob logs in again");
    assert_eq!(next_presence(&mut carol), online(b));
    bob.chat(b, a, "hello alice").expect("bob's chat");
    let next = alice.recv().expect("alice's next frame");
    assert_eq!(next["msgid"], msgid::ONE_CHAT, "not the chat: {next}");
    assert_eq!(next["msg"], "hello alice", "{next}");
}

/// A takeover of bob's session shows alice no "offline" in between: the next PRESENCE after
/// it says "online", and his logout after it "offline".
#[test]
fn a_takeover_shows_no_offline() {
    let srv = TestServer::start();
    let a = register(srv.addr, "alice");
    let b = register(srv.addr, "bob");
    befriend(srv.addr, a, b);
    let (mut alice, _) = sync_login(srv.addr, a, &pw("alice"));
    read_sync(&mut alice);
    let mut old = srv.client();
    old.login(b, &pw("bob")).expect("bob logs in");
    assert_eq!(next_presence(&mut alice), online(b));
    let mut new = srv.client();
    let ack = new.login_takeover(b, &pw("bob"), false).expect("takeover");
    assert_eq!(ack["errno"], 0, "{ack}");
    assert_eq!(
        next_presence(&mut alice),
        online(b),
        "no offline in between"
    );
    new.logout(b).expect("bob logs out");
    assert_eq!(next_presence(&mut alice), offline(b));
    drop(old);
}
