//! Which tagged frames of a connection's output the socket has taken: the bookkeeping behind
//! `Handler::on_written` and the hand-back of unwritten frames through `on_undelivered`.
//!
//! A connection's output is one byte stream; its [`Buffer`](crate::Buffer) holds the part not
//! yet written. For each frame queued with a tag, [`TagQueue`] keeps where the frame starts and
//! where it ends (its terminator included) in that stream; each write moves the written offset
//! on, and the frames that end at or before it are done. Untagged frames are not recorded:
//! their bytes only move the offsets of the tagged frames behind them.
//!
//! Offsets are counted from an arbitrary origin, and `written` (the stream offset of the
//! buffer's first byte) is only kept up to date while a tagged frame is pending: when none is,
//! the next one is placed relative to whatever `written` holds, which is just as consistent.
//! So a write costs nothing beyond a check while no tagged frame is pending.
//!
//! A plain value used by its connection's loop thread only; no locking inside.

use bytes::Bytes;
use std::collections::VecDeque;

/// Entries kept allocated once the queue drains; a larger queue (after a burst) is released.
const KEEP_ENTRIES: usize = 64;

/// A tagged frame in the output: its bytes are `start..end - 1` of the output stream, its
/// terminator `end - 1`.
#[derive(Debug, Clone, Copy)]
struct Pending {
    start: u64,
    end: u64,
    tag: u64,
}

/// The tagged frames of one connection's output that are not fully written yet, in the order
/// queued (so in stream order), and the last one fully written since the last report. The
/// default is empty and has not allocated.
#[derive(Debug, Default)]
pub(crate) struct TagQueue {
    /// Stream offset of the output buffer's first byte: bytes written so far (while pending is
    /// not empty; see the module doc).
    written: u64,
    pending: VecDeque<Pending>,
    /// The bytes of the front pending frame once a write has taken part of it: they are gone
    /// from the buffer, and would be needed to hand the frame back.
    head: Option<Box<[u8]>>,
    /// The tag of the last frame fully written since [`take_written`](Self::take_written).
    done: Option<u64>,
}

impl TagQueue {
    /// Whether no tagged frame is pending (tests only).
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Records a tagged frame of `frame_len` bytes just appended, with its one-byte terminator,
    /// to an output buffer that now holds `buffered` unwritten bytes.
    pub(crate) fn push(&mut self, buffered: usize, frame_len: usize, tag: u64) {
        debug_assert!(
            buffered > frame_len,
            "the frame and its terminator are buffered"
        );
        let end = self.written + buffered as u64;
        self.pending.push_back(Pending {
            start: end - frame_len as u64 - 1,
            end,
            tag,
        });
    }

    /// Records that a write took the first `n` bytes of `unwritten` (the output buffer's
    /// contents, before it consumes them): frames that end within them are done; the bytes of
    /// a frame that they cut are saved, as the buffer is about to drop its first part.
    #[inline]
    pub(crate) fn wrote(&mut self, n: usize, unwritten: &[u8]) {
        if self.pending.is_empty() {
            return;
        }
        debug_assert!(n <= unwritten.len(), "wrote more than was buffered");
        let before = self.written;
        self.written += n as u64;
        while let Some(p) = self.pending.front() {
            if p.end > self.written {
                break;
            }
            self.done = Some(p.tag);
            self.head = None;
            self.pending.pop_front();
        }
        match self.pending.front() {
            None => {
                if self.pending.capacity() > KEEP_ENTRIES {
                    self.pending = VecDeque::new();
                }
            }
            Some(p) if p.start < self.written && self.head.is_none() => {
                // Its first bytes went out with this write (an earlier write would have saved
                // it), so the whole frame is still in `unwritten`.
                debug_assert!(p.start >= before, "a cut frame's bytes were not saved");
                let from = (p.start - before) as usize;
                let to = (p.end - 1 - before) as usize;
                self.head = Some(unwritten[from..to].into());
            }
            Some(_) => {}
        }
    }

    /// The tag of the last frame fully written since the last call, if any (the report
    /// `on_written` makes).
    pub(crate) fn take_written(&mut self) -> Option<u64> {
        self.done.take()
    }

    /// Hands every pending frame (without its terminator) to `f` with its tag, in the order
    /// queued, and empties the queue; `unwritten` is the output buffer's contents. For a
    /// connection that is closing: a frame partly written counts as not written.
    pub(crate) fn hand_back(&mut self, unwritten: &[u8], mut f: impl FnMut(Bytes, u64)) {
        // Only the front frame can have been cut.
        let mut head = self.head.take().map(Bytes::from);
        for p in self.pending.drain(..) {
            let frame = head.take().unwrap_or_else(|| {
                let from = (p.start - self.written) as usize;
                let to = (p.end - 1 - self.written) as usize;
                Bytes::copy_from_slice(&unwritten[from..to])
            });
            f(frame, p.tag);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{TagQueue, KEEP_ENTRIES};
    use crate::Buffer;
    use bytes::Bytes;

    /// An output buffer with its tag queue, driven the way the loop drives them.
    #[derive(Default)]
    struct Output {
        buffer: Buffer,
        tags: TagQueue,
        /// Everything "written to the socket".
        sent: Vec<u8>,
    }

    impl Output {
        fn queue(&mut self, frame: &[u8], tag: Option<u64>) {
            self.buffer.append(frame);
            self.buffer.append(b"\n");
            if let Some(tag) = tag {
                self.tags.push(self.buffer.len(), frame.len(), tag);
            }
        }

        /// A write that takes `n` bytes.
        fn write(&mut self, n: usize) -> Option<u64> {
            let n = n.min(self.buffer.len());
            self.sent.extend_from_slice(&self.buffer.peek()[..n]);
            self.tags.wrote(n, self.buffer.peek());
            self.buffer.consume(n);
            self.tags.take_written()
        }

        fn hand_back(&mut self) -> Vec<(Bytes, u64)> {
            let mut back = Vec::new();
            self.tags
                .hand_back(self.buffer.peek(), |frame, tag| back.push((frame, tag)));
            back
        }
    }

    #[test]
    fn a_frame_is_written_once_its_terminator_is() {
        let mut out = Output::default();
        out.queue(b"abc", Some(1)); // bytes 0..4
        assert_eq!(out.write(3), None, "the terminator is still buffered");
        assert_eq!(out.write(1), Some(1));
        assert!(out.tags.is_empty());
        assert_eq!(out.write(0), None, "reported once");
    }

    #[test]
    fn one_report_per_write_with_the_last_tag() {
        let mut out = Output::default();
        for tag in 1..=5 {
            out.queue(b"xx", Some(tag)); // 3 bytes each
        }
        assert_eq!(out.write(7), Some(2), "frames 1 and 2 end at 3 and 6");
        assert_eq!(out.write(8), Some(5));
        assert!(out.tags.is_empty());
    }

    #[test]
    fn untagged_frames_move_the_offsets_but_are_not_reported() {
        let mut out = Output::default();
        out.queue(b"plain", None); // 0..6
        out.queue(b"t1", Some(1)); // 6..9
        out.queue(&[b'p'; 100], None); // 9..110
        out.queue(b"t2", Some(2)); // 110..113
        out.queue(b"tail", None); // 113..118
        assert_eq!(out.write(8), None);
        assert_eq!(out.write(1), Some(1));
        assert_eq!(out.write(100), None, "t2 ends at 113");
        assert_eq!(out.write(4), Some(2));
        assert_eq!(out.write(5), None, "only untagged bytes left");
        assert!(out.buffer.is_empty());
    }

    #[test]
    fn offsets_stay_right_when_the_queue_drains_and_refills() {
        let mut out = Output::default();
        out.queue(b"a", Some(1));
        assert_eq!(out.write(2), Some(1));
        // Untagged traffic while nothing is pending does not update `written`...
        out.queue(b"untracked", None);
        assert_eq!(out.write(4), None);
        out.queue(b"b", Some(2));
        // ... and the next tagged frame is still placed right: 6 untagged bytes, then "b\n".
        assert_eq!(out.write(6), None);
        assert_eq!(out.write(1), None);
        assert_eq!(out.write(1), Some(2));
    }

    #[test]
    fn hand_back_returns_unwritten_frames_in_order_without_terminators() {
        let mut out = Output::default();
        out.queue(b"done", Some(1));
        out.queue(b"skip", None);
        out.queue(b"cut here", Some(2));
        out.queue(b"whole", Some(3));
        out.queue(b"", Some(4));
        // "done\n" (5) + "skip\n" (5) + "cut " (4): frame 2 is cut.
        assert_eq!(out.write(14), Some(1));
        let back = out.hand_back();
        let back: Vec<(&[u8], u64)> = back.iter().map(|(f, t)| (&f[..], *t)).collect();
        assert_eq!(
            back,
            vec![(&b"cut here"[..], 2), (&b"whole"[..], 3), (&b""[..], 4)]
        );
        assert!(out.tags.is_empty());
        assert_eq!(out.sent, b"done\nskip\ncut ");
    }

    #[test]
    fn a_frame_cut_over_several_writes_comes_back_whole() {
        let mut out = Output::default();
        out.queue(b"0123456789", Some(7));
        for _ in 0..4 {
            assert_eq!(out.write(2), None);
        }
        out.queue(b"next", Some(8));
        let back = out.hand_back();
        assert_eq!(back.len(), 2);
        assert_eq!((&back[0].0[..], back[0].1), (&b"0123456789"[..], 7));
        assert_eq!((&back[1].0[..], back[1].1), (&b"next"[..], 8));
    }

    #[test]
    fn a_frame_written_but_for_its_terminator_comes_back() {
        let mut out = Output::default();
        out.queue(b"abc", Some(1));
        assert_eq!(out.write(3), None);
        let back = out.hand_back();
        assert_eq!((&back[0].0[..], back[0].1), (&b"abc"[..], 1));
    }

    #[test]
    fn every_tag_is_written_or_handed_back_once_whatever_the_write_sizes() {
        // A small deterministic generator, so the test needs no dependency.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |m: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % m
        };
        for _ in 0..200 {
            let mut out = Output::default();
            let mut tag = 0;
            let mut last_written = 0;
            let mut queued = Vec::new();
            for _ in 0..next(40) {
                if next(3) == 0 {
                    let n = next(20) as usize;
                    if let Some(t) = out.write(n) {
                        assert!(t > last_written, "reports go forward");
                        last_written = t;
                    }
                } else {
                    let len = next(12) as usize;
                    let frame: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
                    if next(2) == 0 {
                        tag += 1;
                        out.queue(&frame, Some(tag));
                        queued.push((frame, tag));
                    } else {
                        out.queue(&frame, None);
                    }
                }
            }
            let back = out.hand_back();
            let written = queued.iter().filter(|(_, t)| *t <= last_written).count();
            assert_eq!(
                back.len(),
                queued.len() - written,
                "none missing, none twice"
            );
            for ((frame, tag), (back_frame, back_tag)) in queued[written..].iter().zip(&back) {
                assert_eq!((&frame[..], *tag), (&back_frame[..], *back_tag));
            }
            // Every frame reported written had its terminator sent.
            let terminators = out.sent.iter().filter(|&&b| b == b'\n').count();
            assert!(terminators >= written);
        }
    }

    #[test]
    fn a_big_queue_is_released_once_it_drains() {
        let mut out = Output::default();
        for tag in 0..1000 {
            out.queue(b"x", Some(tag));
        }
        assert!(out.tags.pending.capacity() >= 1000);
        assert_eq!(out.write(2000), Some(999));
        assert!(out.tags.pending.capacity() <= KEEP_ENTRIES);
        // A small one is kept: the next frames allocate nothing.
        out.queue(b"x", Some(1000));
        let kept = out.tags.pending.capacity();
        assert_eq!(out.write(2), Some(1000));
        assert_eq!(out.tags.pending.capacity(), kept);
    }
}
