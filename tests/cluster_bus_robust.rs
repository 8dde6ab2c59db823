//! The Redis bus when Redis ends connections by itself or a server comes back at once, on two
//! servers over a private Redis (never the machine's shared one) and a per-test MySQL
//! database:
//! * Redis closes the servers' idle connections (as its `timeout` config, an operator's
//!   `CLIENT KILL` or a proxy's idle cut do): the next cross-server push and the next
//!   takeover login go through on a new connection, with no error and no outage logged.
//! * A server killed with SIGKILL and started again at once under the same node id: the
//!   presence directory holds none of the dead run's entries, and delivery to its users works
//!   once they log in again.
//!
//! Everything asserted is a count, an errno or a directory entry, never a duration: deadlines
//! only bound waiting.

mod util;

use clusterchat_proto::client::Client;
use clusterchat_proto::msgid;
use serde_json::{json, Value};
use std::collections::HashMap;
use util::chatlog::{acked_seqs, is_chat, one_chat, pw, read_sync, send_pipelined, sync_login};
use util::cluster::TestCluster;
use util::faults::register;
use util::mysql_db::TestDb;
use util::private_redis::PrivateRedis;

/// A connection to the private Redis.
fn admin(redis: &PrivateRedis) -> redis::Connection {
    redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .expect("admin connection")
}

/// The presence directory of `cluster` (user id -> session).
fn directory(redis: &PrivateRedis, cluster: &TestCluster) -> HashMap<String, String> {
    redis::cmd("HGETALL")
        .arg(format!("{}presence", cluster.prefix))
        .query(&mut admin(redis))
        .unwrap()
}

/// What a server's session names start with: `<node>/`.
fn node_of(cluster: &TestCluster, i: usize) -> String {
    format!("{}n{i}/", cluster.prefix.trim_end_matches(':'))
}

/// Sends one chat from `c` to `to` and waits for its ACK (errno 0).
fn chat(c: &mut Client, to: i64, text: &str) {
    let acks = acked_seqs(&send_pipelined(c, &[one_chat(to, text)], 1), 6);
    assert_eq!(acks.len(), 1, "{text}");
}

/// Reads `c` until the chat `text` comes.
fn receive(c: &mut Client, text: &str, who: &str) {
    c.recv_matching(|v| is_chat(v) && v["msg"] == text)
        .unwrap_or_else(|e| panic!("{who} did not get {text:?}: {e}"));
}

/// The lines of `log` that report Redis as unavailable.
fn outages(log: &[String]) -> Vec<&String> {
    log.iter()
        .filter(|l| l.contains("Redis unavailable") || l.contains("message bus unavailable"))
        .collect()
}

/// Alice (server 0) and bob (server 1) have chatted both ways, so each server's publisher is
/// connected. Redis then closes every normal connection (`CLIENT KILL TYPE normal`: the
/// publishers and the pools, not the subscribers), as its `timeout` does to idle ones. Alice's
/// next message to bob is pushed live: server 0 sends it again on a new connection, without
/// reporting Redis unavailable (which would leave it to the slower nudge). Then alice logs in
/// on server 1 with takeover, which publishes a kick on server 1's closed publisher: it
/// succeeds (errno 0, not 108), and her old session is kicked.
#[test]
fn connections_closed_by_redis_are_replaced_without_an_error() {
    let Some(redis) = PrivateRedis::start() else {
        return;
    };
    let Some(db) = TestDb::create("bus_closed") else {
        return;
    };
    let cluster = TestCluster::start_on("bus_closed", 2, redis.url(), db);
    let (s0, s1) = (cluster.servers[0].addr, cluster.servers[1].addr);
    let ida = register(s0, "alice");
    let idb = register(s1, "bob");
    let (mut alice, _) = sync_login(s0, ida, &pw("alice"));
    read_sync(&mut alice);
    let (mut bob, _) = sync_login(s1, idb, &pw("bob"));
    read_sync(&mut bob);
    chat(&mut alice, idb, "warm 0->1");
    receive(&mut bob, "warm 0->1", "bob");
    chat(&mut bob, ida, "warm 1->0");
    receive(&mut alice, "warm 1->0", "alice");

    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .query(&mut admin(&redis))
        .unwrap();
    let names: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query(&mut admin(&redis))
        .unwrap();
    assert!(!names.contains(":publisher"), "{killed} killed: {names}");

    chat(&mut alice, idb, "after the kill");
    receive(&mut bob, "after the kill", "bob");
    // Pushed, not nudged: server 0 never found Redis unavailable.
    let log = cluster.servers[0].log();
    assert!(outages(&log).is_empty(), "server 0: {:?}", outages(&log));

    let mut new = Client::connect(s1).unwrap();
    new.send(&json!({
        "msgid": msgid::LOGIN, "id": ida, "password": pw("alice"), "sync": true, "takeover": true
    }))
    .unwrap();
    let ack: Value = new
        .recv_matching(|v| v["msgid"] == msgid::LOGIN_ACK || v["msgid"] == msgid::ERROR)
        .expect("LOGIN_ACK");
    assert_eq!(ack["errno"], 0, "takeover login: {ack}");
    alice
        .recv_matching(|v| v["msgid"] == msgid::KICKED)
        .expect("the old session is kicked");

    for (i, server) in cluster.servers.iter().enumerate() {
        let log = server.log();
        assert!(outages(&log).is_empty(), "server {i}: {:?}", outages(&log));
    }
}

/// Bob and carol are online on server 1, which is killed with SIGKILL and started again at
/// once under the same node id (its liveness key never expires, so server 0 never finds it
/// gone). Before it serves, the directory holds none of the dead run's entries; bob logs in
/// there again and a message from alice on server 0 reaches him live.
#[test]
fn a_server_restarted_at_once_deletes_its_previous_run_s_entries() {
    let Some(redis) = PrivateRedis::start() else {
        return;
    };
    let Some(db) = TestDb::create("bus_restart") else {
        return;
    };
    let mut cluster = TestCluster::start_on("bus_restart", 2, redis.url(), db);
    let (mut alice, ida) = cluster.servers[0].user("alice");
    let (_bob, idb) = cluster.servers[1].user("bob");
    let (_carol, idc) = cluster.servers[1].user("carol");
    let n1 = node_of(&cluster, 1);
    let before = directory(&redis, &cluster);
    for id in [idb, idc] {
        assert!(before[&id.to_string()].starts_with(&n1), "{id}: {before:?}");
    }

    // SIGKILL and a new process with the same flags (node id, prefix, database) at once.
    cluster.servers[1].restart();
    let after = directory(&redis, &cluster);
    // Nobody has logged in on the new run yet: every entry naming server 1 is the dead run's.
    let stale: Vec<_> = after.iter().filter(|(_, s)| s.starts_with(&n1)).collect();
    assert!(
        stale.is_empty(),
        "entries of the dead run: {stale:?} (before: {before:?})"
    );
    assert!(after[&ida.to_string()].starts_with(&node_of(&cluster, 0)));

    let (mut bob, _) = sync_login(cluster.servers[1].addr, idb, &pw("bob"));
    read_sync(&mut bob);
    chat(&mut alice, idb, "after the restart");
    receive(&mut bob, "after the restart", "bob");
    let now = directory(&redis, &cluster);
    assert!(now[&idb.to_string()].starts_with(&n1), "{now:?}");
    assert!(!now.contains_key(&idc.to_string()), "{now:?}");
}
