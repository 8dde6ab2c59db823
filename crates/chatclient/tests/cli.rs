//! The `chatclient` binary as a user starts it. (Its full terminal session against a real
//! server is tested in the workspace's `tests/chatclient_terminal.rs`, which needs this binary:
//! having an integration test here is also what makes `cargo test --workspace` build it.)

use std::process::Command;

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
