//! The measuring loop: one mio `Poll` driving many non-blocking connections. Bytes queued
//! during one loop iteration go out in one `write` per connection at its end (coalescing, as
//! the server does); reads drain each socket through one scratch buffer per loop, keeping only
//! a partial frame behind. A [`Scenario`] decides what each incoming frame means.
//!
//! Like chatclient, every connection of a measuring loop sends PING every 20 s
//! ([`PING_EVERY`], `--ping-every`), so a server's `--heartbeat-timeout` never cuts a long
//! run; the PONGs are dropped before the scenario sees them (they are only counted, in
//! [`Conns::pongs`]).

use crate::{io_err, BenchError, Result};
use clusterchat_proto::codec::{Frames, Item, DEFAULT_MAX_FRAME};
use clusterchat_proto::msgid;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

/// How often each connection of a measuring loop sends PING by default (chatclient's
/// interval; `--ping-every`).
pub const PING_EVERY: Duration = Duration::from_secs(20);
/// The PING chatbench sends (NUL-terminated, like its other frames).
const PING: &[u8] = b"{\"msgid\":20}\0";

/// Whether `frame` is a PONG (the reply to a PING: never part of a scenario's accounting).
fn is_pong(frame: &[u8]) -> bool {
    frame.len() < 64 && crate::stamp::msgid(frame) == Some(msgid::PONG)
}

/// One logged-in connection in a measuring loop.
pub struct Conn {
    stream: TcpStream,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    queued: bool,
    /// False once the peer closed or the socket failed.
    pub open: bool,
    /// Over WebSocket (`--ws`): raw bytes read and not yet whole messages, and framed output
    /// not yet written.
    ws: Option<Box<(Vec<u8>, Vec<u8>)>>,
}

impl Conn {
    /// Wraps a connected std stream (made non-blocking here).
    pub fn new(stream: std::net::TcpStream) -> io::Result<Conn> {
        stream.set_nonblocking(true)?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream: TcpStream::from_std(stream),
            rbuf: Vec::new(),
            wbuf: Vec::new(),
            queued: false,
            open: true,
            ws: None,
        })
    }

    /// Whether output waits to be written.
    fn has_output(&self) -> bool {
        !self.wbuf.is_empty() || self.ws.as_ref().is_some_and(|ws| !ws.1.is_empty())
    }

    /// Writes as much queued output as the socket takes. A failed socket drops its output;
    /// the failure itself is noticed (and reported) on the read side.
    fn flush(&mut self) {
        let out = match self.ws.as_deref_mut() {
            Some((_, framed)) => {
                crate::ws::frame_all(&mut self.wbuf, framed);
                framed
            }
            None => &mut self.wbuf,
        };
        let mut written = 0;
        while written < out.len() {
            match self.stream.write(&out[written..]) {
                Ok(n) if n > 0 => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                _ => {
                    written = out.len();
                    break;
                }
            }
        }
        out.drain(..written);
    }

    /// Reads everything available into the read buffer (edge-triggered readiness: until
    /// WouldBlock). Sets `open` to false when the peer closed or the socket failed.
    fn fill(&mut self, scratch: &mut [u8]) {
        loop {
            match self.stream.read(scratch) {
                Ok(0) => {
                    self.open = false;
                    return;
                }
                Ok(n) => match self.ws.as_deref_mut() {
                    Some((raw, _)) => {
                        raw.extend_from_slice(&scratch[..n]);
                        if !crate::ws::unframe(raw, &mut self.rbuf) {
                            self.open = false;
                            return;
                        }
                    }
                    None => self.rbuf.extend_from_slice(&scratch[..n]),
                },
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.open = false;
                    return;
                }
            }
        }
    }
}

/// Calls `on_frame` with each whole frame at the front of `buf`; returns the bytes consumed
/// (the rest is a partial frame), or `None` when a frame is impossibly large.
pub fn split_frames(buf: &[u8], mut on_frame: impl FnMut(&[u8])) -> Option<usize> {
    let mut frames = Frames::new(buf, DEFAULT_MAX_FRAME * 16);
    for item in frames.by_ref() {
        match item {
            Item::Frame { bytes, .. } => on_frame(bytes),
            Item::Invalid(_) => {}
            Item::TooLarge => return None,
        }
    }
    Some(frames.consumed())
}

/// The connections of one loop, indexed like the scenario's users, with the list of those
/// that have output queued this iteration.
pub struct Conns {
    conns: Vec<Conn>,
    dirty: Vec<usize>,
    pongs: u64,
}

impl Conns {
    /// Takes connected sockets.
    pub fn new(streams: Vec<std::net::TcpStream>) -> io::Result<Conns> {
        Ok(Conns {
            conns: streams
                .into_iter()
                .map(Conn::new)
                .collect::<io::Result<_>>()?,
            dirty: Vec::new(),
            pongs: 0,
        })
    }

    /// Takes connected sockets, each with bytes already read from it (what the server sent
    /// behind the LOGIN_ACK): the loop reads those first.
    pub fn with_input(streams: Vec<(std::net::TcpStream, Vec<u8>)>) -> io::Result<Conns> {
        let mut conns = Vec::with_capacity(streams.len());
        for (stream, input) in streams {
            let mut c = Conn::new(stream)?;
            c.rbuf = input;
            conns.push(c);
        }
        Ok(Conns {
            conns,
            dirty: Vec::new(),
            pongs: 0,
        })
    }

    /// Takes WebSocket connections (`--ws`), each with the frame bytes and the raw WebSocket
    /// bytes already read from it.
    pub fn with_websockets(
        streams: Vec<(std::net::TcpStream, Vec<u8>, Vec<u8>)>,
    ) -> io::Result<Conns> {
        let mut conns = Vec::with_capacity(streams.len());
        for (stream, input, raw) in streams {
            let mut c = Conn::new(stream)?;
            c.rbuf = input;
            c.ws = Some(Box::new((raw, Vec::new())));
            conns.push(c);
        }
        Ok(Conns {
            conns,
            dirty: Vec::new(),
            pongs: 0,
        })
    }

    /// How many connections.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// PONGs received (answers to the pings; no scenario sees them).
    pub fn pongs(&self) -> u64 {
        self.pongs
    }

    /// Whether connection `i` is still open.
    pub fn is_open(&self, i: usize) -> bool {
        self.conns[i].open
    }

    /// The output buffer of connection `i`, to append frames to; it is flushed at the end of
    /// this loop iteration.
    pub fn out(&mut self, i: usize) -> &mut Vec<u8> {
        let c = &mut self.conns[i];
        if !c.queued {
            c.queued = true;
            self.dirty.push(i);
        }
        &mut c.wbuf
    }

    fn flush_dirty(&mut self) {
        for i in self.dirty.drain(..) {
            let c = &mut self.conns[i];
            c.queued = false;
            // An unfinished write resumes on the WRITABLE event.
            c.flush();
        }
    }
}

/// What a measuring loop runs: reactions to frames, and when to stop.
pub trait Scenario {
    /// A whole frame arrived on connection `i` at `now_ns` ([`crate::stamp::clock_ns`]).
    fn on_frame(&mut self, conns: &mut Conns, i: usize, frame: &[u8], now_ns: u64);
    /// Connection `i` was closed by the server or failed.
    fn on_close(&mut self, i: usize);
    /// Called once per loop iteration before waiting; true ends the loop.
    fn tick(&mut self, conns: &mut Conns, now: Instant) -> bool;
}

/// Hands the whole frames in connection `i`'s read buffer to the scenario, keeps a partial
/// one, and reports the connection's close (after its last frames).
fn deliver(conns: &mut Conns, scenario: &mut impl Scenario, i: usize, poll: &Poll) {
    let now_ns = crate::stamp::clock_ns();
    let rbuf = std::mem::take(&mut conns.conns[i].rbuf);
    let consumed = split_frames(&rbuf, |frame| {
        if is_pong(frame) {
            conns.pongs += 1;
        } else {
            scenario.on_frame(conns, i, frame, now_ns)
        }
    });
    let c = &mut conns.conns[i];
    c.rbuf = rbuf;
    match consumed {
        Some(n) => drop(c.rbuf.drain(..n)),
        None => c.open = false,
    }
    if c.rbuf.is_empty() && c.rbuf.capacity() > 64 * 1024 {
        c.rbuf = Vec::new();
    }
    if !c.open {
        let _ = poll.registry().deregister(&mut c.stream);
        scenario.on_close(i);
    }
}

/// Runs `scenario` over `conns` until its `tick` says done; fails past `hard_deadline`. Every
/// open connection sends PING every `ping_every`.
pub fn drive(
    conns: &mut Conns,
    scenario: &mut impl Scenario,
    hard_deadline: Instant,
    ping_every: Duration,
) -> Result<()> {
    let mut poll = Poll::new().map_err(io_err("creating a poll"))?;
    for (i, c) in conns.conns.iter_mut().enumerate() {
        poll.registry()
            .register(
                &mut c.stream,
                Token(i),
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(io_err("registering a connection"))?;
    }
    let mut events = Events::with_capacity(1024);
    let mut scratch = vec![0u8; 256 * 1024];
    // Bytes read before the loop (behind a LOGIN_ACK) come first.
    for i in 0..conns.len() {
        if conns.conns[i].open && !conns.conns[i].rbuf.is_empty() {
            deliver(conns, scenario, i, &poll);
        }
    }
    let mut next_ping = Instant::now() + ping_every;
    let result = loop {
        let now = Instant::now();
        if now >= next_ping {
            for i in 0..conns.len() {
                if conns.conns[i].open {
                    conns.out(i).extend_from_slice(PING);
                }
            }
            next_ping = now + ping_every;
        }
        if scenario.tick(conns, now) {
            conns.flush_dirty();
            break Ok(());
        }
        conns.flush_dirty();
        if now > hard_deadline {
            break Err(BenchError::Timeout(
                "the measuring loop ran too long".into(),
            ));
        }
        if let Err(e) = poll.poll(&mut events, Some(Duration::from_millis(5))) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            break Err(BenchError::Io {
                context: "polling".into(),
                source: e,
            });
        }
        for ev in events.iter() {
            let i = ev.token().0;
            if !conns.conns[i].open {
                continue;
            }
            if ev.is_writable() && conns.conns[i].has_output() {
                conns.out(i);
            }
            if !(ev.is_readable() || ev.is_read_closed() || ev.is_error()) {
                continue;
            }
            conns.conns[i].fill(&mut scratch);
            deliver(conns, scenario, i, &poll);
        }
    };
    for c in conns.conns.iter_mut().filter(|c| c.open) {
        let _ = poll.registry().deregister(&mut c.stream);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_split_and_partials_kept() {
        let mut got = Vec::new();
        let n = split_frames(b"{\"a\":1}\0{\"b\":2}\n{\"c\"", |f| got.push(f.to_vec()));
        assert_eq!(n, Some(16));
        assert_eq!(got, [&b"{\"a\":1}"[..], b"{\"b\":2}"]);
        assert_eq!(split_frames(b"\0\0", |_| panic!("no frame")), Some(2));
    }

    struct Echo {
        got: Vec<Vec<u8>>,
        closed: usize,
    }

    impl Scenario for Echo {
        fn on_frame(&mut self, conns: &mut Conns, i: usize, frame: &[u8], _now: u64) {
            self.got.push(frame.to_vec());
            conns.out(i).extend_from_slice(b"{\"ok\":1}\0");
        }
        fn on_close(&mut self, _i: usize) {
            self.closed += 1;
        }
        fn tick(&mut self, _conns: &mut Conns, _now: Instant) -> bool {
            self.closed == 1
        }
    }

    #[test]
    fn bytes_read_before_the_loop_come_first() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let mut conns = Conns::with_input(vec![(client, b"{\"a\":1}\0{\"b\"".to_vec())]).unwrap();
        server.write_all(b":2}\0").unwrap();
        drop(server);
        let mut echo = Echo {
            got: Vec::new(),
            closed: 0,
        };
        drive(
            &mut conns,
            &mut echo,
            Instant::now() + Duration::from_secs(10),
            PING_EVERY,
        )
        .unwrap();
        assert_eq!(echo.got, [&b"{\"a\":1}"[..], b"{\"b\":2}"]);
    }

    /// Counts frames; done once `want` came or the peer closed.
    struct Count {
        got: Vec<Vec<u8>>,
        want: usize,
        closed: bool,
    }

    impl Scenario for Count {
        fn on_frame(&mut self, _conns: &mut Conns, _i: usize, frame: &[u8], _now: u64) {
            self.got.push(frame.to_vec());
        }
        fn on_close(&mut self, _i: usize) {
            self.closed = true;
        }
        fn tick(&mut self, _conns: &mut Conns, _now: Instant) -> bool {
            self.got.len() >= self.want || self.closed
        }
    }

    #[test]
    fn connections_ping_and_pongs_are_not_frames_of_the_scenario() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let mut conns = Conns::new(vec![client]).unwrap();
        // A server that answers each of three PINGs with a PONG, then sends one frame.
        let peer = std::thread::spawn(move || {
            let mut pings = 0;
            let mut buf = Vec::new();
            let mut chunk = [0u8; 64];
            while pings < 3 {
                let n = server.read(&mut chunk).unwrap();
                buf.extend_from_slice(&chunk[..n]);
                while let Some(end) = buf.iter().position(|&b| b == 0) {
                    assert_eq!(&buf[..end], b"{\"msgid\":20}");
                    buf.drain(..=end);
                    pings += 1;
                    server.write_all(b"{\"msgid\":21}\n").unwrap();
                }
            }
            server.write_all(b"{\"msgid\":5,\"n\":1}\n").unwrap();
            server
        });
        let mut count = Count {
            got: Vec::new(),
            want: 1,
            closed: false,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        drive(&mut conns, &mut count, deadline, Duration::from_millis(10)).unwrap();
        drop(peer.join().unwrap());
        assert_eq!(
            count.got,
            [&b"{\"msgid\":5,\"n\":1}"[..]],
            "PONGs are not frames"
        );
        assert_eq!(conns.pongs(), 3);
    }

    #[test]
    fn the_loop_reads_replies_and_sees_closes() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let mut conns = Conns::new(vec![client]).unwrap();
        let peer = std::thread::spawn(move || {
            server.write_all(b"{\"a\":1}\0{\"b\":").unwrap();
            std::thread::sleep(Duration::from_millis(30));
            server.write_all(b"2}").unwrap();
            let mut buf = [0u8; 18];
            server.read_exact(&mut buf).unwrap();
            buf
        });
        let mut echo = Echo {
            got: Vec::new(),
            closed: 0,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        drive(&mut conns, &mut echo, deadline, PING_EVERY).unwrap();
        assert_eq!(&peer.join().unwrap(), b"{\"ok\":1}\0{\"ok\":1}\0");
        assert_eq!(echo.got, [&b"{\"a\":1}"[..], b"{\"b\":2}"]);
        assert!(!conns.is_open(0));
    }
}
