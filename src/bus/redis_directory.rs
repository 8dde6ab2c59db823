//! This server's side of the presence directory (`<prefix>presence`, user -> session; see
//! [`super::redis_route`]): the entries it writes at login, deletes at logout, writes again
//! after Redis lost them, and the entries of dead servers it cleans up.
//!
//! A login's entry is written before the login goes on (it must be in Redis before the log is
//! read). A logout's delete is queued to a thread of its own that pipelines what is queued:
//! it only deletes an entry that still names the session, so it may come late without harm
//! (until then messages routed by the old entry find nobody here and wait in the log), and a
//! burst of disconnects costs one round trip per batch, not one per user on a worker.

use super::redis::{with_conn, Health, Pool};
use super::redis_route::LEAVE_SCRIPT;
use super::BusError;
use crate::sync::LockExt;
use clusterchat_proto::UserId;
use crossbeam_channel::{unbounded, Receiver, Sender};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Entries written per HSET when they are restored; deletes per pipelined round.
const CHUNK: usize = 1000;

/// A queued delete: the user and the session their entry must still name.
type Leave = (UserId, Arc<str>);

/// This server's entries and the thread that deletes them.
pub(super) struct Directory {
    pool: Pool,
    key: String,
    health: Arc<Health>,
    /// The entries as they should be in Redis (user -> session).
    entries: Mutex<HashMap<UserId, Arc<str>>>,
    /// An entry failed to be written: write them all again.
    lost: AtomicBool,
    leaves: Mutex<Option<Sender<Leave>>>,
    leaver: Mutex<Option<JoinHandle<()>>>,
}

impl Directory {
    /// The directory at `key`, written through `pool`; starts the delete thread.
    pub(super) fn start(pool: Pool, key: String, health: Arc<Health>) -> std::io::Result<Self> {
        let (tx, rx) = unbounded();
        let leaver = {
            let (pool, key) = (pool.clone(), key.clone());
            std::thread::Builder::new()
                .name("redis-directory".into())
                .spawn(move || delete_loop(&pool, &key, &rx))?
        };
        Ok(Directory {
            pool,
            key,
            health,
            entries: Mutex::new(HashMap::new()),
            lost: AtomicBool::new(false),
            leaves: Mutex::new(Some(tx)),
            leaver: Mutex::new(Some(leaver)),
        })
    }

    /// Writes `user` -> `session` now (one round trip). On failure the entry is kept to be
    /// written again ([`Self::is_lost`]).
    pub(super) fn enter(&self, user: UserId, session: &str) {
        let mut entries = self.entries.locked();
        entries.insert(user, session.into());
        let written = self.health.query(&self.pool, "HSET", |c| {
            redis::cmd("HSET")
                .arg(&self.key)
                .arg(user)
                .arg(session)
                .query::<()>(c)
        });
        if let Err(e) = written {
            log::debug!("user {user}: presence not written ({e}); will retry");
            self.lost.store(true, Ordering::Release);
        }
    }

    /// Forgets `user`'s entry if it names `session`, and queues its delete. Never blocks.
    pub(super) fn leave(&self, user: UserId, session: &str) {
        let mut entries = self.entries.locked();
        if entries.get(&user).is_some_and(|e| &**e == session) {
            entries.remove(&user);
        }
        if let Some(q) = self.leaves.locked().as_ref() {
            let _ = q.send((user, session.into()));
        }
    }

    /// Whether Redis lost this server's entries while its connections stayed up (a `DEL` or
    /// `FLUSHALL` by an operator, an eviction): one of them, read back, is not what it should
    /// be. One HGET, under the entries' lock so that no login is half written meanwhile.
    /// False when there are no entries or Redis cannot be asked.
    pub(super) fn vanished(&self) -> bool {
        let entries = self.entries.locked();
        let Some((user, session)) = entries.iter().next() else {
            return false;
        };
        let found = self.health.query(&self.pool, "HGET", |c| {
            redis::cmd("HGET")
                .arg(&self.key)
                .arg(*user)
                .query::<Option<String>>(c)
        });
        match found {
            Ok(found) => found.as_deref() != Some(&**session),
            Err(_) => false,
        }
    }

    /// Whether an entry failed to be written since the last [`Self::restore`].
    pub(super) fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Acquire)
    }

    /// Writes every entry again, under the entries' lock (no login or logout of this server
    /// interleaves, so a restored entry is never one its session has left).
    pub(super) fn restore(&self) -> Result<(), BusError> {
        let entries = self.entries.locked();
        let all: Vec<(&UserId, &Arc<str>)> = entries.iter().collect();
        for chunk in all.chunks(CHUNK) {
            let mut cmd = redis::cmd("HSET");
            cmd.arg(&self.key);
            for (user, session) in chunk {
                cmd.arg(**user).arg(&***session);
            }
            self.health
                .query(&self.pool, "HSET", |c| cmd.query::<()>(c))?;
        }
        self.lost.store(false, Ordering::Release);
        Ok(())
    }

    /// Deletes every entry that names a session of `node` (each only if it still does);
    /// returns how many.
    pub(super) fn forget_node(&self, node: &str) -> Result<u64, BusError> {
        let mine = format!("{node}/");
        let mut cursor = "0".to_string();
        let mut deleted = 0;
        loop {
            let (next, items): (String, Vec<String>) =
                self.health.query(&self.pool, "HSCAN", |c| {
                    redis::cmd("HSCAN")
                        .arg(&self.key)
                        .arg(&cursor)
                        .arg("COUNT")
                        .arg(CHUNK)
                        .query(c)
                })?;
            let gone: Vec<(&str, &str)> = items
                .chunks_exact(2)
                .filter(|p| p[1].starts_with(&mine))
                .map(|p| (p[0].as_str(), p[1].as_str()))
                .collect();
            if !gone.is_empty() {
                let pipe = leave_pipe(&self.key, gone.into_iter(), false);
                let done: Vec<u64> = self.health.query(&self.pool, "EVAL", |c| pipe.query(c))?;
                deleted += done.iter().sum::<u64>();
            }
            if next == "0" {
                return Ok(deleted);
            }
            cursor = next;
        }
    }

    /// Lets the queued deletes go out, stops the thread, then deletes every entry this server
    /// still has (shutdown: its users are offline now).
    pub(super) fn stop(&self) {
        self.leaves.locked().take();
        if let Some(t) = self.leaver.locked().take() {
            let _ = t.join();
        }
        let entries = std::mem::take(&mut *self.entries.locked());
        if entries.is_empty() {
            return;
        }
        let pairs = entries.iter().map(|(u, s)| (u.to_string(), s.clone()));
        let pairs: Vec<(String, Arc<str>)> = pairs.collect();
        let pipe = leave_pipe(
            &self.key,
            pairs.iter().map(|(u, s)| (u.as_str(), &**s)),
            true,
        );
        let deleted = self
            .health
            .query(&self.pool, "EVAL", |c| pipe.query::<()>(c));
        if let Err(e) = deleted {
            log::debug!("directory entries not deleted at shutdown: {e}");
        }
    }
}

/// A pipeline of conditional deletes (`ignore`: without their answers).
fn leave_pipe<'a>(
    key: &str,
    entries: impl Iterator<Item = (&'a str, &'a str)>,
    ignore: bool,
) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    for (user, session) in entries {
        pipe.cmd("EVAL")
            .arg(LEAVE_SCRIPT)
            .arg(1)
            .arg(key)
            .arg(user)
            .arg(session);
        if ignore {
            pipe.ignore();
        }
    }
    pipe
}

/// The delete thread: takes what is queued, deletes it in one pipelined round trip.
fn delete_loop(pool: &Pool, key: &str, queue: &Receiver<Leave>) {
    while let Ok(first) = queue.recv() {
        let batch: Vec<(String, Arc<str>)> = std::iter::once(first)
            .chain(queue.try_iter().take(CHUNK - 1))
            .map(|(u, s)| (u.to_string(), s))
            .collect();
        let pipe = leave_pipe(key, batch.iter().map(|(u, s)| (u.as_str(), &**s)), true);
        let done = with_conn(pool, |c| pipe.query::<()>(c));
        // A delete that failed leaves an entry naming a session that is gone: messages routed
        // by it find nobody here and wait in the log; the user's next login replaces it.
        if let Err(e) = done {
            log::debug!("{} directory entries not deleted: {e}", batch.len());
        }
    }
}
