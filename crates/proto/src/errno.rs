//! The `errno` values of ERROR replies (LOGIN_ACK and REG_ACK keep the original's 1 and 2).

/// LOGIN_ACK: bad id or password. REG_ACK: registration failed.
pub const BAD_CREDENTIALS: i64 = 1;
/// LOGIN_ACK: the account is already online.
pub const ALREADY_ONLINE: i64 = 2;
/// The frame is not valid JSON, or not a JSON object.
pub const MALFORMED: i64 = 100;
/// `msgid` is missing, not an integer, or not a message the server knows.
pub const UNKNOWN_MSGID: i64 = 101;
/// A field is missing or has the wrong type.
pub const BAD_FIELD: i64 = 102;
/// The frame is larger than the server accepts; the connection is closed after this reply.
pub const TOO_LARGE: i64 = 103;
/// The request needs a logged-in session.
pub const NOT_LOGGED_IN: i64 = 104;
/// The session may not do this (not a member of the group, acting for another user…).
pub const FORBIDDEN: i64 = 105;
/// The user or group named does not exist.
pub const NOT_FOUND: i64 = 106;
/// The connection is already logged in.
pub const ALREADY_LOGGED_IN: i64 = 107;
/// The database or the message bus failed; the request may be retried.
pub const UNAVAILABLE: i64 = 108;
/// Too many attempts or requests (failed logins, registrations, chat messages per second):
/// `errmsg` says when to retry. Nothing of the refused request was done.
pub const RATE_LIMITED: i64 = 109;
