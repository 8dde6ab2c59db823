//! Takeover (issue 10): a LOGIN with `"takeover":true` ends the account's other session, on
//! the same server or another one of the cluster: the old connection gets KICKED and is
//! closed, the new one is logged in, and every message sent before, during and after reaches
//! the new session (by seq, none lost). Without takeover the login is refused with errno 2, as
//! the old client expects.

mod util;

use clusterchat_proto::client::{Client, ClientError};
use clusterchat_proto::{errno, msgid};
use serde_json::Value;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use util::chatlog::{
    ask, is_chat, numbered, one_chat, pw, read_sync, send_login, seq, sync_login, ACK,
};
use util::cluster::TestCluster;
use util::faults::register;
use util::from_addr::client_from;
use util::piped_chatclient::PipedClient;
use util::server::TestServer;

/// Messages bob sends before the takeover, while it runs, and after it.
const BEFORE: i64 = 20;
const DURING: i64 = 30;
const AFTER: i64 = 20;

/// Reads the kicked connection to its end: the seqs of the chats it got before KICKED, which
/// must be the last frame before the server closes the connection.
fn read_until_kicked(c: &mut Client) -> Vec<i64> {
    let mut seqs = Vec::new();
    let mut kicked = None;
    loop {
        match c.recv() {
            Ok(v) if v["msgid"] == msgid::KICKED => kicked = Some(v),
            Ok(v) => {
                assert!(kicked.is_none(), "a frame after KICKED: {v}");
                if is_chat(&v) {
                    seqs.push(seq(&v));
                }
            }
            Err(ClientError::Closed) => break,
            Err(e) => panic!("the kicked connection was not closed: {e}"),
        }
    }
    let kicked = kicked.expect("KICKED before the close");
    assert!(
        kicked["errmsg"].as_str().is_some_and(|m| !m.is_empty()),
        "{kicked}"
    );
    seqs
}

/// Sends one chat from `bob` to `to` and returns its seq.
fn send(bob: &mut Client, to: i64, i: i64) -> i64 {
    let ack = ask(bob, one_chat(to, &numbered(i as usize, 8)));
    assert!(ack["msgid"] == ACK && ack["errno"] == 0, "{ack}");
    seq(&ack)
}

/// Reads chats from `c` until seq `last`, returning every seq in arrival order.
fn seqs_until(c: &mut Client, last: i64) -> Vec<i64> {
    let mut seqs = Vec::new();
    while seqs.last() != Some(&last) {
        let v = c
            .recv_matching(is_chat)
            .unwrap_or_else(|e| panic!("after seqs {seqs:?}, waiting for {last}: {e}"));
        seqs.push(seq(&v));
    }
    seqs
}

/// alice is logged in (sync, confirming nothing) on `old_addr` when she logs in again on
/// `new_addr` while bob, on `bob_addr`, keeps sending to her.
fn takeover_loses_nothing(old_addr: SocketAddr, new_addr: SocketAddr, bob_addr: SocketAddr) {
    let a = register(old_addr, "alice");
    let b = register(bob_addr, "bob");
    let (mut bob, _) = sync_login(bob_addr, b, &pw("bob"));
    let (mut old, _) = sync_login(old_addr, a, &pw("alice"));
    read_sync(&mut old);
    for i in 1..=BEFORE {
        assert_eq!(send(&mut bob, a, i), i);
    }
    assert_eq!(
        seqs_until(&mut old, BEFORE),
        (1..=BEFORE).collect::<Vec<_>>()
    );

    // Without takeover: errno 2, as today.
    let mut new = Client::connect(new_addr).unwrap();
    let refused = send_login(&mut new, a, &pw("alice"), true);
    assert_eq!(
        (&refused["msgid"], &refused["errno"]),
        (&msgid::LOGIN_ACK.into(), &errno::ALREADY_ONLINE.into()),
        "{refused}"
    );

    // With takeover, while bob sends.
    let sender = std::thread::spawn(move || {
        for i in BEFORE + 1..=BEFORE + DURING {
            assert_eq!(send(&mut bob, a, i), i);
        }
        bob
    });
    let started = Instant::now();
    let ack = new.login_takeover(a, &pw("alice"), true).unwrap();
    eprintln!("the takeover login took {:?}", started.elapsed());
    assert_eq!(
        (ack["errno"].as_i64(), ack["id"].as_i64()),
        (Some(0), Some(a))
    );
    read_until_kicked(&mut old);
    let mut bob = sender.join().unwrap();
    let total = BEFORE + DURING + AFTER;
    for i in BEFORE + DURING + 1..=total {
        assert_eq!(send(&mut bob, a, i), i);
    }
    // The new session never confirmed anything either: it gets every message, once, in order.
    assert_eq!(seqs_until(&mut new, total), (1..=total).collect::<Vec<_>>());
    // And it is the session now: a third login without takeover is refused.
    let mut third = Client::connect(old_addr).unwrap();
    let refused = send_login(&mut third, a, &pw("alice"), false);
    assert_eq!(refused["errno"], errno::ALREADY_ONLINE, "{refused}");
}

fn takeover_on_one_server() {
    let srv = TestServer::start();
    takeover_loses_nothing(srv.addr, srv.addr, srv.addr);
}

/// The old client's way (legacy sessions, cursors moved as frames are written): what the old
/// session was not written is in the new session's LOGIN_ACK or follows it.
fn legacy_takeover_on_one_server() {
    let srv = TestServer::start();
    let a = register(srv.addr, "alice");
    let (mut bob, _) = srv.user("bob");
    let mut old = Client::connect(srv.addr).unwrap().use_nul();
    old.login(a, &pw("alice")).unwrap();
    for i in 1..=BEFORE {
        assert_eq!(send(&mut bob, a, i), i);
    }
    let mut new = Client::connect(srv.addr).unwrap().use_nul();
    let ack = new.login_takeover(a, &pw("alice"), false).unwrap();
    let mut new_seqs: Vec<i64> = ack["offlinemsg"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| seq(&serde_json::from_str::<Value>(s.as_str().unwrap()).unwrap()))
        .collect();
    let old_seqs = read_until_kicked(&mut old);
    for i in BEFORE + 1..=BEFORE + AFTER {
        assert_eq!(send(&mut bob, a, i), i);
    }
    new_seqs.extend(seqs_until(&mut new, BEFORE + AFTER));
    let mut all: Vec<i64> = old_seqs.iter().chain(&new_seqs).copied().collect();
    all.sort();
    all.dedup();
    assert_eq!(
        all,
        (1..=BEFORE + AFTER).collect::<Vec<_>>(),
        "old {old_seqs:?}, new {new_seqs:?}"
    );
    assert!(new_seqs.windows(2).all(|w| w[0] < w[1]), "{new_seqs:?}");
}

on_both_backends!(takeover_on_one_server, legacy_takeover_on_one_server);

#[test]
fn takeover_across_two_servers() {
    let Some(cluster) = TestCluster::start("takeover_2", 2) else {
        return;
    };
    let (s0, s1) = (cluster.servers[0].addr, cluster.servers[1].addr);
    takeover_loses_nothing(s0, s1, s1);
}

/// Two takeovers of one account at once, on two servers: one of them ends up with the
/// session (and gets what is sent next), the other is refused or kicked in turn, and the first
/// session is kicked.
#[test]
fn two_takeovers_at_once_leave_one_session() {
    let Some(cluster) = TestCluster::start("takeover_race", 2) else {
        return;
    };
    let (s0, s1) = (cluster.servers[0].addr, cluster.servers[1].addr);
    let a = register(s0, "alice");
    let (mut bob, b) = cluster.servers[1].user("bob");
    let (mut old, _) = sync_login(s0, a, &pw("alice"));
    read_sync(&mut old);
    let racers: Vec<_> = [s0, s1]
        .into_iter()
        .map(|addr| {
            std::thread::spawn(move || {
                let mut c = Client::connect(addr).unwrap();
                let outcome = c.login_takeover(a, &pw("alice"), true);
                (c, outcome)
            })
        })
        .collect();
    let mut logged_in = Vec::new();
    for r in racers {
        match r.join().unwrap() {
            (c, Ok(_)) => logged_in.push(c),
            (_, Err(ClientError::Refused { errno: e, .. })) => {
                assert_eq!(e, errno::ALREADY_ONLINE)
            }
            (_, Err(e)) => panic!("takeover login: {e}"),
        }
    }
    assert!(!logged_in.is_empty(), "both takeovers refused");
    read_until_kicked(&mut old);
    bob.chat(b, a, "who has alice?").unwrap();
    let mut holders = 0;
    for c in &mut logged_in {
        let v = c
            .recv_matching(|v| v["msgid"] == msgid::KICKED || v["msg"] == "who has alice?")
            .expect("the chat or KICKED");
        if v["msgid"] != msgid::KICKED {
            holders += 1;
        }
    }
    assert_eq!(holders, 1, "{} logins succeeded", logged_in.len());
}

/// A takeover right after the session's server was killed (its liveness key still alive for
/// up to 3 s): the login waits for the server to be proven dead, then takes the session over.
#[test]
fn takeover_of_a_session_on_a_killed_server() {
    let Some(mut cluster) = TestCluster::start("takeover_dead", 2) else {
        return;
    };
    let (s0, s1) = (cluster.servers[0].addr, cluster.servers[1].addr);
    let a = register(s0, "alice");
    let (mut bob, b) = cluster.servers[1].user("bob");
    let (mut old, _) = sync_login(s0, a, &pw("alice"));
    read_sync(&mut old);
    bob.chat(b, a, "before").unwrap();
    cluster.servers[0].signal("KILL");
    cluster.servers[0].wait_exit(Duration::from_secs(10));
    let started = Instant::now();
    let mut new = Client::connect(s1).unwrap();
    new.set_timeout(Some(Duration::from_secs(20))).unwrap();
    new.login_takeover(a, &pw("alice"), true).unwrap();
    eprintln!(
        "took over a killed server's session after {:?}",
        started.elapsed()
    );
    bob.chat(b, a, "after").unwrap();
    let got = seqs_until(&mut new, 2);
    assert_eq!(got, [1, 2]);
}

/// chatclient: `login <id> <password>` of an online account shows errno 2 and the hint,
/// `… --takeover` logs in (the other connection gets KICKED), and a takeover elsewhere shows
/// `kicked:` and ends the client.
#[test]
fn chatclient_takes_over_and_is_kicked() {
    let srv = TestServer::start();
    let a = register(srv.addr, "alice");
    let mut first = Client::connect(srv.addr).unwrap();
    first.login(a, &pw("alice")).unwrap();
    let mut client = PipedClient::spawn([srv.addr.ip().to_string(), srv.addr.port().to_string()]);
    client.type_line(&format!("login {a} {}", pw("alice")));
    client.wait_for("errno 2");
    client.wait_for("--takeover");
    client.type_line(&format!("login {a} {} --takeover", pw("alice")));
    client.wait_for(&format!("logged in as alice({a})"));
    read_until_kicked(&mut first);
    let mut third = Client::connect(srv.addr).unwrap();
    third.login_takeover(a, &pw("alice"), true).unwrap();
    let kicked = client.wait_for("kicked: ");
    assert!(kicked.contains("elsewhere"), "{kicked}");
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = client.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "chatclient did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        !status.success(),
        "the server ended the session: {status:?}"
    );
}

/// Two takeovers of one account on one server at once, again and again: each racer's first
/// frame is its own LOGIN_ACK (or errno 2), never the KICKED of the other racer's takeover
/// arriving before it (a client that is told "you were kicked" before "you are logged in"
/// cannot make sense of either).
#[test]
fn racing_takeovers_on_one_server_get_their_reply_first() {
    let srv = TestServer::start();
    let a = register(srv.addr, "alice");
    let mut acks = 0;
    for round in 0..40 {
        // Legacy logins read the backlog into their reply: a wider window for the race.
        let login = serde_json::json!({
            "msgid": msgid::LOGIN, "id": a, "password": pw("alice"),
            "sync": round % 2 == 0, "takeover": true
        });
        // From two addresses: the login gate hashes one address's logins one at a time.
        let racers: Vec<_> = ["127.0.0.2", "127.0.0.3"]
            .into_iter()
            .map(|source| {
                let (addr, login) = (srv.addr, login.clone());
                std::thread::spawn(move || {
                    let mut c = client_from(source, addr);
                    c.send(&login).unwrap();
                    (c.recv().unwrap(), c)
                })
            })
            .collect();
        for r in racers {
            let (first, _c) = r.join().unwrap();
            match first["msgid"].as_i64() {
                Some(msgid::LOGIN_ACK) => acks += 1,
                Some(msgid::ERROR) => assert_eq!(first["errno"], errno::ALREADY_ONLINE),
                _ => panic!("the first frame after a takeover LOGIN: {first}"),
            }
        }
    }
    assert!(acks >= 40, "only {acks} takeovers succeeded in 40 rounds");
}
