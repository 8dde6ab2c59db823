//! `group`: one group of M members, all online; K of them send group chat with W messages in
//! flight each. A message counts as done when the last of the other M-1 members got it: that
//! is the latency reported (`latency_us`), and what frees the sender's window slot. Fan-out
//! deliveries per second are the throughput. All members share one loop thread, so "the last
//! receiver" is seen in one place.
//!
//! With `--sync` (see [`crate::pairs`]) members log in as sync sessions, every group chat is
//! acked with its `seq`, and every member must receive every seq of the group up to the
//! highest anyone knows of, except its own.

use crate::conn::{drive, Conns, Scenario};
use crate::pairs::{push_frame, Extras};
use crate::procstat::{self_cpu_us, ProcSample};
use crate::redisstat::{self, RedisWatch};
use crate::report::{new_histogram, record_ns, Latency, Report};
use crate::seqtrack::{flush_recvs, sync_frame, Conv, Session, SyncCounts, RECV_SCAN};
use crate::setup::{
    connect, login_all, parallel, register_placed, unique_prefix, BenchUser, PASSWORD,
};
use crate::stamp::{self, clock_ns, Stamp};
use crate::{client_err, io_err, Result, Settings};
use clusterchat_proto::{msgid, GroupId};
use hdrhistogram::Histogram;
use std::collections::HashMap;
use std::time::Instant;

/// Members logged in and in one group, ready for measured rounds.
pub struct Prepared {
    /// Setup time in seconds.
    pub setup_s: f64,
    conns: Conns,
    users: Vec<BenchUser>,
    sessions: Vec<Session>,
    group: GroupId,
}

/// Registers and logs in the members, creates the group (member 0) and has the others join.
/// With `--sync` they do that on legacy sessions, then log in again as sync sessions (each
/// member costs the server two logins).
pub fn prepare(settings: &Settings) -> Result<Prepared> {
    let started = Instant::now();
    let deadline = started + settings.timeout;
    let m = settings.users.max(2);
    let users = register_placed(m, settings.concurrency, deadline, |i| {
        settings.member_target(i)
    })?;
    let mut creator = connect(users[0].target)?;
    creator
        .login(users[0].id, PASSWORD)
        .map_err(client_err("logging in the group creator"))?;
    let group = creator
        .create_group(users[0].id, &unique_prefix(), "chatbench fan-out")
        .map_err(client_err("creating the group"))?;
    let first = creator
        .stream()
        .try_clone()
        .map_err(io_err("keeping a socket"))?;
    drop(creator);
    let rest = parallel(m - 1, settings.concurrency, deadline, |k| {
        let u = &users[k + 1];
        let mut c = connect(u.target)?;
        c.login(u.id, PASSWORD)
            .map_err(client_err(format!("logging in {}", u.name)))?;
        c.join_group(u.id, group)
            .map_err(client_err(format!("{} joining the group", u.name)))?;
        c.stream().try_clone().map_err(io_err("keeping a socket"))
    })?;
    let streams: Vec<_> = std::iter::once(first).chain(rest).collect();
    let streams = if settings.sync {
        drop(streams);
        login_all(&users, settings.concurrency, deadline, true)?
    } else {
        streams.into_iter().map(|s| (s, Vec::new())).collect()
    };
    Ok(Prepared {
        setup_s: started.elapsed().as_secs_f64(),
        conns: Conns::with_input(streams).map_err(io_err("making sockets non-blocking"))?,
        sessions: vec![Session::default(); users.len()],
        users,
        group,
    })
}

/// Registers, sets up the group and measures one round.
pub fn run(settings: &Settings) -> Result<Report> {
    let mut prepared = prepare(settings)?;
    measure(&mut prepared, settings)
}

/// Appends one group chat frame as the old client sends it (`{"msgid":10,...}` and a NUL).
pub fn group_frame(out: &mut Vec<u8>, from: &BenchUser, group: GroupId, stamp: &Stamp, time: &str) {
    push_frame(
        out,
        msgid::GROUP_CHAT,
        from,
        "groupid",
        group,
        |o| stamp.encode(o),
        time,
        Extras::NONE,
    );
}

struct GroupLoop<'a> {
    users: &'a [BenchUser],
    sessions: &'a mut [Session],
    sync: bool,
    cmid: bool,
    group: GroupId,
    senders: usize,
    window: usize,
    round: u64,
    send_until: Instant,
    end_by: Instant,
    sending: bool,
    kicked: bool,
    seq: Vec<u64>,
    /// (sender, seq) → (receivers still to get it).
    pending: HashMap<(u64, u64), usize>,
    time: String,
    last: Histogram<u64>,
    each: Histogram<u64>,
    delivered: u64,
    in_window: u64,
    completed_in_window: u64,
    odd: u64,
    errors: u64,
    first_error: Option<String>,
    disconnects: u64,
    counts: SyncCounts,
    next_recv_scan: Instant,
}

impl GroupLoop<'_> {
    fn send(&mut self, conns: &mut Conns, from: usize) {
        let stamp = Stamp {
            round: self.round,
            sender: from as u64,
            seq: self.seq[from],
            t_ns: clock_ns(),
        };
        let n = self.sessions[from].chats;
        self.sessions[from].chats += 1;
        let u = &self.users[from];
        push_frame(
            conns.out(from),
            msgid::GROUP_CHAT,
            u,
            "groupid",
            self.group,
            |o| stamp.encode(o),
            &self.time,
            Extras::of(self.sync, self.cmid, &u.name, n),
        );
        if self.sync {
            self.counts.acks_pending += 1;
        }
        self.seq[from] += 1;
        self.pending
            .insert((stamp.sender, stamp.seq), self.users.len() - 1);
    }
}

impl Scenario for GroupLoop<'_> {
    fn on_frame(&mut self, conns: &mut Conns, i: usize, frame: &[u8], now_ns: u64) {
        if self.sync {
            let conv = Conv::Group(self.group);
            let chat = msgid::GROUP_CHAT;
            if !sync_frame(&mut self.counts, self.sessions, conns, i, frame, chat, conv) {
                return;
            }
        }
        if !stamp::wanted_frame(
            frame,
            msgid::GROUP_CHAT,
            &mut self.errors,
            &mut self.first_error,
        ) {
            return;
        }
        let stamp = stamp::msg_text(frame).and_then(Stamp::decode);
        let Some(stamp) = stamp.filter(|s| s.round == self.round && s.sender != i as u64) else {
            self.odd += 1;
            return;
        };
        let Some(left) = self.pending.get_mut(&(stamp.sender, stamp.seq)) else {
            self.odd += 1;
            return;
        };
        let latency = now_ns.saturating_sub(stamp.t_ns);
        record_ns(&mut self.each, latency);
        self.delivered += 1;
        if self.sending {
            self.in_window += 1;
        }
        *left -= 1;
        if *left > 0 {
            return;
        }
        self.pending.remove(&(stamp.sender, stamp.seq));
        record_ns(&mut self.last, latency);
        let from = stamp.sender as usize;
        if self.sending {
            self.completed_in_window += 1;
            if conns.is_open(from) {
                self.send(conns, from);
            }
        }
    }

    fn on_close(&mut self, _i: usize) {
        self.disconnects += 1;
    }

    fn tick(&mut self, conns: &mut Conns, now: Instant) -> bool {
        if !self.kicked {
            self.kicked = true;
            for from in 0..self.senders {
                for _ in 0..self.window {
                    self.send(conns, from);
                }
            }
        }
        if self.sending && now >= self.send_until {
            self.sending = false;
        }
        let done = !self.sending
            && ((self.pending.is_empty() && self.counts.acks_pending == 0) || now >= self.end_by);
        if self.sync && (done || now >= self.next_recv_scan) {
            self.next_recv_scan = now + RECV_SCAN;
            flush_recvs(&mut self.counts, self.sessions, conns, now, done);
        }
        done
    }
}

impl GroupLoop<'_> {
    /// Ends a `--sync` round: every member's seq gaps up to the highest seq any member knows
    /// of, then settles them for the next round.
    fn count_gaps(&mut self) {
        let conv = Conv::Group(self.group);
        let upper = self
            .sessions
            .iter()
            .filter_map(|s| s.book.get(conv).map(|t| t.known_hi()))
            .max()
            .unwrap_or(0);
        for s in self.sessions.iter_mut() {
            let t = s.book.conv(conv);
            self.counts.lost_gaps += t.lost(upper);
            t.settle(upper);
        }
    }
}

/// Runs one measured round over the prepared group.
pub fn measure(p: &mut Prepared, settings: &Settings) -> Result<Report> {
    let server_before = ProcSample::read_all(&settings.server_pids)
        .map_err(io_err("reading the server's /proc"))?;
    let mut redis = RedisWatch::open(settings)?;
    let redis_before = redis.as_mut().map(RedisWatch::read).transpose()?;
    let cpu_before = self_cpu_us();
    let start = Instant::now();
    let mut l = GroupLoop {
        users: &p.users,
        sessions: &mut p.sessions,
        sync: settings.sync,
        cmid: settings.cmid,
        group: p.group,
        senders: settings.senders.clamp(1, p.users.len()),
        window: settings.window.max(1),
        round: settings.round,
        send_until: start + settings.duration,
        end_by: start + settings.duration + settings.grace,
        sending: true,
        kicked: false,
        seq: vec![0; p.users.len()],
        pending: HashMap::new(),
        time: clusterchat_proto::clock::now(),
        last: new_histogram(),
        each: new_histogram(),
        delivered: 0,
        in_window: 0,
        completed_in_window: 0,
        odd: 0,
        errors: 0,
        first_error: None,
        disconnects: 0,
        counts: SyncCounts::default(),
        next_recv_scan: start,
    };
    drive(
        &mut p.conns,
        &mut l,
        start + settings.timeout,
        settings.ping_every,
    )?;
    if l.sync {
        l.count_gaps();
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu_after = self_cpu_us();
    let server_after = ProcSample::read_all(&settings.server_pids)
        .map_err(io_err("reading the server's /proc"))?;
    let redis_after = redis.as_mut().map(RedisWatch::read).transpose()?;
    let receivers = p.users.len() as u64 - 1;
    let msgs_sent: u64 = l.seq.iter().sum();
    let secs = settings.duration.as_secs_f64().max(1e-9);
    let mut r = Report {
        scenario: "group".into(),
        targets: settings.target_names(),
        layout: settings.layout_name(),
        users: p.users.len() as u64,
        window: l.window as u64,
        setup_s: p.setup_s,
        duration_s: settings.duration.as_secs_f64(),
        sent: msgs_sent * receivers,
        delivered: l.delivered,
        msgs_per_sec: l.in_window as f64 / secs,
        latency_us: Latency::from_histogram(&l.last),
        errors: l.errors,
        disconnects: l.disconnects,
        ..Report::default()
    };
    r.lost = r.sent.saturating_sub(r.delivered);
    let each = Latency::from_histogram(&l.each);
    r.extra.insert("senders".into(), l.senders as f64);
    r.extra.insert("group_msgs_sent".into(), msgs_sent as f64);
    r.extra.insert(
        "group_msgs_per_sec".into(),
        l.completed_in_window as f64 / secs,
    );
    r.extra.insert("delivery_p50_us".into(), each.p50 as f64);
    r.extra.insert("delivery_p99_us".into(), each.p99 as f64);
    if l.odd > 0 {
        r.extra.insert("unexpected_msgs".into(), l.odd as f64);
    }
    r.notes
        .extend(l.first_error.map(|e| format!("error reply: {e}")));
    if settings.sync {
        let counts = l.counts;
        counts.report(&mut r, &p.sessions.iter().collect::<Vec<_>>());
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
