//! The TLS transport: a connection's rustls session, between its socket and its [`Buffer`]s.
//!
//! A listener started with `ServerOptions::tls` gives each connection a [`TlsSession`]; the
//! loop then moves bytes through it instead of straight to and from the socket, and nothing
//! above the buffers changes (the handler sees plaintext, frames and tags work as before):
//! - input: the socket's ciphertext goes into rustls (`read_tls`, which reads the socket
//!   itself), `process_new_packets` decrypts it (and answers the handshake), and the
//!   plaintext is read out into the loop's scratch space, as a plain read would fill it;
//! - output: the connection's output Buffer keeps its plaintext until the ciphertext of those
//!   bytes is in the kernel. Each flush encrypts from the front of the Buffer (at most
//!   rustls' buffer limit, 64 KiB, at a time), writes the records out with one vectored
//!   write, and only once rustls holds nothing more consumes those bytes from the Buffer and
//!   reports them to the tag queue. So "written" still means "the kernel took it", the
//!   high-water mark still counts every byte not yet written, and a frame that was encrypted
//!   but not sent when the connection dies still comes back through `on_undelivered`.
//!
//! The handshake needs no state of its own: until it completes, reads yield no plaintext and
//! flushes send only handshake records (nothing is encrypted for the peer before it has
//! proved nothing: output waits in the Buffer). It is bounded like any unauthenticated
//! connection (the login timeout, the per-address limit); a peer that sends something that is
//! not TLS gets an alert, when the socket takes it, and is closed.
//!
//! A plain value used by its connection's loop thread only.

use crate::buffer::Buffer;
use crate::written::TagQueue;
use rustls::{ServerConfig, ServerConnection};
use std::io::{self, Read, Write};
use std::sync::Arc;

/// One connection's TLS state. Loop thread only.
pub(crate) struct TlsSession {
    conn: ServerConnection,
    /// Plaintext bytes at the front of the output Buffer that rustls has encrypted (all its
    /// records are in `conn`'s send buffer or written): consumed from the Buffer once rustls
    /// has written everything.
    fed: usize,
    /// The socket reported end of file.
    eof: bool,
    /// `close_notify` queued (a half-close is under way).
    closing: bool,
    /// A read gave the flush something to do: rustls queued records while it had none
    /// pending (with records pending, the socket's WRITABLE event brings the flush), or the
    /// handshake completed (output may wait for it).
    flush_due: bool,
}

impl TlsSession {
    /// A server-side session for a new connection. Errors: rustls refused the config (it
    /// cannot, for a config it built).
    pub(crate) fn new(config: &Arc<ServerConfig>) -> io::Result<TlsSession> {
        let conn = ServerConnection::new(Arc::clone(config)).map_err(io::Error::other)?;
        Ok(TlsSession {
            conn,
            fed: 0,
            eof: false,
            closing: false,
            flush_due: false,
        })
    }

    /// Reads plaintext into `buf`, reading and decrypting from `socket` as needed: `Ok(n)`
    /// with `n > 0` bytes, `Ok(0)` at the end of the stream (the peer's `close_notify`, or end
    /// of file after all its data), `Err(WouldBlock)` when the socket has nothing more now
    /// (it was read to WouldBlock, as edge-triggered polling needs). A handshake or record
    /// error is `Err(InvalidData)`, after one try at writing the alert rustls queued for it;
    /// the connection is to be closed. Handshake records to send are left queued: see
    /// [`take_flush_due`](Self::take_flush_due).
    pub(crate) fn read<S: Read + Write>(
        &mut self,
        socket: &mut S,
        buf: &mut [u8],
    ) -> io::Result<usize> {
        let (writing, handshaking) = (self.conn.wants_write(), self.conn.is_handshaking());
        let result = self.read_plaintext(socket, buf);
        self.flush_due |=
            (!writing && self.conn.wants_write()) || (handshaking && !self.conn.is_handshaking());
        result
    }

    /// [`read`](Self::read) without the bookkeeping of what the flush has to do.
    fn read_plaintext<S: Read + Write>(
        &mut self,
        socket: &mut S,
        buf: &mut [u8],
    ) -> io::Result<usize> {
        loop {
            match self.conn.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // End of file without close_notify, after all the data: an end like another.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            if self.eof {
                return Ok(0);
            }
            // rustls holds no plaintext here, so its received-plaintext limit cannot refuse.
            if self.conn.read_tls(socket)? == 0 {
                self.eof = true;
            }
            if let Err(e) = self.conn.process_new_packets() {
                let _ = self.conn.write_tls(socket);
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
        }
    }

    /// Whether the reads since the last call gave the loop a reason to flush that it would
    /// not otherwise see: records rustls queued itself (handshake messages, session tickets,
    /// alerts) with none pending before, or a completed handshake (output queued during it
    /// waits for a flush).
    pub(crate) fn take_flush_due(&mut self) -> bool {
        std::mem::take(&mut self.flush_due)
    }

    /// Whether the socket must be watched for WRITABLE: rustls has records to send.
    pub(crate) fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// Writes as much of `output` as the socket takes, encrypted, keeping `tags` up to date
    /// (bytes count as written once their records are all in the kernel: see the module doc).
    /// Returns at WouldBlock with the rest kept; nothing is encrypted before the handshake
    /// completes. Errors: the socket's (the connection is to be closed).
    pub(crate) fn write_out<S: Write>(
        &mut self,
        socket: &mut S,
        output: &mut Buffer,
        mut tags: Option<&mut TagQueue>,
    ) -> io::Result<()> {
        loop {
            while self.conn.wants_write() {
                match self.conn.write_tls(socket) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            if self.fed > 0 {
                if let Some(tags) = tags.as_deref_mut() {
                    tags.wrote(self.fed, output.peek());
                }
                output.consume(self.fed);
                self.fed = 0;
            }
            if output.is_empty() || self.conn.is_handshaking() || self.closing {
                return Ok(());
            }
            let n = self.conn.writer().write(output.peek())?;
            if n == 0 {
                return Ok(()); // cannot happen with an empty send buffer; never spin
            }
            self.fed = n;
        }
    }

    /// The TLS side of a half-close, once the output Buffer has drained: queues
    /// `close_notify` (once) and writes it. True when it is in the kernel, and the socket's
    /// writing side may be shut down.
    pub(crate) fn close_notify<S: Write>(
        &mut self,
        socket: &mut S,
        output: &mut Buffer,
    ) -> io::Result<bool> {
        if !self.closing {
            self.conn.send_close_notify();
            self.closing = true;
        }
        self.write_out(socket, output, None)?;
        Ok(!self.conn.wants_write())
    }
}

#[cfg(test)]
mod tests;
