//! The reactor callbacks of the chat server: framing, the chat rate limit, the fast path, the
//! worker hand-off (through the login gate for requests that hash a password), and input
//! backpressure (see [`crate::service::backpressure`]): after each request taken, a
//! connection with too much in progress is no longer read until it drains.

use super::login_gate::LoginGate;
use crate::http::{self, HttpFront};
use crate::metrics::{Kind, Transport};
use crate::service::backpressure::{self, Work};
use crate::service::throttle::{rate_limited, TokenBucket};
use crate::service::{send_error, ChatConn, ChatService, ConnContext, ServiceError};
use clusterchat_net::{Bytes, Handler};
use clusterchat_proto::codec::{self, Frames, Item};
use clusterchat_proto::{errno, msgid, reply, Envelope};
use serde_json::value::RawValue;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The reactor callbacks of the chat server.
pub(super) struct ChatHandler {
    /// The chat logic.
    pub(super) service: Arc<ChatService>,
    /// Where blocking requests go (the workers, keyed by connection), with fair turns at
    /// password hashing between addresses.
    pub(super) gate: Arc<LoginGate>,
    /// Largest request frame accepted.
    pub(super) max_frame: usize,
    /// Chat messages (6, 10) a connection may send per second (0: no limit).
    pub(super) max_msgs_per_sec: u32,
    /// What one connection may have in progress before it is no longer read.
    pub(super) limits: backpressure::Limits,
    /// `--login-timeout`, for the message of a connection closed by it.
    pub(super) login_timeout: u64,
    /// The HTTP + WebSocket front, for connections of the `--http` listener.
    pub(super) http: Option<HttpFront>,
}

impl ChatHandler {
    /// Queues `frame` to the connection's worker, behind its earlier requests; a LOGIN or
    /// REG (`hashing`) waits for its turn at the login gate first.
    fn to_worker(&self, conn: &ChatConn, frame: &[u8], hashing: bool) {
        let service = Arc::clone(&self.service);
        let conn2 = Arc::clone(conn);
        let frame = frame.to_vec();
        let work = Work::job(conn, frame.len());
        conn.context().begin_job();
        let job = Box::new(move || {
            service.handle(&conn2, &frame);
            conn2.context().end_job();
            drop(work);
        });
        if hashing {
            self.gate.execute_hashing(conn, job);
        } else {
            self.gate.execute(conn, job);
        }
    }

    /// Replies with an error in order with the connection's other replies.
    fn reject(&self, conn: &ChatConn, err: ServiceError) {
        self.refuse(conn, err, None, None)
    }

    /// Replies with an error to a request (its msgid and reqid echoed) in order with the
    /// connection's other replies.
    fn refuse(
        &self,
        conn: &ChatConn,
        err: ServiceError,
        request: Option<i64>,
        reqid: Option<&RawValue>,
    ) {
        if conn.context().pending() == 0 {
            return send_error(conn, &err, request, reqid);
        }
        let conn2 = Arc::clone(conn);
        let reqid: Option<Box<RawValue>> = reqid.map(ToOwned::to_owned);
        let work = Work::job(conn, 0);
        conn.context().begin_job();
        self.gate.execute(
            conn,
            Box::new(move || {
                send_error(&conn2, &err, request, reqid.as_deref());
                conn2.context().end_job();
                drop(work);
            }),
        );
    }

    /// Takes one chat message of `conn`'s budget (`--max-msgs-per-sec`), or says how long
    /// until there is one.
    fn chat_budget(&self, conn: &ChatConn) -> Result<(), Duration> {
        if self.max_msgs_per_sec == 0 {
            return Ok(());
        }
        let rate = f64::from(self.max_msgs_per_sec);
        let now = Instant::now();
        conn.context()
            .admission()
            .chats
            .get_or_insert_with(|| TokenBucket::full(rate, now))
            .take(rate, rate, now)
    }
}

/// The transport of a connection, for the metrics: by its listener, and on the HTTP port by
/// whether it has upgraded (its frames then carry the WebSocket prefix).
fn transport(conn: &ChatConn) -> Transport {
    match (
        conn.listener() == http::HTTP_LISTENER,
        conn.frame_prefix().is_some(),
    ) {
        (false, _) => Transport::Tcp,
        (true, false) => Transport::Http,
        (true, true) => Transport::WebSocket,
    }
}

impl Handler<ConnContext> for ChatHandler {
    fn on_connection(&self, conn: &ChatConn) {
        self.service.metrics().connection_opened(transport(conn));
    }

    fn on_reads_done(&self) {
        self.service.commit_submitted();
    }

    fn on_message(&self, conn: &ChatConn, input: &[u8]) -> usize {
        conn.context().touch();
        if conn.listener() == http::HTTP_LISTENER {
            if let Some(front) = &self.http {
                return front.on_input(conn, input, self);
            }
        }
        let mut frames = Frames::new(input, self.max_frame);
        for item in frames.by_ref() {
            match item {
                Item::Frame { bytes, nul } => {
                    if nul {
                        conn.set_terminator(0);
                    }
                    self.dispatch(conn, bytes);
                }
                Item::Invalid(bad) => {
                    if codec::uses_nul(bad) {
                        conn.set_terminator(0); // its error reply goes out NUL-terminated
                    }
                    self.reject(
                        conn,
                        ServiceError::new(errno::MALFORMED, "malformed request: not a JSON object"),
                    )
                }
                Item::TooLarge => {
                    log::warn!(
                        "connection {} from {} sent a frame over {} bytes; closing it",
                        conn.id(),
                        conn.peer(),
                        self.max_frame
                    );
                    self.reject(
                        conn,
                        ServiceError::new(
                            errno::TOO_LARGE,
                            format!("request larger than {} bytes; closing", self.max_frame),
                        ),
                    );
                    conn.shutdown();
                    return input.len();
                }
            }
            if backpressure::pause_if_busy(conn, &self.limits) {
                break; // the rest is offered again once the connection drains
            }
        }
        if frames.saw_nul() {
            conn.set_terminator(0);
        }
        frames.consumed()
    }

    fn on_close(&self, conn: &ChatConn) {
        self.service.metrics().connection_closed(transport(conn));
        let service = Arc::clone(&self.service);
        let conn2 = Arc::clone(conn);
        self.gate
            .execute(conn, Box::new(move || service.disconnected(&conn2)));
    }

    fn on_auth_timeout(&self, conn: &ChatConn) -> Option<Bytes> {
        if conn.listener() == http::HTTP_LISTENER && conn.frame_prefix().is_none() {
            return None; // plain HTTP: a JSON line is no HTTP response
        }
        let e = reply::error(
            errno::NOT_LOGGED_IN,
            &format!(
                "no login within {} s (--login-timeout); closing the connection",
                self.login_timeout
            ),
            None,
            None,
        );
        Some(Bytes::from(
            serde_json::to_vec(&e).expect("JSON serialises"),
        ))
    }

    fn on_written(&self, conn: &ChatConn, tag: u64) {
        self.service.written(conn, tag);
    }

    fn on_undelivered(&self, _conn: &ChatConn, _frame: Bytes, _tag: u64) {
        // Every frame a connection is sent with a tag is a message of the log: one that did
        // not reach the kernel stays after the user's cursor and is sent again later.
    }
}

impl ChatHandler {
    /// Routes one frame: refused when over the chat rate, the fast path if it applies, else
    /// the worker (a LOGIN or REG through the login gate).
    fn dispatch(&self, conn: &ChatConn, frame: &[u8]) {
        let env = serde_json::from_slice::<Envelope>(frame).ok();
        let id = env.as_ref().and_then(Envelope::msgid);
        if let Some(kind @ (msgid::ONE_CHAT | msgid::GROUP_CHAT)) = id {
            self.service.metrics().received(match kind {
                msgid::ONE_CHAT => Kind::One,
                _ => Kind::Group,
            });
            if let Err(wait) = self.chat_budget(conn) {
                let what = format!("messages (at most {} a second)", self.max_msgs_per_sec);
                let reqid = env.as_ref().and_then(|e| e.reqid);
                return self.refuse(conn, rate_limited(&what, wait), id, reqid);
            }
        }
        if let (Some(env), 0) = (&env, conn.context().pending()) {
            if id == Some(msgid::ONE_CHAT) && self.service.try_fast_chat(conn, env, frame) {
                return;
            }
            if id == Some(msgid::PING) {
                return self.service.ping(conn, env.reqid);
            }
        }
        self.to_worker(conn, frame, matches!(id, Some(msgid::LOGIN | msgid::REG)));
    }
}

/// The chat side of the HTTP front: a WebSocket text message takes the same path as a frame
/// of the chat port.
impl http::Chat for ChatHandler {
    fn text(&self, conn: &ChatConn, payload: &[u8]) -> bool {
        let mut frames = Frames::new(payload, self.max_frame);
        for item in frames.by_ref() {
            match item {
                Item::Frame { bytes, .. } => self.dispatch(conn, bytes),
                Item::Invalid(_) | Item::TooLarge => self.reject(
                    conn,
                    ServiceError::new(errno::MALFORMED, "malformed request: not a JSON object"),
                ),
            }
        }
        let rest = &payload[frames.consumed()..];
        if rest.iter().any(|b| !b.is_ascii_whitespace()) {
            self.reject(
                conn,
                ServiceError::new(
                    errno::MALFORMED,
                    "malformed request: incomplete JSON object",
                ),
            );
        }
        backpressure::pause_if_busy(conn, &self.limits)
    }

    fn error(&self, conn: &ChatConn, errno: i64, message: &str) {
        self.reject(conn, ServiceError::new(errno, message.to_string()));
    }

    fn run(&self, conn: &ChatConn, job: Box<dyn FnOnce() + Send>) {
        self.gate.execute(conn, job);
    }

    fn closing(&self, conn: &ChatConn) {
        let service = Arc::clone(&self.service);
        let conn2 = Arc::clone(conn);
        self.gate.execute(
            conn,
            Box::new(move || {
                service.disconnected(&conn2);
                service.close_by_force_later(&conn2);
            }),
        );
    }
}
