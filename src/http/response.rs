//! HTTP/1.1 responses: status line, the few headers the front sends, body.

use bytes::Bytes;

/// One response.
pub(crate) struct Response<'a> {
    pub(crate) status: u16,
    pub(crate) content_type: &'a str,
    pub(crate) body: &'a [u8],
    /// Other header lines, each ending in `\r\n`.
    pub(crate) extra: &'a str,
}

impl<'a> Response<'a> {
    /// A `text/plain` response (an error page or `/healthz`).
    pub(crate) fn text(status: u16, body: &'a str) -> Self {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.as_bytes(),
            extra: "",
        }
    }

    /// The bytes to send: without the body for a HEAD request; with `Connection: close` when
    /// the connection closes after it.
    pub(crate) fn encode(&self, head_only: bool, close: bool) -> Bytes {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
             Cache-Control: no-cache\r\nX-Content-Type-Options: nosniff\r\n{}{}\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len(),
            self.extra,
            if close { "Connection: close\r\n" } else { "" },
        )
        .into_bytes();
        if !head_only {
            out.extend_from_slice(self.body);
        }
        Bytes::from(out)
    }
}

/// The reason phrase of the statuses the front uses.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "",
    }
}
