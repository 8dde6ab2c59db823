//! `chatclient` in a real terminal (tmux): commands typed at its prompt reach the server, and
//! a message that arrives while the user is typing is printed without losing the half-typed
//! line; control characters in a message are shown escaped, never obeyed; passwords are asked
//! for without echo and never kept in the line history, which outlives the client; the friends
//! and groups lists follow what the session did; answers say "already" and "stored"; a bad id
//! is named; the prompt follows a logout.

mod util;

use clusterchat_proto::msgid;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use util::server::{unique, TestServer};

/// A tmux server of its own (`-L`), so the test never touches anyone's sessions.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// Starts `chatclient` for `srv` in a detached 120x40 session, with `data_home` as its
    /// `XDG_DATA_HOME` (where it keeps its line history); `None` when tmux is missing (the
    /// test is then skipped, unless `CHAT_REQUIRE_SERVICES=1`).
    fn start(srv: &TestServer, data_home: &Path) -> Option<Tmux> {
        let command = format!(
            "{} {} {}",
            util::server::workspace_binary("chatclient").display(),
            srv.addr.ip(),
            srv.addr.port()
        );
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
                "-e",
            ])
            .arg(format!("XDG_DATA_HOME={}", data_home.display()))
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
        self.wait_until(text, |screen| screen.contains(text))
    }

    /// Waits (bounded) until the last non-empty line of the screen is `line`.
    fn wait_for_last_line(&self, line: &str) -> String {
        self.wait_until(line, |screen| {
            screen.lines().rev().find(|l| !l.trim().is_empty()) == Some(line)
        })
    }

    fn wait_until(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let screen = self.screen();
            if done(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "never saw {what:?} on:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Types a line and presses Enter.
    fn line(&self, line: &str) {
        self.keys(&["-l", line]);
        self.keys(&["Enter"]);
    }

    /// Waits until the client has exited (its pane is gone).
    fn wait_exit(&self) {
        self.wait_until("the client to exit", |_| {
            !Command::new("tmux")
                .args(["-L", &self.socket, "has-session", "-t", "t"])
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
    }
}

/// The id in `registered NAME with id ID; ...` on the screen.
fn registered_id(screen: &str, name: &str) -> i64 {
    let prefix = format!("registered {name} with id ");
    screen
        .split(&prefix)
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .and_then(|n| n.trim().parse().ok())
        .expect("the new id on screen")
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

#[test]
fn a_terminal_session_with_chatclient() {
    let srv = TestServer::start();
    let (mut bob, b) = srv.user("bob");
    let data = tempfile::tempdir().unwrap();
    let Some(term) = Tmux::start(&srv, data.path()) else {
        return;
    };
    term.wait_for("type `help`");
    term.keys(&["register alice s3cret", "Enter"]);
    let id = registered_id(&term.wait_for("registered alice with id "), "alice");
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

#[test]
fn passwords_are_asked_without_echo_and_never_kept_in_the_line_history() {
    let srv = TestServer::start();
    let data = tempfile::tempdir().unwrap();
    let Some(term) = Tmux::start(&srv, data.path()) else {
        return;
    };
    term.wait_for("type `help`");
    // Without a password on the line, it is asked for twice, without echo.
    term.line("register alice");
    term.wait_for("password for alice:");
    term.line("Hidden-pw1");
    term.wait_for("the same again:");
    term.line("Hidden-pw1");
    let screen = term.wait_for("registered alice with id ");
    let id = registered_id(&screen, "alice");
    term.line(&format!("login {id}"));
    term.wait_for(&format!("password for user {id}:"));
    term.line("Hidden-pw1");
    let screen = term.wait_for(&format!("logged in as alice({id})"));
    assert!(!screen.contains("Hidden-pw1"), "echoed:\n{screen}");
    term.line("logout");
    term.wait_for("ok: logged out");
    // A password given on the line works, and that line is not kept.
    term.line(&format!("login {id} Hidden-pw1"));
    // The new prompt, not the one above that still shows `logout`: a key pressed while the
    // client is between prompts can be lost.
    term.wait_for_last_line(&format!("alice({id})>"));
    term.keys(&["Up"]);
    term.wait_for_last_line(&format!("alice({id})> logout"));
    term.keys(&["Up"]);
    term.wait_for_last_line(&format!("alice({id})> login {id}"));
    term.keys(&["C-u"]);
    term.line("quit");
    term.wait_exit();

    // The history outlives the client, in $XDG_DATA_HOME/clusterchat/history, without them.
    let file = data.path().join("clusterchat/history");
    let kept = std::fs::read_to_string(&file).expect("the history file");
    for line in ["register alice", &format!("login {id}"), "logout", "quit"] {
        assert!(kept.lines().any(|l| l == line), "{line:?} not in:\n{kept}");
    }
    assert!(!kept.contains("Hidden-pw1"), "a password in:\n{kept}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the history file is private: {mode:o}");
    }
    let term = Tmux::start(&srv, data.path()).expect("tmux");
    term.wait_for("type `help`");
    term.wait_for_last_line(">");
    term.keys(&["Up"]);
    term.wait_for_last_line("> quit");
    term.keys(&["Up"]);
    term.wait_for_last_line("> logout");
    term.keys(&["C-u"]);
    term.line("quit");
}

#[test]
fn the_client_says_what_happened_and_keeps_its_lists_current() {
    let srv = TestServer::start();
    let (mut bob, b) = srv.user("bob");
    let g = bob.create_group(b, "bobs", "bob's group").unwrap();
    let c = srv.client().register("carol", "pw-carol").unwrap();
    // Alice made carol (never online) her friend in an earlier session; bob wrote meanwhile.
    let (mut alice, a) = srv.user("alice");
    alice.add_friend(a, c).unwrap();
    alice.logout(a).unwrap();
    drop(alice);
    bob.chat(b, a, "before you came").unwrap();

    let data = tempfile::tempdir().unwrap();
    let Some(term) = Tmux::start(&srv, data.path()) else {
        return;
    };
    term.wait_for("type `help`");
    // A bad id is named, with what is wrong with it.
    term.line("login abc pw");
    term.wait_for(r#"user id "abc" is not a number (usage: login <id> [password [--takeover]])"#);
    term.line("chat -1 x");
    term.wait_for(r#"user id "-1" is not valid: numbers start at 1"#);

    term.line(&format!("login {a} pw-alice"));
    term.wait_for(&format!("  {c} carol [offline]"));
    term.wait_for("1 message while you were away");
    // A chat to an offline friend is stored for later.
    term.line(&format!("chat {c} see you later"));
    term.wait_for(&format!(
        "ok: stored for carol({c}), who was offline when last seen"
    ));
    // Adding twice says "already"; the lists follow what this session did.
    term.line(&format!("addfriend {c}"));
    term.wait_for(&format!("ok: carol({c}) is already your friend"));
    term.line(&format!("addfriend {b}"));
    term.wait_for(&format!("ok: added friend bob({b})"));
    term.line(&format!("addfriend {b}"));
    term.wait_for(&format!("ok: bob({b}) is already your friend"));
    term.line("friends");
    term.wait_for(&format!("  {b} bob (added now; state at next login)"));
    bob.chat(b, a, "hello alice").unwrap();
    term.wait_for(&format!("bob({b}) says: hello alice"));
    term.line("friends");
    term.wait_for(&format!("  {b} bob [online]"));
    term.line("creategroup ops night shift");
    let screen = term.wait_for("ok: created group ops with id ");
    let ops: i64 = screen
        .split("ok: created group ops with id ")
        .nth(1)
        .and_then(|rest| rest.lines().next())
        .and_then(|n| n.trim().parse().ok())
        .expect("the group id on screen");
    term.line(&format!("addgroup {g}"));
    term.wait_for(&format!("ok: joined group {g}"));
    term.line(&format!("addgroup {g}"));
    term.wait_for(&format!("ok: already a member of group {g}"));
    term.line(&format!("addgroup {ops}"));
    term.wait_for(&format!("ok: already a member of group {ops} (ops)"));
    term.line("groups");
    term.wait_for(&format!(
        "  {ops} ops: night shift\n    1 member\n  {g} (joined now; name at next login)"
    ));
    term.line(&format!("members {g}"));
    term.wait_for(&format!(
        "members of group {g} (2):\n  {b} bob [online] creator\n  {a} alice [online] normal"
    ));
    term.line(&format!("groupchat {g} hi all"));
    assert_eq!(bob.recv_msgid(msgid::GROUP_CHAT).unwrap()["msg"], "hi all");
    // History of a group and of a user; both are in `help`.
    term.line(&format!("history g{g}"));
    term.wait_for(&format!("history of group {g} (1):"));
    term.line(&format!("history {b}"));
    term.wait_for(&format!("history of user {b} (2):"));
    term.line("help");
    term.wait_for("history <id>|g<id> [count]");
    // After a logout the prompt names nobody.
    term.line("logout");
    term.wait_for("ok: logged out");
    term.wait_for_last_line(">");
    term.line("quit");
}
