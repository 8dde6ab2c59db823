//! ADD_FRIEND.

use super::context::ChatConn;
use super::{body, current, ChatService, Handled, Outcome, ServiceError};
use clusterchat_proto::errno;
use clusterchat_proto::request::AddFriend;

impl ChatService {
    /// Adds an existing user (not oneself) to the session user's friends.
    pub(super) fn add_friend(&self, conn: &ChatConn, frame: &[u8]) -> Handled {
        let login = current(conn)?;
        let req = body::<AddFriend>(frame)?;
        if req.friendid == login.id {
            return Err(ServiceError::new(
                errno::FORBIDDEN,
                "you cannot add yourself as a friend",
            ));
        }
        if self.store.user(req.friendid)?.is_none() {
            return Err(ServiceError::new(
                errno::NOT_FOUND,
                format!("no user {}", req.friendid),
            ));
        }
        self.store.add_friend(login.id, req.friendid)?;
        Ok(Outcome::Ack)
    }
}
