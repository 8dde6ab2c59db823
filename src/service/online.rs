//! The online-user table (user id → connection) and the per-user locks that make "deliver or
//! store offline" and "log in and read offline messages" exclusive.
//!
//! A login first *joins* the table: messages that arrive meanwhile are held in the entry's
//! backlog, and are written right after the login reply, in order. So a message is either in
//! the offline store before the login reads it, or delivered after the reply: never lost,
//! never twice.

use super::session::Conn;
use crate::sync::LockExt;
use clusterchat_net::Bytes;
use clusterchat_proto::UserId;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

const SHARDS: usize = 64;

/// One user's place in the table.
struct Entry {
    conn: Conn,
    /// `Some` while the login is still reading offline messages.
    backlog: Option<Vec<Bytes>>,
}

/// The result of [`OnlineUsers::deliver`].
#[derive(Debug)]
pub(crate) enum Delivery {
    /// Queued on the user's connection (or its login backlog).
    Queued,
    /// The user has no connection on this server; the frame is handed back.
    NotHere(Bytes),
}

/// Users online on this server. Shards keep lock hold times short and contention low; no lock
/// is ever held across IO or a database call.
pub(crate) struct OnlineUsers {
    shards: Vec<Mutex<HashMap<UserId, Entry>>>,
}

impl Default for OnlineUsers {
    fn default() -> Self {
        OnlineUsers {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }
}

impl OnlineUsers {
    fn shard(&self, user: UserId) -> MutexGuard<'_, HashMap<UserId, Entry>> {
        self.shards[user.rem_euclid(SHARDS as i64) as usize].locked()
    }

    /// Queues `frame` for `user` if they are online here on an open connection. Thread safe,
    /// never blocks on IO. A connection that closed but is not yet removed counts as gone, so
    /// the caller stores the frame offline in order with the user's other messages.
    pub(crate) fn deliver(&self, user: UserId, frame: Bytes) -> Delivery {
        let mut shard = self.shard(user);
        match shard.get_mut(&user) {
            Some(Entry {
                backlog: Some(held),
                ..
            }) => {
                held.push(frame);
                Delivery::Queued
            }
            Some(Entry { conn, .. }) if !conn.is_closed() => {
                conn.deliver(frame, user as u64);
                Delivery::Queued
            }
            _ => Delivery::NotHere(frame),
        }
    }

    /// The open connection `user` has here, if any.
    pub(crate) fn connection(&self, user: UserId) -> Option<Conn> {
        self.shard(user)
            .get(&user)
            .filter(|e| !e.conn.is_closed())
            .map(|e| e.conn.clone())
    }

    /// Starts a login: `conn` becomes `user`'s connection with an empty backlog, replacing a
    /// stale (closed) one.
    pub(crate) fn begin_login(&self, user: UserId, conn: &Conn) {
        self.shard(user).insert(
            user,
            Entry {
                conn: conn.clone(),
                backlog: Some(Vec::new()),
            },
        );
    }

    /// Ends a login after its reply was queued: writes the held messages, in order, then lets
    /// deliveries go straight to the connection.
    pub(crate) fn finish_login(&self, user: UserId, conn: &Conn) {
        let mut shard = self.shard(user);
        if let Some(entry) = shard.get_mut(&user) {
            if entry.conn.id() == conn.id() {
                for frame in entry.backlog.take().unwrap_or_default() {
                    conn.deliver(frame, user as u64);
                }
            }
        }
    }

    /// Removes `user` if `conn` is still their connection; returns the held backlog, if the
    /// login never finished (the caller stores it offline).
    pub(crate) fn remove(&self, user: UserId, conn: &Conn) -> Vec<Bytes> {
        let mut shard = self.shard(user);
        match shard.get(&user) {
            Some(e) if e.conn.id() == conn.id() => shard
                .remove(&user)
                .and_then(|e| e.backlog)
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// The users online here (a snapshot).
    pub(crate) fn users(&self) -> Vec<UserId> {
        self.shards
            .iter()
            .flat_map(|s| s.locked().keys().copied().collect::<Vec<_>>())
            .collect()
    }
}

/// Striped mutexes, one stripe per user id modulo the count: held while deciding between
/// "deliver" and "store offline" for a user, and while a login of that user joins the table
/// and reads its offline messages. Only worker threads take them (they may be held across a
/// database call); IO threads never do.
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
