//! Setup through the protocol itself: register the bench's users and log them in, on several
//! blocking clients at once (each request costs the server an argon2 hash, so setup is
//! CPU-bound on the server and gains from the server's worker threads).

use crate::stamp;
use crate::{client_err, io_err, BenchError, Result};
use clusterchat_proto::client::{Client, ClientError};
use clusterchat_proto::codec::{next_frame, Next};
use clusterchat_proto::request::{Login, Request};
use clusterchat_proto::{msgid, UserId};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The password of every bench user.
pub const PASSWORD: &str = "bench-password";

/// A registered bench user.
#[derive(Debug, Clone)]
pub struct BenchUser {
    /// Account id the server gave.
    pub id: UserId,
    /// Its unique name, `bench-<pid>-<run>-<n>`.
    pub name: String,
    /// The server it connects to.
    pub target: SocketAddr,
}

/// A name prefix unique to this process and run, so reruns on the same database never clash.
pub fn unique_prefix() -> String {
    static RUN: AtomicU64 = AtomicU64::new(0);
    let run = RUN.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("bench-{}-{run}-{nanos:x}", std::process::id())
}

/// Runs `f(i)` for `i in 0..n` on `threads` threads; results in index order. Stops early on
/// the first error (which it returns) or when `deadline` passes.
pub fn parallel<T: Send>(
    n: usize,
    threads: usize,
    deadline: Instant,
    f: impl Fn(usize) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    let next = AtomicUsize::new(0);
    let slots: Vec<Mutex<Option<T>>> = (0..n).map(|_| Mutex::new(None)).collect();
    let failure: Mutex<Option<BenchError>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads.clamp(1, n.max(1)) {
            s.spawn(|| loop {
                if failure.lock().expect("not poisoned").is_some() {
                    return;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return;
                }
                let r = if Instant::now() > deadline {
                    Err(BenchError::Timeout(format!(
                        "setup unfinished at item {i} of {n}"
                    )))
                } else {
                    f(i)
                };
                match r {
                    Ok(v) => *slots[i].lock().expect("not poisoned") = Some(v),
                    Err(e) => {
                        failure.lock().expect("not poisoned").get_or_insert(e);
                        return;
                    }
                }
            });
        }
    });
    if let Some(e) = failure.into_inner().expect("not poisoned") {
        return Err(e);
    }
    Ok(slots
        .into_iter()
        .map(|m| {
            m.into_inner()
                .expect("not poisoned")
                .expect("every slot filled")
        })
        .collect())
}

/// Connects a blocking client that ends its frames with NUL, like the old C++ client.
pub fn connect(target: SocketAddr) -> Result<Client> {
    let stream = TcpStream::connect_timeout(&target, Duration::from_secs(10))
        .map_err(io_err(format!("connecting to {target}")))?;
    Ok(Client::from_stream(stream)
        .map_err(client_err("setting up a client"))?
        .use_nul())
}

/// Registers one user named `name` on `target`.
pub fn register(target: SocketAddr, name: &str) -> Result<BenchUser> {
    let mut c = connect(target)?;
    let id = c
        .register(name, PASSWORD)
        .map_err(client_err(format!("registering {name}")))?;
    Ok(BenchUser {
        id,
        name: name.to_string(),
        target,
    })
}

/// Registers `n` new users, user `i` on `targets[i % len]`.
pub fn register_users(
    targets: &[SocketAddr],
    n: usize,
    threads: usize,
    deadline: Instant,
) -> Result<Vec<BenchUser>> {
    register_placed(n, threads, deadline, |i| targets[i % targets.len()])
}

/// Registers `n` new users, user `i` on `place(i)` (a [`crate::Layout`]'s choice).
pub fn register_placed(
    n: usize,
    threads: usize,
    deadline: Instant,
    place: impl Fn(usize) -> SocketAddr + Sync,
) -> Result<Vec<BenchUser>> {
    let prefix = unique_prefix();
    parallel(n, threads, deadline, |i| {
        register(place(i), &format!("{prefix}-{i}"))
    })
}

/// Logs `user` in over `client` and hands back the bare socket for a measuring loop (the
/// client's other handles are dropped, so one file descriptor stays per connection).
pub fn login_stream(mut client: Client, user: &BenchUser) -> Result<TcpStream> {
    client
        .login(user.id, PASSWORD)
        .map_err(client_err(format!("logging in {}", user.name)))?;
    client
        .stream()
        .try_clone()
        .map_err(io_err("keeping the logged-in socket"))
}

/// Logs every user in on its own connection; sockets in user order.
pub fn login_users(
    users: &[BenchUser],
    threads: usize,
    deadline: Instant,
) -> Result<Vec<TcpStream>> {
    parallel(users.len(), threads, deadline, |i| {
        login_stream(connect(users[i].target)?, &users[i])
    })
}

/// Largest LOGIN_ACK [`login_raw`] accepts: a server without the message log puts every
/// offline message into it.
pub const MAX_LOGIN_ACK: usize = 1 << 30;

/// Logs `user` in over a connected `stream` (as a sync session when `sync`), reading the reply
/// itself so that nothing the server sends right behind the LOGIN_ACK is lost: a sync
/// session's stored messages and SYNC_DONE follow at once. Returns the socket, the bytes that
/// came after the LOGIN_ACK (to be read by the measuring loop first) and the LOGIN_ACK.
/// Each read waits at most `read_timeout`.
pub fn login_raw(
    mut stream: TcpStream,
    user: &BenchUser,
    sync: bool,
    read_timeout: Duration,
) -> Result<(TcpStream, Vec<u8>, Value)> {
    let what = format!("logging in {}", user.name);
    stream
        .set_read_timeout(Some(read_timeout))
        .map_err(io_err(what.clone()))?;
    let mut frame = Login {
        id: Some(user.id),
        name: None,
        password: PASSWORD.into(),
        sync,
        takeover: false,
    }
    .encode()
    .to_string()
    .into_bytes();
    frame.push(0);
    stream.write_all(&frame).map_err(io_err(what.clone()))?;
    let mut buf: Vec<u8> = Vec::new();
    let mut before = Vec::new();
    let mut pos = 0;
    let mut chunk = vec![0u8; 256 * 1024];
    let mut scan = true;
    loop {
        if scan {
            match next_frame(&buf[pos..], MAX_LOGIN_ACK) {
                Next::Frame {
                    start,
                    end,
                    consumed,
                } => {
                    let f = &buf[pos + start..pos + end];
                    if matches!(stamp::msgid(f), Some(msgid::LOGIN_ACK) | Some(msgid::ERROR)) {
                        let ack: Value = serde_json::from_slice(f).map_err(|e| {
                            client_err(what.clone())(ClientError::BadFrame(e.to_string()))
                        })?;
                        if let Some(errno) = ack["errno"].as_i64().filter(|&e| e != 0) {
                            return Err(client_err(what)(ClientError::Refused {
                                errno,
                                errmsg: ack["errmsg"].as_str().unwrap_or("").into(),
                            }));
                        }
                        before.extend_from_slice(&buf[pos + consumed..]);
                        return Ok((stream, before, ack));
                    }
                    before.extend_from_slice(f);
                    before.push(0);
                    pos += consumed;
                    continue;
                }
                Next::Incomplete { skip } => pos += skip,
                Next::Invalid { consumed } => {
                    pos += consumed;
                    continue;
                }
                Next::TooLarge => {
                    return Err(client_err(what)(ClientError::BadFrame(
                        "LOGIN_ACK too large".into(),
                    )))
                }
            }
        }
        buf.drain(..pos);
        pos = 0;
        let n = match stream.read(&mut chunk) {
            Ok(0) => return Err(client_err(what)(ClientError::Closed)),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(client_err(what)(ClientError::Timeout))
            }
            Err(e) => return Err(io_err(what)(e)),
        };
        // A frame can only end at a NUL or newline the server puts after it: rescanning a
        // large LOGIN_ACK after every chunk without one would be quadratic.
        scan = chunk[..n].iter().any(|&b| b == 0 || b == b'\n');
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Logs every user in on its own connection, as sync sessions when `sync`: sockets in user
/// order, each with the bytes that followed its LOGIN_ACK. Without `sync` this is
/// [`login_users`] (the old client's login) with nothing left over.
pub fn login_all(
    users: &[BenchUser],
    threads: usize,
    deadline: Instant,
    sync: bool,
) -> Result<Vec<(TcpStream, Vec<u8>)>> {
    if !sync {
        return Ok(login_users(users, threads, deadline)?
            .into_iter()
            .map(|s| (s, Vec::new()))
            .collect());
    }
    parallel(users.len(), threads, deadline, |i| {
        let u = &users[i];
        let stream = TcpStream::connect_timeout(&u.target, Duration::from_secs(10))
            .map_err(io_err(format!("connecting to {}", u.target)))?;
        stream
            .set_nodelay(true)
            .map_err(io_err("setting nodelay"))?;
        let (stream, rest, _) = login_raw(stream, u, true, Duration::from_secs(10))?;
        Ok((stream, rest))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_keeps_order_and_reports_errors() {
        let far = Instant::now() + Duration::from_secs(60);
        let v = parallel(100, 4, far, |i| Ok(i * 2)).unwrap();
        assert_eq!(v, (0..100).map(|i| i * 2).collect::<Vec<_>>());
        let e = parallel(10, 3, far, |i| {
            if i == 5 {
                Err(BenchError::Settings("five".into()))
            } else {
                Ok(i)
            }
        });
        assert!(matches!(e, Err(BenchError::Settings(_))));
        let late = parallel(3, 1, Instant::now() - Duration::from_secs(1), Ok);
        assert!(matches!(late, Err(BenchError::Timeout(_))));
        assert!(parallel(0, 4, far, Ok).unwrap().is_empty());
        assert_ne!(unique_prefix(), unique_prefix());
    }

    /// A one-shot fake server: reads one request (up to its NUL) and answers `reply`, then
    /// hands back the request.
    fn fake(reply: &'static [u8]) -> (SocketAddr, std::thread::JoinHandle<Vec<u8>>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut req = Vec::new();
            let mut b = [0u8; 1];
            while s.read(&mut b).unwrap() == 1 && b[0] != 0 {
                req.push(b[0]);
            }
            // In three pieces, the LOGIN_ACK split in the middle.
            let cut = reply.len() / 3;
            s.write_all(&reply[..cut]).unwrap();
            std::thread::sleep(Duration::from_millis(20));
            s.write_all(&reply[cut..]).unwrap();
            std::thread::sleep(Duration::from_millis(20));
            req
        });
        (addr, t)
    }

    #[test]
    fn a_raw_login_keeps_what_follows_the_login_ack() {
        let (addr, t) = fake(
            b"{\"msgid\":6,\"id\":3,\"msg\":\"early\"}\0{\"msgid\":2,\"errno\":0,\"id\":7,\"offlinemsg\":[]}\0\
              {\"msgid\":6,\"id\":3,\"seq\":1}\0{\"msgid\":15,\"count\":1}\0",
        );
        let user = BenchUser {
            id: 7,
            name: "u".into(),
            target: addr,
        };
        let s = TcpStream::connect(addr).unwrap();
        let (_s, rest, ack) = login_raw(s, &user, true, Duration::from_secs(5)).unwrap();
        let req: Value = serde_json::from_slice(&t.join().unwrap()).unwrap();
        assert_eq!(req["sync"], true);
        assert_eq!(req["id"], 7);
        assert_eq!(ack["id"], 7);
        let mut frames = Vec::new();
        crate::conn::split_frames(&rest, |f| frames.push(stamp::msgid(f)));
        assert_eq!(frames, [Some(6), Some(6), Some(15)], "early frame kept too");

        let (addr, t) = fake(b"{\"msgid\":2,\"errno\":1,\"errmsg\":\"no\"}\0");
        let s = TcpStream::connect(addr).unwrap();
        let refused = login_raw(s, &user, false, Duration::from_secs(5));
        let req: Value = serde_json::from_slice(&t.join().unwrap()).unwrap();
        assert!(req.get("sync").is_none());
        assert!(matches!(
            refused,
            Err(BenchError::Client {
                source: ClientError::Refused { errno: 1, .. },
                ..
            })
        ));
    }
}
