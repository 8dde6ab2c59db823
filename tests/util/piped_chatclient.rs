//! `chatclient` driven through pipes, as a script would: lines in, printed lines out.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

/// A running `chatclient` with its stdin and a reader of its stdout lines.
pub struct PipedClient {
    pub child: Child,
    input: Option<ChildStdin>,
    lines: Receiver<String>,
}

impl PipedClient {
    /// Starts the workspace's `chatclient` with `args`.
    pub fn spawn<I, S>(args: I) -> PipedClient
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut child = Command::new(super::server::workspace_binary("chatclient"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chatclient");
        let input = child.stdin.take();
        let (tx, lines) = std::sync::mpsc::channel::<String>();
        let stdout = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        PipedClient {
            child,
            input,
            lines,
        }
    }

    /// Types `line` (and Enter).
    pub fn type_line(&mut self, line: &str) {
        let input = self.input.as_mut().expect("stdin still open");
        writeln!(input, "{line}").expect("write to chatclient");
    }

    /// Closes its stdin (end of input).
    pub fn close_input(&mut self) {
        self.input = None;
    }

    /// The next printed line containing `text`, within 15 s (panics otherwise).
    pub fn wait_for(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(text) => return line,
                Ok(_) => {}
                Err(e) => panic!("chatclient never printed {text:?}: {e}"),
            }
        }
    }
}
