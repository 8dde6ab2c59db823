//! The SQLite checkpointer: a thread that keeps the write-ahead log short without stalling the
//! log writer.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses its threshold, and with
//! `synchronous=NORMAL` a checkpoint `fsync`s the WAL and then the database file: the log
//! writer would wait for both. A checkpoint from another connection avoids that, but alone it
//! never lets the WAL restart: SQLite rewinds the WAL to its start only when a write begins
//! after every frame has been copied back, and under a steady stream of commits new frames
//! always arrive while a checkpoint runs. The WAL then grows without end (1 GiB in 7 s of
//! `chatbench pairs`), and every frame lands on a fresh block that the kernel must zero first
//! (13% of the server's CPU in `perf` before this thread existed).
//!
//! So every cycle copies back what is there while commits go on (the large `fsync`s happen
//! here, off the writer). Once the WAL is long, the cycle repeats while much is left, and then
//! copies the small rest while holding the store's append gate, so that the next commit finds
//! the WAL fully copied and rewinds it. The writer waits at most for that small rest, and a
//! busy server rewinds about twice a second, writing over blocks the WAL file already has.

use super::sqlite::{query, BUSY_TIMEOUT};
use super::sqlite_index::{self, LogTail};
use super::{StoreError, StoreResult};
use crate::sync::LockExt;
use crossbeam_channel::{RecvTimeoutError, Sender};
use r2d2::Pool;
use r2d2_sqlite::SqliteConnectionManager;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often a cycle runs.
const PERIOD: Duration = Duration::from_millis(100);
/// Frames (4 KiB pages) in the WAL that make a cycle rewind it: 128 MiB, about half a second
/// of `chatbench pairs --window 1` (one page a message); a message batched with many others
/// costs far less.
const REWIND_AT: i64 = 32 * 1024;
/// Extra copy rounds without the gate before the one with it.
const MAX_FREE_ROUNDS: usize = 4;
/// Frames committed during a free round few enough to copy with appends held.
const SMALL_REST: i64 = 256;

/// The running checkpointer; dropping it stops the thread.
pub(crate) struct Checkpointer {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts the thread on its own connection from `pool`; `gate` is the lock every append
    /// holds for its transaction. Each period it also indexes what is left of the log's tail
    /// (see `sqlite_index`), so that the tail is empty soon after traffic pauses.
    pub(crate) fn start(
        pool: Pool<SqliteConnectionManager>,
        gate: Arc<Mutex<LogTail>>,
    ) -> std::io::Result<Self> {
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || loop {
                match stopped.recv_timeout(PERIOD) {
                    Err(RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
                if let Err(e) = index_rest(&gate) {
                    log::warn!("message log index: {e}");
                }
                if let Err(e) = cycle(&pool, &gate, REWIND_AT) {
                    log::warn!("checkpoint: {e}");
                }
            })?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Indexes the log's tail and writes the lagging seq counters back, if there are any (on the
/// gate's own connection).
fn index_rest(gate: &Mutex<LogTail>) -> StoreResult<()> {
    sqlite_index::index_tail(&mut gate.locked())
}

/// One cycle (see the module comment).
/// `rewind_at` is [`REWIND_AT`] but for tests.
fn cycle(
    pool: &Pool<SqliteConnectionManager>,
    gate: &Mutex<LogTail>,
    rewind_at: i64,
) -> StoreResult<()> {
    let c = pool
        .get()
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
    // A PASSIVE checkpoint copies every frame committed when it starts and returns how many
    // frames the WAL holds; those that arrived while it ran are left for the next round.
    let passive = || -> StoreResult<i64> {
        c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1))
            .map_err(query)
    };
    let mut frames = passive()?;
    if frames < rewind_at {
        // Short enough (or -1: not a WAL, or another checkpoint runs).
        return Ok(());
    }
    for _ in 0..MAX_FREE_ROUNDS {
        let log = passive()?;
        let arrived = log - frames;
        frames = log;
        if arrived <= SMALL_REST {
            break;
        }
    }
    // RESTART copies the rest and makes the next commit rewind the WAL. With appends held
    // only a reader can be in its way: then it gives up at once (no busy wait under the gate)
    // and a later cycle tries again.
    let _appends_held = gate.locked();
    c.busy_timeout(Duration::ZERO).map_err(query)?;
    let restarted = c.query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| r.get::<_, i64>(0));
    c.busy_timeout(BUSY_TIMEOUT).map_err(query)?;
    restarted.map(drop).map_err(query)
}

#[cfg(test)]
mod tests {
    use super::cycle;
    use crate::store::sqlite::SqliteStore;
    use crate::store::{Append, ConvId, Store};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// Bytes this thread has written to files so far (`wchar` of /proc/thread-self/io).
    fn written_by_this_thread() -> u64 {
        let io = std::fs::read_to_string("/proc/thread-self/io").expect("/proc/thread-self/io");
        io.lines()
            .find_map(|l| l.strip_prefix("wchar: "))
            .and_then(|n| n.trim().parse().ok())
            .expect("wchar")
    }

    /// Appends a message to each of 50 conversations, one transaction.
    fn append_batch(store: &SqliteStore, n: i64) {
        let body = format!("{{\"msgid\":6,\"msg\":\"{n:0>200}\"}}");
        let batch: Vec<Append<'_>> = (0..50)
            .map(|i| Append {
                conv: ConvId::pair(1, 2 + i),
                sender: 1,
                cmid: None,
                body: &body,
                created_ms: n,
            })
            .collect();
        store.append(&batch).expect("append");
    }

    /// The case SQLite's own PASSIVE checkpoints never handle: commits that never stop. The
    /// cycles must still rewind the WAL, again and again, so it stays far smaller than what
    /// is written to it. Counted, not timed: a rewind is a WAL holding fewer frames than at
    /// the sample before; the run goes on (within a bound) until two were seen after at least
    /// 3 cycles and 400 commits, however the threads were scheduled.
    #[test]
    fn cycles_keep_the_wal_short_while_commits_go_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("chat.db");
        let store = SqliteStore::open(path.to_str().expect("utf-8 path"), 2).expect("open");
        let done = AtomicBool::new(false);
        let commits = AtomicUsize::new(0);
        let c = store.pool.get().expect("connection");
        // Frames in the WAL since it last rewound; -1 while another checkpoint runs.
        let frames = || -> i64 {
            c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1))
                .expect("checkpoint")
        };
        let (written, rewinds, most) = std::thread::scope(|s| {
            let writer = s.spawn(|| {
                let start = written_by_this_thread();
                let mut n = 0;
                while !done.load(Ordering::Relaxed) {
                    append_batch(&store, n);
                    commits.fetch_add(1, Ordering::Relaxed);
                    n += 1;
                }
                written_by_this_thread() - start
            });
            let (mut cycles, mut rewinds, mut last, mut most) = (0, 0, 0, 0);
            while (cycles < 3 || commits.load(Ordering::Relaxed) < 400 || rewinds < 2)
                && cycles < 500
            {
                cycle(&store.pool, &store.append_gate, 256).expect("cycle");
                cycles += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
                let now = frames();
                if now >= 0 {
                    rewinds += usize::from(now < last);
                    last = now;
                    most = most.max(now);
                }
            }
            done.store(true, Ordering::Relaxed);
            (writer.join().expect("writer"), rewinds, most)
        });
        let wal = u64::try_from(most).expect("a WAL") * (4096 + 24);
        assert!(written > 4 << 20, "the writer wrote only {written} bytes");
        assert!(
            rewinds >= 2,
            "the WAL rewound {rewinds} times while {written} bytes were written to it"
        );
        assert!(
            wal < written,
            "the WAL held up to {wal} bytes while {written} bytes were written to it"
        );
    }
}
