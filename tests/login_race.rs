//! A message that arrives while a login is reading the offline queue is neither lost nor
//! duplicated, and everything arrives in the order sent: the receiver logs in and out over
//! and over while the sender streams messages.

mod util;

use clusterchat_proto::client::Client;
use clusterchat_proto::msgid;
use serde_json::{json, Value};
use util::cluster::TestCluster;
use util::server::TestServer;

const MESSAGES: usize = 2000;

/// Alice (on `sender`) streams numbered messages to Bob while Bob logs in and out, each time on
/// the next of `receivers`. Returns the numbers Bob saw, in the order he saw them.
fn stream_during_logins(sender: &TestServer, receivers: &[&TestServer]) -> Vec<usize> {
    let (mut alice, a) = sender.user("alice");
    let mut bob = receivers[0].client();
    let b = bob.register("bob", "pw").unwrap();
    let streamer = std::thread::spawn(move || {
        for i in 0..MESSAGES {
            alice.chat(a, b, &i.to_string()).unwrap();
        }
    });
    let mut seen = Vec::new();
    let mut settle_until = 0;
    let number = |m: &Value| m["msg"].as_str().unwrap().parse::<usize>().unwrap();
    for round in 0.. {
        let finished = streamer.is_finished();
        let mut c: Client = receivers[round % receivers.len()].client();
        let ack = c.login(b, "pw").unwrap();
        for s in ack["offlinemsg"].as_array().unwrap() {
            seen.push(number(&serde_json::from_str(s.as_str().unwrap()).unwrap()));
        }
        // Everything delivered live to this session arrives before the logout's ack.
        c.send(&json!({"msgid": msgid::LOGOUT, "id": b, "reqid": "bye"}))
            .unwrap();
        loop {
            let m = c.recv().unwrap();
            if m["reqid"] == "bye" {
                break;
            }
            assert_eq!(m["msgid"], msgid::ONE_CHAT, "{m}");
            seen.push(number(&m));
        }
        // After the stream, a few more logins pick up what was still on its way (stored
        // offline behind the last one); a lost message would never come.
        if finished && (seen.len() >= MESSAGES || round >= settle_until) {
            break;
        }
        if !finished {
            settle_until = round + 20;
        } else {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    streamer.join().unwrap();
    seen
}

fn single_server() {
    let srv = TestServer::start();
    let seen = stream_during_logins(&srv, &[&srv]);
    assert_eq!(seen, (0..MESSAGES).collect::<Vec<_>>());
}

#[test]
fn across_servers_of_a_cluster() {
    let Some(cluster) = TestCluster::start("login_race", 2) else {
        return;
    };
    let seen = stream_during_logins(
        &cluster.servers[0],
        &[&cluster.servers[1], &cluster.servers[0]],
    );
    let mut sorted = seen.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        (0..MESSAGES).collect::<Vec<_>>(),
        "none lost, none twice"
    );
}

on_both_backends!(single_server);
