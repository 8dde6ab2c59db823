//! Fields of a chat that the log must not take on trust, on SQLite and on MySQL: a `cmid` names
//! one message in one conversation, a `null` reqid is still a reqid, and a `time` that is not a
//! short string is replaced by the server's (it is stored and forwarded with every copy).

mod util;

use serde_json::{json, Value};
use util::chatlog::{ask, is_chat, one_chat, pw, read_sync, seq, sync_login, ACK, ERROR};
use util::faults::register;
use util::server::TestServer;

fn with_cmid(mut req: Value, cmid: &str) -> Value {
    req["cmid"] = json!(cmid);
    req
}

fn a_cmid_used_in_another_conversation_is_refused_and_nothing_is_stored() {
    let srv = TestServer::start();
    let (mut a, _) = srv.user("alice");
    let idb = register(srv.addr, "bob");
    let idc = register(srv.addr, "carol");
    let first = ask(&mut a, with_cmid(one_chat(idb, "to bob"), "n-1"));
    assert_eq!((&first["msgid"], seq(&first)), (&json!(ACK), 1), "{first}");
    let other = ask(&mut a, with_cmid(one_chat(idc, "to carol"), "n-1"));
    assert_eq!(
        (&other["msgid"], &other["errno"], &other["request"]),
        (&json!(ERROR), &json!(102), &json!(6)),
        "an ACK here would name bob's message: {other}"
    );
    let (mut c, _) = sync_login(srv.addr, idc, &pw("carol"));
    assert_eq!(read_sync(&mut c).count, 0, "nothing was stored for carol");
    // In its own conversation the cmid is still a retry of the first message.
    let again = ask(&mut a, with_cmid(one_chat(idb, "to bob"), "n-1"));
    assert_eq!((&again["msgid"], seq(&again)), (&json!(ACK), 1), "{again}");
}

fn a_null_reqid_is_echoed_in_the_ack() {
    let srv = TestServer::start();
    let (mut a, _) = srv.user("alice");
    let idb = register(srv.addr, "bob");
    let mut req = one_chat(idb, "with a null reqid");
    req["reqid"] = Value::Null;
    a.send(&req).unwrap();
    let ack = a.recv_matching(|v| !is_chat(v)).unwrap();
    assert_eq!(
        (&ack["msgid"], &ack["errno"], ack.get("reqid")),
        (&json!(ACK), &json!(0), Some(&Value::Null)),
        "{ack}"
    );
}

fn a_long_time_is_replaced_by_the_server_clock() {
    let srv = TestServer::start();
    let (mut a, _) = srv.user("alice");
    let idb = register(srv.addr, "bob");
    let (mut b, _) = sync_login(srv.addr, idb, &pw("bob"));
    read_sync(&mut b);
    let mut req = one_chat(idb, "short text, long time");
    req["time"] = json!("T".repeat(100_000));
    let ack = ask(&mut a, req);
    assert_eq!(ack["msgid"], ACK, "{ack}");
    let got = b.recv_matching(is_chat).unwrap();
    let time = got["time"].as_str().unwrap();
    assert_eq!(time.len(), "2026-12-01 05:02:45".len(), "{time:.80}");
    let mut ok = one_chat(idb, "a normal time");
    ok["time"] = json!("2024-05-01 12:34:56");
    ask(&mut a, ok);
    let got = b.recv_matching(is_chat).unwrap();
    assert_eq!(
        got["time"], "2024-05-01 12:34:56",
        "a sender's own time is kept"
    );
}

on_both_backends!(
    a_cmid_used_in_another_conversation_is_refused_and_nothing_is_stored,
    a_null_reqid_is_echoed_in_the_ack,
    a_long_time_is_replaced_by_the_server_clock,
);
