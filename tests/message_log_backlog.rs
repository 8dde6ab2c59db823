//! Big backlogs at login, on SQLite and on MySQL: a flood of messages to an offline user
//! arrives whole at a sync login (then SYNC_DONE) and at a legacy login (a LOGIN_ACK of at
//! most 64 KiB, the rest as frames right after it, each message once); a legacy session's
//! cursor moves with what it was sent, and it is never sent its own messages; a group list too
//! big for 64 KiB is cut, the login is not refused.

mod util;

use serde_json::{json, Value};
use util::chatlog::{
    acked_seqs, is_chat, logout, number, numbered, one_chat, pw, read_sync, send_pipelined, seq,
    sync_login, LOGIN, LOGIN_ACK, ONE_CHAT,
};
use util::faults::register;
use util::raw_conn::RawConn;
use util::server::TestServer;

/// The bound on a legacy LOGIN_ACK.
const MAX_LOGIN_ACK: usize = 64 * 1024;

/// A legacy LOGIN on a new connection, retried while the account is still online (errno 2).
/// Returns the connection, the LOGIN_ACK's size in bytes, the LOGIN_ACK, and its `offlinemsg`
/// entries decoded.
fn legacy_login(srv: &TestServer, id: i64, name: &str) -> (RawConn, usize, Value, Vec<Value>) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut conn = RawConn::connect(srv.addr);
    loop {
        conn.send(&json!({"msgid": LOGIN, "id": id, "password": pw(name)}));
        let (size, ack) = conn.next();
        assert_eq!(ack["msgid"], LOGIN_ACK, "{ack}");
        if ack["errno"] == 0 {
            let offline = ack["offlinemsg"]
                .as_array()
                .unwrap_or_else(|| panic!("offlinemsg: {ack}"))
                .iter()
                .map(|s| serde_json::from_str(s.as_str().expect("a JSON string")).unwrap())
                .collect();
            return (conn, size, ack, offline);
        }
        assert!(
            ack["errno"] == 2 && std::time::Instant::now() < deadline,
            "{ack}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Reads `n` chat frames (anything else fails).
fn read_chats(conn: &mut RawConn, n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let (_, f) = conn
                .try_next()
                .unwrap_or_else(|e| panic!("{i} of {n} frames after the LOGIN_ACK: {e}"));
            assert!(is_chat(&f), "not a chat frame: {f}");
            f
        })
        .collect()
}

/// Sends LOGOUT with a reqid; returns the chat frames that arrived before its ACK. (Frames a
/// login sends after its LOGIN_ACK come right after it, before replies to later requests.)
fn logout_raw(conn: &mut RawConn) -> Vec<Value> {
    conn.send(&json!({"msgid": 3, "reqid": "bye"}));
    let mut chats = Vec::new();
    loop {
        let (_, f) = conn.next();
        if f["reqid"] == "bye" {
            assert_eq!(f["errno"], 0, "LOGOUT: {f}");
            return chats;
        }
        assert!(is_chat(&f), "not a chat frame: {f}");
        chats.push(f);
    }
}

/// Checks that the frames from `sender` hold `seqs` exactly, once each, in order.
fn assert_once_in_order(frames: &[Value], sender: i64, seqs: std::ops::RangeInclusive<i64>) {
    let got: Vec<i64> = frames
        .iter()
        .filter(|f| f["id"] == sender)
        .map(seq)
        .collect();
    let want: Vec<i64> = seqs.clone().collect();
    if got != want {
        let first_diff = got.iter().zip(&want).position(|(g, w)| g != w);
        panic!(
            "from {sender}: {} frames, want {} ({seqs:?}); first difference at {first_diff:?}",
            got.len(),
            want.len()
        );
    }
}

/// A flood of `n` messages of `len` bytes to an offline user: a sync login gets them all in
/// order with SYNC_DONE counting them; it confirms none, so a legacy login after it gets them
/// all again, within a LOGIN_ACK of at most 64 KiB and frames right after it.
fn flood(n: usize, len: usize, args: &[&str]) {
    let srv = TestServer::builder().args(args).start();
    let (mut s, ids) = srv.user("sender");
    let idr = register(srv.addr, "reader");
    let reqs: Vec<Value> = (0..n).map(|i| one_chat(idr, &numbered(i, len))).collect();
    let seqs = acked_seqs(&send_pipelined(&mut s, &reqs, 256), ONE_CHAT);
    assert_eq!(seqs, (1..=n as i64).collect::<Vec<_>>());

    let (mut c, _) = sync_login(srv.addr, idr, &pw("reader"));
    let synced = read_sync(&mut c);
    let got: Vec<i64> = synced.chats.iter().map(seq).collect();
    if got != (1..=n as i64).collect::<Vec<_>>() {
        panic!("sync login: {} frames, want 1..={n}", got.len());
    }
    assert!(synced
        .chats
        .iter()
        .all(|f| number(&f["msg"]) as i64 == seq(f) - 1));
    assert_eq!(synced.count, n as i64, "SYNC_DONE's count");
    logout(&mut c);

    let (mut conn, size, ack, offline) = legacy_login(&srv, idr, "reader");
    assert!(
        size <= MAX_LOGIN_ACK,
        "legacy LOGIN_ACK of {size} bytes: {:.300}",
        ack.to_string()
    );
    let rest = read_chats(&mut conn, n - offline.len());
    let all = [offline.clone(), rest].concat();
    assert_once_in_order(&all, ids, 1..=n as i64);
    assert!(all.iter().all(|f| number(&f["msg"]) as i64 == seq(f) - 1));
    assert!(
        logout_raw(&mut conn).is_empty(),
        "more than each message once"
    );
    eprintln!(
        "flood of {n} × {len} B: legacy LOGIN_ACK {size} B with {} messages",
        offline.len()
    );
}

fn an_offline_flood_of_short_messages_arrives_whole() {
    flood(20_000, 20, &[]);
}

fn an_offline_flood_of_60_kib_messages_arrives_whole() {
    flood(40, 60 * 1024, &[]);
}

/// Server bug: the sync backlog queues up to 1 MiB for the connection (`sync::WINDOW_BYTES`)
/// whatever `--max-output` is, so a receiver that reads is cut off as "not reading".
fn an_offline_flood_arrives_whole_with_max_output_256_kib() {
    flood(40, 60 * 1024, &["--max-output", "262144"]);
}

fn a_legacy_login_is_bounded_and_moves_the_cursor() {
    let srv = TestServer::start();
    let (mut s1, id1) = srv.user("first");
    let (mut s2, id2) = srv.user("second");
    let (mut r, idr) = srv.user("reader");
    // The reader's own messages are in the log too, but never sent to a legacy session.
    let own: Vec<Value> = (0..5).map(|i| one_chat(id1, &format!("own {i}"))).collect();
    assert_eq!(
        acked_seqs(&send_pipelined(&mut r, &own, 5), 6),
        vec![1, 2, 3, 4, 5]
    );
    r.logout(idr).unwrap();
    let to_r =
        |n: usize| -> Vec<Value> { (0..n).map(|i| one_chat(idr, &numbered(i, 100))).collect() };
    let a = acked_seqs(&send_pipelined(&mut s1, &to_r(1500), 64), 6);
    assert_eq!(a, (6..=1505).collect::<Vec<_>>());
    let b = acked_seqs(&send_pipelined(&mut s2, &to_r(100), 64), 6);
    assert_eq!(b, (1..=100).collect::<Vec<_>>());

    let (mut conn, size, _, offline) = legacy_login(&srv, idr, "reader");
    assert!(size <= MAX_LOGIN_ACK, "legacy LOGIN_ACK of {size} bytes");
    assert!(
        !offline.is_empty() && offline.len() < 1600,
        "{} in offlinemsg",
        offline.len()
    );
    assert!(offline
        .iter()
        .all(|f| f["toid"] == idr && f.get("seq").is_some()));
    let rest = read_chats(&mut conn, 1600 - offline.len());
    let all = [offline, rest].concat();
    assert!(
        all.iter().all(|f| f["id"] != idr),
        "a legacy user got their own message"
    );
    assert_once_in_order(&all, id1, 6..=1505);
    assert_once_in_order(&all, id2, 1..=100);
    assert!(
        logout_raw(&mut conn).is_empty(),
        "more than each message once"
    );

    // The cursors moved: nothing again, after a logout...
    let (mut conn, _, _, offline) = legacy_login(&srv, idr, "reader");
    assert!(offline.is_empty(), "{} messages again", offline.len());
    assert!(
        logout_raw(&mut conn).is_empty(),
        "messages again after the LOGIN_ACK"
    );
    // ... nor after live messages. (Closing instead of logging out: message_log_reconnect.rs.)
    let (mut conn, _, _, offline) = legacy_login(&srv, idr, "reader");
    assert!(offline.is_empty());
    let more = acked_seqs(&send_pipelined(&mut s1, &to_r(3), 3), 6);
    assert_eq!(more, vec![1506, 1507, 1508]);
    let live = read_chats(&mut conn, 3);
    assert_eq!(live.iter().map(seq).collect::<Vec<_>>(), more);
    assert!(logout_raw(&mut conn).is_empty());
    let (mut conn, _, _, offline) = legacy_login(&srv, idr, "reader");
    assert!(offline.is_empty(), "{} messages again", offline.len());
    assert!(
        logout_raw(&mut conn).is_empty(),
        "messages again after the LOGIN_ACK"
    );
}

on_both_backends!(
    an_offline_flood_of_short_messages_arrives_whole,
    an_offline_flood_of_60_kib_messages_arrives_whole,
    a_legacy_login_is_bounded_and_moves_the_cursor,
    an_offline_flood_arrives_whole_with_max_output_256_kib,
);
