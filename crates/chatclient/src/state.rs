//! The client's view of its session: who is logged in, what the last login reply listed, and
//! which tagged requests still wait for their answer.
//!
//! The main thread turns commands into requests here ([`ClientState::request`]) and the reader
//! thread feeds every frame it receives to [`ClientState::handle`]; both share one `ClientState` behind
//! a mutex, held only while a line is built, never across I/O.

use crate::command::Command;
use crate::render;
use clusterchat_proto::clock::now;
use clusterchat_proto::request::{self, Request};
use clusterchat_proto::{msgid, LoginAck};
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};

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
    next_reqid: u64,
    pending: HashMap<u64, Pending>,
    logins: usize,
    registrations: VecDeque<String>,
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
                    sync: false,
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
            Some(msgid::ACK) | Some(msgid::ERROR) | Some(msgid::CREATE_GROUP_ACK) => frame["reqid"]
                .as_u64()
                .and_then(|r| self.pending.remove(&r)),
            _ => None,
        };
        match id {
            Some(msgid::ONE_CHAT) | Some(msgid::GROUP_CHAT) => {
                render::chat_line(frame).into_iter().collect()
            }
            Some(msgid::LOGIN_ACK) => {
                self.logins = self.logins.saturating_sub(1);
                if errno != 0 {
                    return vec![format!("login failed: {}", render::error_text(frame))];
                }
                let info = LoginAck::decode(frame);
                let lines = render::login_lines(&info);
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
        s.request(&Command::Login {
            id: 1,
            password: "pw".into(),
        });
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
}
