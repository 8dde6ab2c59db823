//! The cost of storing chat messages in the SQLite log, per message, without the network.
//!
//! Run: `cargo bench --bench log_append` (release build; ~30 s). For each batch shape it
//! appends batches of `convs` conversations × `per_conv` messages of 100 bytes to a fresh
//! database file, as the log writer does (one transaction per batch), and prints the log
//! writer's thread CPU time per message (user + system, `CLOCK_THREAD_CPUTIME_ID`: what the
//! commit costs the writer, the WAL `pwrite`s included, and little disturbed by other
//! processes on a shared machine) and the wall time per message.
//!
//! The shapes are those of `chatbench pairs --users 100`: 50 conversations, window 1
//! (50 messages a batch) and window 16 (800 messages a batch).

use clusterchat::store::{self, Append, ConvId};
use std::time::Instant;

/// Thread CPU time of the calling thread, in microseconds.
fn thread_cpu_us() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 * 1e6 + ts.tv_nsec as f64 / 1e3
}

fn run(convs: i64, per_conv: usize, messages: usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bench.db");
    let store = store::open(&format!("sqlite:{}", path.display()), 4).expect("open store");
    let mut users = Vec::new();
    for u in 0..convs * 2 {
        users.push(store.register(&format!("u{u}"), "x").expect("register"));
    }
    let body = format!(
        "{{\"msgid\":6,\"id\":1,\"toid\":2,\"msg\":\"{}\"}}",
        "x".repeat(60)
    );
    let pairs: Vec<(i64, i64)> = (0..convs as usize)
        .map(|i| (users[2 * i], users[2 * i + 1]))
        .collect();
    let batch: Vec<Append<'_>> = pairs
        .iter()
        .flat_map(|&(a, b)| {
            std::iter::repeat_n(
                Append {
                    conv: ConvId::pair(a, b),
                    sender: a,
                    cmid: None,
                    body: &body,
                    created_ms: 1_700_000_000_000,
                },
                per_conv,
            )
        })
        .collect();
    let batches = messages.div_ceil(batch.len());
    // Warm up: the tables' first pages and the statement cache.
    for _ in 0..batches / 10 + 1 {
        store.append(&batch).expect("append");
    }
    let (cpu0, wall0) = (thread_cpu_us(), Instant::now());
    for _ in 0..batches {
        store.append(&batch).expect("append");
    }
    let n = (batches * batch.len()) as f64;
    let appended = (thread_cpu_us() - cpu0, wall0.elapsed());
    println!(
        "{convs:>4} convs x {per_conv:>3} msgs a batch: {:>6.2} µs CPU/msg, {:>6.2} µs wall/msg, \
         {:>7.1} µs CPU/batch ({} messages)",
        appended.0 / n,
        appended.1.as_secs_f64() * 1e6 / n,
        appended.0 / batches as f64,
        n
    );
    if convs == 50 && per_conv == 1 {
        // Pages of 64 (a legacy login's backlog page) read at once, with whatever tail the
        // appends left, and again once the checkpointer has indexed it.
        for when in ["right after the appends", "after a pause"] {
            let conv = batch[0].conv;
            let per_conv = (batches + batches / 10 + 1) as i64;
            let (cpu0, reads) = (thread_cpu_us(), 500);
            for r in 0..reads {
                let after = (r * 7919) % per_conv;
                store.read_after(conv, after, 64).expect("read");
            }
            println!(
                "     read_after, a page of 64, {when}: {:>7.1} µs CPU/read",
                (thread_cpu_us() - cpu0) / reads as f64
            );
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
    }
}

fn main() {
    let messages: usize = std::env::var("LOG_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    run(50, 1, messages);
    run(50, 16, messages);
    run(500, 1, messages);
    run(1, 50, messages);
}
