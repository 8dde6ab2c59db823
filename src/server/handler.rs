//! The reactor callbacks of the chat server: framing, the fast path, the worker hand-off.

use clusterchat_proto::codec::{self, Next};
use clusterchat_net::{Bytes, Handler};
use clusterchat_proto::{errno, msgid, Envelope};
use crate::service::{send_error, ChatService, Conn, ServiceError, Session};
use crate::worker_pool::WorkerPool;
use std::sync::Arc;

/// The reactor callbacks of the chat server.
pub(super) struct ChatHandler {
    /// The chat logic.
    pub(super) service: Arc<ChatService>,
    /// Where blocking requests run, keyed by connection.
    pub(super) workers: Arc<WorkerPool>,
    /// Largest request frame accepted.
    pub(super) max_frame: usize,
}

impl ChatHandler {
    /// Queues `frame` to the connection's worker, behind its earlier requests.
    fn to_worker(&self, conn: &Conn, frame: &[u8]) {
        let service = Arc::clone(&self.service);
        let conn2 = Arc::clone(conn);
        let frame = frame.to_vec();
        conn.context().begin_job();
        self.workers.execute(
            conn.id(),
            Box::new(move || {
                service.handle(&conn2, &frame);
                conn2.context().end_job();
            }),
        );
    }

    /// Replies with an error in order with the connection's other replies.
    fn reject(&self, conn: &Conn, err: ServiceError) {
        if conn.context().pending() == 0 {
            return send_error(conn, &err, None, None);
        }
        let conn2 = Arc::clone(conn);
        conn.context().begin_job();
        self.workers.execute(
            conn.id(),
            Box::new(move || {
                send_error(&conn2, &err, None, None);
                conn2.context().end_job();
            }),
        );
    }
}

impl Handler<Session> for ChatHandler {
    fn on_message(&self, conn: &Conn, input: &[u8]) -> usize {
        let mut used = 0;
        loop {
            match codec::next_frame(&input[used..], self.max_frame) {
                Next::Frame {
                    start,
                    end,
                    consumed,
                } => {
                    let frame = &input[used + start..used + end];
                    if codec::uses_nul(&input[used..used + consumed]) {
                        conn.set_terminator(0);
                    }
                    used += consumed;
                    self.dispatch(conn, frame);
                }
                Next::Incomplete { skip } => {
                    if input[used..used + skip].contains(&0) {
                        conn.set_terminator(0);
                    }
                    return used + skip;
                }
                Next::Invalid { consumed } => {
                    used += consumed;
                    self.reject(
                        conn,
                        ServiceError::new(errno::MALFORMED, "malformed request: not a JSON object"),
                    );
                }
                Next::TooLarge => {
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
        }
    }

    fn on_close(&self, conn: &Conn) {
        let service = Arc::clone(&self.service);
        let conn2 = Arc::clone(conn);
        self.workers
            .execute(conn.id(), Box::new(move || service.disconnected(&conn2)));
    }

    fn on_undelivered(&self, _conn: &Conn, frame: Bytes, tag: u64) {
        let service = Arc::clone(&self.service);
        self.workers
            .execute(tag, Box::new(move || service.redeliver(tag as i64, frame)));
    }
}

impl ChatHandler {
    /// Routes one frame: the fast path if it applies, else the worker.
    fn dispatch(&self, conn: &Conn, frame: &[u8]) {
        if conn.context().pending() == 0 {
            if let Ok(env) = serde_json::from_slice::<Envelope>(frame) {
                if env.msgid() == Some(msgid::ONE_CHAT)
                    && self.service.try_fast_chat(conn, &env, frame)
                {
                    return;
                }
            }
        }
        self.to_worker(conn, frame);
    }
}
