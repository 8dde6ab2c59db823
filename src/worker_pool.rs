//! Threads that run the blocking handlers (database, Redis, password hashing) so that the IO
//! loops never block.
//!
//! Each job carries a key, and jobs with one key always run on the same thread in the order
//! queued: keyed by connection, "login, then chat" can never be reordered.

use crossbeam_channel::{unbounded, Sender};
use std::thread::JoinHandle;

/// A unit of blocking work.
pub type Job = Box<dyn FnOnce() + Send + 'static>;

/// A fixed set of worker threads, each with its own queue.
pub struct WorkerPool {
    queues: Vec<Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
}

impl WorkerPool {
    /// Starts `n` workers (at least one).
    pub fn new(n: usize) -> std::io::Result<Self> {
        let mut queues = Vec::new();
        let mut threads = Vec::new();
        for i in 0..n.max(1) {
            let (tx, rx) = unbounded::<Job>();
            queues.push(tx);
            threads.push(
                std::thread::Builder::new()
                    .name(format!("worker-{i}"))
                    .spawn(move || {
                        for job in rx {
                            job();
                        }
                    })?,
            );
        }
        Ok(WorkerPool { queues, threads })
    }

    /// Runs `job` on the worker that owns `key`, after every job queued before with that key.
    /// Thread safe.
    pub fn execute(&self, key: u64, job: Job) {
        let queue = &self.queues[(key % self.queues.len() as u64) as usize];
        if queue.send(job).is_err() {
            log::error!("worker pool is stopped; job dropped");
        }
    }

    /// Lets the queued jobs finish and joins the threads.
    pub fn stop(self) {
        drop(self.queues);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::WorkerPool;
    use std::sync::{Arc, Mutex};

    #[test]
    fn jobs_with_one_key_run_in_order() {
        let pool = WorkerPool::new(4).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        for i in 0..100 {
            let seen = Arc::clone(&seen);
            pool.execute(7, Box::new(move || seen.lock().unwrap().push(i)));
        }
        pool.stop();
        assert_eq!(*seen.lock().unwrap(), (0..100).collect::<Vec<_>>());
    }
}
