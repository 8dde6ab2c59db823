//! MySQL / MariaDB backend: the store a cluster of servers shares.
//!
//! Every statement is a prepared statement with parameters (the mysql crate caches them per
//! connection, so each costs one round trip after the first use), except the log's append,
//! which sends its transaction as two texts of several statements each
//! ([`super::mysql_append_text`]). The login claim is a single conditional UPDATE, which
//! InnoDB serialises on the user row, so two servers can never both win it.

use super::mysql_append::{append_in, migrate_offline, retrying, take_offline_once, Failure};
use super::mysql_append_text;
use super::mysql_node_lock::{self, NodeLock};
use super::plan;
use super::sql::{self, GroupRow};
use super::{
    mask_password, Append, Appended, Claim, ConvId, JoinOutcome, Logged, Seq, Store, StoreError,
    StoreResult, Unread, UserRecord, CMID_WINDOW_MS,
};
use clusterchat_proto::{GroupId, GroupInfo, MemberInfo, UserId, UserInfo};
use mysql::consts::CapabilityFlags;
use mysql::prelude::Queryable;
use mysql::{Conn, Opts, OptsBuilder, TxOpts, Value};
use r2d2::{Pool, PooledConnection};
use r2d2_mysql::MySqlConnectionManager;
use std::time::Duration;

/// How long to wait to connect, for a pooled connection, or for one server reply: a database
/// that is down gives an error after this, never a hang.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The MySQL schema, applied at open so `--db mysql://…` works on an empty database.
const SCHEMA: &str = include_str!("../../schema.sql");

/// MySQL's "duplicate entry" error: a UNIQUE or PRIMARY KEY violation.
pub(super) const ER_DUP_ENTRY: u16 = 1062;
/// MySQL's "cannot add a child row": a foreign key points nowhere.
const ER_NO_REFERENCED_ROW: u16 = 1452;

/// Prepared statements each connection keeps: the multi-row statements of the log come in a
/// few sizes each (powers of two), on top of some thirty single statements.
const STATEMENT_CACHE: usize = 128;

/// Raises cursors (a repeated row changes nothing); parameters per row: user, conv, seq.
static ADVANCE: sql::MultiRow = sql::MultiRow::new(
    "INSERT INTO msgcursor(userid, conv, seq) VALUES ",
    "(?, ?, ?)",
    ", ",
    " ON DUPLICATE KEY UPDATE seq = GREATEST(seq, VALUES(seq))",
);
/// A joiner's cursor: delivered and history both from the group's current last seq.
/// Parameters: user, conv, conv.
const JOINER_CURSOR: &str = "INSERT INTO msgcursor(userid, conv, seq, floor) \
     SELECT ?, ?, COALESCE(MAX(last_seq), 0), COALESCE(MAX(last_seq), 0) FROM conversation \
     WHERE conv = ? ON DUPLICATE KEY UPDATE floor = VALUES(floor), \
     seq = GREATEST(seq, VALUES(seq))";
/// Deletes the oldest messages; parameters: before, limit.
const PRUNE_MESSAGES: &str = "DELETE FROM message WHERE created < ? ORDER BY created LIMIT ?";
/// Deletes expired cmid records; parameters: before, limit.
const PRUNE_CMIDS: &str = "DELETE FROM msgcmid WHERE created < ? ORDER BY created LIMIT ?";

/// Most users one multi-row offline INSERT names, well below the 65535 placeholder limit.
pub(super) const FANOUT_CHUNK: usize = 500;

/// The r2d2_mysql manager without its `has_broken` ping: r2d2 calls that on every return to
/// the pool, one wasted round trip per store call. A broken connection is still caught by the
/// ping r2d2 does at checkout (`test_on_check_out`).
#[derive(Debug)]
struct Manager(MySqlConnectionManager);

impl r2d2::ManageConnection for Manager {
    type Connection = Conn;
    type Error = mysql::Error;

    fn connect(&self) -> Result<Conn, mysql::Error> {
        self.0.connect()
    }

    fn is_valid(&self, conn: &mut Conn) -> Result<(), mysql::Error> {
        self.0.is_valid(conn)
    }

    fn has_broken(&self, _: &mut Conn) -> bool {
        false
    }
}

/// The store of a cluster: a pool of connections to one MySQL or MariaDB database.
pub struct MysqlStore {
    pool: Pool<Manager>,
    /// This server's node lock (see [`super::mysql_node_lock`]).
    node_lock: NodeLock,
}

/// Maps a driver error: a server's answer is [`StoreError::Query`], anything else (IO, a lost
/// connection, a driver failure) means the database is [`StoreError::Unavailable`].
pub(super) fn err(e: mysql::Error) -> StoreError {
    match e {
        mysql::Error::MySqlError(e) => StoreError::Query(e.to_string()),
        mysql::Error::IoError(_) | mysql::Error::DriverError(_) => {
            StoreError::Unavailable(e.to_string())
        }
        other => StoreError::Query(other.to_string()),
    }
}

/// The server error code of `e`, if the server answered with an error.
pub(super) fn server_code(e: &mysql::Error) -> Option<u16> {
    match e {
        mysql::Error::MySqlError(e) => Some(e.code),
        _ => None,
    }
}

/// The statements of a SQL script: `--` comments dropped, split on `;`, empty ones skipped.
/// Enough for schema.sql (no semicolons or `--` inside string literals).
pub fn split_sql(script: &str) -> Vec<String> {
    let code: String = script
        .lines()
        .map(|l| l.find("--").map_or(l, |i| &l[..i]))
        .collect::<Vec<_>>()
        .join("\n");
    code.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

impl MysqlStore {
    /// Connects to the database `url` names (failing fast when it is down), creates missing
    /// tables, and keeps a pool of `pool_size` connections (at least one).
    pub fn open(url: &str, pool_size: u32) -> StoreResult<Self> {
        let masked = mask_password(url);
        let opts = Opts::from_url(url).map_err(|e| StoreError::BadUrl {
            url: masked.clone(),
            reason: e.to_string(),
        })?;
        let builder = OptsBuilder::from_opts(opts)
            // The crate would silently switch a loopback TCP URL to the Unix socket.
            .prefer_socket(false)
            .tcp_connect_timeout(Some(TIMEOUT))
            .read_timeout(Some(TIMEOUT))
            .write_timeout(Some(TIMEOUT))
            // Affected rows = matched rows, as in SQLite: a take-over to the same session is
            // a success, not "someone else won".
            .additional_capabilities(CapabilityFlags::CLIENT_FOUND_ROWS)
            .stmt_cache_size(STATEMENT_CACHE)
            // READ COMMITTED: locking reads take no gap locks, so take_offline's FOR UPDATE
            // never blocks concurrent store_offline inserts (under REPEATABLE READ they
            // deadlocked against each other). Set once per connection, not per transaction.
            .init(vec![
                "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
            ]);
        let unavailable = |e: mysql::Error| StoreError::Unavailable(format!("{masked}: {e}"));
        // One direct connection first: its error names the cause, where r2d2 only times out.
        let mut first = Conn::new(builder.clone()).map_err(unavailable)?;
        for stmt in split_sql(SCHEMA) {
            first
                .query_drop(&stmt)
                .map_err(|e| StoreError::Query(format!("{masked}: applying schema.sql: {e}")))?;
        }
        super::names::mysql::upgrade(&mut first)?;
        retrying("moving the offline queue into the log", || {
            migrate_offline(&mut first)
        })?;
        drop(first);
        let pool = Pool::builder()
            .max_size(pool_size.max(1))
            .connection_timeout(TIMEOUT)
            .error_handler(Box::new(r2d2::NopErrorHandler))
            .build(Manager(MySqlConnectionManager::new(builder.clone())))
            .map_err(|e| StoreError::Unavailable(format!("{masked}: {e}")))?;
        Ok(Self {
            pool,
            node_lock: NodeLock::new(builder),
        })
    }

    /// A pooled connection, or [`StoreError::Unavailable`] when none comes in time.
    fn conn(&self) -> StoreResult<PooledConnection<Manager>> {
        self.pool
            .get()
            .map_err(|e| StoreError::Unavailable(e.to_string()))
    }

    /// Runs an UPDATE and returns how many rows it matched.
    /// The user row `stmt` finds by its one parameter.
    fn user_where(&self, stmt: &str, param: Value) -> StoreResult<Option<UserRecord>> {
        let mut c = self.conn()?;
        let row: Option<(UserId, String, String)> = c.exec_first(stmt, (param,)).map_err(err)?;
        Ok(row.map(|(id, name, password_hash)| UserRecord {
            id,
            name,
            password_hash,
        }))
    }

    fn update(&self, stmt: &str, params: impl Into<mysql::Params>) -> StoreResult<u64> {
        let mut c = self.conn()?;
        c.exec_drop(stmt, params).map_err(err)?;
        Ok(c.affected_rows())
    }
}

impl Store for MysqlStore {
    fn pool_state(&self) -> Option<super::PoolState> {
        Some(super::PoolState::of(&self.pool))
    }

    fn register(&self, name: &str, password_hash: &str) -> StoreResult<UserId> {
        let mut c = self.conn()?;
        let key = super::names::name_key(name);
        match c.exec_drop(sql::REGISTER, (name, key, password_hash)) {
            Err(e) if server_code(&e) == Some(ER_DUP_ENTRY) => {
                Err(StoreError::Conflict(format!("user name {name:?}")))
            }
            Err(e) => Err(err(e)),
            Ok(()) => Ok(c.last_insert_id() as UserId),
        }
    }

    fn user(&self, id: UserId) -> StoreResult<Option<UserRecord>> {
        self.user_where(sql::USER, Value::from(id))
    }

    fn user_by_name(&self, name: &str) -> StoreResult<Option<UserRecord>> {
        self.user_where(sql::USER_BY_NAME, Value::from(super::names::name_key(name)))
    }

    fn claim_session(&self, user: UserId, session: &str) -> StoreResult<Claim> {
        let mut c = self.conn()?;
        // A holder may log out between our UPDATE and SELECT; then the claim is simply retried.
        for _ in 0..3 {
            c.exec_drop(sql::CLAIM, (session, user)).map_err(err)?;
            if c.affected_rows() == 1 {
                return Ok(Claim::Claimed);
            }
            let holder: Option<(String, Option<String>)> =
                c.exec_first(sql::HOLDER, (user,)).map_err(err)?;
            if let Some(claim) = sql::claim_outcome(holder) {
                return Ok(claim);
            }
        }
        Ok(Claim::HeldBy(String::new()))
    }

    fn take_over_session(&self, user: UserId, old: &str, new: &str) -> StoreResult<bool> {
        Ok(self.update(sql::TAKE_OVER, (new, user, old))? == 1)
    }

    fn release_session(&self, user: UserId, session: &str) -> StoreResult<()> {
        self.update(sql::RELEASE, (user, session)).map(drop)
    }

    fn release_node(&self, node: &str) -> StoreResult<u64> {
        let prefix = sql::node_prefix(node);
        // SUBSTR counts characters on a character column, as in SQLite.
        let len = prefix.chars().count() as i64;
        self.update(sql::RELEASE_NODE, (len, prefix))
    }

    fn session_nodes(&self) -> StoreResult<Vec<String>> {
        self.conn()?.query(sql::SESSION_NODES).map_err(err)
    }

    fn sessions_per_node(&self) -> StoreResult<Vec<(String, u64)>> {
        self.conn()?.query(sql::SESSIONS_PER_NODE).map_err(err)
    }

    fn release_all(&self) -> StoreResult<u64> {
        let mut c = self.conn()?;
        c.query_drop(sql::RELEASE_ALL).map_err(err)?;
        Ok(c.affected_rows())
    }

    fn lock_node(&self, node: &str) -> StoreResult<()> {
        self.node_lock.lock(node)
    }

    fn keep_node_lock(&self) -> StoreResult<()> {
        self.node_lock.keep()
    }

    fn node_running(&self, node: &str) -> StoreResult<bool> {
        mysql_node_lock::running(&mut *self.conn()?, node)
    }

    fn release_dead_node(&self, node: &str) -> StoreResult<Option<u64>> {
        mysql_node_lock::release_dead(&mut *self.conn()?, node)
    }

    fn add_friend(&self, user: UserId, friend: UserId) -> StoreResult<()> {
        // Not INSERT IGNORE: that would also swallow a foreign key error for a missing user,
        // which SQLite reports.
        let stmt = "INSERT INTO friend(userid, friendid) VALUES (?, ?) \
                    ON DUPLICATE KEY UPDATE userid = userid";
        self.update(stmt, (user, friend)).map(drop)
    }

    fn friends(&self, user: UserId) -> StoreResult<Vec<UserInfo>> {
        let mut c = self.conn()?;
        c.exec_map(sql::FRIENDS, (user,), |(id, name, state)| UserInfo {
            id,
            name,
            state,
        })
        .map_err(err)
    }

    fn create_group(&self, creator: UserId, name: &str, desc: &str) -> StoreResult<GroupId> {
        let mut c = self.conn()?;
        let mut tx = c.start_transaction(TxOpts::default()).map_err(err)?;
        match tx.exec_drop(sql::CREATE_GROUP, (name, desc)) {
            Ok(()) => {}
            Err(e) if server_code(&e) == Some(ER_DUP_ENTRY) => {
                return Err(StoreError::Conflict(format!("group name {name:?}")))
            }
            Err(e) => return Err(err(e)),
        }
        let id = tx.last_insert_id().unwrap_or(0) as GroupId;
        tx.exec_drop(sql::ADD_MEMBER, (id, creator, "creator"))
            .map_err(err)?;
        tx.exec_drop(sql::CREATOR_CURSOR, (creator, ConvId::group(id).0))
            .map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(id)
    }

    fn join_group(&self, user: UserId, group: GroupId) -> StoreResult<JoinOutcome> {
        let mut c = self.conn()?;
        let mut tx = c.start_transaction(TxOpts::default()).map_err(err)?;
        // The keys tell the outcome; a new member gets their cursor in the same transaction.
        match tx.exec_drop(sql::ADD_MEMBER, (group, user, "normal")) {
            Ok(()) => {}
            Err(e) if server_code(&e) == Some(ER_DUP_ENTRY) => {
                return Ok(JoinOutcome::AlreadyMember)
            }
            Err(e) if server_code(&e) == Some(ER_NO_REFERENCED_ROW) => {
                drop(tx);
                let exists: Option<i64> = c.exec_first(sql::GROUP_EXISTS, (group,)).map_err(err)?;
                return match exists {
                    None => Ok(JoinOutcome::NoSuchGroup),
                    Some(_) => Err(err(e)),
                };
            }
            Err(e) => return Err(err(e)),
        }
        let conv = ConvId::group(group).0;
        tx.exec_drop(JOINER_CURSOR, (user, conv, conv))
            .map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(JoinOutcome::Joined)
    }

    fn groups_of(&self, user: UserId) -> StoreResult<Vec<GroupInfo>> {
        let mut c = self.conn()?;
        let rows: Vec<GroupRow> = c.exec(sql::GROUPS_OF, (user,)).map_err(err)?;
        Ok(sql::group_rows(rows))
    }

    fn group_members(&self, group: GroupId) -> StoreResult<Option<Vec<UserId>>> {
        let mut c = self.conn()?;
        // A LEFT JOIN answers "does it exist" and "who is in it" in one round trip.
        let stmt = "SELECT gu.userid FROM allgroup g \
                    LEFT JOIN groupuser gu ON gu.groupid = g.id \
                    WHERE g.id = ? ORDER BY gu.userid";
        let rows: Vec<Option<UserId>> = c.exec(stmt, (group,)).map_err(err)?;
        if rows.is_empty() {
            return Ok(None);
        }
        Ok(Some(rows.into_iter().flatten().collect()))
    }

    fn store_offline(&self, user: UserId, message: &str) -> StoreResult<()> {
        self.update(sql::STORE_OFFLINE, (user, message)).map(drop)
    }

    fn store_offline_many(&self, users: &[UserId], message: &str) -> StoreResult<()> {
        if users.is_empty() {
            return Ok(());
        }
        let mut c = self.conn()?;
        // One multi-row INSERT per chunk: the message is sent once per user, but in one round
        // trip instead of one per user. A single chunk is atomic without a transaction.
        let chunks: Vec<&[UserId]> = users.chunks(FANOUT_CHUNK).collect();
        let insert = |q: &mut dyn FnMut(String, Vec<mysql::Value>) -> StoreResult<()>| {
            chunks.iter().try_for_each(|chunk| {
                let rows = vec!["(?, ?)"; chunk.len()].join(", ");
                let stmt = format!("INSERT INTO offlinemessage(userid, message) VALUES {rows}");
                let params = chunk
                    .iter()
                    .flat_map(|u| [mysql::Value::from(*u), mysql::Value::from(message)])
                    .collect();
                q(stmt, params)
            })
        };
        if chunks.len() == 1 {
            return insert(&mut |stmt, params| c.exec_drop(stmt, params).map_err(err));
        }
        let mut tx = c.start_transaction(TxOpts::default()).map_err(err)?;
        insert(&mut |stmt, params| tx.exec_drop(stmt, params).map_err(err))?;
        tx.commit().map_err(err)
    }

    fn take_offline(&self, user: UserId) -> StoreResult<Vec<String>> {
        // Two takes of one queue at once (a login and a drain on two servers) may deadlock in
        // InnoDB; the loser is rolled back whole, so trying again is safe.
        let mut attempt = 0;
        loop {
            let mut c = self.conn()?;
            match take_offline_once(&mut c, user) {
                Err(e) if attempt < 3 && matches!(server_code(&e), Some(1213) | Some(1205)) => {
                    attempt += 1;
                    log::debug!("offline queue of user {user}: {e}; retrying");
                }
                other => return other.map_err(err),
            }
        }
    }

    fn append(&self, batch: &[Append<'_>]) -> StoreResult<Vec<Appended>> {
        plan::check(batch).map_err(StoreError::Query)?;
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        retrying("append", || {
            let mut c = self.conn().map_err(Failure::Fail)?;
            if let Some(out) = mysql_append_text::append(&mut c, batch)? {
                return Ok(out);
            }
            let mut tx = c.start_transaction(TxOpts::default())?;
            let out = append_in(&mut tx, batch)?;
            tx.commit()?;
            Ok(out)
        })
    }

    fn read_after(&self, conv: ConvId, after: Seq, limit: usize) -> StoreResult<Vec<Logged>> {
        let mut c = self.conn()?;
        c.exec_map(
            sql::READ_AFTER,
            (conv.0, after, sql::limit(limit)),
            |(seq, body, created_ms)| Logged {
                seq,
                body,
                created_ms,
            },
        )
        .map_err(err)
    }

    fn read_before(
        &self,
        conv: ConvId,
        before: Seq,
        floor: Seq,
        limit: usize,
    ) -> StoreResult<(Vec<Logged>, bool)> {
        let mut c = self.conn()?;
        let rows = c
            .exec_map(
                sql::READ_BEFORE,
                (conv.0, floor, before, sql::limit(limit).saturating_add(1)),
                |(seq, body, created_ms)| Logged {
                    seq,
                    body,
                    created_ms,
                },
            )
            .map_err(err)?;
        Ok(sql::page_before(rows, limit))
    }

    fn unread(&self, user: UserId) -> StoreResult<Vec<Unread>> {
        let mut c = self.conn()?;
        c.exec_map(
            sql::UNREAD,
            (user, user, user, user, user),
            |(conv, cursor, last)| Unread {
                conv: ConvId(conv),
                cursor,
                last,
            },
        )
        .map_err(err)
    }

    fn advance_cursors(&self, user: UserId, cursors: &[(ConvId, Seq)]) -> StoreResult<()> {
        // Highest per conversation, ascending: two advances of one user lock rows in the
        // same order.
        let mut want: Vec<(ConvId, Seq)> = cursors.to_vec();
        want.sort_unstable_by(|x, y| x.0.cmp(&y.0).then(y.1.cmp(&x.1)));
        want.dedup_by_key(|x| x.0);
        if want.is_empty() {
            return Ok(());
        }
        let stmts: Vec<(&str, Vec<Value>)> = plan::padded_runs(want.len(), sql::MAX_ROWS)
            .into_iter()
            .map(|(range, padded)| {
                let rows = &want[range];
                let params = (0..padded)
                    .flat_map(|i| {
                        let (conv, seq) = rows[i.min(rows.len() - 1)];
                        [Value::from(user), Value::from(conv.0), Value::from(seq)]
                    })
                    .collect();
                (ADVANCE.text(padded), params)
            })
            .collect();
        retrying("advance_cursors", || {
            let mut c = self.conn().map_err(Failure::Fail)?;
            if let [(stmt, params)] = &stmts[..] {
                c.exec_drop(*stmt, params.clone())?;
                return Ok(());
            }
            let mut tx = c.start_transaction(TxOpts::default())?;
            for (stmt, params) in &stmts {
                tx.exec_drop(*stmt, params.clone())?;
            }
            tx.commit()?;
            Ok(())
        })
    }

    fn join_floor(&self, group: GroupId, user: UserId) -> StoreResult<Option<Seq>> {
        let mut c = self.conn()?;
        c.exec_first(sql::JOIN_FLOOR, (ConvId::group(group).0, group, user))
            .map_err(err)
    }

    fn prune(&self, before_ms: i64, limit: usize) -> StoreResult<u64> {
        let expired = sql::now_ms().saturating_sub(CMID_WINDOW_MS);
        let n = self.update(PRUNE_MESSAGES, (before_ms, sql::limit(limit)))?;
        self.update(PRUNE_CMIDS, (expired, sql::limit(limit)))?;
        Ok(n)
    }

    fn members_page(
        &self,
        group: GroupId,
        after: UserId,
        limit: usize,
    ) -> StoreResult<Vec<MemberInfo>> {
        let mut c = self.conn()?;
        c.exec_map(
            sql::MEMBERS_PAGE,
            (group, after, sql::limit(limit)),
            sql::member,
        )
        .map_err(err)
    }

    fn group_summaries(&self, user: UserId) -> StoreResult<Vec<(GroupInfo, u64)>> {
        let mut c = self.conn()?;
        c.exec_map(sql::GROUP_SUMMARIES, (user,), sql::summary)
            .map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_splits_into_the_nine_tables() {
        let stmts = split_sql(SCHEMA);
        assert_eq!(stmts.len(), 9);
        assert!(stmts
            .iter()
            .all(|s| s.starts_with("CREATE TABLE IF NOT EXISTS")));
    }

    #[test]
    fn a_down_database_is_unavailable_with_the_password_masked() {
        let url = "mysql://root:hunter2@127.0.0.1:1/chat?prefer_socket=false";
        match MysqlStore::open(url, 2) {
            Err(StoreError::Unavailable(msg)) => {
                assert!(msg.contains("root:***@127.0.0.1:1"), "{msg}");
                assert!(!msg.contains("hunter2"), "{msg}");
            }
            Err(e) => panic!("wrong error: {e}"),
            Ok(_) => panic!("opened a database on port 1"),
        }
    }
}
