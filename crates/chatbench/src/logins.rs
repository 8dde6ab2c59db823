//! `logins`: registrations per second, then logins per second, each for the duration with C
//! concurrent blocking clients. Both are dominated by the server's argon2 hashing, which is
//! the point: it shows how many accounts the server can create or admit per second.
//! Registrations reuse one connection per client; each login opens a fresh connection (as a
//! real client does) and closes it after the reply (with `--sync`: a sync login, closed after
//! its LOGIN_ACK).

use crate::procstat::{self_cpu_us, ProcSample};
use crate::report::{new_histogram, record_ns, Latency, Report};
use crate::setup::{connect, login_raw, login_stream, unique_prefix, BenchUser, PASSWORD};
use crate::stamp::clock_ns;
use crate::{io_err, Result, Settings};
use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What one timed phase produced.
struct Phase {
    ok: u64,
    failed: u64,
    hist: Histogram<u64>,
    first_error: Option<String>,
    secs: f64,
}

/// Runs `op(thread, n)` on `threads` threads until `until`, timing each call.
fn timed_phase<T: Send>(
    threads: usize,
    until: Instant,
    op: impl Fn(usize, u64) -> Result<T> + Sync,
    keep: &Mutex<Vec<T>>,
) -> Phase {
    let start = Instant::now();
    let phase = Mutex::new(Phase {
        ok: 0,
        failed: 0,
        hist: new_histogram(),
        first_error: None,
        secs: 0.0,
    });
    std::thread::scope(|s| {
        for t in 0..threads.max(1) {
            let (phase, op) = (&phase, &op);
            s.spawn(move || {
                let mut n = 0;
                while Instant::now() < until {
                    let t0 = clock_ns();
                    let r = op(t, n);
                    let dt = clock_ns() - t0;
                    n += 1;
                    let mut p = phase.lock().expect("not poisoned");
                    match r {
                        Ok(v) => {
                            p.ok += 1;
                            record_ns(&mut p.hist, dt);
                            drop(p);
                            keep.lock().expect("not poisoned").push(v);
                        }
                        Err(e) => {
                            p.failed += 1;
                            p.first_error.get_or_insert(e.to_string());
                        }
                    }
                }
            });
        }
    });
    let mut p = phase.into_inner().expect("not poisoned");
    p.secs = start.elapsed().as_secs_f64();
    p
}

/// Measures registrations/s, then logins/s (of the users just registered).
pub fn run(settings: &Settings) -> Result<Report> {
    let server_before = ProcSample::read_all(&settings.server_pids)
        .map_err(io_err("reading the server's /proc"))?;
    let cpu_before = self_cpu_us();
    let start = Instant::now();
    let c = settings.concurrency.max(1);
    let prefix = unique_prefix();
    let clients: Vec<Mutex<Option<clusterchat_proto::client::Client>>> =
        (0..c).map(|_| Mutex::new(None)).collect();
    let registered = Mutex::new(Vec::new());
    let reg = timed_phase(
        c,
        start + settings.duration,
        |t, n| {
            let target = settings.targets[t % settings.targets.len()];
            let mut slot = clients[t].lock().expect("not poisoned");
            if slot.is_none() {
                *slot = Some(connect(target)?);
            }
            let client = slot.as_mut().expect("just connected");
            let name = format!("{prefix}-{t}-{n}");
            match client.register(&name, PASSWORD) {
                Ok(id) => Ok(BenchUser { id, name, target }),
                Err(e) => {
                    *slot = None;
                    Err(crate::client_err("registering")(e))
                }
            }
        },
        &registered,
    );
    drop(clients);
    let users = registered.into_inner().expect("not poisoned");
    let next = AtomicUsize::new(0);
    let logged = Mutex::new(Vec::new());
    let login_start = Instant::now();
    let login = if users.is_empty() {
        None
    } else {
        Some(timed_phase(
            c,
            login_start + settings.duration,
            |_, _| {
                let u = &users[next.fetch_add(1, Ordering::Relaxed) % users.len()];
                if settings.sync {
                    let s =
                        std::net::TcpStream::connect_timeout(&u.target, Duration::from_secs(10))
                            .map_err(io_err(format!("connecting to {}", u.target)))?;
                    login_raw(s, u, true, Duration::from_secs(10)).map(drop)
                } else {
                    login_stream(connect(u.target)?, u).map(drop)
                }
            },
            &logged,
        ))
    };
    let wall = start.elapsed().as_secs_f64();
    let cpu_after = self_cpu_us();
    let server_after = ProcSample::read_all(&settings.server_pids)
        .map_err(io_err("reading the server's /proc"))?;

    let mut r = Report {
        scenario: "logins".into(),
        targets: settings.target_names(),
        users: users.len() as u64,
        duration_s: settings.duration.as_secs_f64(),
        ..Report::default()
    };
    r.extra.insert("concurrency".into(), c as f64);
    r.extra.insert("registrations".into(), reg.ok as f64);
    r.extra.insert(
        "registrations_per_sec".into(),
        reg.ok as f64 / reg.secs.max(1e-9),
    );
    let reg_lat = Latency::from_histogram(&reg.hist);
    r.extra.insert("register_p50_us".into(), reg_lat.p50 as f64);
    r.extra.insert("register_p99_us".into(), reg_lat.p99 as f64);
    r.sent = reg.ok + reg.failed;
    r.delivered = reg.ok;
    r.lost = reg.failed;
    r.notes
        .extend(reg.first_error.map(|e| format!("registration failed: {e}")));
    if let Some(l) = login {
        r.extra.insert("logins".into(), l.ok as f64);
        r.extra
            .insert("logins_per_sec".into(), l.ok as f64 / l.secs.max(1e-9));
        r.latency_us = Latency::from_histogram(&l.hist);
        r.sent += l.ok + l.failed;
        r.delivered += l.ok;
        r.lost += l.failed;
        r.notes
            .extend(l.first_error.map(|e| format!("login failed: {e}")));
    }
    r.msgs_per_sec = r.delivered as f64 / wall.max(1e-9);
    r.errors = r.lost;
    if !settings.server_pids.is_empty() {
        r.set_server(&server_before, &server_after);
    }
    r.set_bench_cpu(cpu_before, cpu_after, wall);
    Ok(r)
}
