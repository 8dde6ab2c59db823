//! The MySQL log's append in two round trips, each a multi-statement text: first `START
//! TRANSACTION`, the conversations' bump and the read of their new last seqs; then the
//! messages' and cmids' multi-row INSERTs and `COMMIT`. The statement-by-statement path
//! ([`super::mysql_append::append_in`]: a prepared statement per step, a multi-row INSERT per
//! 64 messages) took about ten round trips for a batch of 400, all of them while holding the
//! `conversation` row locks that another server appending to the same conversations waits
//! for, and each a wake-up of this thread and of the database's.
//!
//! Measured (BENCHMARKS "Session 9"): `chatbench pairs` on two servers, 6 alternating runs
//! each: window 1 +10% msgs/s in both layouts (chat-server CPU 18.1 -> 15.6 µs a message
//! on one server), window 16 +6% with pairs across, unchanged on one server. What the locks
//! cost across servers is mostly InnoDB's own work on the rows (~6.3 µs of MariaDB CPU a
//! message here), which fewer round trips do not remove.
//!
//! Values are written as literals: integers in decimal, strings (bodies, cmids) as hex
//! literals `X'…'`, which need no escaping whatever the session's `sql_mode`. A batch that
//! renews an expired cmid (an UPDATE whose affected-row count must be checked) or whose text
//! would exceed [`MAX_TEXT_BYTES`] takes the statement-by-statement path.

use super::mysql::{server_code, ER_DUP_ENTRY};
use super::mysql_append::{known_cmids, Failure};
use super::plan::{self, AppendPlan};
use super::sql;
use super::{Append, Appended, ConvId, Seq};
use mysql::prelude::Queryable;
use mysql::Conn;
use std::collections::HashMap;
use std::fmt::Write;

/// The largest transaction text sent at once: well below the 16 MiB `max_allowed_packet`
/// MariaDB has by default (MySQL 8: 64 MiB).
pub(super) const MAX_TEXT_BYTES: usize = 4 << 20;

/// Appends `batch` in two round trips (see the module comment), or `None` when the batch
/// needs the statement-by-statement path; nothing was written then.
pub(super) fn append(c: &mut Conn, batch: &[Append<'_>]) -> Result<Option<Vec<Appended>>, Failure> {
    let keys = plan::cmid_keys(batch);
    let known = known_cmids(c, &keys)?;
    let plan = AppendPlan::new(batch, &known);
    if !plan.stores_anything() {
        let (_, out) = plan.assign(batch, &HashMap::new()).map_err(query)?;
        return Ok(Some(out));
    }
    if !fits(batch, &plan) {
        return Ok(None);
    }
    let result = bump(c, &plan).and_then(|last| {
        let (seqs, out) = plan.assign(batch, &last).map_err(query)?;
        run(c, &rows_text(batch, &plan, &seqs), |_| Ok(())).map_err(|e| match server_code(&e) {
            Some(ER_DUP_ENTRY) => Failure::Retry(format!("a cmid was recorded meanwhile: {e}")),
            _ => e.into(),
        })?;
        Ok(out)
    });
    result.map(Some).inspect_err(|_| {
        // The statements after a failed one did not run; the transaction may still be open
        // (a deadlock has rolled it back already).
        let _ = c.query_drop("ROLLBACK");
    })
}

/// Opens the transaction, bumps the conversations and reads their new last seqs.
fn bump(c: &mut Conn, plan: &AppendPlan) -> Result<HashMap<ConvId, Seq>, Failure> {
    let mut t = String::with_capacity(160 + plan.convs().len() * 48);
    t.push_str("START TRANSACTION;INSERT INTO conversation(conv, last_seq, usera, userb) VALUES ");
    for (n, (conv, k)) in plan.convs().iter().enumerate() {
        let (a, b) = sql::conv_users(*conv);
        let _ = write!(
            t,
            "{}({},{k},{},{})",
            comma(n),
            conv.0,
            Nullable(a),
            Nullable(b)
        );
    }
    t.push_str(" ON DUPLICATE KEY UPDATE last_seq = last_seq + VALUES(last_seq);");
    t.push_str("SELECT conv, last_seq FROM conversation WHERE conv IN (");
    for (n, (conv, _)) in plan.convs().iter().enumerate() {
        let _ = write!(t, "{}{}", comma(n), conv.0);
    }
    t.push(')');
    let mut last = HashMap::with_capacity(plan.convs().len());
    run(c, &t, |row| {
        let (conv, seq): (i64, Seq) =
            mysql::from_row_opt(row).map_err(|e| mysql::Error::FromRowError(e.0))?;
        last.insert(ConvId(conv), seq);
        Ok(())
    })?;
    Ok(last)
}

/// Runs a multi-statement text, handing every row of its result sets to `row`, and returns
/// the first error of any statement. (`Queryable::query_drop` returns only the first
/// statement's: the error of a later one would pass unseen, and with it a transaction left
/// open, its row locks held, since the statements after a failed one, COMMIT included, do
/// not run.)
fn run(
    c: &mut Conn,
    text: &str,
    mut row: impl FnMut(mysql::Row) -> Result<(), mysql::Error>,
) -> Result<(), mysql::Error> {
    let mut result = c.query_iter(text)?;
    while let Some(set) = result.iter() {
        for r in set {
            row(r?)?;
        }
    }
    Ok(())
}

/// Whether the batch can take this path: it renews no expired cmid, and its rows' text stays
/// below [`MAX_TEXT_BYTES`].
fn fits(batch: &[Append<'_>], plan: &AppendPlan) -> bool {
    rows_bytes(batch, plan) <= MAX_TEXT_BYTES
        && plan.cmid_writes().iter().all(|w| w.replaces.is_none())
}

/// About how long the rows' text is (each body twice over, as hex).
fn rows_bytes(batch: &[Append<'_>], plan: &AppendPlan) -> usize {
    plan.stored()
        .map(|i| 2 * batch[i].body.len() + 64)
        .sum::<usize>()
        + plan.cmid_writes().len() * (2 * plan::MAX_CMID_BYTES + 64)
        + 160
}

/// The messages' and the new cmids' INSERTs, then COMMIT, as one text.
fn rows_text(batch: &[Append<'_>], plan: &AppendPlan, seqs: &[Seq]) -> String {
    let mut t = String::with_capacity(rows_bytes(batch, plan));
    t.push_str("INSERT INTO message(conv, seq, sender, created, body) VALUES ");
    for (n, i) in plan.stored().enumerate() {
        let m = &batch[i];
        let _ = write!(
            t,
            "{}({},{},{},{},",
            comma(n),
            m.conv.0,
            seqs[i],
            m.sender,
            m.created_ms
        );
        hex_literal(&mut t, m.body.as_bytes());
        t.push(')');
    }
    t.push(';');
    let writes = plan.cmid_writes();
    if !writes.is_empty() {
        t.push_str("INSERT INTO msgcmid(sender, cmid, conv, seq, created) VALUES ");
        for (n, w) in writes.iter().enumerate() {
            let m = &batch[w.index];
            let _ = write!(t, "{}({},", comma(n), m.sender);
            hex_literal(&mut t, m.cmid.unwrap_or_default().as_bytes());
            let _ = write!(t, ",{},{},{})", m.conv.0, seqs[w.index], m.created_ms);
        }
        t.push(';');
    }
    t.push_str("COMMIT");
    t
}

/// A plan's error as a real failure.
fn query(e: String) -> Failure {
    Failure::Fail(super::StoreError::Query(e))
}

/// The separator before the `n`th row of a list.
fn comma(n: usize) -> &'static str {
    if n == 0 {
        ""
    } else {
        ","
    }
}

/// An optional integer as an SQL literal.
struct Nullable<T>(Option<T>);

impl<T: std::fmt::Display> std::fmt::Display for Nullable<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(v) => write!(f, "{v}"),
            None => f.write_str("NULL"),
        }
    }
}

/// Appends `X'<hex>'`.
fn hex_literal(t: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    t.push_str("X'");
    t.reserve(2 * bytes.len() + 1);
    for &b in bytes {
        t.push(DIGITS[usize::from(b >> 4)] as char);
        t.push(DIGITS[usize::from(b & 15)] as char);
    }
    t.push('\'');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(conv: ConvId, sender: i64, cmid: Option<&'static str>) -> Append<'static> {
        Append {
            conv,
            sender,
            cmid,
            body: "{\"msg\":\"it's \\\"x\\\"\"}",
            created_ms: 1_000,
        }
    }

    #[test]
    fn the_rows_carry_the_assigned_seqs_and_the_cmids_name_their_messages() {
        let a = ConvId::pair(1, 2);
        let g = ConvId::group(7);
        let batch = [chat(a, 1, Some("m1")), chat(g, 2, None), chat(a, 2, None)];
        let plan = AppendPlan::new(&batch, &HashMap::new());
        let last = HashMap::from([(a, 9), (g, 4)]);
        let (seqs, _) = plan.assign(&batch, &last).expect("assign");
        let t = rows_text(&batch, &plan, &seqs);
        let body: String = batch[0].body.bytes().map(|b| format!("{b:02x}")).collect();
        assert!(t.starts_with(&format!(
            "INSERT INTO message(conv, seq, sender, created, body) VALUES ({},8,1,1000,X'{body}'),({},4,2,1000,",
            a.0, g.0
        )));
        assert!(t.contains(&format!("({},9,2,1000,X'{body}');", a.0)));
        assert!(t.contains(&format!(
            "INSERT INTO msgcmid(sender, cmid, conv, seq, created) VALUES (1,X'6d31',{},8,1000);",
            a.0
        )));
        // Quotes and backslashes of the body travel as hex, never as SQL.
        assert!(!t.contains("it's"));
        assert!(t.ends_with(";COMMIT"));
    }

    #[test]
    fn a_renewed_cmid_or_a_huge_batch_takes_the_statement_path() {
        let a = ConvId::pair(1, 2);
        let batch = [chat(a, 1, Some("m1"))];
        assert!(fits(&batch, &AppendPlan::new(&batch, &HashMap::new())));
        let known = HashMap::from([(
            (1, "m1"),
            plan::CmidRow {
                conv: a,
                seq: 3,
                created: 1_000 - super::super::CMID_WINDOW_MS - 1,
            },
        )]);
        assert!(!fits(&batch, &AppendPlan::new(&batch, &known)));

        let body = "x".repeat(MAX_TEXT_BYTES / 2);
        let big = [Append {
            body: &body,
            ..chat(a, 1, None)
        }];
        assert!(!fits(&big, &AppendPlan::new(&big, &HashMap::new())));
    }

    #[test]
    fn hex_literals_carry_any_bytes() {
        let mut t = String::new();
        hex_literal(&mut t, b"\0'\\\xff");
        assert_eq!(t, "X'00275cff'");
    }
}
