//! Fields of a chat that the log must not take on trust, on SQLite and on MySQL: a `cmid` names
//! one message in one conversation, a `null` reqid is still a reqid, a `time` that is not a
//! short string is replaced by the server's (it is stored and forwarded with every copy), a
//! frame forwarded as sent has no escape the server did not check (a lone surrogate, a `seq`
//! spelt with one), and fields besides `msg` are bounded like `msg` is. And a chat to yourself
//! reaches your session like any other.

mod util;

use serde_json::{json, Value};
use util::chatlog::{ask, is_chat, one_chat, pw, read_sync, seq, sync_login, ACK, ERROR};
use util::faults::register;
use util::raw_conn::RawConn;
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

/// A frame the server would forward byte for byte (its `id`, `name` and `time` right, no
/// `reqid`): with a lone surrogate in `msg` it is refused (errno 100) and stored nowhere; with
/// `"se\u0071"` (a `seq` key spelt with an escape) it is rebuilt, so the receiver's frame has
/// one `seq`, the server's.
fn a_frame_with_escapes_is_checked_before_it_is_forwarded() {
    let srv = TestServer::start();
    let (mut a, ida) = srv.user("alice");
    let idb = register(srv.addr, "bob");
    let mut b = RawConn::connect(srv.addr);
    b.send(&json!({"msgid": 1, "id": idb, "password": pw("bob"), "sync": true}));
    assert_eq!(b.next().1["errno"], 0, "bob's login");
    assert_eq!(b.next().1["msgid"], 15, "bob's empty backlog");
    let frame = |extra: &str| {
        format!(
            r#"{{"msgid":6,"id":{ida},"name":"alice","toid":{idb},"time":"2024-05-01 12:00:00",{extra}}}"#
        ) + "\n"
    };
    a.send_raw(frame(r#""msg":"bad\ud800""#).as_bytes())
        .unwrap();
    let refused = a.recv_matching(|v| !is_chat(v)).unwrap();
    assert_eq!(
        (&refused["msgid"], &refused["errno"]),
        (&json!(ERROR), &json!(100)),
        "{refused}"
    );
    a.send_raw(frame(r#""msg":"hi","se\u0071":999"#).as_bytes())
        .unwrap();
    let got = b.next_bytes();
    let text = String::from_utf8_lossy(&got);
    let parsed: Value = serde_json::from_slice(&got).unwrap();
    assert_eq!((&parsed["msg"], seq(&parsed)), (&json!("hi"), 1), "{text}");
    assert_eq!(text.matches("seq").count(), 1, "one seq key: {text}");
    assert!(!text.contains("\\u0071"), "{text}");
}

/// What a chat stores besides its text is bounded: 4 KiB of other fields pass, more is
/// refused with errno 102 and nothing is stored (`--max-message` bounds `msg` alone).
fn extra_fields_cannot_carry_more_than_a_chat_may() {
    let srv = TestServer::start();
    let (mut a, _) = srv.user("alice");
    let idb = register(srv.addr, "bob");
    let mut big = one_chat(idb, "small text");
    big["junk"] = json!("J".repeat(100_000));
    let refused = ask(&mut a, big);
    assert_eq!(
        (&refused["msgid"], &refused["errno"]),
        (&json!(ERROR), &json!(102)),
        "{refused}"
    );
    let mut fits = one_chat(idb, "small text");
    fits["extra"] = json!("E".repeat(3_000));
    let ack = ask(&mut a, fits);
    assert_eq!((&ack["msgid"], seq(&ack)), (&json!(ACK), 1), "{ack}");
    let (mut b, _) = sync_login(srv.addr, idb, &pw("bob"));
    assert_eq!(
        read_sync(&mut b).count,
        1,
        "only the one that fits was stored"
    );
}

/// A chat to yourself is stored in your own conversation and delivered to your session each
/// time, and (a sync session confirms with RECV) sent again at the next sync login while it is
/// not confirmed.
fn a_chat_to_yourself_reaches_your_session_every_time() {
    let srv = TestServer::start();
    let ida = register(srv.addr, "alice");
    let (mut a, _) = sync_login(srv.addr, ida, &pw("alice"));
    read_sync(&mut a);
    for n in 1..=3 {
        let ack = ask(&mut a, one_chat(ida, &format!("note {n}")));
        assert_eq!((&ack["msgid"], seq(&ack)), (&json!(ACK), n), "{ack}");
        let got = a.recv_matching(is_chat).unwrap();
        assert_eq!((&got["msg"], seq(&got)), (&json!(format!("note {n}")), n));
    }
    drop(a);
    let (mut again, _) = sync_login(srv.addr, ida, &pw("alice"));
    assert_eq!(read_sync(&mut again).count, 3, "none was confirmed");
}

on_both_backends!(
    a_cmid_used_in_another_conversation_is_refused_and_nothing_is_stored,
    a_null_reqid_is_echoed_in_the_ack,
    a_long_time_is_replaced_by_the_server_clock,
    a_frame_with_escapes_is_checked_before_it_is_forwarded,
    extra_fields_cannot_carry_more_than_a_chat_may,
    a_chat_to_yourself_reaches_your_session_every_time,
);
