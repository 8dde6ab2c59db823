//! Work that failed during an outage and must be tried again once the database or the bus is
//! back (see [`ChatService::retry_pending`](super::ChatService::retry_pending)).

use crate::sync::LockExt;
use clusterchat_proto::UserId;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// Pending retries. Each set is small and touched only on failure paths.
#[derive(Default)]
pub(super) struct Retries {
    releases: Mutex<Vec<(UserId, Arc<str>)>>,
    nudges: Mutex<HashSet<UserId>>,
}

impl Retries {
    /// Remembers a presence release (`user`, `session`) that the database refused.
    pub(super) fn release_later(&self, user: UserId, session: Arc<str>) {
        self.releases.locked().push((user, session));
    }

    /// Remembers a user whose nudge could not be published.
    pub(super) fn nudge_later(&self, user: UserId) {
        self.nudges.locked().insert(user);
    }

    /// Takes every pending release.
    pub(super) fn take_releases(&self) -> Vec<(UserId, Arc<str>)> {
        std::mem::take(&mut *self.releases.locked())
    }

    /// Takes every pending nudge.
    pub(super) fn take_nudges(&self) -> Vec<UserId> {
        std::mem::take(&mut *self.nudges.locked())
            .into_iter()
            .collect()
    }
}
