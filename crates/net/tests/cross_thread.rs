//! `send` from threads that are not the connection's loop: frames arrive in the order each
//! thread queued them, none lost, and a loop asleep in poll is woken for them.

mod common;

use clusterchat_net::Bytes;
use common::{start, Client};
use std::collections::HashMap;
use std::sync::Arc;
use std::thread::sleep;
use std::time::Duration;

#[test]
fn frames_from_many_threads_arrive_in_the_order_each_thread_queued_them() {
    const THREADS: usize = 8;
    const FRAMES: usize = 3000;
    let (server, _recorder, calls) = start(false, 2, 64 << 20);
    let mut client = Client::connect(server.local_addr());
    let conn = calls.next_conn();
    let senders: Vec<_> = (0..THREADS)
        .map(|t| {
            let conn = Arc::clone(&conn);
            std::thread::spawn(move || {
                for i in 0..FRAMES {
                    conn.send(Bytes::from(format!("{t} {i}")));
                }
            })
        })
        .collect();
    let mut next: HashMap<usize, usize> = HashMap::new();
    for _ in 0..THREADS * FRAMES {
        let line = client.line();
        let (t, i) = line.split_once(' ').expect("\"thread index\"");
        let (t, i): (usize, usize) = (t.parse().expect("thread"), i.parse().expect("index"));
        let expected = next.entry(t).or_insert(0);
        assert_eq!(i, *expected, "thread {t}'s frames out of order or lost");
        *expected += 1;
    }
    assert_eq!(next.len(), THREADS);
    assert!(next.values().all(|&n| n == FRAMES));
    for s in senders {
        s.join().expect("sender");
    }
    server.stop();
}

#[test]
fn a_send_from_another_thread_wakes_an_idle_loop() {
    let (server, _recorder, calls) = start(false, 1, 1 << 20);
    let mut client = Client::connect(server.local_addr());
    let conn = calls.next_conn();
    for round in 0..50 {
        // No IO is pending: the loop goes back to sleep in poll (the pause makes it likely
        // that it is asleep, not merely about to be); only the waker can get it going.
        sleep(Duration::from_millis(5));
        let conn = Arc::clone(&conn);
        std::thread::spawn(move || conn.send(Bytes::from(format!("wake {round}"))))
            .join()
            .expect("sender");
        assert_eq!(client.line(), format!("wake {round}"));
    }
    server.stop();
}
