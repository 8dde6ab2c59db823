//! The message log when a server of a cluster (two servers, MySQL and Redis) is killed with
//! SIGKILL mid-stream:
//! * the receiver's server dies: at its next sync login, on the other server, the receiver
//!   holds every seq its sender got an ACK for, in order, no gap;
//! * the sender's server dies: it sends everything without an ACK again, with the same cmids,
//!   through the other server; every message is stored and delivered once.
//!
//! Only chat servers the test started are killed; MySQL and Redis are never touched. Deadlines
//! only bound waiting for something that must happen.

mod util;

use clusterchat_proto::client::{Client, ClientError};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use util::chatlog::{
    is_chat, number, numbered, one_chat, pw, read_sync, seq, sync_login, InOrder, ACK, ERROR,
    ONE_CHAT, RECV,
};
use util::cluster::TestCluster;
use util::faults::{register, serial};

const N: usize = 3000;
/// The sender stays this far ahead of the receiver, so the kill is mid-stream.
const AHEAD: i64 = 300;

/// Reads chats from `sender` on `r` into `held` until it holds `until` or the connection
/// ends; confirms with RECV every 50; publishes its progress.
fn read_into(r: &mut Client, sender: i64, held: &mut InOrder, until: i64, progress: &AtomicI64) {
    let mut confirmed = held.max;
    while held.max < until {
        let f = match r.recv() {
            Ok(f) => f,
            Err(ClientError::Timeout) => continue,
            Err(_) => return,
        };
        assert!(f["msgid"] != ERROR, "ERROR on the receiver: {f}");
        if !is_chat(&f) {
            continue;
        }
        assert_eq!(
            (&f["id"], &f["msgid"]),
            (&json!(sender), &json!(ONE_CHAT)),
            "{f}"
        );
        if held.take(seq(&f)).unwrap_or_else(|e| panic!("{e}: {f}")) {
            assert_eq!(number(&f["msg"]) as i64, seq(&f) - 1, "{f}");
        }
        progress.store(held.max, Ordering::SeqCst);
        if held.max - confirmed >= 50 {
            let _ = r.send(&json!({"msgid": RECV, "peer": sender, "seq": held.max}));
            confirmed = held.max;
        }
    }
}

#[test]
fn sigkill_of_the_receivers_server_loses_no_acked_message() {
    let _serial = serial();
    let Some(mut cluster) = TestCluster::start("log_kill_rx", 2) else {
        return;
    };
    let (a, b) = (cluster.servers[0].addr, cluster.servers[1].addr);
    let ids = register(b, "sender");
    let idr = register(b, "receiver");
    let progress = Arc::new(AtomicI64::new(0));

    // The sender, on the surviving server: a window of 32, and never more than AHEAD past
    // what the receiver holds.
    let (mut s, _) =
        util::chatlog::login_retrying(Client::connect(b).unwrap(), ids, &pw("sender"), false);
    let p = Arc::clone(&progress);
    let sender = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(120);
        let (mut sent, mut seqs) = (0usize, Vec::new());
        while seqs.len() < N {
            while sent < N
                && sent - seqs.len() < 32
                && sent as i64 <= p.load(Ordering::SeqCst) + AHEAD
            {
                let mut req = one_chat(idr, &numbered(sent, 100));
                req["reqid"] = json!(sent);
                s.send(&req).expect("send");
                sent += 1;
            }
            if sent == seqs.len() {
                assert!(
                    Instant::now() < deadline,
                    "the receiver stopped taking messages"
                );
                std::thread::sleep(Duration::from_millis(2));
                continue;
            }
            let r = s
                .recv_matching(|v| v["msgid"] == ACK || v["msgid"] == ERROR)
                .expect("reply");
            assert!(
                r["msgid"] == ACK && r["errno"] == 0 && r["reqid"] == seqs.len(),
                "{r}"
            );
            seqs.push(seq(&r));
        }
        seqs
    });

    // The receiver on the server that dies, reading on a thread until its connection ends.
    let (mut r, _) = sync_login(a, idr, &pw("receiver"));
    assert_eq!(read_sync(&mut r).count, 0);
    let p = Arc::clone(&progress);
    let reader = std::thread::spawn(move || {
        let mut held = InOrder::default();
        read_into(&mut r, ids, &mut held, N as i64, &p);
        held
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while progress.load(Ordering::SeqCst) < 1000 {
        assert!(Instant::now() < deadline, "the stream did not start");
        std::thread::sleep(Duration::from_millis(5));
    }
    cluster.servers[0].signal("KILL");
    cluster.servers[0].wait_exit(Duration::from_secs(10));
    let mut held = reader.join().expect("reader");
    let before = held.max;

    // At the next sync login, on the other server, it gets the rest: no gap.
    let (mut r, _) = sync_login(b, idr, &pw("receiver"));
    read_into(&mut r, ids, &mut held, N as i64, &progress);
    let seqs = sender.join().expect("sender");
    assert_eq!(
        seqs,
        (1..=N as i64).collect::<Vec<_>>(),
        "the sender's ACKs"
    );
    assert_eq!(
        held.max, N as i64,
        "the receiver holds every acknowledged seq"
    );
    eprintln!(
        "killed the receiver's server holding {before}; {} duplicates after",
        held.dups
    );
}

#[test]
fn sigkill_of_the_senders_server_then_cmid_retries_store_each_message_once() {
    let _serial = serial();
    let Some(mut cluster) = TestCluster::start("log_kill_tx", 2) else {
        return;
    };
    let (a, b) = (cluster.servers[0].addr, cluster.servers[1].addr);
    let ids = register(b, "sender");
    let idr = register(b, "receiver");
    let req = |i: usize, reqid: Value| {
        json!({"msgid": ONE_CHAT, "toid": idr, "msg": numbered(i, 100),
            "cmid": format!("c{i}"), "reqid": reqid})
    };
    let (mut r, _) = sync_login(b, idr, &pw("receiver"));
    assert_eq!(read_sync(&mut r).count, 0);
    let progress = Arc::new(AtomicI64::new(0));
    let p = Arc::clone(&progress);
    let reader = std::thread::spawn(move || {
        let mut held = InOrder::default();
        read_into(&mut r, ids, &mut held, N as i64, &p);
        held
    });

    // The sender on the server that dies; the kill comes once 1000 are acknowledged.
    let (mut s, _) =
        util::chatlog::login_retrying(Client::connect(a).unwrap(), ids, &pw("sender"), false);
    let mut acked = BTreeSet::new();
    let (mut sent, mut killed) = (0usize, false);
    while acked.len() < N {
        while sent < N && sent - acked.len() < 32 {
            if s.send(&req(sent, json!(sent))).is_err() {
                break;
            }
            sent += 1;
        }
        match s.recv_matching(|v| v["msgid"] == ACK || v["msgid"] == ERROR) {
            Ok(v) => {
                assert!(v["msgid"] == ACK && v["errno"] == 0, "{v}");
                acked.insert(v["reqid"].as_u64().unwrap() as usize);
            }
            Err(e) => {
                assert!(
                    killed,
                    "the sender's connection failed before the kill: {e}"
                );
                break;
            }
        }
        if !killed && acked.len() >= 1000 {
            cluster.servers[0].signal("KILL");
            cluster.servers[0].wait_exit(Duration::from_secs(10));
            killed = true;
        }
    }
    assert!(
        killed && acked.len() < N,
        "the stream ended before the kill"
    );
    let acked_before = acked.len();

    // Everything without an ACK goes again, same cmids, through the other server.
    let (mut s, _) =
        util::chatlog::login_retrying(Client::connect(b).unwrap(), ids, &pw("sender"), false);
    let retry: Vec<usize> = (0..N).filter(|i| !acked.contains(i)).collect();
    for chunk in retry.chunks(32) {
        for i in chunk {
            s.send(&req(*i, json!(i))).unwrap();
        }
        for _ in chunk {
            let v = s
                .recv_matching(|v| v["msgid"] == ACK || v["msgid"] == ERROR)
                .unwrap();
            assert!(v["msgid"] == ACK && v["errno"] == 0, "{v}");
        }
    }
    let held = reader.join().expect("reader");
    assert_eq!(held.max, N as i64, "N messages, N seqs: each stored once");
    let h = util::chatlog::ask(&mut s, json!({"msgid": 16, "peer": idr, "limit": 1}));
    assert_eq!(h["messages"][0]["seq"], N, "the newest seq: {h}");
    eprintln!(
        "killed the sender's server after {acked_before} ACKs; {} retried; {} duplicates",
        retry.len(),
        held.dups
    );
}
