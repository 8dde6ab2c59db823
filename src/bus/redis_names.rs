//! Every Redis channel and key name of one cluster, built in one place.

/// The names under one prefix (`--channel-prefix`, so that clusters can share a Redis):
/// `<prefix>node:<id>` is a server's channel and, as a key, its liveness key (channels and
/// keys are separate namespaces in Redis); `<prefix>presence` the presence directory.
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

    /// The key a live server refreshes.
    pub(crate) fn node_key(&self, node: &str) -> String {
        format!("{}node:{node}", self.prefix)
    }

    /// The channel a server listens on: [`Self::node_prefix`] and its name.
    pub(crate) fn node_channel(&self, node: &str) -> String {
        format!("{}node:{node}", self.prefix)
    }

    /// What every server's channel starts with.
    pub(crate) fn node_prefix(&self) -> String {
        format!("{}node:", self.prefix)
    }

    /// The presence directory (a hash: user id -> `"<node>/<connection>"`).
    pub(crate) fn directory(&self) -> String {
        format!("{}presence", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::Names;

    #[test]
    fn names_live_under_the_prefix() {
        let names = Names::new("chat:");
        assert_eq!(names.node_key("n1"), "chat:node:n1");
        assert_eq!(names.node_channel("n1"), "chat:node:n1");
        assert!(names.node_channel("n1").starts_with(&names.node_prefix()));
        assert_eq!(names.directory(), "chat:presence");
    }
}
