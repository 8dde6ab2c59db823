//! SQLite backend (placeholder until implemented).

use super::{Claim, JoinOutcome, Store, StoreError, StoreResult, UserRecord};
use crate::protocol::{GroupId, GroupInfo, UserId, UserInfo};

/// The embedded store of a server that runs alone.
pub struct SqliteStore;

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path`.
    pub fn open(_path: &str, _pool_size: u32) -> StoreResult<Self> {
        Err(StoreError::Unavailable("not implemented".into()))
    }
}

impl Store for SqliteStore {
    fn register(&self, _: &str, _: &str) -> StoreResult<UserId> {
        todo!()
    }
    fn user(&self, _: UserId) -> StoreResult<Option<UserRecord>> {
        todo!()
    }
    fn claim_session(&self, _: UserId, _: &str) -> StoreResult<Claim> {
        todo!()
    }
    fn take_over_session(&self, _: UserId, _: &str, _: &str) -> StoreResult<bool> {
        todo!()
    }
    fn release_session(&self, _: UserId, _: &str) -> StoreResult<()> {
        todo!()
    }
    fn release_node(&self, _: &str) -> StoreResult<u64> {
        todo!()
    }
    fn release_all(&self) -> StoreResult<u64> {
        todo!()
    }
    fn add_friend(&self, _: UserId, _: UserId) -> StoreResult<()> {
        todo!()
    }
    fn friends(&self, _: UserId) -> StoreResult<Vec<UserInfo>> {
        todo!()
    }
    fn create_group(&self, _: UserId, _: &str, _: &str) -> StoreResult<GroupId> {
        todo!()
    }
    fn join_group(&self, _: UserId, _: GroupId) -> StoreResult<JoinOutcome> {
        todo!()
    }
    fn groups_of(&self, _: UserId) -> StoreResult<Vec<GroupInfo>> {
        todo!()
    }
    fn group_members(&self, _: GroupId) -> StoreResult<Option<Vec<UserId>>> {
        todo!()
    }
    fn store_offline(&self, _: UserId, _: &str) -> StoreResult<()> {
        todo!()
    }
    fn take_offline(&self, _: UserId) -> StoreResult<Vec<String>> {
        todo!()
    }
}
