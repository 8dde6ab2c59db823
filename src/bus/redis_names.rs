//! Every Redis channel and key name of one cluster, built in one place.

use clusterchat_proto::UserId;

/// The names under one prefix (`--channel-prefix`, so that clusters can share a Redis):
/// `<prefix>user:<id>` is the channel of a user, `<prefix>node:<id>` a server's liveness key.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    prefix: String,
}

impl Names {
    pub(crate) fn new(prefix: &str) -> Names {
        Names {
            prefix: prefix.to_string(),
        }
    }

    /// The channel a user's messages are published on.
    pub(crate) fn user_channel(&self, user: UserId) -> String {
        format!("{}user:{user}", self.prefix)
    }

    /// The user whose channel this is, if it is a user channel of this cluster.
    pub(crate) fn user_of_channel(&self, channel: &[u8]) -> Option<UserId> {
        std::str::from_utf8(channel)
            .ok()?
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix("user:")?
            .parse()
            .ok()
    }

    /// The key a live server refreshes.
    pub(crate) fn node_key(&self, node: &str) -> String {
        format!("{}node:{node}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::Names;

    #[test]
    fn a_user_channel_reads_back_as_its_user() {
        let names = Names::new("chat:");
        assert_eq!(names.user_channel(42), "chat:user:42");
        assert_eq!(names.user_of_channel(b"chat:user:42"), Some(42));
        assert_eq!(names.user_of_channel(b"other:user:42"), None);
        assert_eq!(names.user_of_channel(b"chat:node:42"), None);
        assert_eq!(names.node_key("n1"), "chat:node:n1");
    }
}
