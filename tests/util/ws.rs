//! WebSocket and HTTP clients for the server's HTTP front (`--http`).
//!
//! [`ws_client`] gives a regular [`Client`] whose frames travel over `/ws`: a bridge pair of
//! threads turns each JSON object the client writes into one WebSocket text message, and each
//! text message the server sends back into bytes for the client. So every test helper of the
//! chat port (register, login, chat, ...) runs unchanged over WebSocket. [`raw_ws`] gives the
//! tungstenite socket itself, for tests of frames; [`http_get`] one HTTP/1.1 request.

use super::server::TestServer;
use clusterchat_proto::client::Client;
use clusterchat_proto::codec::{next_frame, Next};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;
use tungstenite::protocol::Role;
use tungstenite::{Message, WebSocket};

/// A WebSocket to `http`'s `/ws` (handshake done), with a 10 s read timeout.
pub fn raw_ws(http: SocketAddr) -> WebSocket<TcpStream> {
    let stream = TcpStream::connect(http).expect("connect to the HTTP front");
    stream.set_nodelay(true).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let (ws, response) =
        tungstenite::client(format!("ws://{http}/ws"), stream).expect("WebSocket handshake");
    assert_eq!(response.status(), 101);
    ws
}

/// A [`Client`] that speaks to the server over `/ws` at `http`.
pub fn ws_client(http: SocketAddr) -> Client {
    let ws = raw_ws(http);
    let socket = ws.get_ref().try_clone().expect("clone the socket");
    socket.set_read_timeout(None).unwrap();
    // Reading and writing on two threads: one WebSocket object each, on clones of one socket.
    let mut down = WebSocket::from_raw_socket(socket, Role::Client, None);
    let mut up = ws;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let near = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (far, _) = listener.accept().unwrap();
    let mut far_read = far.try_clone().unwrap();
    let mut far_write = far;
    // Client -> server: one text message per JSON object.
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let n = match far_read.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            buf.extend_from_slice(&chunk[..n]);
            loop {
                match next_frame(&buf, usize::MAX) {
                    Next::Frame {
                        start,
                        end,
                        consumed,
                    } => {
                        let text = String::from_utf8_lossy(&buf[start..end]).into_owned();
                        if up.send(Message::text(text)).is_err() {
                            return;
                        }
                        buf.drain(..consumed);
                    }
                    Next::Incomplete { skip } => {
                        buf.drain(..skip);
                        break;
                    }
                    Next::Invalid { consumed } => {
                        let text = String::from_utf8_lossy(&buf[..consumed]).into_owned();
                        let _ = up.send(Message::text(text));
                        buf.drain(..consumed);
                    }
                    Next::TooLarge => return,
                }
            }
        }
        let _ = up.close(None);
        let _ = up.flush();
    });
    // Server -> client: each text message's bytes (the JSON and its newline).
    std::thread::spawn(move || {
        loop {
            match down.read() {
                Ok(Message::Text(t)) => {
                    if far_write.write_all(t.as_bytes()).is_err() {
                        break;
                    }
                }
                Ok(Message::Close(_)) | Err(_) => break,
                Ok(_) => {}
            }
        }
        let _ = far_write.shutdown(Shutdown::Both);
    });
    Client::from_stream(near).expect("bridge client")
}

/// A WebSocket client that registers `name` (password `pw-<name>`) and logs in.
pub fn ws_user(srv: &TestServer, name: &str) -> (Client, i64) {
    let mut c = ws_client(srv.http.expect("the server has an HTTP front"));
    let id = c.register(name, &format!("pw-{name}")).expect("register");
    c.login(id, &format!("pw-{name}")).expect("login");
    (c, id)
}

/// An HTTP response: status, headers (names lower-case), body.
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header of that (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `request` (raw bytes) and reads one response (by Content-Length, or to the close).
pub fn http_raw(addr: SocketAddr, request: &[u8]) -> HttpResponse {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    read_response(&mut s, false)
}

/// Reads one response from `s`, and not a byte more (a pipelined next response stays in the
/// socket); `head_only`: the request was HEAD (no body follows).
pub fn read_response(s: &mut TcpStream, head_only: bool) -> HttpResponse {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    let head_end = loop {
        if buf.ends_with(b"\r\n\r\n") {
            break buf.len();
        }
        let n = s.read(&mut byte).expect("read the response");
        assert!(
            n > 0,
            "closed before a response: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.push(byte[0]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map(|(_, v)| v.parse().unwrap())
        .unwrap_or(0);
    let want = if head_only || status == 101 { 0 } else { len };
    let mut body = vec![0u8; want];
    s.read_exact(&mut body).expect("read the body");
    HttpResponse {
        status,
        headers,
        body,
    }
}

/// `GET path` with `Connection: close`.
pub fn http_get(addr: SocketAddr, path: &str) -> HttpResponse {
    http_raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

/// Whether the peer closed `s` (reads to the end within 10 s, ignoring any bytes).
pub fn closed_by_peer(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut chunk = [0u8; 4096];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}
