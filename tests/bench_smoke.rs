//! Smoke test of chatbench's scenarios against a real chatserver: each runs about a second
//! with few users through the library API; the checks are on counts (figures produced,
//! nothing lost), never on timings. The `--sync` runs count loss by the message log's seqs.

mod util;

use chatbench::compare::{run_compare, run_once, Kind};
use chatbench::Settings;
use std::time::Duration;
use util::server::TestServer;

/// Few users, about a second of load, the server's pid sampled.
fn settings(server: &TestServer) -> Settings {
    Settings {
        targets: vec![server.addr],
        users: 6,
        window: 4,
        duration: Duration::from_millis(1000),
        grace: Duration::from_secs(5),
        timeout: Duration::from_secs(60),
        threads: 2,
        concurrency: 4,
        senders: 2,
        server_pids: vec![server.pid()],
        ..Settings::default()
    }
}

#[test]
fn pairs_deliver_everything_and_report_server_figures() {
    let server = TestServer::start();
    let r = run_once(Kind::Pairs, &settings(&server)).unwrap();
    assert_eq!(r.users, 6);
    assert!(r.sent > 0 && r.delivered == r.sent, "{}", r.table());
    assert_eq!(r.lost, 0, "{}", r.table());
    assert_eq!(r.errors, 0, "{}", r.table());
    assert!(r.msgs_per_sec > 0.0 && r.latency_us.max > 0);
    assert!(r.server_cpu_us_per_msg.is_some() && r.server_rss_bytes.unwrap() > 0);
    let json = serde_json::to_value(&r).unwrap();
    assert!(json["latency_us"]["p999"].is_u64());
}

/// `--compare-ws`: the same pairs over TCP (A) and over WebSocket (B), everything delivered
/// both ways, and B's report names its WebSocket address.
#[test]
fn pairs_over_websocket_deliver_everything() {
    let server = TestServer::start();
    let a = settings(&server);
    let b = Settings {
        ws: server.http,
        ..a.clone()
    };
    let cmp = run_compare(Kind::Pairs, &a, &b, 1).unwrap();
    for r in cmp.a.iter().chain(&cmp.b) {
        assert!(r.sent > 0 && r.delivered == r.sent, "{}", r.table());
        assert_eq!(
            (r.lost, r.errors, r.disconnects),
            (0, 0, 0),
            "{}",
            r.table()
        );
    }
    let b_json = serde_json::to_value(&cmp.b[0]).unwrap().to_string();
    assert!(b_json.contains("/ws"), "B is the WebSocket run: {b_json}");
}

#[test]
fn group_fans_out_to_every_member() {
    let server = TestServer::start();
    let r = run_once(Kind::Group, &settings(&server)).unwrap();
    assert!(r.sent > 0, "{}", r.table());
    assert_eq!(r.sent % 5, 0, "each message goes to the 5 other members");
    assert_eq!((r.lost, r.errors), (0, 0), "{}", r.table());
    assert_eq!(r.delivered, r.sent);
}

#[test]
fn idle_holds_every_connection() {
    let server = TestServer::start();
    let many = Settings {
        users: 20,
        ..settings(&server)
    };
    let r = run_once(Kind::Idle, &many).unwrap();
    assert_eq!(r.extra["connections_held"], 20.0, "{}", r.table());
    assert_eq!(r.lost, 0);
    assert!(r.extra.contains_key("server_rss_per_conn_bytes"));
}

/// Connections ping while they are held (like chatclient), so a server's heartbeat keeps
/// them; the PONGs count nowhere (not as unexpected frames).
#[test]
fn idle_connections_ping_and_outlive_the_heartbeat_timeout() {
    let server = TestServer::builder()
        .args(&["--heartbeat-timeout", "1"])
        .start();
    let pinging = Settings {
        users: 10,
        duration: Duration::from_secs(3),
        ping_every: Duration::from_millis(300),
        ..settings(&server)
    };
    let r = run_once(Kind::Idle, &pinging).unwrap();
    assert_eq!(r.extra["connections_held"], 10.0, "{}", r.table());
    assert!(r.extra["pongs"] >= 10.0, "{}", r.table());
    assert!(!r.extra.contains_key("unexpected_frames"), "{}", r.table());
}

#[test]
fn logins_register_and_log_in() {
    let server = TestServer::start();
    let r = run_once(Kind::Logins, &settings(&server)).unwrap();
    assert!(
        r.extra["registrations"] > 0.0 && r.extra["logins"] > 0.0,
        "{}",
        r.table()
    );
    assert_eq!(r.lost, 0, "{}", r.table());
}

#[test]
fn compare_alternates_two_servers() {
    let (a, b) = (TestServer::start(), TestServer::start());
    let sa = Settings {
        users: 2,
        duration: Duration::from_millis(300),
        ..settings(&a)
    };
    let sb = Settings {
        targets: vec![b.addr],
        server_pids: vec![b.pid()],
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

#[test]
fn sync_pairs_with_cmid_lose_no_seq() {
    let server = TestServer::start();
    let s = Settings {
        sync: true,
        cmid: true,
        ..settings(&server)
    };
    let r = run_once(Kind::Pairs, &s).unwrap();
    assert!(r.sent > 0 && r.delivered == r.sent, "{}", r.table());
    assert_eq!((r.lost, r.errors), (0, 0), "{}", r.table());
    assert_eq!(r.extra["dup"], 0.0, "{}", r.table());
    assert_eq!(r.extra["unreceived"], 0.0, "{}", r.table());
    assert_eq!(
        r.extra["acks"],
        r.sent as f64,
        "every chat acked: {}",
        r.table()
    );
    assert_eq!(r.extra["sync_done_users"], 6.0, "{}", r.table());
    assert!(r.extra["recv_sent"] > 0.0, "{}", r.table());
    assert!(!r.extra.contains_key("noseq_msgs"), "{}", r.table());
    assert!(r.notes.is_empty(), "{}", r.table());
}

#[test]
fn sync_group_loses_no_seq() {
    let server = TestServer::start();
    let s = Settings {
        sync: true,
        cmid: true,
        ..settings(&server)
    };
    let r = run_once(Kind::Group, &s).unwrap();
    assert!(r.sent > 0 && r.delivered == r.sent, "{}", r.table());
    assert_eq!((r.lost, r.errors), (0, 0), "{}", r.table());
    assert_eq!(r.extra["dup"], 0.0, "{}", r.table());
    assert_eq!(r.extra["sync_done_users"], 6.0, "{}", r.table());
    assert!(!r.extra.contains_key("noseq_msgs"), "{}", r.table());
}

#[test]
fn backlog_is_read_whole_by_a_sync_login() {
    let server = TestServer::start();
    let s = Settings {
        messages: 2000,
        cmid: true,
        ..settings(&server)
    };
    let r = run_once(Kind::Backlog, &s).unwrap();
    assert_eq!(
        (r.sent, r.delivered, r.lost, r.errors),
        (2000, 2000, 0, 0),
        "{}",
        r.table()
    );
    assert_eq!(r.extra["sync_done_count"], 2000.0, "{}", r.table());
    assert_eq!(r.extra["dup"], 0.0, "{}", r.table());
    assert!(!r.extra.contains_key("noseq_msgs"), "{}", r.table());
    assert!(
        r.msgs_per_sec > 0.0 && r.latency_us.max > 0,
        "{}",
        r.table()
    );
    assert!(r.extra.contains_key("server_rss_growth_bytes"));
    assert!(r.notes.is_empty(), "{}", r.table());
}
