//! The lock that makes a SQLite database one server's alone: an exclusive `flock` on a file
//! next to it (`PATH.lock`), taken before anything is read or written and held until the
//! process ends (the kernel drops it when the process dies, even by SIGKILL, so a crash never
//! leaves it behind). The lock file itself stays; only the lock on it matters.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;

/// An exclusive lock on a file; released when dropped (or when the process ends).
#[derive(Debug)]
pub(crate) struct FileLock {
    _file: File,
}

/// The lock file of the database at `db_path`.
pub(crate) fn lock_path(db_path: &str) -> String {
    format!("{db_path}.lock")
}

impl FileLock {
    /// Takes the lock on `path` (creating the file) without waiting: `Ok(None)` when another
    /// process holds it.
    pub(crate) fn try_exclusive(path: &str) -> io::Result<Option<FileLock>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        // SAFETY: flock only acts on the descriptor, which `file` keeps open.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(Some(FileLock { _file: file }));
        }
        let err = io::Error::last_os_error();
        if err.kind() == io::ErrorKind::WouldBlock {
            Ok(None)
        } else {
            Err(err)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::FileLock;

    #[test]
    fn a_second_lock_on_the_same_file_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.lock");
        let path = path.to_str().unwrap();
        let first = FileLock::try_exclusive(path).unwrap();
        assert!(first.is_some());
        // A second open file description conflicts even within one process.
        assert!(FileLock::try_exclusive(path).unwrap().is_none());
        drop(first);
        assert!(FileLock::try_exclusive(path).unwrap().is_some());
    }
}
