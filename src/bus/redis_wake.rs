//! Waking the publisher thread while it waits on its Redis connection.
//!
//! While rounds are in flight the publisher thread waits for two things at once: Redis's
//! answers (its socket) and new messages (its queue). A crossbeam channel cannot be polled
//! together with a socket, so the thread waits in `poll(2)` on the socket and an eventfd, and
//! a producer that queued a message writes to the eventfd only if it finds the thread parked
//! there: a busy thread, or one blocked on the queue itself (which crossbeam wakes), costs the
//! producer no system call.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::time::Duration;

/// The eventfd and whether the thread waits on it.
pub(super) struct Wake {
    fd: OwnedFd,
    parked: AtomicBool,
}

/// What a [`Wake::wait`] found.
pub(super) enum Woken {
    /// The socket has something to read (an answer, or the end of the connection).
    Socket,
    /// A producer queued a message (or the wait was interrupted): look at the queue.
    Queue,
    /// Nothing came in time.
    TimedOut,
}

impl Wake {
    /// A new eventfd, not parked.
    pub(super) fn new() -> io::Result<Wake> {
        // SAFETY: eventfd takes no pointers; a non-negative result is a new descriptor we own.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Wake {
            // SAFETY: `fd` was just returned by eventfd and nothing else owns it.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            parked: AtomicBool::new(false),
        })
    }

    /// Called by a producer after it queued a message: wakes the thread if it is parked
    /// (each park is woken at most once). Any thread.
    pub(super) fn notify(&self) {
        // Pairs with the fence in `park`: either the thread sees the message in the queue, or
        // this sees it parked.
        fence(Ordering::SeqCst);
        if self.parked.load(Ordering::Relaxed) && self.parked.swap(false, Ordering::AcqRel) {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a live u64 to our eventfd. A full counter (never,
            // in practice) still leaves it readable, which is all a wake needs.
            unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
        }
    }

    /// The thread is about to wait: from now on producers wake it. It must look at its queue
    /// once more after this and before [`wait`](Self::wait). Publisher thread only.
    pub(super) fn park(&self) {
        self.parked.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
    }

    /// The thread no longer waits (it found work, or [`wait`](Self::wait) returned).
    pub(super) fn unpark(&self) {
        self.parked.store(false, Ordering::Relaxed);
    }

    /// Waits until `socket` is readable or (if `queue`) a producer notifies, or `timeout`
    /// passes. Publisher thread only.
    pub(super) fn wait(&self, socket: RawFd, queue: bool, timeout: Duration) -> io::Result<Woken> {
        let mut fds = [
            libc::pollfd {
                fd: socket,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let n = if queue { 2 } else { 1 };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: `fds` is a live array of at least `n` pollfd.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), n, ms) };
        self.unpark();
        if rc < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::Interrupted => Ok(Woken::Queue),
                _ => Err(e),
            };
        }
        if queue && fds[1].revents != 0 {
            let mut count: u64 = 0;
            // SAFETY: reads 8 bytes into a live u64 from our non-blocking eventfd.
            unsafe { libc::read(self.fd.as_raw_fd(), (&mut count as *mut u64).cast(), 8) };
        }
        Ok(if fds[0].revents != 0 {
            Woken::Socket
        } else if rc == 0 {
            Woken::TimedOut
        } else {
            Woken::Queue
        })
    }
}
