//! Reading the message log and the member lists, on SQLite and on MySQL: HISTORY pages a
//! conversation (the caller's own, or a group of theirs since they joined) oldest first with
//! `before`, `limit` and `more`; MEMBERS pages a group's members by id with `after`, `limit`
//! and `more`. Both are for members only (errno 105).

mod util;

use clusterchat_proto::client::Client;
use serde_json::{json, Value};
use util::chatlog::{
    acked_seqs, ask, group_chat, one_chat, send_pipelined, seq, ERROR, HISTORY, HISTORY_ACK,
    MEMBERS, MEMBERS_ACK,
};
use util::server::TestServer;

/// Sends HISTORY (with `fields` added) and returns the HISTORY_ACK's seqs and `more`; also
/// checks that every message is a chat frame of this conversation.
fn history(c: &mut Client, fields: Value) -> (Vec<i64>, bool, Vec<Value>) {
    let mut req = json!({"msgid": HISTORY});
    req.as_object_mut()
        .unwrap()
        .extend(fields.as_object().unwrap().clone());
    let r = ask(c, req.clone());
    assert_eq!(r["msgid"], HISTORY_ACK, "{req} → {r}");
    for key in ["peer", "groupid"] {
        if req.get(key).is_some() {
            assert_eq!(r[key], req[key], "the reply names the conversation: {r}");
        }
    }
    let messages = r["messages"].as_array().expect("messages").clone();
    let more = r["more"].as_bool().unwrap_or_else(|| panic!("more: {r}"));
    (messages.iter().map(seq).collect(), more, messages)
}

fn assert_error(reply: &Value, errno: i64, what: &str) {
    assert!(
        reply["msgid"] == ERROR && reply["errno"] == errno,
        "{what}: expected ERROR {errno}, got {reply}"
    );
}

fn range(a: i64, b: i64) -> Vec<i64> {
    (a..=b).collect()
}

fn one_to_one_history_pages_the_callers_own_conversation() {
    let srv = TestServer::start();
    let (mut a, ida) = srv.user("alice");
    let (mut b, idb) = srv.user("bob");
    let (mut c, _) = srv.user("carol");
    for i in 1..=7 {
        let (from, to) = if i % 2 == 1 {
            (&mut a, idb)
        } else {
            (&mut b, ida)
        };
        let r = ask(from, one_chat(to, &format!("m{i}")));
        assert_eq!(seq(&r), i, "{r}");
    }
    let (seqs, more, msgs) = history(&mut a, json!({"peer": idb, "limit": 3}));
    assert_eq!((seqs, more), (range(5, 7), true));
    for m in &msgs {
        let s = seq(m);
        let (from, to) = if s % 2 == 1 { (ida, idb) } else { (idb, ida) };
        assert_eq!(
            (&m["msgid"], &m["id"], &m["toid"], &m["msg"]),
            (&json!(6), &json!(from), &json!(to), &json!(format!("m{s}"))),
            "{m}"
        );
    }
    let (seqs, more, _) = history(&mut a, json!({"peer": idb, "before": 5, "limit": 3}));
    assert_eq!((seqs, more), (range(2, 4), true));
    let (seqs, more, _) = history(&mut a, json!({"peer": idb, "before": 2, "limit": 3}));
    assert_eq!((seqs, more), (vec![1], false));
    // bob sees the same conversation; carol has none with bob, whoever she says she is.
    assert_eq!(history(&mut b, json!({"peer": ida})).0, range(1, 7));
    assert_eq!(history(&mut c, json!({"peer": idb})).0, Vec::<i64>::new());
    let (seqs, more, _) = history(&mut c, json!({"id": ida, "peer": idb}));
    assert_eq!((seqs, more), (vec![], false));
    assert!(history(&mut c, json!({"peer": ida})).0.is_empty());
    // A peer that does not exist is an error, not an empty conversation.
    let nobody = json!({"msgid": HISTORY, "peer": 999_999});
    assert_error(&ask(&mut a, nobody.clone()), 106, &nobody.to_string());

    // Default limit 50, at most 200.
    let reqs: Vec<Value> = (8..=257).map(|i| one_chat(idb, &format!("m{i}"))).collect();
    assert_eq!(
        acked_seqs(&send_pipelined(&mut a, &reqs, 32), 6),
        range(8, 257)
    );
    let (seqs, more, _) = history(&mut a, json!({"peer": idb}));
    assert_eq!((seqs, more), (range(208, 257), true));
    let (seqs, more, _) = history(&mut a, json!({"peer": idb, "limit": 500}));
    assert_eq!((seqs, more), (range(58, 257), true));
    let (seqs, more, _) = history(&mut a, json!({"peer": idb, "before": 58, "limit": 200}));
    assert_eq!((seqs, more), (range(1, 57), false));

    for bad in [
        json!({"msgid": HISTORY}),
        json!({"msgid": HISTORY, "peer": idb, "groupid": 1}),
        json!({"msgid": HISTORY, "peer": idb, "before": -1}),
        json!({"msgid": HISTORY, "peer": idb, "limit": "ten"}),
    ] {
        assert_error(&ask(&mut a, bad.clone()), 102, &bad.to_string());
    }
}

fn group_history_is_for_members_and_starts_at_their_join() {
    let srv = TestServer::start();
    let (mut x, idx) = srv.user("xena");
    let (mut y, idy) = srv.user("yuri");
    let (mut z, idz) = srv.user("zoe");
    let (mut w, _) = srv.user("walt");
    let g = x.create_group(idx, "history", "").unwrap();
    y.join_group(idy, g).unwrap();
    for i in 1..=3 {
        assert_eq!(seq(&ask(&mut x, group_chat(g, &format!("g{i}")))), i);
    }
    z.join_group(idz, g).unwrap();
    assert_eq!(seq(&ask(&mut x, group_chat(g, "g4"))), 4);
    assert_eq!(seq(&ask(&mut x, group_chat(g, "g5"))), 5);
    assert_eq!(seq(&ask(&mut y, group_chat(g, "g6"))), 6);

    let (seqs, more, msgs) = history(&mut z, json!({"groupid": g}));
    assert_eq!((seqs, more), (range(4, 6), false), "zoe joined after g3");
    for m in &msgs {
        let from = if seq(m) == 6 { idy } else { idx };
        assert_eq!(
            (&m["msgid"], &m["groupid"], &m["id"], &m["msg"]),
            (
                &json!(10),
                &json!(g),
                &json!(from),
                &json!(format!("g{}", seq(m)))
            ),
            "{m}"
        );
    }
    let (seqs, more, _) = history(&mut z, json!({"groupid": g, "limit": 2}));
    assert_eq!((seqs, more), (vec![5, 6], true));
    let (seqs, more, _) = history(&mut z, json!({"groupid": g, "before": 5, "limit": 2}));
    assert_eq!((seqs, more), (vec![4], false));
    assert_eq!(history(&mut x, json!({"groupid": g})).0, range(1, 6));
    assert_eq!(history(&mut y, json!({"groupid": g})).0, range(1, 6));
    let (seqs, more, _) = history(&mut y, json!({"groupid": g, "before": 4, "limit": 2}));
    assert_eq!((seqs, more), (vec![2, 3], true));

    let r = ask(&mut w, json!({"msgid": HISTORY, "groupid": g}));
    assert_error(&r, 105, "history of a group walt is not in");
    assert_eq!(r["request"], HISTORY, "{r}");
}

/// `n` users named `<tag><i>` that joined group `g` (each on a connection of its own, closed
/// after the join unless in `keep_online`); returns their ids and the connections kept.
fn join_members(
    srv: &TestServer,
    g: i64,
    tag: &str,
    n: usize,
    keep_online: usize,
) -> (Vec<i64>, Vec<Client>) {
    let mut ids = Vec::new();
    let mut online = Vec::new();
    for i in 0..n {
        let (mut c, id) = srv.user(&format!("{tag}{i}"));
        c.join_group(id, g).unwrap();
        ids.push(id);
        if i < keep_online {
            online.push(c);
        } else {
            c.logout(id).unwrap();
        }
    }
    (ids, online)
}

/// Sends MEMBERS and returns the users and `more`, checking the reply's shape.
fn members(c: &mut Client, g: i64, fields: Value) -> (Vec<Value>, bool) {
    let mut req = json!({"msgid": MEMBERS, "groupid": g});
    req.as_object_mut()
        .unwrap()
        .extend(fields.as_object().unwrap().clone());
    let r = ask(c, req.clone());
    assert_eq!(
        (&r["msgid"], &r["groupid"]),
        (&json!(MEMBERS_ACK), &json!(g)),
        "{req} → {r}"
    );
    let users = r["users"].as_array().expect("users").clone();
    (
        users,
        r["more"].as_bool().unwrap_or_else(|| panic!("more: {r}")),
    )
}

fn ids(users: &[Value]) -> Vec<i64> {
    users.iter().map(|u| u["id"].as_i64().unwrap()).collect()
}

fn members_pages_by_id_for_members_only() {
    let srv = TestServer::start();
    let (mut x, idx) = srv.user("xena");
    let g = x.create_group(idx, "members", "").unwrap();
    let (joined, _online) = join_members(&srv, g, "m", 7, 3);
    let mut all = vec![idx];
    all.extend(&joined);
    all.sort_unstable();

    let (users, more) = members(&mut x, g, json!({}));
    assert!(!more);
    let want: Vec<Value> = all
        .iter()
        .map(|id| {
            let i = joined.iter().position(|j| j == id);
            let (name, state, role) = match i {
                None => ("xena".to_string(), "online", "creator"),
                Some(i) => (
                    format!("m{i}"),
                    if i < 3 { "online" } else { "offline" },
                    "normal",
                ),
            };
            json!({"id": id, "name": name, "state": state, "role": role})
        })
        .collect();
    assert_eq!(users, want);

    let (p1, more) = members(&mut x, g, json!({"limit": 3}));
    assert_eq!((ids(&p1), more), (all[0..3].to_vec(), true));
    let (p2, more) = members(&mut x, g, json!({"after": all[2], "limit": 3}));
    assert_eq!((ids(&p2), more), (all[3..6].to_vec(), true));
    let (p3, more) = members(&mut x, g, json!({"after": all[5], "limit": 3}));
    assert_eq!((ids(&p3), more), (all[6..8].to_vec(), false));
    // A page that ends exactly at the last member: nothing more follows.
    let (p, more) = members(&mut x, g, json!({"after": all[3], "limit": 4}));
    assert_eq!((ids(&p), more), (all[4..8].to_vec(), false));

    let (mut out, _) = srv.user("outsider");
    let r = ask(&mut out, json!({"msgid": MEMBERS, "groupid": g}));
    assert_error(&r, 105, "MEMBERS of a group the user is not in");
    assert_eq!(r["request"], MEMBERS, "{r}");
}

fn members_default_page_is_200() {
    let srv = TestServer::start();
    let (mut x, idx) = srv.user("xena");
    let g = x.create_group(idx, "crowd", "").unwrap();
    let (joined, _) = join_members(&srv, g, "c", 200, 0);
    let (users, more) = members(&mut x, g, json!({}));
    assert_eq!((users.len(), more), (200, true));
    let last = ids(&users)[199];
    let (rest, more) = members(&mut x, g, json!({"after": last}));
    assert_eq!(
        (ids(&rest), more),
        (vec![*joined.iter().max().unwrap()], false)
    );
}

fn members_pages_are_at_most_1000() {
    let srv = TestServer::start();
    let (mut x, idx) = srv.user("xena");
    let g = x.create_group(idx, "stadium", "").unwrap();
    let (joined, _) = join_members(&srv, g, "s", 1000, 0);
    let (users, more) = members(&mut x, g, json!({"limit": 5000}));
    assert_eq!((users.len(), more), (1000, true));
    let mut all = vec![idx];
    all.extend(&joined);
    assert_eq!(ids(&users), all[..1000].to_vec());
}

on_both_backends!(
    one_to_one_history_pages_the_callers_own_conversation,
    group_history_is_for_members_and_starts_at_their_join,
    members_pages_by_id_for_members_only,
    members_default_page_is_200,
    members_pages_are_at_most_1000,
);
