//! The pipelined publisher against a real Redis (the test Redis, under a key prefix of each
//! test's own), through a relay that the test controls: it may hold Redis's answers back
//! (Redis has run the commands, the publisher has not heard) and cut the connection. No
//! timings: each step waits for what it needs (a generous limit only fails a hung test).

use super::*;
use crate::bus::redis_route::decode;
use std::io::Read;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

/// How long a step may wait before the test counts as hung.
const HUNG: Duration = Duration::from_secs(20);
/// Answers every new connection gets through even while held: CLIENT SETNAME and PING of the
/// handshake, SCRIPT LOAD.
const HANDSHAKE: usize = 3;

/// The test Redis, if it answers (a skip otherwise, unless CHAT_REQUIRE_SERVICES=1).
fn redis_url() -> Option<String> {
    let url = std::env::var("CHAT_TEST_REDIS_URL").unwrap_or("redis://127.0.0.1:6379".into());
    let up = redis::Client::open(url.as_str())
        .and_then(|c| c.get_connection())
        .is_ok();
    match (
        up,
        std::env::var("CHAT_REQUIRE_SERVICES").as_deref() == Ok("1"),
    ) {
        (true, _) => Some(url),
        (false, true) => panic!("Redis at {url} unreachable"),
        (false, false) => None,
    }
}

/// The length of the first complete RESP2 value in `b`, if it is all there.
fn value_len(b: &[u8]) -> Option<usize> {
    if b.is_empty() {
        return None;
    }
    let line = b.windows(2).position(|w| w == b"\r\n")? + 2;
    let n = || -> Option<i64> { std::str::from_utf8(&b[1..line - 2]).ok()?.parse().ok() };
    match b[0] {
        b'+' | b'-' | b':' => Some(line),
        b'$' => match n()? {
            n if n < 0 => Some(line),
            n => (b.len() >= line + n as usize + 2).then_some(line + n as usize + 2),
        },
        b'*' => {
            let mut at = line;
            for _ in 0..n()?.max(0) {
                at += value_len(&b[at..])?;
            }
            Some(at)
        }
        _ => panic!("a RESP3 answer in a test"),
    }
}

/// What the relay shares with the test.
#[derive(Default)]
struct RelayState {
    /// Whether answers past each connection's handshake are held back.
    hold: bool,
    /// Held answers the test let through, still to forward.
    release: usize,
    /// Per connection: the socket to the publisher, answers read from Redis not yet
    /// forwarded, and how many answers it forwarded.
    conns: Vec<(TcpStream, Vec<u8>, usize)>,
}

impl RelayState {
    /// Forwards what may go on each connection, in one write per connection.
    fn flush(&mut self) {
        let hold = self.hold;
        for (to, pending, forwarded) in &mut self.conns {
            let mut ready = 0;
            while let Some(len) = value_len(&pending[ready..]) {
                if hold && *forwarded >= HANDSHAKE {
                    if self.release == 0 {
                        break;
                    }
                    self.release -= 1;
                }
                ready += len;
                *forwarded += 1;
            }
            let _ = to.write_all(&pending[..ready]);
            pending.drain(..ready);
        }
    }
}

/// A TCP relay between the publisher and Redis.
struct Relay {
    url: String,
    state: Arc<(Mutex<RelayState>, Condvar)>,
}

impl Relay {
    fn start(redis: &str) -> Relay {
        let upstream = redis.trim_start_matches("redis://").trim_end_matches('/');
        let upstream = upstream.to_string();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("redis://{}", listener.local_addr().unwrap());
        let state: Arc<(Mutex<RelayState>, Condvar)> = Arc::default();
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let client = client.unwrap();
                let server = TcpStream::connect(&upstream).unwrap();
                let at = {
                    let mut st = shared.0.lock().unwrap();
                    st.conns.push((client.try_clone().unwrap(), Vec::new(), 0));
                    st.conns.len() - 1
                };
                let (mut from, mut to) = (client, server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(Shutdown::Both);
                });
                let shared = Arc::clone(&shared);
                let mut from = server;
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n @ 1..) = from.read(&mut buf) {
                        let mut st = shared.0.lock().unwrap();
                        st.conns[at].1.extend_from_slice(&buf[..n]);
                        st.flush();
                        shared.1.notify_all();
                    }
                });
            }
        });
        Relay { url, state }
    }

    fn set_hold(&self, hold: bool) {
        let mut st = self.state.0.lock().unwrap();
        st.hold = hold;
        st.flush();
    }

    /// Lets the next `n` held answers through, together.
    fn release(&self, n: usize) {
        let mut st = self.state.0.lock().unwrap();
        st.release += n;
        st.flush();
    }

    /// Cuts every connection so far (their held answers are lost).
    fn cut(&self) {
        let mut st = self.state.0.lock().unwrap();
        for (to, pending, _) in &mut st.conns {
            pending.clear();
            let _ = to.shutdown(Shutdown::Both);
        }
    }
}

/// A message's outcome: (message, `Some(reached)`, or `None` for an error).
type Outcome = (u32, Option<bool>);

/// One test's cluster names, a receiving server `n2` (a subscriber on its channel) holding
/// user 7, and a publisher for `n1` through a relay.
struct Setup {
    relay: Relay,
    publisher: Publisher,
    received: Receiver<Vec<(Vec<UserId>, Vec<u8>)>>,
    /// What came from `received` and was not looked at yet.
    backlog: std::cell::RefCell<VecDeque<(Vec<UserId>, Vec<u8>)>>,
    /// Outcomes: (message, `Some(reached)`, or `None` for an error).
    dones: (Sender<Outcome>, Receiver<Outcome>),
    admin: redis::Connection,
    names: Names,
}

impl Setup {
    fn start(test: &str) -> Option<Setup> {
        static N: AtomicUsize = AtomicUsize::new(0);
        let url = redis_url()?;
        let prefix = format!(
            "cctest:{test}:{}:{}:",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let names = Names::new(&prefix);
        let client = redis::Client::open(url.as_str()).unwrap();
        let mut admin = client.get_connection().unwrap();
        redis::cmd("HSET")
            .arg(names.directory())
            .arg(7)
            .arg("n2/1")
            .query::<()>(&mut admin)
            .unwrap();
        let (tx, received) = unbounded();
        let channel = names.node_channel("n2");
        let mut sub = client.get_connection().unwrap();
        sub.set_read_timeout(Some(HUNG)).unwrap();
        std::thread::spawn(move || {
            let mut sub = sub.as_pubsub();
            sub.subscribe(&channel).unwrap();
            while let Ok(m) = sub.get_message() {
                let mut parts = Vec::new();
                decode(m.get_payload_bytes(), |u, f, _| {
                    parts.push((u.to_vec(), f.to_vec()))
                })
                .unwrap();
                if tx.send(parts).is_err() {
                    break;
                }
            }
        });
        // Until the subscriber hears, the channel has nobody: PUBLISH counts 0.
        let probe = names.node_channel("n2");
        while redis::cmd("PUBLISH")
            .arg(&probe)
            .arg("0:0:")
            .query::<i64>(&mut admin)
            .unwrap()
            == 0
        {
            std::thread::yield_now();
        }
        let relay = Relay::start(&url);
        let (endpoint, _) = Endpoint::parse(&relay.url).unwrap();
        let publisher = Publisher::start(
            Arc::new(endpoint.for_node("n1")),
            Arc::new(Health::new()),
            &names,
            "n1",
        )
        .unwrap();
        let setup = Setup {
            relay,
            publisher,
            received,
            backlog: Default::default(),
            dones: unbounded(),
            admin,
            names,
        };
        // The probe that found the subscriber (user 0, no frame).
        assert_eq!(setup.next_part(), (vec![0], vec![]));
        Some(setup)
    }

    /// Queues message `n` (frame `m<n>`) for `users`.
    fn publish(&self, n: u32, users: &[UserId], cached: bool) {
        self.publisher
            .publish(users.into(), Self::frame(n), self.done(n), cached);
    }

    /// Queues messages `ns` (for `to(n)` each) in one batch.
    fn publish_batch(&self, ns: std::ops::Range<u32>, to: impl Fn(u32) -> &'static [UserId]) {
        let batch = ns
            .map(|n| Outgoing {
                users: to(n).into(),
                frame: Self::frame(n),
                done: self.done(n),
            })
            .collect();
        self.publisher.publish_batch(batch);
    }

    fn frame(n: u32) -> Bytes {
        Bytes::from(format!("m{n}"))
    }

    /// Reports message `n`'s outcome to `dones`.
    fn done(&self, n: u32) -> PublishDone {
        let tx = self.dones.0.clone();
        Box::new(move |outcome| tx.send((n, outcome.ok())).unwrap())
    }

    /// The next (recipients, frame) the receiving server got.
    fn next_part(&self) -> (Vec<UserId>, Vec<u8>) {
        let mut backlog = self.backlog.borrow_mut();
        while backlog.is_empty() {
            backlog.extend(self.received.recv_timeout(HUNG).expect("a message in time"));
        }
        backlog.pop_front().unwrap()
    }

    /// The frame of the next message the receiving server got, for user 7.
    /// Publishes message 0 and waits for its outcome (the connection is up), then holds
    /// Redis's answers back from now on.
    fn answered_then_held(&self) {
        self.publish(0, &[7], false);
        assert_eq!(self.next_frame(), "m0");
        assert_eq!(self.next_done(), (0, Some(true)));
        self.relay.set_hold(true);
    }

    fn next_frame(&self) -> String {
        let (users, frame) = self.next_part();
        assert_eq!(users, [7]);
        String::from_utf8(frame).unwrap()
    }

    /// The next outcome handed out: (message, whether some server received it).
    fn next_done(&self) -> Outcome {
        self.dones.1.recv_timeout(HUNG).expect("an outcome in time")
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = redis::cmd("DEL")
            .arg(self.names.directory())
            .query::<()>(&mut self.admin);
    }
}

/// Messages queued in order, one by one or in batches, reach the receiving server in order,
/// once each, whether the script or the presence cache routes them (the first ones go
/// through the script, which teaches the cache, then straight to `n2`'s channel), and each
/// `done` comes once with whether some server received it (user 8 is online nowhere).
#[test]
fn queued_messages_go_out_in_order_and_each_is_answered_once() {
    let Some(mut s) = Setup::start("order") else {
        return;
    };
    let total = 600;
    let to = |n: u32| -> &'static [UserId] {
        if n % 3 == 2 {
            &[8]
        } else {
            &[7]
        }
    };
    let mut n = 0;
    while n < total {
        // Alternately one message alone and a batch of 1 to 40.
        let size = if n % 2 == 0 {
            1
        } else {
            (n % 40 + 1).min(total - n)
        };
        if size == 1 {
            s.publish(n, to(n), true);
        } else {
            s.publish_batch(n..n + size, to);
        }
        n += size;
    }
    for n in (0..total).filter(|n| n % 3 != 2) {
        assert_eq!(s.next_frame(), format!("m{n}"));
    }
    let mut dones: Vec<Outcome> = (0..total).map(|_| s.next_done()).collect();
    dones.sort();
    let want: Vec<_> = (0..total).map(|n| (n, Some(n % 3 != 2))).collect();
    assert_eq!(dones, want);
    s.publisher.stop();
    assert!(s.dones.1.try_recv().is_err(), "an outcome came twice");
}

/// Rounds go out while earlier rounds' answers are outstanding; when the connection is cut,
/// the rounds with no answer go again on a new connection, in order, and each outcome comes
/// once; a round answered before the cut is not sent again.
#[test]
fn a_cut_connection_sends_its_unanswered_rounds_again_in_order() {
    let Some(mut s) = Setup::start("cut") else {
        return;
    };
    s.answered_then_held();
    // Each goes out while the answers of the ones before are held back.
    for n in 1..=3 {
        s.publish(n, &[7], false);
        assert_eq!(s.next_frame(), format!("m{n}"));
    }
    s.relay.release(1);
    assert_eq!(s.next_done(), (1, Some(true)));
    // Cut first: letting the held answers through would answer m2 and m3.
    s.relay.cut();
    s.relay.set_hold(false);
    assert_eq!(s.next_frame(), "m2");
    assert_eq!(s.next_frame(), "m3");
    assert_eq!(s.next_done(), (2, Some(true)));
    assert_eq!(s.next_done(), (3, Some(true)));
    s.publish(4, &[7], false);
    assert_eq!(s.next_frame(), "m4");
    assert_eq!(s.next_done(), (4, Some(true)));
    s.publisher.stop();
    assert!(s.dones.1.try_recv().is_err(), "an outcome came twice");
}

/// A round sent again after a cut is not sent a third time: a second cut before its answer
/// fails it (once), and the rounds queued after it still go out in order.
#[test]
fn a_round_cut_twice_fails_once() {
    let Some(mut s) = Setup::start("cut2") else {
        return;
    };
    s.answered_then_held();
    for n in 1..=2 {
        s.publish(n, &[7], false);
        assert_eq!(s.next_frame(), format!("m{n}"));
    }
    s.relay.cut();
    // Sent again on the new connection (its handshake goes through); answers held again.
    assert_eq!(s.next_frame(), "m1");
    assert_eq!(s.next_frame(), "m2");
    s.relay.cut();
    assert_eq!(s.next_done(), (1, None));
    assert_eq!(s.next_done(), (2, None));
    s.publisher.stop();
    assert!(s.dones.1.try_recv().is_err(), "an outcome came twice");
}

/// Answers that arrive together are all taken: none waits unseen in a read-ahead buffer while
/// the publisher waits on the socket for more (it would time out and fail its round).
#[test]
fn answers_that_arrive_together_are_all_taken() {
    let Some(mut s) = Setup::start("together") else {
        return;
    };
    s.answered_then_held();
    for n in 1..=3 {
        s.publish(n, &[7], false);
        assert_eq!(s.next_frame(), format!("m{n}"));
    }
    s.relay.release(3);
    for n in 1..=3 {
        assert_eq!(s.next_done(), (n, Some(true)));
    }
    s.publisher.stop();
    assert!(s.dones.1.try_recv().is_err(), "an outcome came twice");
}
