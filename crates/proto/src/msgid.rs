//! The msgid numbers. 1–10 are the original's `EnMsgType`; 11 and up are clusterchat's.
//! 14–19 are the message log's (receipts, sync, history, member lists); 20–21 the heartbeat;
//! 22 the end of a session taken over by another login; 23 a friend's presence.

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
/// New: `{"msgid":14,"peer":..,"seq":..}` or `{"msgid":14,"groupid":..,"seq":..}`: the
/// client has everything up to `seq` in that conversation (cumulative; moves the cursor of a
/// sync session). With a `reqid`: ACK (12).
pub const RECV: i64 = 14;
/// New: `{"msgid":15,"count":..}`: after a sync login, every stored message after the cursors
/// has been sent (`count` of them).
pub const SYNC_DONE: i64 = 15;
/// New: `{"msgid":16,"peer":..}` or `{"msgid":16,"groupid":..}`, optional `before` (a seq,
/// exclusive) and `limit`: a page of a conversation's stored messages.
pub const HISTORY: i64 = 16;
/// New: reply to HISTORY: `peer` or `groupid`, `messages` (stored chat frames with `seq`,
/// oldest first) and `more`.
pub const HISTORY_ACK: i64 = 17;
/// New: `{"msgid":18,"groupid":..}`, optional `after` (a user id) and `limit`: a page of a
/// group's members.
pub const MEMBERS: i64 = 18;
/// New: reply to MEMBERS: `groupid`, `users` (`{id, name, state, role}`, by id) and `more`.
pub const MEMBERS_ACK: i64 = 19;
/// New: `{"msgid":20}`, optional `reqid`: a liveness probe, logged in or not. A connection
/// that has sent one is closed after `--heartbeat-timeout` seconds without any input.
pub const PING: i64 = 20;
/// New: the answer to PING, echoing its `reqid`.
pub const PONG: i64 = 21;
/// New: `{"msgid":22,"errmsg":..}`: the server ended this session because the account logged
/// in elsewhere with `"takeover":true`; the connection is closed after it.
pub const KICKED: i64 = 22;
/// New: `{"msgid":23,"id":..,"state":"online"|"offline"}`: pushed to sync sessions only when
/// a friend's session starts or ends (best effort; the next LOGIN_ACK corrects a lost one).
pub const PRESENCE: i64 = 23;
