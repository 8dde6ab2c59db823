//! A cluster on a Redis that requires a password (issue 11). Every connection a server opens
//! (the pool, the subscriber, the publisher) authenticates with the URL's password or ACL user
//! and selects the URL's database, so two servers on it exchange 1:1 and group messages; a
//! server given a wrong password, none, a database Redis refuses or an unreachable Redis fails
//! to start: one line on stderr, exit 1, no password shown, nothing created or changed.
//!
//! The Redis is a private instance on a free port (`util::private_redis`), started with
//! `--requirepass` and, when redis-server has ACLs (6 and later), an ACL user; the machine's
//! shared Redis is not used.

mod util;

use clusterchat_proto::client::ClientError;
use clusterchat_proto::{errno, msgid};
use std::collections::HashMap;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use util::cluster::TestCluster;
use util::mysql_db::TestDb;
use util::private_redis::{supports_acl_users, PrivateRedis};
use util::private_service::free_port;

const PASSWORD: &str = "s3cret-default-pw";
const ACL_USER: &str = "chatnode";
const ACL_PASSWORD: &str = "s3cret-acl-pw";
const WRONG: &str = "not-the-pw-at-all";
/// The database the servers select (not 0, so that SELECT is proven).
const DB: u32 = 3;

/// A private Redis with a password for the default user and, if it can, an ACL user; and
/// whether it has the ACL user.
fn private_redis() -> Option<(PrivateRedis, bool)> {
    let acl = supports_acl_users();
    let rule = format!(">{ACL_PASSWORD}");
    let mut args = vec!["--requirepass", PASSWORD];
    if acl {
        args.extend(["--user", ACL_USER, "on", rule.as_str(), "~*", "&*", "+@all"]);
    }
    Some((PrivateRedis::start_with(&args)?, acl))
}

/// An admin connection (as the default user) to database `db` of the private Redis.
fn admin(redis: &PrivateRedis, db: u32) -> redis::Connection {
    redis::Client::open(format!("redis://:{PASSWORD}@127.0.0.1:{}/{db}", redis.port))
        .unwrap()
        .get_connection()
        .expect("admin connection to the private Redis")
}

/// `CLIENT LIST`, one map of fields per connection, without the asking one.
fn clients(redis: &PrivateRedis) -> Vec<HashMap<String, String>> {
    let mut c = admin(redis, 0);
    let me: i64 = redis::cmd("CLIENT").arg("ID").query(&mut c).unwrap();
    let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut c).unwrap();
    list.lines()
        .map(|line| {
            line.split_whitespace()
                .filter_map(|f| f.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>()
        })
        .filter(|f| f.get("id") != Some(&me.to_string()))
        .collect()
}

/// The connection's user (Redis before 6 has no `user` field: it is the default user).
fn user_of(conn: &HashMap<String, String>) -> &str {
    conn.get("user").map_or("default", String::as_str)
}

/// Each server's subscriber and publisher connection is in `CLIENT LIST` under its name
/// (`clusterchat:<node>:<role>`, set by the handshake), authenticated as its URL's user (server
/// 0: the default user; server 1: the ACL user if there are ACLs), on database 3, subscribed to
/// its own channel only / last used to route (the routing script); and the presence directory
/// names `users_per_server` users on each server.
fn assert_subscribers_and_publishers(
    redis: &PrivateRedis,
    cluster: &TestCluster,
    acl: bool,
    users_per_server: usize,
) {
    let conns = clients(redis);
    let by_name = |name: &str| {
        let found: Vec<_> = conns
            .iter()
            .filter(|f| f.get("name").is_some_and(|n| n == name))
            .collect();
        assert_eq!(found.len(), 1, "connections named {name}: {conns:?}");
        found[0]
    };
    for i in 0..2 {
        let node = format!("{}n{i}", cluster.prefix.trim_end_matches(':'));
        let user = if i == 1 && acl { ACL_USER } else { "default" };
        let sub = by_name(&format!("clusterchat:{node}:subscriber"));
        assert_eq!(
            (user_of(sub), sub["db"].as_str()),
            (user, DB.to_string().as_str()),
            "{sub:?}"
        );
        assert_eq!(sub["sub"], "1", "{sub:?}");
        let publisher = by_name(&format!("clusterchat:{node}:publisher"));
        assert_eq!(
            (user_of(publisher), publisher["db"].as_str()),
            (user, DB.to_string().as_str()),
            "{publisher:?}"
        );
        // Its last command routed a message: through the script, or straight to a server
        // its presence cache knew.
        assert!(
            ["evalsha", "publish"].contains(&publisher["cmd"].as_str()),
            "{publisher:?}"
        );
        let mut c = admin(redis, DB);
        let sessions: Vec<String> = redis::cmd("HVALS")
            .arg(format!("{}presence", cluster.prefix))
            .query(&mut c)
            .unwrap();
        let here = sessions
            .iter()
            .filter(|s| s.starts_with(&format!("{node}/")))
            .count();
        assert_eq!(here, users_per_server, "{node} in {sessions:?}");
    }
}

fn chatserver(args: &[&str], dir: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chatserver"))
        .args(args)
        .current_dir(dir)
        .env("CHAT_ARGON2_M_KIB", "256")
        .env("CHAT_HTTP", "off") // parallel tests: never the default HTTP port
        .stdin(Stdio::null())
        .output()
        .expect("run chatserver")
}

fn assert_no_password(what: &str, text: &str) {
    for pw in [PASSWORD, ACL_PASSWORD, WRONG] {
        assert!(!text.contains(pw), "{what} shows a password: {text}");
    }
}

/// Two servers, one authenticated by the default user's password and one as the ACL user
/// (both by the password when redis-server has no ACLs), both on database 3: 1:1 and group
/// messages cross between them; Redis sees every server connection authenticated (the ACL
/// user's subscriber and publisher are that user's) and on database 3, where the liveness
/// keys are; no log shows a password. Then a server given a wrong password on the same
/// database and node id fails and changes nothing: the users stay online.
#[test]
fn two_servers_chat_through_a_redis_that_requires_a_password() {
    let Some((redis, acl)) = private_redis() else {
        return;
    };
    let Some(db) = TestDb::create("redis_auth") else {
        return;
    };
    let port = redis.port;
    let url0 = format!("redis://:{PASSWORD}@127.0.0.1:{port}/{DB}");
    let url1 = if acl {
        format!("redis://{ACL_USER}:{ACL_PASSWORD}@127.0.0.1:{port}/{DB}")
    } else {
        url0.clone()
    };
    let mut cluster = TestCluster::start_on("redis_auth", 1, url0.clone(), db);
    cluster.add_server_with(&["--redis", &url1]);

    let (mut alice, a) = cluster.servers[0].user("alice");
    let (mut dan, d) = cluster.servers[0].user("dan");
    let (mut bob, b) = cluster.servers[1].user("bob");
    let (mut carol, c) = cluster.servers[1].user("carol");
    for i in 0..20 {
        alice.chat(a, b, &format!("a→b {i}")).unwrap();
        bob.chat(b, a, &format!("b→a {i}")).unwrap();
    }
    for i in 0..20 {
        let got = bob.recv_msgid(msgid::ONE_CHAT).unwrap();
        assert_eq!(got["msg"], format!("a→b {i}"));
        let got = alice.recv_msgid(msgid::ONE_CHAT).unwrap();
        assert_eq!(got["msg"], format!("b→a {i}"));
    }
    let g = alice
        .create_group(a, "locked", "behind a password")
        .unwrap();
    bob.join_group(b, g).unwrap();
    carol.join_group(c, g).unwrap();
    dan.join_group(d, g).unwrap();
    bob.group_chat(b, g, "from server 1").unwrap();
    dan.group_chat(d, g, "from server 0").unwrap();
    for (who, client, texts) in [
        (
            "alice",
            &mut alice,
            ["from server 1", "from server 0"].as_slice(),
        ),
        ("carol", &mut carol, &["from server 1", "from server 0"]),
        ("bob", &mut bob, &["from server 0"]),
        ("dan", &mut dan, &["from server 1"]),
    ] {
        for text in texts {
            let got = client.recv_msgid(msgid::GROUP_CHAT).unwrap();
            assert_eq!(got["msg"], *text, "{who}");
        }
    }

    // What Redis sees: every connection of the servers is on database 3, and each server's
    // subscriber and publisher are there, named, as the URL's user, subscribed / publishing.
    let conns = clients(&redis);
    for conn in &conns {
        assert_eq!(
            conn["db"],
            DB.to_string(),
            "a connection on another db: {conn:?}"
        );
    }
    assert_subscribers_and_publishers(&redis, &cluster, acl, 2);
    let node_keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}node:*", cluster.prefix))
        .query(&mut admin(&redis, DB))
        .unwrap();
    assert_eq!(
        node_keys.len(),
        2,
        "liveness keys in db {DB}: {node_keys:?}"
    );
    let in_db0: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}*", cluster.prefix))
        .query(&mut admin(&redis, 0))
        .unwrap();
    assert!(in_db0.is_empty(), "keys in db 0: {in_db0:?}");

    for (i, server) in cluster.servers.iter().enumerate() {
        let log = server.log().join("\n");
        assert_no_password(&format!("server {i}'s log"), &log);
        assert!(
            log.contains("cluster bus: Redis at redis://"),
            "server {i}: {log}"
        );
    }
    assert!(cluster.servers[0]
        .log()
        .iter()
        .any(|l| l.contains(&format!("redis://:***@127.0.0.1:{port}/{DB}"))));

    // A server with a wrong password, on the cluster's database and as server 0's node: it
    // stops before it opens the database, so server 0's users are not set offline.
    let node0 = format!("{}n0", cluster.prefix.trim_end_matches(':'));
    let wrong = format!("redis://:{WRONG}@127.0.0.1:{port}/{DB}");
    let dir = tempfile::tempdir().unwrap();
    let out = chatserver(
        &[
            "--listen",
            "127.0.0.1:0",
            "--db",
            &cluster.db.url,
            "--redis",
            &wrong,
            "--node-id",
            &node0,
            "--channel-prefix",
            &cluster.prefix,
        ],
        dir.path(),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("authentication"), "{err}");
    assert_no_password("the failed start", &err);
    match cluster.servers[1].client().login(a, "pw-alice") {
        Err(ClientError::Refused { errno: e, .. }) => assert_eq!(e, errno::ALREADY_ONLINE),
        other => panic!("a second login of alice, online on server 0: {other:?}"),
    }
    bob.chat(b, a, "still here").unwrap();
    assert_eq!(
        alice.recv_msgid(msgid::ONE_CHAT).unwrap()["msg"],
        "still here"
    );
}

/// Each way of not getting in is one line on stderr naming the problem, exit 1, nothing on
/// stdout, no password anywhere and no database file created.
#[test]
fn a_server_that_cannot_join_its_redis_is_one_line_and_exit_1() {
    let Some((redis, acl)) = private_redis() else {
        return;
    };
    let port = redis.port;
    let mut cases = vec![
        (
            format!("redis://:{WRONG}@127.0.0.1:{port}"),
            "refused authentication: WRONGPASS",
        ),
        (
            format!("redis://127.0.0.1:{port}"),
            "requires authentication (NOAUTH",
        ),
        (
            format!("redis://:{PASSWORD}@127.0.0.1:{port}/99"),
            "refused SELECT",
        ),
        (
            format!("redis://:{PASSWORD}@127.0.0.1:{}", free_port()),
            "cannot reach Redis at redis://:***@127.0.0.1:",
        ),
    ];
    if acl {
        cases.push((
            format!("redis://{ACL_USER}:{WRONG}@127.0.0.1:{port}"),
            "refused authentication: WRONGPASS",
        ));
        cases.push((
            format!("redis://{ACL_USER}:{PASSWORD}@127.0.0.1:{port}"),
            "refused authentication: WRONGPASS",
        ));
    }
    for (url, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let out = chatserver(
            &[
                "--listen",
                "127.0.0.1:0",
                "--db",
                "sqlite:chat.db",
                "--redis",
                &url,
            ],
            dir.path(),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        let shown = url.replace(PASSWORD, "PW").replace(WRONG, "WRONG");
        assert_eq!(out.status.code(), Some(1), "{shown}: {err}");
        assert_eq!(err.lines().count(), 1, "{shown}: {err}");
        assert!(err.starts_with("chatserver: "), "{shown}: {err}");
        assert!(
            err.contains(expected),
            "{shown}: expected {expected:?} in {err}"
        );
        assert!(out.stdout.is_empty(), "{shown}: stdout {:?}", out.stdout);
        assert_no_password(&shown, &err);
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "{shown}: created {left:?}");
    }
}

/// Redis restarted under two servers with a password (one as the ACL user when there are
/// ACLs): every socket authenticates again on its reconnection, so once the servers report
/// Redis back, fresh messages cross both ways live, one after the other (the first could come
/// from the log by the reconnection's resync; the later ones need the subscriber and the
/// publisher). The outage's log lines show no password.
#[test]
fn after_a_redis_restart_every_connection_authenticates_again() {
    let Some((mut redis, acl)) = private_redis() else {
        return;
    };
    let Some(db) = TestDb::create("redis_auth_restart") else {
        return;
    };
    let port = redis.port;
    let url0 = format!("redis://:{PASSWORD}@127.0.0.1:{port}/{DB}");
    let url1 = if acl {
        format!("redis://{ACL_USER}:{ACL_PASSWORD}@127.0.0.1:{port}/{DB}")
    } else {
        url0.clone()
    };
    let mut cluster = TestCluster::start_on("redis_auth_restart", 1, url0, db);
    cluster.add_server_with(&["--redis", &url1]);
    let (mut alice, a) = cluster.servers[0].user("alice");
    let (mut bob, b) = cluster.servers[1].user("bob");
    alice.chat(a, b, "before").unwrap();
    assert_eq!(bob.recv_msgid(msgid::ONE_CHAT).unwrap()["msg"], "before");

    let before: Vec<usize> = cluster.servers.iter().map(|s| s.log().len()).collect();
    redis.stop();
    alice.chat(a, b, "during").unwrap();
    redis.start_again();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cluster.servers.iter().enumerate().all(|(i, s)| {
        s.log()[before[i]..]
            .iter()
            .any(|l| l.contains("Redis subscriber reconnected"))
    }) {
        assert!(
            Instant::now() < deadline,
            "the subscribers did not reconnect: {:?}",
            cluster.servers.iter().map(|s| s.log()).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let text_is = |t: String| move |v: &serde_json::Value| v["msg"] == t.as_str();
    bob.recv_matching(text_is("during".into())).unwrap();
    for i in 0..3 {
        alice.chat(a, b, &format!("a→b after {i}")).unwrap();
        bob.recv_matching(text_is(format!("a→b after {i}")))
            .unwrap_or_else(|e| panic!("a→b after {i}: {e}"));
        bob.chat(b, a, &format!("b→a after {i}")).unwrap();
        alice
            .recv_matching(text_is(format!("b→a after {i}")))
            .unwrap_or_else(|e| panic!("b→a after {i}: {e}"));
    }
    // The new connections are the URL's users' again (a refusal would also have been logged).
    assert_subscribers_and_publishers(&redis, &cluster, acl, 1);
    for (i, server) in cluster.servers.iter().enumerate() {
        let log = server.log().join("\n");
        assert_no_password(&format!("server {i}'s log"), &log);
        for refusal in ["authentication", "NOAUTH", "WRONGPASS"] {
            assert!(!log.contains(refusal), "server {i}: {log}");
        }
    }
}
