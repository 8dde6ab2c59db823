//! The message log over the wire, on SQLite and on MySQL: every chat gets a `seq` per
//! conversation (a pair of users, or a group), carried by its ACK and by every forwarded frame;
//! a `cmid` retry is stored and delivered once; RECV moves a sync session's cursor, and nothing
//! else does. HISTORY and MEMBERS are in `message_log_query.rs`, backlogs in
//! `message_log_backlog.rs`, delivery to slow, vanished and moving receivers in
//! `message_log_delivery.rs`.

mod util;

use serde_json::{json, Value};
use util::chatlog::{
    acked_seqs, ask, group_chat, is_chat, logout, one_chat, pw, read_sync, send_login,
    send_pipelined, seq, sync_login, ACK, ERROR, GROUP_CHAT, LOGIN_ACK, ONE_CHAT, RECV,
};
use util::faults::register;
use util::server::TestServer;

/// Checks a chat ACK: `{"msgid":12,"errno":0,"request":R,"seq":S,...}`; returns S.
fn ack_seq(reply: &Value, request: i64) -> i64 {
    assert!(
        reply["msgid"] == ACK && reply["errno"] == 0 && reply["request"] == request,
        "not an ACK of request {request}: {reply}"
    );
    seq(reply)
}

/// Checks an ERROR with this errno for this request.
fn assert_error(reply: &Value, errno: i64, request: i64, what: &str) {
    assert!(
        reply["msgid"] == ERROR && reply["errno"] == errno && reply["request"] == request,
        "{what}: expected ERROR errno {errno} for request {request}, got {reply}"
    );
}

/// The next chat frame on `c`.
fn next_chat(c: &mut clusterchat_proto::client::Client) -> Value {
    c.recv_matching(is_chat).expect("a chat frame")
}

fn one_to_one_directions_share_one_seq_sequence() {
    let srv = TestServer::start();
    let (mut a, ida) = srv.user("alice");
    let (mut b, idb) = srv.user("bob");
    let (mut c, idc) = srv.user("carol");

    let r = ask(&mut a, one_chat(idb, "a1"));
    assert_eq!(ack_seq(&r, ONE_CHAT), 1, "{r}");
    assert!(r["reqid"].is_string(), "the ACK echoes the reqid: {r}");
    let f = next_chat(&mut b);
    assert_eq!(
        (&f["msgid"], &f["id"], &f["toid"], &f["msg"], &f["seq"]),
        (&json!(6), &json!(ida), &json!(idb), &json!("a1"), &json!(1)),
        "{f}"
    );
    assert_eq!(ack_seq(&ask(&mut b, one_chat(ida, "b1")), ONE_CHAT), 2);
    let f = next_chat(&mut a);
    assert_eq!(
        (&f["id"], &f["toid"], &f["msg"], &f["seq"]),
        (&json!(idb), &json!(ida), &json!("b1"), &json!(2)),
        "{f}"
    );
    assert_eq!(ack_seq(&ask(&mut a, one_chat(idb, "a2")), ONE_CHAT), 3);
    assert_eq!(seq(&next_chat(&mut b)), 3);
    // Every other pair has a sequence of its own.
    assert_eq!(
        ack_seq(&ask(&mut a, one_chat(idc, "to carol")), ONE_CHAT),
        1
    );
    assert_eq!(seq(&next_chat(&mut c)), 1);
    assert_eq!(ack_seq(&ask(&mut c, one_chat(idb, "c→b")), ONE_CHAT), 1);
    assert_eq!(seq(&next_chat(&mut b)), 1);

    // Without a reqid there is no ACK: the next frame alice gets is the ACK of the message
    // after it, whose seq shows the silent one was stored.
    a.send(&one_chat(idb, "silent")).unwrap();
    a.send(&json!({"msgid": 6, "toid": idb, "msg": "loud", "reqid": "loud"}))
        .unwrap();
    let r = a.recv().unwrap();
    assert_eq!(
        r["reqid"], "loud",
        "an ACK for a request without reqid: {r}"
    );
    assert_eq!(ack_seq(&r, ONE_CHAT), 5);
    assert_eq!(seq(&next_chat(&mut b)), 4);
    assert_eq!(seq(&next_chat(&mut b)), 5);

    // Both directions at once: one sequence, no gap, no duplicate; each receiver gets the
    // other's frames in seq order, with the seq the sender's ACK gave.
    const N: usize = 150;
    let send = |mut cl: clusterchat_proto::client::Client, to: i64, tag: &'static str| {
        std::thread::spawn(move || {
            let reqs: Vec<Value> = (0..N).map(|i| one_chat(to, &format!("{tag}{i}"))).collect();
            let seqs = acked_seqs(&send_pipelined(&mut cl, &reqs, 16), ONE_CHAT);
            (cl, seqs)
        })
    };
    let (ta, tb) = (send(a, idb, "ab"), send(b, ida, "ba"));
    let ((mut a, sa), (mut b, sb)) = (ta.join().unwrap(), tb.join().unwrap());
    let mut all: Vec<i64> = sa.iter().chain(&sb).copied().collect();
    all.sort_unstable();
    assert_eq!(all, (6..6 + 2 * N as i64).collect::<Vec<_>>());
    for (rx, seqs, tag) in [(&mut b, &sa, "ab"), (&mut a, &sb, "ba")] {
        for (i, s) in seqs.iter().enumerate() {
            let f = next_chat(rx);
            assert_eq!((&f["msg"], seq(&f)), (&json!(format!("{tag}{i}")), *s));
        }
    }
}

fn group_members_see_the_same_seq() {
    let srv = TestServer::start();
    let (mut x, idx) = srv.user("xena");
    let (mut y, idy) = srv.user("yuri");
    let (mut z, idz) = srv.user("zoe");
    // A 1:1 message first: the group's sequence is its own.
    assert_eq!(ack_seq(&ask(&mut x, one_chat(idy, "hi")), ONE_CHAT), 1);
    assert_eq!(seq(&next_chat(&mut y)), 1);
    let g = x.create_group(idx, "seqs", "").unwrap();
    y.join_group(idy, g).unwrap();
    z.join_group(idz, g).unwrap();

    let r = ask(&mut x, group_chat(g, "g1"));
    assert_eq!(ack_seq(&r, GROUP_CHAT), 1);
    assert_eq!(r["groupid"], g, "a GROUP_CHAT ACK carries the groupid: {r}");
    for (m, who) in [(&mut y, "yuri"), (&mut z, "zoe")] {
        let f = next_chat(m);
        assert_eq!(
            (&f["msgid"], &f["groupid"], &f["id"], &f["seq"]),
            (&json!(10), &json!(g), &json!(idx), &json!(1)),
            "{who}: {f}"
        );
    }
    assert_eq!(ack_seq(&ask(&mut y, group_chat(g, "g2")), GROUP_CHAT), 2);
    assert_eq!(seq(&next_chat(&mut x)), 2);
    assert_eq!(seq(&next_chat(&mut z)), 2);

    // Two members at once: one sequence, and every member holds each message under one seq.
    const N: usize = 40;
    let send = |mut cl: clusterchat_proto::client::Client, tag: &'static str| {
        std::thread::spawn(move || {
            let reqs: Vec<Value> = (0..N)
                .map(|i| group_chat(g, &format!("{tag}{i}")))
                .collect();
            let replies = send_pipelined(&mut cl, &reqs, 8);
            assert!(replies.iter().all(|r| r["groupid"] == g), "{replies:?}");
            let seqs = acked_seqs(&replies, GROUP_CHAT);
            (cl, seqs)
        })
    };
    let (ty, tz) = (send(y, "y"), send(z, "z"));
    let ((mut y, sy), (mut z, sz)) = (ty.join().unwrap(), tz.join().unwrap());
    let mut all: Vec<i64> = sy.iter().chain(&sz).copied().collect();
    all.sort_unstable();
    assert_eq!(all, (3..3 + 2 * N as i64).collect::<Vec<_>>());
    let seq_of = |tag: &str, i: usize| if tag == "y" { sy[i] } else { sz[i] };
    // xena gets both members' messages in seq order; each of them the other's.
    let mut last = 2;
    for _ in 0..2 * N {
        let f = next_chat(&mut x);
        let msg = f["msg"].as_str().unwrap();
        let (tag, i) = msg.split_at(1);
        assert_eq!(seq(&f), seq_of(tag, i.parse().unwrap()), "{f}");
        assert!(seq(&f) > last, "out of seq order: {f} after {last}");
        last = seq(&f);
    }
    for (m, other) in [(&mut y, "z"), (&mut z, "y")] {
        for i in 0..N {
            let f = next_chat(m);
            assert_eq!(
                (&f["msg"], seq(&f)),
                (&json!(format!("{other}{i}")), seq_of(other, i))
            );
        }
    }

    // A sync login lists the group with its member count instead of its members.
    let w = register(srv.addr, "walt");
    let mut wc = srv.client();
    assert_eq!(send_login(&mut wc, w, &pw("walt"), true)["errno"], 0);
    wc.join_group(w, g).unwrap();
    logout(&mut wc);
    let ack = send_login(&mut wc, w, &pw("walt"), true);
    assert_eq!(
        (&ack["msgid"], &ack["errno"]),
        (&json!(LOGIN_ACK), &json!(0))
    );
    assert_eq!(ack["offlinemsg"], json!([]), "{ack}");
    let groups = ack["groups"].as_array().expect("groups");
    assert_eq!(groups.len(), 1, "{ack}");
    let entry: Value = serde_json::from_str(groups[0].as_str().expect("encoded")).unwrap();
    assert_eq!(entry["id"], g);
    assert_eq!(entry["members"], 4, "{entry}");
    assert!(entry.get("users").is_none(), "no member list: {entry}");
}

fn a_cmid_retry_is_stored_and_delivered_once() {
    let srv = TestServer::start();
    let (mut a, ida) = srv.user("alice");
    let idb = register(srv.addr, "bob");
    let (mut b, _) = sync_login(srv.addr, idb, &pw("bob"));
    assert_eq!(read_sync(&mut b).count, 0);
    let with_cmid = |mut req: Value, cmid: &str| {
        req["cmid"] = json!(cmid);
        req
    };
    assert_eq!(
        ack_seq(&ask(&mut a, with_cmid(one_chat(idb, "hello"), "c-1")), 6),
        1
    );
    assert_eq!(
        ack_seq(&ask(&mut a, with_cmid(one_chat(idb, "hello"), "c-1")), 6),
        1
    );
    // The text does not matter: (sender, cmid) names the message.
    assert_eq!(
        ack_seq(&ask(&mut a, with_cmid(one_chat(idb, "edited"), "c-1")), 6),
        1
    );
    assert_eq!(
        ack_seq(&ask(&mut a, with_cmid(one_chat(idb, "other"), "c-2")), 6),
        2
    );
    assert_eq!(ack_seq(&ask(&mut a, one_chat(idb, "plain")), 6), 3);
    // The same cmid from another sender is another message.
    assert_eq!(
        ack_seq(&ask(&mut b, with_cmid(one_chat(ida, "from bob"), "c-1")), 6),
        4
    );
    assert_eq!(seq(&next_chat(&mut a)), 4);

    // A retry after a lost ACK: the connection drops before the ACK is read.
    a.send(&with_cmid(one_chat(idb, "lost ack"), "c-9"))
        .unwrap();
    drop(a);
    let (mut a, _) = util::chatlog::login_retrying(srv.client(), ida, &pw("alice"), false);
    let s9 = ack_seq(&ask(&mut a, with_cmid(one_chat(idb, "lost ack"), "c-9")), 6);
    assert_eq!(
        s9, 5,
        "stored once, whether or not the first try got through"
    );
    assert_eq!(ack_seq(&ask(&mut a, one_chat(idb, "end")), 6), 6);

    // Group chats too; the ACK carries the original seq and the groupid.
    let g = a.create_group(ida, "cmids", "").unwrap();
    b.join_group(idb, g).unwrap();
    let r1 = ask(&mut a, with_cmid(group_chat(g, "g"), "g-1"));
    let r2 = ask(&mut a, with_cmid(group_chat(g, "g"), "g-1"));
    assert_eq!((ack_seq(&r1, 10), ack_seq(&r2, 10)), (1, 1));
    assert_eq!((&r1["groupid"], &r2["groupid"]), (&json!(g), &json!(g)));
    assert_eq!(ack_seq(&ask(&mut a, group_chat(g, "g end")), 10), 2);

    // bob got each message once (frames of his own messages, if any, aside).
    let mut got = Vec::new();
    while got.last().map(|(m, _): &(Value, i64)| m.clone()) != Some(json!("g end")) {
        let f = next_chat(&mut b);
        if f["id"] == ida {
            got.push((f["msg"].clone(), seq(&f)));
        }
    }
    let want = [
        ("hello", 1),
        ("other", 2),
        ("plain", 3),
        ("lost ack", 5),
        ("end", 6),
        ("g", 1),
        ("g end", 2),
    ];
    let want: Vec<(Value, i64)> = want.iter().map(|(m, s)| (json!(m), *s)).collect();
    assert_eq!(got, want);
}

fn bad_cmids_are_refused_with_errno_102() {
    let srv = TestServer::start();
    let (mut a, ida) = srv.user("alice");
    let (mut b, idb) = srv.user("bob");
    let g = a.create_group(ida, "bad cmids", "").unwrap();
    b.join_group(idb, g).unwrap();
    // 65 and 66 bytes; and none at all (an empty id would make every later chat with one a
    // "retry", never stored).
    let too_long = [json!("x".repeat(65)), json!("é".repeat(33)), json!("")];
    let not_strings = [
        json!(42),
        json!(1.5),
        json!(true),
        json!(["a"]),
        json!({"c": 1}),
    ];
    for cmid in too_long.iter().chain(&not_strings) {
        for (mut req, request) in [(one_chat(idb, "bad"), 6), (group_chat(g, "bad"), 10)] {
            req["cmid"] = cmid.clone();
            assert_error(&ask(&mut a, req), 102, request, &format!("cmid {cmid}"));
        }
    }
    // Also without a reqid: a failure always gets an ERROR.
    a.send(&json!({"msgid": 6, "toid": idb, "msg": "bad", "cmid": 7}))
        .unwrap();
    let e = a.recv().unwrap();
    assert_error(&e, 102, 6, "cmid 7 without reqid");
    // At the limit (64 bytes, whatever the characters) is fine; nothing bad was stored.
    for (i, cmid) in ["y".repeat(64), "é".repeat(32)].iter().enumerate() {
        let r = ask(
            &mut a,
            json!({"msgid": 6, "toid": idb, "msg": "ok", "cmid": cmid}),
        );
        assert_eq!(ack_seq(&r, 6), i as i64 + 1, "cmid of 64 bytes: {r}");
    }
    let r = ask(
        &mut a,
        json!({"msgid": 10, "groupid": g, "msg": "ok", "cmid": "ü".repeat(32)}),
    );
    assert_eq!(ack_seq(&r, 10), 1);
    for want in [(6, 1), (6, 2), (10, 1)] {
        let f = next_chat(&mut b);
        assert_eq!((f["msgid"].as_i64().unwrap(), seq(&f)), want, "{f}");
        assert_eq!(f["msg"], "ok", "a refused message was delivered: {f}");
    }
}

/// Server bug: `cmid` is an `Option<String>` with `#[serde(default)]`, so `null` reads as no
/// cmid and the message is stored; the contract refuses any cmid that is not a string.
fn a_null_cmid_is_not_a_string() {
    let srv = TestServer::start();
    let (mut a, _) = srv.user("alice");
    let (_b, idb) = srv.user("bob");
    let reply = ask(
        &mut a,
        json!({"msgid": 6, "toid": idb, "msg": "x", "cmid": null}),
    );
    assert_error(&reply, 102, 6, "cmid null");
}

fn recv_moves_the_sync_cursor_and_nothing_else_does() {
    let srv = TestServer::start();
    let (mut a, ida) = srv.user("alice");
    let idb = register(srv.addr, "bob");
    let (mut b, _) = sync_login(srv.addr, idb, &pw("bob"));
    assert_eq!(read_sync(&mut b).count, 0);
    let reqs: Vec<Value> = (0..10).map(|i| one_chat(idb, &format!("m{i}"))).collect();
    assert_eq!(
        acked_seqs(&send_pipelined(&mut a, &reqs, 10), 6),
        (1..=10).collect::<Vec<_>>()
    );
    let live: Vec<i64> = (0..10).map(|_| seq(&next_chat(&mut b))).collect();
    assert_eq!(live, (1..=10).collect::<Vec<_>>());
    let relogin = |b: &mut clusterchat_proto::client::Client| {
        logout(b);
        assert_eq!(send_login(b, idb, &pw("bob"), true)["errno"], 0);
        let s = read_sync(b);
        let seqs: Vec<i64> = s.chats.iter().map(seq).collect();
        assert_eq!(s.count, seqs.len() as i64, "SYNC_DONE count vs frames sent");
        seqs
    };
    // Delivered live but not confirmed: sent again.
    assert_eq!(relogin(&mut b), (1..=10).collect::<Vec<_>>());
    let r = ask(&mut b, json!({"msgid": RECV, "peer": ida, "seq": 6}));
    assert_eq!(
        (&r["msgid"], &r["errno"], &r["request"]),
        (&json!(ACK), &json!(0), &json!(RECV))
    );
    assert_eq!(relogin(&mut b), (7..=10).collect::<Vec<_>>());
    // A RECV without reqid: no reply (the LOGOUT's ACK is the next frame), saved at logout.
    b.send(&json!({"msgid": RECV, "peer": ida, "seq": 10}))
        .unwrap();
    b.send(&json!({"msgid": 3, "reqid": "out"})).unwrap();
    let r = b.recv().unwrap();
    assert_eq!(
        (&r["msgid"], &r["reqid"]),
        (&json!(ACK), &json!("out")),
        "{r}"
    );
    assert_eq!(send_login(&mut b, idb, &pw("bob"), true)["errno"], 0);
    assert_eq!(read_sync(&mut b).count, 0);
    // A cursor never moves back.
    ask(&mut b, json!({"msgid": RECV, "peer": ida, "seq": 3}));
    assert!(relogin(&mut b).is_empty());

    // Groups: the same, by groupid.
    let g = a.create_group(ida, "receipts", "").unwrap();
    b.join_group(idb, g).unwrap();
    let reqs: Vec<Value> = (0..5).map(|i| group_chat(g, &format!("g{i}"))).collect();
    assert_eq!(
        acked_seqs(&send_pipelined(&mut a, &reqs, 5), 10),
        (1..=5).collect::<Vec<_>>()
    );
    for want in 1..=5 {
        assert_eq!(seq(&next_chat(&mut b)), want);
    }
    let r = ask(&mut b, json!({"msgid": RECV, "groupid": g, "seq": 3}));
    assert_eq!((&r["msgid"], &r["errno"]), (&json!(ACK), &json!(0)), "{r}");
    assert_eq!(relogin(&mut b), vec![4, 5]);

    for bad in [
        json!({"msgid": RECV, "peer": ida, "groupid": g, "seq": 1}),
        json!({"msgid": RECV, "seq": 1}),
        json!({"msgid": RECV, "peer": ida, "seq": -1}),
        json!({"msgid": RECV, "peer": ida}),
        json!({"msgid": RECV, "peer": ida, "seq": "5"}),
    ] {
        assert_error(&ask(&mut b, bad.clone()), 102, RECV, &bad.to_string());
    }
}

on_both_backends!(
    one_to_one_directions_share_one_seq_sequence,
    group_members_see_the_same_seq,
    a_cmid_retry_is_stored_and_delivered_once,
    bad_cmids_are_refused_with_errno_102,
    recv_moves_the_sync_cursor_and_nothing_else_does,
    a_null_cmid_is_not_a_string,
);
