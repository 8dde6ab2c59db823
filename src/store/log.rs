//! The message log's vocabulary: conversations, sequence numbers and the rows the log holds.
//!
//! A conversation is a pair of users or a group. Every stored message gets `seq` = 1, 2, 3, …
//! within its conversation; a user's *cursor* in a conversation is the highest seq delivered
//! to them (by RECV for a sync session, by a write to the kernel for a legacy one).

use clusterchat_proto::{GroupId, UserId};

/// A message's number within its conversation: 1, 2, 3, … with no gaps.
pub type Seq = i64;

/// How long a `(sender, cmid)` pair is remembered: a retry within this window is answered
/// with the original seq and neither stored nor delivered again.
pub const CMID_WINDOW_MS: i64 = 24 * 60 * 60 * 1000;

/// A conversation as the database keys it, in one signed 64-bit integer so that both
/// dialects compare, index and join it alike: a pair of users `a < b` is `a * 2^32 + b`
/// (positive), a group `g` is `-g` (negative).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConvId(pub i64);

impl ConvId {
    /// The conversation between two users, whichever order they are given in.
    pub fn pair(x: UserId, y: UserId) -> ConvId {
        let (a, b) = if x <= y { (x, y) } else { (y, x) };
        ConvId((a << 32) | (b & 0xffff_ffff))
    }

    /// The conversation of a group.
    pub fn group(group: GroupId) -> ConvId {
        ConvId(-group)
    }

    /// The group, if this is a group conversation.
    pub fn as_group(self) -> Option<GroupId> {
        (self.0 < 0).then_some(-self.0)
    }

    /// The two users `(a, b)`, `a <= b`, if this is a pair conversation.
    pub fn as_pair(self) -> Option<(UserId, UserId)> {
        (self.0 > 0).then_some((self.0 >> 32, self.0 & 0xffff_ffff))
    }

    /// For a pair conversation of `user`, the other party.
    pub fn peer_of(self, user: UserId) -> Option<UserId> {
        let (a, b) = self.as_pair()?;
        if a == user {
            Some(b)
        } else if b == user {
            Some(a)
        } else {
            None
        }
    }
}

/// One message to append (see [`Store::append`](super::Store::append)).
#[derive(Debug, Clone)]
pub struct Append<'a> {
    /// Its conversation.
    pub conv: ConvId,
    /// Who sent it.
    pub sender: UserId,
    /// The client's message id, if it gave one (at most 64 bytes).
    pub cmid: Option<&'a str>,
    /// The chat frame as forwarded, a JSON object *without* `seq` (added when it is sent).
    pub body: &'a str,
    /// When the server received it, in Unix milliseconds (retention and the cmid window).
    pub created_ms: i64,
}

/// The outcome of one [`Append`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Stored with this seq.
    New(Seq),
    /// `(sender, cmid)` was stored within [`CMID_WINDOW_MS`]: nothing stored; the original.
    Duplicate {
        /// The original's conversation.
        conv: ConvId,
        /// The original's seq.
        seq: Seq,
    },
}

/// A message read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    /// Its seq in its conversation.
    pub seq: Seq,
    /// The stored frame, without `seq` (see [`with_seq`]).
    pub body: String,
    /// When the server received it (Unix ms).
    pub created_ms: i64,
}

/// A conversation of a user with messages after their cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unread {
    /// The conversation.
    pub conv: ConvId,
    /// The user's cursor: the highest seq delivered to them (0: none).
    pub cursor: Seq,
    /// The conversation's highest seq.
    pub last: Seq,
}

/// A stored body with `"seq":N` added as its last field (bodies are JSON objects the server
/// built, so they end with `}`).
pub fn with_seq(body: &[u8], seq: Seq) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 24);
    push_with_seq(&mut out, body, seq);
    out
}

/// Appends [`with_seq`]`(body, seq)` to `out`.
pub fn push_with_seq(out: &mut Vec<u8>, body: &[u8], seq: Seq) {
    let end = body.iter().rposition(|&b| b == b'}').unwrap_or(body.len());
    out.extend_from_slice(&body[..end]);
    if body[..end].iter().rev().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        out.push(b',');
    }
    out.extend_from_slice(b"\"seq\":");
    out.extend_from_slice(itoa::Buffer::new().format(seq).as_bytes());
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pair_is_the_same_conversation_both_ways_and_never_a_group() {
        let c = ConvId::pair(7, 3);
        assert_eq!(c, ConvId::pair(3, 7));
        assert_eq!(c.as_pair(), Some((3, 7)));
        assert_eq!(c.as_group(), None);
        assert_eq!(c.peer_of(3), Some(7));
        assert_eq!(c.peer_of(7), Some(3));
        assert_eq!(c.peer_of(5), None);
        let big = ConvId::pair(i32::MAX as i64, 1);
        assert_eq!(big.as_pair(), Some((1, i32::MAX as i64)));
        let g = ConvId::group(12);
        assert_eq!(g.as_group(), Some(12));
        assert_eq!(g.as_pair(), None);
        assert_ne!(ConvId::pair(1, 1), ConvId::group(1));
    }

    #[test]
    fn seq_is_added_as_the_last_field() {
        assert_eq!(with_seq(br#"{"a":1}"#, 5), br#"{"a":1,"seq":5}"#);
        assert_eq!(with_seq(b"{}", 1), br#"{"seq":1}"#);
        assert_eq!(with_seq(b"{\"a\":1} ", 2), br#"{"a":1,"seq":2}"#);
    }
}
