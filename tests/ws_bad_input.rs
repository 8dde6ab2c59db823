//! Bad input on the HTTP front: bad WebSocket frames get the chat port's errno or a clean
//! close (with a Close frame), bad HTTP gets a 4xx and a close, and the server keeps serving
//! everyone else.

mod util;

use clusterchat_proto::{errno, msgid};
use serde_json::{json, Value};
use std::io::Write;
use std::net::TcpStream;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::Message;
use util::server::TestServer;
use util::ws::{closed_by_peer, http_raw, raw_ws, read_response, ws_user};

type Ws = tungstenite::WebSocket<TcpStream>;

/// The next text message as JSON (None: the server closed, with its Close frame's code).
fn next_json(ws: &mut Ws) -> Result<Value, Option<CloseCode>> {
    loop {
        match ws.read() {
            Ok(Message::Text(t)) => return Ok(serde_json::from_str(&t).expect("JSON")),
            Ok(Message::Close(frame)) => return Err(frame.map(|f| f.code)),
            Ok(_) => {}
            Err(_) => return Err(None),
        }
    }
}

/// Reads until the server's Close frame (or the end); its code.
fn close_code(ws: &mut Ws) -> Option<CloseCode> {
    loop {
        match next_json(ws) {
            Ok(_) => {}
            Err(code) => return code,
        }
    }
}

/// A raw WebSocket on `srv`'s HTTP front, registered as "web" (password "pw") and logged in;
/// with the user's id.
fn web_user(srv: &TestServer) -> (Ws, i64) {
    let mut ws = raw_ws(srv.http.unwrap());
    ws.send(Message::text(
        json!({"msgid": msgid::REG, "name": "web", "password": "pw"}).to_string(),
    ))
    .unwrap();
    let w = next_json(&mut ws).unwrap()["id"].as_i64().unwrap();
    ws.send(Message::text(
        json!({"msgid": msgid::LOGIN, "id": w, "password": "pw"}).to_string(),
    ))
    .unwrap();
    assert_eq!(next_json(&mut ws).unwrap()["errno"], 0);
    (ws, w)
}

/// A TCP client logged in as `w` (password "pw") without takeover: it retries for up to 5 s
/// while the server still holds `w`'s WebSocket session.
fn logs_in_again(srv: &TestServer, w: i64) -> clusterchat_proto::client::Client {
    let mut again = srv.client();
    for attempt in 0.. {
        match again.login(w, "pw") {
            Ok(_) => break,
            Err(e) if attempt < 200 => {
                let _ = e;
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
            Err(e) => panic!("still online after the Close: {e}"),
        }
    }
    again
}

/// The server still serves a TCP user and a WebSocket user after the abuse.
fn still_serving(srv: &TestServer) {
    let (mut tcp, t) = srv.user(&util::server::unique("t"));
    let (mut web, w) = ws_user(srv, &util::server::unique("w"));
    tcp.chat(t, w, "still here").unwrap();
    assert_eq!(
        web.recv_msgid(msgid::ONE_CHAT).unwrap()["msg"],
        "still here"
    );
}

#[test]
fn a_binary_message_gets_errno_malformed_and_the_connection_stays() {
    let srv = TestServer::start();
    let mut ws = raw_ws(srv.http.unwrap());
    ws.send(Message::binary(b"{\"msgid\":20}".to_vec()))
        .unwrap();
    let reply = next_json(&mut ws).unwrap();
    assert_eq!(
        (reply["msgid"].as_i64(), reply["errno"].as_i64()),
        (Some(msgid::ERROR), Some(errno::MALFORMED))
    );
    // Not JSON in a text message: the same errno as on TCP.
    ws.send(Message::text("hello?")).unwrap();
    assert_eq!(next_json(&mut ws).unwrap()["errno"], errno::MALFORMED);
    // Two requests in one text message are both answered; then a PING in a message of its own.
    ws.send(Message::text(
        r#"{"msgid":20,"reqid":1}{"msgid":20,"reqid":2}"#,
    ))
    .unwrap();
    assert_eq!(next_json(&mut ws).unwrap()["reqid"], 1);
    assert_eq!(next_json(&mut ws).unwrap()["reqid"], 2);
    // A WebSocket ping is answered with a pong carrying its payload.
    ws.send(Message::Ping(b"p1".to_vec().into())).unwrap();
    match ws.read().unwrap() {
        Message::Pong(p) => assert_eq!(&p[..], b"p1"),
        other => panic!("expected a pong, got {other:?}"),
    }
    still_serving(&srv);
}

#[test]
fn a_message_over_max_frame_gets_errno_too_large_and_a_1009_close() {
    let srv = TestServer::builder().args(&["--max-frame", "4096"]).start();
    let mut ws = raw_ws(srv.http.unwrap());
    let big = json!({"msgid": msgid::PING, "pad": "x".repeat(5000)}).to_string();
    ws.send(Message::text(big)).unwrap();
    let reply = next_json(&mut ws).unwrap();
    assert_eq!(reply["errno"], errno::TOO_LARGE, "{reply}");
    assert_eq!(close_code(&mut ws), Some(CloseCode::Size));
    still_serving(&srv);
}

#[test]
fn invalid_utf8_in_a_text_message_closes_with_1007() {
    let srv = TestServer::start();
    let ws = raw_ws(srv.http.unwrap());
    let mut s = ws.into_inner();
    // A masked text frame (mask 0) whose payload is not UTF-8: tungstenite would not send it.
    s.write_all(&[0x81, 0x82, 0, 0, 0, 0, 0xff, 0xfe]).unwrap();
    let mut ws =
        tungstenite::WebSocket::from_raw_socket(s, tungstenite::protocol::Role::Client, None);
    let reply = next_json(&mut ws).unwrap();
    assert_eq!(reply["errno"], errno::MALFORMED);
    assert_eq!(close_code(&mut ws), Some(CloseCode::Invalid));
    still_serving(&srv);
}

#[test]
fn an_unmasked_client_frame_is_a_protocol_error() {
    let srv = TestServer::start();
    let mut s = raw_ws(srv.http.unwrap()).into_inner();
    s.write_all(&[0x81, 0x02, b'{', b'}']).unwrap();
    let mut ws =
        tungstenite::WebSocket::from_raw_socket(s, tungstenite::protocol::Role::Client, None);
    assert_eq!(close_code(&mut ws), Some(CloseCode::Protocol));
    still_serving(&srv);
}

#[test]
fn a_close_from_the_client_is_answered_and_its_user_goes_offline() {
    let srv = TestServer::start();
    let (mut tcp, t) = srv.user("tcp");
    let (mut ws, w) = web_user(&srv);
    ws.close(None).unwrap();
    assert_eq!(close_code(&mut ws), Some(CloseCode::Normal));
    // The close handshake is done: the client closes the TCP connection, as browsers do.
    drop(ws);
    // Its user went offline: the account can log in from the TCP port now.
    let mut again = logs_in_again(&srv, w);
    again.chat(w, t, "back on TCP").unwrap();
    assert_eq!(
        tcp.recv_msgid(msgid::ONE_CHAT).unwrap()["msg"],
        "back on TCP"
    );
}

/// A client that sends Close but keeps the TCP connection open (the probe's case): its session
/// ends at the Close, not when TCP ends, and the server closes the connection itself.
#[test]
fn a_close_ends_the_session_even_if_the_client_keeps_tcp_open() {
    let srv = TestServer::start();
    let (mut ws, w) = web_user(&srv);
    ws.close(None).unwrap();
    assert_eq!(close_code(&mut ws), Some(CloseCode::Normal));
    // `ws` stays open on this side. A login from the TCP port succeeds soon (without
    // `takeover`): the session is over.
    logs_in_again(&srv, w);
    // And the server closes the TCP connection itself after a linger of a few seconds: its
    // side was only shut down for writing before, so bytes sent to it were still taken; once
    // it is closed they are answered with a reset and a later write fails.
    let mut tcp = ws.into_inner();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if tcp.write_all(b"still here").is_err() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the server kept the connection open"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn garbage_instead_of_http_gets_400_and_a_close() {
    let srv = TestServer::start();
    let http = srv.http.unwrap();
    let r = http_raw(http, b"{\"msgid\":1,\"id\":1,\"password\":\"x\"}\n");
    assert_eq!(r.status, 400);
    assert_eq!(r.header("connection"), Some("close"));
    // A head over 8 KiB: 431.
    let big = format!("GET / HTTP/1.1\r\nX-Pad: {}\r\n\r\n", "a".repeat(9000));
    assert_eq!(http_raw(http, big.as_bytes()).status, 431);
    still_serving(&srv);
}

#[test]
fn upgrades_elsewhere_than_ws_and_bad_upgrades_are_refused() {
    let srv = TestServer::start();
    let http = srv.http.unwrap();
    let upgrade = |path: &str, version: &str| {
        let mut s = TcpStream::connect(http).unwrap();
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: {version}\r\n\r\n"
        );
        s.write_all(req.as_bytes()).unwrap();
        let r = read_response(&mut s, false);
        (r, closed_by_peer(&mut s))
    };
    let (r, closed) = upgrade("/", "13");
    assert_eq!((r.status, closed), (400, true));
    let (r, closed) = upgrade("/ws", "8");
    assert_eq!(
        (r.status, r.header("sec-websocket-version"), closed),
        (426, Some("13"), true)
    );
    // A plain GET of /ws: 426 Upgrade Required.
    let r = util::ws::http_get(http, "/ws");
    assert_eq!(r.status, 426);
    // And the RFC's example key gets the RFC's accept value.
    let (r, _) = {
        let mut s = TcpStream::connect(http).unwrap();
        s.write_all(
            b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .unwrap();
        (read_response(&mut s, false), ())
    };
    assert_eq!(r.status, 101);
    assert_eq!(
        r.header("sec-websocket-accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    still_serving(&srv);
}
