//! The client's view of its session: who is logged in, what the last login reply listed,
//! which tagged requests still wait for their answer, and per conversation the highest `seq`
//! seen and not yet confirmed.
//!
//! The main thread turns commands into requests here ([`ClientState::request`]) and the reader
//! thread feeds every frame it receives to [`ClientState::handle`]; both share one
//! `ClientState` behind a mutex, held only while a line is built, never across I/O.
//!
//! The client logs in as a sync session: after the login reply the server sends what was
//! stored while it was away, then SYNC_DONE. A message may come twice (what the last session
//! did not confirm comes again), so a chat frame whose `seq` is not above the highest seen in
//! its conversation is dropped. Receipts (RECV) confirm, per conversation, the highest seq
//! seen: all at once after SYNC_DONE, then in batches ([`ClientState::receipts_due`]).

use crate::command::{Command, Conv};
use crate::render;
use clusterchat_proto::clock::now;
use clusterchat_proto::request::{self, Request};
use clusterchat_proto::{errno, msgid, GroupId, HistoryAck, LoginAck, SyncLoginAck, UserId};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

/// The longest a seen message waits for its receipt (once the sync backlog is done).
pub const RECEIPT_DELAY: Duration = Duration::from_millis(200);
/// This many seen messages are confirmed at once, without waiting for [`RECEIPT_DELAY`].
pub const RECEIPT_BATCH: usize = 100;

/// A request sent with a `reqid` whose ACK or ERROR has not arrived yet.
#[derive(Debug, Clone)]
struct Pending {
    /// The request's msgid (to act on the ack, e.g. forget the user after a logout).
    msgid: i64,
    /// What to say when it succeeds ("sent to user 5").
    done: String,
    /// What to name it when it fails ("chat to user 5").
    doing: String,
}

/// Per conversation, the highest seq seen (to drop duplicates) and the highest seq not yet
/// confirmed with RECV; pure, so its timing is tested with made-up instants.
#[derive(Debug, Default)]
struct Receipts {
    /// The user these conversations belong to (another login starts afresh).
    owner: Option<UserId>,
    /// Highest seq seen per conversation.
    seen: HashMap<Conv, i64>,
    /// Highest seq seen but not yet confirmed, per conversation.
    unconfirmed: BTreeMap<Conv, i64>,
    /// Messages seen since the last receipts.
    count: usize,
    /// When the oldest unconfirmed message was seen.
    since: Option<Instant>,
    /// Between a login reply and SYNC_DONE: receipts wait for the end of the backlog.
    syncing: bool,
    /// SYNC_DONE arrived: confirm everything at the next chance.
    flush: bool,
}

impl Receipts {
    /// A login of `user` succeeded: its backlog follows.
    fn start(&mut self, user: UserId) {
        if self.owner != Some(user) {
            *self = Receipts {
                owner: Some(user),
                ..Receipts::default()
            };
        }
        self.syncing = true;
    }

    /// The conversation a chat frame belongs to, for the logged-in user.
    fn conv_of(&self, frame: &Value) -> Option<Conv> {
        match frame["msgid"].as_i64()? {
            msgid::GROUP_CHAT => Some(Conv::Group(frame["groupid"].as_i64()?)),
            msgid::ONE_CHAT => {
                let from = frame["id"].as_i64()?;
                if Some(from) == self.owner {
                    Some(Conv::User(frame["toid"].as_i64()?))
                } else {
                    Some(Conv::User(from))
                }
            }
            _ => None,
        }
    }

    /// Whether a chat frame is new (to be shown); notes its seq if it is. Frames without a
    /// seq (an older server) are always new.
    fn note(&mut self, frame: &Value, now: Instant) -> bool {
        let (Some(conv), Some(seq)) = (self.conv_of(frame), frame["seq"].as_i64()) else {
            return true;
        };
        let seen = self.seen.entry(conv).or_insert(0);
        if seq <= *seen {
            return false;
        }
        *seen = seq;
        self.unconfirmed.insert(conv, seq);
        self.count += 1;
        self.since.get_or_insert(now);
        true
    }

    /// SYNC_DONE: the backlog is over; what it brought is confirmed at once.
    fn sync_done(&mut self) {
        self.syncing = false;
        self.flush = !self.unconfirmed.is_empty();
    }

    /// The receipts to send now: none during the backlog; after it, everything at once, then
    /// when [`RECEIPT_BATCH`] messages wait or the oldest has waited [`RECEIPT_DELAY`].
    fn due(&mut self, now: Instant) -> Vec<Value> {
        if self.syncing || self.unconfirmed.is_empty() {
            return Vec::new();
        }
        let waited = self
            .since
            .is_some_and(|t| now.saturating_duration_since(t) >= RECEIPT_DELAY);
        if self.flush || waited || self.count >= RECEIPT_BATCH {
            self.take()
        } else {
            Vec::new()
        }
    }

    /// Every receipt owed, now (before logging out or quitting).
    fn take(&mut self) -> Vec<Value> {
        self.count = 0;
        self.since = None;
        self.flush = false;
        std::mem::take(&mut self.unconfirmed)
            .into_iter()
            .map(|(conv, seq)| {
                let (peer, groupid) = match conv {
                    Conv::User(u) => (Some(u), None),
                    Conv::Group(g) => (None, Some(g)),
                };
                request::Recv { peer, groupid, seq }.encode()
            })
            .collect()
    }
}

/// ClientState state shared by the typing thread and the reader thread.
#[derive(Debug, Default)]
pub struct ClientState {
    me: Option<LoginAck>,
    /// Member counts of the groups, as a sync login reply lists them (instead of members).
    group_sizes: HashMap<GroupId, u64>,
    next_reqid: u64,
    pending: HashMap<u64, Pending>,
    logins: usize,
    registrations: VecDeque<String>,
    receipts: Receipts,
}

impl ClientState {
    /// A session that is not logged in.
    pub fn new() -> Self {
        ClientState {
            next_reqid: 1,
            ..ClientState::default()
        }
    }

    /// The logged-in user as the last successful login reply described them.
    pub fn me(&self) -> Option<&LoginAck> {
        self.me.as_ref()
    }

    /// The member counts of the groups the last (sync) login listed.
    pub fn group_sizes(&self) -> &HashMap<GroupId, u64> {
        &self.group_sizes
    }

    /// The RECV frames to send now (see [`Receipts`]); the reader thread asks after every
    /// frame and every read timeout.
    pub fn receipts_due(&mut self, now: Instant) -> Vec<Value> {
        self.receipts.due(now)
    }

    /// Every RECV frame owed, at once: before a logout or quitting.
    pub fn take_receipts(&mut self) -> Vec<Value> {
        self.receipts.take()
    }

    /// The prompt: shows who is logged in, so the user always knows as whom they type.
    pub fn prompt(&self) -> String {
        match &self.me {
            Some(me) => format!("{}({})> ", crate::escape::name(&me.name), me.id),
            None => "> ".to_string(),
        }
    }

    /// Whether some request still waits for its reply (used to linger briefly before quitting
    /// so that piped input sees its answers).
    pub fn awaiting(&self) -> bool {
        !self.pending.is_empty() || self.logins > 0 || !self.registrations.is_empty()
    }

    /// Whether a login or register reply is still due. The typing thread waits for it before
    /// showing the next prompt, so the prompt names the new user and scripts stay in order.
    pub fn awaiting_account(&self) -> bool {
        self.logins > 0 || !self.registrations.is_empty()
    }

    /// The wire request for `cmd`, or `None` for commands answered locally (help, friends…).
    /// Every request but register and login carries a fresh `reqid`, so the server answers it
    /// with an ACK or ERROR that [`ClientState::handle`] matches back to the command.
    pub fn request(&mut self, cmd: &Command) -> Option<Value> {
        let (id, name) = match &self.me {
            Some(me) => (me.id, me.name.clone()),
            None => (0, String::new()),
        };
        let (mut req, done, doing) = match cmd {
            Command::Register { name, password } => {
                self.registrations.push_back(name.clone());
                let req = request::Register {
                    name: name.clone(),
                    password: password.clone(),
                };
                return Some(req.encode());
            }
            Command::Login {
                id,
                password,
                takeover,
            } => {
                self.logins += 1;
                let req = request::Login {
                    id: Some(*id),
                    name: None,
                    password: password.clone(),
                    sync: true,
                    takeover: *takeover,
                };
                return Some(req.encode());
            }
            Command::Chat { to, text } => (
                request::OneChat {
                    id,
                    name,
                    toid: *to,
                    msg: text.clone(),
                    time: now(),
                    cmid: None,
                }
                .encode(),
                format!("sent to user {to}"),
                format!("chat to user {to}"),
            ),
            Command::GroupChat { group, text } => (
                request::GroupChat {
                    id,
                    name,
                    groupid: *group,
                    msg: text.clone(),
                    time: now(),
                    cmid: None,
                }
                .encode(),
                format!("sent to group {group}"),
                format!("chat to group {group}"),
            ),
            Command::AddFriend { id: friend } => (
                request::AddFriend {
                    id,
                    friendid: *friend,
                }
                .encode(),
                format!("added friend {friend}"),
                format!("addfriend {friend}"),
            ),
            Command::CreateGroup { name: g, desc } => (
                request::CreateGroup {
                    id,
                    groupname: g.clone(),
                    groupdesc: desc.clone(),
                }
                .encode(),
                format!("created group {g}"),
                format!("creategroup {g}"),
            ),
            Command::AddGroup { id: group } => (
                request::AddGroup {
                    id,
                    groupid: *group,
                }
                .encode(),
                format!("joined group {group}"),
                format!("addgroup {group}"),
            ),
            Command::History { conv, count } => {
                let (peer, groupid) = match *conv {
                    Conv::User(u) => (Some(u), None),
                    Conv::Group(g) => (None, Some(g)),
                };
                let arg = match conv {
                    Conv::User(u) => u.to_string(),
                    Conv::Group(g) => format!("g{g}"),
                };
                (
                    request::History {
                        peer,
                        groupid,
                        before: None,
                        limit: *count,
                    }
                    .encode(),
                    format!("history of {conv}"),
                    format!("history {arg}"),
                )
            }
            Command::Logout => (
                request::Logout { id }.encode(),
                "logged out".to_string(),
                "logout".to_string(),
            ),
            Command::Friends | Command::Groups | Command::Help | Command::Quit => return None,
        };
        let reqid = self.next_reqid;
        self.next_reqid += 1;
        req["reqid"] = json!(reqid);
        let msgid = req["msgid"].as_i64().unwrap_or(0);
        self.pending.insert(reqid, Pending { msgid, done, doing });
        Some(req)
    }

    /// Updates the session from one server frame and returns the lines to show for it.
    pub fn handle(&mut self, frame: &Value) -> Vec<String> {
        let errno = frame["errno"].as_i64().unwrap_or(0);
        let id = frame["msgid"].as_i64();
        // Only replies settle a request: a forwarded chat may carry its sender's own reqid.
        let pending = match id {
            Some(msgid::ACK)
            | Some(msgid::ERROR)
            | Some(msgid::CREATE_GROUP_ACK)
            | Some(msgid::HISTORY_ACK) => frame["reqid"]
                .as_u64()
                .and_then(|r| self.pending.remove(&r)),
            _ => None,
        };
        match id {
            Some(msgid::ONE_CHAT) | Some(msgid::GROUP_CHAT) => {
                if !self.receipts.note(frame, Instant::now()) {
                    return Vec::new();
                }
                render::chat_line(frame).into_iter().collect()
            }
            // The answer to the reader thread's heartbeat: nothing to show.
            Some(msgid::PONG) => Vec::new(),
            // A login elsewhere took this session over; the server closes the connection next.
            Some(msgid::KICKED) => {
                self.me = None;
                self.group_sizes.clear();
                vec![format!("kicked: {}", render::kicked_text(frame))]
            }
            Some(msgid::SYNC_DONE) => {
                self.receipts.sync_done();
                let count = frame["count"].as_u64().unwrap_or(0);
                render::sync_done_line(count).into_iter().collect()
            }
            Some(msgid::HISTORY_ACK) => {
                if pending.is_none() {
                    self.take_pending(msgid::HISTORY);
                }
                let ack = HistoryAck::decode(frame);
                let conv = ack.as_ref().and_then(|a| match (a.peer, a.groupid) {
                    (Some(peer), _) => Some(Conv::User(peer)),
                    (None, Some(group)) => Some(Conv::Group(group)),
                    (None, None) => None,
                });
                match (ack, conv) {
                    (Some(ack), Some(conv)) => render::history_lines(conv, &ack),
                    _ => vec![format!("server: {frame}")],
                }
            }
            Some(msgid::LOGIN_ACK) => {
                self.logins = self.logins.saturating_sub(1);
                if errno != 0 {
                    let mut lines = vec![format!("login failed: {}", render::error_text(frame))];
                    if errno == errno::ALREADY_ONLINE {
                        lines.push(
                            "(to end that session and log in here: login <id> <password> --takeover)"
                                .into(),
                        );
                    }
                    return lines;
                }
                let info = LoginAck::decode(frame);
                self.group_sizes = SyncLoginAck::decode(frame)
                    .groups
                    .iter()
                    .filter(|g| g.members > 0)
                    .map(|g| (g.id, g.members))
                    .collect();
                self.receipts.start(info.id);
                let lines = render::login_lines(&info, &self.group_sizes);
                self.me = Some(info);
                lines
            }
            Some(msgid::REG_ACK) => {
                let name = self.registrations.pop_front().unwrap_or_default();
                let name = crate::escape::name(&name);
                if errno != 0 {
                    return vec![format!("register failed: {}", render::error_text(frame))];
                }
                let id = &frame["id"];
                vec![format!(
                    "registered {name} with id {id}; now: login {id} <password>"
                )]
            }
            Some(msgid::CREATE_GROUP_ACK) => {
                let pending = pending.or_else(|| self.take_pending(msgid::CREATE_GROUP));
                if errno != 0 {
                    return vec![failure(pending.as_ref(), frame)];
                }
                let done = pending.map_or("created group".into(), |p| p.done);
                vec![format!("ok: {done} with id {}", frame["groupid"])]
            }
            Some(msgid::ACK) => {
                let Some(p) = pending else {
                    return vec!["ok".into()];
                };
                if p.msgid == msgid::LOGOUT {
                    self.me = None;
                    self.group_sizes.clear();
                }
                vec![format!("ok: {}", p.done)]
            }
            Some(msgid::ERROR) => {
                if pending.is_none() {
                    match frame["request"].as_i64() {
                        Some(msgid::LOGIN) => self.logins = self.logins.saturating_sub(1),
                        Some(msgid::REG) => drop(self.registrations.pop_front()),
                        _ => {}
                    }
                }
                vec![failure(pending.as_ref(), frame)]
            }
            _ => vec![format!("server: {frame}")],
        }
    }

    /// Forgets the oldest pending request of this msgid (for a reply without a `reqid`).
    fn take_pending(&mut self, msgid: i64) -> Option<Pending> {
        let reqid = self
            .pending
            .iter()
            .filter(|(_, p)| p.msgid == msgid)
            .map(|(r, _)| *r)
            .min()?;
        self.pending.remove(&reqid)
    }
}

/// One error line, naming the command it answers when known.
fn failure(pending: Option<&Pending>, frame: &Value) -> String {
    match pending {
        Some(p) => format!("error ({}): {}", p.doing, render::error_text(frame)),
        None => format!("error: {}", render::error_text(frame)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logged_in() -> ClientState {
        let mut s = ClientState::new();
        let req = s
            .request(&Command::Login {
                id: 1,
                password: "pw".into(),
                takeover: false,
            })
            .unwrap();
        assert_eq!(req, json!({"msgid":1,"id":1,"password":"pw","sync":true}));
        assert!(s.awaiting() && s.awaiting_account());
        let lines = s.handle(&json!({"msgid":2,"errno":0,"id":1,"name":"alice"}));
        assert_eq!(lines[0], "logged in as alice(1)");
        assert!(!s.awaiting() && !s.awaiting_account());
        s
    }

    #[test]
    fn requests_carry_reqid_and_the_logged_in_id() {
        let mut s = logged_in();
        assert_eq!(s.prompt(), "alice(1)> ");
        let req = s
            .request(&Command::Chat {
                to: 5,
                text: "hi".into(),
            })
            .unwrap();
        assert_eq!(req["msgid"], 6);
        assert_eq!(
            (req["id"].as_i64(), req["toid"].as_i64()),
            (Some(1), Some(5))
        );
        assert_eq!(
            (req["name"].as_str(), req["msg"].as_str()),
            (Some("alice"), Some("hi"))
        );
        let reqid = req["reqid"].clone();
        assert!(s.awaiting());
        let ack = json!({"msgid":12,"errno":0,"request":6,"reqid":reqid});
        assert_eq!(s.handle(&ack), ["ok: sent to user 5"]);
        assert!(!s.awaiting());
        assert_eq!(s.request(&Command::Friends), None);
    }

    #[test]
    fn errors_name_the_failed_command() {
        let mut s = ClientState::new();
        let req = s.request(&Command::AddGroup { id: 9 }).unwrap();
        let err = json!({"msgid":13,"errno":104,"errmsg":"not logged in","request":9,
                         "reqid":req["reqid"]});
        assert_eq!(
            s.handle(&err),
            ["error (addgroup 9): not logged in (errno 104)"]
        );
        s.request(&Command::Login {
            id: 1,
            password: "bad".into(),
            takeover: false,
        });
        let bad = json!({"msgid":2,"errno":1,"errmsg":"id or password is invalid!"});
        assert_eq!(
            s.handle(&bad),
            ["login failed: id or password is invalid! (errno 1)"]
        );
        assert!(s.me().is_none() && !s.awaiting());
    }

    #[test]
    fn register_create_group_and_logout() {
        let mut s = ClientState::new();
        s.request(&Command::Register {
            name: "bob".into(),
            password: "pw".into(),
        });
        assert_eq!(
            s.handle(&json!({"msgid":5,"errno":0,"id":7})),
            ["registered bob with id 7; now: login 7 <password>"]
        );
        let mut s = logged_in();
        s.request(&Command::CreateGroup {
            name: "rust".into(),
            desc: "d".into(),
        });
        assert_eq!(
            s.handle(&json!({"msgid":11,"errno":0,"groupid":4})),
            ["ok: created group rust with id 4"]
        );
        let req = s.request(&Command::Logout).unwrap();
        assert_eq!(req["msgid"], 3);
        s.handle(&json!({"msgid":12,"errno":0,"request":3,"reqid":req["reqid"]}));
        assert!(s.me().is_none());
        assert_eq!(s.prompt(), "> ");
    }

    #[test]
    fn incoming_chat_and_unknown_frames() {
        let mut s = ClientState::new();
        let req = s.request(&Command::AddGroup { id: 3 }).unwrap();
        let chat = json!({"msgid":10,"id":2,"name":"bob","groupid":3,"msg":"yo","time":"t",
                          "reqid":req["reqid"]});
        assert_eq!(s.handle(&chat), ["[t] group 3: bob(2) says: yo"]);
        assert!(
            s.awaiting(),
            "the sender's reqid must not settle our request"
        );
        assert_eq!(s.handle(&json!({"msgid":99})), [r#"server: {"msgid":99}"#]);
    }

    fn chat(from: i64, to: i64, seq: i64, msg: &str) -> Value {
        json!({"msgid":6,"id":from,"name":"u","toid":to,"msg":msg,"time":"t","seq":seq})
    }

    fn group(g: i64, seq: i64, msg: &str) -> Value {
        json!({"msgid":10,"id":2,"name":"bob","groupid":g,"msg":msg,"time":"t","seq":seq})
    }

    /// A logged-in state whose sync backlog is over and confirmed.
    fn synced() -> ClientState {
        let mut s = logged_in();
        s.handle(&json!({"msgid":15,"count":0}));
        assert!(s.receipts_due(Instant::now()).is_empty());
        s
    }

    #[test]
    fn duplicates_are_dropped_by_conversation_and_seq() {
        let mut s = logged_in();
        assert_eq!(s.handle(&chat(2, 1, 1, "a")), ["[t] u(2) says: a"]);
        assert_eq!(s.handle(&chat(2, 1, 2, "b")), ["[t] u(2) says: b"]);
        assert!(s.handle(&chat(2, 1, 2, "b")).is_empty(), "same seq again");
        assert!(s.handle(&chat(2, 1, 1, "a")).is_empty(), "an older seq");
        // The same seq in other conversations is new: another user, a group, and our own
        // message to user 3 (named by its toid).
        assert_eq!(s.handle(&chat(3, 1, 2, "c")).len(), 1);
        assert_eq!(s.handle(&group(7, 2, "d")).len(), 1);
        assert_eq!(s.handle(&chat(1, 3, 3, "mine")), ["[t] u(1) says: mine"]);
        assert!(
            s.handle(&chat(3, 1, 3, "c")).is_empty(),
            "user 3's seq 3 is seen"
        );
        assert!(s.handle(&group(7, 1, "old")).is_empty());
        // A frame without seq (an older server) is always shown.
        let plain = json!({"msgid":6,"id":2,"name":"u","toid":1,"msg":"x","time":"t"});
        assert_eq!(s.handle(&plain).len(), 1);
        assert_eq!(s.handle(&plain).len(), 1);
    }

    #[test]
    fn receipts_wait_for_sync_done_then_confirm_the_highest_seq_per_conversation() {
        let mut s = logged_in();
        s.handle(&chat(2, 1, 4, "a"));
        s.handle(&chat(2, 1, 5, "b"));
        s.handle(&group(7, 9, "c"));
        s.handle(&chat(1, 3, 2, "mine"));
        let later = Instant::now() + Duration::from_secs(5);
        assert!(s.receipts_due(later).is_empty(), "not during the backlog");
        assert_eq!(
            s.handle(&json!({"msgid":15,"count":4})),
            ["4 messages while you were away"]
        );
        assert_eq!(
            s.receipts_due(Instant::now()),
            [
                json!({"msgid":14,"peer":2,"seq":5}),
                json!({"msgid":14,"peer":3,"seq":2}),
                json!({"msgid":14,"groupid":7,"seq":9}),
            ]
        );
        assert!(s.receipts_due(later).is_empty(), "nothing new");
    }

    #[test]
    fn receipts_are_batched_by_time_and_count() {
        let mut s = synced();
        let t0 = Instant::now();
        s.handle(&chat(2, 1, 1, "a"));
        s.handle(&chat(2, 1, 2, "b"));
        assert!(s.receipts_due(t0).is_empty(), "too early");
        assert_eq!(
            s.receipts_due(Instant::now() + RECEIPT_DELAY),
            [json!({"msgid":14,"peer":2,"seq":2})]
        );
        for seq in 3..3 + RECEIPT_BATCH as i64 - 1 {
            s.handle(&group(7, seq, "m"));
        }
        assert!(s.receipts_due(Instant::now()).is_empty(), "one short");
        s.handle(&group(7, 200, "m"));
        assert_eq!(
            s.receipts_due(Instant::now()),
            [json!({"msgid":14,"groupid":7,"seq":200})]
        );
        // Logging out (or quitting) takes whatever is owed at once.
        s.handle(&chat(2, 1, 3, "c"));
        assert_eq!(s.take_receipts(), [json!({"msgid":14,"peer":2,"seq":3})]);
        assert!(s.take_receipts().is_empty());
    }

    #[test]
    fn a_login_of_another_user_forgets_what_was_seen() {
        let mut s = synced();
        s.handle(&chat(2, 1, 1, "a"));
        s.take_receipts();
        // alice again (same connection, after a logout): seq 1 was seen.
        s.handle(&json!({"msgid":2,"errno":0,"id":1,"name":"alice"}));
        assert!(s.handle(&chat(2, 1, 1, "a")).is_empty());
        // bob: a conversation of his own with user 2.
        s.handle(&json!({"msgid":2,"errno":0,"id":5,"name":"bob"}));
        assert_eq!(s.handle(&chat(2, 5, 1, "a")).len(), 1);
    }

    #[test]
    fn sync_done_with_nothing_says_nothing() {
        let mut s = logged_in();
        assert!(s.handle(&json!({"msgid":15,"count":0})).is_empty());
        assert_eq!(
            s.handle(&json!({"msgid":15,"count":1})),
            ["1 message while you were away"]
        );
    }

    #[test]
    fn an_online_account_hints_at_takeover_and_a_kick_ends_the_session() {
        let mut s = ClientState::new();
        let req = s
            .request(&Command::Login {
                id: 1,
                password: "pw".into(),
                takeover: true,
            })
            .unwrap();
        assert_eq!(req["takeover"], true);
        let online = json!({"msgid":2,"errno":2,"errmsg":"this account is using, input another!"});
        let lines = s.handle(&online);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[1].contains("--takeover"), "{lines:?}");
        let mut s = logged_in();
        let kicked = json!({"msgid":22,"errmsg":"logged in elsewhere"});
        assert_eq!(s.handle(&kicked), ["kicked: logged in elsewhere"]);
        assert!(s.me().is_none());
        assert_eq!(s.prompt(), "> ");
    }

    #[test]
    fn a_pong_is_not_shown() {
        let mut s = logged_in();
        assert!(s.handle(&json!({"msgid":21})).is_empty());
        assert!(ClientState::new().handle(&json!({"msgid":21})).is_empty());
    }

    #[test]
    fn a_sync_login_reply_keeps_the_group_sizes() {
        let mut s = ClientState::new();
        s.request(&Command::Login {
            id: 1,
            password: "pw".into(),
            takeover: false,
        });
        let reply = json!({"msgid":2,"errno":0,"id":1,"name":"alice","friends":[],
            "groups":[r#"{"groupdesc":"d","groupname":"rust","id":3,"members":12}"#],
            "offlinemsg":[]});
        let lines = s.handle(&reply);
        assert_eq!(lines[lines.len() - 2..], ["  3 rust: d", "    12 members"]);
        assert_eq!(s.group_sizes().get(&3), Some(&12));
    }

    #[test]
    fn history_requests_and_replies() {
        let mut s = synced();
        let req = s
            .request(&Command::History {
                conv: Conv::Group(3),
                count: Some(2),
            })
            .unwrap();
        assert_eq!(
            (
                req["msgid"].as_i64(),
                req["groupid"].as_i64(),
                req["limit"].as_i64()
            ),
            (Some(16), Some(3), Some(2))
        );
        assert!(req.get("peer").is_none() && req.get("before").is_none());
        let reply = json!({"msgid":17,"groupid":3,"reqid":req["reqid"],"more":false,
            "messages":[group(3, 8, "hi")]});
        assert_eq!(
            s.handle(&reply),
            ["history of group 3 (1):", "  [t] group 3: bob(2) says: hi"]
        );
        assert!(!s.awaiting());
        // History is not the live stream: it neither hides nor confirms live messages.
        assert_eq!(s.handle(&group(3, 8, "hi")).len(), 1);

        let req = s
            .request(&Command::History {
                conv: Conv::User(2),
                count: None,
            })
            .unwrap();
        assert_eq!(req["peer"], 2);
        assert!(req.get("limit").is_none());
        let err = json!({"msgid":13,"errno":105,"errmsg":"not a member","request":16,
                         "reqid":req["reqid"]});
        assert_eq!(
            s.handle(&err),
            ["error (history 2): not a member (errno 105)"]
        );
    }
}
