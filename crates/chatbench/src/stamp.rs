//! What the bench puts in a chat message's text, and the few fields it reads back.
//!
//! The sender writes `round.sender.seq.t_ns` as the `msg` text: `t_ns` is nanoseconds on the
//! process-wide monotonic clock [`clock_ns`], so the receiver (same process, maybe another
//! thread) measures send-to-receipt latency without comparing wall clocks. `round` lets a
//! receiver drop stragglers of an earlier round on a reused connection.
//!
//! Incoming frames are not parsed as JSON: on the hot path the bench only needs `msgid` and the
//! `msg` text, so it scans for those two keys (a full parse would cost more than the server's
//! own work per message). The scan assumes what the bench itself sent: keys not repeated inside
//! strings and a `msg` without escapes.

use std::sync::OnceLock;
use std::time::Instant;

/// Nanoseconds since the first call in this process, on the monotonic clock.
pub fn clock_ns() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// A decoded message stamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Which measured round (or run) sent it.
    pub round: u64,
    /// The sender's index within the scenario.
    pub sender: u64,
    /// The sender's sequence number, from 0.
    pub seq: u64,
    /// Send time, [`clock_ns`].
    pub t_ns: u64,
}

impl Stamp {
    /// Appends the text form (`round.sender.seq.t_ns`, digits and dots only: nothing to escape).
    pub fn encode(&self, out: &mut Vec<u8>) {
        for (i, n) in [self.round, self.sender, self.seq, self.t_ns]
            .iter()
            .enumerate()
        {
            if i > 0 {
                out.push(b'.');
            }
            push_u64(out, *n);
        }
    }

    /// Reads the text form back; `None` for anything else.
    pub fn decode(text: &[u8]) -> Option<Stamp> {
        let mut parts = text.split(|&b| b == b'.');
        let mut next = || parts.next().and_then(parse_u64);
        let stamp = Stamp {
            round: next()?,
            sender: next()?,
            seq: next()?,
            t_ns: next()?,
        };
        parts.next().is_none().then_some(stamp)
    }
}

/// Appends the decimal digits of `n` (no allocation, unlike `write!`).
pub fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Appends the decimal digits of `n`, with a sign when negative.
pub fn push_i64(out: &mut Vec<u8>, n: i64) {
    if n < 0 {
        out.push(b'-');
    }
    push_u64(out, n.unsigned_abs());
}

fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &b| {
        b.is_ascii_digit()
            .then(|| acc.checked_mul(10)?.checked_add(u64::from(b - b'0')))?
    })
}

/// The bytes after `"key"`, optional whitespace and the colon (and whitespace after it).
fn value_after<'a>(frame: &'a [u8], key: &str) -> Option<&'a [u8]> {
    let k = key.as_bytes();
    let mut from = 0;
    while from + k.len() + 2 <= frame.len() {
        let rest = &frame[from..];
        let pos = rest
            .windows(k.len() + 2)
            .position(|w| w[0] == b'"' && w[k.len() + 1] == b'"' && &w[1..=k.len()] == k)?;
        let after = &rest[pos + k.len() + 2..];
        let trimmed = trim_start(after);
        if let Some(value) = trimmed.strip_prefix(b":") {
            return Some(trim_start(value));
        }
        from += pos + 1;
    }
    None
}

fn trim_start(s: &[u8]) -> &[u8] {
    let n = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    &s[n..]
}

/// Sorts an incoming frame for a measuring loop: true for a `wanted` chat frame; an ERROR
/// reply is counted in `errors` (the first one kept in `first_error`); anything else is
/// ignored.
pub fn wanted_frame(
    frame: &[u8],
    wanted: i64,
    errors: &mut u64,
    first_error: &mut Option<String>,
) -> bool {
    match msgid(frame) {
        Some(id) if id == wanted => true,
        Some(clusterchat_proto::msgid::ERROR) => {
            *errors += 1;
            first_error.get_or_insert_with(|| String::from_utf8_lossy(frame).into_owned());
            false
        }
        _ => false,
    }
}

/// The frame's integer `msgid`, found by scanning.
pub fn msgid(frame: &[u8]) -> Option<i64> {
    let v = value_after(frame, "msgid")?;
    let end = v
        .iter()
        .position(|b| !(b.is_ascii_digit() || *b == b'-'))
        .unwrap_or(v.len());
    std::str::from_utf8(&v[..end]).ok()?.parse().ok()
}

/// The frame's integer field `key` (`"seq"`, `"id"`, `"groupid"`…), found by scanning; `None`
/// when absent or not an integer.
pub fn int_field(frame: &[u8], key: &str) -> Option<i64> {
    let v = value_after(frame, key)?;
    let (neg, digits) = match v.strip_prefix(b"-") {
        Some(rest) => (true, rest),
        None => (false, v),
    };
    let end = digits
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(digits.len());
    let n = parse_u64(&digits[..end])?;
    let n = i64::try_from(n).ok()?;
    Some(if neg { -n } else { n })
}

/// The raw text of the frame's `msg` string (up to the next quote: no escapes expected).
pub fn msg_text(frame: &[u8]) -> Option<&[u8]> {
    let v = value_after(frame, "msg")?.strip_prefix(b"\"")?;
    let end = v.iter().position(|&b| b == b'"')?;
    Some(&v[..end])
}

#[cfg(test)]
mod tests {

    #[test]
    fn frames_are_sorted_and_errors_counted() {
        let (mut errors, mut first) = (0, None);
        assert!(wanted_frame(
            br#"{"msgid":6,"msg":"x"}"#,
            6,
            &mut errors,
            &mut first
        ));
        assert!(!wanted_frame(
            br#"{"msgid":10,"msg":"x"}"#,
            6,
            &mut errors,
            &mut first
        ));
        assert!(!wanted_frame(
            br#"{"msgid":13,"errno":104}"#,
            6,
            &mut errors,
            &mut first
        ));
        assert!(!wanted_frame(
            br#"{"msgid":13,"errno":105}"#,
            6,
            &mut errors,
            &mut first
        ));
        assert_eq!(errors, 2);
        assert_eq!(first.as_deref(), Some(r#"{"msgid":13,"errno":104}"#));
    }

    use super::*;

    #[test]
    fn stamps_round_trip() {
        let s = Stamp {
            round: 3,
            sender: 17,
            seq: 0,
            t_ns: u64::MAX,
        };
        let mut buf = Vec::new();
        s.encode(&mut buf);
        assert_eq!(buf, format!("3.17.0.{}", u64::MAX).as_bytes());
        assert_eq!(Stamp::decode(&buf), Some(s));
    }

    #[test]
    fn foreign_text_is_not_a_stamp() {
        for bad in [
            &b""[..],
            b"hello",
            b"1.2.3",
            b"1.2.3.4.5",
            b"1.2.x.4",
            b"1..3.4",
        ] {
            assert_eq!(Stamp::decode(bad), None, "{:?}", bad);
        }
        assert_eq!(Stamp::decode(b"99999999999999999999.1.1.1"), None);
    }

    #[test]
    fn scanner_finds_msgid_and_msg() {
        let f = br#"{"msgid":6,"id":4,"name":"a","toid":5,"msg":"1.2.3.4","time":"x"}"#;
        assert_eq!(msgid(f), Some(6));
        assert_eq!(msg_text(f), Some(&b"1.2.3.4"[..]));
        let spaced = br#"{ "offlinemsg" : [], "msg" : "hi", "msgid" : 10 }"#;
        assert_eq!(msgid(spaced), Some(10));
        assert_eq!(msg_text(spaced), Some(&b"hi"[..]));
        let err = br#"{"msgid":13,"errno":104,"errmsg":"\"msg\" x"}"#;
        assert_eq!(msgid(err), Some(13));
        assert_eq!(msg_text(err), None);
        assert_eq!(msgid(b"{}"), None);
    }

    #[test]
    fn integer_fields_are_found() {
        let f = br#"{"msgid":6,"id":4,"name":"a","toid":5,"msg":"1.2.3.4","time":"x","seq":17}"#;
        assert_eq!(int_field(f, "seq"), Some(17));
        assert_eq!(int_field(f, "id"), Some(4));
        assert_eq!(int_field(f, "toid"), Some(5));
        assert_eq!(int_field(f, "groupid"), None);
        assert_eq!(int_field(f, "name"), None);
        let ack = br#"{"msgid":12,"errno":0,"request":10,"seq":3,"groupid":-9,"reqid":7}"#;
        assert_eq!(int_field(ack, "seq"), Some(3));
        assert_eq!(int_field(ack, "groupid"), Some(-9));
        assert_eq!(int_field(br#"{"seq": 5 }"#, "seq"), Some(5));
        assert_eq!(int_field(br#"{"seq":"5"}"#, "seq"), None);
    }

    #[test]
    fn integers_are_written_plainly() {
        let mut b = Vec::new();
        push_u64(&mut b, 0);
        b.push(b' ');
        push_i64(&mut b, -42);
        b.push(b' ');
        push_u64(&mut b, 1234567890);
        assert_eq!(b, b"0 -42 1234567890");
    }

    #[test]
    fn clock_moves_forward() {
        let a = clock_ns();
        let b = clock_ns();
        assert!(b >= a);
    }
}
