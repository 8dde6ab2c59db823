//! Input backpressure: a connection's work in progress is bounded. Every request taken from a
//! connection holds a [`Work`] until it is finished: a worker job until it returns, a chat
//! until the log writer has stored it and answered. Once a connection reaches one of its
//! [`Limits`] the IO thread stops reading it (`stop_read`: its bytes wait in the kernel, and
//! TCP flow control slows the sender); when its work has come down to half the request and
//! byte limits and below the job limit, the `Work` that finished starts reading it again. So
//! a client that writes faster than its requests are handled costs the server a bounded
//! amount of memory and holds at most a few jobs in its worker's queue, while a pipelining
//! client keeps the log writer's batches full.

use super::context::ChatConn;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Worker jobs one connection may have queued or running before it is no longer read.
pub(crate) const MAX_JOBS: usize = 4;
/// Bytes of requests in progress one connection may have before it is no longer read.
pub(crate) const MAX_BYTES: usize = 1 << 20;

/// What one connection may have in progress before the server stops reading it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Requests (worker jobs and chats waiting for the log writer): `--max-pending`.
    requests: usize,
}

impl Limits {
    /// The limits for `--max-pending N` (with [`MAX_JOBS`] and [`MAX_BYTES`]).
    pub(crate) fn new(max_pending: usize) -> Self {
        Limits {
            requests: max_pending.max(1),
        }
    }
}

/// A connection's requests in progress (in its context).
#[derive(Default)]
pub(crate) struct Flow {
    requests: AtomicUsize,
    jobs: AtomicUsize,
    bytes: AtomicUsize,
    /// Reading resumes once `requests` is down to this (set before reading stops).
    resume_at: AtomicUsize,
}

impl Flow {
    /// Whether the work in progress is low enough to read again. (All SeqCst, like the
    /// counters' updates and `stop_read`: of a pause and the last finish before reading may
    /// resume, one always sees the other, so a stopped connection is never forgotten.)
    fn can_resume(&self) -> bool {
        self.jobs.load(Ordering::SeqCst) < MAX_JOBS
            && self.requests.load(Ordering::SeqCst) <= self.resume_at.load(Ordering::SeqCst)
            && self.bytes.load(Ordering::SeqCst) <= MAX_BYTES / 2
    }
}

/// One request in progress on a connection, from the moment the IO thread takes it until it
/// is finished (dropped).
pub(crate) struct Work {
    conn: ChatConn,
    bytes: usize,
    job: bool,
}

impl Work {
    /// Counts a worker job of `bytes` taken from `conn`. Any thread.
    pub(crate) fn job(conn: &ChatConn, bytes: usize) -> Work {
        Work::begin(conn, bytes, true)
    }

    /// Counts a chat of `bytes` submitted to the log writer. Any thread.
    pub(crate) fn chat(conn: &ChatConn, bytes: usize) -> Work {
        Work::begin(conn, bytes, false)
    }

    fn begin(conn: &ChatConn, bytes: usize, job: bool) -> Work {
        let flow = conn.context().flow();
        flow.requests.fetch_add(1, Ordering::SeqCst);
        flow.bytes.fetch_add(bytes, Ordering::SeqCst);
        if job {
            flow.jobs.fetch_add(1, Ordering::SeqCst);
        }
        Work {
            conn: ChatConn::clone(conn),
            bytes,
            job,
        }
    }
}

impl Drop for Work {
    fn drop(&mut self) {
        let flow = self.conn.context().flow();
        if self.job {
            flow.jobs.fetch_sub(1, Ordering::SeqCst);
        }
        flow.bytes.fetch_sub(self.bytes, Ordering::SeqCst);
        flow.requests.fetch_sub(1, Ordering::SeqCst);
        if !self.conn.is_reading() && flow.can_resume() {
            self.conn.start_read();
        }
    }
}

/// After the IO thread took a request from `conn`: if the connection's work in progress has
/// reached a limit, stops reading it and returns true, and the caller takes nothing more
/// from its input (it is offered again when reading resumes). IO thread.
pub(crate) fn pause_if_busy(conn: &ChatConn, limits: &Limits) -> bool {
    let flow = conn.context().flow();
    let busy = flow.jobs.load(Ordering::SeqCst) >= MAX_JOBS
        || flow.requests.load(Ordering::SeqCst) >= limits.requests
        || flow.bytes.load(Ordering::SeqCst) >= MAX_BYTES;
    if !busy {
        return false;
    }
    flow.resume_at.store(limits.requests / 2, Ordering::SeqCst);
    conn.stop_read();
    if flow.can_resume() {
        conn.start_read(); // enough finished meanwhile
    }
    true
}
