//! The line-editing loop of `chatclient`: the main thread edits and sends, a reader thread
//! receives, prints and sends the receipts (RECV) the state owes (see the crate docs). The only
//! file that touches the terminal and the socket.

use crate::command::{self, parse, Command};
use crate::escape;
use crate::history_file;
use crate::state::ClientState;
use crate::terminal;

use crate::tls::Tls;
use clusterchat_proto::client::{Client, ClientError, FrameReader};
use clusterchat_proto::transport::Transport;
use rustyline::error::ReadlineError;
use rustyline::{Config, DefaultEditor, ExternalPrinter};
use std::io::IsTerminal;
use std::net::Shutdown;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use terminal::SavedMode;

/// Prints one block of lines without disturbing the line being edited.
type Printer = Box<dyn FnMut(String) + Send>;

/// While the user types a password (without echo), the reader thread holds back what it would
/// print, which would otherwise land in the middle of the hidden prompt: `Some(lines)`.
type Held = Arc<Mutex<Option<Vec<String>>>>;

/// The sending half of the connection, shared by the typing thread (requests) and the reader
/// thread (receipts), so that frames never interleave.
type Sender = Arc<Mutex<Client>>;

/// How often the reader thread wakes up without input, to send receipts that are due.
const RECEIPT_TICK: Duration = Duration::from_millis(50);

/// How often the reader thread sends a PING (20), so that a server with the default 60 s
/// `--heartbeat-timeout` keeps the connection, and closes it when this client is gone.
const HEARTBEAT: Duration = Duration::from_secs(20);

/// How long `quit` (or end of piped input) waits for replies still owed to the user.
const LINGER: Duration = Duration::from_secs(2);
/// How long the prompt waits for a login, register or logout reply before carrying on
/// regardless.
const ACCOUNT_WAIT: Duration = Duration::from_secs(3);
/// How many lines the line history keeps (in memory and in its file).
const HISTORY_LINES: usize = 1000;

/// Runs the client against `host:port` (over TLS with `tls`) until `quit`, Ctrl+D or the
/// server closing the connection. An `Err` is the one line to show when the state could not
/// start.
pub fn run(host: &str, port: u16, tls: Option<Tls>) -> Result<(), String> {
    let connected = match &tls {
        None => Client::connect((host, port)),
        Some(tls) => Client::connect_tls((host, port), tls.config.clone(), tls.name.clone()),
    };
    let mut client = connected.map_err(|e| match e {
        ClientError::Io(e) => format!("cannot connect to {host}:{port}: {e}"),
        e => format!("cannot connect to {host}:{port}: {e}"),
    })?;
    // The socket's read timeout is the reader thread's (this client never reads).
    client
        .set_timeout(Some(RECEIPT_TICK))
        .map_err(|e| e.to_string())?;
    let socket = client.try_clone_transport().map_err(|e| e.to_string())?;
    let config = Config::builder()
        .max_history_size(HISTORY_LINES)
        .map_err(|e| format!("terminal: {e}"))?
        .build();
    let mut editor = DefaultEditor::with_config(config).map_err(|e| format!("terminal: {e}"))?;
    let mut history = History::open(&mut editor);
    let held: Held = Arc::new(Mutex::new(None));
    let printer: Printer = {
        let mut print: Printer = match editor.create_external_printer() {
            // Between two readline calls rustyline writes the text as is, and the next prompt
            // starts with "clear line": so every message must end its own line.
            Ok(mut p) => Box::new(move |s| drop(p.print(format!("{s}\n")))),
            Err(_) => Box::new(|s| println!("{s}")),
        };
        let held = held.clone();
        Box::new(move |s| match lock(&held).as_mut() {
            Some(lines) => lines.push(s),
            None => print(s),
        })
    };
    let state = Arc::new(Mutex::new(ClientState::new()));
    let sender: Sender = Arc::new(Mutex::new(client));
    let quitting = Arc::new(AtomicBool::new(false));
    let reader = {
        let (state, quitting, sender) = (state.clone(), quitting.clone(), sender.clone());
        let saved = SavedMode::save();
        std::thread::Builder::new()
            .name("chat-reader".into())
            .spawn(move || read_frames(socket, state, sender, quitting, printer, saved))
            .map_err(|e| e.to_string())?
    };
    let over = if tls.is_some() { " over TLS" } else { "" };
    println!("connected to {host}:{port}{over}; type `help` for the commands");
    interact(&mut editor, &mut history, &held, &sender, &state);

    wait_while(&state, LINGER, ClientState::awaiting);
    quitting.store(true, Ordering::SeqCst);
    let receipts = lock(&state).take_receipts();
    let _ = send_all(&sender, &receipts);
    let _ = lock(&sender).stream().shutdown(Shutdown::Both);
    let _ = reader.join();
    Ok(())
}

/// Sends frames in order under one lock of the sender.
fn send_all(sender: &Sender, frames: &[serde_json::Value]) -> Result<(), ClientError> {
    if frames.is_empty() {
        return Ok(());
    }
    let mut client = lock(sender);
    frames.iter().try_for_each(|f| client.send(f))
}

/// The line history's file, when the client runs in a terminal (piped input is not history).
struct History {
    file: Option<PathBuf>,
}

impl History {
    /// Loads the history file into the editor (see [`history_file`]); without a terminal or
    /// a home folder there is none, and a file that cannot be used is named once.
    fn open(editor: &mut DefaultEditor) -> History {
        let file = std::io::stdin()
            .is_terminal()
            .then(history_file::path)
            .flatten();
        let Some(path) = file else {
            return History { file: None };
        };
        let loaded = history_file::prepare(&path)
            .map_err(ReadlineError::from)
            .and_then(|()| editor.load_history(&path));
        match loaded {
            Err(ReadlineError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                println!(
                    "note: the line history is not kept: {}: {e}",
                    path.display()
                );
                return History { file: None };
            }
            Ok(()) => {}
        }
        History { file: Some(path) }
    }

    /// Adds a line to the editor's history and appends it to the file.
    fn keep(&mut self, editor: &mut DefaultEditor, line: &str) {
        let _ = editor.add_history_entry(line);
        if let Some(path) = &self.file {
            if let Err(e) = editor.append_history(path) {
                println!(
                    "note: the line history is no longer saved: {}: {e}",
                    path.display()
                );
                self.file = None;
            }
        }
    }
}

/// A login or register typed without a password gets it here, asked for without echo (twice
/// to register, in a terminal); `None` when the user gave none.
fn with_password(cmd: Command, held: &Held) -> Option<Command> {
    let (prompt, confirm) = match &cmd {
        Command::Login {
            id, password: None, ..
        } => (format!("password for user {id}: "), false),
        Command::Register {
            name,
            password: None,
        } => (format!("password for {name}: "), true),
        _ => return Some(cmd),
    };
    *lock(held) = Some(Vec::new());
    let answer = ask_password(&prompt, confirm && std::io::stdin().is_terminal());
    {
        let mut held = lock(held);
        for lines in held.take().unwrap_or_default() {
            println!("{lines}");
        }
    }
    let password = match answer {
        Ok(password) => password,
        Err(why) => {
            println!("{why}");
            return None;
        }
    };
    Some(match cmd {
        Command::Login { id, takeover, .. } => Command::Login {
            id,
            password: Some(password),
            takeover,
        },
        Command::Register { name, .. } => Command::Register {
            name,
            password: Some(password),
        },
        other => other,
    })
}

/// Asks for a password (and again, with `confirm`); `Err` says why there is none.
fn ask_password(prompt: &str, confirm: bool) -> Result<String, String> {
    let read = |prompt: &str| match terminal::read_password(prompt) {
        Ok(Some(p)) if !p.is_empty() => Ok(p),
        Ok(Some(_)) => Err("cancelled: no password given".to_string()),
        Ok(None) => Err("cancelled".to_string()),
        Err(e) => Err(format!("cannot read the password: {e}")),
    };
    let password = read(prompt)?;
    if confirm && read("the same again: ")? != password {
        return Err("the two passwords differ; nothing sent".into());
    }
    Ok(password)
}

/// The main thread's loop: read a line, act on it, until the user leaves.
fn interact(
    editor: &mut DefaultEditor,
    history: &mut History,
    held: &Held,
    sender: &Sender,
    state: &Mutex<ClientState>,
) {
    loop {
        let prompt = lock(state).prompt();
        let line = match editor.readline(&prompt) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => return,
            Err(e) => {
                eprintln!("terminal error: {e}");
                return;
            }
        };
        let cmd = match parse(&line) {
            Ok(Some(cmd)) => cmd,
            Ok(None) => continue,
            Err(e) => {
                println!("{e}");
                continue;
            }
        };
        // Keep passwords out of the history (and its file).
        if cmd.may_keep_in_history() {
            history.keep(editor, &line);
        }
        let Some(cmd) = with_password(cmd, held) else {
            continue;
        };
        match cmd {
            Command::Quit => return,
            Command::Help => println!("{}", command::HELP),
            Command::Friends | Command::Groups => {
                let lines = lock(state).local_lines(&cmd).unwrap_or_default();
                println!("{}", escape::text(&lines.join("\n")));
            }
            _ => {
                let (receipts, request) = {
                    let mut s = lock(state);
                    // Confirm what was seen before the session ends.
                    let receipts = match cmd {
                        Command::Logout => s.take_receipts(),
                        _ => Vec::new(),
                    };
                    (receipts, s.request(&cmd))
                };
                let Some(request) = request else {
                    continue;
                };
                if let Err(e) =
                    send_all(sender, &receipts).and_then(|()| lock(sender).send(&request))
                {
                    eprintln!("cannot send: {e}");
                    return;
                }
                wait_while(state, ACCOUNT_WAIT, ClientState::awaiting_account);
            }
        }
    }
}

/// The reader thread: print every frame until the connection ends. When the server (not the
/// user) ended it, say so and exit the process, since the main thread is blocked in readline.
fn read_frames(
    socket: Transport,
    state: Arc<Mutex<ClientState>>,
    sender: Sender,
    quitting: Arc<AtomicBool>,
    mut print: Printer,
    saved: Option<SavedMode>,
) {
    let mut frames = FrameReader::new(socket);
    let mut last_ping = Instant::now();
    let why = loop {
        match frames.next_value() {
            Ok(frame) => {
                let lines = lock(&state).handle(&frame);
                if !lines.is_empty() {
                    // Names are escaped where they are worded; this catches anything else.
                    print(escape::text(&lines.join("\n")).into_owned());
                }
            }
            Err(ClientError::BadFrame(bad)) => print(format!(
                "unreadable frame from server: {}",
                escape::name(&bad)
            )),
            Err(ClientError::Timeout) => {}
            Err(e) => break e,
        }
        let mut due = lock(&state).receipts_due(Instant::now());
        if last_ping.elapsed() >= HEARTBEAT {
            last_ping = Instant::now();
            due.push(serde_json::json!({"msgid": clusterchat_proto::msgid::PING}));
        }
        if let Err(e) = send_all(&sender, &due) {
            break e;
        }
    };
    if quitting.load(Ordering::SeqCst) {
        return;
    }
    let line = match why {
        ClientError::Closed => "connection closed by the server".to_string(),
        e => format!("connection lost: {e}"),
    };
    match saved {
        Some(mode) => {
            // Let lines already handed to the printer be drawn, then leave raw mode ourselves.
            std::thread::sleep(Duration::from_millis(150));
            mode.restore();
            // Also end bracketed-paste mode, as rustyline does when readline returns.
            eprintln!("\x1b[?2004l\r\n{line}");
        }
        None => print(line),
    }
    std::process::exit(1);
}

/// Sleeps in short steps while `busy` holds, at most `limit` (the reader thread, which
/// settles requests, exits the process itself if the connection drops meanwhile).
fn wait_while(state: &Mutex<ClientState>, limit: Duration, busy: fn(&ClientState) -> bool) {
    let deadline = Instant::now() + limit;
    while busy(&lock(state)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Locks the state (or the sender); a panic elsewhere must not stop the client from printing.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
