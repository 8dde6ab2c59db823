//! SQL text and row shaping shared by the SQLite and MySQL backends.
//!
//! Both dialects accept plain `?` placeholders, `substr` and the same joins, so keeping the
//! statements in one place means the two backends cannot drift apart in meaning. Only the
//! dialect-specific statements (insert-or-ignore, row locking) live in the backends.

use clusterchat_proto::{GroupId, GroupInfo, MemberInfo, UserId, UserInfo};

/// Creates a user; parameters: name, password hash.
pub const REGISTER: &str = "INSERT INTO user(name, password) VALUES (?, ?)";
/// Reads a user for login; parameter: id.
pub const USER: &str = "SELECT id, name, password FROM user WHERE id = ?";
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
