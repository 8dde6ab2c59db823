//! `pairs`: N users in pairs, each sending one-to-one chat to its partner with W messages in
//! flight. The receiver measures send-to-receipt latency from the stamp in the text and gives
//! the sender its window slot back (both partners live on the same loop thread). After the
//! duration sending stops; a grace period lets in-flight messages land, then whatever was sent
//! and never received is counted lost.
//!
//! With `--sync` (a server with the message log) every chat also carries a `reqid`, so the
//! server acks it with its `seq`; the sessions log in as sync sessions, drop duplicate frames
//! by (conversation, seq), confirm with batched RECV and count loss by seq gaps
//! ([`crate::seqtrack`]): in a pair's conversation every seq up to the highest either partner
//! knows of must have reached the partner that did not send it. `--cmid` gives every chat a
//! unique `cmid`.

use crate::conn::{drive, Conns, Scenario};
use crate::procstat::{self_cpu_us, ProcSample};
use crate::redisstat::{self, RedisWatch};
use crate::report::{new_histogram, record_ns, Latency, Report};
use crate::seqtrack::{flush_recvs, sync_frame, Conv, Session, SyncCounts, RECV_SCAN};
use crate::setup::{login_all, register_placed, BenchUser};
use crate::stamp::{self, clock_ns, push_i64, push_u64, Stamp};
use crate::{io_err, Result, Settings};
use clusterchat_proto::{msgid, UserId};
use hdrhistogram::Histogram;
use std::time::Instant;

/// Users logged in and split over the loop threads, ready for one or more measured rounds.
pub struct Prepared {
    /// Setup time in seconds.
    pub setup_s: f64,
    /// Per loop thread: its connections, users and their sessions; users `2k` and `2k+1` are
    /// partners.
    shards: Vec<(Conns, Vec<BenchUser>, Vec<Session>)>,
}

/// Registers and logs in `settings.users` (rounded up to even) users, spread over the targets
/// as the layout says: partners on different servers (`across`) or on the same one (`local`).
pub fn prepare(settings: &Settings) -> Result<Prepared> {
    let started = Instant::now();
    let deadline = started + settings.timeout;
    let n = settings.users.max(2).div_ceil(2) * 2;
    let users = register_placed(n, settings.concurrency, deadline, |i| {
        settings.pair_target(i)
    })?;
    let streams = match settings.ws {
        Some(http) => Streams::Ws(crate::setup::parallel(
            users.len(),
            settings.concurrency,
            deadline,
            |i| crate::ws::login(http, &users[i]),
        )?),
        None => Streams::Tcp(login_all(
            &users,
            settings.concurrency,
            deadline,
            settings.sync,
        )?),
    };
    let threads = settings.threads.clamp(1, n / 2);
    let shards = match streams {
        Streams::Tcp(s) => shard(users, s, threads, Conns::with_input)?,
        Streams::Ws(s) => shard(users, s, threads, Conns::with_websockets)?,
    };
    Ok(Prepared {
        setup_s: started.elapsed().as_secs_f64(),
        shards,
    })
}

/// The logged-in sockets, over TCP or WebSocket.
enum Streams {
    Tcp(Vec<(std::net::TcpStream, Vec<u8>)>),
    Ws(Vec<(std::net::TcpStream, Vec<u8>, Vec<u8>)>),
}

/// Splits the users and their sockets over `threads` loops, partners together.
type Shard = (Conns, Vec<BenchUser>, Vec<Session>);
fn shard<S>(
    users: Vec<BenchUser>,
    streams: Vec<S>,
    threads: usize,
    conns: impl Fn(Vec<S>) -> std::io::Result<Conns>,
) -> Result<Vec<Shard>> {
    let mut split: Vec<(Vec<_>, Vec<BenchUser>)> =
        (0..threads).map(|_| (Vec::new(), Vec::new())).collect();
    for (i, (u, s)) in users.into_iter().zip(streams).enumerate() {
        let shard = &mut split[(i / 2) % threads];
        shard.0.push(s);
        shard.1.push(u);
    }
    split
        .into_iter()
        .map(|(s, u)| {
            let sessions = vec![Session::default(); u.len()];
            Ok((
                conns(s).map_err(io_err("making sockets non-blocking"))?,
                u,
                sessions,
            ))
        })
        .collect::<Result<_>>()
}

/// Registers, logs in and measures one round.
pub fn run(settings: &Settings) -> Result<Report> {
    let mut prepared = prepare(settings)?;
    measure(&mut prepared, settings)
}

/// Appends one chat frame exactly as the old client sends it: `{"msgid":6,...}` and a NUL.
pub fn chat_frame(out: &mut Vec<u8>, from: &BenchUser, to: UserId, stamp: &Stamp, time: &str) {
    push_frame(
        out,
        6,
        from,
        "toid",
        to,
        |o| stamp.encode(o),
        time,
        Extras::NONE,
    );
}

/// What a chat frame carries besides the old client's fields.
#[derive(Debug, Clone, Copy, Default)]
pub struct Extras<'a> {
    /// `"cmid":"<prefix>-<n>"`.
    pub cmid: Option<(&'a str, u64)>,
    /// `"reqid":n`: the server acks the chat (with its `seq`).
    pub reqid: Option<u64>,
}

impl Extras<'_> {
    /// Nothing: the old client's frame.
    pub const NONE: Extras<'static> = Extras {
        cmid: None,
        reqid: None,
    };

    /// The extras of a bench user's `n`th chat: a `reqid` when `sync` (the ACK brings the
    /// seq), a `cmid` `"<name>-<n>"` when `cmid` (unique: the name is unique to the run).
    pub fn of<'a>(sync: bool, cmid: bool, name: &'a str, n: u64) -> Extras<'a> {
        Extras {
            cmid: cmid.then_some((name, n)),
            reqid: sync.then_some(n),
        }
    }
}

/// Appends a chat frame (msgid 6 with `toid`, or 10 with `groupid`) as the old client writes
/// it, NUL included, without going through a JSON serialiser. `msg` appends the text (which
/// must need no escaping).
#[allow(clippy::too_many_arguments)]
pub(super) fn push_frame(
    out: &mut Vec<u8>,
    msgid: i64,
    from: &BenchUser,
    target_field: &str,
    target: i64,
    msg: impl FnOnce(&mut Vec<u8>),
    time: &str,
    extras: Extras,
) {
    out.extend_from_slice(b"{\"msgid\":");
    push_i64(out, msgid);
    out.extend_from_slice(b",\"id\":");
    push_i64(out, from.id);
    out.extend_from_slice(b",\"name\":\"");
    out.extend_from_slice(from.name.as_bytes());
    out.extend_from_slice(b"\",\"");
    out.extend_from_slice(target_field.as_bytes());
    out.extend_from_slice(b"\":");
    push_i64(out, target);
    out.extend_from_slice(b",\"msg\":\"");
    msg(out);
    out.extend_from_slice(b"\",\"time\":\"");
    out.extend_from_slice(time.as_bytes());
    out.push(b'"');
    if let Some((prefix, n)) = extras.cmid {
        out.extend_from_slice(b",\"cmid\":\"");
        out.extend_from_slice(prefix.as_bytes());
        out.push(b'-');
        push_u64(out, n);
        out.push(b'"');
    }
    if let Some(reqid) = extras.reqid {
        out.extend_from_slice(b",\"reqid\":");
        push_u64(out, reqid);
    }
    out.extend_from_slice(b"}\0");
}

/// One loop thread's view of a round.
struct PairsLoop<'a> {
    users: &'a [BenchUser],
    sessions: &'a mut [Session],
    sync: bool,
    cmid: bool,
    window: usize,
    round: u64,
    send_until: Instant,
    end_by: Instant,
    sending: bool,
    kicked: bool,
    in_flight: Vec<usize>,
    seq: Vec<u64>,
    total_in_flight: usize,
    time: String,
    time_ns: u64,
    hist: Histogram<u64>,
    delivered: u64,
    in_window: u64,
    stale: u64,
    errors: u64,
    first_error: Option<String>,
    disconnects: u64,
    counts: SyncCounts,
    next_recv_scan: Instant,
}

impl PairsLoop<'_> {
    fn send(&mut self, conns: &mut Conns, from: usize) {
        let stamp = Stamp {
            round: self.round,
            sender: from as u64,
            seq: self.seq[from],
            t_ns: clock_ns(),
        };
        if stamp.t_ns.saturating_sub(self.time_ns) > 1_000_000_000 {
            self.time = clusterchat_proto::clock::now();
            self.time_ns = stamp.t_ns;
        }
        let to = self.users[from ^ 1].id;
        let n = self.sessions[from].chats;
        self.sessions[from].chats += 1;
        let u = &self.users[from];
        let extras = Extras::of(self.sync, self.cmid, &u.name, n);
        push_frame(
            conns.out(from),
            msgid::ONE_CHAT,
            u,
            "toid",
            to,
            |o| stamp.encode(o),
            &self.time,
            extras,
        );
        if self.sync {
            self.counts.acks_pending += 1;
        }
        self.seq[from] += 1;
        self.in_flight[from] += 1;
        self.total_in_flight += 1;
    }
}

impl Scenario for PairsLoop<'_> {
    fn on_frame(&mut self, conns: &mut Conns, i: usize, frame: &[u8], now_ns: u64) {
        if self.sync {
            let partner = Conv::Peer(self.users[i ^ 1].id);
            let chat = msgid::ONE_CHAT;
            if !sync_frame(
                &mut self.counts,
                self.sessions,
                conns,
                i,
                frame,
                chat,
                partner,
            ) {
                return;
            }
        }
        if !stamp::wanted_frame(
            frame,
            msgid::ONE_CHAT,
            &mut self.errors,
            &mut self.first_error,
        ) {
            return;
        }
        let stamp = stamp::msg_text(frame).and_then(Stamp::decode);
        let Some(stamp) = stamp.filter(|s| s.round == self.round) else {
            self.stale += 1;
            return;
        };
        let from = i ^ 1;
        record_ns(&mut self.hist, now_ns.saturating_sub(stamp.t_ns));
        self.delivered += 1;
        if self.sending {
            self.in_window += 1;
        }
        if self.in_flight[from] > 0 {
            self.in_flight[from] -= 1;
            self.total_in_flight -= 1;
        }
        if self.sending && conns.is_open(from) {
            self.send(conns, from);
        }
    }

    fn on_close(&mut self, _i: usize) {
        self.disconnects += 1;
    }

    fn tick(&mut self, conns: &mut Conns, now: Instant) -> bool {
        if !self.kicked {
            self.kicked = true;
            for from in 0..conns.len() {
                for _ in 0..self.window {
                    self.send(conns, from);
                }
            }
        }
        if self.sending && now >= self.send_until {
            self.sending = false;
        }
        let done = !self.sending
            && ((self.total_in_flight == 0 && self.counts.acks_pending == 0) || now >= self.end_by);
        if self.sync && (done || now >= self.next_recv_scan) {
            self.next_recv_scan = now + RECV_SCAN;
            flush_recvs(&mut self.counts, self.sessions, conns, now, done);
        }
        done
    }
}

impl PairsLoop<'_> {
    /// Ends a `--sync` round: counts every pair conversation's seq gaps up to the highest seq
    /// either partner knows of, then settles them for the next round.
    fn count_gaps(&mut self) {
        let n = self.users.len();
        let conv_of = |u: usize| Conv::Peer(self.users[u ^ 1].id);
        let uppers: Vec<u64> = (0..n)
            .map(|u| {
                let mine = self.sessions[u]
                    .book
                    .get(conv_of(u))
                    .map_or(0, |t| t.known_hi());
                let theirs = self.sessions[u ^ 1]
                    .book
                    .get(conv_of(u ^ 1))
                    .map_or(0, |t| t.own_hi());
                mine.max(theirs)
            })
            .collect();
        for (u, upper) in uppers.into_iter().enumerate() {
            let t = self.sessions[u].book.conv(conv_of(u));
            self.counts.lost_gaps += t.lost(upper);
            t.settle(upper);
        }
    }
}

/// Runs one measured round over prepared connections (reusable: messages of earlier rounds
/// that arrive late are recognised by their round and ignored).
pub fn measure(p: &mut Prepared, settings: &Settings) -> Result<Report> {
    let server_before = ProcSample::read_all(&settings.server_pids)
        .map_err(io_err("reading the server's /proc"))?;
    let mut redis = RedisWatch::open(settings)?;
    let redis_before = redis.as_mut().map(RedisWatch::read).transpose()?;
    let cpu_before = self_cpu_us();
    let start = Instant::now();
    let send_until = start + settings.duration;
    let end_by = send_until + settings.grace;
    let hard = start + settings.timeout;
    let results: Vec<Result<PairsLoop>> = std::thread::scope(|s| {
        let handles: Vec<_> = p
            .shards
            .iter_mut()
            .map(|(conns, users, sessions)| {
                s.spawn(move || {
                    let n = users.len();
                    let mut l = PairsLoop {
                        users,
                        sessions,
                        sync: settings.sync,
                        cmid: settings.cmid,
                        window: settings.window.max(1),
                        round: settings.round,
                        send_until,
                        end_by,
                        sending: true,
                        kicked: false,
                        in_flight: vec![0; n],
                        seq: vec![0; n],
                        total_in_flight: 0,
                        time: clusterchat_proto::clock::now(),
                        time_ns: clock_ns(),
                        hist: new_histogram(),
                        delivered: 0,
                        in_window: 0,
                        stale: 0,
                        errors: 0,
                        first_error: None,
                        disconnects: 0,
                        counts: SyncCounts::default(),
                        next_recv_scan: start,
                    };
                    drive(conns, &mut l, hard, settings.ping_every)?;
                    if l.sync {
                        l.count_gaps();
                    }
                    Ok(l)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a loop thread panicked"))
            .collect()
    });
    let wall = start.elapsed().as_secs_f64();
    let cpu_after = self_cpu_us();
    let server_after = ProcSample::read_all(&settings.server_pids)
        .map_err(io_err("reading the server's /proc"))?;
    let redis_after = redis.as_mut().map(RedisWatch::read).transpose()?;
    let mut r = Report {
        scenario: "pairs".into(),
        targets: settings.target_names(),
        layout: settings.layout_name(),
        window: settings.window.max(1) as u64,
        setup_s: p.setup_s,
        duration_s: settings.duration.as_secs_f64(),
        ..Report::default()
    };
    let mut hist = new_histogram();
    let mut in_window = 0;
    let mut stale = 0;
    let mut counts = SyncCounts::default();
    for l in results {
        let l = l?;
        counts.add(&l.counts);
        r.users += l.users.len() as u64;
        r.sent += l.seq.iter().sum::<u64>();
        r.delivered += l.delivered;
        r.errors += l.errors;
        r.disconnects += l.disconnects;
        in_window += l.in_window;
        stale += l.stale;
        hist.add(&l.hist).expect("same histogram bounds");
        if let Some(e) = l.first_error {
            r.notes.push(format!("error reply: {e}"));
        }
    }
    r.lost = r.sent.saturating_sub(r.delivered);
    r.msgs_per_sec = in_window as f64 / settings.duration.as_secs_f64().max(1e-9);
    r.latency_us = Latency::from_histogram(&hist);
    if stale > 0 {
        r.extra.insert("stale_msgs".into(), stale as f64);
    }
    if settings.sync {
        let sessions: Vec<&Session> = p.shards.iter().flat_map(|sh| sh.2.iter()).collect();
        counts.report(&mut r, &sessions);
    }
    if !settings.server_pids.is_empty() {
        r.set_server(&server_before, &server_after);
    }
    if let (Some(before), Some(after)) = (redis_before, redis_after) {
        redisstat::fill(&mut r, &before, &after);
    }
    r.set_bench_cpu(cpu_before, cpu_after, wall);
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_frames_look_like_the_old_clients() {
        let from = BenchUser {
            id: 7,
            name: "bench-1-0-9".into(),
            target: "127.0.0.1:1".parse().unwrap(),
        };
        let stamp = Stamp {
            round: 0,
            sender: 1,
            seq: 2,
            t_ns: 3,
        };
        let mut out = Vec::new();
        chat_frame(&mut out, &from, 8, &stamp, "2026-01-02 03:04:05");
        assert_eq!(out.pop(), Some(0));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"msgid": 6, "id": 7, "name": "bench-1-0-9", "toid": 8,
                "msg": "0.1.2.3", "time": "2026-01-02 03:04:05"})
        );
        assert_eq!(stamp::msg_text(&out), Some(&b"0.1.2.3"[..]));
    }
}
