//! What an append batch does, decided in plain Rust so that both backends decide it alike:
//! which messages are stored and which are duplicates of a `(sender, cmid)` seen before, how
//! many seqs each conversation needs, and which seq each stored message gets once the
//! conversation rows have been bumped. The backends only run the statements.

use super::log::{Append, Appended, ConvId, Seq, CMID_WINDOW_MS};
use clusterchat_proto::UserId;
use std::collections::HashMap;
use std::ops::Range;

/// The longest cmid the store accepts, in bytes (`msgcmid.cmid` is `VARBINARY(64)` in MySQL).
pub const MAX_CMID_BYTES: usize = 64;

/// A `(sender, cmid)` key as the batch spells it.
pub type CmidKey<'a> = (UserId, &'a str);

/// A `msgcmid` row: the message a `(sender, cmid)` named, and when it was created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CmidRow {
    /// The original's conversation.
    pub conv: ConvId,
    /// The original's seq.
    pub seq: Seq,
    /// The original's `created_ms`.
    pub created: i64,
}

/// What happens to one message of the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Stored with the next seq of its conversation.
    Store,
    /// A duplicate of a message already in the database.
    Original(ConvId, Seq),
    /// A duplicate of the stored message at this index of the batch.
    SameAs(usize),
}

/// Where the latest record of a `(sender, cmid)` is while the batch is walked.
#[derive(Debug, Clone, Copy)]
enum Latest {
    Db(CmidRow),
    Batch(usize),
}

/// A `msgcmid` row to write after the messages: the key's stored message in this batch, and
/// the `created` of the database row it replaces (an expired one), if there was one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CmidWrite {
    /// Index in the batch of the stored message the key now names.
    pub index: usize,
    /// `created` of the row being replaced; `None` when the key is new to the database.
    pub replaces: Option<i64>,
}

/// The decisions for one batch (see the module comment).
#[derive(Debug)]
pub struct AppendPlan {
    fate: Vec<Fate>,
    convs: Vec<(ConvId, i64)>,
    cmids: Vec<CmidWrite>,
}

/// Refuses a batch the store cannot hold as given (a cmid longer than [`MAX_CMID_BYTES`]),
/// before anything is written, with the same error on both backends.
pub fn check(batch: &[Append<'_>]) -> Result<(), String> {
    match batch
        .iter()
        .position(|m| m.cmid.is_some_and(|c| c.len() > MAX_CMID_BYTES))
    {
        Some(i) => Err(format!(
            "append: message {i} of the batch has a cmid longer than {MAX_CMID_BYTES} bytes"
        )),
        None => Ok(()),
    }
}

/// The distinct `(sender, cmid)` keys of the batch, sorted (the order rows are locked in).
pub fn cmid_keys<'a>(batch: &[Append<'a>]) -> Vec<CmidKey<'a>> {
    let mut keys: Vec<CmidKey<'a>> = batch
        .iter()
        .filter_map(|m| m.cmid.map(|c| (m.sender, c)))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// True when a message created at `created` repeats one created at `earlier`: within the
/// window (a clock that went backwards between two servers still counts as a repeat).
fn within_window(earlier: i64, created: i64) -> bool {
    created.saturating_sub(earlier) < CMID_WINDOW_MS
}

impl AppendPlan {
    /// Decides the batch, given the `msgcmid` rows the database holds for its keys (keys
    /// without a row are absent from `known`).
    pub fn new<'a>(batch: &[Append<'a>], known: &HashMap<CmidKey<'a>, CmidRow>) -> AppendPlan {
        let mut latest: HashMap<CmidKey<'a>, Latest> = HashMap::new();
        let mut fate = Vec::with_capacity(batch.len());
        let mut counts: HashMap<ConvId, i64> = HashMap::new();
        for (i, m) in batch.iter().enumerate() {
            let f = match m.cmid.map(|c| (m.sender, c)) {
                None => Fate::Store,
                Some(key) => {
                    let seen = latest
                        .get(&key)
                        .copied()
                        .or_else(|| known.get(&key).copied().map(Latest::Db));
                    let f = match seen {
                        Some(Latest::Db(row)) if within_window(row.created, m.created_ms) => {
                            Fate::Original(row.conv, row.seq)
                        }
                        Some(Latest::Batch(j))
                            if within_window(batch[j].created_ms, m.created_ms) =>
                        {
                            Fate::SameAs(j)
                        }
                        _ => Fate::Store,
                    };
                    if f == Fate::Store {
                        latest.insert(key, Latest::Batch(i));
                    }
                    f
                }
            };
            if f == Fate::Store {
                *counts.entry(m.conv).or_insert(0) += 1;
            }
            fate.push(f);
        }
        let mut convs: Vec<(ConvId, i64)> = counts.into_iter().collect();
        convs.sort_unstable();
        let mut cmids: Vec<(CmidKey<'a>, CmidWrite)> = latest
            .into_iter()
            .filter_map(|(key, l)| match l {
                Latest::Batch(index) => Some((
                    key,
                    CmidWrite {
                        index,
                        replaces: known.get(&key).map(|r| r.created),
                    },
                )),
                Latest::Db(_) => None,
            })
            .collect();
        cmids.sort_unstable_by_key(|(key, _)| *key);
        AppendPlan {
            fate,
            convs,
            cmids: cmids.into_iter().map(|(_, w)| w).collect(),
        }
    }

    /// The conversations that get messages, ascending, each with how many.
    pub fn convs(&self) -> &[(ConvId, i64)] {
        &self.convs
    }

    /// Whether anything is stored at all (a batch of duplicates writes nothing).
    pub fn stores_anything(&self) -> bool {
        !self.convs.is_empty()
    }

    /// Indices of the stored messages, in batch order.
    pub fn stored(&self) -> impl Iterator<Item = usize> + '_ {
        self.fate
            .iter()
            .enumerate()
            .filter(|(_, f)| **f == Fate::Store)
            .map(|(i, _)| i)
    }

    /// The `msgcmid` rows to write, sorted by key.
    pub fn cmid_writes(&self) -> &[CmidWrite] {
        &self.cmids
    }

    /// Given each conversation's `last_seq` after the bump (`last` must know every conversation
    /// of [`convs`](Self::convs)), the seq of every message of the batch (0 for duplicates)
    /// and the outcomes to return. The stored messages of a conversation that got `k` take
    /// `last - k + 1 ..= last` in batch order.
    pub fn assign(
        &self,
        batch: &[Append<'_>],
        last: &HashMap<ConvId, Seq>,
    ) -> Result<(Vec<Seq>, Vec<Appended>), String> {
        let mut next: HashMap<ConvId, Seq> = HashMap::with_capacity(self.convs.len());
        for (conv, k) in &self.convs {
            let l = last
                .get(conv)
                .ok_or_else(|| format!("append: conversation {} was not read back", conv.0))?;
            next.insert(*conv, l - k + 1);
        }
        let mut seqs = vec![0; batch.len()];
        let mut out = Vec::with_capacity(batch.len());
        for (i, f) in self.fate.iter().enumerate() {
            out.push(match *f {
                Fate::Store => {
                    let n = next.get_mut(&batch[i].conv).expect("counted conversation");
                    seqs[i] = *n;
                    *n += 1;
                    Appended::New(seqs[i])
                }
                Fate::Original(conv, seq) => Appended::Duplicate { conv, seq },
                Fate::SameAs(j) => Appended::Duplicate {
                    conv: batch[j].conv,
                    seq: seqs[j],
                },
            });
        }
        Ok((seqs, out))
    }
}

/// Cuts `n` rows into consecutive runs whose lengths are powers of two (so a backend prepares
/// at most a handful of distinct multi-row statements), each at most `max_rows` rows and, when
/// it has more than one row, at most `max_bytes` by `bytes` (one huge row goes alone).
pub fn pow2_runs(
    n: usize,
    max_rows: usize,
    max_bytes: usize,
    bytes: impl Fn(usize) -> usize,
) -> Vec<Range<usize>> {
    let mut runs = Vec::new();
    let mut at = 0;
    while at < n {
        let mut len = prev_pow2((n - at).min(max_rows.max(1)));
        while len > 1 && (at..at + len).map(&bytes).sum::<usize>() > max_bytes {
            len /= 2;
        }
        runs.push(at..at + len);
        at += len;
    }
    runs
}

/// Cuts `n` items into runs of at most `max` (a power of two), each padded to a power of two
/// by repeating its last item: for statements where a repeat changes nothing (`IN` lists,
/// `GREATEST` upserts). Returns `(range, padded length)`.
pub fn padded_runs(n: usize, max: usize) -> Vec<(Range<usize>, usize)> {
    let max = prev_pow2(max.max(1));
    (0..n)
        .step_by(max)
        .map(|at| {
            let end = (at + max).min(n);
            (at..end, (end - at).next_power_of_two())
        })
        .collect()
}

/// The largest power of two not above `n` (`n` > 0).
fn prev_pow2(n: usize) -> usize {
    1 << (usize::BITS - 1 - n.leading_zeros())
}

/// `"(?, ?), (?, ?)"`-style placeholder rows: `rows` groups of `row` (e.g. `"(?, ?)"`) joined
/// with `sep`.
pub fn repeat(row: &str, sep: &str, rows: usize) -> String {
    let mut s = String::with_capacity((row.len() + sep.len()) * rows);
    for i in 0..rows {
        if i > 0 {
            s.push_str(sep);
        }
        s.push_str(row);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(conv: i64, sender: UserId, cmid: Option<&str>, created_ms: i64) -> Append<'_> {
        Append {
            conv: ConvId(conv),
            sender,
            cmid,
            body: "{}",
            created_ms,
        }
    }

    #[test]
    fn seqs_follow_batch_order_per_conversation() {
        let batch = [msg(5, 1, None, 0), msg(-2, 1, None, 0), msg(5, 2, None, 0)];
        let plan = AppendPlan::new(&batch, &HashMap::new());
        assert_eq!(plan.convs(), &[(ConvId(-2), 1), (ConvId(5), 2)]);
        let last = HashMap::from([(ConvId(-2), 7), (ConvId(5), 11)]);
        let (seqs, out) = plan.assign(&batch, &last).unwrap();
        assert_eq!(seqs, [10, 7, 11]);
        assert_eq!(
            out,
            [Appended::New(10), Appended::New(7), Appended::New(11)]
        );
        assert!(plan.cmid_writes().is_empty());
    }

    #[test]
    fn cmid_repeats_in_the_database_and_in_the_batch() {
        let day = CMID_WINDOW_MS;
        let batch = [
            msg(5, 1, Some("a"), day * 3),     // db row, fresh: duplicate
            msg(5, 1, Some("b"), day * 3),     // new
            msg(6, 1, Some("b"), day * 3 + 1), // repeat of the previous one
            msg(5, 2, Some("b"), day * 3),     // another sender: new
            msg(5, 1, Some("c"), day * 3),     // db row, expired: new, replaces it
            msg(5, 1, Some("b"), day * 5),     // repeat of b, but after the window: new
        ];
        let known = HashMap::from([
            (
                (1, "a"),
                CmidRow {
                    conv: ConvId(9),
                    seq: 4,
                    created: day * 3 - 10,
                },
            ),
            (
                (1, "c"),
                CmidRow {
                    conv: ConvId(5),
                    seq: 1,
                    created: day,
                },
            ),
        ]);
        let plan = AppendPlan::new(&batch, &known);
        assert_eq!(plan.convs(), &[(ConvId(5), 4)]);
        assert_eq!(plan.stored().collect::<Vec<_>>(), [1, 3, 4, 5]);
        let (seqs, out) = plan
            .assign(&batch, &HashMap::from([(ConvId(5), 14)]))
            .unwrap();
        assert_eq!(seqs, [0, 11, 0, 12, 13, 14]);
        assert_eq!(
            out,
            [
                Appended::Duplicate {
                    conv: ConvId(9),
                    seq: 4
                },
                Appended::New(11),
                Appended::Duplicate {
                    conv: ConvId(5),
                    seq: 11
                },
                Appended::New(12),
                Appended::New(13),
                Appended::New(14),
            ]
        );
        // Sorted by key: (1,"b") names the last b, (1,"c") replaces the expired row, (2,"b").
        assert_eq!(
            plan.cmid_writes(),
            &[
                CmidWrite {
                    index: 5,
                    replaces: None
                },
                CmidWrite {
                    index: 4,
                    replaces: Some(day)
                },
                CmidWrite {
                    index: 3,
                    replaces: None
                },
            ]
        );
    }

    #[test]
    fn a_batch_of_duplicates_stores_nothing() {
        let batch = [msg(5, 1, Some("a"), 100)];
        let known = HashMap::from([(
            (1, "a"),
            CmidRow {
                conv: ConvId(5),
                seq: 3,
                created: 50,
            },
        )]);
        let plan = AppendPlan::new(&batch, &known);
        assert!(!plan.stores_anything());
        let (_, out) = plan.assign(&batch, &HashMap::new()).unwrap();
        assert_eq!(
            out,
            [Appended::Duplicate {
                conv: ConvId(5),
                seq: 3
            }]
        );
    }

    #[test]
    fn long_cmids_are_refused() {
        let long = "x".repeat(MAX_CMID_BYTES + 1);
        assert!(check(&[msg(1, 1, Some(&long), 0)]).is_err());
        let ok = "x".repeat(MAX_CMID_BYTES);
        assert!(check(&[msg(1, 1, Some(&ok), 0), msg(1, 1, None, 0)]).is_ok());
    }

    #[test]
    fn runs_are_powers_of_two_within_the_limits() {
        let lens = |runs: Vec<Range<usize>>| runs.iter().map(|r| r.len()).collect::<Vec<_>>();
        assert_eq!(
            lens(pow2_runs(500, 128, usize::MAX, |_| 1)),
            [128, 128, 128, 64, 32, 16, 4]
        );
        assert_eq!(
            lens(pow2_runs(5, 64, 100, |i| [10, 10, 90, 200, 1][i])),
            [2, 1, 1, 1]
        );
        assert!(pow2_runs(0, 64, 10, |_| 1).is_empty());
        assert_eq!(padded_runs(5, 4), [(0..4, 4), (4..5, 1)]);
        assert_eq!(padded_runs(3, 64), [(0..3, 4)]);
        assert_eq!(repeat("(?)", ", ", 3), "(?), (?), (?)");
    }
}
