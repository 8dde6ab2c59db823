//! MySQL / MariaDB backend: the store a cluster of servers shares.
//!
//! Every statement is a prepared statement with parameters (the mysql crate caches them per
//! connection, so each costs one round trip after the first use). The login claim is a single
//! conditional UPDATE, which InnoDB serialises on the user row, so two servers can never both
//! win it.

use super::sql::{self, GroupRow};
use super::{mask_password, Claim, JoinOutcome, Store, StoreError, StoreResult, UserRecord};
use clusterchat_proto::{GroupId, GroupInfo, UserId, UserInfo};
use mysql::consts::CapabilityFlags;
use mysql::prelude::Queryable;
use mysql::{Conn, Opts, OptsBuilder, TxOpts};
use r2d2::{Pool, PooledConnection};
use r2d2_mysql::MySqlConnectionManager;
use std::time::Duration;

/// How long to wait to connect, for a pooled connection, or for one server reply: a database
/// that is down gives an error after this, never a hang.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The MySQL schema, applied at open so `--db mysql://…` works on an empty database.
const SCHEMA: &str = include_str!("../../schema.sql");

/// MySQL's "duplicate entry" error: a UNIQUE or PRIMARY KEY violation.
const ER_DUP_ENTRY: u16 = 1062;
/// MySQL's "cannot add a child row": a foreign key points nowhere.
const ER_NO_REFERENCED_ROW: u16 = 1452;

/// Most users one multi-row offline INSERT names, well below the 65535 placeholder limit.
const FANOUT_CHUNK: usize = 500;

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
}

/// Maps a driver error: a server's answer is [`StoreError::Query`], anything else (IO, a lost
/// connection, a driver failure) means the database is [`StoreError::Unavailable`].
fn err(e: mysql::Error) -> StoreError {
    match e {
        mysql::Error::MySqlError(e) => StoreError::Query(e.to_string()),
        mysql::Error::IoError(_) | mysql::Error::DriverError(_) => {
            StoreError::Unavailable(e.to_string())
        }
        other => StoreError::Query(other.to_string()),
    }
}

/// The server error code of `e`, if the server answered with an error.
fn server_code(e: &mysql::Error) -> Option<u16> {
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
        drop(first);
        let pool = Pool::builder()
            .max_size(pool_size.max(1))
            .connection_timeout(TIMEOUT)
            .error_handler(Box::new(r2d2::NopErrorHandler))
            .build(Manager(MySqlConnectionManager::new(builder)))
            .map_err(|e| StoreError::Unavailable(format!("{masked}: {e}")))?;
        Ok(Self { pool })
    }

    /// A pooled connection, or [`StoreError::Unavailable`] when none comes in time.
    fn conn(&self) -> StoreResult<PooledConnection<Manager>> {
        self.pool
            .get()
            .map_err(|e| StoreError::Unavailable(e.to_string()))
    }

    /// Runs an UPDATE and returns how many rows it matched.
    fn update(&self, stmt: &str, params: impl Into<mysql::Params>) -> StoreResult<u64> {
        let mut c = self.conn()?;
        c.exec_drop(stmt, params).map_err(err)?;
        Ok(c.affected_rows())
    }
}

impl Store for MysqlStore {
    fn register(&self, name: &str, password_hash: &str) -> StoreResult<UserId> {
        let mut c = self.conn()?;
        c.exec_drop(sql::REGISTER, (name, password_hash))
            .map_err(err)?;
        Ok(c.last_insert_id() as UserId)
    }

    fn user(&self, id: UserId) -> StoreResult<Option<UserRecord>> {
        let mut c = self.conn()?;
        let row: Option<(UserId, String, String)> = c.exec_first(sql::USER, (id,)).map_err(err)?;
        Ok(row.map(|(id, name, password_hash)| UserRecord {
            id,
            name,
            password_hash,
        }))
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

    fn release_all(&self) -> StoreResult<u64> {
        let mut c = self.conn()?;
        c.query_drop(sql::RELEASE_ALL).map_err(err)?;
        Ok(c.affected_rows())
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
        tx.commit().map_err(err)?;
        Ok(id)
    }

    fn join_group(&self, user: UserId, group: GroupId) -> StoreResult<JoinOutcome> {
        let mut c = self.conn()?;
        // One round trip in the common case: the keys tell the outcome.
        match c.exec_drop(sql::ADD_MEMBER, (group, user, "normal")) {
            Ok(()) => Ok(JoinOutcome::Joined),
            Err(e) if server_code(&e) == Some(ER_DUP_ENTRY) => Ok(JoinOutcome::AlreadyMember),
            Err(e) if server_code(&e) == Some(ER_NO_REFERENCED_ROW) => {
                let exists: Option<i64> = c.exec_first(sql::GROUP_EXISTS, (group,)).map_err(err)?;
                match exists {
                    None => Ok(JoinOutcome::NoSuchGroup),
                    Some(_) => Err(err(e)),
                }
            }
            Err(e) => Err(err(e)),
        }
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
}

/// Reads and deletes one user's offline queue in one transaction.
fn take_offline_once(c: &mut mysql::Conn, user: UserId) -> Result<Vec<String>, mysql::Error> {
    // Most logins find no message: a plain read answers that in one round trip. Anything
    // found is read again under lock, so this shortcut cannot lose or repeat a message.
    let any: Option<i64> = c.exec_first(
        "SELECT 1 FROM offlinemessage WHERE userid = ? LIMIT 1",
        (user,),
    )?;
    if any.is_none() {
        return Ok(Vec::new());
    }
    let mut tx = c.start_transaction(TxOpts::default())?;
    // FOR UPDATE locks exactly the rows read, and exactly those are deleted (by seq, not by
    // range: under READ COMMITTED a late commit with a lower seq could fall in a range
    // unread). Anything stored meanwhile stays queued for the next take.
    let rows: Vec<(i64, String)> = tx.exec(
        "SELECT seq, message FROM offlinemessage WHERE userid = ? ORDER BY seq FOR UPDATE",
        (user,),
    )?;
    for chunk in rows.chunks(FANOUT_CHUNK) {
        let marks = vec!["?"; chunk.len()].join(", ");
        let stmt = format!("DELETE FROM offlinemessage WHERE userid = ? AND seq IN ({marks})");
        let params: Vec<mysql::Value> = std::iter::once(mysql::Value::from(user))
            .chain(chunk.iter().map(|(seq, _)| mysql::Value::from(*seq)))
            .collect();
        tx.exec_drop(stmt, params)?;
    }
    tx.commit()?;
    Ok(rows.into_iter().map(|(_, m)| m).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_splits_into_the_five_tables() {
        let stmts = split_sql(SCHEMA);
        assert_eq!(stmts.len(), 5);
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
