//! One sender streams numbered messages to one receiver that keeps moving: it logs out (LOGOUT
//! with a reqid) and logs in again with sync, on the same server or another one, while the
//! stream goes on. The receiver drops duplicates by seq, confirms with RECV as it goes, and
//! must hold every seq 1..N in order: a frame more than one past the highest held is a gap.

use super::chatlog::{
    acked_seqs, is_chat, number, numbered, one_chat, pw, send_login, seq, InOrder, ACK, ERROR,
    ONE_CHAT, RECV,
};
use clusterchat_proto::client::Client;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The sender stays at most this many messages ahead of what the receiver holds, so the moves
/// happen while messages are on their way.
const AHEAD: i64 = 400;
/// RECV after this many new messages.
const RECV_EVERY: i64 = 100;

/// What the receiver saw.
#[derive(Debug)]
pub struct Moves {
    /// Frames dropped as duplicates.
    pub dups: usize,
    /// Logins of the receiver (the first one included).
    pub logins: usize,
}

/// Registers a sender (logged in on `sender_addr`) and a receiver and streams `n` messages
/// from one to the other. The receiver logs in with sync on `homes[0]`, then after each
/// `n / (moves + 1)` messages logs out and in again on the next address of `homes` (round
/// robin; the same connection when there is one), `moves` times. Panics on a gap, a foreign
/// frame or an ERROR; returns once the receiver holds seq `n` (the sender's ACKs must be
/// exactly 1..=n).
pub fn stream_while_moving(
    sender_addr: SocketAddr,
    homes: &[SocketAddr],
    n: usize,
    moves: usize,
) -> Moves {
    let (sender, rname) = ("sender", "receiver");
    let mut s = Client::connect(sender_addr).expect("connect sender");
    let ids = s.register(sender, &pw(sender)).expect("register sender");
    let idr = s.register(rname, &pw(rname)).expect("register receiver");
    s.login(ids, &pw(sender)).expect("login sender");
    let held = Arc::new(AtomicI64::new(0));
    let feeder = spawn_sender(s, idr, n, Arc::clone(&held));

    let mut held_by = InOrder::default();
    let mut logins = 0;
    let mut home = 0;
    let mut r = connect_and_login(homes[home], idr, rname, &mut logins);
    let mut last_recv = 0;
    let mut next_move = 1;
    while held_by.max < n as i64 {
        let f = r
            .recv()
            .unwrap_or_else(|e| panic!("receiver stalled holding {} of {n}: {e}", held_by.max));
        take(&f, ids, &mut held_by);
        held.store(held_by.max, Ordering::SeqCst);
        if held_by.max - last_recv >= RECV_EVERY {
            r.send(&json!({"msgid": RECV, "peer": ids, "seq": held_by.max}))
                .expect("send RECV");
            last_recv = held_by.max;
        }
        if next_move <= moves && held_by.max >= (next_move * n / (moves + 1)) as i64 {
            next_move += 1;
            // Log out, keeping whatever arrives before the LOGOUT's ACK.
            r.send(&json!({"msgid": 3, "reqid": "move"}))
                .expect("send LOGOUT");
            loop {
                let f = r.recv().expect("LOGOUT's ACK");
                if f["reqid"] == "move" {
                    assert!(f["msgid"] == ACK && f["errno"] == 0, "LOGOUT: {f}");
                    break;
                }
                take(&f, ids, &mut held_by);
            }
            held.store(held_by.max, Ordering::SeqCst);
            if homes.len() > 1 {
                home = (home + 1) % homes.len();
                r = connect_and_login(homes[home], idr, rname, &mut logins);
            } else {
                login(&mut r, idr, rname, &mut logins);
            }
        }
    }
    let seqs = feeder.join().expect("sender thread");
    assert_eq!(
        seqs,
        (1..=n as i64).collect::<Vec<_>>(),
        "the sender's ACKs"
    );
    Moves {
        dups: held_by.dups,
        logins,
    }
}

/// Files one frame: a chat of the stream (checked against its seq), SYNC_DONE, or a failure.
fn take(f: &Value, sender: i64, held: &mut InOrder) {
    if is_chat(f) {
        assert_eq!(
            (&f["msgid"], &f["id"]),
            (&json!(ONE_CHAT), &json!(sender)),
            "a frame from elsewhere: {f}"
        );
        let s = seq(f);
        if held.take(s).unwrap_or_else(|e| panic!("{e}: {f}")) {
            assert_eq!(
                number(&f["msg"]) as i64,
                s - 1,
                "text and seq disagree: {f}"
            );
        }
    } else {
        assert!(f["msgid"] != ERROR, "ERROR on the receiver: {f}");
    }
}

fn connect_and_login(addr: SocketAddr, id: i64, name: &str, logins: &mut usize) -> Client {
    let mut c = Client::connect(addr).expect("connect receiver");
    login(&mut c, id, name, logins);
    c
}

/// Logs in with sync, retrying while the previous session is still held (errno 2).
fn login(c: &mut Client, id: i64, name: &str, logins: &mut usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ack = send_login(c, id, &pw(name), true);
        if ack["errno"] == 0 {
            *logins += 1;
            return;
        }
        assert!(
            ack["errno"] == 2 && Instant::now() < deadline,
            "login: {ack}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sends messages 0..n to `to`, message `i` only once the receiver holds `i - AHEAD`, with up
/// to 32 unanswered; returns the ACKs' seqs in order.
fn spawn_sender(mut s: Client, to: i64, n: usize, held: Arc<AtomicI64>) -> JoinHandle<Vec<i64>> {
    std::thread::spawn(move || {
        let mut replies: Vec<Value> = Vec::with_capacity(n);
        let mut sent = 0;
        let deadline = Instant::now() + Duration::from_secs(120);
        while replies.len() < n {
            while sent < n
                && sent - replies.len() < 32
                && sent as i64 <= held.load(Ordering::SeqCst) + AHEAD
            {
                let mut req = one_chat(to, &numbered(sent, 40));
                req["reqid"] = json!(sent);
                s.send(&req).expect("send chat");
                sent += 1;
            }
            if sent == replies.len() {
                assert!(
                    Instant::now() < deadline,
                    "the receiver stopped taking messages"
                );
                std::thread::sleep(Duration::from_millis(2));
                continue;
            }
            let r = s
                .recv_matching(|v| v["msgid"] == ACK || v["msgid"] == ERROR)
                .expect("a reply to a chat");
            assert_eq!(r["reqid"], replies.len(), "replies out of order: {r}");
            replies.push(r);
        }
        acked_seqs(&replies, ONE_CHAT)
    })
}
