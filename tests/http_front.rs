//! The HTTP front (`--http`): health, the embedded web client, 404/405/HEAD, keep-alive,
//! `/api/cluster` on a server alone and on a two-server cluster, and `--http` itself (a port
//! taken is one clear line and exit 1).

mod util;

use serde_json::{json, Value};
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};
use util::cluster::TestCluster;
use util::server::TestServer;
use util::ws::{http_get, http_raw, read_response};

#[test]
fn healthz_answers_ok() {
    let srv = TestServer::start();
    let r = http_get(srv.http.unwrap(), "/healthz");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"ok\n"[..]));
}

#[test]
fn the_root_is_the_embedded_web_client() {
    let srv = TestServer::start();
    let http = srv.http.unwrap();
    let r = http_get(http, "/");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let on_disk = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/web/index.html")).unwrap();
    assert_eq!(r.body, on_disk, "the body is web/index.html as built in");
    assert_eq!(http_get(http, "/index.html?v=1").body, on_disk);
}

#[test]
fn unknown_paths_404_other_methods_405_and_head_has_no_body() {
    let srv = TestServer::start();
    let http = srv.http.unwrap();
    assert_eq!(http_get(http, "/no/such/file.js").status, 404);
    assert_eq!(http_get(http, "/../Cargo.toml").status, 404);
    let r = http_raw(
        http,
        b"POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi",
    );
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD")));
    let mut s = TcpStream::connect(http).unwrap();
    s.write_all(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let r = read_response(&mut s, true);
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-length")
            .unwrap()
            .parse::<usize>()
            .unwrap()
            > 0
    );
    assert!(r.body.is_empty(), "HEAD: no body");
    // Keep-alive: the same connection answers again, pipelined requests in order.
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\nGET /nope HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut s, false).status, 200);
    assert_eq!(read_response(&mut s, false).status, 404);
}

#[test]
fn metrics_are_served_in_the_prometheus_text_format() {
    let srv = TestServer::start();
    let r = http_get(srv.http.unwrap(), "/metrics");
    assert_eq!(r.status, 200);
    let content_type = r.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let body = String::from_utf8_lossy(&r.body);
    assert!(
        body.contains("# TYPE clusterchat_connections_open gauge"),
        "{body}"
    );
}

/// GETs `/api/cluster` until `done` accepts it (the snapshot is up to a second old).
fn cluster_until(http: std::net::SocketAddr, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = http_get(http, "/api/cluster");
        assert_eq!(
            (r.status, r.header("content-type")),
            (200, Some("application/json"))
        );
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        if done(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "never: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn api_cluster_on_a_server_alone_counts_its_users() {
    let srv = TestServer::builder().args(&["--node-id", "solo"]).start();
    let http = srv.http.unwrap();
    let v = cluster_until(http, |v| v["servers"][0]["online"] == 0);
    assert_eq!(
        v,
        json!({"node": "solo", "servers": [{"node": "solo", "online": 0, "self": true}]})
    );
    let (_a, _) = srv.user("a");
    let (_b, _) = util::ws::ws_user(&srv, "b");
    let v = cluster_until(http, |v| v["servers"][0]["online"] == 2);
    assert_eq!(v["servers"].as_array().unwrap().len(), 1);
    // A sync login's reply names the server too (the web client's "connected to").
    let c = util::faults::register(srv.addr, "c");
    let (_c, ack) = util::chatlog::sync_login(srv.addr, c, &util::chatlog::pw("c"));
    assert_eq!(ack["node"], "solo", "{ack}");
}

#[test]
fn api_cluster_on_two_servers_lists_both_with_their_users() {
    let Some(cluster) = TestCluster::start("http_api_cluster", 2) else {
        return;
    };
    let (s0, s1) = (&cluster.servers[0], &cluster.servers[1]);
    let _u0 = s0.user("u0");
    let _u1 = s1.user("u1");
    let _u2 = util::ws::ws_user(s1, "u2");
    let h0 = s0.http.unwrap();
    let v = cluster_until(h0, |v| {
        v["servers"].as_array().is_some_and(|s| {
            s.len() == 2 && s.iter().map(|x| x["online"].as_u64().unwrap()).sum::<u64>() == 3
        })
    });
    let me = v["node"].as_str().unwrap().to_string();
    let servers = v["servers"].as_array().unwrap();
    let this: Vec<_> = servers.iter().filter(|s| s["self"] == true).collect();
    assert_eq!(this.len(), 1);
    assert_eq!(
        (this[0]["node"].as_str(), this[0]["online"].as_u64()),
        (Some(me.as_str()), Some(1))
    );
    let other = servers.iter().find(|s| s["self"] == false).unwrap();
    assert_eq!(other["online"], 2);
    // The other server says the same, from its side.
    let v1 = cluster_until(cluster.servers[1].http.unwrap(), |v| {
        v["servers"].as_array().is_some_and(|s| s.len() == 2)
    });
    assert_eq!(v1["node"], other["node"]);
}

#[test]
fn a_taken_http_port_is_one_line_and_exit_1() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_chatserver"))
        .args(["--listen", "127.0.0.1:0", "--http", &addr])
        .arg("--db")
        .arg(format!("sqlite:{}", dir.path().join("c.db").display()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot listen on {addr} (--http)")),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    // And `--http off` starts without one.
    let srv = TestServer::builder().args(&["--http", "off"]).start();
    assert!(srv.http.is_none());
}

/// The HTTP port shares the chat port's limits: connections without a login count together
/// per address, and an idle HTTP connection is closed by the login timeout.
#[test]
fn http_connections_share_the_chat_ports_limits() {
    let srv = TestServer::builder()
        .args(&["--max-unauth-per-ip", "2", "--login-timeout", "1"])
        .start();
    let http = srv.http.unwrap();
    let _chat1 = TcpStream::connect(srv.addr).unwrap();
    let _chat2 = TcpStream::connect(srv.addr).unwrap();
    // (One acceptor takes the listeners in order, chat port first: both are counted first.)
    let mut third = TcpStream::connect(http).unwrap();
    let _ = third.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(
        util::ws::closed_by_peer(&mut third),
        "a third connection without a login from the address is closed at once"
    );
    drop((_chat1, _chat2));
    // Once the login timeout has closed the chat connections, HTTP is served again; and an
    // idle keep-alive HTTP connection is itself closed by the login timeout.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut s = loop {
        let mut s = TcpStream::connect(http).unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut first = [0u8; 1];
        if matches!(std::io::Read::read(&mut s, &mut first), Ok(1)) {
            break s;
        }
        assert!(Instant::now() < deadline, "HTTP never served again");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        util::ws::closed_by_peer(&mut s),
        "an idle HTTP connection is closed"
    );
}
