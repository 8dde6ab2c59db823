//! Input backpressure (issue 10, case 3, scaled down): logged-in clients that write pipelined
//! chats far faster than they can be stored do not grow the server's memory: it stops reading
//! them while their requests are in progress. Nothing is lost (every acked message reaches
//! its receiver), and another client is answered during the flood.

mod util;

use clusterchat_proto::msgid;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use util::limits::status_kib;
use util::peer::{Inboxes, Peer, Reply};
use util::server::TestServer;

const FLOODERS: usize = 4;
const PER_FLOODER: u64 = 20_000;
/// Padding in each message's text: each chat is ~1.1 KiB on the wire, 88 MiB in all.
const PADDING: usize = 1024;

/// Numbered chat `seq` from `from` to `to` with a `reqid`, its text padded.
fn padded_chat(from: i64, to: i64, seq: u64) -> Vec<u8> {
    let text = format!("{}:{}", util::peer::text(from, seq), "x".repeat(PADDING));
    let mut frame = serde_json::to_vec(&serde_json::json!({
        "msgid": msgid::ONE_CHAT, "id": from, "toid": to, "msg": text, "reqid": seq
    }))
    .unwrap();
    frame.push(b'\n');
    frame
}

#[test]
fn a_flood_of_pipelined_chats_keeps_memory_bounded_and_loses_nothing() {
    let srv = TestServer::builder().args(&["--io-threads", "1"]).start();
    let inboxes: Inboxes = Arc::default();
    let mut setup = srv.client();
    let password = "pw";
    let ids: Vec<i64> = (0..FLOODERS + 3)
        .map(|i| setup.register(&format!("u{i}"), password).unwrap())
        .collect();
    let sink = ids[FLOODERS]; // offline during the flood: every message goes to the log
    let (c, d) = (ids[FLOODERS + 1], ids[FLOODERS + 2]);
    let mut flooders: Vec<Peer> = ids[..FLOODERS]
        .iter()
        .map(|&id| {
            let mut p = Peer::connect(srv.addr, id, &inboxes);
            assert_eq!(
                p.login(password, Duration::from_secs(20)).unwrap()["errno"],
                0
            );
            p
        })
        .collect();
    let mut carol = srv.client();
    carol.login(c, password).unwrap();
    let mut dave = srv.client();
    dave.login(d, password).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let base_kib = status_kib(srv.pid(), "VmRSS");

    // Each flooder writes all its chats at once (22 MiB each) and counts the replies.
    let acked = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let mut threads = Vec::new();
    for p in flooders.iter_mut() {
        let mut writer = p.writer();
        let me = p.user;
        threads.push(std::thread::spawn(move || {
            let mut burst = Vec::new();
            for seq in 1..=PER_FLOODER {
                burst.extend_from_slice(&padded_chat(me, sink, seq));
                if seq % 100 == 0 {
                    writer.write_all(&burst).unwrap();
                    burst.clear();
                }
            }
        }));
        let replies = p.replies.clone();
        let (acked, errors) = (Arc::clone(&acked), Arc::clone(&errors));
        threads.push(std::thread::spawn(move || {
            for _ in 0..PER_FLOODER {
                match replies.recv_timeout(Duration::from_secs(60)) {
                    Ok((_, Reply::Ack)) => {
                        acked.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok((seq, Reply::Error(errno, msg))) => {
                        errors.lock().unwrap().push((seq, errno, msg))
                    }
                    Err(_) => break,
                }
            }
        }));
    }
    let total = FLOODERS * PER_FLOODER as usize;

    // During the flood, on the same IO loop: a PING, a worker request and a chat of another
    // client are answered before the flood is through.
    while acked.load(Ordering::SeqCst) < 1000 {
        std::thread::sleep(Duration::from_millis(1));
    }
    carol
        .send(&serde_json::json!({"msgid": msgid::PING, "reqid": "p"}))
        .unwrap();
    assert_eq!(carol.recv_msgid(msgid::PONG).unwrap()["reqid"], "p");
    carol.add_friend(c, d).unwrap();
    carol.chat(c, d, "during the flood").unwrap();
    let answered_at = acked.load(Ordering::SeqCst);
    assert_eq!(
        dave.recv_msgid(msgid::ONE_CHAT).unwrap()["msg"],
        "during the flood"
    );

    for t in threads {
        t.join().unwrap();
    }
    let errors = errors.lock().unwrap();
    assert!(
        errors.is_empty(),
        "refused: {:?}",
        &errors[..errors.len().min(5)]
    );
    assert_eq!(acked.load(Ordering::SeqCst), total, "every chat acked");
    assert!(
        answered_at < total,
        "the other client was answered only after the flood"
    );
    // The server read 88 MiB of requests but never held more than a little of them at once
    // (without backpressure it reads them faster than it stores them).
    let peak_kib = status_kib(srv.pid(), "VmHWM");
    let growth_mib = peak_kib.saturating_sub(base_kib) / 1024;
    assert!(
        growth_mib < 32,
        "RSS grew by {growth_mib} MiB ({base_kib} KiB before the flood, {peak_kib} KiB at peak)"
    );

    // Every acked message reaches the receiver (in its LOGIN_ACK or streamed after it).
    let mut receiver = Peer::connect(srv.addr, sink, &inboxes);
    assert_eq!(
        receiver.login(password, Duration::from_secs(60)).unwrap()["errno"],
        0
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    let got = loop {
        let inbox = inboxes
            .lock()
            .unwrap()
            .get(&sink)
            .cloned()
            .unwrap_or_default();
        let n = inbox.live.len() + inbox.offline.len();
        if n >= total || Instant::now() > deadline {
            break inbox;
        }
        drop(inbox);
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut counts = std::collections::HashMap::new();
    for m in got.live.iter().chain(&got.offline) {
        *counts.entry(*m).or_insert(0) += 1;
    }
    for p in &flooders {
        for seq in 1..=PER_FLOODER {
            let n = counts.get(&(p.user, seq)).copied().unwrap_or(0);
            assert_eq!(n, 1, "message {seq} of {} arrived {n} times", p.user);
        }
    }
    eprintln!("RSS {base_kib} KiB before, {peak_kib} KiB at peak; other client answered after {answered_at} of {total} acks");
}
