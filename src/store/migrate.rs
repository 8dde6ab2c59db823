//! Moving the old offline queue into the message log, decided in plain Rust so that both
//! backends migrate alike (they only read the rows, append and write the cursors).
//!
//! A row of `offlinemessage(seq, userid, message)` is a chat frame queued for `userid`:
//! msgid 6 (`id` = sender) belongs to the pair `(sender, userid)`; msgid 10 (`id` = sender,
//! `groupid`) to the group, where the old server queued one copy per offline member. The
//! copies are one message: a group's rows with the same text are one message, except that a
//! member who has the same text twice in their queue was sent it twice (so their n-th copy is
//! the n-th message with that text). Rows that do not parse, or name a user or group that does
//! not exist, stay in `offlinemessage` and are reported.
//!
//! Cursors, in each conversation that gets messages (with `old` its last seq before and `new`
//! after): a user whose cursor was below `old` had unread messages already and keeps their
//! cursor. Any other receiver's cursor becomes the seq of their first migrated message there
//! minus one; any other participant (the sender of a pair message, a group member who got
//! the messages live) moves to `new`, so nobody is shown as unread what they already saw.

use super::log::{Append, Appended, ConvId, Seq};
use clusterchat_proto::{GroupId, UserId};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// One row of the old `offlinemessage` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfflineRow {
    /// Its key (the queue's order).
    pub seq: i64,
    /// The receiver.
    pub user: UserId,
    /// The chat frame as it was forwarded.
    pub message: String,
}

/// What a row's frame says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Frame {
    /// msgid 6 from `sender`.
    Pair { sender: UserId },
    /// msgid 10 from `sender` to `group`.
    Group { sender: UserId, group: GroupId },
}

/// Reads the sender and, for a group message, the group out of a queued frame.
fn parse(message: &str) -> Result<Frame, String> {
    let v: serde_json::Value =
        serde_json::from_str(message).map_err(|e| format!("not JSON ({e})"))?;
    let int = |field: &str| {
        v.get(field)
            .and_then(serde_json::Value::as_i64)
            .ok_or_else(|| format!("no integer {field:?}"))
    };
    match int("msgid")? {
        6 => Ok(Frame::Pair { sender: int("id")? }),
        10 => Ok(Frame::Group {
            sender: int("id")?,
            group: int("groupid")?,
        }),
        other => Err(format!("msgid {other} is not a chat message")),
    }
}

/// The users and groups the rows name, so a backend can check which exist in a few queries.
pub fn referenced(rows: &[OfflineRow]) -> (BTreeSet<UserId>, BTreeSet<GroupId>) {
    let mut users = BTreeSet::new();
    let mut groups = BTreeSet::new();
    for r in rows {
        users.insert(r.user);
        match parse(&r.message) {
            Ok(Frame::Pair { sender }) => {
                users.insert(sender);
            }
            Ok(Frame::Group { sender, group }) => {
                users.insert(sender);
                groups.insert(group);
            }
            Err(_) => {}
        }
    }
    (users, groups)
}

/// One message to append: its conversation, sender and the row whose text is its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Move {
    /// Its conversation.
    pub conv: ConvId,
    /// Who sent it.
    pub sender: UserId,
    /// Index (into the rows) of the row that carries its body.
    pub row: usize,
}

/// The migration of one set of rows.
#[derive(Debug, Default)]
pub struct Migration {
    /// The messages to append, in queue order.
    pub moves: Vec<Move>,
    /// Per (conversation, receiver): the index in `moves` of their first message there.
    pub first: BTreeMap<(ConvId, UserId), usize>,
    /// The `offlinemessage` seqs migrated (to delete).
    pub migrated: Vec<i64>,
    /// The rows kept, each with the reason.
    pub kept: Vec<(usize, String)>,
}

/// Plans the migration of `rows` (in queue order), given which users and groups exist.
pub fn plan(
    rows: &[OfflineRow],
    users: &BTreeSet<UserId>,
    groups: &BTreeSet<GroupId>,
) -> Migration {
    let mut m = Migration::default();
    // (group, text) -> the moves with that text, in order; (group, text, user) -> copies seen.
    let mut texts: HashMap<(GroupId, &str), Vec<usize>> = HashMap::new();
    let mut copies: HashMap<(GroupId, &str, UserId), usize> = HashMap::new();
    for (i, r) in rows.iter().enumerate() {
        let frame = parse(&r.message).and_then(|f| {
            let sender = match f {
                Frame::Pair { sender } | Frame::Group { sender, .. } => sender,
            };
            if !users.contains(&r.user) {
                return Err(format!("receiver {} does not exist", r.user));
            }
            if !users.contains(&sender) {
                return Err(format!("sender {sender} does not exist"));
            }
            match f {
                Frame::Group { group, .. } if !groups.contains(&group) => {
                    Err(format!("group {group} does not exist"))
                }
                f => Ok(f),
            }
        });
        let index = match frame {
            Err(reason) => {
                m.kept.push((i, reason));
                continue;
            }
            Ok(Frame::Pair { sender }) => {
                m.moves.push(Move {
                    conv: ConvId::pair(sender, r.user),
                    sender,
                    row: i,
                });
                m.moves.len() - 1
            }
            Ok(Frame::Group { sender, group }) => {
                let nth = copies.entry((group, &r.message, r.user)).or_insert(0);
                let same = texts.entry((group, &r.message)).or_default();
                if *nth == same.len() {
                    m.moves.push(Move {
                        conv: ConvId::group(group),
                        sender,
                        row: i,
                    });
                    same.push(m.moves.len() - 1);
                }
                *nth += 1;
                same[*nth - 1]
            }
        };
        m.first
            .entry((m.moves[index].conv, r.user))
            .or_insert(index);
        m.migrated.push(r.seq);
    }
    m
}

impl Migration {
    /// Reports the rows kept in the old queue (a warning each: never dropped silently).
    /// The appends that move the rows: every move's message into its conversation, all
    /// stamped `now_ms`.
    pub fn appends<'a>(&self, rows: &'a [OfflineRow], now_ms: i64) -> Vec<Append<'a>> {
        self.moves
            .iter()
            .map(|mv| Append {
                conv: mv.conv,
                sender: mv.sender,
                cmid: None,
                body: &rows[mv.row].message,
                created_ms: now_ms,
            })
            .collect()
    }

    /// The seq each append got (a migration has no cmids, so no duplicates).
    pub fn seqs(appended: Vec<Appended>) -> Vec<Seq> {
        appended
            .into_iter()
            .map(|a| match a {
                Appended::New(seq) | Appended::Duplicate { seq, .. } => seq,
            })
            .collect()
    }

    pub fn warn_kept(&self, rows: &[OfflineRow]) {
        for (i, reason) in &self.kept {
            let r = &rows[*i];
            log::warn!(
                "offline message {} of user {} stays in offlinemessage, not moved to the log: \
                 {reason}",
                r.seq,
                r.user
            );
        }
    }

    /// Given the seq each move got, per conversation: how many messages moved in, its last
    /// seq after, and each receiver's first seq there.
    pub fn by_conversation(&self, seqs: &[Seq]) -> BTreeMap<ConvId, Moved> {
        let mut convs: BTreeMap<ConvId, Moved> = BTreeMap::new();
        for (mv, seq) in self.moves.iter().zip(seqs) {
            let e = convs.entry(mv.conv).or_default();
            e.count += 1;
            e.last = e.last.max(*seq);
        }
        for ((conv, user), index) in &self.first {
            if let Some(e) = convs.get_mut(conv) {
                e.first.insert(*user, seqs[*index]);
            }
        }
        convs
    }
}

/// What moved into one conversation.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Moved {
    /// How many messages.
    pub count: i64,
    /// Its last seq afterwards.
    pub last: Seq,
    /// Each receiver's first seq there.
    pub first: BTreeMap<UserId, Seq>,
}

impl Moved {
    /// The cursors to write (see [`cursors`]).
    pub fn cursors(
        &self,
        participants: &[UserId],
        existing: &HashMap<UserId, Seq>,
    ) -> Vec<(UserId, Seq)> {
        cursors(
            self.last - self.count,
            self.last,
            participants,
            existing,
            &self.first,
        )
    }
}

/// The cursors to write in one conversation (see the module comment): `old` and `new` are its
/// last seq before and after, `participants` its users (the pair, or the group's members),
/// `existing` the cursor rows it has, `first` each receiver's first migrated seq there.
/// Returns `(user, cursor)` for the rows to insert or overwrite.
pub fn cursors(
    old: Seq,
    new: Seq,
    participants: &[UserId],
    existing: &HashMap<UserId, Seq>,
    first: &BTreeMap<UserId, Seq>,
) -> Vec<(UserId, Seq)> {
    let everyone: BTreeSet<UserId> = participants
        .iter()
        .copied()
        .chain(first.keys().copied())
        .collect();
    everyone
        .into_iter()
        .filter_map(|u| {
            let had = existing.get(&u).copied();
            if had.unwrap_or(0) < old {
                return None; // unread messages from before: keep them unread
            }
            let want = first.get(&u).map_or(new, |f| f - 1);
            (had != Some(want) && (had.is_some() || want != 0)).then_some((u, want))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(seq: i64, user: UserId, message: &str) -> OfflineRow {
        OfflineRow {
            seq,
            user,
            message: message.into(),
        }
    }

    #[test]
    fn group_copies_are_one_message_and_bad_rows_stay() {
        let g = r#"{"msgid":10,"id":1,"groupid":7,"msg":"hi","time":"t"}"#;
        let p = r#"{"msgid":6,"id":1,"name":"a","toid":2,"msg":"yo","time":"t"}"#;
        let rows = [
            row(1, 2, g),
            row(2, 3, g),
            row(3, 2, p),
            row(4, 2, "not json"),
            row(5, 2, r#"{"msgid":1,"id":1}"#),
            row(6, 2, r#"{"msgid":10,"id":1,"groupid":8}"#),
            row(7, 2, r#"{"msgid":6,"id":99}"#),
            row(8, 3, g), // user 3 got the same text twice: sent twice
        ];
        let (users, groups) = referenced(&rows);
        assert_eq!(users, BTreeSet::from([1, 2, 3, 99]));
        assert_eq!(groups, BTreeSet::from([7, 8]));
        let m = plan(&rows, &BTreeSet::from([1, 2, 3]), &BTreeSet::from([7]));
        let moves: Vec<(ConvId, UserId, usize)> =
            m.moves.iter().map(|x| (x.conv, x.sender, x.row)).collect();
        assert_eq!(
            moves,
            [
                (ConvId::group(7), 1, 0),
                (ConvId::pair(1, 2), 1, 2),
                (ConvId::group(7), 1, 7),
            ]
        );
        assert_eq!(
            m.first,
            BTreeMap::from([
                ((ConvId::group(7), 2), 0),
                ((ConvId::group(7), 3), 0),
                ((ConvId::pair(1, 2), 2), 1),
            ])
        );
        assert_eq!(m.migrated, [1, 2, 3, 8]);
        let kept: Vec<usize> = m.kept.iter().map(|(i, _)| *i).collect();
        assert_eq!(kept, [3, 4, 5, 6]);
        assert!(m.kept[3].1.contains("sender 99"), "{:?}", m.kept);
    }

    #[test]
    fn cursors_start_before_the_first_migrated_message() {
        // A fresh conversation: receivers at first - 1, the others at the end.
        let got = cursors(
            0,
            3,
            &[1, 2, 3],
            &HashMap::new(),
            &BTreeMap::from([(2, 1), (3, 2)]),
        );
        // (user 2's would be 0, which an absent row means already)
        assert_eq!(got, [(1, 3), (3, 1)]);
        // Caught up before (cursor = old): same rule; behind: kept.
        let got = cursors(
            5,
            8,
            &[1, 2, 3],
            &HashMap::from([(1, 5), (2, 5), (3, 4)]),
            &BTreeMap::from([(2, 7), (3, 6)]),
        );
        assert_eq!(got, [(1, 8), (2, 6)]);
    }
}
