//! The msgid numbers. 1–10 are the original's `EnMsgType`; 11 and up are clusterchat's.

/// `{"msgid":1,"id":..,"password":".."}`: log in.
pub const LOGIN: i64 = 1;
/// Reply to LOGIN, with `friends`, `groups` and `offlinemsg` on success.
pub const LOGIN_ACK: i64 = 2;
/// `{"msgid":3,"id":..}`: log out; the socket stays open.
pub const LOGOUT: i64 = 3;
/// `{"msgid":4,"name":..,"password":..}`: register a new account.
pub const REG: i64 = 4;
/// Reply to REG with the new `id`.
pub const REG_ACK: i64 = 5;
/// One-to-one chat: `{"msgid":6,"id":from,"name":..,"toid":..,"msg":..,"time":..}`.
pub const ONE_CHAT: i64 = 6;
/// `{"msgid":7,"id":..,"friendid":..}`.
pub const ADD_FRIEND: i64 = 7;
/// `{"msgid":8,"id":..,"groupname":..,"groupdesc":..}`.
pub const CREATE_GROUP: i64 = 8;
/// `{"msgid":9,"id":..,"groupid":..}`.
pub const ADD_GROUP: i64 = 9;
/// Group chat: `{"msgid":10,"id":from,"name":..,"groupid":..,"msg":..,"time":..}`.
pub const GROUP_CHAT: i64 = 10;
/// New: reply to CREATE_GROUP with the new `groupid` (always sent).
pub const CREATE_GROUP_ACK: i64 = 11;
/// New: success of a request that carried a `reqid` (echoed), for the msgids the original
/// answers with silence (3, 6, 7, 9, 10).
pub const ACK: i64 = 12;
/// New: a request failed; carries `errno`, `errmsg` and the request's `reqid` if any.
pub const ERROR: i64 = 13;
