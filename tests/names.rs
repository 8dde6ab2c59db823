//! Names (issue 10, cases 8 and 9): user and group names are trimmed, 1 to 50 characters,
//! without control characters; user names are unique, compared case-insensitively; LOGIN
//! takes a `name` in place of the `id`; a database from before unique names is upgraded at
//! open without losing an account.

mod util;

use clusterchat_proto::client::{Client, ClientError};
use clusterchat_proto::{errno, msgid};
use serde_json::{json, Value};
use util::server::TestServer;

/// The name: retitles the terminal, clears it, turns the text red.
const HOSTILE: &str = "\x1b]0;PWNED\x07\x1b[2J\x1b[31m SYSTEM";

fn refused(r: Result<impl std::fmt::Debug, ClientError>) -> (i64, String) {
    match r {
        Err(ClientError::Refused { errno, errmsg }) => (errno, errmsg),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// REG as the old client sends it: the reply is REG_ACK, whatever happened.
fn reg(c: &mut Client, name: &str) -> Value {
    c.send(&json!({"msgid": msgid::REG, "name": name, "password": "pw"}))
        .unwrap();
    c.recv_msgid(msgid::REG_ACK).unwrap()
}

fn a_taken_name_is_refused_whatever_its_case() {
    let srv = TestServer::start();
    let mut c = srv.client();
    let alice = c.register("Alice", "pw").unwrap();
    for taken in ["Alice", "alice", "ALICE", "  aLiCe  "] {
        let ack = reg(&mut c, taken);
        assert_eq!(ack["errno"], 1, "{taken:?}: {ack}");
        assert_eq!(ack["errmsg"], "name is already taken");
        assert!(ack.get("id").is_none());
    }
    // Another name is fine, and the first account is untouched.
    let bob = c.register("Bob", "pw").unwrap();
    assert_ne!(alice, bob);
    c.login(alice, "pw").unwrap();
}

fn login_by_name_ignores_case() {
    let srv = TestServer::start();
    let mut c = srv.client();
    let id = c.register("Carol", "pw-carol").unwrap();
    let ack = c.login_by_name("cAROL", "pw-carol").unwrap();
    assert_eq!(
        (ack["id"].as_i64(), ack["name"].as_str()),
        (Some(id), Some("Carol"))
    );
    c.logout(id).unwrap();
    let (n, msg) = refused(c.login_by_name("carol", "wrong"));
    assert_eq!(
        (n, msg.as_str()),
        (errno::BAD_CREDENTIALS, "name or password is invalid!")
    );
    let (n, _) = refused(c.login_by_name("nobody", "pw-carol"));
    assert_eq!(n, errno::BAD_CREDENTIALS);
    // Exactly one of id and name: LOGIN_ACK errno 102 otherwise.
    for bad in [
        json!({"msgid": 1, "id": id, "name": "Carol", "password": "pw-carol"}),
        json!({"msgid": 1, "password": "pw-carol"}),
    ] {
        c.send(&bad).unwrap();
        let ack = c.recv_msgid(msgid::LOGIN_ACK).unwrap();
        assert_eq!(ack["errno"], errno::BAD_FIELD, "{bad}: {ack}");
    }
    // By id still works, as the old client does it.
    let ack = c.login(id, "pw-carol").unwrap();
    assert_eq!(ack["name"], "Carol");
}

fn control_characters_and_bad_lengths_are_refused() {
    let srv = TestServer::start();
    let mut c = srv.client();
    for bad in [
        HOSTILE,
        "a\rb",
        "tab\there",
        "del\u{7f}",
        "c1\u{85}x",
        "c1\u{9b}2J",
        "",
        "   ",
        &"x".repeat(51),
    ] {
        let ack = reg(&mut c, bad);
        assert_eq!(ack["errno"], 1, "{bad:?}: {ack}");
        assert!(ack.get("id").is_none(), "{bad:?}");
    }
    // Trimmed, and 50 characters of any script are fine.
    let ack = reg(&mut c, "  dave  ");
    assert_eq!(
        (ack["errno"].as_i64(), ack["name"].as_str()),
        (Some(0), Some("dave"))
    );
    let long = "é".repeat(50);
    assert_eq!(reg(&mut c, &long)["errno"], 0);
    let dave = ack["id"].as_i64().unwrap();
    c.login(dave, "pw").unwrap();
    // Group names follow the same rule: ERROR 102.
    for bad in [HOSTILE, "line\nbreak", ""] {
        let reply = c.request(
            json!({"msgid": msgid::CREATE_GROUP, "groupname": bad, "groupdesc": "d"}),
            None,
        );
        assert_eq!(refused(reply).0, errno::BAD_FIELD, "{bad:?}");
    }
    let g = c
        .request(
            json!({"msgid": msgid::CREATE_GROUP, "groupname": "  rust  ", "groupdesc": "ok"}),
            Some(msgid::CREATE_GROUP_ACK),
        )
        .unwrap();
    assert_eq!(g["groupname"], "rust");
}

on_both_backends!(
    a_taken_name_is_refused_whatever_its_case,
    login_by_name_ignores_case,
    control_characters_and_bad_lengths_are_refused,
);

/// The user table of today's main (before unique names), with three users named alike.
const OLD_USER_TABLE: &str = "CREATE TABLE user(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    password TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'offline' CHECK (state IN ('online', 'offline')),
    session TEXT NULL
)";

#[test]
fn an_old_sqlite_database_with_duplicate_names_is_upgraded_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let url = format!("sqlite:{}", path.display());
    // Three accounts made by a server of today's main (same hashing, so they log in).
    {
        let srv = TestServer::builder().db(&url).start();
        let mut c = srv.client();
        for name in ["erin", "frank", "grace"] {
            c.register(name, &format!("pw-{name}")).unwrap();
        }
    }
    {
        // Make it what main left: no name key, and duplicate names (case aside).
        let db = rusqlite::Connection::open(&path).unwrap();
        db.execute_batch(&format!(
            "DROP INDEX user_name_key;
             CREATE TABLE old_user AS SELECT id, name, password, state, session FROM user;
             PRAGMA foreign_keys = OFF;
             DROP TABLE user; {OLD_USER_TABLE};
             INSERT INTO user SELECT * FROM old_user; DROP TABLE old_user;
             UPDATE user SET name = 'Erin' WHERE id = 2;
             UPDATE user SET name = ' ERIN ' WHERE id = 3;"
        ))
        .unwrap();
    }
    let srv = TestServer::builder().db(&url).start();
    let log = srv.log().join("\n");
    for (id, old, new) in [(2, "Erin", "Erin#2"), (3, " ERIN ", "ERIN#3")] {
        assert!(
            log.contains(&format!("user {id}: the name {old:?} is taken"))
                && log.contains(&format!("renamed to {new:?}")),
            "rename of user {id} not logged:\n{log}"
        );
    }
    let mut c = srv.client();
    // Every account still logs in by id with its password; the renamed ones by their new name.
    assert_eq!(c.login(1, "pw-erin").unwrap()["name"], "erin");
    c.logout(1).unwrap();
    assert_eq!(c.login_by_name("erin#2", "pw-frank").unwrap()["id"], 2);
    c.logout(2).unwrap();
    assert_eq!(c.login(3, "pw-grace").unwrap()["name"], "ERIN#3");
    c.logout(3).unwrap();
    // And the names are unique from now on.
    assert_eq!(reg(&mut c, "ERIN")["errmsg"], "name is already taken");
    assert_eq!(reg(&mut c, "erin#3")["errmsg"], "name is already taken");
}
