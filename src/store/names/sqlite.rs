//! SQLite: the `name_key` column, its UNIQUE index, and the upgrade of rows without a key
//! (see [`super`]).

use super::{log_renames, plan_keys, NameRow};
use crate::store::{StoreError, StoreResult};
use rusqlite::{params, Connection, TransactionBehavior};

fn query(e: rusqlite::Error) -> StoreError {
    StoreError::Query(format!("making user names unique: {e}"))
}

/// Adds `name_key` and its UNIQUE index to a `user` table made before them, then gives every
/// row without a key one (renaming later holders of a taken name). Cheap when there is
/// nothing to do: one schema read and one indexed probe.
pub fn upgrade(c: &mut Connection) -> StoreResult<()> {
    let has_key: bool = c
        .prepare("SELECT 1 FROM pragma_table_info('user') WHERE name = 'name_key'")
        .and_then(|mut s| s.exists([]))
        .map_err(query)?;
    if !has_key {
        c.execute_batch("ALTER TABLE user ADD COLUMN name_key TEXT NULL")
            .map_err(query)?;
    }
    c.execute_batch("CREATE UNIQUE INDEX IF NOT EXISTS user_name_key ON user(name_key)")
        .map_err(query)?;
    let tx = c
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(query)?;
    let missing: bool = tx
        .prepare("SELECT 1 FROM user WHERE name_key IS NULL LIMIT 1")
        .and_then(|mut s| s.exists([]))
        .map_err(query)?;
    if !missing {
        return Ok(());
    }
    let rows: Vec<NameRow> = tx
        .prepare("SELECT id, name, name_key FROM user")
        .and_then(|mut s| {
            s.query_map([], |r| {
                Ok(NameRow {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    key: r.get(2)?,
                })
            })?
            .collect()
        })
        .map_err(query)?;
    let fixes = plan_keys(&rows);
    {
        let mut set = tx
            .prepare("UPDATE user SET name = ?, name_key = ? WHERE id = ?")
            .map_err(query)?;
        for f in &fixes {
            set.execute(params![f.name, f.key, f.id]).map_err(query)?;
        }
    }
    tx.commit().map_err(query)?;
    log_renames(&fixes);
    log::info!("user names: {} users got a name key", fixes.len());
    Ok(())
}
