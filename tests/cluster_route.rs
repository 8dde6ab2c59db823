//! Delivery routed by server (issue 11) on three servers (MySQL per-test database, Redis
//! per-test prefix, or a private Redis where a test counts its commands or restarts it):
//! 1:1 and group messages across all of them, published once per destination server; a
//! receiver that keeps moving between them; a server killed (what was sent to its users waits
//! in the log for their next login); Redis restarted while messages stream; a group of 10,000
//! members, all online, spread over the three.
//!
//! Everything asserted is a count or an order, never a duration: deadlines only bound waiting.

mod util;

use clusterchat_proto::client::Client;
use serde_json::Value;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use util::chatlog::{
    acked_seqs, group_chat, is_chat, one_chat, pw, send_pipelined, seq, sync_login, InOrder,
};
use util::cluster::TestCluster;
use util::mysql_db::TestDb;
use util::private_redis::PrivateRedis;

/// `INFO commandstats`' call count of `command` (0 before its first call).
fn calls(redis: &PrivateRedis, command: &str) -> u64 {
    let mut c = admin(redis);
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut c)
        .unwrap();
    let key = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(&key))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

/// A connection to the private Redis.
fn admin(redis: &PrivateRedis) -> redis::Connection {
    redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .expect("admin connection")
}

/// Reads chat frames on `c` until it has `n`; returns them (any ERROR fails).
fn chats(c: &mut Client, n: usize, who: &str) -> Vec<Value> {
    let mut got = Vec::new();
    while got.len() < n {
        let v = c
            .recv_matching(is_chat)
            .unwrap_or_else(|e| panic!("{who}: {} of {n} chats, then {e}", got.len()));
        got.push(v);
    }
    got
}

/// Four users on each of three servers, one group of all twelve. Every user sends one 1:1
/// message to a user on each other server; each gets exactly what was sent to them. Then
/// member 0 sends group messages one at a time: every other member gets each once, in seq
/// order, and Redis carries each with at most one PUBLISH per other server (2), not one per
/// remote member (8).
#[test]
fn one_to_one_and_group_across_three_servers_publish_once_per_server() {
    let Some(redis) = PrivateRedis::start() else {
        return;
    };
    let Some(db) = TestDb::create("route_three") else {
        return;
    };
    let cluster = TestCluster::start_on("route_three", 3, redis.url(), db);
    let mut users: Vec<(Client, i64, usize)> = Vec::new();
    for (s, server) in cluster.servers.iter().enumerate() {
        for k in 0..4 {
            let (c, id) = server.user(&format!("u{s}x{k}"));
            users.push((c, id, s));
        }
    }
    // 1:1: user i sends to the user with the same k on each other server.
    let ids: Vec<(i64, usize)> = users.iter().map(|(_, id, s)| (*id, *s)).collect();
    let mut want: HashMap<i64, Vec<String>> = HashMap::new();
    for (i, (c, from, s)) in users.iter_mut().enumerate() {
        for (j, &(to, t)) in ids.iter().enumerate() {
            if t != *s && j % 4 == i % 4 {
                let text = format!("{from}->{to}");
                c.chat(*from, to, &text).unwrap();
                want.entry(to).or_default().push(text);
            }
        }
    }
    for (c, id, _) in users.iter_mut() {
        let expected = want.remove(id).unwrap();
        let mut got: Vec<String> = chats(c, expected.len(), &format!("user {id}"))
            .iter()
            .map(|f| f["msg"].as_str().unwrap().to_string())
            .collect();
        let mut expected = expected;
        got.sort();
        expected.sort();
        assert_eq!(got, expected, "user {id}");
    }
    // The group.
    let g = {
        let (c, id, _) = &mut users[0];
        c.create_group(*id, "three", "").unwrap()
    };
    for (c, id, _) in users.iter_mut().skip(1) {
        c.join_group(*id, g).unwrap();
    }
    const K: u64 = 10;
    let before = calls(&redis, "publish");
    for i in 0..K {
        let (c, _, _) = &mut users[0];
        let acks = acked_seqs(
            &send_pipelined(c, &[group_chat(g, &format!("g{i}"))], 1),
            10,
        );
        assert_eq!(acks, [i as i64 + 1]);
        // Everyone has it before the next one goes: each message is routed on its own.
        for (c, id, _) in users.iter_mut().skip(1) {
            let f = &chats(c, 1, &format!("member {id}"))[0];
            assert_eq!(
                (f["msg"].as_str(), seq(f)),
                (Some(&*format!("g{i}")), i as i64 + 1)
            );
        }
    }
    let published = calls(&redis, "publish") - before;
    assert!(
        (1..=2 * K).contains(&published),
        "{published} PUBLISH for {K} group messages to 8 members on 2 other servers"
    );
    // The directory names every user's server.
    let mut c = admin(&redis);
    let dir: HashMap<String, String> = redis::cmd("HGETALL")
        .arg(format!("{}presence", cluster.prefix))
        .query(&mut c)
        .unwrap();
    assert_eq!(dir.len(), 12, "{dir:?}");
    for (_, id, s) in &users {
        let node = format!("{}n{s}/", cluster.prefix.trim_end_matches(':'));
        assert!(dir[&id.to_string()].starts_with(&node), "{id}: {dir:?}");
    }
}

/// A sync receiver logs out and in again, moving round the three servers, six times while a
/// sender on server 0 streams 2,000 messages to it: it holds every seq once, in order.
#[test]
fn a_receiver_moving_round_three_servers_gets_every_message_once_in_order() {
    let Some(cluster) = TestCluster::start("route_moves", 3) else {
        return;
    };
    let a = |i: usize| cluster.servers[i].addr;
    let homes = [a(1), a(2), a(0)];
    let moves = util::moving_receiver::stream_while_moving(a(0), &homes, 2000, 6);
    assert_eq!(moves.logins, 7);
    eprintln!("order under moves (three servers): {moves:?}");
}

/// Bob and carol are on server 2, dave on server 1, alice on server 0, all in one group. Server
/// 2 is killed (SIGKILL): what alice then sends (1:1 to bob, to the group) is acked, dave gets
/// the group messages live, and bob, logging in again on server 1 once server 2 is proven
/// gone, gets exactly what was sent to him, in seq order, and is then reached live there.
#[test]
fn a_killed_server_s_users_find_their_messages_at_the_next_login() {
    let Some(mut cluster) = TestCluster::start("route_kill", 3) else {
        return;
    };
    let (mut alice, ida) = cluster.servers[0].user("alice");
    let (mut dave, idd) = cluster.servers[1].user("dave");
    let (bob_legacy, idb) = cluster.servers[2].user("bob");
    let (mut carol, idc) = cluster.servers[2].user("carol");
    let g = alice.create_group(ida, "kill", "").unwrap();
    dave.join_group(idd, g).unwrap();
    carol.join_group(idc, g).unwrap();
    let mut bob = bob_legacy;
    bob.join_group(idb, g).unwrap();
    cluster.servers[2].signal("KILL");
    cluster.servers[2].wait_exit(Duration::from_secs(10));
    drop((bob, carol));

    const N: usize = 20;
    let mut reqs: Vec<Value> = (0..N)
        .map(|i| one_chat(idb, &format!("to bob {i}")))
        .collect();
    reqs.extend((0..N).map(|i| group_chat(g, &format!("to all {i}"))));
    let replies = send_pipelined(&mut alice, &reqs, 4);
    assert_eq!(
        acked_seqs(&replies[..N], 6),
        (1..=N as i64).collect::<Vec<_>>()
    );
    assert_eq!(
        acked_seqs(&replies[N..], 10),
        (1..=N as i64).collect::<Vec<_>>()
    );
    let live = chats(&mut dave, N, "dave");
    assert_eq!(
        live.iter().map(seq).collect::<Vec<_>>(),
        (1..=N as i64).collect::<Vec<_>>()
    );

    // Bob again, on server 1 (refused with errno 2 until server 2 is proven gone).
    let (mut bob, _) = sync_login(cluster.servers[1].addr, idb, &pw("bob"));
    let backlog = util::chatlog::read_sync(&mut bob);
    let mut by_conv: HashMap<&str, InOrder> = HashMap::new();
    for f in &backlog.chats {
        let conv = if f["msgid"] == 6 { "pair" } else { "group" };
        by_conv
            .entry(conv)
            .or_default()
            .take(seq(f))
            .unwrap_or_else(|e| panic!("{e}: {f}"));
    }
    assert_eq!(backlog.chats.len(), 2 * N, "{:?}", backlog.chats);
    assert_eq!(by_conv["pair"].max, N as i64);
    assert_eq!(by_conv["group"].max, N as i64);
    // His presence moved with him: a new message reaches him live on server 1.
    alice.chat(ida, idb, "after").unwrap();
    let f = &chats(&mut bob, 1, "bob on server 1")[0];
    assert_eq!((f["msg"].as_str(), seq(f)), (Some("after"), N as i64 + 1));
    // Carol's entry went with server 2: the survivors delete a dead server's entries.
    let mut c = redis::Client::open(cluster.redis.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let dead = format!("{}n2/", cluster.prefix.trim_end_matches(':'));
    let directory = format!("{}presence", cluster.prefix);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let dir: HashMap<String, String> =
            redis::cmd("HGETALL").arg(&directory).query(&mut c).unwrap();
        if !dir.values().any(|s| s.starts_with(&dead)) {
            assert!(dir[&idb.to_string()].contains("n1/"), "{dir:?}");
            assert!(!dir.contains_key(&idc.to_string()), "{dir:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "entries of the dead server stay: {dir:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let _: () = redis::cmd("DEL").arg(&directory).query(&mut c).unwrap();
}

/// Redis restarted while alice (server 0) streams 1:1 messages to bob (server 1) and group
/// messages to bob and carol (server 2), all sync sessions: every message is acked, and each
/// receiver holds every seq of each conversation once, in order (what was pushed while Redis
/// was down is read from the log once the servers are back in the directory).
#[test]
fn a_redis_restart_mid_stream_loses_and_repeats_nothing() {
    let _serial = util::faults::serial();
    let Some(mut redis) = PrivateRedis::start() else {
        return;
    };
    let Some(db) = TestDb::create("route_restart") else {
        return;
    };
    let cluster = TestCluster::start_on("route_restart", 3, redis.url(), db);
    let s = |i: usize| cluster.servers[i].addr;
    let mut setup = Client::connect(s(0)).unwrap();
    let ida = setup.register("alice", &pw("alice")).unwrap();
    let idb = setup.register("bob", &pw("bob")).unwrap();
    let idc = setup.register("carol", &pw("carol")).unwrap();
    let (mut alice, _) = sync_login(s(0), ida, &pw("alice"));
    let g = alice.create_group(ida, "restart", "").unwrap();
    let (mut bob, _) = sync_login(s(1), idb, &pw("bob"));
    let (mut carol, _) = sync_login(s(2), idc, &pw("carol"));
    bob.join_group(idb, g).unwrap();
    carol.join_group(idc, g).unwrap();
    util::chatlog::read_sync(&mut bob);
    util::chatlog::read_sync(&mut carol);

    const N: usize = 300;
    let receive = |mut c: Client, convs: usize, who: &'static str| {
        std::thread::spawn(move || {
            let mut held: HashMap<i64, InOrder> = HashMap::new();
            let deadline = Instant::now() + Duration::from_secs(90);
            while held.len() < convs || held.values().any(|h| h.max < N as i64) {
                assert!(Instant::now() < deadline, "{who} holds {held:?}");
                let Ok(f) = c.recv() else { continue };
                if !is_chat(&f) {
                    continue;
                }
                held.entry(f["msgid"].as_i64().unwrap())
                    .or_default()
                    .take(seq(&f))
                    .unwrap_or_else(|e| panic!("{who}: {e}: {f}"));
            }
            held
        })
    };
    let rb = receive(bob, 2, "bob");
    let rc = receive(carol, 1, "carol");
    let mut pair = Vec::new();
    let mut group = Vec::new();
    for round in 0..3 {
        let reqs: Vec<Value> = (0..N / 3)
            .flat_map(|i| {
                let n = round * N / 3 + i;
                [
                    one_chat(idb, &format!("p{n}")),
                    group_chat(g, &format!("g{n}")),
                ]
            })
            .collect();
        let replies = send_pipelined(&mut alice, &reqs, 8);
        pair.extend(acked_seqs(
            &replies.iter().step_by(2).cloned().collect::<Vec<_>>(),
            6,
        ));
        group.extend(acked_seqs(
            &replies
                .iter()
                .skip(1)
                .step_by(2)
                .cloned()
                .collect::<Vec<_>>(),
            10,
        ));
        match round {
            0 => redis.stop(),
            1 => redis.start_again(),
            _ => {}
        }
    }
    assert_eq!(pair, (1..=N as i64).collect::<Vec<_>>());
    assert_eq!(group, (1..=N as i64).collect::<Vec<_>>());
    for (who, held) in [("bob", rb.join().unwrap()), ("carol", rc.join().unwrap())] {
        for (conv, h) in &held {
            assert_eq!((h.max, h.dups), (N as i64, 0), "{who}, msgid {conv}");
        }
    }
}

/// A group of 10,000 members, all online, spread over the three servers (chatbench's group
/// scenario, one sender, one message in flight): every message reaches every other member
/// (0 lost), and every ACK comes back.
#[test]
fn a_group_of_ten_thousand_members_across_three_servers() {
    let Some(db) = TestDb::create("route_10k") else {
        return;
    };
    let Some(redis) = util::cluster::redis_url() else {
        return;
    };
    let mut cluster = TestCluster::start_on("route_10k", 0, redis, db);
    for _ in 0..3 {
        cluster.add_server_with(&["--argon2-m-kib", "8"]);
    }
    let settings = chatbench::Settings {
        targets: cluster.servers.iter().map(|s| s.addr).collect(),
        users: 10_000,
        senders: 1,
        window: 1,
        duration: Duration::from_millis(1500),
        grace: Duration::from_secs(20),
        timeout: Duration::from_secs(180),
        threads: 2,
        concurrency: 16,
        server_pids: cluster.servers.iter().map(|s| s.pid()).collect(),
        ..chatbench::Settings::default()
    };
    let r = chatbench::group::run(&settings).expect("group of 10,000");
    let t = r.table();
    eprintln!("{t}");
    assert!(r.sent > 0, "{t}");
    assert_eq!((r.lost, r.errors, r.disconnects), (0, 0, 0), "{t}");
    assert_eq!(r.delivered, r.sent, "{t}");
}

/// The sender's presence cache goes stale: alice (server 0) reaches bob on server 1, so her
/// server caches bob -> server 1; bob moves to server 2 and alice at once sends again. Her
/// server publishes straight to server 1 (one PUBLISH), which does not hold bob and routes the
/// message through the directory (one script call, one PUBLISH): bob gets it live on server 2.
/// Then bob leaves altogether: the next message misses, is routed again, finds nobody and
/// waits in the log, where bob's next login finds it.
#[test]
fn a_stale_presence_cache_still_delivers_live_after_a_move() {
    let Some(redis) = PrivateRedis::start() else {
        return;
    };
    let Some(db) = TestDb::create("route_stale") else {
        return;
    };
    let cluster = TestCluster::start_on("route_stale", 3, redis.url(), db);
    let (mut alice, _ida) = cluster.servers[0].user("alice");
    let (mut bob, idb) = cluster.servers[1].user("bob");
    let acks = acked_seqs(&send_pipelined(&mut alice, &[one_chat(idb, "m1")], 1), 6);
    assert_eq!(acks, [1]);
    let cached_at = Instant::now();
    assert_eq!(chats(&mut bob, 1, "bob")[0]["msg"], "m1");
    drop(bob);
    let (mut bob, _) = sync_login(cluster.servers[2].addr, idb, &pw("bob"));
    let (publish, evalsha) = (calls(&redis, "publish"), calls(&redis, "evalsha"));
    let fresh = cached_at.elapsed() < Duration::from_millis(1500);
    let acks = acked_seqs(&send_pipelined(&mut alice, &[one_chat(idb, "m2")], 1), 6);
    assert_eq!(acks, [2]);
    // The sync may hand m1 again first (if its read was not recorded yet); m2 comes live, or
    // from the sync's read of the log when a loaded machine runs that read after m2's commit
    // and before the publish: the publish and the re-route then still happen, later (and the
    // session drops the live copy). So the commands are counted once both are in.
    let f = loop {
        let f = bob.recv_matching(is_chat).expect("m2 on server 2");
        if seq(&f) != 1 {
            break f;
        }
    };
    assert_eq!((f["msg"].as_str(), seq(&f)), (Some("m2"), 2));
    let deadline = Instant::now() + Duration::from_secs(10);
    let (publish, evalsha) = loop {
        let counted = (
            calls(&redis, "publish") - publish,
            calls(&redis, "evalsha") - evalsha,
        );
        if (counted.0 >= 2 && counted.1 >= 1) || Instant::now() > deadline {
            break counted;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if fresh {
        assert_eq!(
            (publish, evalsha),
            (2, 1),
            "a direct PUBLISH to server 1, then one routing by the directory"
        );
    } else {
        eprintln!("the cache had expired before m2 (a slow machine): {publish} PUBLISH, {evalsha} EVALSHA");
    }
    // Bob leaves: the cache (bob -> server 2) is stale again, and nobody holds him now.
    drop(bob);
    std::thread::sleep(Duration::from_millis(200));
    let acks = acked_seqs(&send_pipelined(&mut alice, &[one_chat(idb, "m3")], 1), 6);
    assert_eq!(acks, [3]);
    let (mut bob, _) = sync_login(cluster.servers[1].addr, idb, &pw("bob"));
    let mut last = 0;
    while last < 3 {
        let f = bob.recv_matching(is_chat).expect("m3 in bob's log read");
        assert!(seq(&f) > last, "seq {} after {last}", seq(&f));
        last = seq(&f);
    }
    assert_eq!(last, 3);
}

/// Redis loses the presence directory while every connection stays up (an operator's
/// FLUSHALL; a DEL or an eviction alike): each server notices within its heartbeat, writes its
/// entries again and reads the log for its users, so messages reach online receivers live
/// again, those sent meanwhile included, without anyone logging in again.
#[test]
fn a_lost_presence_directory_is_written_again() {
    let Some(redis) = PrivateRedis::start() else {
        return;
    };
    let Some(db) = TestDb::create("route_flushed") else {
        return;
    };
    let cluster = TestCluster::start_on("route_flushed", 2, redis.url(), db);
    let (mut alice, _) = cluster.servers[0].user("alice");
    let (_, idb) = cluster.servers[1].user("bob");
    let (mut bob, _) = sync_login(cluster.servers[1].addr, idb, &pw("bob"));
    let acks = acked_seqs(&send_pipelined(&mut alice, &[one_chat(idb, "m1")], 1), 6);
    assert_eq!(acks, [1]);
    assert_eq!(chats(&mut bob, 1, "bob")[0]["msg"], "m1");
    let _: () = redis::cmd("FLUSHALL").query(&mut admin(&redis)).unwrap();
    // Past the sender's cache (2 s): m2 is routed by the directory as Redis now holds it.
    std::thread::sleep(Duration::from_millis(2500));
    let acks = acked_seqs(&send_pipelined(&mut alice, &[one_chat(idb, "m2")], 1), 6);
    assert_eq!(acks, [2]);
    let f = loop {
        let f = bob
            .recv_matching(is_chat)
            .expect("m2 while bob stays connected");
        if seq(&f) != 1 {
            break f;
        }
    };
    assert_eq!((f["msg"].as_str(), seq(&f)), (Some("m2"), 2));
}
