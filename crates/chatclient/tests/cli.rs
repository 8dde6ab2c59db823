//! The `chatclient` binary as a user starts it. (Its full terminal session against a real
//! server is tested in the workspace's `tests/chatclient_terminal.rs`, which needs this binary:
//! having an integration test here is also what makes `cargo test --workspace` build it.)
//! The message log's side of the client (sync login, receipts, history) is driven here by a
//! stand-in server that the test plays itself.

use clusterchat_proto::client::FrameReader;
use clusterchat_proto::{GroupSummary, HistoryAck, SyncLoginAck, UserInfo};
use serde_json::{json, Value};
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn version_and_help_work_without_a_server() {
    let out = Command::new(env!("CARGO_BIN_EXE_chatclient"))
        .arg("--version")
        .output()
        .expect("run chatclient");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("chatclient "));
    let out = Command::new(env!("CARGO_BIN_EXE_chatclient"))
        .arg("--help")
        .output()
        .expect("run chatclient");
    assert!(String::from_utf8_lossy(&out.stdout).contains("[HOST] [PORT]"));
}

#[test]
fn an_unreachable_server_is_one_clear_line_and_exit_1() {
    // A port that was free a moment ago: nobody listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = Command::new(env!("CARGO_BIN_EXE_chatclient"))
        .args(["127.0.0.1", &port.to_string()])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run chatclient");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("chatclient: "), "{err}");
}

/// `chatclient` against a stand-in server on a free port: the test reads what the client
/// sends and writes what a server of the message log would answer (no real server needed).
struct Session {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    frames: FrameReader<TcpStream>,
    to_client: TcpStream,
}

impl Session {
    fn start() -> Session {
        Session::start_in(&std::env::temp_dir().join("cc-cli-no-such-dir"))
    }

    /// Starts the client with `data_home` as its `XDG_DATA_HOME` (where a terminal session
    /// would keep its line history).
    fn start_in(data_home: &std::path::Path) -> Session {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_chatclient"))
            .args(["127.0.0.1", &port.to_string()])
            .env("XDG_DATA_HOME", data_home)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run chatclient");
        let (conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Session {
            stdin: child.stdin.take(),
            child,
            frames: FrameReader::new(conn.try_clone().unwrap()),
            to_client: conn,
        }
    }

    /// Types a line at the client's prompt.
    fn line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        writeln!(stdin, "{line}").unwrap();
    }

    /// The next frame the client sends (10 s at most).
    fn next(&mut self) -> Value {
        self.frames.next_value().expect("a frame from the client")
    }

    /// Sends frames to the client in one write.
    fn send(&mut self, frames: &[Value]) {
        let mut bytes = Vec::new();
        for f in frames {
            bytes.extend_from_slice(f.to_string().as_bytes());
            bytes.push(b'\n');
        }
        self.to_client.write_all(&bytes).unwrap();
    }

    /// Types `quit` and returns what the client printed.
    fn quit(mut self) -> String {
        self.line("quit");
        drop(self.stdin.take());
        let out = self.child.wait_with_output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// `frame` without its `reqid`, and the `reqid`.
fn untagged(mut frame: Value) -> (Value, Value) {
    let reqid = frame.as_object_mut().unwrap().remove("reqid");
    (frame, reqid.unwrap_or(Value::Null))
}

#[test]
fn history_commands_become_history_requests_and_their_replies_are_shown() {
    let mut s = Session::start();
    s.line("history 5");
    s.line("history g3 20");
    s.line("history x");
    s.line("history:g4:1");
    let expected = [
        json!({"msgid":16,"peer":5}),
        json!({"msgid":16,"groupid":3,"limit":20}),
        json!({"msgid":16,"groupid":4,"limit":1}),
    ];
    for want in expected {
        let (got, reqid) = untagged(s.next());
        assert_eq!(got, want);
        let mut reply = HistoryAck {
            peer: got["peer"].as_i64(),
            groupid: got["groupid"].as_i64(),
            messages: vec![],
            more: false,
        };
        if got["peer"] == 5 {
            reply.messages = vec![
                json!({"msgid":6,"id":5,"name":"eve","toid":1,"msg":"old news","time":"t1","seq":1}),
                json!({"msgid":6,"id":1,"name":"alice","toid":5,"msg":"thanks","time":"t2","seq":2}),
            ];
            reply.more = true;
        }
        let mut reply = reply.encode();
        reply["reqid"] = reqid;
        s.send(&[reply]);
    }
    let out = s.quit();
    for want in [
        "usage: history <id>|g<id> [count]",
        "history of user 5 (2):\n  [t1] eve(5) says: old news\n  [t2] alice(1) says: thanks\n  (older messages remain)",
        "history of group 3: no messages",
        "history of group 4: no messages",
    ] {
        assert!(out.contains(want), "{want:?} not in:\n{out}");
    }
}

#[test]
fn a_sync_login_drops_duplicates_and_confirms_with_recv() {
    let mut s = Session::start();
    s.line("login 1 pw");
    assert_eq!(
        s.next(),
        json!({"msgid":1,"id":1,"password":"pw","sync":true})
    );
    let ack = SyncLoginAck {
        id: 1,
        name: "alice".into(),
        friends: vec![],
        groups: vec![GroupSummary {
            id: 7,
            name: "rust".into(),
            desc: String::new(),
            members: 3,
        }],
    };
    let chat = |seq: i64, msg: &str| json!({"msgid":6,"id":2,"name":"bob","toid":1,"msg":msg,"time":"t","seq":seq});
    s.send(&[
        ack.encode(),
        chat(1, "first"),
        chat(2, "second"),
        chat(2, "second again"),
        json!({"msgid":10,"id":2,"name":"bob","groupid":7,"msg":"to all","time":"t","seq":5}),
        json!({"msgid":15,"count":4}),
    ]);
    // After SYNC_DONE: one receipt per conversation, its highest seq.
    assert_eq!(s.next(), json!({"msgid":14,"peer":2,"seq":2}));
    assert_eq!(s.next(), json!({"msgid":14,"groupid":7,"seq":5}));
    // A live message is confirmed too, within a moment.
    s.send(&[chat(3, "live")]);
    assert_eq!(s.next(), json!({"msgid":14,"peer":2,"seq":3}));
    let out = s.quit();
    for want in [
        "logged in as alice(1)",
        "  7 rust\n    3 members",
        "[t] bob(2) says: first",
        "[t] bob(2) says: second",
        "[t] group 7: bob(2) says: to all",
        "4 messages while you were away",
        "[t] bob(2) says: live",
    ] {
        assert!(out.contains(want), "{want:?} not in:\n{out}");
    }
    assert!(
        !out.contains("second again"),
        "the duplicate is dropped:\n{out}"
    );
}

#[test]
fn control_characters_from_the_server_are_shown_escaped() {
    // What a hostile or old server could send: names and texts with terminal controls.
    let evil = "\x1b]0;PWNED\x07\x1b[2J\x1b[31m SYSTEM";
    let mut s = Session::start();
    s.line("login 1 pw");
    s.next();
    let ack = SyncLoginAck {
        id: 1,
        name: format!("me{evil}"),
        friends: vec![UserInfo {
            id: 2,
            name: evil.into(),
            state: "online".into(),
        }],
        groups: vec![GroupSummary {
            id: 7,
            name: "g\u{9b}2J".into(),
            desc: "d\r".into(),
            members: 2,
        }],
    };
    s.send(&[
        ack.encode(),
        json!({"msgid":6,"id":2,"name":evil,"toid":1,"msg":"two\nlines\tand\rover\u{85}",
            "time":"t","seq":1}),
        json!({"msgid":15,"count":1}),
        json!({"msgid":13,"errno":102,"errmsg":"bad \x1b[2J"}),
    ]);
    s.next(); // the receipt: everything above was read
    s.line("friends");
    s.line("groups");
    let out = s.quit();
    let raw: Vec<char> = out
        .chars()
        .filter(|c| c.is_control() && *c != '\n' && *c != '\t')
        .collect();
    assert!(raw.is_empty(), "raw control characters {raw:?} in:\n{out}");
    let shown = "\\e]0;PWNED\\x07\\e[2J\\e[31m SYSTEM";
    for want in [
        format!("logged in as me{shown}(1)"),
        format!("[t] {shown}(2) says: two\nlines\tand\\rover\\u{{85}}"),
        format!("  2 {shown} [online]"),
        "  7 g\\u{9b}2J: d\\r".to_string(),
        "bad \\e[2J (errno 102)".to_string(),
    ] {
        assert!(out.contains(&want), "{want:?} not in:\n{out}");
    }
}

#[test]
fn piped_input_gives_a_left_out_password_on_the_next_line_and_keeps_no_history() {
    let data = std::env::temp_dir().join(format!("cc-cli-data-{}", std::process::id()));
    let mut s = Session::start_in(&data);
    s.line("login 1");
    s.line("pw from the next line");
    assert_eq!(
        s.next(),
        json!({"msgid":1,"id":1,"password":"pw from the next line","sync":true})
    );
    let ack = SyncLoginAck {
        id: 1,
        name: "alice".into(),
        friends: vec![],
        groups: vec![],
    };
    s.send(&[ack.encode(), json!({"msgid":15,"count":0})]);
    s.line("register bob");
    s.line("pw of bob");
    assert_eq!(
        s.next(),
        json!({"msgid":4,"name":"bob","password":"pw of bob"})
    );
    s.send(&[json!({"msgid":5,"errno":0,"id":2,"name":"bob"})]);
    let out = s.quit();
    assert!(out.contains("logged in as alice(1)"), "{out}");
    assert!(out.contains("registered bob with id 2"), "{out}");
    assert!(!out.contains("pw from"), "{out}");
    // Piped input is a script, not a history to keep.
    assert!(!data.exists(), "{} was created", data.display());
}
