//! The SQLite log's `(conv, seq)` index, kept a little behind the log.
//!
//! A commit writes every page it dirtied to the WAL. A batch of chats to 50 conversations
//! dirties one leaf of a `(conv, seq)` index per conversation, so an index kept in step with
//! the log costs about one 4 KiB page per message: measured with `cargo bench --bench
//! log_append`, 5.7–6.0 µs of the writer's CPU per message for batches of 50 messages to 50
//! conversations, against 1.5 µs for the same rows without that index and 2.1 with this one.
//! Reads pay for it: a page of 64 messages costs ~72 µs against ~52 (one more lookup a row).
//!
//! So `message` is appended in arrival order (`id`, which is never reused) with no index on
//! `(conv, seq)`, and `msgseq` maps `(conv, seq)` to `id` for every message up to
//! `msgindexed.upto`. The rows after `upto`, the *tail*, are at most [`INDEX_AT`] plus one
//! batch: an index pass adds them to `msgseq` in `(conv, seq)` order, so each leaf it touches
//! takes many entries at once. A pass runs after an append that leaves the tail at
//! [`INDEX_AT`] rows or more, and from the checkpointer thread for whatever is left when
//! traffic pauses. Readers read both: the index, and the tail by a short `id` range scan, in
//! one statement and so one snapshot (a pass moves rows from one to the other atomically).
//!
//! The uniqueness of `(conv, seq)` is still enforced, by `msgseq`'s primary key, when the pass
//! runs; the append gives out each seq once anyway (from the seq counters it keeps under the
//! append gate: see `sqlite_append`).

use super::sqlite::query;
use super::sqlite_append::SeqCounters;
use super::StoreResult;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

/// Tail rows that make an append run an index pass. A reader scans at most this many rows
/// plus one batch (`log_writer::MAX_BATCH`) beyond the index; a pass of 4,096 rows over 50
/// conversations puts ~80 entries on each leaf it writes. Measured with `cargo bench --bench
/// log_append` (50 conversations, batches of 50): 2.6 µs of writer CPU a message at 1,024,
/// 2.1 at 4,096, 1.5 with no index at all; a page of 64 messages read with a full tail costs
/// 77 µs against 72 with none.
pub(crate) const INDEX_AT: usize = 4096;

/// The index tables; `message` itself is in the main schema.
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS msgseq(
    conv INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    id INTEGER NOT NULL,               -- message.id
    PRIMARY KEY (conv, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS msgindexed(
    one INTEGER PRIMARY KEY CHECK (one = 1),
    upto INTEGER NOT NULL              -- every message.id <= upto is in msgseq
);
INSERT OR IGNORE INTO msgindexed(one, upto) VALUES (1, 0);
";

/// Messages after a seq, ascending; parameters: conv, after, limit. The index part is limited
/// before the union, so a long backlog costs one page, not the whole backlog.
pub(super) const READ_AFTER: &str = "SELECT seq, body, created FROM ( \
       SELECT * FROM (SELECT m.seq AS seq, m.body AS body, m.created AS created \
         FROM msgseq i JOIN message m ON m.id = i.id \
         WHERE i.conv = ?1 AND i.seq > ?2 ORDER BY i.seq LIMIT ?3) \
       UNION ALL \
       SELECT seq, body, created FROM message \
         WHERE id > (SELECT upto FROM msgindexed) AND conv = ?1 AND seq > ?2 \
     ) ORDER BY seq LIMIT ?3";

/// The newest messages between two seqs, DESCENDING; parameters: conv, floor, before, limit.
pub(super) const READ_BEFORE: &str = "SELECT seq, body, created FROM ( \
       SELECT * FROM (SELECT m.seq AS seq, m.body AS body, m.created AS created \
         FROM msgseq i JOIN message m ON m.id = i.id \
         WHERE i.conv = ?1 AND i.seq > ?2 AND i.seq < ?3 ORDER BY i.seq DESC LIMIT ?4) \
       UNION ALL \
       SELECT seq, body, created FROM message \
         WHERE id > (SELECT upto FROM msgindexed) AND conv = ?1 AND seq > ?2 AND seq < ?3 \
     ) ORDER BY seq DESC LIMIT ?4";

/// The oldest messages by id (arrival order); parameter: limit. `message` has no index on
/// `created`: keeping one cost every append a second B-tree page per commit (measured with
/// `cargo bench --bench log_append`: 3.07 → 2.36 µs of writer CPU per message at 50
/// conversations × 1, 2.06 → 1.46 at × 16). Rows are in arrival order, so the oldest by id are
/// the oldest by `created`, up to the few milliseconds between taking a chat and storing it.
const OLDEST: &str = "SELECT id, conv, seq, created FROM message ORDER BY id LIMIT ?";

/// The append gate's state: the one connection that appends (its prepared statements stay
/// warm, and no pool is asked per batch), how many rows the tail has, the seq counters.
pub(crate) struct LogTail {
    pub(crate) conn: Connection,
    /// Messages stored after `msgindexed.upto`.
    pub(crate) rows: usize,
    /// Each conversation's last seq (see `sqlite_append`).
    pub(crate) counters: SeqCounters,
}

impl LogTail {
    /// The gate's state over `conn`, with the tail counted (the rows a stopped server left
    /// unindexed).
    pub(super) fn new(conn: Connection) -> StoreResult<Self> {
        let rows: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM message WHERE id > (SELECT upto FROM msgindexed)",
                [],
                |r| r.get(0),
            )
            .map_err(query)?;
        Ok(LogTail {
            conn,
            rows: usize::try_from(rows).unwrap_or(0),
            counters: SeqCounters::default(),
        })
    }
}

/// One index pass in its own transaction: moves the whole tail into `msgseq`. Call it with the
/// append gate held (nothing else appends meanwhile), and it sets `tail.rows` to 0.
pub(crate) fn index_tail(tail: &mut LogTail) -> StoreResult<()> {
    if tail.rows == 0 && !tail.counters.any_lagging() {
        return Ok(());
    }
    let tx = tail
        .conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(query)?;
    let (upto, last): (i64, Option<i64>) = tx
        .query_row(
            "SELECT upto, (SELECT MAX(id) FROM message) FROM msgindexed",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(query)?;
    let last = last.unwrap_or(upto).max(upto);
    tx.prepare_cached(
        "INSERT OR FAIL INTO msgseq(conv, seq, id) \
         SELECT conv, seq, id FROM message WHERE id > ? AND id <= ? ORDER BY conv, seq",
    )
    .and_then(|mut s| s.execute(params![upto, last]))
    .map_err(query)?;
    tx.prepare_cached("UPDATE msgindexed SET upto = ?")
        .and_then(|mut s| s.execute([last]))
        .map_err(query)?;
    tail.counters.write_lagging(&tx)?;
    tx.commit().map_err(query)?;
    tail.rows = 0;
    tail.counters.written();
    Ok(())
}

/// Deletes up to `limit` of the oldest messages created before `before_ms`, with their index
/// entries, in one transaction; returns how many.
///
/// It looks at the window of the `limit` oldest rows by arrival (the id), as `message` has no
/// index on `created`. Stamps come from a clock that can jump. A row stamped in the future (a
/// clock that ran ahead, then was set back) goes with the expired rows that arrived after it,
/// so it cannot hold them back; when the window holds no expired row but future stamps, they
/// go if an expired row arrived after the window (a scan without an index, in that case
/// only, and never with retention off). A row with a fresh stamp is never deleted early:
/// behind a window of fresh rows, rows stamped older (a clock set back) wait until the fresh
/// ones expire, one retention period at most. (Before, future stamps stayed, and once `limit`
/// of them stood at the front nothing behind them was ever pruned.) Only the housekeeper
/// prunes, so the window read before the transaction is still the front when it deletes.
pub(super) fn prune(c: &mut Connection, before_ms: i64, limit: i64) -> StoreResult<u64> {
    let oldest: Vec<(i64, i64, i64, i64)> = c
        .prepare_cached(OLDEST)
        .and_then(|mut s| {
            s.query_map([limit], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?
            .collect()
        })
        .map_err(query)?;
    let now = super::sql::now_ms();
    let expired = |r: &(i64, i64, i64, i64)| r.3 < before_ms;
    let future = |r: &(i64, i64, i64, i64)| r.3 > now;
    // Rows up to the last expired one: the expired and the future-stamped among them.
    let upto = match oldest.iter().rposition(expired) {
        Some(i) => i + 1,
        // (No retention, `i64::MIN`: nothing can be expired, so no scan.)
        None if before_ms != i64::MIN
            && oldest.iter().any(future)
            && expired_after(c, oldest.last().map_or(0, |r| r.0), before_ms)? =>
        {
            oldest.len()
        }
        None => 0,
    };
    let rows: Vec<(i64, i64, i64)> = oldest
        .into_iter()
        .take(upto)
        .filter(|r| expired(r) || future(r))
        .map(|(id, conv, seq, _)| (id, conv, seq))
        .collect();
    if rows.is_empty() {
        return Ok(0);
    }
    let tx = c
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(query)?;
    {
        let mut unindex = tx
            .prepare_cached("DELETE FROM msgseq WHERE conv = ? AND seq = ? AND id = ?")
            .map_err(query)?;
        let mut delete = tx
            .prepare_cached("DELETE FROM message WHERE id = ?")
            .map_err(query)?;
        for (id, conv, seq) in &rows {
            unindex.execute(params![conv, seq, id]).map_err(query)?;
            delete.execute([id]).map_err(query)?;
        }
    }
    tx.commit().map_err(query)?;
    Ok(rows.len() as u64)
}

/// Whether a message that arrived after `id` was created before `before_ms`.
fn expired_after(c: &Connection, id: i64, before_ms: i64) -> StoreResult<bool> {
    c.query_row(
        "SELECT EXISTS(SELECT 1 FROM message WHERE id > ?1 AND created < ?2)",
        params![id, before_ms],
        |r| r.get(0),
    )
    .map_err(query)
}

/// Creates the log's table, or brings a database from before this index up to date in one
/// transaction: its `message` table, keyed by `(conv, seq)`, is rebuilt in arrival order
/// without that key, and every row goes into `msgseq`. Run after [`SCHEMA`].
pub(super) fn create_or_upgrade(c: &mut Connection) -> StoreResult<()> {
    let exists: Option<i64> = c
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'message'",
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(query)?;
    let has_id: Option<i64> = c
        .query_row(
            "SELECT 1 FROM pragma_table_info('message') WHERE name = 'id'",
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(query)?;
    if exists.is_none() || has_id.is_some() {
        return c
            .execute_batch(&format!("{MESSAGE_TABLE}\n{DROP_MESSAGE_CREATED}"))
            .map_err(query);
    }
    let tx = c
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(query)?;
    let rows: i64 = tx
        .query_row("SELECT COUNT(*) FROM message", [], |r| r.get(0))
        .map_err(query)?;
    tx.execute_batch(&format!(
        "DROP INDEX IF EXISTS message_created;
         ALTER TABLE message RENAME TO message_keyed;
         {MESSAGE_TABLE}
         INSERT INTO message(id, conv, seq, sender, created, body)
             SELECT rowid, conv, seq, sender, created, body FROM message_keyed ORDER BY rowid;
         DROP TABLE message_keyed;
         DELETE FROM msgseq;
         INSERT INTO msgseq(conv, seq, id) SELECT conv, seq, id FROM message ORDER BY conv, seq;
         UPDATE msgindexed SET upto = COALESCE((SELECT MAX(id) FROM message), 0);"
    ))
    .map_err(query)?;
    tx.commit().map_err(query)?;
    log::info!("message log: {rows} messages moved to the append-ordered table");
    Ok(())
}

/// The log's table: appended in arrival order. AUTOINCREMENT, so that an id is never given
/// twice even when retention deleted the newest rows: `msgindexed.upto` must stay behind every
/// new id.
pub(super) const MESSAGE_TABLE: &str = "CREATE TABLE IF NOT EXISTS message(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conv INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    sender INTEGER NOT NULL,
    created INTEGER NOT NULL,          -- Unix ms, for retention
    body TEXT NOT NULL                 -- the chat frame as forwarded, without seq
);";

/// The index on `created` that earlier versions kept for retention (see [`OLDEST`]).
const DROP_MESSAGE_CREATED: &str = "DROP INDEX IF EXISTS message_created;";

#[cfg(test)]
mod tests {
    use super::INDEX_AT;
    use crate::store::sqlite::SqliteStore;
    use crate::store::{Append, ConvId, Store};
    use rusqlite::Connection;

    /// Appends `n` messages to each of `convs`, in batches of `per_batch` messages per
    /// conversation; bodies say `conv:k`.
    fn fill(store: &SqliteStore, convs: &[ConvId], n: usize, per_batch: usize, created: i64) {
        let bodies: Vec<Vec<String>> = convs
            .iter()
            .map(|c| {
                (0..n)
                    .map(|k| format!("{{\"m\":\"{}:{k}\"}}", c.0))
                    .collect()
            })
            .collect();
        for start in (0..n).step_by(per_batch) {
            let batch: Vec<Append<'_>> = (start..(start + per_batch).min(n))
                .flat_map(|k| convs.iter().enumerate().map(move |(i, c)| (i, c, k)))
                .map(|(i, c, k)| Append {
                    conv: *c,
                    sender: 1,
                    cmid: None,
                    body: &bodies[i][k],
                    created_ms: created,
                })
                .collect();
            store.append(&batch).expect("append");
        }
    }

    fn count(c: &Connection, sql: &str) -> i64 {
        c.query_row(sql, [], |r| r.get(0)).expect(sql)
    }

    /// Every seq of `conv` from 1 to `n`, read forwards in pages of 64 and backwards in pages
    /// of 50: once each, in order, with its own body.
    fn assert_reads_all(store: &SqliteStore, conv: ConvId, n: i64) {
        let mut after = 0;
        while after < n {
            let page = store.read_after(conv, after, 64).expect("read_after");
            assert!(!page.is_empty(), "nothing after {after} of {n}");
            for (k, m) in page.iter().enumerate() {
                assert_eq!(m.seq, after + 1 + k as i64, "read_after({after})");
                assert_eq!(m.body, format!("{{\"m\":\"{}:{}\"}}", conv.0, m.seq - 1));
            }
            after = page.last().map(|m| m.seq).unwrap_or(after);
        }
        assert!(store
            .read_after(conv, n, 64)
            .expect("read_after")
            .is_empty());
        let mut before = n + 1;
        while before > 1 {
            let (page, more) = store.read_before(conv, before, 0, 50).expect("read_before");
            let seqs: Vec<i64> = page.iter().map(|m| m.seq).collect();
            let want: Vec<i64> = ((before - 50).max(1)..before).collect();
            assert_eq!(seqs, want, "read_before({before})");
            assert_eq!(more, want[0] > 1);
            before = want[0];
        }
    }

    /// Pages that start in the index and end in the tail (and the other way round) read every
    /// message once; a pass runs once the tail reaches INDEX_AT, and reopening counts the tail.
    #[test]
    fn reads_span_the_index_and_the_tail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("chat.db");
        let path = path.to_str().expect("utf-8 path");
        let convs = [ConvId::pair(1, 2), ConvId::pair(1, 3), ConvId::group(7)];
        let per_conv = INDEX_AT; // 3 x INDEX_AT messages: passes run, and a tail remains
        let store = SqliteStore::open(path, 2).expect("open");
        fill(&store, &convs, per_conv, 5, 1);
        {
            let c = store.pool.get().expect("connection");
            let indexed = count(&c, "SELECT COUNT(*) FROM msgseq");
            let tail = count(
                &c,
                "SELECT COUNT(*) FROM message WHERE id > (SELECT upto FROM msgindexed)",
            );
            assert!(indexed >= INDEX_AT as i64, "only {indexed} rows indexed");
            assert_eq!(indexed + tail, 3 * per_conv as i64);
        }
        for conv in convs {
            assert_reads_all(&store, conv, per_conv as i64);
        }
        drop(store);
        let store = SqliteStore::open(path, 2).expect("reopen");
        for conv in convs {
            assert_reads_all(&store, conv, per_conv as i64);
        }
        // The checkpointer indexes what is left soon after traffic stops.
        let c = store.pool.get().expect("connection");
        let mut tail = 1;
        for _ in 0..100 {
            tail = count(
                &c,
                "SELECT COUNT(*) FROM message WHERE id > (SELECT upto FROM msgindexed)",
            );
            if tail == 0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert_eq!(tail, 0, "the tail was never indexed");
        assert_eq!(store.append_gate.lock().expect("gate").rows, 0);
    }

    /// Retention removes index entries with their messages, and ids are never given twice: new
    /// messages after everything was pruned are found.
    #[test]
    fn prune_removes_index_entries_and_ids_are_not_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("chat.db");
        let store = SqliteStore::open(path.to_str().expect("utf-8 path"), 2).expect("open");
        let conv = ConvId::pair(1, 2);
        fill(&store, &[conv], INDEX_AT + 10, 100, 1);
        assert_eq!(
            store.prune(2, 100_000).expect("prune"),
            INDEX_AT as u64 + 10
        );
        let c = store.pool.get().expect("connection");
        assert_eq!(count(&c, "SELECT COUNT(*) FROM msgseq"), 0);
        assert!(store.read_after(conv, 0, 64).expect("read").is_empty());
        let body = "{\"m\":\"new\"}";
        let batch = [Append {
            conv,
            sender: 1,
            cmid: None,
            body,
            created_ms: 3,
        }];
        store.append(&batch).expect("append");
        let page = store.read_after(conv, 0, 64).expect("read");
        assert_eq!(page.len(), 1, "a message after a full prune was not found");
        assert_eq!(page[0].seq, INDEX_AT as i64 + 11);
        assert_eq!(page[0].body, body);
    }

    /// Retention takes the old messages in batches, oldest by arrival first, in every
    /// conversation, and keeps the young, with no index on `created` (one that an earlier
    /// version made is dropped at open).
    #[test]
    fn prune_takes_the_old_messages_and_keeps_the_young() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("chat.db");
        let path = path.to_str().expect("utf-8 path");
        let (a, b) = (ConvId::pair(1, 2), ConvId::pair(1, 3));
        {
            let store = SqliteStore::open(path, 2).expect("open");
            fill(&store, &[a, b], 30, 10, 1_000); // old: 60 rows
            fill(&store, &[a, b], 20, 10, 9_000); // young: 40 rows
        }
        Connection::open(path)
            .expect("raw connection")
            .execute_batch("CREATE INDEX message_created ON message(created);")
            .expect("an earlier version's index");
        let store = SqliteStore::open(path, 2).expect("reopen");
        let c = store.pool.get().expect("connection");
        let indexes = "SELECT COUNT(*) FROM sqlite_master WHERE name = 'message_created'";
        assert_eq!(count(&c, indexes), 0, "the created index is dropped");
        assert_eq!(store.prune(5_000, 25).expect("prune"), 25, "a batch");
        assert_eq!(store.prune(5_000, 1_000).expect("prune"), 35, "the rest");
        assert_eq!(
            store.prune(5_000, 1_000).expect("prune"),
            0,
            "young ones stay"
        );
        for conv in [a, b] {
            let page = store.read_after(conv, 0, 64).expect("read");
            let seqs: Vec<i64> = page.iter().map(|m| m.seq).collect();
            assert_eq!(seqs, (31..=50).collect::<Vec<_>>());
        }
    }

    /// A body that is not UTF-8 (a damaged file) reads back with U+FFFD in place of the bad
    /// bytes; before, the whole page failed, and with it every login and sync that read it.
    #[test]
    fn a_body_that_is_not_utf8_reads_back_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("chat.db");
        let store = SqliteStore::open(path.to_str().expect("utf-8 path"), 2).expect("open");
        let conv = ConvId::pair(1, 2);
        fill(&store, &[conv], 3, 3, 1_000);
        store
            .pool
            .get()
            .expect("connection")
            .execute(
                "UPDATE message SET body = CAST(X'7B226D223A22FF227D' AS TEXT) WHERE seq = 2",
                [],
            )
            .expect("a damaged row");
        let page = store.read_after(conv, 0, 64).expect("read");
        let bodies: Vec<&str> = page.iter().map(|m| m.body.as_str()).collect();
        let first = format!("{{\"m\":\"{}:0\"}}", conv.0);
        let last = format!("{{\"m\":\"{}:2\"}}", conv.0);
        assert_eq!(
            bodies,
            [first.as_str(), "{\"m\":\"\u{fffd}\"}", last.as_str()]
        );
        let (page, _) = store.read_before(conv, 10, 0, 64).expect("read back");
        assert_eq!(page.len(), 3);
    }

    /// Retention goes by arrival: rows stamped in the future (a clock that ran ahead) go
    /// with the expired rows that arrived after them, also when there are more of them than
    /// one prune looks at; with nothing expired behind them they stay.
    #[test]
    fn prune_is_not_held_back_by_rows_stamped_in_the_future() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("chat.db");
        let store = SqliteStore::open(path.to_str().expect("utf-8 path"), 2).expect("open");
        let conv = ConvId::pair(1, 2);
        let future = i64::MAX / 2;
        fill(&store, &[conv], 10, 10, future);
        fill(&store, &[conv], 20, 10, 1_000);
        assert_eq!(
            store.prune(5_000, 1_000).expect("prune"),
            30,
            "all arrived early"
        );
        // A block of future stamps longer than the window, then expired rows.
        fill(&store, &[conv], 30, 10, future);
        assert_eq!(
            store.prune(5_000, 25).expect("prune"),
            0,
            "nothing expired yet"
        );
        fill(&store, &[conv], 10, 10, 1_000);
        assert_eq!(store.prune(5_000, 25).expect("prune"), 25, "the window");
        assert_eq!(store.prune(5_000, 25).expect("prune"), 15, "the rest");
        let c = store.pool.get().expect("connection");
        assert_eq!(count(&c, "SELECT COUNT(*) FROM message"), 0);
        // A fresh stamp is never deleted early, also when an expired row arrived after it
        // (that one's clock was set back).
        let fresh = crate::store::sql::now_ms() - 1_000;
        fill(&store, &[conv], 5, 5, fresh);
        fill(&store, &[conv], 3, 3, future);
        fill(&store, &[conv], 2, 2, 1_000);
        fill(&store, &[conv], 5, 5, fresh);
        assert_eq!(
            store.prune(5_000, 1_000).expect("prune"),
            5,
            "old and future"
        );
        assert_eq!(
            count(&c, "SELECT COUNT(*) FROM message"),
            10,
            "the fresh stay"
        );
        assert_eq!(store.prune(5_000, 1_000).expect("prune"), 0);
    }

    /// A database from before the index (`message` keyed by `(conv, seq)`) is rebuilt at open
    /// and reads as before.
    #[test]
    fn a_keyed_message_table_is_upgraded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("chat.db");
        let path = path.to_str().expect("utf-8 path");
        {
            let c = Connection::open(path).expect("create");
            c.execute_batch(
                "CREATE TABLE message(conv INTEGER NOT NULL, seq INTEGER NOT NULL,
                     sender INTEGER NOT NULL, created INTEGER NOT NULL, body TEXT NOT NULL,
                     PRIMARY KEY (conv, seq));
                 CREATE INDEX message_created ON message(created);
                 CREATE TABLE conversation(conv INTEGER PRIMARY KEY, last_seq INTEGER NOT NULL,
                     usera INTEGER NULL, userb INTEGER NULL);",
            )
            .expect("old schema");
            let conv = ConvId::pair(1, 2).0;
            for seq in 1..=300i64 {
                c.execute(
                    "INSERT INTO message VALUES (?, ?, 1, 1, ?)",
                    rusqlite::params![conv, seq, format!("{{\"m\":\"{conv}:{}\"}}", seq - 1)],
                )
                .expect("old row");
            }
            c.execute("INSERT INTO conversation VALUES (?, 300, 1, 2)", [conv])
                .expect("old conversation");
        }
        let store = SqliteStore::open(path, 2).expect("open and upgrade");
        assert_reads_all(&store, ConvId::pair(1, 2), 300);
        let c = store.pool.get().expect("connection");
        assert_eq!(count(&c, "SELECT COUNT(*) FROM msgseq"), 300);
        assert_eq!(
            count(
                &c,
                "SELECT COUNT(*) FROM sqlite_master WHERE name = 'sqlite_autoindex_message_1'"
            ),
            0
        );
        // Appends go on from the old conversation's seq.
        fill(&store, &[ConvId::group(9)], 3, 3, 1);
        let body = "{\"m\":\"301\"}";
        let out = store
            .append(&[Append {
                conv: ConvId::pair(1, 2),
                sender: 1,
                cmid: None,
                body,
                created_ms: 1,
            }])
            .expect("append");
        assert_eq!(out, vec![crate::store::Appended::New(301)]);
    }
}
