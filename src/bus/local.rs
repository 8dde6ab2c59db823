//! The bus of a server that runs alone: no other server exists, every user is connected here
//! or offline.

use super::{Bus, BusError, Inbound};
use clusterchat_proto::UserId;

/// In-process bus: every user is either connected here or offline.
#[derive(Debug)]
pub(crate) struct LocalBus {
    node: String,
}

impl LocalBus {
    /// A bus for the node named `node` (its sessions are the only live ones).
    pub(crate) fn new(node: impl Into<String>) -> Self {
        LocalBus { node: node.into() }
    }
}

impl Bus for LocalBus {
    fn enter(&self, _user: UserId, _session: &str) {}

    fn leave(&self, _user: UserId, _session: &str) {}

    fn publish(&self, _users: &[UserId], _frame: &[u8]) -> Result<bool, BusError> {
        Ok(false)
    }

    fn node_alive(&self, node: &str) -> Result<bool, BusError> {
        Ok(node == self.node)
    }

    fn set_inbound(&self, _inbound: Inbound) {}

    fn is_standalone(&self) -> bool {
        true
    }
}
