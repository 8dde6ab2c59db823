//! The client's view of its session: who is logged in, their friends and groups
//! ([`Contacts`], kept current from the replies), which tagged requests still wait for their
//! answer, and the receipts owed ([`Receipts`]).
//!
//! The main thread turns commands into requests here ([`ClientState::request`]) and the reader
//! thread feeds every frame it receives to [`ClientState::handle`]; both share one
//! `ClientState` behind a mutex, held only while a line is built, never across I/O.
//!
//! The client logs in as a sync session: after the login reply the server sends what was
//! stored while it was away, then SYNC_DONE. A message may come twice (what the last session
//! did not confirm comes again), so a chat frame whose `seq` is not above the highest seen in
//! its conversation is dropped.

use crate::command::{Command, Conv};
use crate::contacts::{Added, Contacts, OFFLINE};
use crate::receipts::Receipts;
use crate::render;
use clusterchat_proto::clock::now;
use clusterchat_proto::request::{self, Request};
use clusterchat_proto::{
    errno, msgid, GroupId, HistoryAck, LoginAck, MembersAck, SyncLoginAck, UserId,
};
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::time::Instant;

/// A request sent with a `reqid` whose reply has not arrived yet: the command it came from,
/// to word the answer and to act on it (update the lists, forget the user after a logout).
#[derive(Debug, Clone)]
struct Pending {
    /// The request's msgid (to match a reply without a `reqid`).
    msgid: i64,
    /// What the user asked for.
    cmd: Command,
}

/// The logged-in user.
#[derive(Debug, Clone)]
struct Me {
    id: UserId,
    name: String,
}

/// The session state shared by the typing thread and the reader thread.
#[derive(Debug, Default)]
pub struct ClientState {
    me: Option<Me>,
    contacts: Contacts,
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

    /// The lines of the commands answered from the client's own lists (`friends`,
    /// `groups`); `None` for any other command.
    pub fn local_lines(&self, cmd: &Command) -> Option<Vec<String>> {
        let c = &self.contacts;
        let lines = match cmd {
            _ if self.me.is_none() && matches!(cmd, Command::Friends | Command::Groups) => {
                vec!["not logged in".to_string()]
            }
            Command::Friends => render::friends_lines(c.friends()),
            Command::Groups => render::groups_lines(c.groups(), c.sizes()),
            _ => return None,
        };
        Some(lines)
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

    /// Whether a reply that changes the prompt is still due: login, register or logout. The
    /// typing thread waits for it before showing the next prompt, so the prompt names the
    /// right user and scripts stay in order.
    pub fn awaiting_account(&self) -> bool {
        self.logins > 0
            || !self.registrations.is_empty()
            || self.pending.values().any(|p| p.msgid == msgid::LOGOUT)
    }

    /// The wire request for `cmd`, or `None` for commands answered locally (help, friends…).
    /// Every request but register and login carries a fresh `reqid`, so the server answers it
    /// with an ACK or ERROR that [`ClientState::handle`] matches back to the command.
    pub fn request(&mut self, cmd: &Command) -> Option<Value> {
        let (id, name) = match &self.me {
            Some(me) => (me.id, me.name.clone()),
            None => (0, String::new()),
        };
        let mut req = match cmd {
            Command::Register { name, password } => {
                self.registrations.push_back(name.clone());
                let req = request::Register {
                    name: name.clone(),
                    password: password.clone().unwrap_or_default(),
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
                    password: password.clone().unwrap_or_default(),
                    sync: true,
                    takeover: *takeover,
                };
                return Some(req.encode());
            }
            Command::Chat { to, text } => request::OneChat {
                id,
                name,
                toid: *to,
                msg: text.clone(),
                time: now(),
                cmid: None,
            }
            .encode(),
            Command::GroupChat { group, text } => request::GroupChat {
                id,
                name,
                groupid: *group,
                msg: text.clone(),
                time: now(),
                cmid: None,
            }
            .encode(),
            Command::AddFriend { id: friend } => request::AddFriend {
                id,
                friendid: *friend,
            }
            .encode(),
            Command::CreateGroup { name: g, desc } => request::CreateGroup {
                id,
                groupname: g.clone(),
                groupdesc: desc.clone(),
            }
            .encode(),
            Command::AddGroup { id: group } => request::AddGroup {
                id,
                groupid: *group,
            }
            .encode(),
            Command::History { conv, count } => {
                let (peer, groupid) = match *conv {
                    Conv::User(u) => (Some(u), None),
                    Conv::Group(g) => (None, Some(g)),
                };
                request::History {
                    peer,
                    groupid,
                    before: None,
                    limit: *count,
                }
                .encode()
            }
            Command::Members { group, after } => request::Members {
                groupid: *group,
                after: *after,
                limit: None,
            }
            .encode(),
            Command::Logout => request::Logout { id }.encode(),
            Command::Friends | Command::Groups | Command::Help | Command::Quit => return None,
        };
        let reqid = self.next_reqid;
        self.next_reqid += 1;
        req["reqid"] = json!(reqid);
        let msgid = req["msgid"].as_i64().unwrap_or(0);
        let cmd = cmd.clone();
        self.pending.insert(reqid, Pending { msgid, cmd });
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
            | Some(msgid::HISTORY_ACK)
            | Some(msgid::MEMBERS_ACK) => frame["reqid"]
                .as_u64()
                .and_then(|r| self.pending.remove(&r)),
            _ => None,
        };
        match id {
            Some(msgid::ONE_CHAT) | Some(msgid::GROUP_CHAT) => {
                if !self.receipts.note(frame, Instant::now()) {
                    return Vec::new();
                }
                if frame["id"].as_i64() != self.me.as_ref().map(|m| m.id) {
                    // During the backlog a message tells its sender's name, not their state.
                    let live = !self.receipts.syncing();
                    self.contacts.seen_chat(frame, live);
                }
                render::chat_line(frame).into_iter().collect()
            }
            // A friend logged in or out: a line when their state changes.
            Some(msgid::PRESENCE) => {
                let (Some(id), Some(state)) = (frame["id"].as_i64(), frame["state"].as_str())
                else {
                    return Vec::new();
                };
                if !self.contacts.seen_presence(id, state) {
                    return Vec::new();
                }
                let who = render::who(id, self.contacts.name_of(id));
                vec![format!("{who} is now {state}")]
            }
            // The answer to the reader thread's heartbeat: nothing to show.
            Some(msgid::PONG) => Vec::new(),
            // A login elsewhere took this session over; the server closes the connection next.
            Some(msgid::KICKED) => {
                self.me = None;
                self.contacts = Contacts::default();
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
                    (Some(ack), Some(conv)) => {
                        for m in &ack.messages {
                            self.contacts.seen_chat(m, false);
                        }
                        render::history_lines(conv, &ack)
                    }
                    _ => vec![format!("server: {frame}")],
                }
            }
            Some(msgid::MEMBERS_ACK) => {
                let pending = pending.or_else(|| self.take_pending(msgid::MEMBERS));
                let Some(ack) = MembersAck::decode(frame) else {
                    return vec![format!("server: {frame}")];
                };
                let first_page = matches!(
                    pending.map(|p| p.cmd),
                    Some(Command::Members { after: None, .. })
                );
                self.contacts.seen_members(&ack, first_page);
                render::members_lines(&ack)
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
                let sizes: HashMap<GroupId, u64> = SyncLoginAck::decode(frame)
                    .groups
                    .iter()
                    .filter(|g| g.members > 0)
                    .map(|g| (g.id, g.members))
                    .collect();
                self.receipts.start(info.id);
                let lines = render::login_lines(&info, &sizes);
                self.contacts = Contacts::from_login(&info, sizes);
                self.me = Some(Me {
                    id: info.id,
                    name: info.name,
                });
                lines
            }
            Some(msgid::REG_ACK) => {
                let name = self.registrations.pop_front().unwrap_or_default();
                let name = crate::escape::name(&name);
                if errno != 0 {
                    return vec![format!("register failed: {}", render::error_text(frame))];
                }
                let id = &frame["id"];
                vec![format!("registered {name} with id {id}; now: login {id}")]
            }
            Some(msgid::CREATE_GROUP_ACK) => {
                let pending = pending.or_else(|| self.take_pending(msgid::CREATE_GROUP));
                if errno != 0 {
                    return vec![failure(pending.as_ref(), frame)];
                }
                let (name, desc) = match pending.map(|p| p.cmd) {
                    Some(Command::CreateGroup { name, desc }) => (name, desc),
                    _ => (String::new(), String::new()),
                };
                let name = frame["groupname"].as_str().map_or(name, str::to_string);
                let desc = frame["groupdesc"].as_str().map_or(desc, str::to_string);
                let Some(group) = frame["groupid"].as_i64() else {
                    return vec![format!("server: {frame}")];
                };
                self.contacts.created_group(group, &name, &desc);
                let name = crate::escape::name(&name);
                vec![format!("ok: created group {name} with id {group}")]
            }
            Some(msgid::ACK) => match pending {
                Some(p) => vec![self.acked(&p.cmd)],
                None => vec!["ok".into()],
            },
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

    /// The server did what `cmd` asked: update the lists and say what happened.
    fn acked(&mut self, cmd: &Command) -> String {
        let who = |c: &Contacts, id| render::who(id, c.name_of(id));
        match *cmd {
            Command::Logout => {
                self.me = None;
                self.contacts = Contacts::default();
                "ok: logged out".into()
            }
            Command::Chat { to, .. } => match self.contacts.friend(to) {
                // Every message is stored; one to an offline user waits for their login.
                Some(f) if f.state == OFFLINE => format!(
                    "ok: stored for {}, who was offline when last seen: they get it at their next login",
                    who(&self.contacts, to)
                ),
                _ => format!("ok: sent to user {to}"),
            },
            Command::GroupChat { group, .. } => format!("ok: sent to group {group}"),
            Command::AddFriend { id } => match self.contacts.add_friend(id) {
                Added::New => format!("ok: added friend {}", who(&self.contacts, id)),
                Added::Already => {
                    format!("ok: {} is already your friend", who(&self.contacts, id))
                }
            },
            Command::AddGroup { id } => match self.contacts.join_group(id) {
                Added::New => format!("ok: joined group {id}"),
                Added::Already => match self.contacts.group(id) {
                    Some(g) if !g.name.is_empty() => {
                        format!(
                            "ok: already a member of group {id} ({})",
                            crate::escape::name(&g.name)
                        )
                    }
                    _ => format!("ok: already a member of group {id}"),
                },
            },
            _ => format!("ok: {}", doing(cmd)),
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

/// How an error line names the command it answers: `chat to user 5`, `addgroup 3`.
fn doing(cmd: &Command) -> String {
    match cmd {
        Command::Chat { to, .. } => format!("chat to user {to}"),
        Command::GroupChat { group, .. } => format!("chat to group {group}"),
        Command::AddFriend { id } => format!("addfriend {id}"),
        Command::CreateGroup { name, .. } => format!("creategroup {name}"),
        Command::AddGroup { id } => format!("addgroup {id}"),
        Command::History {
            conv: Conv::User(u),
            ..
        } => format!("history {u}"),
        Command::History {
            conv: Conv::Group(g),
            ..
        } => format!("history g{g}"),
        Command::Members { group, .. } => format!("members {group}"),
        Command::Logout => "logout".into(),
        Command::Login { id, .. } => format!("login {id}"),
        Command::Register { name, .. } => format!("register {name}"),
        Command::Friends | Command::Groups | Command::Help | Command::Quit => String::new(),
    }
}

/// One error line, naming the command it answers when known.
fn failure(pending: Option<&Pending>, frame: &Value) -> String {
    match pending {
        Some(p) => format!("error ({}): {}", doing(&p.cmd), render::error_text(frame)),
        None => format!("error: {}", render::error_text(frame)),
    }
}

#[cfg(test)]
mod lists_tests;
#[cfg(test)]
mod tests;
