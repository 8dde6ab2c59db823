//! The online-user table (user id → connection) and the per-user locks that make a login's
//! presence claim exclusive on this server.
//!
//! The table only says where to push: every message is in the log before it is pushed, and a
//! connection's [`Outbox`](super::outbox::Outbox) decides what it is sent.

use super::context::ChatConn;
use crate::sync::LockExt;
use clusterchat_proto::UserId;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

const SHARDS: usize = 64;

/// Users online on this server. Shards keep lock hold times short and contention low; a shard
/// lock is held for one map operation only.
pub(crate) struct OnlineUsers {
    shards: Vec<Mutex<HashMap<UserId, ChatConn>>>,
}

impl Default for OnlineUsers {
    fn default() -> Self {
        OnlineUsers {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }
}

impl OnlineUsers {
    fn shard(&self, user: UserId) -> MutexGuard<'_, HashMap<UserId, ChatConn>> {
        self.shards[user.rem_euclid(SHARDS as i64) as usize].locked()
    }

    /// The open connection `user` has here, if any. A connection that closed but is not yet
    /// removed counts as gone.
    pub(crate) fn connection(&self, user: UserId) -> Option<ChatConn> {
        self.shard(user)
            .get(&user)
            .filter(|c| !c.is_closed())
            .cloned()
    }

    /// The connection `user` has here, even one that closed and whose session has not yet
    /// ended (its cursors are not yet saved).
    pub(crate) fn holder(&self, user: UserId) -> Option<ChatConn> {
        self.shard(user).get(&user).cloned()
    }

    /// Makes `conn` the connection of `user`, replacing a stale (closed) one.
    pub(crate) fn insert(&self, user: UserId, conn: &ChatConn) {
        self.shard(user).insert(user, conn.clone());
    }

    /// Removes `user` if `conn` is still their connection.
    pub(crate) fn remove(&self, user: UserId, conn: &ChatConn) {
        let mut shard = self.shard(user);
        if shard.get(&user).is_some_and(|c| c.id() == conn.id()) {
            shard.remove(&user);
        }
    }

    /// How many users are online here (a snapshot; each shard locked in turn, briefly).
    pub(crate) fn count(&self) -> usize {
        self.shards.iter().map(|s| s.locked().len()).sum()
    }

    /// The users online here (a snapshot).
    pub(crate) fn users(&self) -> Vec<UserId> {
        self.shards
            .iter()
            .flat_map(|s| s.locked().keys().copied().collect::<Vec<_>>())
            .collect()
    }
}

/// Striped mutexes, one stripe per user id modulo the count: held while a login of that user
/// claims presence and joins the table. Only worker threads take them (they may be held
/// across a database call); IO threads never do.
pub(crate) struct UserLocks {
    stripes: Vec<Mutex<()>>,
}

impl Default for UserLocks {
    fn default() -> Self {
        UserLocks {
            stripes: (0..256).map(|_| Mutex::new(())).collect(),
        }
    }
}

impl UserLocks {
    /// Locks `user`'s stripe.
    pub(crate) fn lock(&self, user: UserId) -> MutexGuard<'_, ()> {
        self.stripes[user.rem_euclid(self.stripes.len() as i64) as usize].locked()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::testing::connection;

    #[test]
    fn a_user_has_one_connection_and_only_it_can_remove_them() {
        let table = OnlineUsers::default();
        let (first, _c1, _s1) = connection();
        let (second, _c2, _s2) = connection();
        table.insert(9, &first);
        table.remove(9, &second);
        assert_eq!(table.users(), [9], "not its entry");
        assert_eq!(table.connection(9).map(|c| c.id()), Some(first.id()));
        table.insert(9, &second);
        assert_eq!(table.connection(9).map(|c| c.id()), Some(second.id()));
        table.remove(9, &second);
        assert!(table.users().is_empty());
        assert!(table.connection(9).is_none());
    }

    #[test]
    fn a_closed_connection_counts_as_gone() {
        let table = OnlineUsers::default();
        let (conn, client, server) = connection();
        table.insert(3, &conn);
        drop(client);
        drop(server); // stops the loop: the connection is marked closed
        assert!(conn.is_closed());
        assert!(table.connection(3).is_none());
    }
}
