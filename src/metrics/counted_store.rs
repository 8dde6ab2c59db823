//! A [`Store`] that counts the database errors of the store it wraps: every call that fails
//! with [`StoreError::Unavailable`] or [`StoreError::Query`] (a taken name, a
//! [`StoreError::Conflict`], is an answer, not an error) adds one to
//! `clusterchat_db_errors_total`, whoever made the call (a request, the log writer, the
//! housekeeper). Every method is forwarded, the provided ones too, so the wrapped store's
//! behaviour is unchanged.

use super::atomic::StripedCounter;
use crate::store::{
    Append, Appended, Claim, ConvId, JoinOutcome, Logged, PoolState, Seq, SharedStore, Store,
    StoreError, StoreResult, Unread, UserRecord,
};
use clusterchat_proto::{GroupId, GroupInfo, MemberInfo, UserId, UserInfo};

/// The wrapper (see the module docs). Thread safe, as the store it wraps.
pub(crate) struct CountedStore {
    inner: SharedStore,
    errors: StripedCounter,
}

impl CountedStore {
    /// Wraps `inner`, counting its errors in `errors`.
    pub(crate) fn new(inner: SharedStore, errors: StripedCounter) -> Self {
        CountedStore { inner, errors }
    }

    fn count<T>(&self, r: StoreResult<T>) -> StoreResult<T> {
        if let Err(StoreError::Unavailable(_) | StoreError::Query(_)) = &r {
            self.errors.add(1);
        }
        r
    }
}

/// Forwards each listed method to the wrapped store, counting its error.
macro_rules! forward {
    ($(fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)*) => {
        $(fn $name(&self $(, $arg: $ty)*) -> $ret {
            self.count(self.inner.$name($($arg),*))
        })*
    };
}

impl Store for CountedStore {
    fn pool_state(&self) -> Option<PoolState> {
        self.inner.pool_state()
    }

    fn exclusive(&self) -> bool {
        self.inner.exclusive()
    }

    fn try_append(&self, batch: &[Append<'_>]) -> Option<StoreResult<Vec<Appended>>> {
        self.inner.try_append(batch).map(|r| self.count(r))
    }

    fn read_before(
        &self,
        conv: ConvId,
        before: Seq,
        floor: Seq,
        limit: usize,
    ) -> StoreResult<(Vec<Logged>, bool)> {
        self.count(self.inner.read_before(conv, before, floor, limit))
    }

    forward! {
        fn register(&self, name: &str, password_hash: &str) -> StoreResult<UserId>;
        fn user(&self, id: UserId) -> StoreResult<Option<UserRecord>>;
        fn user_by_name(&self, name: &str) -> StoreResult<Option<UserRecord>>;
        fn claim_session(&self, user: UserId, session: &str) -> StoreResult<Claim>;
        fn take_over_session(&self, user: UserId, old: &str, new: &str) -> StoreResult<bool>;
        fn release_session(&self, user: UserId, session: &str) -> StoreResult<()>;
        fn release_node(&self, node: &str) -> StoreResult<u64>;
        fn session_nodes(&self) -> StoreResult<Vec<String>>;
        fn sessions_per_node(&self) -> StoreResult<Vec<(String, u64)>>;
        fn release_all(&self) -> StoreResult<u64>;
        fn lock_node(&self, node: &str) -> StoreResult<()>;
        fn keep_node_lock(&self) -> StoreResult<()>;
        fn node_running(&self, node: &str) -> StoreResult<bool>;
        fn release_dead_node(&self, node: &str) -> StoreResult<Option<u64>>;
        fn add_friend(&self, user: UserId, friend: UserId) -> StoreResult<()>;
        fn friends(&self, user: UserId) -> StoreResult<Vec<UserInfo>>;
        fn create_group(&self, creator: UserId, name: &str, desc: &str) -> StoreResult<GroupId>;
        fn join_group(&self, user: UserId, group: GroupId) -> StoreResult<JoinOutcome>;
        fn groups_of(&self, user: UserId) -> StoreResult<Vec<GroupInfo>>;
        fn group_members(&self, group: GroupId) -> StoreResult<Option<Vec<UserId>>>;
        fn store_offline(&self, user: UserId, message: &str) -> StoreResult<()>;
        fn store_offline_many(&self, users: &[UserId], message: &str) -> StoreResult<()>;
        fn take_offline(&self, user: UserId) -> StoreResult<Vec<String>>;
        fn append(&self, batch: &[Append<'_>]) -> StoreResult<Vec<Appended>>;
        fn read_after(&self, conv: ConvId, after: Seq, limit: usize) -> StoreResult<Vec<Logged>>;
        fn unread(&self, user: UserId) -> StoreResult<Vec<Unread>>;
        fn advance_cursors(&self, user: UserId, cursors: &[(ConvId, Seq)]) -> StoreResult<()>;
        fn join_floor(&self, group: GroupId, user: UserId) -> StoreResult<Option<Seq>>;
        fn prune(&self, before_ms: i64, limit: usize) -> StoreResult<u64>;
        fn members_page(&self, group: GroupId, after: UserId, limit: usize) -> StoreResult<Vec<MemberInfo>>;
        fn group_summaries(&self, user: UserId) -> StoreResult<Vec<(GroupInfo, u64)>>;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn failed_calls_are_counted_and_answers_are_not() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("c.db");
        let inner: SharedStore =
            Arc::new(crate::store::sqlite::SqliteStore::open(path.to_str().unwrap(), 2).unwrap());
        let errors = StripedCounter::default();
        let store = CountedStore::new(inner, errors.clone());
        assert!(store.exclusive(), "provided methods are forwarded too");
        assert_eq!(store.pool_state().map(|p| p.max), Some(2));
        store.register("ann", "h").expect("registered");
        assert!(matches!(
            store.register("ann", "h"),
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(errors.get(), 0, "a taken name is an answer");
        // A batch the store refuses (a cmid over 64 bytes) is a query error.
        let long = "x".repeat(100);
        let bad = Append {
            conv: ConvId::pair(1, 2),
            sender: 3,
            cmid: Some(&long),
            body: "{}",
            created_ms: 0,
        };
        assert!(store.append(&[bad]).is_err());
        assert_eq!(errors.get(), 1);
    }
}
