//! SQLite backend: the embedded store of a server that runs alone.
//!
//! WAL mode lets readers proceed while one writer commits; every write transaction starts with
//! `BEGIN IMMEDIATE` so two writers queue on the busy timeout instead of failing half way with
//! `SQLITE_BUSY` when a deferred read lock cannot be upgraded.

use super::file_lock::{self, FileLock};
use super::plan;
use super::sql::{self, GroupRow};
use super::sqlite_append::{self, append_in, Bumped};
use super::sqlite_checkpoint::Checkpointer;
use super::sqlite_index::{self, LogTail};
use super::{
    Append, Appended, Claim, ConvId, JoinOutcome, Logged, Seq, Store, StoreError, StoreResult,
    Unread, UserRecord, CMID_WINDOW_MS,
};
use crate::sync::LockExt;
use clusterchat_proto::{GroupId, GroupInfo, MemberInfo, UserId, UserInfo};
use r2d2::{Pool, PooledConnection};
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a connection waits for another writer before giving up with `SQLITE_BUSY`.
pub(super) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The WAL file's size once it rewinds (bytes): what the checkpointer lets pile up before it
/// rewinds (`sqlite_checkpoint::REWIND_AT`, 128 MiB) and what arrives while it does, so that a
/// busy server writes over blocks it already has.
const WAL_SIZE_LIMIT: i64 = 192 << 20;

// The multi-row statements of an append are INSERT OR FAIL: a plain (ABORT) INSERT of several
// rows makes SQLite keep a statement journal, to undo just that statement if a later row
// fails, and that journal spills to a temporary file once it passes 64 KiB; the append rolls
// back its whole transaction on any error anyway. Measured on a 500-message batch to 50
// conversations: 2.6 µs a message for the INSERT with the journal, 0.8 without.
//
// `message` is appended in arrival order and indexed by (conv, seq) a little later, in bulk:
// see `sqlite_index`.

/// Raises a cursor; parameters: user, conv, seq.
const ADVANCE: &str = "INSERT INTO msgcursor(userid, conv, seq) VALUES (?, ?, ?) \
     ON CONFLICT(userid, conv) DO UPDATE SET seq = MAX(seq, excluded.seq)";
/// A joiner's cursor: delivered and history both from the group's current last seq.
/// Parameters: user, conv, conv.
const JOINER_CURSOR: &str = "INSERT INTO msgcursor(userid, conv, seq, floor) \
     SELECT ?, ?, COALESCE(MAX(last_seq), 0), COALESCE(MAX(last_seq), 0) FROM conversation \
     WHERE conv = ? ON CONFLICT(userid, conv) DO UPDATE SET floor = excluded.floor, \
     seq = MAX(seq, excluded.seq)";
/// Deletes expired cmid records; parameters: before, limit.
const PRUNE_CMIDS: &str = "DELETE FROM msgcmid WHERE (sender, cmid) IN \
     (SELECT sender, cmid FROM msgcmid WHERE created < ? ORDER BY created LIMIT ?)";

/// Prepared statements each pooled connection keeps (the multi-row INSERTs come in a few
/// sizes, on top of some thirty single statements).
const STATEMENT_CACHE: usize = 64;

/// The embedded store of a server that runs alone: a pool of SQLite connections on one file,
/// which this process owns exclusively (see [`super::file_lock`]).
pub struct SqliteStore {
    pub(super) pool: Pool<SqliteConnectionManager>,
    /// Held by every append for its transaction and its index pass (see `sqlite_index`), and
    /// by the checkpointer for the last copy of a cycle (see `sqlite_checkpoint`).
    pub(super) append_gate: Arc<Mutex<LogTail>>,
    _checkpointer: Checkpointer,
    /// The exclusive lock on `PATH.lock` (`None` only for `:memory:`, private anyway); last,
    /// so it is released after everything else has stopped.
    _lock: Option<FileLock>,
}

/// Settings every pooled connection needs; WAL itself is persistent and set once at open.
fn init_connection(c: &mut Connection) -> rusqlite::Result<()> {
    c.busy_timeout(BUSY_TIMEOUT)?;
    c.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    c.pragma_update(None, "foreign_keys", true)?;
    // No checkpoint inside a commit: its fsync would stall the log writer's group commit for
    // milliseconds. The checkpointer thread does it instead (`sqlite_checkpoint`).
    c.pragma_update(None, "wal_autocheckpoint", 0)?;
    // When the WAL rewinds, a file that grew past this is cut back to it.
    c.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)?;
    c.pragma_update(None, "synchronous", "NORMAL")
}

/// A failed query: the database answered with an error.
pub(super) fn query(e: rusqlite::Error) -> StoreError {
    StoreError::Query(e.to_string())
}

impl SqliteStore {
    /// Locks the database file at `path` for this process ([`StoreError::Locked`] when another
    /// process has it), then opens it (creating it if needed) with a pool of `pool_size`
    /// connections (at least one), switches it to WAL and creates missing tables.
    pub fn open(path: &str, pool_size: u32) -> StoreResult<Self> {
        let lock = Self::lock(path)?;
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
        first
            .execute_batch(super::sqlite_schema::SCHEMA)
            .map_err(query)?;
        first.execute_batch(sqlite_index::SCHEMA).map_err(query)?;
        sqlite_index::create_or_upgrade(&mut first)?;
        super::names::sqlite::upgrade(&mut first)?;
        // Before the migration appends: it gives out seqs from the rows.
        sqlite_append::catch_up(&first)?;
        super::sqlite_migrate::migrate_offline(&mut first)?;
        let tail = LogTail::new(first)?;

        let manager = SqliteConnectionManager::file(path).with_init(init_connection);
        let pool = Pool::builder()
            .max_size(pool_size.max(1))
            .connection_timeout(BUSY_TIMEOUT)
            .build(manager)
            .map_err(|e| StoreError::Unavailable(format!("{path}: {e}")))?;
        let append_gate = Arc::new(Mutex::new(tail));
        let checkpointer = Checkpointer::start(pool.clone(), Arc::clone(&append_gate))
            .map_err(|e| StoreError::Unavailable(format!("checkpointer thread: {e}")))?;
        Ok(Self {
            pool,
            append_gate,
            _checkpointer: checkpointer,
            _lock: lock,
        })
    }

    /// The user row `statement` finds by its one parameter.
    fn user_where(
        &self,
        statement: &str,
        param: rusqlite::types::Value,
    ) -> StoreResult<Option<UserRecord>> {
        let c = self.conn()?;
        c.prepare_cached(statement)
            .and_then(|mut s| {
                s.query_row([param], |r| {
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

    /// Takes the exclusive lock of the database at `path`, before anything touches it.
    fn lock(path: &str) -> StoreResult<Option<FileLock>> {
        if path == ":memory:" {
            return Ok(None);
        }
        let lock_path = file_lock::lock_path(path);
        match FileLock::try_exclusive(&lock_path) {
            Ok(Some(lock)) => Ok(Some(lock)),
            Ok(None) => Err(StoreError::Locked(format!(
                "sqlite:{path} is in use by another chatserver (it holds {lock_path}); \
                 give this one its own --db"
            ))),
            Err(e) => Err(StoreError::Unavailable(format!("{lock_path}: {e}"))),
        }
    }

    /// Brings every `conversation.last_seq` up to the counters (see `sqlite_append`), for a
    /// reader of them. A message appended after this returns is pushed to its receivers, who
    /// are online by then (or it is after their cursors at their next login).
    fn write_seq_counters(&self) -> StoreResult<()> {
        let mut tail = self.append_gate.locked();
        if !tail.counters.any_lagging() {
            return Ok(());
        }
        let tail = &mut *tail;
        sqlite_append::in_transaction(&tail.conn, |c| tail.counters.write_lagging(c))?;
        tail.counters.written();
        Ok(())
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

/// A clean stop leaves the file as an older binary or another tool expects it: the tail
/// indexed and every `conversation.last_seq` written back (the next open would catch up
/// anyway; see `sqlite_append`).
impl Drop for SqliteStore {
    fn drop(&mut self) {
        if let Err(e) = sqlite_index::index_tail(&mut self.append_gate.locked()) {
            log::warn!("message log index at stop: {e}");
        }
    }
}

/// Stores `batch` in one transaction with the append gate held, and counts it in the tail.
fn append_locked(tail: &mut LogTail, batch: &[Append<'_>]) -> StoreResult<Vec<Appended>> {
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    let (out, bumped) =
        sqlite_append::in_transaction(&tail.conn, |c| append_in(c, batch, &tail.counters))?;
    Ok(counted(tail, out, bumped))
}

/// Takes a committed append into the seq counters and the tail's row count.
fn counted(tail: &mut LogTail, out: Vec<Appended>, bumped: Bumped) -> Vec<Appended> {
    tail.counters.committed(bumped);
    tail.rows += out.iter().filter(|a| matches!(a, Appended::New(_))).count();
    out
}

impl Store for SqliteStore {
    fn pool_state(&self) -> Option<super::PoolState> {
        Some(super::PoolState::of(&self.pool))
    }

    fn register(&self, name: &str, password_hash: &str) -> StoreResult<UserId> {
        let c = self.conn()?;
        let key = super::names::name_key(name);
        c.prepare_cached(sql::REGISTER)
            .and_then(|mut s| s.insert(params![name, key, password_hash]))
            .map_err(|e| match is_unique_violation(&e) {
                true => StoreError::Conflict(format!("user name {name:?}")),
                false => query(e),
            })
    }

    fn user(&self, id: UserId) -> StoreResult<Option<UserRecord>> {
        self.user_where(sql::USER, rusqlite::types::Value::Integer(id))
    }

    fn user_by_name(&self, name: &str) -> StoreResult<Option<UserRecord>> {
        let key = super::names::name_key(name);
        self.user_where(sql::USER_BY_NAME, rusqlite::types::Value::Text(key))
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

    fn sessions_per_node(&self) -> StoreResult<Vec<(String, u64)>> {
        let c = self.conn()?;
        let mut s = c.prepare_cached(sql::SESSIONS_PER_NODE).map_err(query)?;
        let rows = s
            .query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))
            .map_err(query)?;
        rows.collect::<Result<_, _>>().map_err(query)
    }

    fn release_all(&self) -> StoreResult<u64> {
        let c = self.conn()?;
        let n = c.execute(sql::RELEASE_ALL, []).map_err(query)?;
        Ok(n as u64)
    }

    fn exclusive(&self) -> bool {
        true
    }

    fn node_running(&self, _node: &str) -> StoreResult<bool> {
        // No other server can run on a database this process holds exclusively.
        Ok(false)
    }

    fn release_dead_node(&self, node: &str) -> StoreResult<Option<u64>> {
        self.release_node(node).map(Some)
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
        tx.execute(sql::CREATOR_CURSOR, params![creator, ConvId::group(id).0])
            .map_err(query)?;
        tx.commit().map_err(query)?;
        Ok(id)
    }

    fn join_group(&self, user: UserId, group: GroupId) -> StoreResult<JoinOutcome> {
        // The joiner's cursor starts at the group's last seq: read with appends held, once
        // the counters are written, so that no message stored before the join counts as after
        // it (nor one after it as before).
        let mut tail = self.append_gate.locked();
        let tail = &mut *tail;
        let outcome = sqlite_append::in_transaction(&tail.conn, |c| {
            tail.counters.write_lagging(c)?;
            let exists = |q: &str, p: &[&dyn rusqlite::ToSql]| {
                c.query_row(q, p, |_| Ok(())).optional().map_err(query)
            };
            if exists(sql::GROUP_EXISTS, &[&group])?.is_none() {
                return Ok(JoinOutcome::NoSuchGroup);
            }
            if exists(sql::IS_MEMBER, &[&group, &user])?.is_some() {
                return Ok(JoinOutcome::AlreadyMember);
            }
            c.execute(sql::ADD_MEMBER, params![group, user, "normal"])
                .map_err(query)?;
            let conv = ConvId::group(group).0;
            c.prepare_cached(JOINER_CURSOR)
                .and_then(|mut s| s.execute(params![user, conv, conv]))
                .map_err(query)?;
            Ok(JoinOutcome::Joined)
        })?;
        tail.counters.written();
        Ok(outcome)
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

    fn append(&self, batch: &[Append<'_>]) -> StoreResult<Vec<Appended>> {
        plan::check(batch).map_err(StoreError::Query)?;
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut tail = self.append_gate.locked();
        let out = append_locked(&mut tail, batch)?;
        if tail.rows >= sqlite_index::INDEX_AT {
            // The batch is stored and will be acked: a failed pass only leaves a longer tail.
            if let Err(e) = sqlite_index::index_tail(&mut tail) {
                log::warn!("message log index: {e}");
            }
        }
        Ok(out)
    }

    fn try_append(&self, batch: &[Append<'_>]) -> Option<StoreResult<Vec<Appended>>> {
        if let Err(e) = plan::check(batch) {
            return Some(Err(StoreError::Query(e)));
        }
        let mut tail = match self.append_gate.try_lock() {
            Ok(tail) => tail,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        // The index pass that an append past INDEX_AT runs is left to one that may wait.
        if tail.rows >= sqlite_index::INDEX_AT {
            return None;
        }
        if batch.is_empty() {
            return Some(Ok(Vec::new()));
        }
        let tail = &mut *tail;
        let (out, bumped) = match sqlite_append::try_in_transaction(&tail.conn, |c| {
            append_in(c, batch, &tail.counters)
        })? {
            Ok(done) => done,
            Err(e) => return Some(Err(e)),
        };
        Some(Ok(counted(tail, out, bumped)))
    }

    fn read_after(&self, conv: ConvId, after: Seq, limit: usize) -> StoreResult<Vec<Logged>> {
        let c = self.conn()?;
        let mut s = c.prepare_cached(sqlite_index::READ_AFTER).map_err(query)?;
        s.query_map(params![conv.0, after, sql::limit(limit)], logged)
            .and_then(|rows| rows.collect())
            .map_err(query)
    }

    fn read_before(
        &self,
        conv: ConvId,
        before: Seq,
        floor: Seq,
        limit: usize,
    ) -> StoreResult<(Vec<Logged>, bool)> {
        let c = self.conn()?;
        let mut s = c.prepare_cached(sqlite_index::READ_BEFORE).map_err(query)?;
        let rows = s
            .query_map(
                params![conv.0, floor, before, sql::limit(limit).saturating_add(1)],
                logged,
            )
            .and_then(|rows| rows.collect())
            .map_err(query)?;
        Ok(sql::page_before(rows, limit))
    }

    fn unread(&self, user: UserId) -> StoreResult<Vec<Unread>> {
        self.write_seq_counters()?;
        let c = self.conn()?;
        let mut s = c.prepare_cached(sql::UNREAD).map_err(query)?;
        s.query_map([user; 5], |r| {
            Ok(Unread {
                conv: ConvId(r.get(0)?),
                cursor: r.get(1)?,
                last: r.get(2)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(query)
    }

    fn advance_cursors(&self, user: UserId, cursors: &[(ConvId, Seq)]) -> StoreResult<()> {
        if cursors.is_empty() {
            return Ok(());
        }
        let mut c = self.conn()?;
        let tx = c
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(query)?;
        {
            let mut s = tx.prepare_cached(ADVANCE).map_err(query)?;
            for (conv, seq) in cursors {
                s.execute(params![user, conv.0, seq]).map_err(query)?;
            }
        }
        tx.commit().map_err(query)
    }

    fn join_floor(&self, group: GroupId, user: UserId) -> StoreResult<Option<Seq>> {
        let c = self.conn()?;
        c.prepare_cached(sql::JOIN_FLOOR)
            .and_then(|mut s| {
                s.query_row(params![ConvId::group(group).0, group, user], |r| r.get(0))
                    .optional()
            })
            .map_err(query)
    }

    fn prune(&self, before_ms: i64, limit: usize) -> StoreResult<u64> {
        let expired = sql::now_ms().saturating_sub(CMID_WINDOW_MS);
        let mut c = self.conn()?;
        // Each step is one short write transaction of its own: the pruner never holds the
        // write lock for long.
        let n = sqlite_index::prune(&mut c, before_ms, sql::limit(limit))?;
        c.prepare_cached(PRUNE_CMIDS)
            .and_then(|mut s| s.execute(params![expired, sql::limit(limit)]))
            .map_err(query)?;
        Ok(n)
    }

    fn members_page(
        &self,
        group: GroupId,
        after: UserId,
        limit: usize,
    ) -> StoreResult<Vec<MemberInfo>> {
        let c = self.conn()?;
        let mut s = c.prepare_cached(sql::MEMBERS_PAGE).map_err(query)?;
        s.query_map(params![group, after, sql::limit(limit)], |r| {
            Ok(sql::member((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        })
        .and_then(|rows| rows.collect())
        .map_err(query)
    }

    fn group_summaries(&self, user: UserId) -> StoreResult<Vec<(GroupInfo, u64)>> {
        let c = self.conn()?;
        let mut s = c.prepare_cached(sql::GROUP_SUMMARIES).map_err(query)?;
        s.query_map([user], |r| {
            Ok(sql::summary((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        })
        .and_then(|rows| rows.collect())
        .map_err(query)
    }
}

/// A row of [`sql::READ_AFTER`] or [`sql::READ_BEFORE`].
fn logged(r: &rusqlite::Row<'_>) -> rusqlite::Result<Logged> {
    Ok(Logged {
        seq: r.get(0)?,
        body: body_text(r.get_ref(1)?),
        created_ms: r.get(2)?,
    })
}

/// A stored body as text, whatever a damaged file holds there: bytes that are not UTF-8 are
/// replaced (U+FFFD), so that one bad row reads as a bad message instead of failing the whole
/// page, login or sync that reads it (HISTORY then gives it as unreadable if it is no longer
/// JSON).
fn body_text(v: rusqlite::types::ValueRef<'_>) -> String {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Text(b) | ValueRef::Blob(b) => String::from_utf8_lossy(b).into_owned(),
        ValueRef::Integer(n) => n.to_string(),
        ValueRef::Real(x) => x.to_string(),
        ValueRef::Null => String::new(),
    }
}
