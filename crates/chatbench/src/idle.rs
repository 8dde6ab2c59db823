//! `idle`: log in N users and hold them idle, to measure what an idle connection costs the
//! server (RSS per connection, threads) and how long N logins take.
//!
//! One source address has ~28k ephemeral ports, so against a loopback target the connections
//! are bound (before connect, with `socket2`) to 127.0.0.1, 127.0.0.2, … in turn. Every socket
//! is a file descriptor here too, so N is capped at the open-file limit (raised from soft to
//! hard at start) minus a margin, and the report says so. With `--sync` the logins are sync
//! sessions (each gets a SYNC_DONE, counted).

use crate::conn::{drive, Conns, Scenario};
use crate::procstat::{raise_nofile_limit, self_cpu_us, ProcSample};
use crate::report::{new_histogram, record_ns, Latency, Report};
use crate::setup::{login_raw, login_stream, parallel, register_users};
use crate::stamp::clock_ns;
use crate::{client_err, io_err, Result, Settings};
use clusterchat_proto::client::Client;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// File descriptors kept free besides the held sockets (std streams, /proc reads, setup).
const FD_MARGIN: u64 = 64;

/// How many connections fit under an open-file `limit` when `concurrency` logins run at once
/// (a login in progress holds up to three descriptors).
pub fn max_connections(limit: u64, concurrency: usize) -> usize {
    limit.saturating_sub(FD_MARGIN + 3 * concurrency as u64) as usize
}

/// The source address of connection `i`: 127.0.0.1..=127.0.0.`count` in turn for a loopback
/// target, none (the kernel's choice) otherwise.
pub fn source_addr(target: SocketAddr, i: usize, count: usize) -> Option<IpAddr> {
    match target.ip() {
        IpAddr::V4(ip) if ip.is_loopback() && count > 1 => {
            Some(Ipv4Addr::new(127, 0, 0, 1 + (i % count.min(254)) as u8).into())
        }
        _ => None,
    }
}

/// Connects to `target`, bound to `source` first when given.
pub fn connect_from(target: SocketAddr, source: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let sock = Socket::new(
        Domain::for_address(target),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    if let Some(ip) = source {
        // Let connect() pick the port per 4-tuple instead of bind() reserving one: best effort.
        let one: libc::c_int = 1;
        // SAFETY: a valid socket, option value and length.
        unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        sock.bind(&SockAddr::from(SocketAddr::new(ip, 0)))?;
    }
    sock.connect_timeout(&SockAddr::from(target), Duration::from_secs(10))?;
    Ok(sock.into())
}

/// Holds the connections, counting the ones the server closes (and, for sync sessions,
/// their SYNC_DONE).
struct Hold {
    until: Instant,
    closed: u64,
    frames: u64,
    sync_done: u64,
}

impl Scenario for Hold {
    fn on_frame(&mut self, _conns: &mut Conns, _i: usize, frame: &[u8], _now_ns: u64) {
        if crate::stamp::msgid(frame) == Some(clusterchat_proto::msgid::SYNC_DONE) {
            self.sync_done += 1;
        } else {
            self.frames += 1;
        }
    }
    fn on_close(&mut self, _i: usize) {
        self.closed += 1;
    }
    fn tick(&mut self, _conns: &mut Conns, now: Instant) -> bool {
        now >= self.until
    }
}

/// Registers N users (setup), logs them all in (timed), holds them for the duration and
/// reports connections held, login time and the server's memory and threads.
pub fn run(settings: &Settings) -> Result<Report> {
    let started = Instant::now();
    let deadline = started + settings.timeout;
    let limit = raise_nofile_limit();
    let cap = max_connections(limit, settings.concurrency);
    let mut notes = Vec::new();
    let n = if settings.users > cap {
        notes.push(format!(
            "--users capped from {} to {cap}: open-file limit {limit} minus a margin",
            settings.users
        ));
        cap
    } else {
        settings.users
    };
    let users = register_users(&settings.targets, n, settings.concurrency, deadline)?;
    let setup_s = started.elapsed().as_secs_f64();

    let server_before = ProcSample::read_all(&settings.server_pids)
        .map_err(io_err("reading the server's /proc"))?;
    let cpu_before = self_cpu_us();
    let login_start = Instant::now();
    let hist = Mutex::new(new_histogram());
    let streams = parallel(n, settings.concurrency, deadline, |i| {
        let u = &users[i];
        let t0 = clock_ns();
        let source = source_addr(u.target, i, settings.source_addrs);
        let stream = connect_from(u.target, source)
            .map_err(io_err(format!("connecting {} from {source:?}", u.name)))?;
        let s = if settings.sync {
            let (s, rest, _) = login_raw(stream, u, true, Duration::from_secs(10))?;
            (s, rest)
        } else {
            let client = Client::from_stream(stream).map_err(client_err("setting up a client"))?;
            (login_stream(client.use_nul(), u)?, Vec::new())
        };
        record_ns(&mut hist.lock().expect("not poisoned"), clock_ns() - t0);
        Ok(s)
    })?;
    let login_s = login_start.elapsed().as_secs_f64();
    let server_logged_in = ProcSample::read_all(&settings.server_pids)
        .map_err(io_err("reading the server's /proc"))?;

    let mut conns = Conns::with_input(streams).map_err(io_err("making sockets non-blocking"))?;
    let mut hold = Hold {
        until: Instant::now() + settings.duration,
        closed: 0,
        frames: 0,
        sync_done: 0,
    };
    drive(&mut conns, &mut hold, deadline, settings.ping_every)?;
    let wall = login_start.elapsed().as_secs_f64();
    let cpu_after = self_cpu_us();
    let server_after = ProcSample::read_all(&settings.server_pids)
        .map_err(io_err("reading the server's /proc"))?;

    let held = n as u64 - hold.closed;
    let mut r = Report {
        scenario: "idle".into(),
        targets: settings.target_names(),
        users: n as u64,
        setup_s,
        duration_s: settings.duration.as_secs_f64(),
        sent: n as u64,
        delivered: held,
        lost: hold.closed,
        latency_us: Latency::from_histogram(&hist.into_inner().expect("not poisoned")),
        disconnects: hold.closed,
        notes,
        ..Report::default()
    };
    r.extra.insert("connections_held".into(), held as f64);
    r.extra.insert("login_s".into(), login_s);
    r.extra
        .insert("logins_per_sec".into(), n as f64 / login_s.max(1e-9));
    r.extra.insert("nofile_limit".into(), limit as f64);
    if settings.sync {
        r.extra
            .insert("sync_done_users".into(), hold.sync_done as f64);
    }
    if conns.pongs() > 0 {
        r.extra.insert("pongs".into(), conns.pongs() as f64);
    }
    if hold.frames > 0 {
        r.extra
            .insert("unexpected_frames".into(), hold.frames as f64);
    }
    if !settings.server_pids.is_empty() {
        r.set_server(&server_before, &server_after);
        r.extra.insert(
            "server_rss_before_logins_bytes".into(),
            server_before.rss_bytes as f64,
        );
        let grown = server_after.rss_bytes as f64 - server_before.rss_bytes as f64;
        r.extra.insert(
            "server_rss_per_conn_bytes".into(),
            grown / (held.max(1) as f64),
        );
        let login_cpu = server_logged_in.cpu_us.saturating_sub(server_before.cpu_us) as f64;
        r.extra.insert(
            "server_cpu_us_per_login".into(),
            login_cpu / (n.max(1) as f64),
        );
    }
    r.set_bench_cpu(cpu_before, cpu_after, wall);
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_sources() {
        assert_eq!(max_connections(20_000, 8), 20_000 - 64 - 24);
        assert_eq!(max_connections(10, 8), 0);
        let lo: SocketAddr = "127.0.0.1:6000".parse().unwrap();
        assert_eq!(source_addr(lo, 0, 4), Some("127.0.0.1".parse().unwrap()));
        assert_eq!(source_addr(lo, 5, 4), Some("127.0.0.2".parse().unwrap()));
        assert_eq!(source_addr(lo, 5, 1), None);
        assert_eq!(source_addr("10.0.0.1:6000".parse().unwrap(), 5, 4), None);
    }

    #[test]
    fn bound_connections_come_from_the_source() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let target = listener.local_addr().unwrap();
        let s = connect_from(target, source_addr(target, 2, 4)).unwrap();
        assert_eq!(s.local_addr().unwrap().ip().to_string(), "127.0.0.3");
        let (_peer, from) = listener.accept().unwrap();
        assert_eq!(from.ip().to_string(), "127.0.0.3");
    }
}
