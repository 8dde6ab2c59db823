//! `/metrics`: real traffic moves the Prometheus counters by exactly what it did. A server
//! runs with its HTTP front on an ephemeral port; clients register, log in (one with a wrong
//! password, then too soon again), chat one to one and in a group; `GET /metrics` is read
//! over plain HTTP, parsed with a Prometheus text parser, and every counter is checked
//! against the traffic (counts, never timings).

mod util;

use clusterchat_proto::client::{Client, ClientError};
use clusterchat_proto::{errno, msgid};
use prometheus_parse::{Scrape, Value};
use std::cell::RefCell;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// The server under test and the way to read its metrics.
struct Server {
    running: Option<clusterchat::server::RunningServer>,
    /// The connection `scrape` keeps alive.
    http: RefCell<Option<BufReader<TcpStream>>>,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start(args: &[&str]) -> Server {
        use clap::Parser;
        let dir = tempfile::tempdir().expect("temp dir");
        let db = format!("sqlite:{}", dir.path().join("chat.db").display());
        let mut argv = vec!["chatserver", "--listen", "127.0.0.1:0", "--db", &db];
        argv.extend_from_slice(&["--http", "127.0.0.1:0"]);
        argv.extend_from_slice(args);
        let config = clusterchat::config::Config::parse_from(argv);
        let running = clusterchat::server::RunningServer::start(&config).expect("server starts");
        Server {
            running: Some(running),
            http: RefCell::new(None),
            _dir: dir,
        }
    }

    fn client(&self) -> Client {
        let addr = self.running.as_ref().expect("running").local_addr();
        Client::connect(addr).expect("connect")
    }

    /// `GET /metrics` over HTTP (one kept-alive connection for the whole test, so that the
    /// scrapes do not change the connection counts they read), parsed.
    fn scrape(&self) -> Scrape {
        let mut http = self.http.borrow_mut();
        let http = http.get_or_insert_with(|| {
            let addr = self.running.as_ref().expect("running").http_addr();
            let stream = TcpStream::connect(addr.expect("an HTTP front")).expect("connect");
            stream
                .set_read_timeout(Some(Duration::from_secs(20)))
                .unwrap();
            BufReader::new(stream)
        });
        http.get_mut()
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")
            .expect("request");
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            http.read_line(&mut line).expect("response head");
            if line.trim_end().is_empty() {
                break;
            }
            head.push(line.trim_end().to_ascii_lowercase());
        }
        assert!(head[0].starts_with("http/1.1 200"), "{head:?}");
        let content_type = "content-type: text/plain; version=0.0.4";
        assert!(head.iter().any(|h| h.starts_with(content_type)), "{head:?}");
        let length: usize = head
            .iter()
            .find_map(|h| h.strip_prefix("content-length:"))
            .and_then(|n| n.trim().parse().ok())
            .expect("a Content-Length");
        let mut body = vec![0; length];
        http.read_exact(&mut body).expect("response body");
        let body = String::from_utf8(body).expect("UTF-8");
        Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).expect("Prometheus text")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.running.take() {
            s.stop();
        }
    }
}

/// The value of counter or gauge `name` with `label` (`key`, `value`), if it is there once.
fn value(s: &Scrape, name: &str, label: Option<(&str, &str)>) -> Option<f64> {
    let found: Vec<f64> = s
        .samples
        .iter()
        .filter(|x| x.metric == name)
        .filter(|x| label.is_none_or(|(k, v)| x.labels.get(k) == Some(v)))
        .filter_map(|x| match x.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(v),
            _ => None,
        })
        .collect();
    (found.len() == 1).then(|| found[0])
}

/// Waits until `name{label}` reads `want` (counters that move on another thread after the
/// client saw its reply), then asserts it: a wrong count fails after the wait.
fn expect(srv: &Server, name: &str, label: Option<(&str, &str)>, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = value(&srv.scrape(), name, label);
        if got == Some(want) || Instant::now() >= deadline {
            assert_eq!(got, Some(want), "{name} {label:?}");
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn traffic_moves_the_counters_by_what_it_did() {
    let srv = Server::start(&["--max-login-failures", "1", "--login-delay", "60"]);
    expect(&srv, "clusterchat_logins_succeeded_total", None, 0.0);
    let user = |name: &str| {
        let mut c = srv.client();
        let id = c.register(name, "pw").expect("register");
        c.login(id, "pw").expect("login");
        (c, id)
    };
    let (mut ann, a) = user("ann");
    let (mut bob, b) = user("bob");
    let (mut cyd, c) = user("cyd");
    // One user over the WebSocket front.
    let http_addr = srv.running.as_ref().expect("running").http_addr();
    let mut dee = util::ws::ws_client(http_addr.expect("an HTTP front"));
    let d = dee.register("dee", "pw").expect("register");
    dee.login(d, "pw").expect("login");
    // A wrong password, then (one failure allowed) a refusal before any hashing.
    let mut stranger = srv.client();
    for want in [errno::BAD_CREDENTIALS, errno::RATE_LIMITED] {
        match stranger.login(c, "wrong") {
            Err(ClientError::Refused { errno, .. }) => assert_eq!(errno, want),
            other => panic!("expected errno {want}, got {other:?}"),
        }
    }
    ann.chat(a, b, "hi bob").expect("chat");
    let got = bob.recv_msgid(msgid::ONE_CHAT).expect("bob's chat");
    assert_eq!(got["msg"], "hi bob");
    let g = ann.create_group(a, "metrics", "").expect("group");
    bob.join_group(b, g).expect("join");
    cyd.join_group(c, g).expect("join");
    dee.join_group(d, g).expect("join");
    ann.group_chat(a, g, "hi all").expect("group chat");
    for client in [&mut bob, &mut cyd, &mut dee] {
        let got = client.recv_msgid(msgid::GROUP_CHAT).expect("group chat");
        assert_eq!(got["msg"], "hi all");
    }

    let one = Some(("kind", "one"));
    let group = Some(("kind", "group"));
    expect(&srv, "clusterchat_messages_received_total", one, 1.0);
    expect(&srv, "clusterchat_messages_received_total", group, 1.0);
    expect(&srv, "clusterchat_messages_stored_total", one, 1.0);
    expect(&srv, "clusterchat_messages_stored_total", group, 1.0);
    expect(&srv, "clusterchat_messages_delivered_total", one, 1.0);
    expect(&srv, "clusterchat_messages_delivered_total", group, 3.0);
    expect(
        &srv,
        "clusterchat_delivery_latency_seconds_count",
        None,
        4.0,
    );
    expect(&srv, "clusterchat_logins_succeeded_total", None, 4.0);
    let failed = "clusterchat_logins_failed_total";
    expect(&srv, failed, Some(("reason", "bad_password")), 1.0);
    expect(&srv, failed, Some(("reason", "rate_limited")), 1.0);
    expect(&srv, failed, Some(("reason", "already_online")), 0.0);
    expect(&srv, "clusterchat_users_logged_in", None, 4.0);
    let tcp = Some(("transport", "tcp"));
    expect(&srv, "clusterchat_connections_open", tcp, 4.0);
    expect(
        &srv,
        "clusterchat_connections_open",
        Some(("transport", "websocket")),
        1.0,
    );
    // The scrapes' connection is the one HTTP connection; both ports' are accepted.
    let http = Some(("transport", "http"));
    expect(&srv, "clusterchat_connections_open", http, 1.0);
    expect(&srv, "clusterchat_connections_accepted_total", None, 6.0);
    expect(&srv, "clusterchat_db_errors_total", None, 0.0);
    expect(&srv, "clusterchat_bus_errors_total", None, 0.0);

    // A connection that closes and a user who leaves are seen at the next scrape.
    drop(stranger);
    drop(cyd);
    expect(&srv, "clusterchat_connections_open", tcp, 2.0);
    expect(&srv, "clusterchat_users_logged_in", None, 3.0);
    let s = srv.scrape();
    let pool_max = value(&s, "clusterchat_db_pool_max_connections", None);
    assert_eq!(pool_max, Some(8.0), "the default --db-pool");
}

#[test]
fn refused_connections_are_counted_by_reason() {
    // One connection without a login per address: a second from 127.0.0.2 is refused, while
    // the scrapes come from 127.0.0.1 (one connection).
    let srv = Server::start(&["--max-unauth-per-ip", "1"]);
    let chat = srv.running.as_ref().expect("running").local_addr();
    let _first = util::from_addr::client_from("127.0.0.2", chat);
    let tcp = Some(("transport", "tcp"));
    expect(&srv, "clusterchat_connections_open", tcp, 1.0);
    // The second is accepted and closed at once: the client reads end of file.
    let mut second = util::from_addr::client_from("127.0.0.2", chat);
    second
        .set_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    assert!(second.recv().is_err(), "closed at once");
    let refused = "clusterchat_connections_refused_total";
    expect(&srv, refused, Some(("reason", "address")), 1.0);
    expect(&srv, refused, Some(("reason", "full")), 0.0);
    expect(&srv, "clusterchat_connections_open", tcp, 1.0);
}

/// Waits until `name` reads at least `least` and returns what it read (an outage's errors
/// keep coming while the housekeeper retries: only a lower bound is certain).
fn at_least(srv: &Server, name: &str, least: f64) -> Option<f64> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = value(&srv.scrape(), name, None);
        if got.is_some_and(|v| v >= least) || Instant::now() >= deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_bus_outage_is_counted_as_bus_errors() {
    // A private Redis, stopped under the server (the shared one is never touched).
    let Some(mut redis) = util::private_redis::PrivateRedis::start() else {
        return;
    };
    let url = redis.url();
    let srv = Server::start(&["--redis", &url, "--channel-prefix", "metrics-test:"]);
    let mut ann = srv.client();
    let a = ann.register("ann", "pw").expect("register");
    ann.login(a, "pw").expect("login");
    let b = srv.client().register("bob", "pw").expect("register");
    // Bob is offline here: the message is published for another server, which works.
    ann.chat(a, b, "before").expect("chat");
    expect(
        &srv,
        "clusterchat_messages_stored_total",
        Some(("kind", "one")),
        1.0,
    );
    expect(&srv, "clusterchat_bus_errors_total", None, 0.0);
    redis.stop();
    // Stored and acknowledged all the same; its publish fails.
    ann.chat(a, b, "during").expect("chat");
    let errors = at_least(&srv, "clusterchat_bus_errors_total", 1.0);
    assert!(errors.is_some_and(|e| e >= 1.0), "{errors:?}");
    expect(&srv, "clusterchat_db_errors_total", None, 0.0);
}
