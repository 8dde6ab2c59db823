//! Fault injection on a cluster: MariaDB stopped and started again under two servers.
//! Requests that need the database get error replies (no hang, no crash) while it is down and
//! work again once it is back, and a user whose connection closed during the outage can log
//! in again afterwards.
//!
//! MariaDB is only ever stopped when it is a private instance that the test started itself
//! (`util::private_mysql`, with a private Redis beside it); the machine's shared services are
//! never stopped, flushed or reconfigured. The tests run one at a time (they are heavy, and
//! the machine may have two cores) and print a summary of what they saw.
//!
//! Nothing here asserts how long something took: deadlines only bound waiting for something
//! that must become true. The helpers shared by the fault tests are in `util::faults`.

mod util;

use clusterchat_proto::errno;
use std::time::{Duration, Instant};
use util::cluster::TestCluster;
use util::faults::{inboxes_now, register, serial, wait_inboxes, REPLY};
use util::peer::{Inboxes, Peer, Reply};
use util::private_mysql::PrivateMysql;
use util::private_redis::PrivateRedis;

/// The reply to a request that needs the database while it is down: (errno, errmsg), or a
/// description of what came instead.
fn db_refusal(
    reply: Result<Result<i64, clusterchat_proto::client::ClientError>, String>,
) -> (i64, String) {
    use clusterchat_proto::client::ClientError;
    match reply {
        Ok(Err(ClientError::Refused { errno, errmsg })) => (errno, errmsg),
        Ok(Ok(v)) => panic!("succeeded with the database down: {v}"),
        Ok(Err(e)) => panic!("no error reply with the database down: {e}"),
        Err(e) => panic!("{e}"),
    }
}

/// A client of `addr` with a read timeout of [`REPLY`].
fn client(addr: std::net::SocketAddr) -> clusterchat_proto::client::Client {
    let mut c = clusterchat_proto::client::Client::connect(addr).expect("connect");
    c.set_timeout(Some(REPLY)).expect("timeout");
    c
}

/// The cluster of the MariaDB tests: two servers on a private MariaDB and a private Redis.
/// `None` (skip) when either binary is missing.
fn mysql_cluster(tag: &str) -> Option<(PrivateMysql, PrivateRedis, TestCluster)> {
    let mysql = PrivateMysql::start()?;
    let redis = PrivateRedis::start()?;
    let db = mysql.test_db(tag);
    let cluster = TestCluster::start_on(tag, 2, redis.url(), db);
    Some((mysql, redis, cluster))
}

/// Polls REG through `addr` every 250 ms until it succeeds (bounded); the new user's id.
fn register_until(addr: std::net::SocketAddr, name: &str, timeout: Duration) -> Option<i64> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(id) = client(addr).register(name, &format!("pw-{name}")) {
            return Some(id);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Two servers on a private MariaDB; alice and bob on server 0, carol on server 1, dave
/// registered but offline. MariaDB is stopped: REG, LOGIN and a message to an offline user
/// get error replies (errno non-zero; UNAVAILABLE for chat) within the reply bound — no hang,
/// no crash; a chat between alice and bob (same server) is tried and reported. MariaDB starts
/// again on the same data directory and port: registrations and logins work again (bounded
/// polling), offline storage and cross-server chat too.
#[test]
fn mysql_stop_and_start_under_two_servers() {
    let _serial = serial();
    let Some((mut mysql, _redis, mut cluster)) = mysql_cluster("faults_mysql") else {
        return;
    };
    let (s0, s1) = (cluster.servers[0].addr, cluster.servers[1].addr);
    let (a, b, c, d) = (
        register(s0, "alice"),
        register(s0, "bob"),
        register(s1, "carol"),
        register(s1, "dave"),
    );
    let inboxes = Inboxes::default();
    let mut alice = Peer::connect(s0, a, &inboxes);
    let mut bob = Peer::connect(s0, b, &inboxes);
    let mut carol = Peer::connect(s1, c, &inboxes);
    for (p, pw) in [
        (&mut alice, "pw-alice"),
        (&mut bob, "pw-bob"),
        (&mut carol, "pw-carol"),
    ] {
        assert_eq!(p.login(pw, REPLY).expect("LOGIN_ACK")["errno"], 0);
    }
    assert_eq!(alice.chat_wait(c, 1, REPLY), Some(Reply::Ack));

    mysql.stop();
    assert!(!mysql.is_up());
    // Requests that need the database, in parallel (each may wait for the pool timeout).
    let reg = std::thread::spawn(move || client(s0).register("erin", "pw-erin"));
    let login = std::thread::spawn(move || {
        client(s1)
            .login(d, "pw-dave")
            .map(|v| v["errno"].as_i64().unwrap_or(0))
    });
    let to_offline = alice.chat_wait(d, 2, REPLY);
    let same_server = alice.chat_wait(b, 3, REPLY);
    let same_server_live = same_server == Some(Reply::Ack)
        && wait_inboxes(&inboxes, Duration::from_secs(10), |ib| {
            ib.get(&b).is_some_and(|i| i.live.contains(&(a, 3)))
        });
    let cross_server = alice.chat_wait(c, 4, REPLY);
    let (reg_errno, reg_msg) = db_refusal(
        reg.join()
            .map_err(|_| "register thread panicked".to_string()),
    );
    let (login_errno, login_msg) = db_refusal(
        login
            .join()
            .map_err(|_| "login thread panicked".to_string()),
    );
    for (i, s) in cluster.servers.iter_mut().enumerate() {
        assert!(s.is_running(), "server {i} died while MariaDB was down");
    }
    eprintln!(
        "mysql down: REG -> errno {reg_errno} {reg_msg:?}; LOGIN -> errno {login_errno} \
         {login_msg:?}; chat to an offline user -> {to_offline:?}; chat on the same server -> \
         {same_server:?} (delivered: {same_server_live}); chat across servers -> {cross_server:?}"
    );
    assert_ne!(reg_errno, 0);
    assert_ne!(login_errno, 0);
    match &to_offline {
        Some(Reply::Error(e, _)) => assert_eq!(*e, errno::UNAVAILABLE, "{to_offline:?}"),
        other => panic!("a message to an offline user with the database down: {other:?}"),
    }
    assert!(
        same_server.is_some(),
        "chat on the same server got no reply"
    );
    assert!(cross_server.is_some(), "chat across servers got no reply");

    mysql.start_again();
    let e = register_until(s0, "erin", Duration::from_secs(60))
        .expect("registration works again after MariaDB restarted");
    let mut erin = client(s1);
    erin.login(e, "pw-erin")
        .expect("login works again after MariaDB restarted");
    // Offline storage: dave gets alice's message at his login.
    assert_eq!(alice.chat_wait(d, 5, REPLY), Some(Reply::Ack));
    let mut dave = Peer::connect(s1, d, &inboxes);
    assert_eq!(dave.login("pw-dave", REPLY).expect("LOGIN_ACK")["errno"], 0);
    assert!(inboxes_now(&inboxes)
        .get(&d)
        .is_some_and(|i| i.offline == [(a, 5)]));
    // Cross-server chat between sessions that lived through the outage.
    assert_eq!(alice.chat_wait(c, 6, REPLY), Some(Reply::Ack));
    assert!(wait_inboxes(&inboxes, Duration::from_secs(10), |ib| {
        ib.get(&c).is_some_and(|i| i.live.contains(&(a, 6)))
    }));
    for (i, s) in cluster.servers.iter_mut().enumerate() {
        assert!(s.is_running(), "server {i} died after MariaDB came back");
    }
}

/// A user whose connection closes while MariaDB is down cannot mark themselves offline then.
/// Once MariaDB is back they must be able to log in again — through the same server and
/// through another one — within a bounded wait.
#[test]
fn a_user_who_leaves_during_a_mysql_outage_can_log_in_afterwards() {
    let _serial = serial();
    let Some((mut mysql, _redis, mut cluster)) = mysql_cluster("faults_mysql_leave") else {
        return;
    };
    let (s0, s1) = (cluster.servers[0].addr, cluster.servers[1].addr);
    let (c, f) = (register(s1, "carol"), register(s1, "frank"));
    let inboxes = Inboxes::default();
    let mut carol = Peer::connect(s1, c, &inboxes);
    let mut frank = Peer::connect(s1, f, &inboxes);
    assert_eq!(carol.login("pw-carol", REPLY).unwrap()["errno"], 0);
    assert_eq!(frank.login("pw-frank", REPLY).unwrap()["errno"], 0);

    mysql.stop();
    carol.close();
    frank.close();
    // Server 1 tries to mark them offline, and gives up once the pool times out.
    let deadline = Instant::now() + Duration::from_secs(30);
    let gave_up = |log: &[String]| {
        log.iter()
            .filter(|l| l.contains("could not mark offline"))
            .count()
    };
    while gave_up(&cluster.servers[1].log()) < 2 {
        assert!(
            Instant::now() < deadline,
            "server 1 neither released nor gave up on the sessions"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    mysql.start_again();
    assert!(register_until(s0, "probe", Duration::from_secs(60)).is_some());

    // frank comes back through the server he left, carol through the other one.
    let mut frank = Peer::connect(s1, f, &inboxes);
    let same = frank.login_until("pw-frank", Instant::now() + Duration::from_secs(15));
    let mut carol = Peer::connect(s0, c, &inboxes);
    let other = carol.login_until("pw-carol", Instant::now() + Duration::from_secs(15));
    for (i, s) in cluster.servers.iter_mut().enumerate() {
        assert!(s.is_running(), "server {i} died");
    }
    eprintln!(
        "left during the outage: same server -> {:?}; other server -> {:?}",
        same.as_ref().map(|(_, n)| *n),
        other.as_ref().map(|(_, n)| *n)
    );
    assert!(
        same.is_ok(),
        "login through the same server refused: {same:?}"
    );
    assert!(
        other.is_ok(),
        "login through another server refused: {other:?}"
    );
}
