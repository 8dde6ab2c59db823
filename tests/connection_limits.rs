//! Connections that never log in are bounded (issue 10, case 2): closed after
//! `--login-timeout` (with an ERROR 104 saying so); at most `--max-unauth-per-ip` at once per source address and
//! `--max-connections` in all, past which a new connection is closed at once; at the
//! open-file limit the server neither spins nor stops serving once descriptors are free. A
//! logged-in user is never refused or closed for any of it.

mod util;

use clusterchat_proto::{errno, msgid};
use serde_json::json;
use std::io::Read;
use std::net::TcpStream;
use std::time::Duration;
use util::limits::{closed_at_once, connect_from, served, thread_cpu_ticks};
use util::server::TestServer;

/// A connection from 127.0.0.1 that the server has registered (it answered a PING).
fn registered(srv: &TestServer) -> TcpStream {
    let mut s = connect_from(srv.addr, "127.0.0.1");
    assert!(served(&mut s), "connection not served");
    s
}

#[test]
fn connections_without_a_login_are_closed_after_the_login_timeout() {
    let srv = TestServer::builder()
        .args(&["--login-timeout", "1"])
        .start();
    let (mut alice, a) = srv.user("alice");
    let (mut bob, b) = srv.user("bob");
    let mut silent = connect_from(srv.addr, "127.0.0.1");
    let mut pinger = registered(&srv); // talks (PING), never logs in
    let mut left = srv.client(); // logs in, then out: unauthenticated again
    let c = left.register("carol", "pw-carol").unwrap();
    left.login(c, "pw-carol").unwrap();
    left.logout(c).unwrap();
    assert!(served(&mut pinger));
    for (conn, what) in [
        (&mut silent, "a silent connection"),
        (&mut pinger, "a pinging one (a PING is not a login)"),
        (
            &mut left.stream().try_clone().unwrap(),
            "a logged-out one (its timer restarts)",
        ),
    ] {
        let mut rest = Vec::new();
        let _ = conn.read_to_end(&mut rest);
        let farewell: serde_json::Value = serde_json::from_slice(&rest)
            .unwrap_or_else(|_| panic!("{what}: {:?}", String::from_utf8_lossy(&rest)));
        assert_eq!(
            (&farewell["msgid"], &farewell["errno"]),
            (&json!(msgid::ERROR), &json!(errno::NOT_LOGGED_IN)),
            "{what} gets an ERROR 104 and is closed: {farewell}"
        );
    }
    // The logged-in users outlived all of them, and chat on.
    alice.chat(a, b, "still here").unwrap();
    assert_eq!(
        bob.recv_msgid(msgid::ONE_CHAT).unwrap()["msg"],
        "still here"
    );
    assert!(srv
        .log()
        .iter()
        .any(|l| l.contains("did not authenticate within")));
}

#[test]
fn unauthenticated_connections_are_limited_per_address() {
    let srv = TestServer::start(); // the default: 64
    let (mut alice, a) = srv.user("alice"); // from 127.0.0.1, logged in
    let (mut bob, b) = srv.user("bob");
    let mut held: Vec<TcpStream> = (0..64).map(|_| registered(&srv)).collect();
    let mut over = connect_from(srv.addr, "127.0.0.1");
    assert!(closed_at_once(&mut over), "the 65th is closed at once");
    // Another address is served: it registers and logs in.
    let other = connect_from(srv.addr, "127.0.0.2");
    let mut dave = clusterchat_proto::client::Client::from_stream(other).unwrap();
    let d = dave.register("dave", "pw-dave").unwrap();
    assert_eq!(dave.login(d, "pw-dave").unwrap()["errno"], 0);
    // Logged-in users from 127.0.0.1 are untouched.
    alice.chat(a, b, "over the limit").unwrap();
    assert_eq!(
        bob.recv_msgid(msgid::ONE_CHAT).unwrap()["msg"],
        "over the limit"
    );
    // One of the 64 logs in: it no longer counts, so there is room for one more.
    let mut first = clusterchat_proto::client::Client::from_stream(held.remove(0)).unwrap();
    let e = first.register("erin", "pw-erin").unwrap();
    first.login(e, "pw-erin").unwrap();
    held.push(registered(&srv));
    let mut over = connect_from(srv.addr, "127.0.0.1");
    assert!(closed_at_once(&mut over));
    assert!(srv
        .log()
        .iter()
        .any(|l| l.contains("over the limit of 64 unauthenticated connections per address")));
}

#[test]
fn connections_over_the_maximum_are_closed_at_once() {
    let srv = TestServer::builder()
        .args(&["--max-connections", "4"])
        .start();
    let (mut alice, a) = srv.user("alice");
    let (mut bob, b) = srv.user("bob");
    let first = registered(&srv);
    let _second = registered(&srv);
    let mut over = connect_from(srv.addr, "127.0.0.2");
    assert!(closed_at_once(&mut over), "the 5th is closed at once");
    alice.chat(a, b, "full house").unwrap();
    assert_eq!(
        bob.recv_msgid(msgid::ONE_CHAT).unwrap()["msg"],
        "full house"
    );
    // A connection that closes makes room (once the server has seen the close).
    drop(first);
    let mut served_again = false;
    for _ in 0..100 {
        let mut s = connect_from(srv.addr, "127.0.0.1");
        if served(&mut s) {
            served_again = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(served_again);
}

/// At the open-file limit the acceptor closes what it cannot take instead of leaving it
/// unanswered or retrying without pause, and a real login is served once descriptors are
/// free again.
#[test]
fn at_the_open_file_limit_the_server_neither_spins_nor_stops() {
    let srv = TestServer::builder()
        .open_files(96)
        .args(&[
            "--max-connections",
            "1000", // above the open-file limit: the descriptors run out first
            "--max-unauth-per-ip",
            "0",
            "--io-threads",
            "1",
            "--workers",
            "2",
            "--db-pool",
            "2",
        ])
        .start();
    let late = srv.client().register("late", "pw-late").unwrap();
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..96 {
        let mut s = connect_from(srv.addr, "127.0.0.1");
        if served(&mut s) {
            held.push(s);
        } else {
            refused += 1;
            if refused == 3 {
                break;
            }
        }
    }
    assert_eq!(refused, 3, "the descriptors never ran out");
    assert!(!held.is_empty());
    // Connections arriving now are closed at once, and the acceptor does not spin.
    let before = thread_cpu_ticks(srv.pid(), "acceptor");
    for _ in 0..20 {
        let mut s = connect_from(srv.addr, "127.0.0.1");
        assert!(
            closed_at_once(&mut s),
            "not answered at the open-file limit"
        );
    }
    std::thread::sleep(Duration::from_secs(1));
    let spent = thread_cpu_ticks(srv.pid(), "acceptor") - before;
    assert!(
        spent < 50,
        "the acceptor used {spent} ticks of CPU in a second"
    );
    // Descriptors free up: a user logs in.
    held.truncate(held.len() - 8);
    let mut ack = None;
    for _ in 0..100 {
        let login = clusterchat_proto::client::Client::connect(srv.addr)
            .and_then(|mut c| c.login(late, "pw-late"));
        if let Ok(a) = login {
            ack = Some(a);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let ack = ack.expect("a login once descriptors were free");
    assert_eq!(ack["errno"], 0, "{ack}");
    assert!(srv
        .log()
        .iter()
        .any(|l| l.contains("out of file descriptors")));
}
