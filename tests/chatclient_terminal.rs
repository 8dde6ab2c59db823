//! `chatclient` in a real terminal (tmux): commands typed at its prompt reach the server, a
//! message that arrives while the user is typing is printed without losing the half-typed
//! line, and control characters in a message are shown escaped, never obeyed.

mod util;

use clusterchat_proto::msgid;
use std::process::Command;
use std::time::{Duration, Instant};
use util::server::{unique, TestServer};

/// A tmux server of its own (`-L`), so the test never touches anyone's sessions.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// Starts `command` in a detached 120x40 session; `None` when tmux is missing (the test
    /// is then skipped, unless `CHAT_REQUIRE_SERVICES=1`).
    fn start(command: &str) -> Option<Tmux> {
        let socket = unique("cc-tmux");
        let started = Command::new("tmux")
            .args([
                "-L",
                &socket,
                "new-session",
                "-d",
                "-s",
                "t",
                "-x",
                "120",
                "-y",
                "40",
            ])
            .arg(command)
            .status();
        match started {
            Ok(s) if s.success() => Some(Tmux { socket }),
            _ if std::env::var("CHAT_REQUIRE_SERVICES").is_ok_and(|v| v == "1") => {
                panic!("tmux is required for this test")
            }
            _ => {
                eprintln!("note: skipping: tmux is not available");
                None
            }
        }
    }

    fn keys(&self, keys: &[&str]) {
        let ok = Command::new("tmux")
            .args(["-L", &self.socket, "send-keys", "-t", "t"])
            .args(keys)
            .status()
            .expect("tmux send-keys")
            .success();
        assert!(ok, "tmux send-keys failed");
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "capture-pane", "-p", "-t", "t"])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits (bounded) until the screen contains `text`; panics with the screen otherwise.
    fn wait_for(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let screen = self.screen();
            if screen.contains(text) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "never saw {text:?} on:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .status();
    }
}

#[test]
fn a_terminal_session_with_chatclient() {
    let srv = TestServer::start();
    let (mut bob, b) = srv.user("bob");
    let command = format!(
        "{} {} {}",
        util::server::workspace_binary("chatclient").display(),
        srv.addr.ip(),
        srv.addr.port()
    );
    let Some(term) = Tmux::start(&command) else {
        return;
    };
    term.wait_for("type `help`");
    term.keys(&["register alice s3cret", "Enter"]);
    let screen = term.wait_for("registered alice with id ");
    let id: i64 = screen
        .split("registered alice with id ")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .and_then(|n| n.trim().parse().ok())
        .expect("the new id on screen");
    term.keys(&[&format!("login {id} s3cret"), "Enter"]);
    term.wait_for(&format!("logged in as alice({id})"));
    term.keys(&[&format!("chat {b} hello from a terminal"), "Enter"]);
    let got = bob.recv_msgid(msgid::ONE_CHAT).unwrap();
    assert_eq!(
        (got["msg"].as_str(), got["id"].as_i64()),
        (Some("hello from a terminal"), Some(id))
    );
    // Alice is half-way through a line when bob's message arrives: both stay intact.
    term.keys(&["chat 1 half-typ"]);
    term.wait_for("half-typ");
    bob.chat(b, id, "interrupting you").unwrap();
    term.wait_for("bob(");
    let screen = term.wait_for("interrupting you");
    assert!(
        screen.contains("> chat 1 half-typ"),
        "the typed line survives:\n{screen}"
    );
    // A message that would clear the screen, retitle the terminal and overwrite its own
    // line is shown as text, and what was on the screen stays.
    bob.chat(b, id, "\x1b[2J\x1b]0;PWNED\x07 hi\rX").unwrap();
    let screen = term.wait_for("says: \\e[2J\\e]0;PWNED\\x07 hi\\rX");
    assert!(
        screen.contains("interrupting you"),
        "not cleared:\n{screen}"
    );
    term.keys(&["C-u", "chat 999999 nobody", "Enter"]);
    term.wait_for("errno 106");
    term.keys(&["quit", "Enter"]);
}
