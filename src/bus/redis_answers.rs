//! The publisher's answers from Redis: bytes read from its connection, cut into whole RESP
//! values.
//!
//! The publisher waits for answers and new messages at once (`poll(2)` on the socket), so it
//! must know whether a whole answer is already read before it waits: a parser that keeps
//! read-ahead bytes of its own (the redis crate's does) would hide an answer that arrived
//! with the one before it, and the thread would wait on a socket with nothing more to come.
//! Here the read-ahead stays in one buffer that the thread can see, and a value is parsed
//! only once all of it is there.

use std::io::Read;

/// Read-ahead bytes of a connection.
pub(super) struct Answers {
    buf: Vec<u8>,
    /// Where the first unparsed byte is.
    start: usize,
}

impl Answers {
    pub(super) fn new() -> Answers {
        Answers {
            buf: Vec::new(),
            start: 0,
        }
    }

    /// Reads what `from` has (one read; call it when the socket is readable). `Ok(0)`: the
    /// connection was closed.
    pub(super) fn fill(&mut self, mut from: impl Read) -> std::io::Result<usize> {
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start >= 64 * 1024 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let mut chunk = [0u8; 16 * 1024];
        let n = from.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// The next whole answer, if all of it was read; `Some(Err)`: the bytes are not RESP (the
    /// connection is of no more use).
    pub(super) fn next(&mut self) -> Option<Result<redis::Value, String>> {
        let rest = &self.buf[self.start..];
        let len = match value_len(rest) {
            Ok(Some(len)) => len,
            Ok(None) => return None,
            Err(e) => return Some(Err(e)),
        };
        let value = redis::parse_redis_value(&rest[..len]).map_err(|e| e.to_string());
        self.start += len;
        Some(value)
    }

    /// Whether a whole answer (or bytes that are not RESP) waits to be taken.
    #[cfg(test)]
    fn has_next(&self) -> bool {
        !matches!(value_len(&self.buf[self.start..]), Ok(None))
    }
}

/// The length of the RESP2 value at the start of `b`: `Ok(None)` if not all of it is there.
fn value_len(b: &[u8]) -> Result<Option<usize>, String> {
    let Some(end) = b.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let line = end + 2;
    let number = || -> Result<i64, String> {
        std::str::from_utf8(&b[1..end])
            .ok()
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("bad RESP length {:?}", String::from_utf8_lossy(&b[..end])))
    };
    match b[0] {
        b'+' | b'-' | b':' => Ok(Some(line)),
        b'$' => match number()? {
            n if n < 0 => Ok(Some(line)),
            n => {
                let len = line + n as usize + 2;
                Ok((b.len() >= len).then_some(len))
            }
        },
        b'*' => {
            let mut at = line;
            for _ in 0..number()?.max(0) {
                match value_len(&b[at..])? {
                    Some(len) => at += len,
                    None => return Ok(None),
                }
            }
            Ok(Some(at))
        }
        other => Err(format!("unexpected RESP type byte {other:#x}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::Value;

    /// Answers read in pieces come out whole, one at a time, in order, and only once all
    /// of each is there.
    #[test]
    fn answers_come_out_whole_whatever_the_reads_cut() {
        let wire: &[u8] = b":1\r\n*2\r\n*1\r\n:0\r\n*2\r\n$4\r\nn2/1\r\n$-1\r\n+OK\r\n";
        for cut in 1..wire.len() {
            let mut a = Answers::new();
            let mut got = Vec::new();
            for piece in [&wire[..cut], &wire[cut..]] {
                a.fill(piece).unwrap();
                while let Some(v) = a.next() {
                    got.push(v.unwrap());
                }
            }
            assert!(!a.has_next());
            assert_eq!(got.len(), 3, "cut at {cut}");
            assert_eq!(got[0], Value::Int(1));
            assert_eq!(
                got[1],
                Value::Array(vec![
                    Value::Array(vec![Value::Int(0)]),
                    Value::Array(vec![Value::BulkString(b"n2/1".to_vec()), Value::Nil]),
                ])
            );
            assert_eq!(got[2], Value::Okay);
        }
    }

    #[test]
    fn bytes_that_are_not_resp_are_an_error() {
        let mut a = Answers::new();
        a.fill(&b"?what\r\n"[..]).unwrap();
        assert!(a.has_next());
        assert!(a.next().unwrap().is_err());
        let mut a = Answers::new();
        a.fill(&b"$x\r\n"[..]).unwrap();
        assert!(a.next().unwrap().is_err());
    }
}
