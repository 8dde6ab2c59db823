//! One connection's chats are stored, acked and forwarded in the order sent, whichever path
//! takes them: the IO thread's fast path (most 1:1 chats), or a worker (a chat that waited
//! behind a worker request of the same connection). Both hand them to the one log writer queue
//! (see `service::log_writer`). A second place that commits chats (an IO loop committing its
//! own batch, say) would let the chats sent right after a worker's overtake it unless it
//! waits for them: this test catches that.

mod util;

use clusterchat_proto::msgid;
use serde_json::json;
use util::chatlog::numbered;
use util::server::TestServer;

/// A HISTORY (a worker request) and a chat behind it in one write: that chat goes through a
/// worker to the log writer. As soon as the HISTORY_ACK is back, the next chat, on the fast
/// path: it must not be stored before the one the worker handed over.
#[test]
fn chats_keep_their_order_between_a_worker_and_the_fast_path() {
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
