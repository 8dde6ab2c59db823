//! The MySQL backend's message log writes: a batch appended in one transaction (seqs taken
//! from `conversation` rows locked in a fixed order) statement by statement (the path of a
//! batch that [`super::mysql_append_text`] does not take, and of the migration), the migration
//! of the old offline queue, and the retry of a transaction that lost a race to another
//! server's.

use super::migrate::{self, OfflineRow};
use super::mysql::{err, server_code, ER_DUP_ENTRY, FANOUT_CHUNK};
use super::plan::{self, AppendPlan, CmidKey, CmidRow};
use super::sql;
use super::{Append, Appended, ConvId, Seq, StoreError, StoreResult};
use clusterchat_proto::UserId;
use mysql::prelude::Queryable;
use mysql::{Conn, Transaction, TxOpts, Value};
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

/// InnoDB found a deadlock and rolled the transaction back.
const ER_LOCK_DEADLOCK: u16 = 1213;

/// A lock was not granted within `innodb_lock_wait_timeout`.
const ER_LOCK_WAIT_TIMEOUT: u16 = 1205;

/// How many times a log transaction that lost a race (deadlock, lock wait timeout, a
/// concurrent duplicate cmid) is run in all before the error is returned.
const ATTEMPTS: u32 = 5;

/// Bumps conversations' last seqs by the given counts (creating rows); parameters per row:
/// conv, count, usera, userb. Rows are given in ascending conv order, so the row locks are
/// taken in that order.
static BUMP_CONVS: sql::MultiRow = sql::MultiRow::new(
    "INSERT INTO conversation(conv, last_seq, usera, userb) VALUES ",
    "(?, ?, ?, ?)",
    ", ",
    " ON DUPLICATE KEY UPDATE last_seq = last_seq + VALUES(last_seq)",
);

/// Reads back the bumped conversations (our own locked rows); parameters: convs.
static LAST_SEQS: sql::MultiRow =
    sql::select_in("SELECT conv, last_seq FROM conversation WHERE conv IN (");

/// Stores messages; parameters per row: conv, seq, sender, created, body.
static MESSAGE_INSERT: sql::MultiRow = sql::MultiRow::new(
    "INSERT INTO message(conv, seq, sender, created, body) VALUES ",
    sql::FIVE,
    ", ",
    "",
);

/// The `msgcmid` rows of some keys; parameters: sender, cmid per key.
static CMID_GET: sql::MultiRow = sql::MultiRow::new(
    "SELECT sender, cmid, conv, seq, created FROM msgcmid WHERE ",
    "(sender = ? AND cmid = ?)",
    " OR ",
    "",
);

/// Records new keys (a concurrent record of the same key fails with a duplicate: retried);
/// parameters per row: sender, cmid, conv, seq, created.
static CMID_INSERT: sql::MultiRow = sql::MultiRow::new(
    "INSERT INTO msgcmid(sender, cmid, conv, seq, created) VALUES ",
    sql::FIVE,
    ", ",
    "",
);

/// Renews an expired key, only if nobody renewed it since it was read; parameters: conv, seq,
/// created, sender, cmid, the created read.
const CMID_RENEW: &str = "UPDATE msgcmid SET conv = ?, seq = ?, created = ? \
     WHERE sender = ? AND cmid = ? AND created = ?";

/// Which of some users exist; parameters: ids.
static USERS_IN: sql::MultiRow = sql::select_in("SELECT id FROM user WHERE id IN (");

/// Which of some groups exist; parameters: ids.
static GROUPS_IN: sql::MultiRow = sql::select_in("SELECT id FROM allgroup WHERE id IN (");

/// Some users' cursors in one conversation; parameters: conv, then the users.
static CURSORS_IN: sql::MultiRow =
    sql::select_in("SELECT userid, seq FROM msgcursor WHERE conv = ? AND userid IN (");

/// Deletes migrated rows of the old queue; parameters: their seqs.
static OFFLINE_DELETE: sql::MultiRow = sql::select_in("DELETE FROM offlinemessage WHERE seq IN (");

/// Sets a cursor (the migration); parameters: user, conv, seq.
const SET_CURSOR: &str = "INSERT INTO msgcursor(userid, conv, seq) VALUES (?, ?, ?) \
     ON DUPLICATE KEY UPDATE seq = VALUES(seq)";

/// Why one attempt of a log transaction failed.
pub(super) enum Failure {
    /// It lost a race with another transaction (rolled back): run it again.
    Retry(String),
    /// A real error.
    Fail(StoreError),
}

impl From<mysql::Error> for Failure {
    fn from(e: mysql::Error) -> Failure {
        match server_code(&e) {
            Some(ER_LOCK_DEADLOCK | ER_LOCK_WAIT_TIMEOUT) => Failure::Retry(e.to_string()),
            _ => Failure::Fail(err(e)),
        }
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Failure {
        Failure::Fail(e)
    }
}

/// Runs `attempt` (one whole transaction) until it succeeds, fails for real, or has lost
/// [`ATTEMPTS`] races.
pub(super) fn retrying<T>(
    what: &str,
    mut attempt: impl FnMut() -> Result<T, Failure>,
) -> StoreResult<T> {
    let mut n = 1;
    loop {
        match attempt() {
            Ok(t) => return Ok(t),
            Err(Failure::Fail(e)) => return Err(e),
            Err(Failure::Retry(why)) if n < ATTEMPTS => {
                log::debug!("{what}: {why}; trying again");
                // A short random pause, so the racers do not meet again at once.
                std::thread::sleep(Duration::from_millis(
                    u64::from(n) * rand::random_range(1..=4),
                ));
                n += 1;
            }
            Err(Failure::Retry(why)) => {
                return Err(StoreError::Query(format!(
                    "{what}: still losing races after {ATTEMPTS} attempts: {why}"
                )))
            }
        }
    }
}

/// The `msgcmid` rows the database holds for `keys`: a plain read (a concurrent insert of
/// one of them makes the insert of the append fail as a duplicate, and the retry then finds
/// it).
pub(super) fn known_cmids<'a>(
    q: &mut impl Queryable,
    keys: &[CmidKey<'a>],
) -> Result<HashMap<CmidKey<'a>, CmidRow>, Failure> {
    let mut known = HashMap::new();
    for (range, padded) in plan::padded_runs(keys.len(), sql::MAX_ROWS) {
        let run = &keys[range];
        let params: Vec<Value> = (0..padded)
            .flat_map(|i| {
                let (sender, cmid) = run[i.min(run.len() - 1)];
                [Value::from(sender), Value::from(cmid)]
            })
            .collect();
        let rows: Vec<(UserId, Vec<u8>, i64, Seq, i64)> = q.exec(CMID_GET.text(padded), params)?;
        for (sender, cmid, conv, seq, created) in rows {
            if let Some(key) = run.iter().find(|k| k.0 == sender && k.1.as_bytes() == cmid) {
                known.insert(
                    *key,
                    CmidRow {
                        conv: ConvId(conv),
                        seq,
                        created,
                    },
                );
            }
        }
    }
    Ok(known)
}

/// Appends `batch` inside the caller's transaction (see [`Store::append`]).
pub(super) fn append_in(
    tx: &mut Transaction<'_>,
    batch: &[Append<'_>],
) -> Result<Vec<Appended>, Failure> {
    let keys = plan::cmid_keys(batch);
    let known = known_cmids(tx, &keys)?;
    let plan = AppendPlan::new(batch, &known);
    if !plan.stores_anything() {
        let (_, out) = plan
            .assign(batch, &HashMap::new())
            .map_err(StoreError::Query)?;
        return Ok(out);
    }
    // Bump the conversations in ascending order (the row locks follow), then read them back:
    // our own locked rows, so the values are ours.
    let convs = plan.convs();
    for run in plan::pow2_runs(convs.len(), sql::MAX_ROWS, usize::MAX, |_| 0) {
        let params: Vec<Value> = convs[run.clone()]
            .iter()
            .flat_map(|(conv, k)| {
                let (a, b) = sql::conv_users(*conv);
                [conv.0.into(), (*k).into(), a.into(), b.into()]
            })
            .collect();
        tx.exec_drop(BUMP_CONVS.text(run.len()), params)?;
    }
    let mut last = HashMap::with_capacity(convs.len());
    for (range, padded) in plan::padded_runs(convs.len(), sql::MAX_ROWS) {
        let run = &convs[range];
        let params: Vec<Value> = (0..padded)
            .map(|i| Value::from(run[i.min(run.len() - 1)].0 .0))
            .collect();
        let rows: Vec<(i64, Seq)> = tx.exec(LAST_SEQS.text(padded), params)?;
        last.extend(rows.into_iter().map(|(conv, l)| (ConvId(conv), l)));
    }
    let (seqs, out) = plan.assign(batch, &last).map_err(StoreError::Query)?;
    let stored: Vec<usize> = plan.stored().collect();
    for run in plan::pow2_runs(stored.len(), sql::MAX_ROWS, sql::MESSAGE_BYTES, |i| {
        batch[stored[i]].body.len()
    }) {
        let params: Vec<Value> = stored[run.clone()]
            .iter()
            .flat_map(|&i| {
                let m = &batch[i];
                [
                    m.conv.0.into(),
                    seqs[i].into(),
                    m.sender.into(),
                    m.created_ms.into(),
                    m.body.into(),
                ]
            })
            .collect();
        tx.exec_drop(MESSAGE_INSERT.text(run.len()), params)?;
    }
    // The keys: new ones in multi-row INSERTs, expired ones renewed one by one (rare).
    let (fresh, renewed): (Vec<_>, Vec<_>) = plan
        .cmid_writes()
        .iter()
        .partition(|w| w.replaces.is_none());
    for run in plan::pow2_runs(fresh.len(), sql::MAX_ROWS, usize::MAX, |_| 0) {
        let params: Vec<Value> = fresh[run.clone()]
            .iter()
            .flat_map(|w: &&plan::CmidWrite| {
                let m = &batch[w.index];
                [
                    m.sender.into(),
                    m.cmid.into(),
                    m.conv.0.into(),
                    seqs[w.index].into(),
                    m.created_ms.into(),
                ]
            })
            .collect();
        tx.exec_drop(CMID_INSERT.text(run.len()), params)
            .map_err(|e| {
                if server_code(&e) == Some(ER_DUP_ENTRY) {
                    Failure::Retry(format!("a cmid was recorded meanwhile: {e}"))
                } else {
                    e.into()
                }
            })?;
    }
    for w in renewed {
        let m = &batch[w.index];
        tx.exec_drop(
            CMID_RENEW,
            (
                m.conv.0,
                seqs[w.index],
                m.created_ms,
                m.sender,
                m.cmid,
                w.replaces,
            ),
        )?;
        if tx.affected_rows() != 1 {
            return Err(Failure::Retry(
                "an expired cmid was renewed meanwhile".into(),
            ));
        }
    }
    Ok(out)
}

/// Which of `ids` the statement (one of the `..._IN`) finds.
pub(super) fn existing(
    tx: &mut Transaction<'_>,
    stmt: &sql::MultiRow,
    ids: &BTreeSet<i64>,
) -> Result<BTreeSet<i64>, Failure> {
    let ids: Vec<i64> = ids.iter().copied().collect();
    let mut found = BTreeSet::new();
    for (range, padded) in plan::padded_runs(ids.len(), sql::MAX_ROWS) {
        let run = &ids[range];
        let params: Vec<Value> = (0..padded)
            .map(|i| Value::from(run[i.min(run.len() - 1)]))
            .collect();
        let got: Vec<i64> = tx.exec(stmt.text(padded), params)?;
        found.extend(got);
    }
    Ok(found)
}

/// Moves the old offline queue into the log, in one transaction (see [`migrate`]). The rows
/// are read FOR UPDATE, so two servers opening at once move each row once.
pub(super) fn migrate_offline(c: &mut Conn) -> Result<(), Failure> {
    let any: Option<i64> = c.query_first("SELECT 1 FROM offlinemessage LIMIT 1")?;
    if any.is_none() {
        return Ok(());
    }
    let mut tx = c.start_transaction(TxOpts::default())?;
    let rows: Vec<OfflineRow> = tx.query_map(
        format!("{} FOR UPDATE", sql::OFFLINE_ALL),
        |(seq, user, message)| OfflineRow { seq, user, message },
    )?;
    let (users, groups) = migrate::referenced(&rows);
    let users = existing(&mut tx, &USERS_IN, &users)?;
    let groups = existing(&mut tx, &GROUPS_IN, &groups)?;
    let m = migrate::plan(&rows, &users, &groups);
    m.warn_kept(&rows);
    if m.moves.is_empty() {
        return Ok(());
    }
    let batch = m.appends(&rows, sql::now_ms());
    let seqs = migrate::Migration::seqs(append_in(&mut tx, &batch)?);
    for (conv, moved) in m.by_conversation(&seqs) {
        let participants: Vec<UserId> = match (conv.as_pair(), conv.as_group()) {
            (Some((a, b)), _) => vec![a, b],
            (None, Some(g)) => tx.exec(sql::MEMBERS, (g,))?,
            (None, None) => Vec::new(),
        };
        let asked: Vec<UserId> = participants
            .iter()
            .chain(moved.first.keys())
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut had = HashMap::new();
        for (range, padded) in plan::padded_runs(asked.len(), sql::MAX_ROWS) {
            let run = &asked[range];
            let params: Vec<Value> = std::iter::once(Value::from(conv.0))
                .chain((0..padded).map(|i| Value::from(run[i.min(run.len() - 1)])))
                .collect();
            let rows: Vec<(UserId, Seq)> = tx.exec(CURSORS_IN.text(padded), params)?;
            had.extend(rows);
        }
        for (u, seq) in moved.cursors(&participants, &had) {
            tx.exec_drop(SET_CURSOR, (u, conv.0, seq))?;
        }
    }
    for (range, padded) in plan::padded_runs(m.migrated.len(), sql::MAX_ROWS) {
        let run = &m.migrated[range];
        let params: Vec<Value> = (0..padded)
            .map(|i| Value::from(run[i.min(run.len() - 1)]))
            .collect();
        tx.exec_drop(OFFLINE_DELETE.text(padded), params)?;
    }
    tx.commit()?;
    log::info!(
        "moved {} offline messages into the log as {} messages",
        m.migrated.len(),
        m.moves.len()
    );
    Ok(())
}

/// Reads and deletes one user's offline queue in one transaction.
pub(super) fn take_offline_once(
    c: &mut mysql::Conn,
    user: UserId,
) -> Result<Vec<String>, mysql::Error> {
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
