//! What crashed or confused the C++ original must not hurt this server: pipelined and split
//! frames, malformed JSON, unknown msgids, wrong field types, oversized frames. Each bad
//! request gets a clear error (or a clean close) and no other connection notices.

mod util;

use clusterchat_proto::client::ClientError;
use clusterchat_proto::{errno, msgid};
use serde_json::json;
use std::io::Read;
use std::time::Duration;
use util::server::TestServer;

fn pipelined_requests_in_one_write_are_all_handled_in_order() {
    let srv = TestServer::start();
    let (_alice, a) = srv.user("alice");
    let (mut bob, b) = srv.user("bob");
    let mut batch = Vec::new();
    let mut c = srv.client();
    c.login(a, "pw-alice").unwrap_err(); // alice is online already: errno 2
    let mut c = srv.client();
    let id = c.register("carl", "pw").unwrap();
    batch.extend_from_slice(
        json!({"msgid": 1, "id": id, "password": "pw"})
            .to_string()
            .as_bytes(),
    );
    for i in 0..50 {
        batch.extend_from_slice(
            json!({"msgid": 6, "id": id, "name": "carl", "toid": b, "msg": format!("p{i}")})
                .to_string()
                .as_bytes(),
        );
        batch.push([0u8, b'\n', b' '][i % 3]);
    }
    c.send_raw(&batch).unwrap();
    for i in 0..50 {
        let m = bob.recv_msgid(msgid::ONE_CHAT).unwrap();
        assert_eq!(m["msg"], format!("p{i}"));
    }
}

fn a_frame_split_across_writes_is_handled_once_whole() {
    let srv = TestServer::start();
    let (_bob, b) = srv.user("bob");
    let mut c = srv.client();
    let frame = json!({"msgid": 4, "name": "分割 split", "password": "x"}).to_string();
    let bytes = frame.as_bytes();
    for chunk in bytes.chunks(3) {
        c.send_raw(chunk).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    c.send_raw(b"\0").unwrap();
    let reply = c.recv().unwrap();
    assert_eq!(reply["msgid"], msgid::REG_ACK);
    assert!(reply["id"].as_i64().unwrap() > b);
}

fn malformed_json_and_unknown_msgids_get_error_replies() {
    let srv = TestServer::start();
    let (mut bob, b) = srv.user("bob");
    let mut c = srv.client();
    let cases: &[(&[u8], i64)] = &[
        (b"{\"msgid\": 1, \"id\": }\n", errno::MALFORMED),
        (b"hello there\n", errno::MALFORMED),
        (b"[1,2,3]\n", errno::MALFORMED),
        (b"{\"id\": 5}\n", errno::UNKNOWN_MSGID),
        (b"{\"msgid\": \"one\"}\n", errno::UNKNOWN_MSGID),
        (b"{\"msgid\": 99}\n", errno::UNKNOWN_MSGID),
        (b"{\"msgid\": 1.5}\n", errno::UNKNOWN_MSGID),
        (
            b"{\"msgid\": 4, \"name\": 7, \"password\": \"x\"}\n",
            errno::BAD_FIELD,
        ),
        (
            b"{\"msgid\": 1, \"id\": \"12\", \"password\": \"x\"}\n",
            errno::BAD_FIELD,
        ),
        (b"{\"msgid\": 1, \"password\": \"x\"}\n", errno::BAD_FIELD),
    ];
    for (bytes, want) in cases {
        c.send_raw(bytes).unwrap();
        let reply = c.recv().unwrap();
        assert_eq!(
            reply["errno"],
            *want,
            "for {:?}: {reply}",
            String::from_utf8_lossy(bytes)
        );
        assert!(reply["errmsg"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // Still usable, and nobody else noticed.
    let id = c.register("still", "fine").unwrap();
    c.login(id, "fine").unwrap();
    c.chat(id, b, "after the storm").unwrap();
    assert_eq!(
        bob.recv_msgid(msgid::ONE_CHAT).unwrap()["msg"],
        "after the storm"
    );
}

fn wrong_field_types_in_chat_requests_are_refused() {
    let srv = TestServer::start();
    let (mut alice, a) = srv.user("alice");
    for (req, want) in [
        (
            json!({"msgid": 6, "toid": "bob", "msg": "x"}),
            errno::BAD_FIELD,
        ),
        (json!({"msgid": 6, "msg": "x"}), errno::BAD_FIELD),
        (json!({"msgid": 7, "friendid": [1]}), errno::BAD_FIELD),
        (json!({"msgid": 8, "groupname": {"a": 1}}), errno::BAD_FIELD),
        (json!({"msgid": 9, "groupid": null}), errno::BAD_FIELD),
        (
            json!({"msgid": 10, "groupid": "1", "msg": "x"}),
            errno::BAD_FIELD,
        ),
        (
            json!({"msgid": 6, "toid": 999_999, "msg": "x"}),
            errno::NOT_FOUND,
        ),
    ] {
        match alice.request(req.clone(), None) {
            Err(ClientError::Refused { errno, .. }) => assert_eq!(errno, want, "{req}"),
            other => panic!("{req}: expected errno {want}, got {other:?}"),
        }
    }
    alice.chat(a, a, "fine").unwrap();
}

fn an_oversized_frame_gets_an_error_and_a_clean_close() {
    let srv = TestServer::start();
    let (mut bob, b) = srv.user("bob");
    let mut c = srv.client();
    let mut big = b"{\"msgid\":4,\"name\":\"".to_vec();
    big.extend(std::iter::repeat_n(b'x', 1 << 20));
    // The server may close before reading it all; a write error is acceptable.
    let _ = c.send_raw(&big);
    let reply = c.recv().unwrap();
    assert_eq!(reply["errno"], errno::TOO_LARGE);
    let mut rest = Vec::new();
    let _ = c.stream().set_read_timeout(Some(Duration::from_secs(5)));
    let mut s = c.stream();
    let n = s.read_to_end(&mut rest);
    assert!(n.is_ok() || rest.is_empty(), "connection closed cleanly");
    // Everyone else is fine.
    let (mut alice, a) = srv.user("alice");
    alice.chat(a, b, "still here").unwrap();
    assert_eq!(
        bob.recv_msgid(msgid::ONE_CHAT).unwrap()["msg"],
        "still here"
    );
}

fn a_large_but_legal_message_is_delivered_whole() {
    let srv = TestServer::start();
    let (mut alice, a) = srv.user("alice");
    let (mut bob, b) = srv.user("bob");
    let text: String = "长".repeat(21_845); // 65,535 bytes: within the default 64 KiB
    alice.chat(a, b, &text).unwrap();
    assert_eq!(bob.recv_msgid(msgid::ONE_CHAT).unwrap()["msg"], text);
    let over = format!("{text}xy"); // 65,537 bytes
    match alice.chat(a, b, &over) {
        Err(ClientError::Refused { errno: e, .. }) => assert_eq!(e, errno::BAD_FIELD),
        other => panic!("a message over --max-message: {other:?}"),
    }
}

/// The old C++ client reads `msg` and `time` as strings without a check: every forwarded chat
/// has both, or is refused (issue 10, case 7).
fn chats_without_a_string_msg_are_refused_and_time_is_stamped() {
    let srv = TestServer::start();
    let (mut alice, a) = srv.user("alice");
    let (mut bob, b) = srv.user("bob");
    let g = alice.create_group(a, "strict", "").unwrap();
    for req in [
        json!({"msgid": 6, "toid": b}),
        json!({"msgid": 6, "toid": b, "msg": 12345, "time": "t"}),
        json!({"msgid": 6, "toid": b, "msg": null}),
        json!({"msgid": 10, "groupid": g, "msg": ["x"]}),
    ] {
        match alice.request(req.clone(), None) {
            Err(ClientError::Refused { errno: e, .. }) => assert_eq!(e, errno::BAD_FIELD, "{req}"),
            other => panic!("{req}: expected errno 102, got {other:?}"),
        }
    }
    for (i, time) in [json!(null), json!(7), json!({"a": 1})]
        .into_iter()
        .enumerate()
    {
        let mut req = json!({"msgid": 6, "toid": b, "msg": format!("t{i}")});
        if !time.is_null() {
            req["time"] = time;
        }
        alice.request(req, None).unwrap();
        let got = bob.recv_msgid(msgid::ONE_CHAT).unwrap();
        assert_eq!(got["msg"], format!("t{i}"));
        let stamped = got["time"].as_str().expect("a string time");
        assert_eq!(stamped.len(), "2026-01-01 00:00:00".len(), "{got}");
    }
    // The old client's own frames (string time, no reqid) still go through untouched.
    let own = json!({"msgid": 6, "id": a, "name": "alice", "toid": b, "msg": "m", "time": "t"});
    alice.send(&own).unwrap();
    assert_eq!(bob.recv_msgid(msgid::ONE_CHAT).unwrap()["time"], "t");
}

/// The old client ends every request with NUL: one request it never closed must cost it that
/// request only (errno 100), not everything it sends after it.
fn an_unclosed_frame_before_a_nul_is_refused_and_the_next_is_read() {
    let srv = TestServer::start();
    let (mut bob, b) = srv.user("bob");
    let mut c = srv.client().use_nul();
    let id = c.register("carl", "pw").unwrap();
    c.send_raw(format!("{{\"msgid\":1,\"id\":{id},\"password\":\"pw\"\0").as_bytes())
        .unwrap();
    let reply = c.recv().unwrap();
    assert_eq!(
        (reply["msgid"].as_i64(), reply["errno"].as_i64()),
        (Some(msgid::ERROR), Some(errno::MALFORMED)),
        "{reply}"
    );
    c.login(id, "pw").unwrap();
    c.chat(id, b, "the next frame counts").unwrap();
    assert_eq!(
        bob.recv_msgid(msgid::ONE_CHAT).unwrap()["msg"],
        "the next frame counts"
    );
}

on_both_backends!(
    chats_without_a_string_msg_are_refused_and_time_is_stamped,
    an_unclosed_frame_before_a_nul_is_refused_and_the_next_is_read,
    pipelined_requests_in_one_write_are_all_handled_in_order,
    a_frame_split_across_writes_is_handled_once_whole,
    malformed_json_and_unknown_msgids_get_error_replies,
    wrong_field_types_in_chat_requests_are_refused,
    an_oversized_frame_gets_an_error_and_a_clean_close,
    a_large_but_legal_message_is_delivered_whole,
);
