//! Smoke test of chatbench's scenarios against a real chatserver: each runs about a second
//! with few users through the library API; the checks are on counts (figures produced,
//! nothing lost), never on timings.

use clusterchat::bench::compare::{run_compare, run_once, Kind};
use clusterchat::bench::Settings;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A chatserver child process on a free port with its own temporary database.
struct Server {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite:{}", dir.path().join("chat.db").display());
        let mut child = Command::new(env!("CARGO_BIN_EXE_chatserver"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--db",
                &db,
                "--argon2-m-kib",
                "64",
            ])
            .args(["--log-level", "info"])
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("chatserver starts");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("chatserver said where it listens")
                .unwrap();
            if let Some(rest) = line.split("listening on ").nth(1) {
                break rest.split_whitespace().next().unwrap().parse().unwrap();
            }
        };
        // Keep draining the log so the server never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Server {
            child,
            addr,
            _dir: dir,
        }
    }

    fn settings(&self) -> Settings {
        Settings {
            targets: vec![self.addr],
            users: 6,
            window: 4,
            duration: Duration::from_millis(1000),
            grace: Duration::from_secs(5),
            timeout: Duration::from_secs(60),
            threads: 2,
            concurrency: 4,
            senders: 2,
            server_pids: vec![self.child.id()],
            ..Settings::default()
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn pairs_deliver_everything_and_report_server_figures() {
    let server = Server::start();
    let r = run_once(Kind::Pairs, &server.settings()).unwrap();
    assert_eq!(r.users, 6);
    assert!(r.sent > 0 && r.delivered == r.sent, "{}", r.table());
    assert_eq!(r.lost, 0, "{}", r.table());
    assert_eq!(r.errors, 0, "{}", r.table());
    assert!(r.msgs_per_sec > 0.0 && r.latency_us.max > 0);
    assert!(r.server_cpu_us_per_msg.is_some() && r.server_rss_bytes.unwrap() > 0);
    let json = serde_json::to_value(&r).unwrap();
    assert!(json["latency_us"]["p999"].is_u64());
}

#[test]
fn group_fans_out_to_every_member() {
    let server = Server::start();
    let r = run_once(Kind::Group, &server.settings()).unwrap();
    assert!(r.sent > 0, "{}", r.table());
    assert_eq!(r.sent % 5, 0, "each message goes to the 5 other members");
    assert_eq!((r.lost, r.errors), (0, 0), "{}", r.table());
    assert_eq!(r.delivered, r.sent);
}

#[test]
fn idle_holds_every_connection() {
    let server = Server::start();
    let settings = Settings {
        users: 20,
        ..server.settings()
    };
    let r = run_once(Kind::Idle, &settings).unwrap();
    assert_eq!(r.extra["connections_held"], 20.0, "{}", r.table());
    assert_eq!(r.lost, 0);
    assert!(r.extra.contains_key("server_rss_per_conn_bytes"));
}

#[test]
fn logins_register_and_log_in() {
    let server = Server::start();
    let r = run_once(Kind::Logins, &server.settings()).unwrap();
    assert!(
        r.extra["registrations"] > 0.0 && r.extra["logins"] > 0.0,
        "{}",
        r.table()
    );
    assert_eq!(r.lost, 0, "{}", r.table());
}

#[test]
fn compare_alternates_two_servers() {
    let (a, b) = (Server::start(), Server::start());
    let sa = Settings {
        users: 2,
        duration: Duration::from_millis(300),
        ..a.settings()
    };
    let sb = Settings {
        targets: vec![b.addr],
        server_pids: vec![b.child.id()],
        ..sa.clone()
    };
    let cmp = run_compare(Kind::Pairs, &sa, &sb, 2).unwrap();
    assert_eq!((cmp.a.len(), cmp.b.len()), (2, 2));
    assert!(cmp
        .a
        .iter()
        .chain(&cmp.b)
        .all(|r| r.lost == 0 && r.delivered > 0));
    assert!(cmp.ratios["msgs_per_sec"].ratio.is_some());
}
