//! CREATE_GROUP and ADD_GROUP.

use super::context::ChatConn;
use super::names::check_name;
use super::{body, current, ChatService, Handled, Outcome, ServiceError};
use crate::store::{JoinOutcome, StoreError};
use clusterchat_proto::request::{AddGroup, CreateGroup};
use clusterchat_proto::{errno, msgid};
use serde_json::json;

impl ChatService {
    /// Creates a group with the session user as its `creator`; answers with the new id.
    pub(super) fn create_group(&self, conn: &ChatConn, frame: &[u8]) -> Handled {
        let login = current(conn)?;
        let req = body::<CreateGroup>(frame)?;
        let name = check_name(&req.groupname, "group name")
            .map_err(|m| ServiceError::new(errno::BAD_FIELD, m))?;
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
