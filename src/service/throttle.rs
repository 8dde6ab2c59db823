//! Limits on what a client can make the server try: failed logins (per account and per source
//! address, with growing delays), registrations per address, chat messages per connection.
//! Each refusal is errno 109 ([`errno::RATE_LIMITED`]) saying when to retry.
//!
//! Every table here is bounded: an entry is forgotten once it no longer limits anything, and a
//! table at [`MAX_ENTRIES`] takes no new entries until that makes room (then new subjects pass
//! unlimited, and a warning says so: the alternative, evicting live entries, would let an
//! attacker reset their own delays).

use super::ServiceError;
use crate::sync::LockExt;
use clusterchat_proto::{errno, UserId};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The longest delay after failed logins.
pub(crate) const MAX_DELAY: Duration = Duration::from_secs(300);
/// A failure record is forgotten this long after the last failure (once no delay runs).
const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// Most subjects a table tracks at once.
pub(crate) const MAX_ENTRIES: usize = 100_000;

/// The source address as the limits count it: IPv4 (also IPv4-mapped IPv6) as is, IPv6 by its
/// /64 prefix (one host usually has a whole /64).
pub(crate) fn addr_key(peer: SocketAddr) -> IpAddr {
    match peer.ip().to_canonical() {
        IpAddr::V6(v6) => {
            let mut s = v6.segments();
            s[4..].fill(0);
            IpAddr::from(s)
        }
        v4 => v4,
    }
}

/// The 109 reply: "too many …; retry in N s" (N rounded up, at least 1).
pub(crate) fn rate_limited(what: &str, retry: Duration) -> ServiceError {
    let secs = retry.as_millis().div_ceil(1000).max(1);
    ServiceError::new(
        errno::RATE_LIMITED,
        format!("too many {what}; retry in {secs} s"),
    )
}

/// Who failed logins are counted for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Subject {
    /// An account (by id).
    Account(UserId),
    /// A source address ([`addr_key`]).
    Addr(IpAddr),
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
    until: Option<Instant>,
}

impl Failures {
    fn stale(&self, now: Instant) -> bool {
        self.until.is_none_or(|u| u <= now) && now.duration_since(self.last) > FORGET_AFTER
    }
}

/// Failed logins: after `max_failures` failures of a subject (with no success of the account
/// in between), each further attempt is refused until a delay has passed: `base`, then twice
/// as long after each further failure, at most [`MAX_DELAY`]. Refused attempts are not
/// counted (they cost nothing), so a flood cannot stretch the delay of a user who waits it out.
pub(crate) struct LoginThrottle {
    max_failures: u32,
    base: Duration,
    table: Mutex<HashMap<Subject, Failures>>,
    full: AtomicBool,
}

impl LoginThrottle {
    /// `max_failures` 0 turns the throttle off.
    pub(crate) fn new(max_failures: u32, base: Duration) -> Self {
        LoginThrottle {
            max_failures,
            base,
            table: Mutex::new(HashMap::new()),
            full: AtomicBool::new(false),
        }
    }

    /// `Err(wait)` while a subject must wait before its next attempt.
    pub(crate) fn check(&self, subjects: &[Subject], now: Instant) -> Result<(), Duration> {
        let table = self.table.locked();
        let wait = subjects
            .iter()
            .filter_map(|s| table.get(s)?.until)
            .filter(|u| *u > now)
            .map(|u| u - now)
            .max();
        wait.map_or(Ok(()), Err)
    }

    /// Counts a failed attempt of each subject.
    pub(crate) fn failed(&self, subjects: &[Subject], now: Instant) {
        if self.max_failures == 0 {
            return;
        }
        let mut table = self.table.locked();
        for s in subjects {
            if !table.contains_key(s) && !make_room(&mut table, &self.full, |f| f.stale(now)) {
                continue;
            }
            let f = table.entry(*s).or_insert(Failures {
                count: 0,
                last: now,
                until: None,
            });
            if f.stale(now) {
                f.count = 0;
            }
            f.count += 1;
            f.last = now;
            if f.count >= self.max_failures {
                let doublings = (f.count - self.max_failures).min(31);
                let delay = self.base.saturating_mul(1 << doublings).min(MAX_DELAY);
                f.until = Some(now + delay);
            }
        }
    }

    /// A successful login: the account's failures are forgotten (the address's are not: one
    /// good account must not let an address go on guessing others).
    pub(crate) fn succeeded(&self, account: UserId) {
        self.table.locked().remove(&Subject::Account(account));
    }
}

/// Makes room for one more entry: false (after one warning) when `table` is full of entries
/// that still matter.
fn make_room<K: Eq + std::hash::Hash, V>(
    table: &mut HashMap<K, V>,
    full: &AtomicBool,
    stale: impl Fn(&V) -> bool,
) -> bool {
    if table.len() < MAX_ENTRIES {
        return true;
    }
    table.retain(|_, v| !stale(v));
    if table.len() < MAX_ENTRIES {
        return true;
    }
    if !full.swap(true, Ordering::Relaxed) {
        log::warn!("throttle table full ({MAX_ENTRIES} entries): new subjects go unlimited");
    }
    false
}

/// A token bucket: `rate` tokens a second, at most `burst` saved up.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TokenBucket {
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub(crate) fn full(burst: f64, now: Instant) -> Self {
        TokenBucket {
            tokens: burst,
            at: now,
        }
    }

    fn refill(&mut self, rate: f64, burst: f64, now: Instant) {
        let gained = now.saturating_duration_since(self.at).as_secs_f64() * rate;
        self.tokens = (self.tokens + gained).min(burst);
        self.at = now;
    }

    /// Takes one token, or says how long until there is one.
    pub(crate) fn take(&mut self, rate: f64, burst: f64, now: Instant) -> Result<(), Duration> {
        self.refill(rate, burst, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / rate))
        }
    }

    /// Whether the bucket would be full at `now` (then it limits nothing and can go).
    fn refilled(&self, rate: f64, burst: f64, now: Instant) -> bool {
        self.tokens + now.saturating_duration_since(self.at).as_secs_f64() * rate >= burst
    }
}

/// Registrations per source address: `per_min` a minute, as a bucket of `per_min` tokens
/// refilled evenly over a minute. 0 turns the limit off.
pub(crate) struct RegistrationLimit {
    per_min: u32,
    table: Mutex<HashMap<IpAddr, TokenBucket>>,
    full: AtomicBool,
}

impl RegistrationLimit {
    pub(crate) fn new(per_min: u32) -> Self {
        RegistrationLimit {
            per_min,
            table: Mutex::new(HashMap::new()),
            full: AtomicBool::new(false),
        }
    }

    /// Takes one registration of `addr`, or says how long until it may register again.
    pub(crate) fn take(&self, addr: IpAddr, now: Instant) -> Result<(), Duration> {
        if self.per_min == 0 {
            return Ok(());
        }
        let burst = f64::from(self.per_min);
        let rate = burst / 60.0;
        let mut table = self.table.locked();
        if !table.contains_key(&addr)
            && !make_room(&mut table, &self.full, |b| b.refilled(rate, burst, now))
        {
            return Ok(());
        }
        table
            .entry(addr)
            .or_insert_with(|| TokenBucket::full(burst, now))
            .take(rate, burst, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Subject = Subject::Account(7);

    fn addr(s: &str) -> Subject {
        Subject::Addr(s.parse().unwrap())
    }

    #[test]
    fn five_failures_then_growing_delays_and_a_success_resets() {
        let t = LoginThrottle::new(5, Duration::from_secs(2));
        let now = Instant::now();
        let both = [A, addr("10.0.0.1")];
        for _ in 0..4 {
            t.failed(&both, now);
            assert_eq!(t.check(&both, now), Ok(()));
        }
        t.failed(&both, now);
        assert_eq!(t.check(&both, now), Err(Duration::from_secs(2)));
        assert_eq!(t.check(&[addr("10.0.0.2")], now), Ok(()));
        let later = now + Duration::from_secs(2);
        assert_eq!(t.check(&both, later), Ok(()));
        t.failed(&both, later);
        assert_eq!(t.check(&both, later), Err(Duration::from_secs(4)));
        let later = later + Duration::from_secs(4);
        t.failed(&both, later);
        assert_eq!(t.check(&both, later), Err(Duration::from_secs(8)));
        // A success clears the account, not the address.
        t.succeeded(7);
        assert_eq!(t.check(&[A], later), Ok(()));
        assert!(t.check(&[addr("10.0.0.1")], later).is_err());
    }

    #[test]
    fn delays_stop_at_the_maximum_and_old_failures_are_forgotten() {
        let t = LoginThrottle::new(1, Duration::from_secs(1));
        let mut now = Instant::now();
        for _ in 0..40 {
            t.failed(&[A], now);
            let wait = t.check(&[A], now).unwrap_err();
            assert!(wait <= MAX_DELAY);
            now += wait;
        }
        assert_eq!(t.check(&[A], now - MAX_DELAY), Err(MAX_DELAY));
        let much_later = now + FORGET_AFTER + Duration::from_secs(1);
        t.failed(&[A], much_later);
        assert_eq!(t.check(&[A], much_later), Err(Duration::from_secs(1)));
    }

    #[test]
    fn off_when_zero() {
        let t = LoginThrottle::new(0, Duration::from_secs(1));
        let now = Instant::now();
        for _ in 0..100 {
            t.failed(&[A], now);
        }
        assert_eq!(t.check(&[A], now), Ok(()));
        let r = RegistrationLimit::new(0);
        assert!((0..1000).all(|_| r.take("10.0.0.1".parse().unwrap(), now).is_ok()));
    }

    #[test]
    fn registrations_per_address_per_minute() {
        let r = RegistrationLimit::new(30);
        let now = Instant::now();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        assert!((0..30).all(|_| r.take(a, now).is_ok()));
        let wait = r.take(a, now).unwrap_err();
        assert_eq!(wait.as_secs(), 2, "one more every 2 s");
        assert!(r.take("10.0.0.2".parse().unwrap(), now).is_ok());
        assert!(r.take(a, now + Duration::from_secs(2)).is_ok());
        assert!(r.take(a, now + Duration::from_secs(2)).is_err());
    }

    #[test]
    fn retry_message_rounds_up() {
        let e = rate_limited("attempts", Duration::from_millis(1001));
        assert_eq!(e.errno, errno::RATE_LIMITED);
        assert_eq!(e.errmsg, "too many attempts; retry in 2 s");
        assert!(rate_limited("x", Duration::ZERO)
            .errmsg
            .ends_with("retry in 1 s"));
    }

    #[test]
    fn ipv6_counts_by_prefix_and_mapped_ipv4_as_ipv4() {
        let k = |s: &str| addr_key(s.parse().unwrap());
        assert_eq!(k("[2001:db8:1:2:a::1]:5"), k("[2001:db8:1:2:b::9]:6"));
        assert_ne!(k("[2001:db8:1:2::1]:5"), k("[2001:db8:1:3::1]:5"));
        assert_eq!(k("[::ffff:10.0.0.1]:5"), k("10.0.0.1:9"));
    }
}
