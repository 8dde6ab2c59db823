//! SQLite backend: the embedded store of a server that runs alone.
//!
//! WAL mode lets readers proceed while one writer commits; every write transaction starts with
//! `BEGIN IMMEDIATE` so two writers queue on the busy timeout instead of failing half way with
//! `SQLITE_BUSY` when a deferred read lock cannot be upgraded.

use super::sql::{self, GroupRow};
use super::{Claim, JoinOutcome, Store, StoreError, StoreResult, UserRecord};
use clusterchat_proto::{GroupId, GroupInfo, UserId, UserInfo};
use r2d2::{Pool, PooledConnection};
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::time::Duration;

/// How long a connection waits for another writer before giving up with `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The schema, idempotent (`IF NOT EXISTS`), applied at every open so a new file just works.
/// Foreign keys keep friends, members and offline messages pointing at real rows.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS user(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    password TEXT NOT NULL,           -- argon2 PHC string, never plaintext
    state TEXT NOT NULL DEFAULT 'offline' CHECK (state IN ('online', 'offline')),
    session TEXT NULL                 -- '<node>/<conn>' holding the login
);
CREATE INDEX IF NOT EXISTS user_session ON user(session);
CREATE TABLE IF NOT EXISTS friend(
    userid INTEGER NOT NULL REFERENCES user(id),
    friendid INTEGER NOT NULL REFERENCES user(id),
    PRIMARY KEY (userid, friendid)
);
CREATE TABLE IF NOT EXISTS allgroup(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    groupname TEXT NOT NULL UNIQUE,
    groupdesc TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS groupuser(
    groupid INTEGER NOT NULL REFERENCES allgroup(id),
    userid INTEGER NOT NULL REFERENCES user(id),
    grouprole TEXT NOT NULL CHECK (grouprole IN ('creator', 'normal')),
    PRIMARY KEY (groupid, userid)
);
CREATE INDEX IF NOT EXISTS groupuser_user ON groupuser(userid);
CREATE TABLE IF NOT EXISTS offlinemessage(
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    userid INTEGER NOT NULL REFERENCES user(id),
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS offlinemessage_user_seq ON offlinemessage(userid, seq);
";

/// The embedded store of a server that runs alone: a pool of SQLite connections on one file.
pub struct SqliteStore {
    pool: Pool<SqliteConnectionManager>,
}

/// Settings every pooled connection needs; WAL itself is persistent and set once at open.
fn init_connection(c: &mut Connection) -> rusqlite::Result<()> {
    c.busy_timeout(BUSY_TIMEOUT)?;
    c.pragma_update(None, "foreign_keys", true)?;
    c.pragma_update(None, "synchronous", "NORMAL")
}

/// A failed query: the database answered with an error.
fn query(e: rusqlite::Error) -> StoreError {
    StoreError::Query(e.to_string())
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path` with a pool of `pool_size`
    /// connections (at least one), switches it to WAL and creates missing tables.
    pub fn open(path: &str, pool_size: u32) -> StoreResult<Self> {
        let unavailable = |e: rusqlite::Error| StoreError::Unavailable(format!("{path}: {e}"));
        // One plain connection first, so the WAL switch and the schema run once, not racing
        // between pool connections.
        let mut first = Connection::open(path).map_err(unavailable)?;
        init_connection(&mut first).map_err(unavailable)?;
        let mode: String = first
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(unavailable)?;
        if !mode.eq_ignore_ascii_case("wal") && path != ":memory:" {
            log::warn!("{path}: SQLite refused WAL mode (journal_mode={mode})");
        }
        first.execute_batch(SCHEMA).map_err(query)?;
        drop(first);

        let manager = SqliteConnectionManager::file(path).with_init(init_connection);
        let pool = Pool::builder()
            .max_size(pool_size.max(1))
            .connection_timeout(BUSY_TIMEOUT)
            .build(manager)
            .map_err(|e| StoreError::Unavailable(format!("{path}: {e}")))?;
        Ok(Self { pool })
    }

    /// A pooled connection, or [`StoreError::Unavailable`] when none comes in time.
    fn conn(&self) -> StoreResult<PooledConnection<SqliteConnectionManager>> {
        self.pool
            .get()
            .map_err(|e| StoreError::Unavailable(e.to_string()))
    }
}

/// True when `e` is a UNIQUE or PRIMARY KEY violation.
fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
}

impl Store for SqliteStore {
    fn register(&self, name: &str, password_hash: &str) -> StoreResult<UserId> {
        let c = self.conn()?;
        c.prepare_cached(sql::REGISTER)
            .and_then(|mut s| s.insert(params![name, password_hash]))
            .map_err(query)
    }

    fn user(&self, id: UserId) -> StoreResult<Option<UserRecord>> {
        let c = self.conn()?;
        c.prepare_cached(sql::USER)
            .and_then(|mut s| {
                s.query_row([id], |r| {
                    Ok(UserRecord {
                        id: r.get(0)?,
                        name: r.get(1)?,
                        password_hash: r.get(2)?,
                    })
                })
                .optional()
            })
            .map_err(query)
    }

    fn claim_session(&self, user: UserId, session: &str) -> StoreResult<Claim> {
        let c = self.conn()?;
        // A holder may log out between our UPDATE and SELECT; then the claim is simply retried.
        for _ in 0..3 {
            let n = c
                .prepare_cached(sql::CLAIM)
                .and_then(|mut s| s.execute(params![session, user]))
                .map_err(query)?;
            if n == 1 {
                return Ok(Claim::Claimed);
            }
            let holder: Option<(String, Option<String>)> = c
                .prepare_cached(sql::HOLDER)
                .and_then(|mut s| {
                    s.query_row([user], |r| Ok((r.get(0)?, r.get(1)?)))
                        .optional()
                })
                .map_err(query)?;
            if let Some(claim) = sql::claim_outcome(holder) {
                return Ok(claim);
            }
        }
        Ok(Claim::HeldBy(String::new()))
    }

    fn take_over_session(&self, user: UserId, old: &str, new: &str) -> StoreResult<bool> {
        let c = self.conn()?;
        let n = c
            .prepare_cached(sql::TAKE_OVER)
            .and_then(|mut s| s.execute(params![new, user, old]))
            .map_err(query)?;
        Ok(n == 1)
    }

    fn release_session(&self, user: UserId, session: &str) -> StoreResult<()> {
        let c = self.conn()?;
        c.prepare_cached(sql::RELEASE)
            .and_then(|mut s| s.execute(params![user, session]))
            .map_err(query)?;
        Ok(())
    }

    fn release_node(&self, node: &str) -> StoreResult<u64> {
        let prefix = sql::node_prefix(node);
        // substr counts characters in SQLite, so pass the length in characters.
        let len = prefix.chars().count() as i64;
        let c = self.conn()?;
        let n = c
            .prepare_cached(sql::RELEASE_NODE)
            .and_then(|mut s| s.execute(params![len, prefix]))
            .map_err(query)?;
        Ok(n as u64)
    }

    fn session_nodes(&self) -> StoreResult<Vec<String>> {
        let c = self.conn()?;
        let mut s = c.prepare_cached(sql::SESSION_NODES).map_err(query)?;
        let rows = s.query_map([], |r| r.get(0)).map_err(query)?;
        rows.collect::<Result<_, _>>().map_err(query)
    }

    fn release_all(&self) -> StoreResult<u64> {
        let c = self.conn()?;
        let n = c.execute(sql::RELEASE_ALL, []).map_err(query)?;
        Ok(n as u64)
    }

    fn add_friend(&self, user: UserId, friend: UserId) -> StoreResult<()> {
        let c = self.conn()?;
        c.prepare_cached("INSERT OR IGNORE INTO friend(userid, friendid) VALUES (?, ?)")
            .and_then(|mut s| s.execute(params![user, friend]))
            .map_err(query)?;
        Ok(())
    }

    fn friends(&self, user: UserId) -> StoreResult<Vec<UserInfo>> {
        let c = self.conn()?;
        let mut s = c.prepare_cached(sql::FRIENDS).map_err(query)?;
        let rows = s
            .query_map([user], |r| {
                Ok(UserInfo {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    state: r.get(2)?,
                })
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(query)?;
        Ok(rows)
    }

    fn create_group(&self, creator: UserId, name: &str, desc: &str) -> StoreResult<GroupId> {
        let mut c = self.conn()?;
        let tx = c
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(query)?;
        let id = match tx.execute(sql::CREATE_GROUP, params![name, desc]) {
            Ok(_) => tx.last_insert_rowid(),
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::Conflict(format!("group name {name:?}")))
            }
            Err(e) => return Err(query(e)),
        };
        tx.execute(sql::ADD_MEMBER, params![id, creator, "creator"])
            .map_err(query)?;
        tx.commit().map_err(query)?;
        Ok(id)
    }

    fn join_group(&self, user: UserId, group: GroupId) -> StoreResult<JoinOutcome> {
        let mut c = self.conn()?;
        let tx = c
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(query)?;
        let exists = |q: &str, p: &[&dyn rusqlite::ToSql]| {
            tx.query_row(q, p, |_| Ok(())).optional().map_err(query)
        };
        if exists(sql::GROUP_EXISTS, &[&group])?.is_none() {
            return Ok(JoinOutcome::NoSuchGroup);
        }
        if exists(sql::IS_MEMBER, &[&group, &user])?.is_some() {
            return Ok(JoinOutcome::AlreadyMember);
        }
        tx.execute(sql::ADD_MEMBER, params![group, user, "normal"])
            .map_err(query)?;
        tx.commit().map_err(query)?;
        Ok(JoinOutcome::Joined)
    }

    fn groups_of(&self, user: UserId) -> StoreResult<Vec<GroupInfo>> {
        let c = self.conn()?;
        let mut s = c.prepare_cached(sql::GROUPS_OF).map_err(query)?;
        let rows: Vec<GroupRow> = s
            .query_map([user], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ))
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(query)?;
        Ok(sql::group_rows(rows))
    }

    fn group_members(&self, group: GroupId) -> StoreResult<Option<Vec<UserId>>> {
        let mut c = self.conn()?;
        // One read transaction so the existence check and the member list agree.
        let tx = c.transaction().map_err(query)?;
        let exists = tx
            .query_row(sql::GROUP_EXISTS, [group], |_| Ok(()))
            .optional()
            .map_err(query)?;
        if exists.is_none() {
            return Ok(None);
        }
        let mut s = tx.prepare_cached(sql::MEMBERS).map_err(query)?;
        let ids = s
            .query_map([group], |r| r.get(0))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<UserId>>>())
            .map_err(query)?;
        Ok(Some(ids))
    }

    fn store_offline(&self, user: UserId, message: &str) -> StoreResult<()> {
        let c = self.conn()?;
        c.prepare_cached(sql::STORE_OFFLINE)
            .and_then(|mut s| s.execute(params![user, message]))
            .map_err(query)?;
        Ok(())
    }

    fn store_offline_many(&self, users: &[UserId], message: &str) -> StoreResult<()> {
        let mut c = self.conn()?;
        let tx = c
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(query)?;
        {
            let mut s = tx.prepare_cached(sql::STORE_OFFLINE).map_err(query)?;
            for u in users {
                s.execute(params![u, message]).map_err(query)?;
            }
        }
        tx.commit().map_err(query)
    }

    fn take_offline(&self, user: UserId) -> StoreResult<Vec<String>> {
        let mut c = self.conn()?;
        // IMMEDIATE takes the write lock before reading, so no message can slip in between the
        // read and the delete; the delete is bounded by the highest seq read anyway.
        let tx = c
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(query)?;
        let rows: Vec<(i64, String)> = {
            let mut s = tx
                .prepare_cached(
                    "SELECT seq, message FROM offlinemessage WHERE userid = ? ORDER BY seq",
                )
                .map_err(query)?;
            s.query_map([user], |r| Ok((r.get(0)?, r.get(1)?)))
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(query)?
        };
        if let Some((max, _)) = rows.last() {
            tx.execute(sql::DELETE_OFFLINE, params![user, max])
                .map_err(query)?;
        }
        tx.commit().map_err(query)?;
        Ok(rows.into_iter().map(|(_, m)| m).collect())
    }
}
