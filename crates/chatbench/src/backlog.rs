//! `backlog`: how fast a sync login reads a large stored backlog, and what it costs the server's
//! memory. One sender stores N messages (`--messages`, of `--msg-bytes` characters) to a
//! receiver that is offline, `--fill-window` in flight, each acked by the server (so each is
//! stored); then the receiver logs in with `"sync":true` and reads everything until SYNC_DONE,
//! confirming with batched RECV as a real client does. Reported: the sync read's messages per
//! second (from sending the LOGIN to SYNC_DONE; `latency_us` is when each message arrived,
//! counted from the LOGIN: p50 is when half had), the server's RSS growth during it (sampled
//! every [`RSS_EVERY`] from `/proc` for `--server-pid`), and loss by seq gaps: the receiver
//! must get every seq from 1 to the last one acked to the sender.
//!
//! A server without the message log (a `--compare` baseline) ignores `sync`: its LOGIN_ACK
//! carries every offline message in `offlinemsg`, no SYNC_DONE follows, and the frames have no
//! seq. Then the LOGIN_ACK ends the read and loss is counted as stored minus received.

use crate::conn::{drive, split_frames, Conns, Scenario};
use crate::pairs::{push_frame, Extras};
use crate::procstat::{self_cpu_us, ProcSample};
use crate::report::{new_histogram, record_ns, Latency, Report};
use crate::seqtrack::{Conv, SeqBook};
use crate::setup::{login_raw, register_users, BenchUser};
use crate::stamp::{self, int_field, push_u64};
use crate::{io_err, BenchError, Result, Settings};
use clusterchat_proto::client::ClientError;
use clusterchat_proto::msgid;
use hdrhistogram::Histogram;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the server's RSS is sampled during the sync read.
pub const RSS_EVERY: Duration = Duration::from_millis(20);
/// Without SYNC_DONE, the read gives up after this long without a byte (or `--grace`, if
/// longer).
pub const SILENCE: Duration = Duration::from_secs(10);

/// The `k`th message's text: its number, then `x` up to `bytes` characters.
pub fn push_text(out: &mut Vec<u8>, k: u64, bytes: usize) {
    let start = out.len();
    push_u64(out, k);
    out.push(b':');
    let written = out.len() - start;
    out.resize(out.len() + bytes.saturating_sub(written), b'x');
}

/// Storing the backlog: one connection, `window` chats in flight, each freed by its ACK.
struct Fill<'a> {
    from: &'a BenchUser,
    to: i64,
    n: u64,
    window: u64,
    msg_bytes: usize,
    cmid: bool,
    time: String,
    kicked: bool,
    sent: u64,
    acked: u64,
    failed: u64,
    max_seq: u64,
    acks_noseq: u64,
    first_error: Option<String>,
    closed: bool,
}

impl Fill<'_> {
    fn send(&mut self, conns: &mut Conns) {
        if self.sent >= self.n || !conns.is_open(0) {
            return;
        }
        let k = self.sent;
        let bytes = self.msg_bytes;
        push_frame(
            conns.out(0),
            msgid::ONE_CHAT,
            self.from,
            "toid",
            self.to,
            |o| push_text(o, k, bytes),
            &self.time,
            Extras::of(true, self.cmid, &self.from.name, k),
        );
        self.sent += 1;
    }
}

impl Scenario for Fill<'_> {
    fn on_frame(&mut self, conns: &mut Conns, _i: usize, frame: &[u8], _now_ns: u64) {
        if int_field(frame, "request") != Some(msgid::ONE_CHAT) {
            return;
        }
        match stamp::msgid(frame) {
            Some(msgid::ACK) => {
                self.acked += 1;
                match int_field(frame, "seq").filter(|&s| s > 0) {
                    Some(seq) => self.max_seq = self.max_seq.max(seq as u64),
                    None => self.acks_noseq += 1,
                }
            }
            Some(msgid::ERROR) => {
                self.failed += 1;
                self.first_error
                    .get_or_insert_with(|| String::from_utf8_lossy(frame).into_owned());
            }
            _ => return,
        }
        self.send(conns);
    }

    fn on_close(&mut self, _i: usize) {
        self.closed = true;
    }

    fn tick(&mut self, conns: &mut Conns, _now: Instant) -> bool {
        if !self.kicked {
            self.kicked = true;
            for _ in 0..self.window.max(1) {
                self.send(conns);
            }
        }
        self.closed || self.acked + self.failed >= self.n
    }
}

/// Samples the RSS of `pids` every [`RSS_EVERY`] until dropped; `peak` is the largest seen.
struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl RssSampler {
    fn start(pids: Vec<u32>) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = 0;
            loop {
                if let Ok(s) = ProcSample::read_all(&pids) {
                    peak = peak.max(s.rss_bytes);
                }
                if flag.load(Ordering::Relaxed) {
                    return peak;
                }
                std::thread::sleep(RSS_EVERY);
            }
        });
        RssSampler {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops sampling (after one last sample) and returns the peak.
    fn peak(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .map_or(0, |t| t.join().expect("the sampler does not panic"))
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// What the receiver read.
struct Received {
    arrivals: Histogram<u64>,
    book: SeqBook,
    delivered: u64,
    dup: u64,
    noseq: u64,
    errors: u64,
    first_error: Option<String>,
    recvs: u64,
    sync_done: Option<u64>,
    first_msg: Option<Duration>,
}

impl Default for Received {
    fn default() -> Self {
        Received {
            arrivals: new_histogram(),
            book: SeqBook::default(),
            delivered: 0,
            dup: 0,
            noseq: 0,
            errors: 0,
            first_error: None,
            recvs: 0,
            sync_done: None,
            first_msg: None,
        }
    }
}

impl Received {
    /// One chat frame (or an `offlinemsg` entry) of the backlog from `peer`.
    fn chat(&mut self, peer: Conv, frame: &[u8], t0: Instant) {
        match int_field(frame, "seq").filter(|&s| s > 0) {
            Some(seq) => {
                let conv = Conv::of_frame(msgid::ONE_CHAT, frame).unwrap_or(peer);
                if !self.book.receive(conv, seq as u64) {
                    self.dup += 1;
                    return;
                }
            }
            None => self.noseq += 1,
        }
        self.delivered += 1;
        let at = t0.elapsed();
        self.first_msg.get_or_insert(at);
        record_ns(&mut self.arrivals, at.as_nanos() as u64);
    }

    fn frame(&mut self, peer: Conv, frame: &[u8], t0: Instant) {
        match stamp::msgid(frame) {
            Some(msgid::ONE_CHAT) => self.chat(peer, frame, t0),
            Some(msgid::SYNC_DONE) => {
                self.sync_done = Some(int_field(frame, "count").unwrap_or(0).max(0) as u64)
            }
            Some(msgid::ERROR) => {
                self.errors += 1;
                self.first_error
                    .get_or_insert_with(|| String::from_utf8_lossy(frame).into_owned());
            }
            _ => {}
        }
    }
}

/// After the receiver's LOGIN_ACK: takes the backlog from its `offlinemsg` (a server without
/// the log), or reads the frames that follow until SYNC_DONE when the server stored with seqs
/// (`stored.0`; `stored.1` messages were acked), confirming with RECV. `reading` is the
/// LOGIN's time, the hard deadline and how long to wait without a byte. Returns the
/// disconnects (0 or 1).
#[allow(clippy::too_many_arguments)]
fn read_after_login(
    read: &mut Received,
    notes: &mut Vec<String>,
    peer: Conv,
    stored: (bool, u64),
    reading: (Instant, Instant, Duration),
    mut stream: TcpStream,
    rest: Vec<u8>,
    ack: serde_json::Value,
) -> Result<u64> {
    let (with_seq, acked) = stored;
    let (t0, deadline, silence) = reading;
    let offline = ack["offlinemsg"].as_array().cloned().unwrap_or_default();
    drop(ack);
    for m in &offline {
        match m.as_str() {
            Some(text) => read.chat(peer, text.as_bytes(), t0),
            None => read.chat(peer, m.to_string().as_bytes(), t0),
        }
    }
    // A server with the log acks with seqs and ends a sync login with SYNC_DONE; one without
    // it sends the backlog inside the LOGIN_ACK and nothing after it.
    let expect_done = offline.is_empty() && with_seq;
    if !expect_done && acked > 0 {
        notes.push(
            "no SYNC_DONE expected: the server acked without seqs or put the backlog into its \
             LOGIN_ACK (no message log), which ended the sync"
                .into(),
        );
    }
    drop(offline);
    let mut buf = rest;
    let mut out = Vec::new();
    let mut chunk = vec![0u8; 256 * 1024];
    let mut last_byte = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .map_err(io_err("setting a read timeout"))?;
    let mut disconnects = 0;
    loop {
        let consumed = split_frames(&buf, |f| {
            read.frame(peer, f, t0);
            if read.book.unconfirmed() >= crate::seqtrack::RECV_BATCH {
                read.recvs += read.book.flush(&mut out, Instant::now());
            }
        })
        .ok_or_else(|| BenchError::Settings("the server sent a frame over 16 MiB".into()))?;
        buf.drain(..consumed);
        if read.book.due(Instant::now()) {
            read.recvs += read.book.flush(&mut out, Instant::now());
        }
        if !out.is_empty() {
            stream.write_all(&out).map_err(io_err("sending RECV"))?;
            out.clear();
        }
        if !expect_done || read.sync_done.is_some() {
            break;
        }
        if Instant::now() > deadline {
            return Err(BenchError::Timeout(format!(
                "backlog: {} of {} read, no SYNC_DONE",
                read.delivered, acked
            )));
        }
        if last_byte.elapsed() > silence {
            notes.push(format!(
                "no SYNC_DONE: gave up after {} s without a byte",
                silence.as_secs()
            ));
            break;
        }
        match stream.read(&mut chunk) {
            Ok(0) => {
                disconnects = 1;
                notes.push("the server closed the connection before SYNC_DONE".into());
                break;
            }
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                last_byte = Instant::now();
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(io_err("reading the backlog")(e)),
        }
    }
    read.recvs += read.book.flush(&mut out, Instant::now());
    if !out.is_empty() {
        let _ = stream.write_all(&out);
    }
    Ok(disconnects)
}

/// Stores the backlog, then reads it with a sync login; see the module doc.
pub fn run(settings: &Settings) -> Result<Report> {
    let started = Instant::now();
    let deadline = started + settings.timeout;
    let users = register_users(&settings.targets, 2, 2, deadline)?;
    let (sender, receiver) = (&users[0], &users[1]);
    let connect = |u: &BenchUser| {
        let s = TcpStream::connect_timeout(&u.target, Duration::from_secs(10))
            .map_err(io_err(format!("connecting to {}", u.target)))?;
        s.set_nodelay(true).map_err(io_err("setting nodelay"))?;
        Ok::<_, BenchError>(s)
    };
    let (s, rest, _) = login_raw(connect(sender)?, sender, false, Duration::from_secs(10))?;
    let setup_s = started.elapsed().as_secs_f64();

    // Store the backlog.
    let fill_start = Instant::now();
    let mut conns = Conns::with_input(vec![(s, rest)]).map_err(io_err("non-blocking socket"))?;
    let mut fill = Fill {
        from: sender,
        to: receiver.id,
        n: settings.messages as u64,
        window: settings.fill_window.max(1) as u64,
        msg_bytes: settings.msg_bytes,
        cmid: settings.cmid,
        time: clusterchat_proto::clock::now(),
        kicked: false,
        sent: 0,
        acked: 0,
        failed: 0,
        max_seq: 0,
        acks_noseq: 0,
        first_error: None,
        closed: false,
    };
    drive(&mut conns, &mut fill, deadline, settings.ping_every)?;
    let fill_s = fill_start.elapsed().as_secs_f64();
    drop(conns);

    // Read it with a sync login.
    let server_before = ProcSample::read_all(&settings.server_pids)
        .map_err(io_err("reading the server's /proc"))?;
    let sampler = RssSampler::start(settings.server_pids.clone());
    let cpu_before = self_cpu_us();
    let stream = connect(receiver)?;
    let t0 = Instant::now();
    let wait = deadline
        .saturating_duration_since(t0)
        .max(Duration::from_secs(1));
    let peer = Conv::Peer(sender.id);
    let mut read = Received::default();
    let mut notes = Vec::new();
    let silence = settings.grace.max(SILENCE);
    let (login_ack, disconnects) = match login_raw(stream, receiver, true, wait) {
        Ok((stream, rest, ack)) => {
            let login_ack = t0.elapsed();
            let stored = (fill.max_seq > 0, fill.acked);
            let reading = (t0, deadline, silence);
            let disconnects = read_after_login(
                &mut read, &mut notes, peer, stored, reading, stream, rest, ack,
            )?;
            (Some(login_ack), disconnects)
        }
        Err(BenchError::Client {
            source: ClientError::Closed,
            ..
        }) => {
            notes.push(
                "the server closed the connection before its LOGIN_ACK (a server without the \
                 log puts the whole backlog into it: over its --max-output?)"
                    .into(),
            );
            (None, 1)
        }
        Err(e) => return Err(e),
    };
    let sync_s = t0.elapsed().as_secs_f64();
    let cpu_after = self_cpu_us();
    let server_after = ProcSample::read_all(&settings.server_pids)
        .map_err(io_err("reading the server's /proc"))?;
    let peak = sampler.peak().max(server_after.rss_bytes);

    let lost = match read.book.get(peer) {
        Some(t) if fill.max_seq > 0 => t.lost(fill.max_seq),
        _ if fill.max_seq > 0 => fill.max_seq,
        _ => fill.acked.saturating_sub(read.delivered),
    };
    let mut r = Report {
        scenario: "backlog".into(),
        targets: settings.target_names(),
        users: 2,
        window: fill.window,
        setup_s,
        duration_s: sync_s,
        sent: fill.acked,
        delivered: read.delivered,
        lost,
        msgs_per_sec: read.delivered as f64 / sync_s.max(1e-9),
        latency_us: Latency::from_histogram(&read.arrivals),
        errors: fill.failed + read.errors,
        disconnects,
        notes,
        ..Report::default()
    };
    r.extra.insert("fill_s".into(), fill_s);
    r.extra.insert("sync_s".into(), sync_s);
    r.extra.insert(
        "fill_msgs_per_sec".into(),
        fill.acked as f64 / fill_s.max(1e-9),
    );
    r.extra.insert(
        "login_ack_ms".into(),
        login_ack.map_or(0.0, |d| d.as_secs_f64() * 1e3),
    );
    r.extra.insert(
        "first_msg_ms".into(),
        read.first_msg.map_or(0.0, |d| d.as_secs_f64() * 1e3),
    );
    r.extra.insert("dup".into(), read.dup as f64);
    r.extra.insert("recv_sent".into(), read.recvs as f64);
    if let Some(count) = read.sync_done {
        r.extra.insert("sync_done_count".into(), count as f64);
        if count != read.delivered + read.dup {
            r.notes.push(format!(
                "SYNC_DONE says {count}, {} frames arrived",
                read.delivered + read.dup
            ));
        }
    }
    if read.noseq > 0 {
        r.extra.insert("noseq_msgs".into(), read.noseq as f64);
    }
    if fill.acks_noseq > 0 {
        r.extra.insert("acks_noseq".into(), fill.acks_noseq as f64);
    }
    if fill.acked + fill.failed < fill.n {
        r.notes.push(format!(
            "only {} of {} messages acked or refused while storing",
            fill.acked + fill.failed,
            fill.n
        ));
    }
    for e in [fill.first_error, read.first_error].into_iter().flatten() {
        r.notes.push(format!("error reply: {e}"));
    }
    if !settings.server_pids.is_empty() {
        r.set_server(&server_before, &server_after);
        r.extra.insert(
            "server_rss_before_bytes".into(),
            server_before.rss_bytes as f64,
        );
        r.extra.insert(
            "server_rss_growth_bytes".into(),
            peak.saturating_sub(server_before.rss_bytes) as f64,
        );
        r.extra.insert(
            "server_rss_end_delta_bytes".into(),
            server_after.rss_bytes as f64 - server_before.rss_bytes as f64,
        );
    }
    r.set_bench_cpu(cpu_before, cpu_after, sync_s);
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_have_the_asked_length() {
        let mut b = Vec::new();
        push_text(&mut b, 42, 10);
        assert_eq!(b, b"42:xxxxxxx");
        b.clear();
        push_text(&mut b, 123456, 3);
        assert_eq!(b, b"123456:", "never cut");
    }

    #[test]
    fn the_read_counts_seqs_dups_and_frames_without_seq() {
        let t0 = Instant::now();
        let peer = Conv::Peer(4);
        let mut r = Received::default();
        let f = |seq: u64| format!(r#"{{"msgid":6,"id":4,"toid":5,"msg":"1:x","seq":{seq}}}"#);
        for s in [1, 2, 2, 4] {
            r.frame(peer, f(s).as_bytes(), t0);
        }
        r.frame(peer, br#"{"msgid":6,"id":4,"msg":"old"}"#, t0);
        r.frame(peer, br#"{"msgid":15,"count":5}"#, t0);
        r.frame(peer, br#"{"msgid":13,"errno":108}"#, t0);
        assert_eq!((r.delivered, r.dup, r.noseq, r.errors), (4, 1, 1, 1));
        assert_eq!(r.sync_done, Some(5));
        assert_eq!(r.book.get(peer).unwrap().lost(5), 2, "3 and 5");
        assert!(r.first_msg.is_some());
    }

    #[test]
    fn the_sampler_sees_this_process() {
        let s = RssSampler::start(vec![std::process::id()]);
        std::thread::sleep(RSS_EVERY);
        assert!(s.peak() > 0);
    }
}
