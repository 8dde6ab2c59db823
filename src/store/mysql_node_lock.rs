//! MySQL: which servers run on the database, told by the database itself (independent of
//! Redis). Each server holds a named lock (`GET_LOCK`) for its node id on a connection of its
//! own, for its whole life; MySQL drops the lock the moment that connection ends, so also when
//! the process is killed. A free lock is the proof that no server of that name runs: only then
//! are the sessions of that node released, and under that very lock, so that a server starting
//! under that name waits until the release is done.
//!
//! Lock names are server-wide in MySQL, so they are scoped to the database (several databases
//! on one server do not share names) and hashed to stay within the 64 characters allowed.

use super::mysql::err;
use super::sql;
use super::{StoreError, StoreResult};
use crate::sync::LockExt;
use mysql::prelude::Queryable;
use mysql::{Conn, OptsBuilder};
use std::sync::Mutex;

/// The lock name of the node given as the (one) parameter, in this database.
macro_rules! lock_name {
    () => {
        "CONCAT('clusterchat:', SHA1(CONCAT(COALESCE(DATABASE(), ''), '/', ?)))"
    };
}
/// Takes a node's lock; parameters: node, seconds to wait. 1: taken, 0: held by another.
const GET_LOCK: &str = concat!("SELECT GET_LOCK(", lock_name!(), ", ?)");
/// 1 when nobody holds a node's lock; parameter: node.
const IS_FREE: &str = concat!("SELECT IS_FREE_LOCK(", lock_name!(), ")");
/// Releases a node's lock; parameter: node.
const RELEASE_LOCK: &str = concat!("SELECT RELEASE_LOCK(", lock_name!(), ")");
/// 1 when this connection holds a node's lock; parameter: node.
const HOLDS: &str = concat!(
    "SELECT COALESCE(IS_USED_LOCK(",
    lock_name!(),
    ") = CONNECTION_ID(), 0)"
);

/// How long a starting server waits for its node's lock: long enough for MySQL to notice that
/// a killed predecessor of the same name is gone, or for another server to finish releasing
/// that predecessor's sessions; a running server of the same name keeps it for good.
const START_WAIT_SECS: u64 = 3;

/// This server's node lock, and how to connect again to take it back.
pub(super) struct NodeLock {
    opts: OptsBuilder,
    held: Mutex<Option<Held>>,
}

struct Held {
    node: String,
    /// The lock's connection; `None` after it was lost, until it is taken again.
    conn: Option<Conn>,
    /// Whether the loss of the lock was logged (once per loss).
    lost_logged: bool,
}

impl NodeLock {
    /// No lock yet; `opts` connects to the database.
    pub(super) fn new(opts: OptsBuilder) -> NodeLock {
        NodeLock {
            opts,
            held: Mutex::new(None),
        }
    }

    /// Takes `node`'s lock on a connection of its own, waiting a few seconds at most.
    pub(super) fn lock(&self, node: &str) -> StoreResult<()> {
        let mut conn = Conn::new(self.opts.clone()).map_err(err)?;
        if !get_lock(&mut conn, node, START_WAIT_SECS)? {
            return Err(StoreError::Locked(format!(
                "another chatserver runs as node {node} on this database (it holds the node's \
                 MySQL lock); give this one another --node-id"
            )));
        }
        *self.held.locked() = Some(Held {
            node: node.to_string(),
            conn: Some(conn),
            lost_logged: false,
        });
        Ok(())
    }

    /// Checks that the lock is still held (the query also keeps its connection from idling
    /// out) and takes it again on a new connection after it was lost.
    pub(super) fn keep(&self) -> StoreResult<()> {
        let mut guard = self.held.locked();
        let Some(held) = guard.as_mut() else {
            return Ok(());
        };
        if let Some(conn) = held.conn.as_mut() {
            match conn.exec_first::<i64, _, _>(HOLDS, (&held.node,)) {
                Ok(Some(1)) => return Ok(()),
                Ok(_) => {}
                Err(e) => log::debug!("node lock connection: {e}"),
            }
            held.conn = None;
            if !held.lost_logged {
                log::warn!(
                    "lost the MySQL lock of node {} (connection ended); taking it again",
                    held.node
                );
                held.lost_logged = true;
            }
        }
        let mut conn = Conn::new(self.opts.clone()).map_err(err)?;
        if get_lock(&mut conn, &held.node, 0)? {
            log::info!("holding the MySQL lock of node {} again", held.node);
            held.conn = Some(conn);
            held.lost_logged = false;
            Ok(())
        } else {
            Err(StoreError::Locked(format!(
                "the MySQL lock of node {} is held by another connection",
                held.node
            )))
        }
    }
}

/// Takes `node`'s lock on `conn`, waiting at most `wait_secs`; false when another holds it.
fn get_lock(conn: &mut Conn, node: &str, wait_secs: u64) -> StoreResult<bool> {
    let got: Option<Option<i64>> = conn.exec_first(GET_LOCK, (node, wait_secs)).map_err(err)?;
    Ok(got.flatten() == Some(1))
}

/// Whether a running server holds `node`'s lock.
pub(super) fn running(conn: &mut Conn, node: &str) -> StoreResult<bool> {
    let free: Option<Option<i64>> = conn.exec_first(IS_FREE, (node,)).map_err(err)?;
    match free.flatten() {
        Some(free) => Ok(free == 0),
        None => Err(StoreError::Query(format!("IS_FREE_LOCK of node {node}"))),
    }
}

/// Releases the sessions of `node` if its lock is free, holding it meanwhile; `None` when a
/// running server holds it.
pub(super) fn release_dead(conn: &mut Conn, node: &str) -> StoreResult<Option<u64>> {
    if !get_lock(conn, node, 0)? {
        return Ok(None);
    }
    let prefix = sql::node_prefix(node);
    let len = prefix.chars().count() as i64;
    let released = conn
        .exec_drop(sql::RELEASE_NODE, (len, prefix))
        .map(|()| conn.affected_rows())
        .map_err(err);
    // Always let go (a pooled connection must not keep it); if this fails the connection is
    // broken, and the lock went with it.
    if let Err(e) = conn.exec_drop(RELEASE_LOCK, (node,)) {
        log::warn!("cannot release the MySQL lock of node {node}: {e}");
    }
    released.map(Some)
}
