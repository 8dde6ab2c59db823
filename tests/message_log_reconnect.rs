//! A client that closes its connection and logs in again at once, on SQLite and on MySQL:
//! once the new login is accepted (not errno 2), what the old session confirmed (sync: by
//! RECV) or was sent (legacy: written to the kernel) is not sent again. The contract lets the
//! server save cursors up to a second later or at logout/disconnect, and names a login that is
//! no longer refused with errno 2 as the sign that the disconnect has been processed.

mod util;

use clusterchat_proto::client::Client;
use serde_json::json;
use util::chatlog::{
    ask, is_chat, login_retrying, one_chat, pw, read_sync, seq, sync_login, ACK, RECV,
};
use util::faults::register;
use util::server::TestServer;

/// Rounds of receive, close, log in again.
const ROUNDS: i64 = 30;

/// Server bug: `end_session` takes the user out of the online table before it writes the
/// session's cursors, and a login on the same server takes over as soon as the user is out
/// of that table: it can read the cursors before they are written.
fn a_closed_sync_session_s_receipts_hold_at_the_next_login() {
    let srv = TestServer::start();
    let (mut s, ids) = srv.user("sender");
    let idr = register(srv.addr, "reader");
    let mut again = Vec::new();
    for round in 1..=ROUNDS {
        let (mut r, _) = sync_login(srv.addr, idr, &pw("reader"));
        let synced = read_sync(&mut r);
        if synced.count > 0 {
            again.push((round, synced.chats.iter().map(seq).collect::<Vec<_>>()));
        }
        assert_eq!(seq(&ask(&mut s, one_chat(idr, "m"))), round);
        assert_eq!(seq(&r.recv_matching(is_chat).unwrap()), round);
        let ack = ask(&mut r, json!({"msgid": RECV, "peer": ids, "seq": round}));
        assert_eq!(
            (&ack["msgid"], &ack["errno"]),
            (&json!(ACK), &json!(0)),
            "{ack}"
        );
        drop(r);
    }
    assert!(
        again.is_empty(),
        "confirmed messages sent again (round, seqs): {again:?}"
    );
}

/// The same bug as above, for a legacy session: the old client shows the message twice.
fn a_closed_legacy_session_s_messages_are_not_sent_again() {
    let srv = TestServer::start();
    let (mut s, _) = srv.user("sender");
    let idr = register(srv.addr, "reader");
    let mut again = Vec::new();
    for round in 1..=ROUNDS {
        let (mut r, ack) = login_retrying(
            Client::connect(srv.addr).unwrap(),
            idr,
            &pw("reader"),
            false,
        );
        let offline = ack["offlinemsg"].as_array().unwrap();
        if !offline.is_empty() {
            again.push((round, offline.len()));
        }
        assert_eq!(seq(&ask(&mut s, one_chat(idr, "m"))), round);
        assert_eq!(seq(&r.recv_matching(is_chat).unwrap()), round);
        drop(r);
    }
    assert!(
        again.is_empty(),
        "messages sent again (round, how many): {again:?}"
    );
}

on_both_backends!(
    a_closed_sync_session_s_receipts_hold_at_the_next_login,
    a_closed_legacy_session_s_messages_are_not_sent_again,
);
