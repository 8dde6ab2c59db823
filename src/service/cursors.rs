//! Delivery cursors waiting to be written: RECV receipts and legacy writes move cursors in
//! memory; the housekeeper (every second) and the end of a session write them in batches.
//!
//! A cursor that is not written yet (a crash) only lags: the messages after it are sent again
//! at the next login, and clients drop duplicates by conversation and seq. Nothing is lost.

use crate::store::{ConvId, Seq, Store, StoreError};
use crate::sync::LockExt;
use clusterchat_proto::UserId;
use std::collections::HashMap;
use std::sync::Mutex;

/// Cursor advances not yet in the database, per user and conversation (the highest wins).
#[derive(Default)]
pub(crate) struct Cursors {
    dirty: Mutex<HashMap<UserId, HashMap<ConvId, Seq>>>,
    /// Held while advances taken from `dirty` are being written, so that a session's end
    /// never returns before an earlier flush holding its advances has committed.
    writing: Mutex<()>,
}

impl Cursors {
    /// Records that `user` holds `conv` up to `seq`.
    pub(crate) fn record(&self, user: UserId, advances: &[(ConvId, Seq)]) {
        let mut dirty = self.dirty.locked();
        let convs = dirty.entry(user).or_default();
        for &(conv, seq) in advances {
            let c = convs.entry(conv).or_insert(seq);
            *c = (*c).max(seq);
        }
    }

    /// Writes `user`'s advances now (the end of a session, so that a login elsewhere starts
    /// from them). On failure they stay queued for the next flush.
    pub(crate) fn flush_user(&self, store: &dyn Store, user: UserId) {
        let _writing = self.writing.locked();
        let Some(convs) = self.dirty.locked().remove(&user) else {
            return;
        };
        self.write(store, user, convs);
    }

    /// Writes every queued advance.
    pub(crate) fn flush(&self, store: &dyn Store) {
        let _writing = self.writing.locked();
        let all = std::mem::take(&mut *self.dirty.locked());
        for (user, convs) in all {
            self.write(store, user, convs);
        }
    }

    fn write(&self, store: &dyn Store, user: UserId, convs: HashMap<ConvId, Seq>) {
        let list: Vec<(ConvId, Seq)> = convs.into_iter().collect();
        if let Err(e) = store.advance_cursors(user, &list) {
            log_failure(user, &e);
            self.record(user, &list);
        }
    }
}

fn log_failure(user: UserId, e: &StoreError) {
    log::warn!("cannot save the cursors of user {user} ({e}); will retry");
}
