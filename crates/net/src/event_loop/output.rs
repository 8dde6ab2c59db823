//! A loop's output side: frames queued to a connection's output (with the high-water mark),
//! and the flush at the end of each iteration, one write per connection, with the report of
//! the tagged frames written.

use super::{EventLoop, Slot};
use crate::connection::ConnRef;
use crate::written::TagQueue;
use crate::Handler;
use bytes::Bytes;
use mio::{Interest, Registry, Token};
use std::io::{self, Write};
use std::net::Shutdown;

impl<C: Default + Send + Sync + 'static, H: Handler<C>> EventLoop<C, H> {
    /// Appends `frame` and the terminator to the connection's output (recording a tagged
    /// frame's place in it) and marks it for the end-of-iteration flush. A connection whose
    /// unwritten output would pass `max_output` is closed instead. A tagged frame that is not
    /// queued goes to `on_undelivered` (after the connection's own unwritten ones, if this
    /// frame cut it off); an untagged one is dropped. Loop thread only.
    pub(super) fn queue_output(&mut self, conn: &ConnRef<C>, frame: Bytes, tag: Option<u64>) {
        self.assert_in_loop_thread();
        let Some(key) = self.live_key(conn) else {
            if let Some(tag) = tag {
                self.handler.on_undelivered(conn, frame, tag);
            }
            return;
        };
        let c = &mut self.conns[key];
        if c.output.len() + frame.len() + 1 > self.limits.max_output {
            log::warn!(
                "connection {} from {} is not reading: {} bytes queued, closing it",
                c.handle.id(),
                c.handle.peer(),
                c.output.len()
            );
            self.close(key);
            if let Some(tag) = tag {
                self.handler.on_undelivered(conn, frame, tag);
            }
            return;
        }
        c.output.append(&frame);
        c.output.append(&[c.handle.terminator()]);
        if let Some(tag) = tag {
            let buffered = c.output.len();
            c.tags
                .get_or_insert_with(Default::default)
                .push(buffered, frame.len(), tag);
        }
        self.mark_dirty(key);
    }

    /// Writes every dirty connection's output as far as the socket takes it (one system call
    /// each, in the common case), reports the last tagged frame fully written through
    /// `on_written` (one call per connection at most), asks for WRITABLE while output
    /// remains, and completes pending half-closes. Loop thread only.
    pub(super) fn flush_dirty(&mut self) {
        self.assert_in_loop_thread();
        let dirty = std::mem::take(&mut self.dirty);
        for &key in &dirty {
            let Some(c) = self.conns.get_mut(key) else {
                continue;
            };
            c.dirty = false;
            let wrote = write_out(c);
            // Before a close for a write error: what was written is reported as written.
            if let Some(tag) = c.tags.as_deref_mut().and_then(TagQueue::take_written) {
                self.handler.on_written(&c.handle, tag);
            }
            if let Err(e) = wrote {
                log::debug!("write error on connection {}: {e}", c.handle.id());
                self.close(key);
                continue;
            }
            if c.closing && c.output.is_empty() {
                shutdown_write(c);
            }
            if let Err(e) = update_interest(self.poll.registry(), key, c) {
                log::warn!("cannot update interest: {e}");
                self.close(key);
                continue;
            }
        }
        self.dirty = dirty;
        self.dirty.clear();
    }
}

/// Writes as much pending output as the socket takes, keeping the tag queue up to date
/// (through the TLS session, on a TLS connection).
fn write_out<C>(c: &mut Slot<C>) -> io::Result<()> {
    if let Some(tls) = c.tls.as_deref_mut() {
        return tls.write_out(&mut c.stream, &mut c.output, c.tags.as_deref_mut());
    }
    while !c.output.is_empty() {
        match c.stream.write(c.output.peek()) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                if let Some(tags) = c.tags.as_deref_mut() {
                    tags.wrote(n, c.output.peek());
                }
                c.output.consume(n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The half-close of a closing connection whose output has drained: shuts down the socket's
/// writing side (after the TLS `close_notify`, once the socket has taken it).
fn shutdown_write<C>(c: &mut Slot<C>) {
    if let Some(tls) = c.tls.as_deref_mut() {
        match tls.close_notify(&mut c.stream, &mut c.output) {
            Ok(true) => {}
            Ok(false) => return, // the rest when the socket is writable
            Err(e) => log::debug!("cannot send close_notify: {e}"),
        }
    }
    let _ = c.stream.shutdown(Shutdown::Write);
}

/// Asks for WRITABLE events only while output is pending (muduo's `enableWriting` /
/// `disableWriting`), and for READABLE ones unless reading is stopped (`disableReading`);
/// a connection that wants neither is taken off the poll.
pub(super) fn update_interest<C>(
    registry: &Registry,
    key: usize,
    c: &mut Slot<C>,
) -> io::Result<()> {
    let read = !c.paused || c.closing;
    let write = !c.output.is_empty() || c.tls.as_ref().is_some_and(|t| t.wants_write());
    let want = match (read, write) {
        (true, true) => Some(Interest::READABLE | Interest::WRITABLE),
        (true, false) => Some(Interest::READABLE),
        (false, true) => Some(Interest::WRITABLE),
        (false, false) => None,
    };
    if want != c.interest {
        match (c.interest, want) {
            (Some(_), Some(w)) => registry.reregister(&mut c.stream, Token(key), w)?,
            (None, Some(w)) => registry.register(&mut c.stream, Token(key), w)?,
            (Some(_), None) => registry.deregister(&mut c.stream)?,
            (None, None) => {}
        }
        c.interest = want;
    }
    Ok(())
}
