//! SQL text and row shaping shared by the SQLite and MySQL backends.
//!
//! Both dialects accept plain `?` placeholders, `substr` and the same joins, so keeping the
//! statements in one place means the two backends cannot drift apart in meaning. Only the
//! dialect-specific statements (insert-or-ignore, row locking) live in the backends.

use super::log::{ConvId, Logged};
use super::plan;
use clusterchat_proto::{GroupId, GroupInfo, MemberInfo, UserId, UserInfo};
use std::sync::OnceLock;

/// Creates a user; parameters: name, its key ([`super::names::name_key`]), password hash.
pub const REGISTER: &str = "INSERT INTO user(name, name_key, password) VALUES (?, ?, ?)";
/// Reads a user for login; parameter: id.
pub const USER: &str = "SELECT id, name, password FROM user WHERE id = ?";
/// Reads a user for a login by name; parameter: the name's key.
pub const USER_BY_NAME: &str = "SELECT id, name, password FROM user WHERE name_key = ?";
/// The atomic login claim: succeeds (one affected row) only if the user is offline.
/// Parameters: session, user.
pub const CLAIM: &str =
    "UPDATE user SET state = 'online', session = ? WHERE id = ? AND state = 'offline'";
/// Who holds a user after a failed claim; parameter: user.
pub const HOLDER: &str = "SELECT state, session FROM user WHERE id = ?";
/// Moves a login from a stale session to a new one. Parameters: new, user, old.
pub const TAKE_OVER: &str =
    "UPDATE user SET state = 'online', session = ? WHERE id = ? AND session = ?";
/// Logs a session out only if it still holds the user. Parameters: user, session.
pub const RELEASE: &str =
    "UPDATE user SET state = 'offline', session = NULL WHERE id = ? AND session = ?";
/// Logs out every session of one node: a prefix test with `substr` rather than `LIKE`, because
/// node ids may contain `_` or `%`. Parameters: prefix length, prefix (`"<node>/"`).
pub const RELEASE_NODE: &str = "UPDATE user SET state = 'offline', session = NULL \
     WHERE session IS NOT NULL AND substr(session, 1, ?) = ?";
/// The nodes that hold at least one session (node ids never contain `/`).
pub const SESSION_NODES: &str = "SELECT DISTINCT substr(session, 1, instr(session, '/') - 1) \
     FROM user WHERE session IS NOT NULL";
/// How many sessions each node holds (`/api/cluster`).
pub const SESSIONS_PER_NODE: &str = "SELECT substr(session, 1, instr(session, '/') - 1) AS node, \
     COUNT(*) FROM user WHERE session IS NOT NULL GROUP BY node";
/// Logs out everyone (a lone server starting up).
pub const RELEASE_ALL: &str = "UPDATE user SET state = 'offline', session = NULL \
     WHERE state = 'online' OR session IS NOT NULL";
/// A user's friends with their state; parameter: user.
pub const FRIENDS: &str = "SELECT u.id, u.name, u.state FROM friend f \
     JOIN user u ON u.id = f.friendid WHERE f.userid = ? ORDER BY u.id";
/// Creates a group; parameters: name, description.
pub const CREATE_GROUP: &str = "INSERT INTO allgroup(groupname, groupdesc) VALUES (?, ?)";
/// Adds a member; parameters: group, user, role.
pub const ADD_MEMBER: &str = "INSERT INTO groupuser(groupid, userid, grouprole) VALUES (?, ?, ?)";
/// Does a group exist; parameter: group.
pub const GROUP_EXISTS: &str = "SELECT 1 FROM allgroup WHERE id = ?";
/// Is a user a member; parameters: group, user.
pub const IS_MEMBER: &str = "SELECT 1 FROM groupuser WHERE groupid = ? AND userid = ?";
/// Every group of a user with all its members, in one query (no N+1); parameter: user.
/// Rows are ordered by group then member, as [`group_rows`] expects.
pub const GROUPS_OF: &str = "SELECT g.id, g.groupname, g.groupdesc, u.id, u.name, u.state, \
     m.grouprole FROM groupuser me \
     JOIN allgroup g ON g.id = me.groupid \
     JOIN groupuser m ON m.groupid = g.id \
     JOIN user u ON u.id = m.userid \
     WHERE me.userid = ? ORDER BY g.id, u.id";
/// Member ids of a group; parameter: group.
pub const MEMBERS: &str = "SELECT userid FROM groupuser WHERE groupid = ? ORDER BY userid";
/// Queues an offline message; parameters: user, message.
pub const STORE_OFFLINE: &str = "INSERT INTO offlinemessage(userid, message) VALUES (?, ?)";
/// Deletes the messages just read (and only those: newer ones stay queued). SQLite only: its
/// IMMEDIATE transaction excludes every other writer, so no lower seq can commit late.
/// Parameters: user, highest seq read.
pub const DELETE_OFFLINE: &str = "DELETE FROM offlinemessage WHERE userid = ? AND seq <= ?";

// ---- The message log ----
//
// conversation(conv, last_seq, usera, userb): one row per conversation that has had a
// message; last_seq is bumped in the append transaction (that row lock orders the appends of
// one conversation across servers). message(conv, seq, sender, created, body): the log.
// msgcmid(sender, cmid, conv, seq, created): the client message ids of the last day.
// msgcursor(userid, conv, seq, floor): what was delivered to a user, and from where a group
// member's history starts.

/// Messages after a seq, ascending; parameters: conv, after, limit.
pub const READ_AFTER: &str =
    "SELECT seq, body, created FROM message WHERE conv = ? AND seq > ? ORDER BY seq LIMIT ?";
/// The newest messages between two seqs, DESCENDING; parameters: conv, floor, before, limit
/// (ask for one more than wanted: its presence says whether there are more).
pub const READ_BEFORE: &str = "SELECT seq, body, created FROM message \
     WHERE conv = ? AND seq > ? AND seq < ? ORDER BY seq DESC LIMIT ?";
/// A user's conversations with messages after their cursor: the pairs they are the lower
/// user of, the higher user of (a pair with themselves only once), and their groups; one
/// query, ascending by conversation. Parameters: user, five times.
pub const UNREAD: &str = "SELECT c.conv, COALESCE(k.seq, 0), c.last_seq FROM conversation c \
     LEFT JOIN msgcursor k ON k.userid = ? AND k.conv = c.conv \
     WHERE c.usera = ? AND c.last_seq > COALESCE(k.seq, 0) \
     UNION ALL \
     SELECT c.conv, COALESCE(k.seq, 0), c.last_seq FROM conversation c \
     LEFT JOIN msgcursor k ON k.userid = ? AND k.conv = c.conv \
     WHERE c.userb = ? AND c.usera <> c.userb AND c.last_seq > COALESCE(k.seq, 0) \
     UNION ALL \
     SELECT c.conv, COALESCE(k.seq, 0), c.last_seq FROM groupuser m \
     JOIN conversation c ON c.conv = -m.groupid \
     LEFT JOIN msgcursor k ON k.userid = m.userid AND k.conv = c.conv \
     WHERE m.userid = ? AND c.last_seq > COALESCE(k.seq, 0) \
     ORDER BY 1";
/// A member's history floor (0 without a cursor row); no row: not a member. Parameters:
/// conv, group, user.
pub const JOIN_FLOOR: &str = "SELECT COALESCE(k.floor, 0) FROM groupuser m \
     LEFT JOIN msgcursor k ON k.userid = m.userid AND k.conv = ? \
     WHERE m.groupid = ? AND m.userid = ?";
/// The creator's cursor in a new group: nothing delivered, history from the start.
/// Parameters: user, conv.
pub const CREATOR_CURSOR: &str =
    "INSERT INTO msgcursor(userid, conv, seq, floor) VALUES (?, ?, 0, 0)";
/// One page of a group's members; parameters: group, after, limit.
pub const MEMBERS_PAGE: &str = "SELECT u.id, u.name, u.state, m.grouprole FROM groupuser m \
     JOIN user u ON u.id = m.userid \
     WHERE m.groupid = ? AND m.userid > ? ORDER BY m.userid LIMIT ?";
/// A user's groups with their member counts; parameter: user.
pub const GROUP_SUMMARIES: &str = "SELECT g.id, g.groupname, g.groupdesc, \
     (SELECT COUNT(*) FROM groupuser c WHERE c.groupid = g.id) FROM groupuser me \
     JOIN allgroup g ON g.id = me.groupid WHERE me.userid = ? ORDER BY g.id";
/// The old offline queue, in order (the migration reads it whole).
pub const OFFLINE_ALL: &str = "SELECT seq, userid, message FROM offlinemessage ORDER BY seq";

/// Most rows (or keys) in one multi-row statement; statements come in the power-of-two sizes
/// up to it (see [`plan::pow2_runs`] and [`plan::padded_runs`]).
pub const MAX_ROWS: usize = 64;
/// Most body bytes in one multi-row INSERT of messages (well below MySQL's smallest default
/// `max_allowed_packet`, 4 MiB); a longer body goes alone.
pub const MESSAGE_BYTES: usize = 1 << 20;

/// A multi-row statement, `head` + `rows` times `row` joined by `sep` + `tail`, for the
/// power-of-two row counts up to [`MAX_ROWS`]: each text is built once per process, so a
/// statement cache finds it without formatting a new string per call.
pub struct MultiRow {
    head: &'static str,
    row: &'static str,
    sep: &'static str,
    tail: &'static str,
    texts: OnceLock<Vec<String>>,
}

impl MultiRow {
    /// The statement `head (row)sep(row)… tail`.
    pub const fn new(
        head: &'static str,
        row: &'static str,
        sep: &'static str,
        tail: &'static str,
    ) -> MultiRow {
        MultiRow {
            head,
            row,
            sep,
            tail,
            texts: OnceLock::new(),
        }
    }

    /// The text for `rows` rows (a power of two, at most [`MAX_ROWS`]).
    pub fn text(&self, rows: usize) -> &str {
        assert!(
            rows.is_power_of_two() && rows <= MAX_ROWS,
            "{rows} rows in a multi-row statement"
        );
        let texts = self.texts.get_or_init(|| {
            (0..=MAX_ROWS.trailing_zeros())
                .map(|p| {
                    let rows = plan::repeat(self.row, self.sep, 1 << p);
                    format!("{}{rows}{}", self.head, self.tail)
                })
                .collect()
        });
        &texts[rows.trailing_zeros() as usize]
    }
}

/// One row of a multi-row INSERT into message(conv, seq, sender, created, body) or
/// msgcmid(sender, cmid, conv, seq, created).
pub const FIVE: &str = "(?, ?, ?, ?, ?)";

/// `SELECT <what> FROM <table> WHERE <column> IN (?, …)`, one `?` a row.
pub const fn select_in(head: &'static str) -> MultiRow {
    MultiRow::new(head, "?", ", ", ")")
}

/// The users a conversation row records: the pair's two users, or none for a group (so
/// [`UNREAD`] finds pairs by user and groups by membership).
pub fn conv_users(conv: ConvId) -> (Option<UserId>, Option<UserId>) {
    match conv.as_pair() {
        Some((a, b)) => (Some(a), Some(b)),
        None => (None, None),
    }
}

/// A `usize` limit as SQL wants it.
pub fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The rows of [`READ_BEFORE`] (newest first, up to `limit + 1`) as `read_before` answers:
/// the newest `limit` ascending, and whether an older one exists.
pub fn page_before(mut rows: Vec<Logged>, limit: usize) -> (Vec<Logged>, bool) {
    let more = rows.len() > limit;
    rows.truncate(limit);
    rows.reverse();
    (rows, more)
}

/// A member row of [`MEMBERS_PAGE`]: id, name, state, role.
pub fn member((id, name, state, role): (UserId, String, String, String)) -> MemberInfo {
    MemberInfo {
        user: UserInfo { id, name, state },
        role,
    }
}

/// A row of [`GROUP_SUMMARIES`]: id, name, description, member count.
pub fn summary((id, name, desc, count): (GroupId, String, String, i64)) -> (GroupInfo, u64) {
    (
        GroupInfo {
            id,
            name,
            desc,
            users: Vec::new(),
        },
        u64::try_from(count).unwrap_or(0),
    )
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// What a failed claim found in [`HOLDER`]'s row: `None` when the user went offline in between
/// (claim again), else who holds them (`""` when unknown: no row, or no session recorded).
pub fn claim_outcome(holder: Option<(String, Option<String>)>) -> Option<super::Claim> {
    match holder {
        Some((state, _)) if state == "offline" => None,
        Some((_, session)) => Some(super::Claim::HeldBy(session.unwrap_or_default())),
        None => Some(super::Claim::HeldBy(String::new())),
    }
}

/// The prefix every session of `node` starts with, so `a` never matches node `ab`'s sessions.
pub fn node_prefix(node: &str) -> String {
    format!("{node}/")
}

/// One row of [`GROUPS_OF`]: group id, name, description, member id, name, state, role.
pub type GroupRow = (GroupId, String, String, UserId, String, String, String);

/// Folds the ordered rows of [`GROUPS_OF`] into groups, so both backends build identical
/// answers from one query.
pub fn group_rows(rows: impl IntoIterator<Item = GroupRow>) -> Vec<GroupInfo> {
    let mut groups: Vec<GroupInfo> = Vec::new();
    for (gid, gname, gdesc, uid, uname, state, role) in rows {
        if groups.last().map(|g| g.id) != Some(gid) {
            groups.push(GroupInfo {
                id: gid,
                name: gname,
                desc: gdesc,
                users: Vec::new(),
            });
        }
        let member = MemberInfo {
            user: UserInfo {
                id: uid,
                name: uname,
                state,
            },
            role,
        };
        if let Some(g) = groups.last_mut() {
            g.users.push(member);
        }
    }
    groups
}
