//! The online-user table (user id → connection) and the per-user locks that make "deliver or
//! store offline" and "log in and read offline messages" exclusive.
//!
//! A login first *joins* the table: messages that arrive meanwhile are held in the entry's
//! backlog, and are written right after the login reply, in order. So a message is either in
//! the offline store before the login reads it, or delivered after the reply: never lost,
//! never twice.

use super::context::ChatConn;
use crate::sync::LockExt;
use clusterchat_net::Bytes;
use clusterchat_proto::UserId;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

const SHARDS: usize = 64;

/// One user's place in the table.
struct Entry {
    conn: ChatConn,
    /// `Some` while the login is still reading offline messages.
    backlog: Option<Vec<Bytes>>,
}

/// The result of [`OnlineUsers::deliver`].
#[derive(Debug)]
pub(crate) enum Delivery {
    /// Queued on the user's connection (or its login backlog).
    Queued,
    /// The user has no connection on this server; the frame is handed back.
    NotHere(Bytes),
}

/// Users online on this server. Shards keep lock hold times short and contention low. A shard
/// lock is held for a map operation and, in [`deliver`](Self::deliver) and
/// [`finish_login`](Self::finish_login), for queueing frames to the connection's loop (a
/// push on the loop's task queue and at most one wake-up write); never across socket IO or a
/// database call.
pub(crate) struct OnlineUsers {
    shards: Vec<Mutex<HashMap<UserId, Entry>>>,
}

impl Default for OnlineUsers {
    fn default() -> Self {
        OnlineUsers {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }
}

impl OnlineUsers {
    fn shard(&self, user: UserId) -> MutexGuard<'_, HashMap<UserId, Entry>> {
        self.shards[user.rem_euclid(SHARDS as i64) as usize].locked()
    }

    /// Queues `frame` for `user` if they are online here on an open connection. Thread safe,
    /// never blocks on IO. A connection that closed but is not yet removed counts as gone, so
    /// the caller stores the frame offline in order with the user's other messages.
    pub(crate) fn deliver(&self, user: UserId, frame: Bytes) -> Delivery {
        let mut shard = self.shard(user);
        match shard.get_mut(&user) {
            Some(Entry {
                backlog: Some(held),
                ..
            }) => {
                held.push(frame);
                Delivery::Queued
            }
            Some(Entry { conn, .. }) if !conn.is_closed() => {
                conn.deliver(frame, user as u64);
                Delivery::Queued
            }
            _ => Delivery::NotHere(frame),
        }
    }

    /// The open connection `user` has here, if any.
    pub(crate) fn connection(&self, user: UserId) -> Option<ChatConn> {
        self.shard(user)
            .get(&user)
            .filter(|e| !e.conn.is_closed())
            .map(|e| e.conn.clone())
    }

    /// Starts a login: `conn` becomes `user`'s connection with an empty backlog, replacing a
    /// stale (closed) one.
    pub(crate) fn begin_login(&self, user: UserId, conn: &ChatConn) {
        self.shard(user).insert(
            user,
            Entry {
                conn: conn.clone(),
                backlog: Some(Vec::new()),
            },
        );
    }

    /// Ends a login after its reply was queued: writes the held messages, in order, then lets
    /// deliveries go straight to the connection.
    pub(crate) fn finish_login(&self, user: UserId, conn: &ChatConn) {
        let mut shard = self.shard(user);
        if let Some(entry) = shard.get_mut(&user) {
            if entry.conn.id() == conn.id() {
                for frame in entry.backlog.take().unwrap_or_default() {
                    conn.deliver(frame, user as u64);
                }
            }
        }
    }

    /// Removes `user` if `conn` is still their connection; returns the held backlog, if the
    /// login never finished (the caller stores it offline).
    pub(crate) fn remove(&self, user: UserId, conn: &ChatConn) -> Vec<Bytes> {
        let mut shard = self.shard(user);
        match shard.get(&user) {
            Some(e) if e.conn.id() == conn.id() => shard
                .remove(&user)
                .and_then(|e| e.backlog)
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// The users online here (a snapshot).
    pub(crate) fn users(&self) -> Vec<UserId> {
        self.shards
            .iter()
            .flat_map(|s| s.locked().keys().copied().collect::<Vec<_>>())
            .collect()
    }
}

/// Striped mutexes, one stripe per user id modulo the count: held while deciding between
/// "deliver" and "store offline" for a user, and while a login of that user joins the table
/// and reads its offline messages. Only worker threads take them (they may be held across a
/// database call); IO threads never do.
pub(crate) struct UserLocks {
    stripes: Vec<Mutex<()>>,
}

impl Default for UserLocks {
    fn default() -> Self {
        UserLocks {
            stripes: (0..256).map(|_| Mutex::new(())).collect(),
        }
    }
}

impl UserLocks {
    /// Locks `user`'s stripe.
    pub(crate) fn lock(&self, user: UserId) -> MutexGuard<'_, ()> {
        self.stripes[user.rem_euclid(self.stripes.len() as i64) as usize].locked()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::ConnContext;
    use clusterchat_net::{ConnRef, Handler, ServerOptions, TcpServer};
    use std::io::{BufRead, BufReader};
    use std::net::TcpStream;
    use std::sync::{mpsc, Arc};
    use std::time::Duration;

    /// Hands each new connection to the test; echoes nothing.
    struct Grab(Mutex<mpsc::Sender<ChatConn>>);

    impl Handler<ConnContext> for Grab {
        fn on_connection(&self, conn: &ConnRef<ConnContext>) {
            let _ = self.0.locked().send(conn.clone());
        }
        fn on_message(&self, _conn: &ConnRef<ConnContext>, input: &[u8]) -> usize {
            input.len()
        }
        fn on_close(&self, _conn: &ConnRef<ConnContext>) {}
    }

    /// A real connection: the server side's handle and the client's reader.
    fn connection() -> (ChatConn, BufReader<TcpStream>, impl Drop) {
        let (tx, rx) = mpsc::channel();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let options = ServerOptions {
            io_threads: 1,
            max_output: 1 << 20,
        };
        let server = TcpServer::start(listener, Arc::new(Grab(Mutex::new(tx))), options).unwrap();
        let client = TcpStream::connect(server.local_addr()).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let conn = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        struct Stop(Option<clusterchat_net::ServerHandle<ConnContext>>);
        impl Drop for Stop {
            fn drop(&mut self) {
                self.0.take().unwrap().stop();
            }
        }
        (conn, BufReader::new(client), Stop(Some(server)))
    }

    fn line(reader: &mut BufReader<TcpStream>) -> String {
        let mut s = String::new();
        reader.read_line(&mut s).unwrap();
        s.trim_end().to_string()
    }

    #[test]
    fn messages_during_a_login_wait_for_its_reply_then_come_in_order() {
        let table = OnlineUsers::default();
        let (conn, mut client, _server) = connection();
        assert!(matches!(
            table.deliver(7, Bytes::from("x")),
            Delivery::NotHere(_)
        ));
        table.begin_login(7, &conn);
        for m in ["{\"m\":1}", "{\"m\":2}"] {
            assert!(matches!(table.deliver(7, Bytes::from(m)), Delivery::Queued));
        }
        conn.send(Bytes::from("{\"login\":\"reply\"}"));
        table.finish_login(7, &conn);
        assert!(matches!(
            table.deliver(7, Bytes::from("{\"m\":3}")),
            Delivery::Queued
        ));
        let got: Vec<String> = (0..4).map(|_| line(&mut client)).collect();
        assert_eq!(
            got,
            [
                r#"{"login":"reply"}"#,
                r#"{"m":1}"#,
                r#"{"m":2}"#,
                r#"{"m":3}"#
            ]
        );
        assert_eq!(table.users(), [7]);
        assert_eq!(table.connection(7).map(|c| c.id()), Some(conn.id()));
    }

    #[test]
    fn an_unfinished_login_hands_its_backlog_back_and_others_cannot_remove_it() {
        let table = OnlineUsers::default();
        let (first, _c1, _s1) = connection();
        let (second, _c2, _s2) = connection();
        table.begin_login(9, &first);
        table.deliver(9, Bytes::from("held"));
        assert!(table.remove(9, &second).is_empty(), "not its entry");
        assert_eq!(table.users(), [9]);
        assert_eq!(table.remove(9, &first), [Bytes::from("held")]);
        assert!(table.users().is_empty());
        assert!(table.connection(9).is_none());
    }

    #[test]
    fn a_closed_connection_counts_as_gone() {
        let table = OnlineUsers::default();
        let (conn, client, server) = connection();
        table.begin_login(3, &conn);
        table.finish_login(3, &conn);
        drop(client);
        drop(server); // stops the loop: the connection is marked closed
        assert!(conn.is_closed());
        assert!(table.connection(3).is_none());
        match table.deliver(3, Bytes::from("late")) {
            Delivery::NotHere(frame) => assert_eq!(frame, Bytes::from("late")),
            Delivery::Queued => panic!("queued to a closed connection"),
        }
    }
}
