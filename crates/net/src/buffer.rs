//! A growable byte buffer with a read cursor: `muduo::net::Buffer`, reduced to what a
//! connection needs for its leftover input and its pending output.

/// Bytes appended at the back and consumed from the front (muduo's `append`, `peek`,
/// `retrieve`; no cheap prepend). Memory is given back once the buffer drains after a burst,
/// so an idle connection costs (almost) nothing. A plain value: its owner uses it (the loop
/// thread, for a connection's buffers); no locking inside.
#[derive(Debug, Default)]
pub struct Buffer {
    data: Vec<u8>,
    start: usize,
}

/// Capacity kept after draining; anything larger is released.
const KEEP_CAPACITY: usize = 4096;

impl Buffer {
    /// An empty buffer that has not allocated.
    pub fn new() -> Self {
        Buffer::default()
    }

    /// The unconsumed bytes.
    pub fn peek(&self) -> &[u8] {
        &self.data[self.start..]
    }

    /// Number of unconsumed bytes.
    pub fn len(&self) -> usize {
        self.data.len() - self.start
    }

    /// Whether nothing is left to consume.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends bytes at the back (a drained buffer always starts at 0: see
    /// [`consume`](Self::consume)).
    pub fn append(&mut self, bytes: &[u8]) {
        self.data.extend_from_slice(bytes);
    }

    /// Drops `n` bytes from the front (muduo's `retrieve`); panics if `n` exceeds
    /// [`len`](Self::len). When everything is consumed the storage is reset (and
    /// released if it grew large), so the buffer never creeps.
    pub fn consume(&mut self, n: usize) {
        assert!(n <= self.len(), "consume past the end of the buffer");
        self.start += n;
        if self.start == self.data.len() {
            self.data.clear();
            self.start = 0;
            if self.data.capacity() > KEEP_CAPACITY {
                self.data = Vec::new();
            }
        } else if self.start > self.data.len() / 2 && self.start > KEEP_CAPACITY {
            self.data.drain(..self.start);
            self.start = 0;
        }
    }

    /// Bytes of memory held (tests only).
    #[cfg(test)]
    fn capacity(&self) -> usize {
        self.data.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::Buffer;

    #[test]
    fn append_peek_consume() {
        let mut b = Buffer::new();
        assert!(b.is_empty());
        assert_eq!(b.capacity(), 0);
        b.append(b"hello ");
        b.append(b"world");
        assert_eq!(b.peek(), b"hello world");
        b.consume(6);
        assert_eq!(b.peek(), b"world");
        assert_eq!(b.len(), 5);
        b.consume(5);
        assert!(b.is_empty());
    }

    #[test]
    fn releases_memory_after_a_burst() {
        let mut b = Buffer::new();
        b.append(&vec![7u8; 1 << 20]);
        b.consume(1 << 20);
        assert_eq!(b.capacity(), 0);
    }

    #[test]
    fn compacts_when_the_front_is_mostly_consumed() {
        let mut b = Buffer::new();
        b.append(&vec![1u8; 20_000]);
        b.consume(15_000);
        assert_eq!(b.len(), 5_000);
        assert!(b.peek().iter().all(|&x| x == 1));
        b.append(b"xy");
        assert_eq!(&b.peek()[5_000..], b"xy");
    }

    #[test]
    #[should_panic]
    fn consuming_too_much_is_a_bug() {
        let mut b = Buffer::new();
        b.append(b"ab");
        b.consume(3);
    }
}
