//! TLS on the chat port (`--tls-cert`, `--tls-key`; issue 12), with a certificate made in the
//! test: the whole protocol over TLS (login, 1:1 and group chat, offline and sync delivery),
//! frames near the size limit, the output high-water mark for a reader that stops reading;
//! what is not TLS (a plain client, garbage, a handshake cut off or stalled) is closed and the
//! server keeps serving; `chatclient --tls --ca` talks to it; bad certificate files stop the
//! server with one line.

mod util;

use clusterchat_proto::client::{Client, ClientError};
use clusterchat_proto::tls::rustls;
use clusterchat_proto::{errno, msgid};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use util::chatlog::{acked_seqs, login_retrying, numbered, one_chat, read_sync, send_login};
use util::chatlog::{send_pipelined, seq, ONE_CHAT};
use util::piped_chatclient::PipedClient;
use util::tls::{self, TestCert};

/// The JSON-encoded strings of a legacy LOGIN_ACK list, decoded.
fn strings(v: &Value) -> Vec<Value> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|s| serde_json::from_str(s.as_str().expect("a JSON-encoded string")).unwrap())
                .collect()
        })
        .unwrap_or_default()
}

/// The first bytes a real TLS client sends: its ClientHello record.
fn client_hello() -> Vec<u8> {
    let config = TestCert::new().client_config();
    let name = clusterchat_proto::tls::server_name("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(config, name).unwrap();
    let mut hello = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut hello).unwrap();
    }
    assert_eq!(hello[0], 0x16, "a handshake record");
    hello
}

/// Reads until the server closes the connection (end of file or a reset), within 15 s;
/// returns what arrived. A timeout fails the test: the server kept the connection open.
fn read_until_closed(mut s: TcpStream) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return got,
            Err(e) => panic!("the server did not close the connection: {e}"),
        }
    }
}

/// Bytes the server sends a peer that is not speaking TLS: nothing, or TLS alert records
/// (content type 21), never a reply of the chat protocol.
fn assert_only_alerts(got: &[u8]) {
    let mut rest = got;
    while !rest.is_empty() {
        assert!(
            rest.len() >= 5 && rest[0] == 0x15,
            "not a TLS alert: {got:?}"
        );
        let len = u16::from_be_bytes([rest[3], rest[4]]) as usize;
        rest = &rest[(5 + len).min(rest.len())..];
    }
}

/// Waits (10 s at most) until the server's log has `count` lines containing `text`: the log
/// is collected by another thread, so a line may land a moment after what caused it.
fn wait_log(srv: &util::server::TestServer, text: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while srv.log().iter().filter(|l| l.contains(text)).count() < count {
        assert!(
            Instant::now() < deadline,
            "{count} log lines with {text:?}: {:?}",
            srv.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Registration and login over TLS still work: the server is serving.
fn still_serving(cert: &TestCert, addr: SocketAddr, name: &str) {
    let (mut c, id) = tls::user(cert, addr, name);
    let reply = c.chat(id, id, "still here").expect("chat over TLS");
    assert_eq!(reply["errno"], 0, "{reply}");
}

#[test]
fn the_protocol_over_tls_login_one_to_one_group_offline_and_sync() {
    let cert = TestCert::new();
    let srv = tls::server(&cert, &[]);
    wait_log(&srv, "with TLS", 1);
    let (mut alice, a) = tls::user(&cert, srv.addr, "alice");
    let (mut bob, b) = tls::user(&cert, srv.addr, "bob");
    // One to one, both ways.
    alice.chat(a, b, "hello over TLS").unwrap();
    assert_eq!(
        bob.recv_msgid(msgid::ONE_CHAT).unwrap()["msg"],
        "hello over TLS"
    );
    bob.chat(b, a, "hi alice").unwrap();
    let got = alice.recv_msgid(msgid::ONE_CHAT).unwrap();
    assert_eq!(
        (got["msg"].as_str(), got["id"].as_i64()),
        (Some("hi alice"), Some(b))
    );
    // A group.
    let g = alice.create_group(a, "tls-room", "encrypted").unwrap();
    bob.join_group(b, g).unwrap();
    alice.group_chat(a, g, "to the room").unwrap();
    let got = bob.recv_msgid(msgid::GROUP_CHAT).unwrap();
    assert_eq!(
        (got["msg"].as_str(), got["groupid"].as_i64()),
        (Some("to the room"), Some(g))
    );
    // Offline: bob leaves; what alice sends meanwhile comes with his next (legacy) login.
    bob.logout(b).unwrap();
    drop(bob);
    for i in 0..5 {
        alice.chat(a, b, &format!("offline {i}")).unwrap();
    }
    let mut bob = tls::client(&cert, srv.addr);
    let ack = bob.login(b, "pw-bob").unwrap();
    let texts: Vec<Value> = strings(&ack["offlinemsg"])
        .iter()
        .map(|m| m["msg"].clone())
        .collect();
    assert_eq!(
        texts,
        (0..5).map(|i| format!("offline {i}")).collect::<Vec<_>>()
    );
    // Sync: carol is sent to while away, and her sync login streams the log to SYNC_DONE.
    let mut carol = tls::client(&cert, srv.addr);
    let c = carol.register("carol", "pw-carol").unwrap();
    drop(carol);
    for i in 0..50 {
        alice.chat(a, c, &numbered(i, 200)).unwrap();
    }
    let (mut carol, ack) = login_retrying(tls::client(&cert, srv.addr), c, "pw-carol", true);
    assert_eq!(ack["errno"], 0, "{ack}");
    let synced = read_sync(&mut carol);
    let seqs: Vec<i64> = synced.chats.iter().map(seq).collect();
    assert_eq!(seqs, (1..=50).collect::<Vec<_>>());
    assert_eq!(synced.count, 50);
}

#[test]
fn frames_near_the_size_limit_cross_tls_whole_and_a_larger_one_is_refused() {
    let cert = TestCert::new();
    // Frames of up to 1 MiB, messages of up to 1,040,000 bytes: a frame spans ~64 records.
    let srv = tls::server(
        &cert,
        &["--max-frame", "1048576", "--max-message", "1040000"],
    );
    let (mut alice, a) = tls::user(&cert, srv.addr, "alice");
    let (mut bob, b) = tls::user(&cert, srv.addr, "bob");
    let text = numbered(7, 1_040_000);
    alice.chat(a, b, &text).unwrap();
    let got = bob.recv_msgid(msgid::ONE_CHAT).unwrap();
    assert_eq!(got["msg"].as_str().map(str::len), Some(text.len()));
    assert_eq!(got["msg"], text.as_str());
    // Over --max-frame: an error, then a clean close, over TLS too.
    let mut big = b"{\"msgid\":6,\"toid\":1,\"msg\":\"".to_vec();
    big.extend(std::iter::repeat_n(b'x', 1_100_000));
    let _ = alice.send_raw(&big); // the server may close before it read it all
    let reply = alice.recv().expect("an error reply before the close");
    assert_eq!(reply["errno"], errno::TOO_LARGE, "{reply}");
    match alice.recv() {
        Err(ClientError::Closed) | Err(ClientError::Io(_)) => {}
        other => panic!("expected the connection closed, got {other:?}"),
    }
    bob.chat(b, b, "bob is fine").unwrap();
}

#[test]
fn a_plain_client_on_the_tls_port_is_closed_and_the_server_keeps_serving() {
    let cert = TestCert::new();
    let srv = tls::server(&cert, &[]);
    // The old client's first request, in the clear.
    let mut plain = TcpStream::connect(srv.addr).unwrap();
    plain
        .write_all(b"{\"msgid\":1,\"id\":1,\"password\":\"x\"}\0")
        .unwrap();
    assert_only_alerts(&read_until_closed(plain));
    // The proto client without TLS: no reply, the connection is closed.
    let mut c = Client::connect(srv.addr).unwrap();
    match c.register("plain", "pw") {
        Err(ClientError::Closed) | Err(ClientError::Io(_)) | Err(ClientError::BadFrame(_)) => {}
        other => panic!("a plain client got {other:?}"),
    }
    still_serving(&cert, srv.addr, "after-plain");
}

#[test]
fn garbage_and_aborted_handshakes_are_closed_and_the_server_keeps_serving() {
    let cert = TestCert::new();
    let srv = tls::server(&cert, &["--max-unauth-per-ip", "4"]);
    let hello = client_hello();
    for round in 0..6 {
        // Bytes that are not TLS at all.
        let mut s = TcpStream::connect(srv.addr).unwrap();
        s.write_all(&[0xde, 0xad, 0xbe, 0xef, round, 0, 0, 0, 9, 9, 9])
            .unwrap();
        assert_only_alerts(&read_until_closed(s));
        // A ClientHello cut in half, then the client goes away.
        let mut s = TcpStream::connect(srv.addr).unwrap();
        s.write_all(&hello[..hello.len() / 2]).unwrap();
        drop(s);
        // A full ClientHello, then the client goes away before the server's answer is read.
        let mut s = TcpStream::connect(srv.addr).unwrap();
        s.write_all(&hello).unwrap();
        let _ = s.shutdown(std::net::Shutdown::Both);
        // A TLS client that verifies against another certificate gives up in the handshake.
        let other = TestCert::new();
        let name = clusterchat_proto::tls::server_name("127.0.0.1").unwrap();
        match Client::connect_tls(srv.addr, other.client_config(), name) {
            Err(ClientError::Io(e)) => assert!(e.to_string().contains("certificate"), "{e}"),
            Err(e) => panic!("expected a certificate error, got {e}"),
            Ok(_) => panic!("a certificate from elsewhere was accepted"),
        }
    }
    // 24 handshakes gone wrong from one address with a limit of 4 unauthenticated at once:
    // each was closed and released (a retry covers closes the server has yet to see).
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut c = loop {
        match tls::try_client(&cert, srv.addr) {
            Ok(c) => break c,
            Err(e) if Instant::now() < deadline => {
                eprintln!("retrying: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("the server stopped taking TLS clients: {e}"),
        }
    };
    let id = c.register("after-garbage", "pw").unwrap();
    c.login(id, "pw").unwrap();
}

#[test]
fn a_client_stalled_mid_handshake_is_closed_by_the_login_timeout() {
    let cert = TestCert::new();
    let srv = tls::server(&cert, &["--login-timeout", "1"]);
    let hello = client_hello();
    let started = Instant::now();
    let mut stalled = TcpStream::connect(srv.addr).unwrap();
    stalled.write_all(&hello[..10]).unwrap();
    // Also one that completes the ClientHello and never answers the server's flight.
    let mut halfway = TcpStream::connect(srv.addr).unwrap();
    halfway.write_all(&hello).unwrap();
    let got = read_until_closed(stalled);
    assert_only_alerts(&got);
    let _ = read_until_closed(halfway);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "closed by the timeout, not at once"
    );
    wait_log(&srv, "did not authenticate", 2);
    still_serving(&cert, srv.addr, "after-stall");
}

/// A sync receiver over TLS whose window is small and who stops reading: every message the
/// sender got an ACK for reaches it at its next sync login (what was encrypted but not
/// written when it went away included).
#[test]
fn a_reader_that_stops_reading_over_tls_loses_nothing() {
    const N: usize = 2000;
    let cert = TestCert::new();
    let srv = tls::server(&cert, &["--max-output", "2097152"]);
    let (mut sender, s) = tls::user(&cert, srv.addr, "sender");
    let mut reg = tls::client(&cert, srv.addr);
    let r = reg.register("reader", "pw-reader").unwrap();
    drop(reg);
    let mut reader = tls::client_over(&cert, util::small_rcvbuf::connect(srv.addr, 4096));
    assert_eq!(send_login(&mut reader, r, "pw-reader", true)["errno"], 0);
    assert_eq!(read_sync(&mut reader).count, 0);
    // The reader reads no more. Legacy pushes go out until the high-water mark.
    let texts: Vec<Value> = (0..N).map(|i| one_chat(r, &numbered(i, 1024))).collect();
    let seqs = acked_seqs(&send_pipelined(&mut sender, &texts, 64), ONE_CHAT);
    assert_eq!(seqs, (1..=N as i64).collect::<Vec<_>>());
    drop(reader);
    let (mut again, _) = login_retrying(tls::client(&cert, srv.addr), r, "pw-reader", true);
    let synced = read_sync(&mut again);
    let mut held: Vec<i64> = synced.chats.iter().map(seq).collect();
    held.sort_unstable();
    held.dedup();
    assert_eq!(
        held,
        (1..=N as i64).collect::<Vec<_>>(),
        "every acked message"
    );
    let _ = s;
}

/// The output high-water mark (`--max-output`) still applies over TLS, counting the plaintext
/// not yet in the kernel: a legacy reader that never reads is cut off. (One message at a
/// time, so that pushes reach the reader in seq order: a gap would make the server stream
/// the log to it at the pace it reads instead, which never cuts off.)
#[test]
fn a_reader_that_never_reads_is_cut_off_by_the_high_water_mark_over_tls() {
    let cert = TestCert::new();
    let srv = tls::server(&cert, &["--max-output", "65536"]);
    let (mut sender, s) = tls::user(&cert, srv.addr, "sender");
    let mut reader = tls::client_over(&cert, util::small_rcvbuf::connect(srv.addr, 4096));
    let r = reader.register("reader", "pw-reader").unwrap();
    reader.login(r, "pw-reader").unwrap();
    // Legacy pushes of 16 KiB each, never read: the kernel's buffers fill, then the
    // server's output passes 64 KiB and the connection is closed ("not reading").
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut sent = 0;
    while !srv.log().iter().any(|l| l.contains("is not reading")) {
        assert!(
            Instant::now() < deadline,
            "{sent} messages of 16 KiB sent and the reader is still connected"
        );
        let ack = sender.chat(s, r, &numbered(sent, 16 << 10)).unwrap();
        assert_eq!(ack["errno"], 0, "{ack}");
        sent += 1;
    }
    // The reader's session ended: a new login of the account is taken (no errno 2).
    let (_again, ack) = login_retrying(tls::client(&cert, srv.addr), r, "pw-reader", false);
    assert_eq!(ack["errno"], 0);
    let _ = (s, reader);
}

/// `chatclient --tls --ca` registers, logs in and chats with a TLS user; without `--ca` the
/// self-signed certificate is refused with one line.
#[test]
fn chatclient_over_tls() {
    let cert = TestCert::new();
    let srv = tls::server(&cert, &[]);
    let (mut bob, b) = tls::user(&cert, srv.addr, "bob");
    let binary = util::server::workspace_binary("chatclient");
    let port = srv.addr.port().to_string();
    let mut client = PipedClient::spawn(
        ["--tls", "--ca"]
            .into_iter()
            .map(std::ffi::OsString::from)
            .chain([cert.cert.clone().into_os_string()])
            .chain(["--tls-name", "localhost", "127.0.0.1", &port].map(Into::into)),
    );
    client.wait_for("over TLS");
    client.type_line("register carol s3cret");
    let line = client.wait_for("registered carol with id ");
    let c: i64 = line
        .split("with id ")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .and_then(|n| n.trim().parse().ok())
        .expect("carol's id");
    client.type_line(&format!("login {c} s3cret"));
    client.wait_for(&format!("logged in as carol({c})"));
    client.type_line(&format!("chat {b} hello from chatclient over TLS"));
    let got = bob.recv_msgid(msgid::ONE_CHAT).unwrap();
    assert_eq!(
        (got["msg"].as_str(), got["id"].as_i64()),
        (Some("hello from chatclient over TLS"), Some(c))
    );
    bob.chat(b, c, "bob answers").unwrap();
    client.wait_for("bob answers");
    client.type_line("quit");
    client.close_input();
    let status = client.child.wait().unwrap();
    assert!(status.success(), "{status:?}");

    // Without --ca the system's roots are used, and they do not know this certificate.
    let out = Command::new(&binary)
        .args(["--tls", "127.0.0.1", &port])
        .stdin(Stdio::null())
        .output()
        .expect("run chatclient");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("chatclient: "), "{err}");
    assert!(
        err.contains("certificate") || err.contains("root"),
        "says why: {err}"
    );
}

/// A certificate or key that cannot be used stops the server before it does anything: one
/// line, exit 1; a flag without its pair: one line, exit 2.
#[test]
fn bad_certificate_files_are_one_line_and_exit_1() {
    let cert = TestCert::new();
    let other = TestCert::new();
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let missing = dir.path().join("missing.pem");
    let db = format!("sqlite:{}", dir.path().join("chat.db").display());
    let run = |args: &[&std::ffi::OsStr]| {
        Command::new(env!("CARGO_BIN_EXE_chatserver"))
            .args(["--listen", "127.0.0.1:0", "--db", &db])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run chatserver")
    };
    let cases: [(&[&std::ffi::OsStr], i32, &str); 5] = [
        (
            &[
                "--tls-cert".as_ref(),
                missing.as_os_str(),
                "--tls-key".as_ref(),
                cert.key.as_os_str(),
            ],
            1,
            "cannot read TLS certificate",
        ),
        (
            &[
                "--tls-cert".as_ref(),
                junk.as_os_str(),
                "--tls-key".as_ref(),
                cert.key.as_os_str(),
            ],
            1,
            "no PEM certificate",
        ),
        (
            &[
                "--tls-cert".as_ref(),
                cert.cert.as_os_str(),
                "--tls-key".as_ref(),
                junk.as_os_str(),
            ],
            1,
            "no PEM key",
        ),
        (
            &[
                "--tls-cert".as_ref(),
                cert.cert.as_os_str(),
                "--tls-key".as_ref(),
                other.key.as_os_str(),
            ],
            1,
            "TLS certificate",
        ),
        (
            &["--tls-cert".as_ref(), cert.cert.as_os_str()],
            2,
            "--tls-cert needs --tls-key",
        ),
    ];
    for (args, code, says) in cases {
        let out = run(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.starts_with("chatserver: ") && err.contains(says),
            "{args:?}: {err}"
        );
    }
    assert!(
        !dir.path().join("chat.db").exists(),
        "nothing was created before the certificate was checked"
    );
}

/// The same config can be shared: many TLS clients at once on several IO threads.
#[test]
fn many_tls_clients_at_once() {
    let cert = TestCert::new();
    let srv = tls::server(&cert, &["--io-threads", "2"]);
    let cert = Arc::new(cert);
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let cert = Arc::clone(&cert);
            let addr = srv.addr;
            std::thread::spawn(move || {
                let (mut c, id) = tls::user(&cert, addr, &format!("many{t}"));
                for i in 0..20 {
                    let ack = c.chat(id, id, &format!("{t}/{i}")).unwrap();
                    assert_eq!(
                        (ack["errno"].as_i64(), ack["seq"].as_i64()),
                        (Some(0), Some(i + 1))
                    );
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a client thread");
    }
}

/// The client checks the name: a certificate for localhost and 127.0.0.1 does not pass for
/// another name, and the server goes on serving.
#[test]
fn a_certificate_for_another_name_is_refused_by_the_client() {
    let cert = TestCert::new();
    let srv = tls::server(&cert, &[]);
    let name = clusterchat_proto::tls::server_name("chat.example.org").unwrap();
    match Client::connect_tls(srv.addr, cert.client_config(), name) {
        Err(ClientError::Io(e)) => assert!(e.to_string().contains("certificate"), "{e}"),
        Err(e) => panic!("expected a certificate error, got {e}"),
        Ok(_) => panic!("a certificate for another name was accepted"),
    }
    let name = clusterchat_proto::tls::server_name("localhost").unwrap();
    let mut c = Client::connect_tls(srv.addr, cert.client_config(), name).expect("localhost");
    let id = c.register("named", "pw").unwrap();
    c.login(id, "pw").unwrap();
}
