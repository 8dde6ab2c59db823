//! The TLS transport against a rustls client over an in-memory socket whose writes can be cut
//! short: plaintext both ways, the handshake, and above all the accounting that makes
//! "written" mean "in the kernel" (a tagged frame whose records are still in rustls is not
//! reported, and comes back if the connection dies).

use super::TlsSession;
use crate::buffer::Buffer;
use crate::written::TagQueue;
use rustls::crypto::ring;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig};
use std::io::{self, Read, Write};
use std::sync::Arc;

/// The session's socket: reads what the client wrote (WouldBlock when empty, or end of file
/// once `eof`), and takes at most `cap` more bytes of writes before WouldBlock.
#[derive(Default)]
struct Pipe {
    inbound: Vec<u8>,
    eof: bool,
    sent: Vec<u8>,
    cap: usize,
}

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.inbound.is_empty() {
            return match self.eof {
                true => Ok(0),
                false => Err(io::ErrorKind::WouldBlock.into()),
            };
        }
        let n = buf.len().min(self.inbound.len());
        buf[..n].copy_from_slice(&self.inbound[..n]);
        self.inbound.drain(..n);
        Ok(n)
    }
}

impl Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.cap == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.cap);
        self.sent.extend_from_slice(&buf[..n]);
        self.cap -= n;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A session and a client that trusts its certificate, over a pipe that takes everything.
struct Setup {
    session: TlsSession,
    client: ClientConnection,
    pipe: Pipe,
    output: Buffer,
}

fn setup() -> Setup {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert = CertificateDer::from(made.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.signing_key.serialize_der()));
    let provider = Arc::new(ring::default_provider());
    let server = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(cert).unwrap();
    let client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("localhost").unwrap();
    Setup {
        session: TlsSession::new(&Arc::new(server)).unwrap(),
        client: ClientConnection::new(Arc::new(client), name).unwrap(),
        pipe: Pipe {
            cap: usize::MAX,
            ..Pipe::default()
        },
        output: Buffer::new(),
    }
}

impl Setup {
    /// Moves the client's records to the session, and reads its plaintext (as the loop does).
    fn server_reads(&mut self) -> Vec<u8> {
        while self.client.wants_write() {
            self.client.write_tls(&mut self.pipe.inbound).unwrap();
        }
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match self.session.read(&mut self.pipe, &mut buf) {
                Ok(0) => return got,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return got,
                Err(e) => panic!("server read: {e}"),
            }
        }
    }

    /// Flushes the session (as the loop does), hands what the socket took to the client, and
    /// returns the plaintext the client can read.
    fn client_reads(&mut self, tags: Option<&mut TagQueue>) -> Vec<u8> {
        self.session
            .write_out(&mut self.pipe, &mut self.output, tags)
            .unwrap();
        let sent = std::mem::take(&mut self.pipe.sent);
        let mut slice = &sent[..];
        let mut got = Vec::new();
        while !slice.is_empty() {
            self.client.read_tls(&mut slice).unwrap();
            self.client.process_new_packets().unwrap();
            let _ = self.client.reader().read_to_end(&mut got);
        }
        got
    }

    /// Runs the handshake; returns the plaintext the client got meanwhile (output that waited
    /// for it).
    fn handshake(&mut self) -> Vec<u8> {
        let mut got = Vec::new();
        for _ in 0..10 {
            if !self.client.is_handshaking() && !self.session.conn.is_handshaking() {
                return got;
            }
            self.server_reads();
            got.extend(self.client_reads(None));
        }
        panic!("no handshake after 10 flights");
    }
}

#[test]
fn plaintext_crosses_both_ways_after_the_handshake() {
    let mut s = setup();
    s.handshake();
    s.client.writer().write_all(b"{\"msgid\":1}\n").unwrap();
    assert_eq!(s.server_reads(), b"{\"msgid\":1}\n");
    s.output.append(b"{\"msgid\":2}\n");
    assert_eq!(s.client_reads(None), b"{\"msgid\":2}\n");
    assert!(s.output.is_empty());
}

#[test]
fn nothing_is_encrypted_before_the_handshake_completes() {
    let mut s = setup();
    s.output.append(b"early\n");
    s.session
        .write_out(&mut s.pipe, &mut s.output, None)
        .unwrap();
    assert!(
        s.pipe.sent.is_empty(),
        "nothing to send before a ClientHello"
    );
    assert_eq!(s.output.peek(), b"early\n", "kept in the Buffer");
    let mut got = s.handshake();
    got.extend(s.client_reads(None));
    assert_eq!(got, b"early\n", "sent once the handshake completed");
}

#[test]
fn a_frame_is_written_only_once_its_records_are_all_in_the_socket() {
    let mut s = setup();
    s.handshake();
    let frame = vec![b'x'; 1000];
    let mut tags = TagQueue::default();
    s.output.append(&frame);
    s.output.append(b"\n");
    tags.push(s.output.len(), frame.len(), 7);
    // The socket takes 10 bytes of the record: encrypted, but not written.
    s.pipe.cap = 10;
    s.session
        .write_out(&mut s.pipe, &mut s.output, Some(&mut tags))
        .unwrap();
    assert_eq!(s.pipe.sent.len(), 10);
    assert_eq!(tags.take_written(), None, "its record is not in the socket");
    assert_eq!(s.output.len(), 1001, "still counted against max_output");
    assert!(s.session.wants_write(), "the rest waits for WRITABLE");
    // Had the connection died now, the frame would come back.
    let mut back = Vec::new();
    tags.hand_back(s.output.peek(), |f, t| back.push((f, t)));
    assert_eq!(back.len(), 1);
    assert_eq!((&back[0].0[..], back[0].1), (&frame[..], 7));
    // Push it again and let the socket take the rest.
    tags.push(s.output.len(), frame.len(), 7);
    s.pipe.cap = usize::MAX;
    let got = s.client_reads(Some(&mut tags));
    assert_eq!(tags.take_written(), Some(7));
    assert!(s.output.is_empty());
    assert_eq!(&got[..1000], &frame[..]);
}

#[test]
fn large_output_goes_out_in_pieces_of_rustls_buffer_and_arrives_whole() {
    let mut s = setup();
    s.handshake();
    let big: Vec<u8> = (0..300_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    s.output.append(&big);
    let mut tags = TagQueue::default();
    tags.push(s.output.len(), big.len() - 1, 1);
    assert_eq!(s.client_reads(Some(&mut tags)), big);
    assert_eq!(tags.take_written(), Some(1));
}

#[test]
fn bytes_that_are_not_tls_are_an_error_answered_with_an_alert() {
    let mut s = setup();
    s.pipe.inbound = b"{\"msgid\":1,\"id\":1,\"password\":\"x\"}\n".to_vec();
    let mut buf = [0u8; 64];
    let err = s.session.read(&mut s.pipe, &mut buf).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    assert_eq!(s.pipe.sent.first(), Some(&0x15), "an alert record");
}

#[test]
fn end_of_file_and_close_notify_end_the_stream() {
    let mut s = setup();
    s.handshake();
    // The server half-closes: the client sees close_notify.
    assert!(s.session.close_notify(&mut s.pipe, &mut s.output).unwrap());
    s.client_reads(None);
    let mut buf = [0u8; 8];
    assert_eq!(s.client.reader().read(&mut buf).unwrap(), 0, "clean end");
    // The client's data then its end of file: the data, then the end.
    s.client.writer().write_all(b"last\n").unwrap();
    while s.client.wants_write() {
        s.client.write_tls(&mut s.pipe.inbound).unwrap();
    }
    s.pipe.eof = true;
    let mut buf = [0u8; 64];
    let n = s.session.read(&mut s.pipe, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"last\n");
    assert_eq!(s.session.read(&mut s.pipe, &mut buf).unwrap(), 0);
}
