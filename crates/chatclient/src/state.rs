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
use crate::receipts::Receipts;
use crate::render;
use clusterchat_proto::clock::now;
use clusterchat_proto::request::{self, Request};
use clusterchat_proto::{msgid, GroupId, HistoryAck, LoginAck, SyncLoginAck};
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::time::Instant;

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
            Some(me) => format!("{}({})> ", me.name, me.id),
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
            Command::Login { id, password } => {
                self.logins += 1;
                let req = request::Login {
                    id: *id,
                    password: password.clone(),
                    sync: true,
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
                    return vec![format!("login failed: {}", render::error_text(frame))];
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
mod tests;
