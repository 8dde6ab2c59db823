//! The subscriber side of the Redis bus: one dedicated connection, one thread, one channel.
//!
//! The server listens on its own channel (`<prefix>node:<node>`) only: what other servers
//! route here is a payload of messages, each with the local users it is for
//! ([`super::redis_route::decode`]), handed to the server's callback in arrival order, one
//! event per message (it fans the frame out to those users' connections).
//!
//! [`Subscriber::start`] returns once Redis has confirmed the subscription, before the server
//! takes any login: a message routed here after a login wrote its directory entry cannot miss
//! the server. When the connection breaks, the thread reconnects with a backoff, subscribes
//! again and, once Redis confirms it, runs the `restore` hook (the liveness key and this
//! server's directory entries written again: a restarted Redis has lost them) before it
//! reports [`BusEvent::Reconnected`], so that the log is read for every local user only once
//! new messages reach them again. Every connection, the first and each reconnection,
//! authenticates and selects the database first ([`Endpoint::connect`]).

use super::redis_endpoint::Endpoint;
use super::redis_route::decode;
use super::{BusError, BusEvent, Inbound};
use crate::sync::{LockExt, RwLockExt};
use redis::Value;
use std::io::{BufReader, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

/// The connection's name in Redis: `clusterchat:<node>:subscriber`.
const ROLE: &str = "subscriber";
/// How long a TCP connect, and the confirmation of the first subscription, may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause between reconnection attempts.
const RETRY: Duration = Duration::from_millis(200);

/// What the subscriber runs after a reconnection, before it reports it (on its thread).
pub(super) type Restore = Box<dyn Fn() -> Result<(), BusError> + Send + Sync>;

/// The subscriber connection and its thread.
pub(super) struct Subscriber {
    state: Arc<State>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

struct State {
    endpoint: Arc<Endpoint>,
    channel: String,
    restore: Restore,
    /// The socket, while connected, so that `stop` can shut it down.
    socket: Mutex<Option<TcpStream>>,
    inbound: RwLock<Option<Inbound>>,
    stopping: AtomicBool,
}

impl Subscriber {
    /// Connects, subscribes to `channel` and waits for Redis to confirm it, then starts the
    /// thread; fails if Redis is unreachable or refuses now.
    pub(super) fn start(
        endpoint: Arc<Endpoint>,
        channel: String,
        restore: Restore,
    ) -> Result<Subscriber, BusError> {
        let first = endpoint.connect(CONNECT_TIMEOUT, ROLE)?;
        let state = Arc::new(State {
            endpoint,
            channel,
            restore,
            socket: Mutex::new(None),
            inbound: RwLock::new(None),
            stopping: AtomicBool::new(false),
        });
        let mut reader = state
            .subscribe(&first)
            .map_err(|e| BusError::Unavailable(format!("cannot subscribe: {e}")))?;
        first
            .set_read_timeout(Some(CONNECT_TIMEOUT))
            .map_err(|e| BusError::Unavailable(e.to_string()))?;
        state
            .confirmed(&mut reader, &mut redis::Parser::new())
            .map_err(BusError::Unavailable)?;
        first
            .set_read_timeout(None)
            .map_err(|e| BusError::Unavailable(e.to_string()))?;
        let thread = {
            let state = Arc::clone(&state);
            std::thread::Builder::new()
                .name("redis-subscriber".into())
                .spawn(move || state.run(reader))
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

    /// Reports [`BusEvent::Reconnected`] (the bus restored this server's directory entries
    /// after they failed to be written).
    pub(super) fn report_restored(&self) {
        self.state.emit(BusEvent::Reconnected);
    }

    /// Stops the thread and closes the connection.
    pub(super) fn stop(&self) {
        self.state.stopping.store(true, Ordering::Release);
        if let Some(s) = self.state.socket.locked().take() {
            let _ = s.shutdown(Shutdown::Both);
        }
        if let Some(t) = self.thread.locked().take() {
            let _ = t.join();
        }
    }
}

impl State {
    /// Installs `s` as the current socket and sends SUBSCRIBE; returns the reader.
    fn subscribe(&self, s: &TcpStream) -> std::io::Result<BufReader<TcpStream>> {
        let mut writer = s.try_clone()?;
        *self.socket.locked() = Some(s.try_clone()?);
        writer.write_all(
            &redis::cmd("SUBSCRIBE")
                .arg(&self.channel)
                .get_packed_command(),
        )?;
        Ok(BufReader::new(writer))
    }

    /// Reads until Redis confirms the subscription.
    fn confirmed(
        &self,
        reader: &mut BufReader<TcpStream>,
        parser: &mut redis::Parser,
    ) -> Result<(), String> {
        loop {
            match parser.parse_value(&mut *reader) {
                Ok(Value::Array(items)) | Ok(Value::Push { data: items, .. }) => {
                    if matches!(items.first(), Some(Value::BulkString(k)) if k == b"subscribe") {
                        return Ok(());
                    }
                }
                Ok(Value::ServerError(e)) => return Err(format!("SUBSCRIBE refused: {e:?}")),
                Ok(other) => log::debug!("unexpected Redis reply on the subscriber: {other:?}"),
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    /// The thread: read until the connection breaks, reconnect, subscribe again, restore.
    fn run(self: Arc<Self>, first: BufReader<TcpStream>) {
        let mut reader = Some(first);
        let mut outage_logged = false;
        while !self.stopping.load(Ordering::Acquire) {
            let mut r = match reader.take() {
                Some(r) => r,
                None => match self.reconnect() {
                    Ok(r) => r,
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
            if outage_logged {
                log::info!("Redis subscriber reconnected; local users are in the directory again");
                self.emit(BusEvent::Reconnected);
                outage_logged = false;
            }
            let err = self.read_loop(&mut r);
            self.socket.locked().take();
            if !self.stopping.load(Ordering::Acquire) {
                log::warn!("Redis subscriber connection lost ({err}); reconnecting");
                outage_logged = true;
            }
        }
    }

    /// Connects, subscribes, waits for the confirmation and restores this server's entries.
    fn reconnect(&self) -> Result<BufReader<TcpStream>, String> {
        let s = self
            .endpoint
            .connect(CONNECT_TIMEOUT, ROLE)
            .map_err(|e| e.to_string())?;
        let mut reader = self.subscribe(&s).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(CONNECT_TIMEOUT))
            .map_err(|e| e.to_string())?;
        self.confirmed(&mut reader, &mut redis::Parser::new())?;
        s.set_read_timeout(None).map_err(|e| e.to_string())?;
        (self.restore)().map_err(|e| e.to_string())?;
        Ok(reader)
    }

    /// Reads messages until the connection fails; returns why.
    fn read_loop(&self, reader: &mut BufReader<TcpStream>) -> String {
        let mut parser = redis::Parser::new();
        loop {
            match parser.parse_value(&mut *reader) {
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
        if kind != b"message" || channel != self.channel.as_bytes() {
            return;
        }
        let Some(Value::BulkString(payload)) = it.next() else {
            return;
        };
        let inbound = self.inbound.read_locked();
        let Some(inbound) = inbound.as_ref() else {
            return;
        };
        // Each frame is copied out of the payload: a view would keep the whole payload (a
        // batch of up to `MAX_BYTES` for many receivers) alive for as long as one slow
        // receiver holds its frame, memory that no output limit counts.
        let decoded = decode(&payload, |users, frame, direct| {
            inbound(BusEvent::Message {
                users,
                frame: bytes::Bytes::copy_from_slice(frame),
                direct,
            })
        });
        if decoded.is_err() {
            log::warn!(
                "ignored the malformed rest of a bus payload on {}",
                self.channel
            );
        }
    }

    fn emit(&self, event: BusEvent<'_>) {
        if let Some(inbound) = self.inbound.read_locked().as_ref() {
            inbound(event);
        }
    }
}
