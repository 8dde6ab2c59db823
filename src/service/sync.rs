//! Streaming a user's backlog from the log: after a login (sync or legacy), and again when
//! their server is nudged (a bus outage may have kept pushes from them).
//!
//! The stream reads each conversation with messages after the user's cursor, a page at a
//! time, and queues a page only while less than [`WINDOW_BYTES`] are in flight to the
//! connection: it goes at the pace the client reads, is never cut off for backlog, and never
//! holds the whole backlog in memory. Live messages for the user are not queued meanwhile
//! (see [`Outbox`](super::outbox::Outbox)); the stream reads the log until it has caught up
//! with them, so each conversation arrives in seq order.

use super::context::ChatConn;
use super::relay::sent_to_another;
use super::{send_value, ChatService, ServiceError};
use crate::store::with_seq;
use clusterchat_net::Bytes;
use clusterchat_proto::{errno, reply, UserId};
use std::time::Duration;

/// Messages read from the log at a time.
const PAGE: usize = 256;
/// Bytes queued to a syncing connection and not yet in the kernel before the stream waits, at
/// most: a quarter of `--max-output` if that is less, so a reading client is never cut off.
const WINDOW_BYTES: usize = 1 << 20;

impl ChatService {
    /// Streams `user`'s backlog to `conn`, then turns the session live, sending SYNC_DONE first
    /// when `done_frame`. No session is sent what its user sent to others (HISTORY has it; a
    /// legacy session's cursor moves over it). Returns how many frames were sent; an error when the connection closed or the database failed (the
    /// session then stays syncing until a resync).
    pub(super) fn stream_backlog(
        &self,
        conn: &ChatConn,
        user: UserId,
        done_frame: bool,
    ) -> Result<u64, ServiceError> {
        let outbox = conn.context().outbox();
        let mut count = 0u64;
        loop {
            outbox.clear_dirty();
            for unread in self.store.unread(user)? {
                let conv = unread.conv;
                let mut after = outbox.after(conv, unread.cursor);
                loop {
                    let page = self.store.read_after(conv, after, PAGE)?;
                    let full = page.len() == PAGE;
                    for m in page {
                        wait_window(conn, self.sync_window)?;
                        after = m.seq;
                        if sent_to_another(user, conv, m.body.as_bytes()) {
                            outbox.skip(conv, m.seq);
                            continue;
                        }
                        let frame = Bytes::from(with_seq(m.body.as_bytes(), m.seq));
                        if outbox.stream(conn, conv, m.seq, frame) {
                            count += 1;
                        }
                    }
                    if !full {
                        break;
                    }
                }
            }
            let live = outbox.finish_sync(|| {
                if done_frame {
                    send_value(conn, &reply::sync_done(count));
                }
            });
            if live {
                return Ok(count);
            }
        }
    }

    /// Reads the log again for the user of `conn` (after a bus outage or a failed push).
    /// Worker threads only, keyed by the connection.
    pub(crate) fn resync(&self, conn: &ChatConn) {
        let Some(login) = conn.context().login() else {
            return;
        };
        let outbox = conn.context().outbox();
        outbox.resync();
        if let Err(e) = self.stream_backlog(conn, login.id, false) {
            if !conn.is_closed() {
                log::warn!("user {}: cannot read the log ({e}); will retry", login.id);
                self.retries.nudge_later(login.id);
            }
        }
    }
}

/// The stream's window for a server whose output limit is `max_output`.
pub(super) fn window(max_output: usize) -> usize {
    WINDOW_BYTES.min(max_output / 4).max(1)
}

/// Waits while the connection has more than `window` bytes in flight.
fn wait_window(conn: &ChatConn, window: usize) -> Result<(), ServiceError> {
    let outbox = conn.context().outbox();
    loop {
        if conn.is_closed() {
            return Err(ServiceError::new(errno::UNAVAILABLE, "connection closed"));
        }
        if outbox.inflight_bytes() <= window {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
