//! The reactor callbacks of the chat server: framing, the fast path, the worker hand-off, and
//! input backpressure (see [`crate::service::backpressure`]): after each request taken, a
//! connection with too much in progress is no longer read until it drains.

use crate::service::backpressure::{self, Work};
use crate::service::{send_error, ChatConn, ChatService, ConnContext, ServiceError};
use crate::worker_pool::WorkerPool;
use clusterchat_net::{Bytes, Handler};
use clusterchat_proto::codec::{self, Frames, Item};
use clusterchat_proto::{errno, msgid, reply, Envelope};
use std::sync::Arc;

/// The reactor callbacks of the chat server.
pub(super) struct ChatHandler {
    /// The chat logic.
    pub(super) service: Arc<ChatService>,
    /// Where blocking requests run, keyed by connection.
    pub(super) workers: Arc<WorkerPool>,
    /// Largest request frame accepted.
    pub(super) max_frame: usize,
    /// What one connection may have in progress before it is no longer read.
    pub(super) limits: backpressure::Limits,
    /// `--login-timeout`, for the message of a connection closed by it.
    pub(super) login_timeout: u64,
}

impl ChatHandler {
    /// Queues `frame` to the connection's worker, behind its earlier requests.
    fn to_worker(&self, conn: &ChatConn, frame: &[u8]) {
        let service = Arc::clone(&self.service);
        let conn2 = Arc::clone(conn);
        let frame = frame.to_vec();
        let work = Work::job(conn, frame.len());
        conn.context().begin_job();
        self.workers.execute(
            conn.id(),
            Box::new(move || {
                service.handle(&conn2, &frame);
                conn2.context().end_job();
                drop(work);
            }),
        );
    }

    /// Replies with an error in order with the connection's other replies.
    fn reject(&self, conn: &ChatConn, err: ServiceError) {
        if conn.context().pending() == 0 {
            return send_error(conn, &err, None, None);
        }
        let conn2 = Arc::clone(conn);
        let work = Work::job(conn, 0);
        conn.context().begin_job();
        self.workers.execute(
            conn.id(),
            Box::new(move || {
                send_error(&conn2, &err, None, None);
                conn2.context().end_job();
                drop(work);
            }),
        );
    }
}

impl Handler<ConnContext> for ChatHandler {
    fn on_message(&self, conn: &ChatConn, input: &[u8]) -> usize {
        conn.context().touch();
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
        let service = Arc::clone(&self.service);
        let conn2 = Arc::clone(conn);
        self.workers
            .execute(conn.id(), Box::new(move || service.disconnected(&conn2)));
    }

    fn on_auth_timeout(&self, _conn: &ChatConn) -> Option<Bytes> {
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
    /// Routes one frame: the fast path if it applies, else the worker.
    fn dispatch(&self, conn: &ChatConn, frame: &[u8]) {
        if conn.context().pending() == 0 {
            if let Ok(env) = serde_json::from_slice::<Envelope>(frame) {
                if env.msgid() == Some(msgid::ONE_CHAT)
                    && self.service.try_fast_chat(conn, &env, frame)
                {
                    return;
                }
                if env.msgid() == Some(msgid::PING) {
                    return self.service.ping(conn, env.reqid);
                }
            }
        }
        self.to_worker(conn, frame);
    }
}
