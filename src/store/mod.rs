//! Persistent state behind one trait: users, friends, groups, the message log with each
//! user's delivery cursors, the old offline queue (moved into the log at open) and the "who is
//! online where" claim.
//!
//! The service sees storage only through [`Store`], so the embedded SQLite backend (one server)
//! and the MySQL backend (a cluster sharing one database) are interchangeable. Every method is
//! synchronous and may block: call them from worker threads, never from an IO loop.

mod file_lock;
pub mod log;
mod migrate;
pub mod mysql;
mod mysql_append;
mod mysql_append_text;
mod mysql_node_lock;
pub mod names;
mod plan;
mod sql;
pub mod sqlite;
mod sqlite_append;
mod sqlite_checkpoint;
mod sqlite_index;
mod sqlite_migrate;
mod sqlite_schema;

use clusterchat_proto::{GroupId, GroupInfo, MemberInfo, UserId, UserInfo};
pub use log::{
    push_with_seq, with_seq, Append, Appended, ConvId, Logged, Seq, Unread, CMID_WINDOW_MS,
};
use std::sync::Arc;

/// What can go wrong in a store. The service turns each into an error reply naming the problem.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or a connection could not be had from the pool.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The database answered with an error.
    #[error("database error: {0}")]
    Query(String),
    /// A uniqueness rule was broken (e.g. a group name already taken).
    #[error("already exists: {0}")]
    Conflict(String),
    /// Another running server holds the lock this one needs: the whole database (SQLite) or
    /// this server's node name on it (MySQL). The message says which and what to change.
    #[error("{0}")]
    Locked(String),
    /// The database URL could not be understood.
    #[error("bad database URL {url}: {reason}")]
    BadUrl {
        /// The URL, password masked.
        url: String,
        /// Why it was refused.
        reason: String,
    },
}

/// Shorthand for store results.
pub type StoreResult<T> = Result<T, StoreError>;

/// A user row as login needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// Account id.
    pub id: UserId,
    /// Display name.
    pub name: String,
    /// The argon2 PHC string of the password.
    pub password_hash: String,
}

/// The outcome of [`Store::claim_session`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The user was offline and is now online under the caller's session.
    Claimed,
    /// The user is online under this other session (`"<node>/<connection>"`).
    HeldBy(String),
}

/// The outcome of [`Store::join_group`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinOutcome {
    /// The user is now a member.
    Joined,
    /// The user was a member already (nothing changed).
    AlreadyMember,
    /// No group has that id.
    NoSuchGroup,
}

/// A connection pool's state at one moment (for monitoring).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolState {
    /// Connections lent out now.
    pub in_use: u32,
    /// Connections open and idle.
    pub idle: u32,
    /// The most the pool opens.
    pub max: u32,
}

impl PoolState {
    /// The state of an r2d2 pool.
    pub(crate) fn of<M: r2d2::ManageConnection>(pool: &r2d2::Pool<M>) -> Self {
        let s = pool.state();
        PoolState {
            in_use: s.connections - s.idle_connections,
            idle: s.idle_connections,
            max: pool.max_size(),
        }
    }
}

/// Storage for the chat service. Implementations are thread safe and pooled.
pub trait Store: Send + Sync {
    /// The connection pool's state, for monitoring (`None`: no pool). Never blocks for long.
    fn pool_state(&self) -> Option<PoolState> {
        None
    }

    /// Creates a user with an already hashed password and returns the new id. A name taken
    /// already (compared by [`names::name_key`]: case-insensitively) is
    /// [`StoreError::Conflict`].
    fn register(&self, name: &str, password_hash: &str) -> StoreResult<UserId>;

    /// Looks a user up by id.
    fn user(&self, id: UserId) -> StoreResult<Option<UserRecord>>;

    /// Looks a user up by name, compared by [`names::name_key`] (case-insensitively).
    fn user_by_name(&self, name: &str) -> StoreResult<Option<UserRecord>>;

    /// Atomically marks `user` online under `session` if it is offline. Two servers sharing
    /// the database can never both succeed for one user.
    fn claim_session(&self, user: UserId, session: &str) -> StoreResult<Claim>;

    /// Replaces a stale `old` session of `user` (a dead node's, or a closed connection's) with
    /// `new`; false when `old` no longer holds the user (someone else won).
    fn take_over_session(&self, user: UserId, old: &str, new: &str) -> StoreResult<bool>;

    /// Marks `user` offline if `session` still holds it (a late logout never clears a newer
    /// login).
    fn release_session(&self, user: UserId, session: &str) -> StoreResult<()>;

    /// Marks offline every user whose session belongs to `node` (shutdown and restart of one
    /// server of a cluster). Returns how many were released.
    fn release_node(&self, node: &str) -> StoreResult<u64>;

    /// The nodes that hold at least one session, so a cluster can release those of dead nodes.
    fn session_nodes(&self) -> StoreResult<Vec<String>>;

    /// Each node that holds sessions, with how many (users online there), in no order.
    fn sessions_per_node(&self) -> StoreResult<Vec<(String, u64)>>;

    /// Marks every user offline (start-up of a server that owns its database
    /// [`exclusive`](Self::exclusive)ly). Returns how many.
    fn release_all(&self) -> StoreResult<u64>;

    // ---- Which servers run on this database ----

    /// Whether this process owns the database alone for as long as the store lives (SQLite:
    /// an exclusive lock on `PATH.lock`, taken at open before anything is read or written).
    /// No other server reads or writes it meanwhile, so state may be kept in memory, and any
    /// session found in it was left by a server that is gone.
    fn exclusive(&self) -> bool {
        false
    }

    /// Marks this process as the running server `node` on the database for as long as the
    /// store lives (MySQL: a named lock held on a connection of its own), so that the others
    /// can tell it is alive. [`StoreError::Locked`] when a running server already is `node`.
    /// Nothing to do for an [`exclusive`](Self::exclusive) store.
    fn lock_node(&self, _node: &str) -> StoreResult<()> {
        Ok(())
    }

    /// Checks that the lock [`lock_node`](Self::lock_node) took is still held (so that no idle
    /// timeout ends its connection) and takes it again after its connection was lost. Called
    /// every few seconds by the housekeeper.
    fn keep_node_lock(&self) -> StoreResult<()> {
        Ok(())
    }

    /// Whether a running server holds `node`'s lock (see [`lock_node`](Self::lock_node)): if
    /// so, it is alive, whatever else says. Never asked about the caller's own node; false on
    /// an [`exclusive`](Self::exclusive) store (no other server can run on it).
    fn node_running(&self, node: &str) -> StoreResult<bool>;

    /// Marks offline every user whose session belongs to `node`, if no running server holds
    /// `node`'s lock (the proof that it is gone), holding the lock meanwhile so that a server
    /// starting as `node` cannot begin in between. `None` (nothing released) when a running
    /// server holds it.
    fn release_dead_node(&self, node: &str) -> StoreResult<Option<u64>>;

    /// Makes `friend` a friend of `user` (one direction, as the original). Idempotent.
    fn add_friend(&self, user: UserId, friend: UserId) -> StoreResult<()>;

    /// The friends of `user` with their current state.
    fn friends(&self, user: UserId) -> StoreResult<Vec<UserInfo>>;

    /// Creates a group with `creator` as its member of role `creator`, in one transaction.
    /// A taken name is [`StoreError::Conflict`].
    fn create_group(&self, creator: UserId, name: &str, desc: &str) -> StoreResult<GroupId>;

    /// Adds `user` to `group` with role `normal`.
    fn join_group(&self, user: UserId, group: GroupId) -> StoreResult<JoinOutcome>;

    /// Every group `user` belongs to, with all members and their roles.
    fn groups_of(&self, user: UserId) -> StoreResult<Vec<GroupInfo>>;

    /// The member ids of `group`, or `None` when the group does not exist.
    fn group_members(&self, group: GroupId) -> StoreResult<Option<Vec<UserId>>>;

    /// Appends a message to `user`'s offline queue.
    fn store_offline(&self, user: UserId, message: &str) -> StoreResult<()>;

    /// Appends one message to the offline queues of several users (group chat fan-out).
    fn store_offline_many(&self, users: &[UserId], message: &str) -> StoreResult<()> {
        users
            .iter()
            .try_for_each(|u| self.store_offline(*u, message))
    }

    /// Reads and deletes `user`'s offline messages in one transaction, oldest first: each is
    /// returned exactly once.
    fn take_offline(&self, user: UserId) -> StoreResult<Vec<String>>;

    // ---- The message log (see [`log`]) ----

    /// Appends `batch` in ONE transaction (group commit) and returns one outcome per message,
    /// in order. Seqs are assigned per conversation, gap-free, in batch order, atomically
    /// across every server sharing the database (conversation rows are locked in ascending
    /// `ConvId` order, so concurrent batches never deadlock each other). A message whose
    /// `(sender, cmid)` was stored within [`CMID_WINDOW_MS`] of its `created_ms` (earlier in
    /// the database, or earlier in this batch) is not stored: [`Appended::Duplicate`] names
    /// the original. On error nothing of the batch is stored.
    fn append(&self, batch: &[Append<'_>]) -> StoreResult<Vec<Appended>>;

    /// [`append`](Self::append) if it can run at once: `None`, with nothing done, when it
    /// would wait (another append or a checkpoint holds the log, upkeep such as an index pass
    /// is due, or the store talks to a server over the network). For a caller that must not
    /// block, an IO loop: on `None` it hands the batch to a thread that may wait. The default
    /// is always `None`.
    fn try_append(&self, _batch: &[Append<'_>]) -> Option<StoreResult<Vec<Appended>>> {
        None
    }

    /// Up to `limit` messages of `conv` with seq > `after`, ascending.
    fn read_after(&self, conv: ConvId, after: Seq, limit: usize) -> StoreResult<Vec<Logged>>;

    /// The newest `limit` messages of `conv` with `floor < seq < before`, returned ascending,
    /// and whether older ones (seq > floor) exist beyond them.
    fn read_before(
        &self,
        conv: ConvId,
        before: Seq,
        floor: Seq,
        limit: usize,
    ) -> StoreResult<(Vec<Logged>, bool)>;

    /// The conversations of `user` (pairs they are in, groups they are a member of) whose
    /// last seq is above the user's cursor, ascending by conversation.
    fn unread(&self, user: UserId) -> StoreResult<Vec<Unread>>;

    /// Raises `user`'s cursors to the given seqs (a cursor never goes down), one transaction.
    fn advance_cursors(&self, user: UserId, cursors: &[(ConvId, Seq)]) -> StoreResult<()>;

    /// The seq `group` had when `user` joined it (0 for its creator and for members from
    /// before the log): group history shows them only later messages. `None`: not a member.
    fn join_floor(&self, group: GroupId, user: UserId) -> StoreResult<Option<Seq>>;

    /// Deletes at most `limit` messages created before `before_ms`, and `(sender, cmid)`
    /// records older than [`CMID_WINDOW_MS`]; returns how many messages were deleted.
    fn prune(&self, before_ms: i64, limit: usize) -> StoreResult<u64>;

    /// Members of `group` with id > `after`, ascending by id, at most `limit`.
    fn members_page(
        &self,
        group: GroupId,
        after: UserId,
        limit: usize,
    ) -> StoreResult<Vec<MemberInfo>>;

    /// The groups of `user` without their member lists, each with its member count.
    fn group_summaries(&self, user: UserId) -> StoreResult<Vec<(GroupInfo, u64)>>;
}

/// A shared store handle.
pub type SharedStore = Arc<dyn Store>;

/// Opens the store a `--db` URL names: `sqlite:PATH` or `mysql://…`; anything else is `BadUrl`.
pub fn open(url: &str, pool_size: u32) -> StoreResult<SharedStore> {
    if let Some(path) = url.strip_prefix("sqlite:") {
        return Ok(Arc::new(sqlite::SqliteStore::open(path, pool_size)?));
    }
    if url.starts_with("mysql://") {
        return Ok(Arc::new(mysql::MysqlStore::open(url, pool_size)?));
    }
    Err(StoreError::BadUrl {
        url: mask_password(url),
        reason: "use sqlite:PATH or mysql://user:pass@host:port/db".into(),
    })
}

/// The URL with any password replaced by `***`, for logs and error messages.
pub fn mask_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match (authority.rfind('@'), authority.find(':')) {
        (Some(at), Some(colon)) if colon < at => format!(
            "{}{}:***{}",
            &url[..scheme_end + 3],
            &authority[..colon],
            &rest[at..]
        ),
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::mask_password;

    #[test]
    fn masks_only_the_password() {
        assert_eq!(
            mask_password("mysql://root:secret@127.0.0.1:3306/chat"),
            "mysql://root:***@127.0.0.1:3306/chat"
        );
        assert_eq!(mask_password("mysql://root@h/db"), "mysql://root@h/db");
        assert_eq!(mask_password("sqlite:chat.db"), "sqlite:chat.db");
    }
}
