//! Setup through the protocol itself: register the bench's users and log them in, on several
//! blocking clients at once (each request costs the server an argon2 hash, so setup is
//! CPU-bound on the server and gains from the server's worker threads).

use crate::{client_err, io_err, BenchError, Result};
use clusterchat_proto::client::Client;
use clusterchat_proto::UserId;
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
    let prefix = unique_prefix();
    parallel(n, threads, deadline, |i| {
        register(targets[i % targets.len()], &format!("{prefix}-{i}"))
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
}
