//! Bytes ⇄ JSON frames.
//!
//! The old C++ client sends each JSON object followed by a NUL byte; `nc` users type lines; a
//! pipelining client may send several objects in one write with nothing in between, and TCP may
//! split any of them across reads. So a frame is found by *structure*, not by a delimiter: skip
//! separators (NUL and JSON whitespace), then match braces — outside strings, honouring
//! escapes — until the object closes. One delimiter is honoured all the same: a NUL byte can
//! never be part of JSON (not even inside a string), so it always ends a frame, and an object
//! still open at a NUL is invalid up to that NUL; the bytes after it are a new start. (Without
//! this, one unclosed `{` from the old client would swallow everything it sent after it.)
//! Nothing here allocates or knows about sockets.

/// Frames at most this large are accepted by default (1 MiB).
pub const DEFAULT_MAX_FRAME: usize = 1 << 20;

/// What [`next_frame`] found at the front of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// A whole object at `input[start..end]`; `consumed` bytes (separators before it and one
    /// NUL or newline right after it) may be dropped from the input.
    Frame {
        /// First byte of the object (`{`).
        start: usize,
        /// One past its last byte (`}`).
        end: usize,
        /// Bytes to drop from the input.
        consumed: usize,
    },
    /// No whole object yet; `skip` leading separator bytes may be dropped meanwhile.
    Incomplete {
        /// Bytes to drop from the input.
        skip: usize,
    },
    /// A run of bytes that cannot start an object (its line through the next NUL or newline,
    /// or up to a `{` on that line whose object closes on it; see `junk`), or an object still
    /// open at a NUL byte (up to and including that NUL): drop `consumed` bytes and report an
    /// error.
    Invalid {
        /// Bytes to drop from the input.
        consumed: usize,
    },
    /// The object at the front is already longer than the limit: the peer must be cut off.
    TooLarge,
}

/// Whether `b` may stand between frames.
fn is_separator(b: u8) -> bool {
    matches!(b, 0 | b' ' | b'\t' | b'\r' | b'\n')
}

/// Finds the next frame at the front of `input`, allowing objects up to `max_frame` bytes.
pub fn next_frame(input: &[u8], max_frame: usize) -> Next {
    let Some(start) = input.iter().position(|&b| !is_separator(b)) else {
        return Next::Incomplete { skip: input.len() };
    };
    if input[start] != b'{' {
        return junk(input, start, max_frame);
    }
    let limit = input.len().min(start.saturating_add(max_frame));
    match scan(&input[..limit], start) {
        Scan::Closed(end) => {
            let consumed = match input.get(end) {
                Some(0) | Some(b'\n') => end + 1,
                _ => end,
            };
            Next::Frame {
                start,
                end,
                consumed,
            }
        }
        Scan::Nul(at) => Next::Invalid { consumed: at + 1 },
        Scan::Open if input.len() - start >= max_frame => Next::TooLarge,
        Scan::Open => Next::Incomplete { skip: start },
    }
}

/// Junk at `input[start]` (a byte that cannot start an object): one [`Next::Invalid`] per
/// run. A run is its line (through the next NUL or newline), except that when a `{` on that
/// line opens an object that also closes on it, the run ends just before that `{`: so
/// `oops{..}{..}` loses only `oops`. An object that does not close on the junk's line belongs
/// to the junk (a newline never ends an object, so it would swallow the lines after it). A run
/// whose line has not ended yet waits for more input, up to `max_frame` bytes, so junk split
/// across reads is still one error.
fn junk(input: &[u8], start: usize, max_frame: usize) -> Next {
    let rest = &input[start..];
    let line_end = rest.iter().position(|&b| b == 0 || b == b'\n');
    let line = &rest[..line_end.unwrap_or(rest.len())];
    if let Some(brace) = line.iter().position(|&b| b == b'{') {
        if let Scan::Closed(_) = scan(line, brace) {
            return Next::Invalid {
                consumed: start + brace,
            };
        }
    }
    match line_end {
        Some(at) => Next::Invalid {
            consumed: start + at + 1,
        },
        None if rest.len() >= max_frame => Next::Invalid {
            consumed: input.len(),
        },
        None => Next::Incomplete { skip: start },
    }
}

/// How the object opening at `input[start]` (a `{`) ends within `input`.
enum Scan {
    /// Its closing `}` is at `end - 1`.
    Closed(usize),
    /// A NUL byte at this index comes first.
    Nul(usize),
    /// Neither: it goes on past `input`.
    Open,
}

/// Matches braces outside strings, honouring escapes, from `input[start]`.
fn scan(input: &[u8], start: usize) -> Scan {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, &b) in input.iter().enumerate().skip(start) {
        if b == 0 {
            return Scan::Nul(i);
        }
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Scan::Closed(i + 1);
                }
            }
            _ => {}
        }
    }
    Scan::Open
}

/// Whether the peer ends its frames with NUL: true when a NUL byte sits among the bytes a
/// frame consumed (the old C++ client does this, and reads replies as C strings).
pub fn uses_nul(consumed: &[u8]) -> bool {
    consumed.contains(&0)
}

/// One item of [`Frames`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item<'a> {
    /// A whole object; `nul` when a NUL byte was among the bytes it consumed (see [`uses_nul`]).
    Frame {
        /// The object's bytes, `{` to `}`.
        bytes: &'a [u8],
        /// Whether the peer terminated it (or what came before it) with NUL.
        nul: bool,
    },
    /// Bytes that cannot start an object (already skipped).
    Invalid(&'a [u8]),
    /// The object at the front is longer than the limit; nothing more can be read.
    TooLarge,
}

/// The one frame splitter: every whole frame at the front of a buffer, in order. After the
/// iterator ends, [`consumed`](Frames::consumed) says how many bytes may be dropped (the rest
/// is the start of a frame still arriving).
#[derive(Debug)]
pub struct Frames<'a> {
    input: &'a [u8],
    pos: usize,
    max_frame: usize,
    done: bool,
    saw_nul: bool,
}

impl<'a> Frames<'a> {
    /// Frames of at most `max_frame` bytes at the front of `input`.
    pub fn new(input: &'a [u8], max_frame: usize) -> Self {
        Frames {
            input,
            pos: 0,
            max_frame,
            done: false,
            saw_nul: false,
        }
    }

    /// Whether a NUL byte was among the bytes consumed so far (see [`uses_nul`]): found
    /// without a second pass over the frames, since a NUL can only stand between them.
    pub fn saw_nul(&self) -> bool {
        self.saw_nul
    }

    /// Bytes of the input consumed so far (whole frames, invalid bytes, separators).
    pub fn consumed(&self) -> usize {
        self.pos
    }
}

impl<'a> Iterator for Frames<'a> {
    type Item = Item<'a>;

    fn next(&mut self) -> Option<Item<'a>> {
        if self.done {
            return None;
        }
        let rest = &self.input[self.pos..];
        match next_frame(rest, self.max_frame) {
            Next::Frame {
                start,
                end,
                consumed,
            } => {
                self.pos += consumed;
                // No NUL inside an object (it would be Invalid): only the separators before it
                // and the one byte after it can hold one.
                let nul = uses_nul(&rest[..start]) || rest[end..consumed].contains(&0);
                self.saw_nul |= nul;
                Some(Item::Frame {
                    bytes: &rest[start..end],
                    nul,
                })
            }
            Next::Invalid { consumed } => {
                self.pos += consumed;
                self.saw_nul |= uses_nul(&rest[..consumed]);
                Some(Item::Invalid(&rest[..consumed]))
            }
            Next::Incomplete { skip } => {
                self.pos += skip;
                self.saw_nul |= uses_nul(&rest[..skip]);
                self.done = true;
                None
            }
            Next::TooLarge => {
                self.done = true;
                Some(Item::TooLarge)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(input: &[u8]) -> (Vec<String>, usize) {
        let mut out = Vec::new();
        let mut invalid = 0;
        for item in Frames::new(input, 64) {
            match item {
                Item::Frame { bytes, .. } => out.push(String::from_utf8(bytes.to_vec()).unwrap()),
                Item::Invalid(_) => invalid += 1,
                Item::TooLarge => break,
            }
        }
        (out, invalid)
    }

    #[test]
    fn frames_report_nul_and_what_may_be_dropped() {
        let input = b"{\"a\":1}\n\0{\"b\":2}\0 {\"c\":";
        let mut it = Frames::new(input, 64);
        assert_eq!(
            it.next(),
            Some(Item::Frame {
                bytes: b"{\"a\":1}",
                nul: false
            })
        );
        assert_eq!(
            it.next(),
            Some(Item::Frame {
                bytes: b"{\"b\":2}",
                nul: true
            })
        );
        assert_eq!(it.next(), None);
        assert_eq!(it.next(), None);
        assert_eq!(&input[it.consumed()..], b"{\"c\":");
        assert!(it.saw_nul());
        let mut plain = Frames::new(b"{}\n  \n", 64);
        while plain.next().is_some() {}
        assert!(!plain.saw_nul());
        let mut trailing = Frames::new(b"{}\n \0", 64);
        while trailing.next().is_some() {}
        assert!(trailing.saw_nul(), "a NUL after the last frame counts");
        let mut big = Frames::new(b"{\"m\":\"xxxxxxxxxx", 8);
        assert_eq!(
            (big.next(), big.next(), big.consumed()),
            (Some(Item::TooLarge), None, 0)
        );
    }

    #[test]
    fn splits_nul_newline_and_back_to_back_objects() {
        let (f, bad) = frames(b"{\"a\":1}\0{\"b\":2}\n{\"c\":3}{\"d\":4}  {\"e\":5}");
        assert_eq!(
            f,
            [
                "{\"a\":1}",
                "{\"b\":2}",
                "{\"c\":3}",
                "{\"d\":4}",
                "{\"e\":5}"
            ]
        );
        assert_eq!(bad, 0);
    }

    #[test]
    fn braces_and_quotes_inside_strings_do_not_count() {
        let input = br#"{"m":"}{\"\\","n":{"x":"{"}}{"z":1}"#;
        let (f, _) = frames(input);
        assert_eq!(f, [r#"{"m":"}{\"\\","n":{"x":"{"}}"#, r#"{"z":1}"#]);
    }

    #[test]
    fn a_split_object_waits_for_its_end() {
        let whole = b"\0\n{\"msg\":\"hel";
        assert_eq!(next_frame(whole, 64), Next::Incomplete { skip: 2 });
        let mut joined = whole[2..].to_vec();
        joined.extend_from_slice(b"lo\"}\0");
        assert_eq!(
            next_frame(&joined, 64),
            Next::Frame {
                start: 0,
                end: 15,
                consumed: 16
            }
        );
    }

    #[test]
    fn garbage_is_skipped_to_the_next_separator() {
        let (f, bad) = frames(b"hello world\n{\"a\":1}\0[1,2]\0{\"b\":2}");
        assert_eq!(f, ["{\"a\":1}", "{\"b\":2}"]);
        assert_eq!(bad, 2);
    }

    #[test]
    fn garbage_before_an_object_on_the_same_line_ends_at_its_brace() {
        // Before, the junk ran to the newline and took both requests with it.
        let (f, bad) = frames(b"xx{\"a\":1}{\"b\":2}\n");
        assert_eq!(f, ["{\"a\":1}", "{\"b\":2}"]);
        assert_eq!(bad, 1);
        assert_eq!(next_frame(b"  ]x{}", 64), Next::Invalid { consumed: 4 });
    }

    #[test]
    fn an_object_that_does_not_close_on_the_junk_s_line_is_junk() {
        // A newline never ends an object: read as one, these would swallow the next lines.
        for line in [
            &b"hi {there\n"[..],
            b"\"a{b\" \n",
            b"junk{\"a\n",
            b"x{{\"a\":1}\n",
            b"\"note: {\\\"msgid\\\":6}\"\n",
        ] {
            let mut input = line.to_vec();
            input.extend_from_slice(b"{\"b\":2}\n{\"c\":3}\n");
            let (f, bad) = frames(&input);
            assert_eq!(
                f,
                ["{\"b\":2}", "{\"c\":3}"],
                "{:?}",
                String::from_utf8_lossy(line)
            );
            assert_eq!(bad, 1, "{:?}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn junk_split_across_reads_is_one_run() {
        // Its line has not ended: wait, then one error for the whole run.
        assert_eq!(next_frame(b"oo", 64), Next::Incomplete { skip: 0 });
        assert_eq!(next_frame(b"oops {\"a", 64), Next::Incomplete { skip: 0 });
        let (f, bad) = frames(b"oops {\"a\":1}\n");
        assert_eq!((f.as_slice(), bad), (&["{\"a\":1}".to_string()][..], 1));
        // ... up to the frame limit, then it goes as it is.
        assert_eq!(next_frame(b"abcd", 4), Next::Invalid { consumed: 4 });
    }

    #[test]
    fn oversized_objects_are_reported() {
        let mut big = b"{\"m\":\"".to_vec();
        big.extend(std::iter::repeat_n(b'x', 100));
        assert_eq!(next_frame(&big, 64), Next::TooLarge);
        assert_eq!(next_frame(&big[..30], 64), Next::Incomplete { skip: 0 });
    }

    #[test]
    fn a_nul_ends_an_unclosed_object_and_the_next_frame_is_read() {
        let (f, bad) = frames(b"{\"msgid\":1,\"id\":1\0{\"a\":1}\0{\"s\":\"open\0{\"b\":2}");
        assert_eq!(f, ["{\"a\":1}", "{\"b\":2}"]);
        assert_eq!(bad, 2);
        assert_eq!(next_frame(b"{\"x\":\0", 64), Next::Invalid { consumed: 6 });
    }

    #[test]
    fn only_separators_are_dropped() {
        assert_eq!(next_frame(b"\0\0 \n", 64), Next::Incomplete { skip: 4 });
        assert_eq!(next_frame(b"", 64), Next::Incomplete { skip: 0 });
        assert!(uses_nul(b"{}\0"));
        assert!(!uses_nul(b"{}\n"));
    }
}
