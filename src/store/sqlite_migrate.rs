//! The SQLite store's upgrade of the old offline queue into the message log (see `migrate`).

use super::migrate::{self, OfflineRow};
use super::sql;
use super::sqlite::query;
use super::sqlite_append::{append_in, SeqCounters};
use super::{Seq, StoreResult};
use clusterchat_proto::UserId;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::collections::{BTreeSet, HashMap};

/// Sets a cursor (the migration); parameters: user, conv, seq.
const SET_CURSOR: &str = "INSERT INTO msgcursor(userid, conv, seq) VALUES (?, ?, ?) \
     ON CONFLICT(userid, conv) DO UPDATE SET seq = excluded.seq";

/// Moves the old offline queue into the log, in one transaction (see [`migrate`]).
pub(super) fn migrate_offline(c: &mut Connection) -> StoreResult<()> {
    let tx = c
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(query)?;
    let rows: Vec<OfflineRow> = {
        let mut s = tx.prepare(sql::OFFLINE_ALL).map_err(query)?;
        s.query_map([], |r| {
            Ok(OfflineRow {
                seq: r.get(0)?,
                user: r.get(1)?,
                message: r.get(2)?,
            })
        })
        .and_then(|rows| rows.collect::<rusqlite::Result<_>>())
        .map_err(query)?
    };
    if rows.is_empty() {
        return Ok(());
    }
    let (users, groups) = migrate::referenced(&rows);
    let existing = |table: &str, ids: &BTreeSet<i64>| -> StoreResult<BTreeSet<i64>> {
        let mut s = tx
            .prepare(&format!("SELECT 1 FROM {table} WHERE id = ?"))
            .map_err(query)?;
        let mut found = BTreeSet::new();
        for id in ids {
            if s.exists([id]).map_err(query)? {
                found.insert(*id);
            }
        }
        Ok(found)
    };
    let users = existing("user", &users)?;
    let groups = existing("allgroup", &groups)?;
    let m = migrate::plan(&rows, &users, &groups);
    m.warn_kept(&rows);
    if m.moves.is_empty() {
        return Ok(());
    }
    let batch = m.appends(&rows, sql::now_ms());
    let mut counters = SeqCounters::default();
    let (out, bumped) = append_in(&tx, &batch, &counters)?;
    counters.committed(bumped);
    counters.write_lagging(&tx)?;
    let seqs = migrate::Migration::seqs(out);
    {
        let mut members = tx.prepare_cached(sql::MEMBERS).map_err(query)?;
        let mut cursor = tx
            .prepare_cached("SELECT seq FROM msgcursor WHERE userid = ? AND conv = ?")
            .map_err(query)?;
        let mut set = tx.prepare_cached(SET_CURSOR).map_err(query)?;
        for (conv, moved) in m.by_conversation(&seqs) {
            let participants: Vec<UserId> = match (conv.as_pair(), conv.as_group()) {
                (Some((a, b)), _) => vec![a, b],
                (None, Some(g)) => members
                    .query_map([g], |r| r.get(0))
                    .and_then(|rows| rows.collect())
                    .map_err(query)?,
                (None, None) => Vec::new(),
            };
            let mut had = HashMap::new();
            for u in participants.iter().chain(moved.first.keys()) {
                if let Some(seq) = cursor
                    .query_row(params![u, conv.0], |r| r.get::<_, Seq>(0))
                    .optional()
                    .map_err(query)?
                {
                    had.insert(*u, seq);
                }
            }
            for (u, seq) in moved.cursors(&participants, &had) {
                set.execute(params![u, conv.0, seq]).map_err(query)?;
            }
        }
        let mut delete = tx
            .prepare_cached("DELETE FROM offlinemessage WHERE seq = ?")
            .map_err(query)?;
        for seq in &m.migrated {
            delete.execute([seq]).map_err(query)?;
        }
    }
    tx.commit().map_err(query)?;
    log::info!(
        "moved {} offline messages into the log as {} messages",
        m.migrated.len(),
        m.moves.len()
    );
    Ok(())
}
