//! The part of a loop that other threads touch: its task queue and its waker (muduo's
//! `pendingFunctors_` and `wakeupFd_`). Queuing is thread safe; taking the tasks is for the
//! loop thread only, which `enter` designates.

use crate::connection::ConnRef;
use bytes::Bytes;
use mio::net::TcpStream;
use mio::{Registry, Token, Waker};
use std::cell::Cell;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

thread_local! {
    /// The loop running on this thread (its shared part's address; 0 for none), muduo's
    /// `t_loopInThisThread`: a loop queuing work to itself skips the wake-up system call, and
    /// loop-thread-only methods check it in debug builds.
    static CURRENT_LOOP: Cell<usize> = const { Cell::new(0) };
}

/// Work for a loop, queued from any thread: muduo's `Functor` in `pendingFunctors_`, as data.
pub(crate) enum Task<C> {
    /// Adopt a freshly accepted socket; the `usize` is the index of the listener that
    /// accepted it (see `TcpServer::start_on`).
    Register(TcpStream, SocketAddr, usize),
    /// Append bytes to the connection's output as they are: no frame prefix, no terminator,
    /// never accounted for (an HTTP response, a WebSocket control frame).
    SendRaw(ConnRef<C>, Bytes),
    /// Append a frame and the connection's terminator to its output; `tag` set means "report
    /// it through `Handler::on_written` once written, or hand it back through
    /// `Handler::on_undelivered` if it is not".
    Send {
        conn: ConnRef<C>,
        frame: Bytes,
        tag: Option<u64>,
    },
    /// Half-close (shut down the writing side) once the output has drained; input that
    /// arrives from then on is discarded.
    Shutdown(ConnRef<C>),
    /// Close now, whatever is queued (its tagged frames go to `on_undelivered`).
    ForceClose(ConnRef<C>),
    /// Read again after `stop_read`: offer the input kept back, then read the socket.
    StartRead(ConnRef<C>),
    /// The connection went back to unauthenticated: its login timer starts again.
    Unauthenticated(ConnRef<C>),
    /// Stop taking requests from every connection (shutdown, phase 1): what arrives is read
    /// and discarded (so that closing later does not reset the connection and destroy replies
    /// the peer has not read yet); requests already taken are still answered.
    StopReading,
    /// Write what can be written without waiting, then leave the loop (shutdown, phase 2).
    /// Tasks queued behind it are not run; their tagged frames go to `on_undelivered`.
    Quit,
}

/// The part of a loop that other threads touch: its task queue (muduo's `pendingFunctors_`
/// with its mutex) and its waker (muduo's `wakeupFd_`, an eventfd on Linux).
pub(crate) struct LoopShared<C> {
    inbox: Mutex<Vec<Task<C>>>,
    waker: Waker,
    /// A wake-up was sent and the loop has not yet taken its queue: no need for another.
    wake_pending: AtomicBool,
    /// The loop's output bytes not yet written, as of the end of its latest iteration.
    output_bytes: Arc<AtomicUsize>,
}

impl<C> LoopShared<C> {
    /// A queue whose waker raises `token` on `registry`'s poll. Any thread.
    pub(crate) fn new(registry: &Registry, token: Token) -> io::Result<Self> {
        Ok(LoopShared {
            inbox: Mutex::new(Vec::new()),
            waker: Waker::new(registry, token)?,
            wake_pending: AtomicBool::new(false),
            output_bytes: Arc::default(),
        })
    }

    /// Locks the task queue, ignoring poison. The lock is only ever held for a `push`, a
    /// `take` or an `is_empty` of the Vec, so the queue is consistent even if a holder
    /// panicked; and a panic on another thread (a handler's, a worker's) must never turn into a
    /// panic on an IO thread. Thread safe.
    fn inbox(&self) -> MutexGuard<'_, Vec<Task<C>>> {
        self.inbox
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether the caller runs on this loop's thread (muduo's `isInLoopThread`). Thread safe.
    pub(crate) fn is_in_loop_thread(&self) -> bool {
        CURRENT_LOOP.with(|c| c.get()) == self as *const Self as usize
    }

    /// Queues a task (muduo's `queueInLoop`) and wakes the loop, unless a wake-up is already
    /// pending or the caller is the loop's own thread (the check muduo's `runInLoop` makes with
    /// `isInLoopThread`). Unlike `runInLoop` the task is never run at once, so tasks queued by
    /// one thread run in the order queued; the loop runs everything queued on its own thread
    /// before it polls again. Thread safe.
    pub(crate) fn queue(&self, task: Task<C>) {
        self.inbox().push(task);
        if !self.is_in_loop_thread() && !self.wake_pending.swap(true, Ordering::AcqRel) {
            if let Err(e) = self.waker.wake() {
                log::error!("cannot wake IO loop: {e}");
            }
        }
    }

    /// Takes every queued task and rearms the wake-up. Loop thread only.
    pub(crate) fn take(&self) -> Vec<Task<C>> {
        debug_assert!(
            self.is_in_loop_thread(),
            "tasks taken outside the loop thread"
        );
        self.wake_pending.store(false, Ordering::Release);
        std::mem::take(&mut *self.inbox())
    }

    /// Whether tasks are queued. Loop thread only (elsewhere the answer is stale at once).
    pub(crate) fn has_tasks(&self) -> bool {
        debug_assert!(
            self.is_in_loop_thread(),
            "has_tasks outside the loop thread"
        );
        !self.inbox().is_empty()
    }

    /// Records the loop's unwritten output bytes (a statistic). Loop thread only.
    pub(crate) fn set_output_bytes(&self, bytes: usize) {
        self.output_bytes.store(bytes, Ordering::Relaxed);
    }

    /// Where the loop records its unwritten output bytes. Thread safe.
    pub(crate) fn output_bytes(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.output_bytes)
    }

    /// Makes the calling thread this loop's thread (one loop per thread). The loop's thread,
    /// once, before it runs.
    pub(crate) fn enter(&self) {
        CURRENT_LOOP.with(|c| {
            debug_assert_eq!(c.get(), 0, "another EventLoop runs on this thread");
            c.set(self as *const Self as usize);
        });
    }

    /// The calling thread stops being this loop's thread. Loop thread only.
    pub(crate) fn leave(&self) {
        debug_assert!(
            self.is_in_loop_thread(),
            "leaving a loop from another thread"
        );
        CURRENT_LOOP.with(|c| c.set(0));
    }
}

#[cfg(test)]
mod tests {
    use super::LoopShared;
    use mio::{Poll, Token};

    fn shared() -> (Poll, LoopShared<()>) {
        let poll = Poll::new().expect("poll");
        let shared = LoopShared::new(poll.registry(), Token(0)).expect("waker");
        (poll, shared)
    }

    #[test]
    fn the_thread_that_enters_is_the_loop_thread_until_it_leaves() {
        let (_poll, shared) = shared();
        assert!(!shared.is_in_loop_thread());
        shared.enter();
        assert!(shared.is_in_loop_thread());
        std::thread::scope(|s| {
            let other = s.spawn(|| shared.is_in_loop_thread());
            assert!(!other.join().expect("other thread"));
        });
        shared.leave();
        assert!(!shared.is_in_loop_thread());
    }

    /// `assertInLoopThread`: loop-thread-only methods refuse another thread in debug builds.
    #[cfg(debug_assertions)]
    #[test]
    #[should_panic(expected = "outside the loop thread")]
    fn taking_tasks_off_the_loop_thread_is_a_bug() {
        let (_poll, shared) = shared();
        let _ = shared.take();
    }
}
