//! HTTP/1.1 request heads, parsed with `httparse`, bounded: a head larger than [`MAX_HEAD`]
//! bytes or with more than [`MAX_HEADERS`] headers is refused, so a client cannot make the
//! server keep an endless head.

/// Largest request head accepted, in bytes (request line and headers).
pub(crate) const MAX_HEAD: usize = 8 << 10;
/// Most headers accepted in one request.
pub(crate) const MAX_HEADERS: usize = 32;

/// What a request head says that the front needs.
#[derive(Debug, Default)]
pub(crate) struct Head {
    /// Bytes of the head, the blank line included (the body, if any, follows).
    pub(crate) len: usize,
    pub(crate) method: String,
    /// The path, without the query string.
    pub(crate) path: String,
    /// `Connection: close` (or HTTP/1.0 without `keep-alive`).
    pub(crate) close: bool,
    /// `Connection: upgrade` and `Upgrade: websocket`.
    pub(crate) websocket: bool,
    /// `Sec-WebSocket-Key`.
    pub(crate) ws_key: Option<String>,
    /// `Sec-WebSocket-Version`.
    pub(crate) ws_version: Option<String>,
    /// The request has a body (`Content-Length` other than 0, or `Transfer-Encoding`).
    pub(crate) has_body: bool,
}

/// The outcome of parsing the start of the input.
#[derive(Debug)]
pub(crate) enum Parsed {
    /// A whole head.
    Head(Head),
    /// Not all of it yet (and within [`MAX_HEAD`]).
    Partial,
    /// Not HTTP, or a bad head: answer 400 and close.
    Bad(&'static str),
    /// Over [`MAX_HEAD`] or [`MAX_HEADERS`]: answer 431 and close.
    TooLarge,
}

/// Parses the request head at the start of `input`.
pub(crate) fn parse(input: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(input) {
        Ok(httparse::Status::Complete(n)) if n <= MAX_HEAD => n,
        Ok(httparse::Status::Complete(_)) => return Parsed::TooLarge,
        Ok(httparse::Status::Partial) if input.len() > MAX_HEAD => return Parsed::TooLarge,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => return Parsed::TooLarge,
        Err(_) => return Parsed::Bad("malformed request"),
    };
    let target = req.path.unwrap_or("/");
    let path = target.split(['?', '#']).next().unwrap_or("/");
    if !path.starts_with('/') {
        return Parsed::Bad("request target must be a path");
    }
    let version = req.version.unwrap_or(1);
    let mut head = Head {
        len,
        method: req.method.unwrap_or("").to_string(),
        path: path.to_string(),
        close: version == 0,
        ..Head::default()
    };
    let mut connection_upgrade = false;
    let mut upgrade_websocket = false;
    for h in req.headers.iter() {
        let value = String::from_utf8_lossy(h.value);
        let value = value.trim();
        let name = h.name;
        if name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    head.close = true;
                } else if token.eq_ignore_ascii_case("keep-alive") {
                    head.close = false;
                } else if token.eq_ignore_ascii_case("upgrade") {
                    connection_upgrade = true;
                }
            }
        } else if name.eq_ignore_ascii_case("upgrade") {
            upgrade_websocket = value
                .split(',')
                .any(|p| p.trim().eq_ignore_ascii_case("websocket"));
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            head.ws_key = Some(value.to_string());
        } else if name.eq_ignore_ascii_case("sec-websocket-version") {
            head.ws_version = Some(value.to_string());
        } else if name.eq_ignore_ascii_case("content-length") {
            head.has_body |= value != "0";
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            head.has_body = true;
        }
    }
    head.websocket = connection_upgrade && upgrade_websocket;
    Parsed::Head(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_websocket_upgrade_head() {
        let req = b"GET /ws?x=1 HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\n\
                    Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                    Sec-WebSocket-Version: 13\r\n\r\nrest";
        let Parsed::Head(h) = parse(req) else {
            panic!("a head")
        };
        assert_eq!(h.len, req.len() - 4);
        assert_eq!((h.method.as_str(), h.path.as_str()), ("GET", "/ws"));
        assert!(h.websocket && !h.close && !h.has_body);
        assert_eq!(h.ws_key.as_deref(), Some("dGhlIHNhbXBsZSBub25jZQ=="));
    }

    #[test]
    fn partial_garbage_and_oversize_heads() {
        assert!(matches!(parse(b"GET / HTTP/1.1\r\nHost"), Parsed::Partial));
        assert!(matches!(parse(b"{\"msgid\":1}\n"), Parsed::Bad(_)));
        let big = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(MAX_HEAD));
        assert!(matches!(parse(big.as_bytes()), Parsed::TooLarge));
        let many: String = (0..MAX_HEADERS + 1)
            .map(|i| format!("H{i}: v\r\n"))
            .collect();
        let req = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert!(matches!(parse(req.as_bytes()), Parsed::TooLarge));
    }

    #[test]
    fn http_1_0_closes_unless_kept_alive() {
        let Parsed::Head(h) = parse(b"GET / HTTP/1.0\r\n\r\n") else {
            panic!()
        };
        assert!(h.close);
        let Parsed::Head(h) = parse(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n") else {
            panic!()
        };
        assert!(h.close);
    }
}
