//! A start that fails harms nobody: a bad `--db` is one line and exit 2, creating nothing; a
//! server that cannot bind exits before it touches the database, so the users of a server
//! already running on that database stay online (issue 10, cases 10 and 11).

mod util;

use clusterchat_proto::client::ClientError;
use clusterchat_proto::errno;
use std::process::{Command, Output, Stdio};
use util::server::TestServer;

fn chatserver(args: &[&str], dir: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chatserver"))
        .args(args)
        .current_dir(dir)
        .env("CHAT_ARGON2_M_KIB", "256")
        .stdin(Stdio::null())
        .output()
        .expect("run chatserver")
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

on_both_backends!(a_server_that_cannot_bind_leaves_the_running_one_alone);
