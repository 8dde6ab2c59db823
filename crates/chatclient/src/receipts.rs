//! Receipts (RECV) of a sync session: per conversation, the highest `seq` seen (to drop the
//! duplicates a sync login may send again) and the highest not yet confirmed. Confirmed all
//! at once after SYNC_DONE, then in batches ([`RECEIPT_BATCH`] messages or [`RECEIPT_DELAY`]).

use crate::command::Conv;
use clusterchat_proto::request::{self, Request};
use clusterchat_proto::{msgid, UserId};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// The longest a seen message waits for its receipt (once the sync backlog is done).
pub const RECEIPT_DELAY: Duration = Duration::from_millis(200);
/// This many seen messages are confirmed at once, without waiting for [`RECEIPT_DELAY`].
pub const RECEIPT_BATCH: usize = 100;

/// Per conversation, the highest seq seen (to drop duplicates) and the highest seq not yet
/// confirmed with RECV; pure, so its timing is tested with made-up instants.
#[derive(Debug, Default)]
pub struct Receipts {
    /// The user these conversations belong to (another login starts afresh).
    owner: Option<UserId>,
    /// Highest seq seen per conversation.
    seen: HashMap<Conv, i64>,
    /// Highest seq seen but not yet confirmed, per conversation.
    unconfirmed: BTreeMap<Conv, i64>,
    /// Messages seen since the last receipts.
    count: usize,
    /// When the oldest unconfirmed message was seen.
    since: Option<Instant>,
    /// Between a login reply and SYNC_DONE: receipts wait for the end of the backlog.
    syncing: bool,
    /// SYNC_DONE arrived: confirm everything at the next chance.
    flush: bool,
}

impl Receipts {
    /// A login of `user` succeeded: its backlog follows.
    pub fn start(&mut self, user: UserId) {
        if self.owner != Some(user) {
            *self = Receipts {
                owner: Some(user),
                ..Receipts::default()
            };
        }
        self.syncing = true;
    }

    /// The conversation a chat frame belongs to, for the logged-in user.
    fn conv_of(&self, frame: &Value) -> Option<Conv> {
        match frame["msgid"].as_i64()? {
            msgid::GROUP_CHAT => Some(Conv::Group(frame["groupid"].as_i64()?)),
            msgid::ONE_CHAT => {
                let from = frame["id"].as_i64()?;
                if Some(from) == self.owner {
                    Some(Conv::User(frame["toid"].as_i64()?))
                } else {
                    Some(Conv::User(from))
                }
            }
            _ => None,
        }
    }

    /// Whether a chat frame is new (to be shown); notes its seq if it is. Frames without a
    /// seq (an older server) are always new.
    pub fn note(&mut self, frame: &Value, now: Instant) -> bool {
        let (Some(conv), Some(seq)) = (self.conv_of(frame), frame["seq"].as_i64()) else {
            return true;
        };
        let seen = self.seen.entry(conv).or_insert(0);
        if seq <= *seen {
            return false;
        }
        *seen = seq;
        self.unconfirmed.insert(conv, seq);
        self.count += 1;
        self.since.get_or_insert(now);
        true
    }

    /// Whether the backlog of the last login is still coming (SYNC_DONE not yet here).
    pub fn syncing(&self) -> bool {
        self.syncing
    }

    /// SYNC_DONE: the backlog is over; what it brought is confirmed at once.
    pub fn sync_done(&mut self) {
        self.syncing = false;
        self.flush = !self.unconfirmed.is_empty();
    }

    /// The receipts to send now: none during the backlog; after it, everything at once, then
    /// when [`RECEIPT_BATCH`] messages wait or the oldest has waited [`RECEIPT_DELAY`].
    pub fn due(&mut self, now: Instant) -> Vec<Value> {
        if self.syncing || self.unconfirmed.is_empty() {
            return Vec::new();
        }
        let waited = self
            .since
            .is_some_and(|t| now.saturating_duration_since(t) >= RECEIPT_DELAY);
        if self.flush || waited || self.count >= RECEIPT_BATCH {
            self.take()
        } else {
            Vec::new()
        }
    }

    /// Every receipt owed, now (before logging out or quitting).
    pub fn take(&mut self) -> Vec<Value> {
        self.count = 0;
        self.since = None;
        self.flush = false;
        std::mem::take(&mut self.unconfirmed)
            .into_iter()
            .map(|(conv, seq)| {
                let (peer, groupid) = match conv {
                    Conv::User(u) => (Some(u), None),
                    Conv::Group(g) => (None, Some(g)),
                };
                request::Recv { peer, groupid, seq }.encode()
            })
            .collect()
    }
}
