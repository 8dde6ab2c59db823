//! The clusterchat wire protocol, shared by the server, `chatclient`, `chatbench` and the tests.
//!
//! | module | what |
//! | --- | --- |
//! | [`codec`] | finds JSON frames in a byte stream (NUL, newline or nothing between them) |
//! | [`msgid`], [`errno`] | the message ids and error numbers |
//! | [`request`] | every request, typed: parse and encode side by side, and whether it needs a login |
//! | [`reply`] | the replies: LOGIN_ACK (encode and decode, legacy and sync), ACK, ERROR, SYNC_DONE, HISTORY_ACK, MEMBERS_ACK, the one `reqid` echo |
//! | [`envelope`] | a request's routing fields, borrowed (the server's hot path) |
//! | [`client`] | a small blocking client (tests, `chatbench`'s setup, `chatclient`) |
//! | [`clock`] | the `time` format of chat messages |
//! | [`transport`], [`tls`] | the client's byte stream (TCP or TLS) and its TLS set-up |
//!
//! Messages 1–10 are exactly those of the C++ muduo chat server, so its menu-driven client works
//! unchanged. Everything newer (acks, errors, the create-group reply, the message log's
//! receipts, sync, history and member pages) has its own msgid, which the old client ignores.
//! docs/PROTOCOL.md documents every message with an example. This crate knows nothing of the
//! reactor or the server.

pub mod client;
pub mod clock;
pub mod codec;
pub mod envelope;
pub mod errno;
pub mod msgid;
pub mod reply;
pub mod request;
pub mod tls;
pub mod transport;

pub use envelope::{cmid_field, int_field, Envelope};
pub use reply::{
    GroupInfo, GroupSummary, HistoryAck, LoginAck, MemberInfo, MembersAck, SyncLoginAck, UserInfo,
};
pub use request::{Request, RequestKind};

/// A user's id, as the `user` table numbers them (the original's `int`).
pub type UserId = i64;
/// A group's id, as the `allgroup` table numbers them.
pub type GroupId = i64;
