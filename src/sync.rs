//! Locks that one panicking thread cannot break for every other thread.
//!
//! std's locks are *poisoned* when a thread panics while holding one, and `lock().expect(..)`
//! then panics every later user too: a bug in one request handler (which the worker pool
//! survives) would go on to panic an IO thread in the fast path. Every lock of the server
//! guards plain tables (maps, lists, counters) whose every update is a single call that cannot
//! leave them half-changed, so the server takes the data as it is instead.

use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Lock methods that ignore poisoning (see the module docs).
pub(crate) trait LockExt<T: ?Sized> {
    /// The guard, whether or not another thread panicked while holding the lock.
    fn locked(&self) -> MutexGuard<'_, T>;
}

impl<T: ?Sized> LockExt<T> for Mutex<T> {
    fn locked(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Read and write guards that ignore poisoning (see the module docs).
pub(crate) trait RwLockExt<T: ?Sized> {
    /// A read guard, whether or not a writer panicked.
    fn read_locked(&self) -> RwLockReadGuard<'_, T>;
    /// A write guard, whether or not a writer panicked.
    fn write_locked(&self) -> RwLockWriteGuard<'_, T>;
}

impl<T: ?Sized> RwLockExt<T> for RwLock<T> {
    fn read_locked(&self) -> RwLockReadGuard<'_, T> {
        self.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_locked(&self) -> RwLockWriteGuard<'_, T> {
        self.write().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_panic_under_the_lock_does_not_break_it_for_others() {
        let table = Arc::new(Mutex::new(vec![1]));
        let t = Arc::clone(&table);
        let _ = std::thread::spawn(move || {
            let _guard = t.lock().unwrap();
            panic!("a handler bug");
        })
        .join();
        assert!(table.is_poisoned());
        table.locked().push(2);
        assert_eq!(*table.locked(), [1, 2]);
        let rw = Arc::new(RwLock::new(0));
        let r = Arc::clone(&rw);
        let _ = std::thread::spawn(move || {
            let _guard = r.write().unwrap();
            panic!("another bug");
        })
        .join();
        *rw.write_locked() += 1;
        assert_eq!(*rw.read_locked(), 1);
    }
}
