//! The byte stream under a [`Client`](crate::client::Client): plain TCP, or TLS over TCP.
//!
//! A client is used from two threads at once (`chatclient`: one sends, one reads), each with
//! its own handle on the connection ([`Transport::try_clone`]). Plain TCP does that with a
//! cloned socket. TLS cannot split a session, so [`TlsStream`] shares it behind a mutex and
//! clones only the socket: the reading handle reads the socket *without* the lock (it may
//! block for its read timeout), then locks the session briefly to decrypt; the writing handle
//! locks it to encrypt and write. Only one handle should read.

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex, MutexGuard};

/// A connection's byte stream.
pub enum Transport {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(TlsStream),
}

impl Transport {
    /// The TCP socket underneath (for timeouts, addresses, shutdown).
    pub fn socket(&self) -> &TcpStream {
        match self {
            Transport::Plain(s) => s,
            Transport::Tls(t) => &t.socket,
        }
    }

    /// Another handle on the same connection (see the module doc: one handle reads).
    pub fn try_clone(&self) -> io::Result<Transport> {
        Ok(match self {
            Transport::Plain(s) => Transport::Plain(s.try_clone()?),
            Transport::Tls(t) => Transport::Tls(TlsStream {
                socket: t.socket.try_clone()?,
                session: Arc::clone(&t.session),
                pending: Vec::new(),
            }),
        })
    }
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.read(buf),
            Transport::Tls(t) => t.read(buf),
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.write(buf),
            Transport::Tls(t) => t.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(s) => s.flush(),
            Transport::Tls(t) => t.flush(),
        }
    }
}

/// A blocking TLS client connection whose session several handles share.
pub struct TlsStream {
    socket: TcpStream,
    session: Arc<Mutex<ClientConnection>>,
    /// Ciphertext read from the socket that rustls has not taken yet (this handle's).
    pending: Vec<u8>,
}

impl TlsStream {
    /// Runs the handshake over a connected blocking socket (bounded by its read timeout) and
    /// verifies the server's certificate for `name`. Errors: the socket's (a timeout is
    /// `WouldBlock` or `TimedOut`), or `InvalidData` carrying rustls' reason (a certificate
    /// that does not verify, a peer that does not speak TLS).
    pub fn connect(
        mut socket: TcpStream,
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
    ) -> io::Result<TlsStream> {
        let mut session = ClientConnection::new(config, name).map_err(io::Error::other)?;
        while session.is_handshaking() {
            if session.complete_io(&mut socket)? == (0, 0) {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok(TlsStream {
            socket,
            session: Arc::new(Mutex::new(session)),
            pending: Vec::new(),
        })
    }

    /// Writes what rustls has queued, blocking. The session's lock held.
    fn flush_session(session: &mut ClientConnection, mut socket: &TcpStream) -> io::Result<()> {
        while session.wants_write() {
            session.write_tls(&mut socket)?;
        }
        Ok(())
    }
}

impl Read for TlsStream {
    /// Plaintext; `Ok(0)` at the end (`close_notify`, or end of file). A read timeout is
    /// returned as is, with the session intact.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            {
                let mut session = lock(&self.session);
                match session.reader().read(buf) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                    Err(e) => return Err(e),
                }
                let session = &mut *session;
                if !self.pending.is_empty() {
                    let n = session.read_tls(&mut &self.pending[..])?;
                    self.pending.drain(..n);
                    let processed = session.process_new_packets();
                    Self::flush_session(session, &self.socket)?;
                    processed.map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                    continue;
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = (&self.socket).read(&mut chunk)?;
            if n == 0 {
                let mut session = lock(&self.session);
                session.read_tls(&mut &[][..])?; // an empty read: end of file
                session
                    .process_new_packets()
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                return match session.reader().read(buf) {
                    Ok(n) => Ok(n),
                    Err(_) => Ok(0),
                };
            }
            self.pending.extend_from_slice(&chunk[..n]);
        }
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut session = lock(&self.session);
        let n = session.writer().write(buf)?;
        Self::flush_session(&mut session, &self.socket)?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Self::flush_session(&mut lock(&self.session), &self.socket)
    }
}

/// Locks a shared session; a panic on another thread must not end this one.
fn lock(session: &Mutex<ClientConnection>) -> MutexGuard<'_, ClientConnection> {
    session.lock().unwrap_or_else(|e| e.into_inner())
}
