//! Saving and restoring the terminal's mode, so the client can exit from the reader thread
//! (when the server closes the connection) while rustyline has the terminal in raw mode:
//! rustyline only restores the mode when `readline` returns, which a blocked read never does.

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
