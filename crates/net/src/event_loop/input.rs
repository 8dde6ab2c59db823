//! A loop's input side: reading sockets into the handler with a budget per connection per
//! iteration, and input backpressure (`stop_read` / `start_read`).
//!
//! Fairness: each connection gets at most [`READ_BUDGET`] bytes per loop iteration. One whose
//! socket still holds input after that goes to the loop's ready list and is read again in the
//! next iteration, after the poll (which then does not wait), so a peer that floods a loop
//! cannot starve the loop's other connections: they are read in the same iterations.
//!
//! Backpressure: once the handler has called `stop_read` on a connection, the loop stops
//! reading it as soon as `on_message` returns and drops its read interest; what the handler
//! did not consume is kept (a bounded amount: the handler consumes what it can, and one read
//! adds at most the budget). `start_read` puts the connection in the ready list with that
//! input to be offered again first.

use super::output::update_interest;
use super::{EventLoop, SCRATCH};
use crate::Handler;
use std::io::{self, Read};
use std::sync::Arc;
use std::time::Duration;

/// Bytes read from one connection per loop iteration (one read into the scratch space).
pub(super) const READ_BUDGET: usize = SCRATCH;

impl<C: Default + Send + Sync + 'static, H: Handler<C>> EventLoop<C, H> {
    /// How long the poll may wait: not at all while connections are ready to read, else until
    /// the next login timer (or for ever). Loop thread only.
    pub(super) fn poll_timeout(&self) -> Option<Duration> {
        if !self.ready.is_empty() {
            return Some(Duration::ZERO);
        }
        self.auth_timers.next_timeout()
    }

    /// Reads the connections of the ready list taken before this iteration's events. Loop
    /// thread only.
    pub(super) fn read_ready(&mut self, ready: Vec<usize>) {
        self.assert_in_loop_thread();
        for key in ready {
            if let Some(c) = self.conns.get_mut(key) {
                c.ready = false;
                self.read(key, false);
            }
        }
    }

    /// The poll says a connection is readable: read it, unless it is in the ready list taken
    /// for this iteration (it is read there: one budget per iteration). Loop thread only.
    pub(super) fn on_readable(&mut self, key: usize, ended: bool) {
        self.assert_in_loop_thread();
        match self.conns.get_mut(key) {
            Some(c) if c.ready => c.ended |= ended,
            Some(_) => self.read(key, ended),
            None => {}
        }
    }

    /// Puts a connection in the ready list (once). Loop thread only.
    fn make_ready(&mut self, key: usize) {
        self.assert_in_loop_thread();
        if let Some(c) = self.conns.get_mut(key) {
            if !c.ready {
                c.ready = true;
                self.ready.push(key);
            }
        }
    }

    /// Stops reading a connection whose handler called `stop_read`: its read interest goes.
    /// Loop thread only.
    fn pause(&mut self, key: usize) {
        self.assert_in_loop_thread();
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        if c.paused {
            return;
        }
        c.paused = true;
        if let Err(e) = update_interest(self.poll.registry(), key, c) {
            log::warn!("cannot update interest: {e}");
            self.close(key);
        }
    }

    /// `start_read`: the connection reads again, beginning with the input it kept back (in the
    /// next iteration, like a connection whose budget ran out). Loop thread only.
    pub(super) fn resume(&mut self, key: usize) {
        self.assert_in_loop_thread();
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        if !c.handle.is_reading() {
            return; // stopped again since: a later start_read will come
        }
        c.reoffer = true;
        if c.paused {
            c.paused = false;
            if let Err(e) = update_interest(self.poll.registry(), key, c) {
                log::warn!("cannot update interest: {e}");
                return self.close(key);
            }
        }
        self.make_ready(key);
    }

    /// Shutdown, phase 1: from now on input is read and discarded, from every connection,
    /// including those whose reading was stopped (their input is dropped with the rest: left
    /// unread, it would turn the close into a reset that destroys replies not yet read). Loop
    /// thread only.
    pub(super) fn stop_reading(&mut self) {
        self.assert_in_loop_thread();
        self.reading = false;
        let paused: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| c.paused)
            .map(|(key, _)| key)
            .collect();
        for key in paused {
            let c = &mut self.conns[key];
            c.paused = false;
            if let Err(e) = update_interest(self.poll.registry(), key, c) {
                log::warn!("cannot update interest: {e}");
                self.close(key);
                continue;
            }
            self.make_ready(key);
        }
    }

    /// Feeds the connection's input to the handler: first what it kept back, if reading
    /// restarted; then what the socket holds, up to the read budget. Closes the connection
    /// on end of file or a read error. Loop thread only.
    ///
    /// On a TLS connection, "the socket" is its [`TlsSession`](crate::tls::TlsSession): the
    /// plaintext it decrypts; such a connection is read until WouldBlock (or the budget).
    ///
    /// It stops after a read that returned less than the scratch space, without the final read
    /// that would only return WouldBlock: one system call less per message on the hot path.
    /// That is right with Linux epoll only. mio registers sockets edge-triggered (EPOLLET), and
    /// epoll raises a new event whenever more data arrives, whether or not the last read hit
    /// WouldBlock; a short read took everything the receive queue held at that moment, so no
    /// data is left behind without an event to come. mio itself only promises a new event
    /// after WouldBlock, and other backends rely on that (its Windows one re-arms only then):
    /// on other platforms this must read until WouldBlock. A full read that uses up the
    /// budget puts the connection in the ready list instead, since the poll may not report
    /// what is left.
    ///
    /// With `ended` (the peer closed or the socket failed; remembered for the next
    /// iterations), and while the connection is closing or the loop has stopped reading (input
    /// is then read and discarded), it reads until end of file, an error, WouldBlock or the
    /// end of the budget.
    pub(super) fn read(&mut self, key: usize, ended: bool) {
        self.assert_in_loop_thread();
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        c.ended |= ended;
        if !c.closing && self.reading {
            if !c.handle.is_reading() {
                return self.pause(key);
            }
            if std::mem::take(&mut c.reoffer) && !c.input.is_empty() {
                let handle = Arc::clone(&c.handle);
                let used = self.handler.on_message(&handle, c.input.peek());
                let Some(c) = self.conns.get_mut(key) else {
                    return;
                };
                c.input.consume(used);
                if !c.handle.is_reading() {
                    return self.pause(key);
                }
            }
        }
        let mut budget = READ_BUDGET;
        loop {
            let Some(c) = self.conns.get_mut(key) else {
                return;
            };
            let result = match c.tls.as_deref_mut() {
                None => c.stream.read(&mut self.scratch),
                Some(tls) => {
                    let result = tls.read(&mut c.stream, &mut self.scratch);
                    // Handshake records to answer, or output that waited for the handshake.
                    if tls.take_flush_due() && !c.dirty {
                        c.dirty = true;
                        self.dirty.push(key);
                    }
                    result
                }
            };
            match result {
                Ok(0) => return self.close(key),
                Ok(n) => {
                    budget = budget.saturating_sub(n);
                    if !c.closing && self.reading {
                        // (Otherwise shutting down: what the peer still sends is discarded.)
                        let handle = Arc::clone(&c.handle);
                        if c.input.is_empty() {
                            let used = self.handler.on_message(&handle, &self.scratch[..n]);
                            if let Some(c) = self.conns.get_mut(key) {
                                c.input.append(&self.scratch[used..n]);
                            }
                        } else {
                            c.input.append(&self.scratch[..n]);
                            let used = self.handler.on_message(&handle, c.input.peek());
                            if let Some(c) = self.conns.get_mut(key) {
                                c.input.consume(used);
                            }
                        }
                        if !handle.is_reading() {
                            return self.pause(key);
                        }
                    }
                    let Some(c) = self.conns.get(key) else {
                        return;
                    };
                    // (TLS: a short read of plaintext says nothing of the socket.)
                    if n < self.scratch.len() && !c.ended && c.tls.is_none() {
                        return;
                    }
                    if budget == 0 {
                        return self.make_ready(key);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::debug!("read error on connection {}: {e}", c.handle.id());
                    return self.close(key);
                }
            }
        }
    }
}
