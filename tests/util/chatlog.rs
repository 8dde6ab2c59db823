//! The message log's side of the protocol as raw JSON (`serde_json` values, no typed requests
//! of the protocol crate): sync logins and their backlog up to SYNC_DONE, chats sent pipelined
//! with their ACKs (and seqs), single requests matched by `reqid`, numbered texts, and the
//! check that a conversation arrives in seq order without gaps.

use clusterchat_proto::client::{Client, ClientError};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

// The msgids the tests name, from the protocol crate (each test crate uses some of them).
#[allow(unused_imports)]
pub use clusterchat_proto::msgid::{
    ACK, ERROR, GROUP_CHAT, HISTORY, HISTORY_ACK, LOGIN, LOGIN_ACK, LOGOUT, MEMBERS, MEMBERS_ACK,
    ONE_CHAT, RECV, SYNC_DONE,
};

/// The password `TestServer::user` and `util::faults::register` give `name`.
pub fn pw(name: &str) -> String {
    format!("pw-{name}")
}

/// A ONE_CHAT request (no `id`: the server acts as the connection's user).
pub fn one_chat(to: i64, msg: &str) -> Value {
    json!({"msgid": ONE_CHAT, "toid": to, "msg": msg})
}

/// A GROUP_CHAT request.
pub fn group_chat(group: i64, msg: &str) -> Value {
    json!({"msgid": GROUP_CHAT, "groupid": group, "msg": msg})
}

/// Message `i`'s text, padded with `x` to at least `len` bytes.
pub fn numbered(i: usize, len: usize) -> String {
    let mut s = format!("n{i:06}-");
    while s.len() < len {
        s.push('x');
    }
    s
}

/// The number of a [`numbered`] text.
pub fn number(msg: &Value) -> usize {
    let s = msg
        .as_str()
        .unwrap_or_else(|| panic!("msg is not a string: {msg}"));
    s[1..7]
        .parse()
        .unwrap_or_else(|_| panic!("not a numbered text: {s}"))
}

/// A frame's `seq` (panics when it has none).
pub fn seq(frame: &Value) -> i64 {
    frame["seq"]
        .as_i64()
        .unwrap_or_else(|| panic!("frame without an integer seq: {frame}"))
}

/// Whether a frame is a chat message (6 or 10).
pub fn is_chat(v: &Value) -> bool {
    v["msgid"] == ONE_CHAT || v["msgid"] == GROUP_CHAT
}

fn next_reqid() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!("r{}", N.fetch_add(1, Ordering::Relaxed))
}

/// Sends `req` with a fresh string `reqid` and returns the frame that echoes it (ACK, ERROR,
/// HISTORY_ACK, MEMBERS_ACK, ...). Frames arriving meanwhile stay for [`Client::recv`].
pub fn ask(c: &mut Client, mut req: Value) -> Value {
    let reqid = next_reqid();
    req["reqid"] = json!(reqid);
    c.send(&req).expect("send request");
    c.recv_matching(|v| v["reqid"] == reqid && !is_chat(v))
        .unwrap_or_else(|e| panic!("no reply echoing reqid {reqid} to {req}: {e}"))
}

/// Sends a LOGIN (`sync` or legacy) and returns the LOGIN_ACK (or ERROR), whatever its errno.
pub fn send_login(c: &mut Client, id: i64, password: &str, sync: bool) -> Value {
    let mut login = json!({"msgid": LOGIN, "id": id, "password": password});
    if sync {
        login["sync"] = json!(true);
    }
    c.send(&login).expect("send LOGIN");
    c.recv_matching(|v| v["msgid"] == LOGIN_ACK || v["msgid"] == ERROR)
        .expect("LOGIN_ACK")
}

/// Logs in with sync on a new connection to `addr`, retrying while the server still holds an
/// earlier session of the account (errno 2: its close not processed yet), for up to 30 s.
/// Returns the client and the LOGIN_ACK.
pub fn sync_login(addr: SocketAddr, id: i64, password: &str) -> (Client, Value) {
    login_retrying(Client::connect(addr).expect("connect"), id, password, true)
}

/// Logs in on `c` (sync or legacy), retrying while the answer is errno 2, for up to 30 s.
pub fn login_retrying(mut c: Client, id: i64, password: &str, sync: bool) -> (Client, Value) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ack = send_login(&mut c, id, password, sync);
        if ack["msgid"] == LOGIN_ACK && ack["errno"] == 0 {
            return (c, ack);
        }
        assert!(
            ack["errno"] == 2 && Instant::now() < deadline,
            "login of {id} (sync: {sync}) refused: {ack}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What a sync login sent after its LOGIN_ACK: the chat frames before SYNC_DONE, and the
/// count SYNC_DONE gave.
#[derive(Debug)]
pub struct Synced {
    pub chats: Vec<Value>,
    pub count: i64,
}

/// Reads up to SYNC_DONE. An ERROR on the way is a failure; other frames are skipped.
pub fn read_sync(c: &mut Client) -> Synced {
    let mut chats = Vec::new();
    loop {
        let v = c.recv().unwrap_or_else(|e| {
            panic!("reading the sync backlog after {} chats: {e}", chats.len())
        });
        match v["msgid"].as_i64() {
            Some(SYNC_DONE) => {
                let count = v["count"]
                    .as_i64()
                    .unwrap_or_else(|| panic!("SYNC_DONE without a count: {v}"));
                return Synced { chats, count };
            }
            Some(ONE_CHAT) | Some(GROUP_CHAT) => chats.push(v),
            Some(ERROR) => panic!("ERROR during a sync backlog: {v}"),
            _ => {}
        }
    }
}

/// Sends `reqs` pipelined, at most `window` unanswered, request `i` with reqid `"p<i>"`, and
/// returns each one's reply (ACK or ERROR) in request order. Chat frames that arrive meanwhile
/// stay for [`Client::recv`].
pub fn send_pipelined(c: &mut Client, reqs: &[Value], window: usize) -> Vec<Value> {
    let mut replies: Vec<Option<Value>> = vec![None; reqs.len()];
    let (mut sent, mut answered) = (0, 0);
    while answered < reqs.len() {
        while sent < reqs.len() && sent - answered < window {
            let mut r = reqs[sent].clone();
            r["reqid"] = json!(format!("p{sent}"));
            c.send(&r).expect("send chat");
            sent += 1;
        }
        let v = c
            .recv_matching(|v| {
                (v["msgid"] == ACK || v["msgid"] == ERROR)
                    && v["reqid"].as_str().is_some_and(|r| r.starts_with('p'))
            })
            .unwrap_or_else(|e| panic!("{answered} of {} requests answered: {e}", reqs.len()));
        let i: usize = v["reqid"].as_str().unwrap()[1..].parse().expect("reqid");
        assert!(replies[i].is_none(), "two replies to request {i}: {v}");
        replies[i] = Some(v);
        answered += 1;
    }
    replies.into_iter().map(Option::unwrap).collect()
}

/// The seqs of successful chat ACKs (`request` 6 or 10), in order; any other reply fails.
pub fn acked_seqs(replies: &[Value], request: i64) -> Vec<i64> {
    replies
        .iter()
        .map(|r| {
            assert!(
                r["msgid"] == ACK && r["errno"] == 0 && r["request"] == request,
                "not a successful ACK of request {request}: {r}"
            );
            seq(r)
        })
        .collect()
}

/// LOGOUT with a reqid; returns once it is acknowledged (frames before it stay for `recv`).
pub fn logout(c: &mut Client) {
    let ack = ask(c, json!({"msgid": LOGOUT}));
    assert!(ack["msgid"] == ACK && ack["errno"] == 0, "LOGOUT: {ack}");
}

/// Takes the receipt of one conversation's frames as a client that drops duplicates by seq:
/// a seq at or below the highest held is a duplicate, the next one is taken, anything higher
/// is a gap.
#[derive(Debug, Default)]
pub struct InOrder {
    /// The highest seq held (every seq from 1 to it is held).
    pub max: i64,
    /// Frames dropped as duplicates.
    pub dups: usize,
}

impl InOrder {
    /// Takes one frame's seq: `Ok(true)` if new, `Ok(false)` if a duplicate, `Err` on a gap.
    pub fn take(&mut self, seq: i64) -> Result<bool, String> {
        if seq <= self.max {
            self.dups += 1;
            Ok(false)
        } else if seq == self.max + 1 {
            self.max = seq;
            Ok(true)
        } else {
            Err(format!("gap: seq {seq} after {}", self.max))
        }
    }
}

/// Turns a client error into a panic that names what was going on.
pub fn ok<T>(r: Result<T, ClientError>, what: &str) -> T {
    r.unwrap_or_else(|e| panic!("{what}: {e}"))
}
