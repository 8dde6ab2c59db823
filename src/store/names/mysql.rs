//! MySQL / MariaDB: the `name_key` column, its UNIQUE index, and the upgrade of rows without a
//! key (see [`super`]). Servers of a cluster may open the database at once: the schema changes
//! tolerate a racer having made them, and the keys are written in one transaction over the
//! locked user rows (a racing registration that takes a key first makes it start again).

use super::{log_renames, plan_keys, KeyFix, NameRow};
use crate::store::{StoreError, StoreResult};
use mysql::prelude::Queryable;
use mysql::{Conn, TxOpts};

/// "Duplicate column name": a racer added the column first.
const ER_DUP_FIELDNAME: u16 = 1060;
/// "Duplicate key name": a racer added the index first.
const ER_DUP_KEYNAME: u16 = 1061;
/// A UNIQUE violation: a registration took a key this upgrade meant to give.
const ER_DUP_ENTRY: u16 = 1062;
/// How many times the keys are written in all before the error is returned.
const ATTEMPTS: u32 = 5;

fn failed(e: mysql::Error) -> StoreError {
    StoreError::Query(format!("making user names unique: {e}"))
}

fn code(e: &mysql::Error) -> Option<u16> {
    match e {
        mysql::Error::MySqlError(e) => Some(e.code),
        _ => None,
    }
}

/// Runs a schema change unless `exists` (an information_schema count) says it is made; a
/// racer making it first (`racing` error code) is fine.
fn ensure(c: &mut Conn, exists: &str, change: &str, racing: u16) -> StoreResult<()> {
    let n: Option<u64> = c.query_first(exists).map_err(failed)?;
    if n.unwrap_or(0) > 0 {
        return Ok(());
    }
    match c.query_drop(change) {
        Err(e) if code(&e) != Some(racing) => Err(failed(e)),
        _ => Ok(()),
    }
}

/// Adds `name_key` and its UNIQUE index to a `user` table made before them, then gives every
/// row without a key one (renaming later holders of a taken name).
pub fn upgrade(c: &mut Conn) -> StoreResult<()> {
    ensure(
        c,
        "SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() \
         AND TABLE_NAME = 'user' AND COLUMN_NAME = 'name_key'",
        "ALTER TABLE user ADD COLUMN name_key VARCHAR(200) \
         CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL",
        ER_DUP_FIELDNAME,
    )?;
    ensure(
        c,
        "SELECT COUNT(*) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() \
         AND TABLE_NAME = 'user' AND INDEX_NAME = 'user_name_key'",
        "ALTER TABLE user ADD UNIQUE KEY user_name_key (name_key)",
        ER_DUP_KEYNAME,
    )?;
    for attempt in 1.. {
        match fill_keys(c) {
            Ok(fixes) => {
                log_renames(&fixes);
                if !fixes.is_empty() {
                    log::info!("user names: {} users got a name key", fixes.len());
                }
                return Ok(());
            }
            Err(e) if code(&e) == Some(ER_DUP_ENTRY) && attempt < ATTEMPTS => {
                log::debug!("making user names unique: lost a race ({e}); trying again");
            }
            Err(e) => return Err(failed(e)),
        }
    }
    unreachable!("the loop returns")
}

/// One attempt: the keys of every row without one, written in one transaction.
fn fill_keys(c: &mut Conn) -> Result<Vec<KeyFix>, mysql::Error> {
    let missing: Option<i64> =
        c.query_first("SELECT 1 FROM user WHERE name_key IS NULL LIMIT 1")?;
    if missing.is_none() {
        return Ok(Vec::new());
    }
    let mut tx = c.start_transaction(TxOpts::default())?;
    let rows: Vec<NameRow> = tx.query_map(
        "SELECT id, name, name_key FROM user FOR UPDATE",
        |(id, name, key)| NameRow { id, name, key },
    )?;
    let fixes = plan_keys(&rows);
    tx.exec_batch(
        "UPDATE user SET name = ?, name_key = ? WHERE id = ?",
        fixes.iter().map(|f| (&f.name, &f.key, f.id)),
    )?;
    tx.commit()?;
    Ok(fixes)
}
