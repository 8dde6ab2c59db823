//! `--ws` / `--compare-ws`: the measured connections speak the chat protocol over WebSocket
//! (the server's `--http` front, `/ws`), one JSON request per masked text message out, one
//! text message per reply or push in. Frame headers come from tungstenite's codec; only the
//! masking and the handshake request are written here.
//!
//! The measuring loop keeps working on plain frames: [`frame_all`] turns the frames a scenario
//! queued into WebSocket messages just before the write, and [`unframe`] turns what the server
//! sent back into the frames' bytes right after the read, so every scenario runs unchanged.

use crate::conn::split_frames;
use crate::setup::{BenchUser, PASSWORD};
use crate::stamp;
use crate::{client_err, io_err, Result};
use clusterchat_proto::client::ClientError;
use clusterchat_proto::msgid;
use clusterchat_proto::request::{Login, Request};
use std::io::{Cursor, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

/// The mask of every frame chatbench sends (a client must mask; the key's value costs the
/// server nothing more or less).
const MASK: [u8; 4] = [0x5a, 0x11, 0x3c, 0x7e];

/// Appends one masked text message with `payload` to `out`.
pub fn push_text(payload: &[u8], out: &mut Vec<u8>) {
    let header = FrameHeader {
        opcode: OpCode::Data(Data::Text),
        mask: Some(MASK),
        ..FrameHeader::default()
    };
    header
        .format(payload.len() as u64, out)
        .expect("writing to a Vec");
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i & 3]));
}

/// Moves every whole frame of `frames` (JSON objects the scenario queued) into `out`, one
/// text message each.
pub fn frame_all(frames: &mut Vec<u8>, out: &mut Vec<u8>) {
    let consumed = split_frames(frames, |f| push_text(f, out)).unwrap_or(frames.len());
    frames.drain(..consumed);
}

/// Takes the whole messages at the front of `raw` (what the server sent) and appends their
/// payloads to `frames`. False when the server sent a Close (or broke the protocol).
pub fn unframe(raw: &mut Vec<u8>, frames: &mut Vec<u8>) -> bool {
    let mut cursor = Cursor::new(&raw[..]);
    let mut taken = 0;
    let mut open = true;
    loop {
        let (header, len) = match FrameHeader::parse(&mut cursor) {
            Ok(Some(h)) => h,
            Ok(None) => break,
            Err(_) => {
                open = false;
                break;
            }
        };
        let start = cursor.position() as usize;
        let end = start + len as usize;
        if raw.len() < end {
            break;
        }
        match header.opcode {
            OpCode::Data(_) => frames.extend_from_slice(&raw[start..end]),
            OpCode::Control(Control::Close) => open = false,
            OpCode::Control(_) => {}
        }
        cursor.set_position(end as u64);
        taken = end;
        if !open {
            break;
        }
    }
    raw.drain(..taken);
    open
}

/// Upgrades `stream` (connected to `http`) to a WebSocket on `/ws`.
pub fn handshake(stream: &mut TcpStream, http: SocketAddr) -> std::io::Result<()> {
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: {http}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: Y2hhdGJlbmNoLWtleS0wMQ==\r\n\r\n"
    );
    stream.write_all(req.as_bytes())?;
    // Byte by byte up to the blank line: nothing of what follows is read here.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte)? == 0 {
            return Err(std::io::Error::other(
                "closed during the WebSocket handshake",
            ));
        }
        head.push(byte[0]);
        if head.len() > 8192 {
            return Err(std::io::Error::other("handshake response too large"));
        }
    }
    if !head.starts_with(b"HTTP/1.1 101") {
        let line = String::from_utf8_lossy(&head);
        return Err(std::io::Error::other(format!(
            "no WebSocket upgrade: {}",
            line.lines().next().unwrap_or("")
        )));
    }
    Ok(())
}

/// Connects to `http`, upgrades, and logs `user` in (the old client's login, not sync).
/// Returns the socket, the frame bytes that followed the LOGIN_ACK (none for a fresh user)
/// and the raw WebSocket bytes not yet whole.
pub fn login(http: SocketAddr, user: &BenchUser) -> Result<(TcpStream, Vec<u8>, Vec<u8>)> {
    let what = format!("logging in {} over WebSocket", user.name);
    let mut stream = TcpStream::connect_timeout(&http, Duration::from_secs(10))
        .map_err(io_err(format!("connecting to {http}")))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(io_err(what.clone()))?;
    stream.set_nodelay(true).map_err(io_err(what.clone()))?;
    handshake(&mut stream, http).map_err(io_err(what.clone()))?;
    let login = Login {
        id: Some(user.id),
        name: None,
        password: PASSWORD.into(),
        sync: false,
        takeover: false,
    }
    .encode()
    .to_string();
    let mut out = Vec::new();
    push_text(login.as_bytes(), &mut out);
    stream.write_all(&out).map_err(io_err(what.clone()))?;
    let (mut raw, mut frames) = (Vec::new(), Vec::new());
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match stream.read(&mut chunk) {
            Ok(0) => return Err(client_err(what)(ClientError::Closed)),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return Err(client_err(what)(ClientError::Timeout)),
        };
        raw.extend_from_slice(&chunk[..n]);
        if !unframe(&mut raw, &mut frames) {
            return Err(client_err(what)(ClientError::Closed));
        }
        let mut ack: Option<(i64, String)> = None;
        split_frames(&frames, |f| {
            if ack.is_none() && matches!(stamp::msgid(f), Some(msgid::LOGIN_ACK | msgid::ERROR)) {
                let v: serde_json::Value = serde_json::from_slice(f).unwrap_or_default();
                let errmsg = v["errmsg"].as_str().unwrap_or("").to_string();
                ack = Some((v["errno"].as_i64().unwrap_or(0), errmsg));
            }
        });
        if let Some((errno, errmsg)) = ack {
            if errno != 0 {
                return Err(client_err(what)(ClientError::Refused { errno, errmsg }));
            }
            // Fresh bench users (not sync) have nothing queued behind their LOGIN_ACK.
            return Ok((stream, Vec::new(), raw));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queued_frames_become_masked_messages_and_back() {
        let mut queued = b"{\"msgid\":20}\0{\"msgid\":6,\"msg\":\"hi\"}\0".to_vec();
        let mut wire = Vec::new();
        frame_all(&mut queued, &mut wire);
        assert!(queued.is_empty());
        assert_eq!(wire[0], 0x81, "a final text frame");
        assert_eq!(wire[1], 0x80 | 12, "masked, 12 bytes");
        // Unmask what was sent, as the server would, then frame it back unmasked.
        let payload: Vec<u8> = wire[6..18]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ MASK[i & 3])
            .collect();
        assert_eq!(payload, b"{\"msgid\":20}");
        let mut from_server = vec![0x81, 13];
        from_server.extend_from_slice(b"{\"msgid\":21}\n");
        from_server.extend_from_slice(&[0x81, 5, b'{']); // a partial second message
        let mut frames = Vec::new();
        assert!(unframe(&mut from_server, &mut frames));
        assert_eq!(frames, b"{\"msgid\":21}\n");
        assert_eq!(from_server, [0x81, 5, b'{'], "the partial message is kept");
        assert!(
            !unframe(&mut vec![0x88, 0], &mut frames),
            "a Close ends the connection"
        );
    }
}
