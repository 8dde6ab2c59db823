//! `--retention-days`, on SQLite and on MySQL: messages older than that are pruned in the
//! background; they are no longer in HISTORY and a receiver whose cursor lies behind them
//! never gets them. The messages are made old in the database (`util::age_log`), and the
//! server restarted so its pruner runs (about a second after start, then every minute).

mod util;

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use util::chatlog::{
    acked_seqs, ask, one_chat, pw, read_sync, send_pipelined, seq, sync_login, HISTORY_ACK,
};
use util::faults::register;
use util::server::TestServer;

fn old_messages_are_pruned() {
    let mut srv = TestServer::builder()
        .args(&["--retention-days", "7"])
        .start();
    let (mut s, ids) = srv.user("sender");
    let idr = register(srv.addr, "reader");
    let reqs: Vec<Value> = (1..=10).map(|i| one_chat(idr, &format!("m{i}"))).collect();
    assert_eq!(
        acked_seqs(&send_pipelined(&mut s, &reqs, 10), 6),
        (1..=10).collect::<Vec<_>>()
    );
    util::age_log::age_messages(&srv.db, 4, 8); // 1..4: 8 days old
    util::age_log::age_messages(&srv.db, 6, 6); // 5, 6 (and 1..4 again): 6 days, kept
    srv.restart();

    let (mut s, _) = util::chatlog::login_retrying(srv.client(), ids, &pw("sender"), false);
    let deadline = Instant::now() + Duration::from_secs(20);
    let seqs = loop {
        let h = ask(&mut s, json!({"msgid": 16, "peer": idr}));
        assert_eq!(h["msgid"], HISTORY_ACK, "{h}");
        let seqs: Vec<i64> = h["messages"].as_array().unwrap().iter().map(seq).collect();
        if seqs.first() != Some(&1) || Instant::now() > deadline {
            assert_eq!(h["more"], false, "{h}");
            break seqs;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(seqs, (5..=10).collect::<Vec<_>>(), "pruned: 1..4 only");
    let (mut r, _) = sync_login(srv.addr, idr, &pw("reader"));
    let synced = read_sync(&mut r);
    assert_eq!(
        synced.chats.iter().map(seq).collect::<Vec<_>>(),
        (5..=10).collect::<Vec<_>>()
    );
    assert_eq!(synced.count, 6);
    // The conversation goes on after the pruned ones.
    assert_eq!(seq(&ask(&mut s, one_chat(idr, "m11"))), 11);
}

on_both_backends!(old_messages_are_pruned);
