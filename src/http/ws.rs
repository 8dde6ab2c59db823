//! WebSocket (RFC 6455) glue over the connection's own buffers: the handshake's accept key
//! and the frame header codec come from `tungstenite`; this file only cuts the input into
//! messages, unmasks them, and frames what the server sends.
//!
//! The reactor writes [`text_prefix`] before every chat frame of an upgraded connection, so a
//! reply or a fan-out frame (one `Bytes` shared by all receivers) becomes a text message
//! without a copy: its payload is the JSON frame and the connection's `\n` terminator.

use bytes::Bytes;
use clusterchat_net::MAX_PREFIX;
use tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};
use tungstenite::protocol::frame::{CloseFrame, Frame, FrameHeader};

/// The 101 response that accepts an upgrade with `key` (the request's Sec-WebSocket-Key).
pub(crate) fn accept_response(key: &str) -> Bytes {
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    Bytes::from(format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    ))
}

/// The header of an unmasked, final text frame of `len` payload bytes: the reactor's frame
/// prefix for upgraded connections (`TcpConnection::set_frame_prefix`). Loop thread; cheap.
pub(crate) fn text_prefix(len: usize, out: &mut [u8; MAX_PREFIX]) -> usize {
    let header = FrameHeader {
        opcode: OpCode::Data(Data::Text),
        ..FrameHeader::default()
    };
    let mut cursor = std::io::Cursor::new(&mut out[..]);
    header
        .format(len as u64, &mut cursor)
        .expect("a server frame header fits in MAX_PREFIX");
    cursor.position() as usize
}

/// A control frame the server sends (unmasked).
fn control(frame: Frame) -> Bytes {
    let mut out = Vec::with_capacity(frame.len());
    frame.format(&mut out).expect("writing to a Vec");
    Bytes::from(out)
}

/// A Pong answering a Ping with `payload`.
pub(crate) fn pong(payload: Vec<u8>) -> Bytes {
    control(Frame::pong(payload))
}

/// A Close frame with `code` and a short `reason` (at most 123 bytes of UTF-8).
pub(crate) fn close(code: CloseCode, reason: &str) -> Bytes {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    control(Frame::close(Some(CloseFrame {
        code,
        reason: reason[..end].to_string().into(),
    })))
}

/// One thing the peer said.
#[derive(Debug, PartialEq)]
pub(crate) enum Message {
    /// A whole text message (fragments joined, unmasked; UTF-8 checked).
    Text(Vec<u8>),
    /// A whole binary message: the chat protocol has none.
    Binary,
    /// A Ping, with its payload (answered with a Pong).
    Ping(Vec<u8>),
    /// A Pong (ignored).
    Pong,
    /// A Close, with the peer's code (1000 when it gave none).
    Close(CloseCode),
    /// The peer broke the protocol: close with this code and reason.
    Fail(CloseCode, &'static str),
}

/// Most frames one message may be split into: the raw input an unfinished message holds is
/// then at most `max` payload bytes plus 14 header bytes per fragment.
pub(crate) const MAX_FRAGMENTS: usize = 1024;

/// Takes one message from the start of `input`: `Some((bytes consumed, message))`, or `None`
/// while it is incomplete. A message (or a frame header announcing one) over `max` payload
/// bytes is a `Fail(Size)` at once, so the unconsumed input the reactor keeps is bounded by
/// `max` plus headers. A fragmented message is taken once its last fragment has arrived; a
/// control frame between its fragments is refused (`Fail(Protocol)`): browsers do not
/// fragment what they send. More than [`MAX_FRAGMENTS`] frames in one message is a
/// `Fail(Size)`.
pub(crate) fn next_message(input: &[u8], max: usize) -> Option<(usize, Message)> {
    let mut cursor = std::io::Cursor::new(input);
    let mut payload: Vec<u8> = Vec::new();
    let mut first: Option<Data> = None;
    for _ in 0..MAX_FRAGMENTS {
        let (header, len) = match FrameHeader::parse(&mut cursor) {
            Ok(Some(h)) => h,
            Ok(None) => return None,
            Err(_) => return fail(input, CloseCode::Protocol, "bad frame header"),
        };
        let Some(mask) = header.mask else {
            return fail(input, CloseCode::Protocol, "client frames must be masked");
        };
        if header.rsv1 || header.rsv2 || header.rsv3 {
            return fail(input, CloseCode::Protocol, "no extension was negotiated");
        }
        if len > max as u64 || payload.len() as u64 + len > max as u64 {
            return fail(input, CloseCode::Size, "message too large");
        }
        let start = cursor.position() as usize;
        let end = start + len as usize;
        if input.len() < end {
            return None;
        }
        let mut data = input[start..end].to_vec();
        unmask(&mut data, mask);
        cursor.set_position(end as u64);
        match header.opcode {
            OpCode::Control(c) => {
                if first.is_some() {
                    return fail(input, CloseCode::Protocol, "control frame inside a message");
                }
                if !header.is_final || len > 125 {
                    return fail(input, CloseCode::Protocol, "bad control frame");
                }
                let message = match c {
                    Control::Ping => Message::Ping(data),
                    Control::Pong => Message::Pong,
                    Control::Close => Message::Close(close_code(&data)),
                    Control::Reserved(_) => {
                        return fail(input, CloseCode::Protocol, "unknown opcode")
                    }
                };
                return Some((end, message));
            }
            OpCode::Data(d) => {
                match (first, d) {
                    (None, Data::Continue) => {
                        return fail(input, CloseCode::Protocol, "continuation without a start")
                    }
                    (None, Data::Text | Data::Binary) => first = Some(d),
                    (Some(_), Data::Continue) => {}
                    (Some(_), _) => {
                        return fail(input, CloseCode::Protocol, "a new message inside a message")
                    }
                    (None, Data::Reserved(_)) => {
                        return fail(input, CloseCode::Protocol, "unknown opcode")
                    }
                }
                if payload.is_empty() {
                    payload = data;
                } else {
                    payload.extend_from_slice(&data);
                }
                if !header.is_final {
                    continue;
                }
                let message = match first {
                    Some(Data::Text) if std::str::from_utf8(&payload).is_err() => {
                        Message::Fail(CloseCode::Invalid, "text message is not UTF-8")
                    }
                    Some(Data::Text) => Message::Text(payload),
                    _ => Message::Binary,
                };
                return Some((end, message));
            }
        }
    }
    // Empty fragments cost no payload: without this bound a client could make the server
    // keep (and parse again on every read) an unfinished message of any size.
    fail(input, CloseCode::Size, "too many fragments in one message")
}

/// A failure that consumes all the input (the connection is closing).
fn fail(input: &[u8], code: CloseCode, why: &'static str) -> Option<(usize, Message)> {
    Some((input.len(), Message::Fail(code, why)))
}

/// The code of a Close frame's payload (1000 when it has none).
fn close_code(payload: &[u8]) -> CloseCode {
    match payload {
        [a, b, ..] => CloseCode::from(u16::from_be_bytes([*a, *b])),
        _ => CloseCode::Normal,
    }
}

/// Unmasks a client frame's payload (RFC 6455 5.3).
fn unmask(data: &mut [u8], mask: [u8; 4]) {
    for (i, b) in data.iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame.
    fn client_frame(opcode: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
        let header = FrameHeader {
            is_final: fin,
            opcode,
            mask: Some([1, 2, 3, 4]),
            ..FrameHeader::default()
        };
        let mut out = Vec::new();
        header.format(payload.len() as u64, &mut out).unwrap();
        let mut data = payload.to_vec();
        unmask(&mut data, [1, 2, 3, 4]);
        out.extend_from_slice(&data);
        out
    }

    const TEXT: OpCode = OpCode::Data(Data::Text);
    const CONT: OpCode = OpCode::Data(Data::Continue);

    /// Empty continuation frames add no payload, but a message of more than MAX_FRAGMENTS
    /// frames is refused (the probe's case: they made the server keep and re-parse an
    /// unfinished message without end).
    #[test]
    fn a_message_of_too_many_empty_fragments_is_refused() {
        let mut input = client_frame(TEXT, false, b"{\"msgid\":20,");
        for _ in 0..MAX_FRAGMENTS - 2 {
            input.extend(client_frame(CONT, false, b""));
        }
        assert_eq!(
            next_message(&input, 1 << 20),
            None,
            "still within the bound"
        );
        input.extend(client_frame(CONT, false, b""));
        input.extend(client_frame(CONT, false, b""));
        match next_message(&input, 1 << 20) {
            Some((n, Message::Fail(CloseCode::Size, _))) => assert_eq!(n, input.len()),
            other => panic!("{other:?}"),
        }
        // MAX_FRAGMENTS frames ending in a final one are a message.
        let mut ok = client_frame(TEXT, false, b"{\"msgid\":20");
        for _ in 0..MAX_FRAGMENTS - 2 {
            ok.extend(client_frame(CONT, false, b""));
        }
        ok.extend(client_frame(CONT, true, b"}"));
        assert_eq!(
            next_message(&ok, 1 << 20),
            Some((ok.len(), Message::Text(b"{\"msgid\":20}".to_vec())))
        );
    }

    #[test]
    fn text_messages_whole_split_and_fragmented() {
        let f = client_frame(TEXT, true, b"{\"msgid\":20}");
        assert_eq!(next_message(&f[..5], 100), None);
        assert_eq!(
            next_message(&f, 100),
            Some((f.len(), Message::Text(b"{\"msgid\":20}".to_vec())))
        );
        let mut two = client_frame(TEXT, false, b"{\"msg");
        two.extend(client_frame(CONT, true, b"id\":20}"));
        assert_eq!(next_message(&two[..8], 100), None);
        assert_eq!(
            next_message(&two, 100),
            Some((two.len(), Message::Text(b"{\"msgid\":20}".to_vec())))
        );
    }

    #[test]
    fn oversize_unmasked_and_bad_utf8_fail() {
        let big = client_frame(TEXT, true, &[b'a'; 200]);
        // Refused from the header alone (2 bytes, 2 of length, 4 of mask).
        assert_eq!(next_message(&big[..7], 100), None);
        assert_eq!(
            next_message(&big[..8], 100),
            Some((8, Message::Fail(CloseCode::Size, "message too large")))
        );
        let mut unmasked = Vec::new();
        Frame::message(b"hi".to_vec(), TEXT, true)
            .format(&mut unmasked)
            .unwrap();
        assert!(matches!(
            next_message(&unmasked, 100),
            Some((_, Message::Fail(CloseCode::Protocol, _)))
        ));
        let bad = client_frame(TEXT, true, &[0xff, 0xfe]);
        assert!(matches!(
            next_message(&bad, 100),
            Some((_, Message::Fail(CloseCode::Invalid, _)))
        ));
    }

    #[test]
    fn the_prefix_is_a_text_frame_header() {
        let mut out = [0u8; MAX_PREFIX];
        assert_eq!(text_prefix(5, &mut out), 2);
        assert_eq!(&out[..2], &[0x81, 5]);
        assert_eq!(text_prefix(300, &mut out), 4);
        assert_eq!(&out[..4], &[0x81, 126, 1, 44]);
        assert_eq!(text_prefix(70_000, &mut out), 10);
    }
}
