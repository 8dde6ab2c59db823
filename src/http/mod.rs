//! The HTTP + WebSocket front: a second listener (`--http`) served by the same reactor, the
//! same IO loops and the same limits as the chat port. A connection that came in on it speaks
//! HTTP/1.1 until it upgrades on `/ws`; from then on it speaks the chat protocol, one JSON
//! request per WebSocket text message, each reply or push one text message.
//!
//! * [`request`]: bounded request heads (`httparse`).
//! * [`files`]: the web client, embedded at compile time from `web/`.
//! * [`ws`]: the upgrade and the frames (`tungstenite`'s codec over the connection's buffers).
//! * [`cluster`]: `/api/cluster`, from a snapshot a worker takes.
//! * [`metrics_hook`]: `/metrics`, the server's Prometheus metrics (`crate::metrics`).
//!
//! Routes: `GET|HEAD /` and the web client's files, `/healthz`, `/api/cluster`, `/metrics`,
//! `GET /ws` (upgrade). Other methods get 405, unknown paths 404, a bad or oversize head 400 /
//! 431; every error response closes the connection. An HTTP connection never logs in, so the
//! login timeout and the per-address limit of connections without a login bound how long and
//! how many of them a client keeps open (keep-alive included).
//!
//! Thread contract: everything here runs on the connection's IO thread and never blocks,
//! except what goes through [`Chat::run`] (a worker).

pub(crate) mod cluster;
mod files;
mod metrics_hook;
mod request;
mod response;
pub(crate) mod ws;

use crate::service::ChatConn;
use cluster::Cluster;
use request::{Head, Parsed};
use response::Response;
use tungstenite::protocol::frame::coding::CloseCode;
use ws::Message;

/// The index of the HTTP listener in the reactor (the chat port is 0).
pub(crate) const HTTP_LISTENER: usize = 1;

/// What the front needs from the chat side: the same request path as the chat port.
pub(crate) trait Chat {
    /// One WebSocket text message: its JSON request(s), handled exactly as on the chat port.
    /// Returns true when the connection now has too much in progress (input backpressure: take
    /// nothing more until it drains).
    fn text(&self, conn: &ChatConn, payload: &[u8]) -> bool;
    /// An error reply (errno, message) in order with the connection's other replies.
    fn error(&self, conn: &ChatConn, errno: i64, message: &str);
    /// Runs `job` on the connection's worker (it may block).
    fn run(&self, conn: &ChatConn, job: Box<dyn FnOnce() + Send>);
    /// The WebSocket is closing (the client's Close, or a protocol error; our Close is
    /// queued and the connection shut down): end its session now, in order with its other
    /// requests, and close the connection by force if the peer keeps TCP open.
    fn closing(&self, conn: &ChatConn);
}

/// What to do after a request.
enum Next {
    /// Read the next request.
    KeepAlive,
    /// The response closes the connection: drop the rest of the input.
    Close,
    /// Upgraded: the rest of the input is WebSocket frames.
    Upgraded,
}

/// The HTTP front of one server. Thread safe.
pub(crate) struct HttpFront {
    /// Largest WebSocket message taken, in bytes (`--max-frame`, as on the chat port).
    max_message: usize,
    cluster: std::sync::Arc<Cluster>,
    /// What `/metrics` renders; it also counts upgrades.
    metrics: std::sync::Arc<crate::metrics::Metrics>,
}

impl HttpFront {
    pub(crate) fn new(
        max_message: usize,
        cluster: Cluster,
        metrics: std::sync::Arc<crate::metrics::Metrics>,
    ) -> Self {
        HttpFront {
            max_message,
            cluster: std::sync::Arc::new(cluster),
            metrics,
        }
    }

    /// Input of a connection of the HTTP listener: HTTP requests, or WebSocket frames once it
    /// has upgraded (it has the reactor's frame prefix). Returns the bytes consumed, like
    /// `Handler::on_message`. IO thread.
    pub(crate) fn on_input(&self, conn: &ChatConn, input: &[u8], chat: &dyn Chat) -> usize {
        if conn.frame_prefix().is_some() {
            return self.on_ws(conn, input, chat);
        }
        let mut consumed = 0;
        while consumed < input.len() {
            let head = match request::parse(&input[consumed..]) {
                Parsed::Head(head) => head,
                Parsed::Partial => return consumed,
                Parsed::Bad(why) => {
                    log::debug!("connection {} from {}: {why}", conn.id(), conn.peer());
                    respond(conn, &Response::text(400, "bad request\n"), false, true);
                    return input.len();
                }
                Parsed::TooLarge => {
                    let r = Response::text(431, "request head too large\n");
                    respond(conn, &r, false, true);
                    return input.len();
                }
            };
            consumed += head.len;
            match self.route(conn, &head, chat) {
                Next::KeepAlive => {}
                Next::Close => return input.len(),
                Next::Upgraded => {
                    self.metrics.upgraded();
                    return consumed + self.on_ws(conn, &input[consumed..], chat);
                }
            }
        }
        consumed
    }

    /// Answers one request.
    fn route(&self, conn: &ChatConn, head: &Head, chat: &dyn Chat) -> Next {
        let head_only = head.method == "HEAD";
        if head.method != "GET" && !head_only {
            let r = Response {
                extra: "Allow: GET, HEAD\r\n",
                ..Response::text(405, "only GET and HEAD\n")
            };
            return respond(conn, &r, head_only, true);
        }
        if head.has_body {
            return respond(
                conn,
                &Response::text(400, "no body expected\n"),
                head_only,
                true,
            );
        }
        if head.websocket || head.path == "/ws" {
            return upgrade(conn, head);
        }
        match head.path.as_str() {
            "/healthz" => respond(conn, &Response::text(200, "ok\n"), head_only, head.close),
            "/api/cluster" => self.api_cluster(conn, head, chat),
            "/metrics" => match metrics_hook::render(&self.metrics) {
                Some((content_type, body)) => {
                    let r = Response {
                        status: 200,
                        content_type,
                        body: &body,
                        extra: "",
                    };
                    respond(conn, &r, head_only, head.close)
                }
                None => {
                    let r = Response::text(404, "metrics are not built in yet\n");
                    respond(conn, &r, head_only, head.close)
                }
            },
            path => match files::lookup(path) {
                Some((body, content_type)) => {
                    let r = Response {
                        status: 200,
                        content_type,
                        body,
                        extra: "",
                    };
                    respond(conn, &r, head_only, head.close)
                }
                None => respond(
                    conn,
                    &Response::text(404, "not found\n"),
                    head_only,
                    head.close,
                ),
            },
        }
    }

    /// `/api/cluster`: the cached snapshot at once; else a worker takes one and answers (then
    /// closes, so that no later request's response overtakes it).
    fn api_cluster(&self, conn: &ChatConn, head: &Head, chat: &dyn Chat) -> Next {
        let head_only = head.method == "HEAD";
        if let Some(body) = self.cluster.cached() {
            return respond(conn, &json(&body), head_only, head.close);
        }
        let cluster = std::sync::Arc::clone(&self.cluster);
        let conn2 = std::sync::Arc::clone(conn);
        let job = Box::new(move || {
            match cluster.refresh() {
                Ok(body) => respond(&conn2, &json(&body), head_only, true),
                Err(e) => {
                    log::warn!("/api/cluster: {e}");
                    let r = Response::text(503, "cluster state unavailable\n");
                    respond(&conn2, &r, head_only, true)
                }
            };
        });
        chat.run(conn, job);
        Next::Close
    }

    /// WebSocket input: messages until the input runs out, the connection is busy, or it
    /// closes.
    fn on_ws(&self, conn: &ChatConn, input: &[u8], chat: &dyn Chat) -> usize {
        let mut consumed = 0;
        while let Some((n, message)) = ws::next_message(&input[consumed..], self.max_message) {
            consumed += n;
            match message {
                Message::Text(payload) => {
                    if chat.text(conn, &payload) {
                        break;
                    }
                }
                Message::Binary => chat.error(
                    conn,
                    clusterchat_proto::errno::MALFORMED,
                    "malformed request: binary message (send each JSON request as a text message)",
                ),
                Message::Ping(payload) => conn.send_raw(ws::pong(payload)),
                Message::Pong => {}
                Message::Close(_) => {
                    conn.send_raw(ws::close(CloseCode::Normal, ""));
                    conn.shutdown();
                    chat.closing(conn);
                    return input.len();
                }
                Message::Fail(code, why) => {
                    log::debug!("WebSocket {} from {}: {why}", conn.id(), conn.peer());
                    match code {
                        CloseCode::Size => chat.error(
                            conn,
                            clusterchat_proto::errno::TOO_LARGE,
                            &format!("request larger than {} bytes; closing", self.max_message),
                        ),
                        _ => chat.error(
                            conn,
                            clusterchat_proto::errno::MALFORMED,
                            &format!("malformed request: {why}; closing"),
                        ),
                    }
                    conn.send_raw(ws::close(code, why));
                    conn.shutdown();
                    chat.closing(conn);
                    return input.len();
                }
            }
        }
        consumed
    }
}

/// Sends `r` (closing the connection after it when `close`) and says what follows.
fn respond(conn: &ChatConn, r: &Response<'_>, head_only: bool, close: bool) -> Next {
    conn.send_raw(r.encode(head_only, close));
    if close {
        conn.shutdown();
        Next::Close
    } else {
        Next::KeepAlive
    }
}

/// A JSON response.
fn json(body: &[u8]) -> Response<'_> {
    Response {
        status: 200,
        content_type: "application/json",
        body,
        extra: "",
    }
}

/// `/ws`: the upgrade, or why not (and close).
fn upgrade(conn: &ChatConn, head: &Head) -> Next {
    if head.path != "/ws" {
        let r = Response::text(400, "WebSocket upgrades only on /ws\n");
        return respond(conn, &r, false, true);
    }
    if !head.websocket || head.method != "GET" {
        let r = Response {
            extra: "Upgrade: websocket\r\n",
            ..Response::text(426, "/ws is a WebSocket endpoint\n")
        };
        return respond(conn, &r, head.method == "HEAD", true);
    }
    if head.ws_version.as_deref() != Some("13") {
        let r = Response {
            extra: "Sec-WebSocket-Version: 13\r\n",
            ..Response::text(426, "WebSocket version 13 only\n")
        };
        return respond(conn, &r, false, true);
    }
    let Some(key) = head.ws_key.as_deref().filter(|k| !k.is_empty()) else {
        let r = Response::text(400, "Sec-WebSocket-Key missing\n");
        return respond(conn, &r, false, true);
    };
    conn.send_raw(ws::accept_response(key));
    conn.set_frame_prefix(ws::text_prefix);
    Next::Upgraded
}
