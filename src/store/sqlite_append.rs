//! Appending to the SQLite log: seq numbers given out from memory, rows written in batches.
//!
//! The store is exclusive ([`Store::exclusive`](super::Store::exclusive)): no other process
//! writes this file, so each conversation's last seq can live in memory, under the append gate.
//! An append then writes only the messages (and their cmids); `conversation.last_seq` is
//! brought up to date in bulk, by the index pass (see `sqlite_index`) and before anything
//! reads it ([`SqliteStore::unread`](super::sqlite::SqliteStore), a group join). A new
//! conversation's row is still written by the append that starts it (rare: once per pair or
//! group), so the row set is always complete.
//!
//! A row can only lag for messages of the tail: the index pass writes every lagging row in the
//! transaction that moves the tail into the index. So a server that was killed leaves rows
//! behind only for tail messages, and [`catch_up`] brings them forward at the next open, before
//! any seq is given out (the migration of an old offline queue included). A group join reads
//! the group's last seq with the append gate held, after writing the rows back.
//!
//! Measured with `cargo bench --bench log_append` (50 conversations, batches of 50): the
//! append no longer dirties the `conversation` page nor runs its upsert, 2.2 → 1.7 µs of the
//! writer's CPU per message (see BENCHMARKS.md for the current figures).

use super::plan::{self, AppendPlan, CmidRow};
use super::sql;
use super::sqlite::query;
use super::{Append, Appended, ConvId, Seq, StoreError, StoreResult};
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::{HashMap, HashSet};

/// Conversations remembered at most; past it, once every counter is written back, the map
/// starts again empty (each conversation is read back from its row at its next message).
const MAX_COUNTERS: usize = 1 << 20;

/// Stores messages; parameters per row: conv, seq, sender, created, body.
static MESSAGE_INSERT: sql::MultiRow = sql::MultiRow::new(
    "INSERT OR FAIL INTO message(conv, seq, sender, created, body) VALUES ",
    sql::FIVE,
    ", ",
    "",
);
/// Records (or renews) keys; parameters per row: sender, cmid, conv, seq, created.
static CMID_PUT: sql::MultiRow = sql::MultiRow::new(
    "INSERT OR FAIL INTO msgcmid(sender, cmid, conv, seq, created) VALUES ",
    sql::FIVE,
    ", ",
    " ON CONFLICT(sender, cmid) DO UPDATE SET \
     conv = excluded.conv, seq = excluded.seq, created = excluded.created",
);
/// The `msgcmid` row of one key; parameters: sender, cmid.
const CMID_GET: &str = "SELECT conv, seq, created FROM msgcmid WHERE sender = ? AND cmid = ?";
/// A conversation's last seq as written; parameter: conv.
const LAST_SEQ: &str = "SELECT last_seq FROM conversation WHERE conv = ?";
/// A conversation's first row; parameters: conv, last_seq, usera, userb.
const NEW_CONVERSATION: &str =
    "INSERT INTO conversation(conv, last_seq, usera, userb) VALUES (?, ?, ?, ?)";
/// Brings a row up to date; parameters: last_seq, conv.
const WRITE_LAST_SEQ: &str = "UPDATE conversation SET last_seq = MAX(last_seq, ?) WHERE conv = ?";

/// Brings every `conversation.last_seq` up to the highest seq stored in the log's tail: what a
/// killed server may have left behind (see the module docs). At open, before any append.
pub(super) fn catch_up(c: &Connection) -> StoreResult<()> {
    let tail: Vec<(i64, Seq)> = c
        .prepare(
            "SELECT conv, MAX(seq) FROM message \
             WHERE id > (SELECT upto FROM msgindexed) GROUP BY conv",
        )
        .and_then(|mut s| {
            s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()
        })
        .map_err(query)?;
    in_transaction(c, |c| {
        let mut s = c.prepare_cached(WRITE_LAST_SEQ).map_err(query)?;
        for (conv, seq) in &tail {
            s.execute(params![seq, conv]).map_err(query)?;
        }
        Ok(())
    })
}

/// Each conversation's last seq given out by this process, and which rows are behind.
#[derive(Debug, Default)]
pub(crate) struct SeqCounters {
    last: HashMap<ConvId, Seq>,
    lagging: HashSet<ConvId>,
}

/// What a committed append changes in the counters.
pub(super) struct Bumped {
    last: Vec<(ConvId, Seq)>,
    /// Whether each conversation's row was left behind (false: written by this append).
    behind: Vec<bool>,
}

impl SeqCounters {
    /// Takes in an append once its transaction has committed (never before: a rolled back
    /// append gives nothing out).
    pub(super) fn committed(&mut self, bumped: Bumped) {
        for ((conv, seq), behind) in bumped.last.into_iter().zip(bumped.behind) {
            self.last.insert(conv, seq);
            if behind {
                self.lagging.insert(conv);
            }
        }
    }

    /// Whether some `conversation.last_seq` is behind.
    pub(crate) fn any_lagging(&self) -> bool {
        !self.lagging.is_empty()
    }

    /// Writes every lagging `last_seq` inside the caller's transaction; call
    /// [`written`](Self::written) once it has committed.
    pub(crate) fn write_lagging(&self, c: &Connection) -> StoreResult<()> {
        let mut s = c.prepare_cached(WRITE_LAST_SEQ).map_err(query)?;
        for conv in &self.lagging {
            s.execute(params![self.last[conv], conv.0]).map_err(query)?;
        }
        Ok(())
    }

    /// The rows written by [`write_lagging`](Self::write_lagging) have committed.
    pub(crate) fn written(&mut self) {
        self.lagging.clear();
        if self.last.len() > MAX_COUNTERS {
            self.last.clear();
        }
    }
}

/// Runs `f` in a write transaction on `c` (`BEGIN IMMEDIATE`), committed if it succeeds and
/// rolled back otherwise. The three statements are prepared once per connection (rusqlite's
/// `Transaction` parses its `BEGIN` and `COMMIT` again each time: ~2% of a server's CPU at
/// `chatbench pairs --window 1`).
pub(super) fn in_transaction<T>(
    c: &Connection,
    f: impl FnOnce(&Connection) -> StoreResult<T>,
) -> StoreResult<T> {
    run(c, "BEGIN IMMEDIATE").map_err(query)?;
    finish(c, f)
}

/// [`in_transaction`], or `None` at once, with nothing done, when another connection holds
/// the database's write lock (a worker registering a user, say): the `BEGIN` does not wait
/// for it (SQLite's busy handler would sleep, in steps of milliseconds).
pub(super) fn try_in_transaction<T>(
    c: &Connection,
    f: impl FnOnce(&Connection) -> StoreResult<T>,
) -> Option<StoreResult<T>> {
    if let Err(e) = c.busy_timeout(std::time::Duration::ZERO) {
        return Some(Err(query(e)));
    }
    let begun = run(c, "BEGIN IMMEDIATE");
    if let Err(e) = c.busy_timeout(super::sqlite::BUSY_TIMEOUT) {
        log::warn!("message log: cannot restore the busy timeout: {e}");
    }
    match begun {
        Ok(()) => Some(finish(c, f)),
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::DatabaseBusy =>
        {
            None
        }
        Err(e) => Some(Err(query(e))),
    }
}

fn run(c: &Connection, sql: &str) -> rusqlite::Result<()> {
    c.prepare_cached(sql)
        .and_then(|mut s| s.execute([]))
        .map(drop)
}

/// Runs `f` in the transaction just begun on `c`, then commits, or rolls back if anything
/// failed.
fn finish<T>(c: &Connection, f: impl FnOnce(&Connection) -> StoreResult<T>) -> StoreResult<T> {
    let out = f(c).and_then(|v| run(c, "COMMIT").map_err(query).map(|_| v));
    if out.is_err() && !c.is_autocommit() {
        if let Err(e) = run(c, "ROLLBACK") {
            log::warn!("message log: rollback failed: {e}");
        }
    }
    out
}

/// Stores a batch inside the caller's transaction: the messages that are not duplicates get
/// the next seqs of their conversations (from `counters`, or from the rows for conversations
/// not in memory). Returns the outcomes and what to give [`SeqCounters::committed`] once the
/// transaction has committed.
pub(super) fn append_in(
    c: &Connection,
    batch: &[Append<'_>],
    counters: &SeqCounters,
) -> StoreResult<(Vec<Appended>, Bumped)> {
    let known = cmids_known(c, batch)?;
    let plan = AppendPlan::new(batch, &known);
    let mut bumped = Bumped {
        last: Vec::with_capacity(plan.convs().len()),
        behind: Vec::with_capacity(plan.convs().len()),
    };
    if !plan.stores_anything() {
        let (_, out) = plan
            .assign(batch, &HashMap::new())
            .map_err(StoreError::Query)?;
        return Ok((out, bumped));
    }
    let mut last = HashMap::with_capacity(plan.convs().len());
    for &(conv, k) in plan.convs() {
        let (before, behind) = match counters.last.get(&conv) {
            Some(&seq) => (seq, true),
            None => match row_last_seq(c, conv)? {
                Some(seq) => (seq, true),
                None => {
                    let (a, b) = sql::conv_users(conv);
                    c.prepare_cached(NEW_CONVERSATION)
                        .and_then(|mut s| s.execute(params![conv.0, k, a, b]))
                        .map_err(query)?;
                    (0, false)
                }
            },
        };
        last.insert(conv, before + k);
        bumped.last.push((conv, before + k));
        bumped.behind.push(behind);
    }
    let (seqs, out) = plan.assign(batch, &last).map_err(StoreError::Query)?;
    insert_messages(c, batch, &plan, &seqs)?;
    put_cmids(c, batch, &plan, &seqs)?;
    Ok((out, bumped))
}

/// The `msgcmid` rows of the batch's keys that exist.
fn cmids_known<'a>(
    c: &Connection,
    batch: &[Append<'a>],
) -> StoreResult<HashMap<(i64, &'a str), CmidRow>> {
    let mut known = HashMap::new();
    let mut get = c.prepare_cached(CMID_GET).map_err(query)?;
    for key in plan::cmid_keys(batch) {
        let row = get
            .query_row(params![key.0, key.1], |r| {
                Ok(CmidRow {
                    conv: ConvId(r.get(0)?),
                    seq: r.get(1)?,
                    created: r.get(2)?,
                })
            })
            .optional()
            .map_err(query)?;
        if let Some(row) = row {
            known.insert(key, row);
        }
    }
    Ok(known)
}

fn row_last_seq(c: &Connection, conv: ConvId) -> StoreResult<Option<Seq>> {
    c.prepare_cached(LAST_SEQ)
        .and_then(|mut s| s.query_row([conv.0], |r| r.get(0)).optional())
        .map_err(query)
}

fn insert_messages(
    c: &Connection,
    batch: &[Append<'_>],
    plan: &AppendPlan,
    seqs: &[Seq],
) -> StoreResult<()> {
    let stored: Vec<usize> = plan.stored().collect();
    for run in plan::pow2_runs(stored.len(), sql::MAX_ROWS, sql::MESSAGE_BYTES, |i| {
        batch[stored[i]].body.len()
    }) {
        let mut s = c
            .prepare_cached(MESSAGE_INSERT.text(run.len()))
            .map_err(query)?;
        for (n, &i) in stored[run].iter().enumerate() {
            let m = &batch[i];
            let p = n * 5;
            s.raw_bind_parameter(p + 1, m.conv.0).map_err(query)?;
            s.raw_bind_parameter(p + 2, seqs[i]).map_err(query)?;
            s.raw_bind_parameter(p + 3, m.sender).map_err(query)?;
            s.raw_bind_parameter(p + 4, m.created_ms).map_err(query)?;
            s.raw_bind_parameter(p + 5, m.body).map_err(query)?;
        }
        s.raw_execute().map_err(query)?;
    }
    Ok(())
}

fn put_cmids(
    c: &Connection,
    batch: &[Append<'_>],
    plan: &AppendPlan,
    seqs: &[Seq],
) -> StoreResult<()> {
    let writes = plan.cmid_writes();
    for run in plan::pow2_runs(writes.len(), sql::MAX_ROWS, usize::MAX, |_| 0) {
        let mut s = c.prepare_cached(CMID_PUT.text(run.len())).map_err(query)?;
        for (n, w) in writes[run].iter().enumerate() {
            let m = &batch[w.index];
            let p = n * 5;
            s.raw_bind_parameter(p + 1, m.sender).map_err(query)?;
            s.raw_bind_parameter(p + 2, m.cmid).map_err(query)?;
            s.raw_bind_parameter(p + 3, m.conv.0).map_err(query)?;
            s.raw_bind_parameter(p + 4, seqs[w.index]).map_err(query)?;
            s.raw_bind_parameter(p + 5, m.created_ms).map_err(query)?;
        }
        s.raw_execute().map_err(query)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::store::sqlite::SqliteStore;
    use crate::store::{Append, Appended, ConvId, Store};
    use rusqlite::Connection;

    fn append_one(store: &SqliteStore, conv: ConvId) -> Appended {
        let body = "{\"m\":1}";
        let out = store
            .append(&[Append {
                conv,
                sender: 1,
                cmid: None,
                body,
                created_ms: 1,
            }])
            .expect("append");
        out[0]
    }

    /// `try_append` stores at once when it can, and does nothing (None) when it would wait:
    /// the append gate held (a checkpoint's rest, another append), another connection's
    /// write transaction, or an index pass due.
    #[test]
    fn try_append_never_waits_and_leaves_upkeep_to_append() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("log.db");
        let store = SqliteStore::open(path.to_str().expect("utf-8 path"), 2).expect("open");
        let conv = ConvId::pair(1, 2);
        let one = [Append {
            conv,
            sender: 1,
            cmid: None,
            body: "{\"m\":1}",
            created_ms: 1,
        }];
        let outcome =
            |r: Option<crate::store::StoreResult<Vec<Appended>>>| r.map(|r| r.expect("append")[0]);
        assert_eq!(outcome(store.try_append(&one)), Some(Appended::New(1)));
        {
            let _held = store.append_gate.lock().expect("gate");
            assert_eq!(outcome(store.try_append(&one)), None);
        }
        {
            // Another connection holds the database's write lock (a worker's transaction):
            // None at once, not SQLite's busy wait (nor its busy error after 5 s).
            let other = Connection::open(&path).expect("second connection");
            other.execute_batch("BEGIN IMMEDIATE").expect("write lock");
            assert_eq!(outcome(store.try_append(&one)), None);
            other.execute_batch("COMMIT").expect("release");
        }
        store.append_gate.lock().expect("gate").rows = super::super::sqlite_index::INDEX_AT;
        assert_eq!(outcome(store.try_append(&one)), None);
        // append runs the pass, and then try_append may go on.
        assert_eq!(append_one(&store, conv), Appended::New(2));
        assert_eq!(store.append_gate.lock().expect("gate").rows, 0);
        assert_eq!(outcome(store.try_append(&one)), Some(Appended::New(3)));
        let seqs: Vec<i64> = store
            .read_after(conv, 0, 10)
            .expect("read")
            .iter()
            .map(|m| m.seq)
            .collect();
        assert_eq!(seqs, [1, 2, 3], "what returned None stored nothing");
    }

    /// A server killed before its counters were written back leaves `conversation.last_seq`
    /// behind the tail; the next open must not give those seqs out again.
    #[test]
    fn rows_left_behind_by_a_killed_server_catch_up_at_open() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("log.db");
        let path = path.to_str().expect("utf-8 path");
        let conv = ConvId::pair(1, 2);
        {
            let store = SqliteStore::open(path, 2).expect("open");
            for seq in 1..=10 {
                assert_eq!(append_one(&store, conv), Appended::New(seq));
            }
        }
        let c = Connection::open(path).expect("raw connection");
        let (last, tail): (i64, i64) = c
            .query_row(
                "SELECT (SELECT last_seq FROM conversation), \
                 (SELECT COUNT(*) FROM message WHERE id > (SELECT upto FROM msgindexed))",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("state after a clean stop");
        assert_eq!(
            (last, tail),
            (10, 0),
            "a clean stop writes back and indexes"
        );
        // What a kill leaves when the tail was not indexed and the row not written back.
        c.execute_batch(
            "DELETE FROM msgseq; UPDATE msgindexed SET upto = 0; \
             UPDATE conversation SET last_seq = 3",
        )
        .expect("rewind");
        drop(c);
        let store = SqliteStore::open(path, 2).expect("reopen");
        assert_eq!(append_one(&store, conv), Appended::New(11));
        let unread = store.unread(1).expect("unread");
        assert_eq!(unread.len(), 1);
        assert_eq!(unread[0].last, 11, "unread sees the new last seq at once");
    }

    /// The same kill, then an open that also migrates an old offline message of that
    /// conversation: the migration must not give a stored seq out again either.
    #[test]
    fn the_offline_migration_after_a_kill_takes_the_next_seq() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("log.db");
        let path = path.to_str().expect("utf-8 path");
        let (a, b) = {
            let store = SqliteStore::open(path, 2).expect("open");
            let a = store.register("alice", "x").expect("alice");
            let b = store.register("bob", "x").expect("bob");
            for seq in 1..=10 {
                assert_eq!(append_one(&store, ConvId::pair(a, b)), Appended::New(seq));
            }
            (a, b)
        };
        let c = Connection::open(path).expect("raw connection");
        c.execute_batch(
            "DELETE FROM msgseq; UPDATE msgindexed SET upto = 0; \
             UPDATE conversation SET last_seq = 3",
        )
        .expect("rewind");
        let old = format!(
            "{{\"msgid\":6,\"id\":{a},\"name\":\"alice\",\"toid\":{b},\"msg\":\"old\",\
             \"time\":\"2026-11-27 05:02:43\"}}"
        );
        c.execute(
            "INSERT INTO offlinemessage(userid, message) VALUES (?, ?)",
            rusqlite::params![b, old],
        )
        .expect("offline row");
        drop(c);
        let store = SqliteStore::open(path, 2).expect("reopen");
        let page = store
            .read_after(ConvId::pair(a, b), 10, 10)
            .expect("read_after");
        assert_eq!(page.len(), 1, "the migrated message follows the ten");
        assert_eq!(page[0].seq, 11);
        assert_eq!(append_one(&store, ConvId::pair(a, b)), Appended::New(12));
        drop(store);
        let c = Connection::open(path).expect("raw connection");
        let twice: i64 = c
            .query_row(
                "SELECT COUNT(*) FROM (SELECT 1 FROM message GROUP BY conv, seq \
                 HAVING COUNT(*) > 1)",
                [],
                |r| r.get(0),
            )
            .expect("count");
        assert_eq!(twice, 0, "a seq stored twice");
    }
}
