//! A start that fails harms nobody: a bad `--db` is one line and exit 2, creating nothing; a
//! server that cannot bind, lock its database or reach Redis exits with one line before it
//! releases any session, so the users of a server already running on that database stay
//! online; a SQLite file is one server's alone; a standalone server on a cluster's MySQL
//! database releases none of the cluster's sessions (issue 10, cases 10 and 11).

mod util;

use clusterchat_proto::client::ClientError;
use clusterchat_proto::errno;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use util::cluster::TestCluster;
use util::server::TestServer;

/// Runs `chatserver` with `args` in `dir` until it exits; one that is still running after
/// 30 s (it started instead of refusing) is killed, and the test fails.
fn chatserver(args: &[&str], dir: &std::path::Path) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_chatserver"))
        .args(args)
        .current_dir(dir)
        .env("CHAT_ARGON2_M_KIB", "256")
        .env("CHAT_HTTP", "off") // parallel tests: never the default HTTP port
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run chatserver");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("wait");
            panic!(
                "chatserver {args:?} started instead of refusing: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("wait")
}

#[test]
fn an_unknown_db_scheme_is_one_line_and_exit_2_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = chatserver(&["--listen", "127.0.0.1:0", "--db", "foo:bar"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("chatserver: --db must be sqlite:PATH or mysql://"),
        "{err}"
    );
    let out = chatserver(&["--listen", "127.0.0.1:0", "--db", "sqlite:"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("chatserver: --db sqlite: needs a file path"),
        "{err}"
    );
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "created {left:?}");
}

fn a_server_that_cannot_bind_leaves_the_running_one_alone() {
    let srv = TestServer::start();
    let (_alice, a) = srv.user("alice");
    let dir = tempfile::tempdir().unwrap();
    let out = chatserver(&["--listen", "bogus", "--db", &srv.db], dir.path());
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot listen on bogus"), "{err}");
    // alice is still online: a second login of hers is refused as before.
    match srv.client().login(a, "pw-alice") {
        Err(ClientError::Refused { errno: e, .. }) => assert_eq!(e, errno::ALREADY_ONLINE),
        other => panic!("a second login of an online user: {other:?}"),
    }
}

/// The one line a failed start printed (it exits 1).
fn one_failure_line(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("chatserver: "), "{err}");
    err
}

/// `user` is still online on `srv`: a second login is refused with errno 2, as before.
fn still_online(srv: &TestServer, user: i64, password: &str) {
    match srv.client().login(user, password) {
        Err(ClientError::Refused { errno: e, .. }) => assert_eq!(e, errno::ALREADY_ONLINE),
        other => panic!("a second login of online user {user}: {other:?}"),
    }
}

#[test]
fn a_second_server_on_the_same_sqlite_file_refuses_to_start() {
    let srv = TestServer::start();
    let (_alice, a) = srv.user("alice");
    let dir = tempfile::tempdir().unwrap();
    let out = chatserver(&["--listen", "127.0.0.1:0", "--db", &srv.db], dir.path());
    let err = one_failure_line(&out);
    assert!(err.contains("is in use by another chatserver"), "{err}");
    still_online(&srv, a, "pw-alice");
    // Also with a cluster's flags: a SQLite file is one server's alone.
    let out = chatserver(
        &[
            "--listen",
            "127.0.0.1:0",
            "--db",
            &srv.db,
            "--node-id",
            "twin",
        ],
        dir.path(),
    );
    one_failure_line(&out);
    still_online(&srv, a, "pw-alice");
}

fn an_unreachable_redis_changes_nothing() {
    let srv = TestServer::start();
    let (_alice, a) = srv.user("alice");
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--db",
        &srv.db,
        "--redis",
        "redis://127.0.0.1:1",
    ];
    let err = one_failure_line(&chatserver(&args, dir.path()));
    if srv.db.starts_with("mysql://") {
        // (On SQLite the running server's lock refuses it before it tries Redis.)
        assert!(err.contains("message bus unavailable"), "{err}");
    }
    still_online(&srv, a, "pw-alice");
}

/// Whether the SQLite database at `db` (a `sqlite:` URL) still records `user` as online.
fn recorded_online(db: &str, user: i64) -> bool {
    let conn = rusqlite::Connection::open(db.strip_prefix("sqlite:").unwrap()).unwrap();
    conn.query_row(
        "SELECT state = 'online' AND session IS NOT NULL FROM user WHERE id = ?",
        [user],
        |r| r.get(0),
    )
    .unwrap()
}

/// A killed server's sessions are released by the next server that starts, and only once it
/// has bound, locked and connected: a start that fails on the way leaves them as they are.
#[test]
fn a_start_that_fails_before_it_runs_releases_nothing() {
    let mut srv = TestServer::start();
    let (_alice, a) = srv.user("alice");
    srv.signal("KILL");
    srv.wait_exit(Duration::from_secs(10));
    assert!(recorded_online(&srv.db, a));
    let dir = tempfile::tempdir().unwrap();
    let bogus = ["--listen", "bogus", "--db", &srv.db];
    let err = one_failure_line(&chatserver(&bogus, dir.path()));
    assert!(err.contains("cannot listen on bogus"), "{err}");
    let no_redis = [
        "--listen",
        "127.0.0.1:0",
        "--db",
        &srv.db,
        "--redis",
        "redis://127.0.0.1:1",
    ];
    let err = one_failure_line(&chatserver(&no_redis, dir.path()));
    assert!(err.contains("message bus unavailable"), "{err}");
    assert!(recorded_online(&srv.db, a), "a failed start released alice");
    srv.restart();
    assert!(
        srv.log().iter().any(|l| l.contains("cleared 1 sessions")),
        "{:?}",
        srv.log()
    );
    srv.client().login(a, "pw-alice").unwrap();
}

/// The README's standalone MySQL command run while `run_cluster.sh` runs: the standalone
/// server starts (it is another node) but releases none of the cluster's sessions, at start or
/// later; a server that would take a running node's id refuses to start.
#[test]
fn a_standalone_server_on_a_clusters_database_clears_none_of_its_sessions() {
    let Some(cluster) = TestCluster::start("standalone_beside", 2) else {
        return;
    };
    let (_alice, a) = cluster.servers[0].user("alice");
    let (_bob, b) = cluster.servers[1].user("bob");
    let standalone = TestServer::builder().db(cluster.db.url.clone()).start();
    let everyone_online = || {
        for srv in [&standalone, &cluster.servers[0], &cluster.servers[1]] {
            still_online(srv, a, "pw-alice");
            still_online(srv, b, "pw-bob");
        }
    };
    everyone_online();
    // Its housekeeper looks for dead servers' sessions every 5 s: it finds none.
    std::thread::sleep(Duration::from_secs(6));
    everyone_online();
    assert!(
        !standalone
            .log()
            .iter()
            .any(|l| l.contains("offline") || l.contains("cleared")),
        "{:?}",
        standalone.log()
    );
    let node0 = format!("{}n0", cluster.prefix.trim_end_matches(':'));
    let dir = tempfile::tempdir().unwrap();
    let twin = [
        "--listen",
        "127.0.0.1:0",
        "--db",
        &cluster.db.url,
        "--node-id",
        &node0,
    ];
    let err = one_failure_line(&chatserver(&twin, dir.path()));
    assert!(
        err.contains(&format!("another chatserver runs as node {node0}")),
        "{err}"
    );
    everyone_online();
}

on_both_backends!(
    a_server_that_cannot_bind_leaves_the_running_one_alone,
    an_unreachable_redis_changes_nothing,
);
