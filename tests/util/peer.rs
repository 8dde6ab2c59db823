//! A chat client for fault-injection tests: one socket, a reader thread that never stops
//! reading (so a message the server wrote is counted even if the server dies right after),
//! and a shared ledger of which numbered message reached whom, live or offline.

use clusterchat_proto::client::FrameReader;
use clusterchat_proto::msgid;
use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError, Sender};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A numbered message: (sender's user id, sender's sequence number).
pub type MsgId = (i64, u64);

/// What one user received over all of their connections.
#[derive(Debug, Default, Clone)]
pub struct Inbox {
    /// Chat messages written to a connection, in arrival order.
    pub live: Vec<MsgId>,
    /// Chat messages found in LOGIN_ACK `offlinemsg` lists, in order.
    pub offline: Vec<MsgId>,
}

impl Inbox {
    /// How often `m` arrived, live and offline together.
    pub fn count(&self, m: MsgId) -> usize {
        self.live
            .iter()
            .chain(&self.offline)
            .filter(|x| **x == m)
            .count()
    }
}

/// Every user's inbox, shared by all readers of a test.
pub type Inboxes = Arc<Mutex<HashMap<i64, Inbox>>>;

/// The server's answer to a numbered chat request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// ACK: the server delivered, relayed or stored the message.
    Ack,
    /// ERROR: refused with this errno and message.
    Error(i64, String),
}

/// A logged-in (or about to log in) user's connection.
pub struct Peer {
    /// The user this connection acts as.
    pub user: i64,
    writer: TcpStream,
    /// Replies that are not for numbered chats: LOGIN_ACK, REG_ACK, acks of string reqids.
    pub events: Receiver<Value>,
    /// Replies to numbered chats (numeric `reqid`): (sequence number, reply).
    pub replies: Receiver<(u64, Reply)>,
    reader: Option<JoinHandle<()>>,
}

/// The text of message `seq` from `from`.
pub fn text(from: i64, seq: u64) -> String {
    format!("m:{from}:{seq}")
}

/// Parses a [`text`] back.
pub fn parse_text(s: &str) -> Option<MsgId> {
    let mut it = s.strip_prefix("m:")?.split(':');
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

fn msg_of(frame: &Value) -> Option<MsgId> {
    parse_text(frame["msg"].as_str()?)
}

impl Peer {
    /// Connects to `addr` as (future) `user`; messages read are filed in `inboxes`.
    pub fn connect(addr: SocketAddr, user: i64, inboxes: &Inboxes) -> Peer {
        let writer = TcpStream::connect(addr).expect("connect to chat server");
        writer.set_nodelay(true).expect("nodelay");
        let stream = writer.try_clone().expect("clone socket");
        let (events_tx, events) = unbounded();
        let (replies_tx, replies) = unbounded();
        let inboxes = Arc::clone(inboxes);
        let reader =
            std::thread::spawn(move || read_loop(stream, user, inboxes, events_tx, replies_tx));
        Peer {
            user,
            writer,
            events,
            replies,
            reader: Some(reader),
        }
    }

    /// Sends one frame; false if the socket is broken.
    pub fn send(&mut self, v: &Value) -> bool {
        let mut bytes = serde_json::to_vec(v).expect("JSON");
        bytes.push(b'\n');
        self.writer.write_all(&bytes).is_ok()
    }

    /// Another handle on the socket, for a sender thread.
    pub fn writer(&self) -> TcpStream {
        self.writer.try_clone().expect("clone socket")
    }

    /// The next event within `timeout`, if any.
    pub fn event(&self, timeout: Duration) -> Option<Value> {
        self.events.recv_timeout(timeout).ok()
    }

    /// Sends LOGIN and returns the LOGIN_ACK (`None`: no answer within `timeout`).
    pub fn login(&mut self, password: &str, timeout: Duration) -> Option<Value> {
        let user = self.user;
        if !self.send(&json!({"msgid": msgid::LOGIN, "id": user, "password": password})) {
            return None;
        }
        self.wait_event(timeout, |v| v["msgid"] == msgid::LOGIN_ACK)
    }

    /// Logs in, retrying every 250 ms while the answer is a refusal, until `deadline`.
    /// Returns the successful LOGIN_ACK and the number of attempts, or the last answer.
    pub fn login_until(
        &mut self,
        password: &str,
        deadline: Instant,
    ) -> Result<(Value, u32), Value> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let ack = self
                .login(password, Duration::from_secs(15))
                .unwrap_or_else(|| json!({"errno": -1, "errmsg": "no LOGIN_ACK in 15 s"}));
            if ack["errno"] == 0 {
                return Ok((ack, attempts));
            }
            if Instant::now() >= deadline {
                return Err(ack);
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Sends LOGOUT and waits for its ACK; true when it came.
    pub fn logout(&mut self, timeout: Duration) -> bool {
        let user = self.user;
        self.send(&json!({"msgid": msgid::LOGOUT, "id": user, "reqid": "logout"}))
            && self
                .wait_event(timeout, |v| v["reqid"] == "logout")
                .is_some_and(|v| v["msgid"] == msgid::ACK)
    }

    /// Sends numbered chat `seq` to `to` (the reply arrives on [`Peer::replies`]).
    pub fn chat(&mut self, to: i64, seq: u64) -> bool {
        let frame = chat_frame(self.user, to, seq);
        self.writer.write_all(&frame).is_ok()
    }

    /// Sends numbered chat `seq` to `to` and waits up to `timeout` for its reply.
    pub fn chat_wait(&mut self, to: i64, seq: u64, timeout: Duration) -> Option<Reply> {
        if !self.chat(to, seq) {
            return None;
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.replies.recv_timeout(left) {
                Ok((s, r)) if s == seq => return Some(r),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }

    fn wait_event(&self, timeout: Duration, wanted: impl Fn(&Value) -> bool) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(v) if wanted(&v) => return Some(v),
                Ok(_) => continue,
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// Closes the socket and waits for the reader to finish.
    pub fn close(mut self) {
        let _ = self.writer.shutdown(Shutdown::Both);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.writer.shutdown(Shutdown::Both);
    }
}

/// The wire bytes of numbered chat `seq` from `from` to `to`, with `reqid` = `seq`.
pub fn chat_frame(from: i64, to: i64, seq: u64) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(&json!({
        "msgid": msgid::ONE_CHAT, "id": from, "toid": to, "msg": text(from, seq), "reqid": seq
    }))
    .expect("JSON");
    bytes.push(b'\n');
    bytes
}

fn read_loop(
    stream: TcpStream,
    user: i64,
    inboxes: Inboxes,
    events: Sender<Value>,
    replies: Sender<(u64, Reply)>,
) {
    let mut reader = FrameReader::new(stream);
    while let Ok(v) = reader.next_value() {
        let id = v["msgid"].as_i64();
        match id {
            Some(msgid::ONE_CHAT) => {
                if let Some(m) = msg_of(&v) {
                    inboxes
                        .lock()
                        .unwrap()
                        .entry(user)
                        .or_default()
                        .live
                        .push(m);
                }
            }
            Some(msgid::ACK) | Some(msgid::ERROR) if v["reqid"].is_u64() => {
                let seq = v["reqid"].as_u64().expect("u64");
                let reply = if id == Some(msgid::ACK) {
                    Reply::Ack
                } else {
                    Reply::Error(
                        v["errno"].as_i64().unwrap_or(-1),
                        v["errmsg"].as_str().unwrap_or("").to_string(),
                    )
                };
                let _ = replies.send((seq, reply));
            }
            _ => {
                if id == Some(msgid::LOGIN_ACK) && v["errno"] == 0 {
                    let found: Vec<MsgId> = v["offlinemsg"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|s| serde_json::from_str::<Value>(s.as_str()?).ok())
                        .filter_map(|f| msg_of(&f))
                        .collect();
                    inboxes
                        .lock()
                        .unwrap()
                        .entry(user)
                        .or_default()
                        .offline
                        .extend(found);
                }
                let _ = events.send(v);
            }
        }
    }
}
