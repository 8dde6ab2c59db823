//! CREATE_GROUP and ADD_GROUP.

use super::context::ChatConn;
use super::{body, current, ChatService, Handled, Outcome, ServiceError};
use crate::store::{JoinOutcome, StoreError};
use clusterchat_proto::request::{AddGroup, CreateGroup};
use clusterchat_proto::{errno, msgid};
use serde_json::json;

/// Longest group name, in characters (the original's `VARCHAR(50)`).
const MAX_GROUP_NAME: usize = 50;

impl ChatService {
    /// Creates a group with the session user as its `creator`; answers with the new id.
    pub(super) fn create_group(&self, conn: &ChatConn, frame: &[u8]) -> Handled {
        let login = current(conn)?;
        let req = body::<CreateGroup>(frame)?;
        let name = req.groupname.trim();
        if name.is_empty() || name.chars().count() > MAX_GROUP_NAME {
            return Err(ServiceError::new(
                errno::BAD_FIELD,
                format!("the group name must have 1 to {MAX_GROUP_NAME} characters"),
            ));
        }
        let id = match self.store.create_group(login.id, name, &req.groupdesc) {
            Ok(id) => id,
            Err(StoreError::Conflict(_)) => {
                return Err(ServiceError::new(
                    errno::FORBIDDEN,
                    format!("a group named {name:?} exists already"),
                ))
            }
            Err(e) => return Err(e.into()),
        };
        Ok(Outcome::Reply(json!({
            "msgid": msgid::CREATE_GROUP_ACK, "errno": 0, "groupid": id,
            "groupname": name, "groupdesc": req.groupdesc,
        })))
    }

    /// Joins an existing group as a `normal` member (joining twice is fine).
    pub(super) fn join_group(&self, conn: &ChatConn, frame: &[u8]) -> Handled {
        let login = current(conn)?;
        let req = body::<AddGroup>(frame)?;
        match self.store.join_group(login.id, req.groupid)? {
            JoinOutcome::Joined | JoinOutcome::AlreadyMember => Ok(Outcome::Ack),
            JoinOutcome::NoSuchGroup => Err(ServiceError::new(
                errno::NOT_FOUND,
                format!("no group {}", req.groupid),
            )),
        }
    }
}
