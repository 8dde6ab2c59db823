//! The terminal outside rustyline: saving and restoring its mode, so the client can exit from
//! the reader thread (when the server closes the connection) while rustyline has the terminal
//! in raw mode (rustyline only restores the mode when `readline` returns, which a blocked read
//! never does); and reading a password without echo ([`read_password`]).

/// The terminal mode of standard input as it was before line editing started.
pub struct SavedMode {
    #[cfg(unix)]
    termios: libc::termios,
}

impl SavedMode {
    /// Saves the current mode; `None` when standard input is not a terminal (piped input),
    /// in which case there is nothing to restore.
    #[cfg(unix)]
    pub fn save() -> Option<SavedMode> {
        // SAFETY: isatty and tcgetattr only read the state of fd 0 into a local termios,
        // which tcgetattr fully initialises when it succeeds.
        unsafe {
            if libc::isatty(0) != 1 {
                return None;
            }
            let mut termios = std::mem::MaybeUninit::<libc::termios>::zeroed();
            if libc::tcgetattr(0, termios.as_mut_ptr()) != 0 {
                return None;
            }
            Some(SavedMode {
                termios: termios.assume_init(),
            })
        }
    }

    /// Without termios there is nothing to save.
    #[cfg(not(unix))]
    pub fn save() -> Option<SavedMode> {
        None
    }

    /// Puts the terminal back in the saved mode (cooked, echoing), ignoring failures: this is
    /// a best effort on the way out.
    pub fn restore(&self) {
        #[cfg(unix)]
        // SAFETY: tcsetattr reads the termios we saved from this same fd.
        unsafe {
            libc::tcsetattr(0, libc::TCSANOW, &self.termios);
        }
    }
}

/// Reads a password: from a terminal without echo (Enter ends it, Backspace and Ctrl+U edit
/// it, Ctrl+C or Ctrl+D cancel), otherwise as the next line of standard input (piped input).
/// `Ok(None)`: cancelled, or the input ended.
pub fn read_password(prompt: &str) -> std::io::Result<Option<String>> {
    match SavedMode::save() {
        Some(mode) => mode.read_hidden(prompt),
        None => {
            let mut line = String::new();
            if std::io::stdin().read_line(&mut line)? == 0 {
                return Ok(None);
            }
            let line = line.strip_suffix('\n').unwrap_or(&line);
            Ok(Some(line.strip_suffix('\r').unwrap_or(line).to_string()))
        }
    }
}

/// What a byte typed at the hidden prompt does.
#[derive(Debug, PartialEq, Eq)]
enum Key {
    Add,
    Erase,
    EraseAll,
    Enter,
    Cancel,
    Ignore,
}

/// The hidden prompt's editing: a pure state machine over the typed bytes, so it is tested
/// without a terminal. Escape sequences (arrow keys) are skipped whole.
#[derive(Debug, Default)]
struct HiddenLine {
    bytes: Vec<u8>,
    /// 0: not in an escape sequence; 1: after ESC; 2: inside `ESC [` or `ESC O`.
    escape: u8,
}

impl HiddenLine {
    fn key(&mut self, b: u8) -> Key {
        match (self.escape, b) {
            (1, b'[' | b'O') => {
                self.escape = 2;
                return Key::Ignore;
            }
            (1, _) => self.escape = 0,
            (2, 0x40..=0x7e) => {
                self.escape = 0;
                return Key::Ignore;
            }
            (2, _) => return Key::Ignore,
            _ => {}
        }
        match b {
            b'\r' | b'\n' => Key::Enter,
            0x03 => Key::Cancel,
            0x04 if self.bytes.is_empty() => Key::Cancel,
            0x7f | 0x08 => {
                // One character: its continuation bytes, then its first byte.
                while self.bytes.pop().is_some_and(|c| c & 0xc0 == 0x80) {}
                Key::Erase
            }
            0x15 => {
                self.bytes.clear();
                Key::EraseAll
            }
            0x1b => {
                self.escape = 1;
                Key::Ignore
            }
            c if c < 0x20 => Key::Ignore,
            c => {
                self.bytes.push(c);
                Key::Add
            }
        }
    }
}

#[cfg(unix)]
impl SavedMode {
    /// Reads a line with echo, line editing and signals off (so Ctrl+C cancels this prompt
    /// rather than killing the client), then restores the saved mode, whatever happens.
    fn read_hidden(&self, prompt: &str) -> std::io::Result<Option<String>> {
        use std::io::Write;
        /// Puts the saved mode back when dropped.
        struct Restore<'a>(&'a SavedMode);
        impl Drop for Restore<'_> {
            fn drop(&mut self) {
                self.0.restore();
            }
        }
        let mut quiet = self.termios;
        quiet.c_lflag &= !(libc::ECHO | libc::ICANON | libc::ISIG | libc::IEXTEN);
        quiet.c_cc[libc::VMIN] = 1;
        quiet.c_cc[libc::VTIME] = 0;
        let mut out = std::io::stdout();
        write!(out, "{prompt}")?;
        out.flush()?;
        let restore = Restore(self);
        // SAFETY: tcsetattr reads a termios copied from the one tcgetattr filled for fd 0.
        if unsafe { libc::tcsetattr(0, libc::TCSANOW, &quiet) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut line = HiddenLine::default();
        let done = loop {
            let mut b = 0u8;
            // SAFETY: reads at most one byte into a local byte.
            let n = unsafe { libc::read(0, (&mut b as *mut u8).cast(), 1) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            match (n, line.key(b)) {
                (0, _) | (_, Key::Cancel) => break false,
                (_, Key::Enter) => break true,
                _ => {}
            }
        };
        drop(restore);
        writeln!(out)?;
        if !done {
            return Ok(None);
        }
        String::from_utf8(std::mem::take(&mut line.bytes))
            .map(Some)
            .map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "the password is not valid UTF-8",
                )
            })
    }
}

#[cfg(not(unix))]
impl SavedMode {
    fn read_hidden(&self, _prompt: &str) -> std::io::Result<Option<String>> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(bytes: &[u8]) -> (Vec<u8>, Option<Key>) {
        let mut line = HiddenLine::default();
        for &b in bytes {
            if let k @ (Key::Enter | Key::Cancel) = line.key(b) {
                return (line.bytes, Some(k));
            }
        }
        (line.bytes, None)
    }

    #[test]
    fn the_hidden_prompt_edits_like_a_terminal_line() {
        assert_eq!(typed(b"s3cret\r"), (b"s3cret".to_vec(), Some(Key::Enter)));
        assert_eq!(typed(b"ab\x7fc\n"), (b"ac".to_vec(), Some(Key::Enter)));
        // Backspace removes a whole character, not a byte of it.
        assert_eq!(
            typed("pé\x7f\x7fx\r".as_bytes()),
            (b"x".to_vec(), Some(Key::Enter))
        );
        assert_eq!(typed(b"abc\x15d\r"), (b"d".to_vec(), Some(Key::Enter)));
        assert_eq!(typed(b"ab\x03").1, Some(Key::Cancel));
        assert_eq!(typed(b"\x04").1, Some(Key::Cancel));
        assert_eq!(typed(b"a\x04b\r"), (b"ab".to_vec(), Some(Key::Enter)));
        // Arrow keys and other escape sequences are not part of the password.
        assert_eq!(
            typed(b"a\x1b[A\x1bOBb\x1b[3~c\r"),
            (b"abc".to_vec(), Some(Key::Enter))
        );
        assert_eq!(typed(b"a\tb\r"), (b"ab".to_vec(), Some(Key::Enter)));
    }
}
