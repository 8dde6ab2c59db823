//! One connection's chats are stored, acked and forwarded in the order sent, whichever thread
//! commits them. On SQLite the IO loop commits the chats it reads itself; a chat that waited
//! behind a worker request goes to the log writer's thread instead, and the chats sent right
//! after it must not overtake it (see `service::log_writer`).

mod util;

use clusterchat_proto::msgid;
use serde_json::json;
use util::chatlog::numbered;
use util::server::TestServer;

/// A HISTORY (a worker request) and a chat behind it in one write: that chat goes through a
/// worker to the writer thread. As soon as the HISTORY_ACK is back, the next chat: the loop
/// would commit it at once, unless the connection still has a chat in the writer's queue.
#[test]
fn chats_keep_their_order_between_the_writer_thread_and_the_loop() {
    let srv = TestServer::start();
    let (mut bob, b) = srv.user("bob");
    let (mut carl, _) = srv.user("carl");
    let rounds = 300;
    let chat = |i: usize| {
        let mut bytes = json!({"msgid": msgid::ONE_CHAT, "toid": b, "msg": numbered(i, 16)})
            .to_string()
            .into_bytes();
        bytes.push(b'\n');
        bytes
    };
    for k in 0..rounds {
        let mut batch = json!({"msgid": msgid::HISTORY, "peer": b, "limit": 1})
            .to_string()
            .into_bytes();
        batch.push(b'\n');
        batch.extend(chat(2 * k));
        carl.send_raw(&batch).unwrap();
        carl.recv_msgid(msgid::HISTORY_ACK).unwrap();
        carl.send_raw(&chat(2 * k + 1)).unwrap();
    }
    let mut last_seq = 0;
    for i in 0..2 * rounds {
        let m = bob.recv_msgid(msgid::ONE_CHAT).unwrap();
        assert_eq!(
            util::chatlog::number(&m["msg"]),
            i,
            "message {i} overtaken: got {m}"
        );
        let seq = m["seq"].as_i64().expect("a seq");
        assert!(seq > last_seq, "seq {seq} after {last_seq}");
        last_seq = seq;
    }
}
