//! Threads that run the blocking handlers (database, Redis, password hashing) so that the IO
//! loops never block.
//!
//! Each job carries a key, and jobs with one key always run on the same thread in the order
//! queued: keyed by connection, "login, then chat" can never be reordered. (Why not rayon or
//! threadpool: see the README's Architecture section.)

use crate::sync::LockExt;
use crossbeam_channel::{unbounded, Sender};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A unit of blocking work.
pub(crate) type Job = Box<dyn FnOnce() + Send + 'static>;

/// What a worker's queue carries.
enum Task {
    Run(Job),
    /// Leave the thread (after the jobs queued before).
    Stop,
}

/// A fixed set of worker threads, each with its own queue.
pub(crate) struct WorkerPool {
    queues: Vec<Sender<Task>>,
    /// Taken by [`stop`](Self::stop).
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Jobs queued or running.
    busy: Arc<AtomicUsize>,
}

impl WorkerPool {
    /// Starts `n` workers (at least one).
    pub(crate) fn new(n: usize) -> std::io::Result<Self> {
        let mut queues = Vec::new();
        let mut threads = Vec::new();
        let busy = Arc::new(AtomicUsize::new(0));
        for i in 0..n.max(1) {
            let (tx, rx) = unbounded::<Task>();
            queues.push(tx);
            let busy = Arc::clone(&busy);
            threads.push(
                std::thread::Builder::new()
                    .name(format!("worker-{i}"))
                    .spawn(move || {
                        while let Ok(Task::Run(job)) = rx.recv() {
                            // A bug in one request must not take the worker (and every
                            // connection queued on it) down with it.
                            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err()
                            {
                                log::error!("a request handler panicked; the worker goes on");
                            }
                            busy.fetch_sub(1, Ordering::AcqRel);
                        }
                    })?,
            );
        }
        Ok(WorkerPool {
            queues,
            threads: Mutex::new(threads),
            busy,
        })
    }

    /// Runs `job` on the worker that owns `key`, after every job queued before with that key.
    /// Thread safe.
    pub(crate) fn execute(&self, key: u64, job: Job) {
        let queue = &self.queues[(key % self.queues.len() as u64) as usize];
        self.busy.fetch_add(1, Ordering::AcqRel);
        if queue.send(Task::Run(job)).is_err() {
            self.busy.fetch_sub(1, Ordering::AcqRel);
            log::error!("worker pool is stopped; job dropped");
        }
    }

    /// Jobs queued or running now (a snapshot, for monitoring). Thread safe.
    pub(crate) fn jobs(&self) -> usize {
        self.busy.load(Ordering::Relaxed)
    }

    /// Waits until no job is queued or running, or `timeout` passes; true if idle. Used at
    /// shutdown, once no new requests are read, so that accepted work completes.
    pub(crate) fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.busy.load(Ordering::Acquire) > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }

    /// Lets the jobs queued so far finish, then ends and joins the threads; jobs queued after
    /// that are dropped (and logged). Called once at shutdown, from any thread but a worker.
    pub(crate) fn stop(&self) {
        for queue in &self.queues {
            let _ = queue.send(Task::Stop);
        }
        for t in std::mem::take(&mut *self.threads.locked()) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::WorkerPool;
    use std::sync::{Arc, Mutex};

    #[test]
    fn a_panicking_job_does_not_stop_its_worker() {
        let pool = WorkerPool::new(1).unwrap();
        let seen = Arc::new(Mutex::new(false));
        pool.execute(1, Box::new(|| panic!("a bug")));
        let flag = Arc::clone(&seen);
        pool.execute(1, Box::new(move || *flag.lock().unwrap() = true));
        assert!(pool.wait_idle(std::time::Duration::from_secs(10)));
        assert!(*seen.lock().unwrap());
        pool.stop();
    }

    #[test]
    fn jobs_with_one_key_run_in_order() {
        let pool = WorkerPool::new(4).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        for i in 0..100 {
            let seen = Arc::clone(&seen);
            pool.execute(7, Box::new(move || seen.lock().unwrap().push(i)));
        }
        assert!(pool.wait_idle(std::time::Duration::from_secs(10)));
        assert_eq!(*seen.lock().unwrap(), (0..100).collect::<Vec<_>>());
        pool.stop();
    }

    #[test]
    fn stop_runs_what_was_queued_then_joins_the_threads() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let pool = WorkerPool::new(2).unwrap();
        let ran = Arc::new(AtomicUsize::new(0));
        for key in 0..10 {
            let ran = Arc::clone(&ran);
            pool.execute(
                key,
                Box::new(move || {
                    std::thread::sleep(std::time::Duration::from_millis(2));
                    ran.fetch_add(1, Ordering::SeqCst);
                }),
            );
        }
        pool.stop();
        assert_eq!(ran.load(Ordering::SeqCst), 10, "queued jobs finish first");
        assert!(pool.threads.lock().unwrap().is_empty(), "threads joined");
        let late = Arc::clone(&ran);
        pool.execute(
            0,
            Box::new(move || {
                late.fetch_add(1, Ordering::SeqCst);
            }),
        );
        assert_eq!(ran.load(Ordering::SeqCst), 10, "nothing runs after stop");
    }
}
