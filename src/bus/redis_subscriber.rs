//! The subscriber side of the Redis bus: one dedicated connection and one thread.
//!
//! The connection is a plain socket: any thread writes SUBSCRIBE / UNSUBSCRIBE commands on it
//! (encoded by the redis crate), and the subscriber thread blocks reading replies and messages
//! (parsed by the redis crate's parser). So a login's subscription goes out at once, with no
//! polling, and [`Subscriber::subscribe`] waits for Redis to confirm it: a message published
//! after a login has read its offline queue cannot miss the user.
//!
//! Subscriptions are counted per user (a user's new login may subscribe before their old,
//! vanished connection unsubscribes). When the connection breaks, the thread reconnects with
//! a backoff and subscribes every wanted user again by itself. Every connection, the first and
//! each reconnection, authenticates and selects the database first ([`Endpoint::connect`]).

use super::redis_endpoint::Endpoint;
use super::redis_names::Names;
use super::{BusError, BusEvent, Inbound};
use crate::sync::{LockExt, RwLockExt};
use clusterchat_proto::UserId;
use crossbeam_channel::{bounded, Sender};
use redis::Value;
use std::collections::HashMap;
use std::io::{BufReader, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long a login waits for Redis to confirm its subscription.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(2);
/// The connection's name in Redis: `clusterchat:<node>:subscriber`.
const ROLE: &str = "subscriber";
/// How long a TCP connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause between reconnection attempts.
const RETRY: Duration = Duration::from_millis(200);

/// The subscriber connection and its thread.
pub(super) struct Subscriber {
    state: Arc<State>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

struct State {
    endpoint: Arc<Endpoint>,
    names: Names,
    /// Subscription counts, and the socket to write commands on while connected. One lock so
    /// that the order of commands on the wire follows the order of count changes.
    subs: Mutex<Subs>,
    /// Logins waiting for their subscription to be confirmed, by channel.
    waiting: Mutex<HashMap<Vec<u8>, Vec<Sender<()>>>>,
    inbound: RwLock<Option<Inbound>>,
    stopping: AtomicBool,
}

#[derive(Default)]
struct Subs {
    count: HashMap<UserId, usize>,
    writer: Option<TcpStream>,
}

impl Subscriber {
    /// Connects and starts the thread; fails if Redis is unreachable or refuses now.
    pub(super) fn start(endpoint: Arc<Endpoint>, names: Names) -> Result<Subscriber, BusError> {
        let first = endpoint.connect(CONNECT_TIMEOUT, ROLE)?;
        let state = Arc::new(State {
            endpoint,
            names,
            subs: Mutex::new(Subs::default()),
            waiting: Mutex::new(HashMap::new()),
            inbound: RwLock::new(None),
            stopping: AtomicBool::new(false),
        });
        let thread = {
            let state = Arc::clone(&state);
            std::thread::Builder::new()
                .name("redis-subscriber".into())
                .spawn(move || state.run(first))
                .map_err(|e| BusError::Unavailable(format!("cannot start a thread: {e}")))?
        };
        Ok(Subscriber {
            state,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Where inbound messages go.
    pub(super) fn set_inbound(&self, inbound: Inbound) {
        *self.state.inbound.write_locked() = Some(inbound);
    }

    /// Counts one more subscription of `user`; the first one is sent to Redis and confirmed
    /// before this returns (or fails quietly if Redis is down: the user then stays local-only
    /// until the reconnection subscribes them).
    pub(super) fn subscribe(&self, user: UserId) {
        let channel = self.state.channel(user);
        let (tx, rx) = bounded(1);
        {
            let mut subs = self.state.subs.locked();
            let n = subs.count.entry(user).or_insert(0);
            *n += 1;
            if *n > 1 {
                return;
            }
            self.state
                .waiting
                .locked()
                .entry(channel.clone().into_bytes())
                .or_default()
                .push(tx);
            if !self.state.send(&mut subs, "SUBSCRIBE", &[channel.as_str()]) {
                return;
            }
        }
        if rx.recv_timeout(CONFIRM_TIMEOUT).is_err() {
            log::warn!("Redis did not confirm the subscription of user {user} in time");
        }
    }

    /// Counts one subscription of `user` less; the last one is unsubscribed in Redis.
    pub(super) fn unsubscribe(&self, user: UserId) {
        let mut subs = self.state.subs.locked();
        let Some(n) = subs.count.get_mut(&user) else {
            return;
        };
        *n -= 1;
        if *n == 0 {
            subs.count.remove(&user);
            let channel = self.state.channel(user);
            self.state
                .send(&mut subs, "UNSUBSCRIBE", &[channel.as_str()]);
        }
    }

    /// Stops the thread and closes the connection.
    pub(super) fn stop(&self) {
        self.state.stopping.store(true, Ordering::Release);
        if let Some(w) = self.state.subs.locked().writer.take() {
            let _ = w.shutdown(Shutdown::Both);
        }
        if let Some(t) = self.thread.locked().take() {
            let _ = t.join();
        }
    }
}

impl State {
    fn channel(&self, user: UserId) -> String {
        self.names.user_channel(user)
    }

    /// Writes one command while connected; false when not connected or the write failed
    /// (the reader thread notices the broken connection and reconnects).
    fn send(&self, subs: &mut Subs, command: &str, channels: &[&str]) -> bool {
        let Some(w) = subs.writer.as_mut() else {
            return false;
        };
        let packed = redis::cmd(command).arg(channels).get_packed_command();
        w.write_all(&packed).is_ok()
    }

    /// The thread: read until the connection breaks, reconnect, subscribe everyone again.
    fn run(self: Arc<Self>, first: TcpStream) {
        let mut stream = Some(first);
        let mut outage_logged = false;
        let mut reconnected = false;
        while !self.stopping.load(Ordering::Acquire) {
            let s = match stream.take() {
                Some(s) => s,
                None => match self.endpoint.connect(CONNECT_TIMEOUT, ROLE) {
                    Ok(s) => s,
                    Err(e) => {
                        if !outage_logged {
                            log::warn!("Redis subscriber disconnected ({e}); reconnecting");
                            outage_logged = true;
                        }
                        std::thread::sleep(RETRY);
                        continue;
                    }
                },
            };
            if let Err(e) = self.resubscribe_all(&s) {
                log::debug!("Redis resubscription failed: {e}");
                std::thread::sleep(RETRY);
                continue;
            }
            if reconnected || outage_logged {
                log::info!("Redis subscriber reconnected; local users subscribed again");
                self.emit(BusEvent::Reconnected);
            }
            outage_logged = false;
            reconnected = true;
            let err = self.read_loop(s);
            self.subs.locked().writer = None;
            if !self.stopping.load(Ordering::Acquire) {
                log::warn!("Redis subscriber connection lost ({err}); reconnecting");
                outage_logged = true;
            }
        }
    }

    /// Installs `s` as the command socket and subscribes every wanted user in one command.
    fn resubscribe_all(&self, s: &TcpStream) -> std::io::Result<()> {
        let mut subs = self.subs.locked();
        let mut writer = s.try_clone()?;
        if !subs.count.is_empty() {
            let channels: Vec<String> = subs.count.keys().map(|u| self.channel(*u)).collect();
            writer.write_all(&redis::cmd("SUBSCRIBE").arg(channels).get_packed_command())?;
        }
        subs.writer = Some(writer);
        Ok(())
    }

    /// Reads replies and messages until the connection fails; returns why.
    fn read_loop(&self, s: TcpStream) -> String {
        let mut reader = BufReader::new(s);
        let mut parser = redis::Parser::new();
        loop {
            match parser.parse_value(&mut reader) {
                Ok(Value::Array(items)) | Ok(Value::Push { data: items, .. }) => {
                    self.on_push(items)
                }
                Ok(other) => log::debug!("unexpected Redis reply on the subscriber: {other:?}"),
                Err(e) => return e.to_string(),
            }
        }
    }

    fn on_push(&self, items: Vec<Value>) {
        let mut it = items.into_iter();
        let (Some(Value::BulkString(kind)), Some(Value::BulkString(channel))) =
            (it.next(), it.next())
        else {
            return;
        };
        match kind.as_slice() {
            b"message" => {
                let Some(Value::BulkString(payload)) = it.next() else {
                    return;
                };
                let user = self.names.user_of_channel(&channel);
                if let Some(user) = user {
                    self.emit(BusEvent::Message {
                        user,
                        frame: &payload,
                    });
                }
            }
            b"subscribe" => {
                let waiters = self.waiting.locked().remove(&channel);
                for w in waiters.unwrap_or_default() {
                    let _ = w.send(());
                }
            }
            _ => {}
        }
    }

    fn emit(&self, event: BusEvent<'_>) {
        if let Some(inbound) = self.inbound.read_locked().as_ref() {
            inbound(event);
        }
    }
}
