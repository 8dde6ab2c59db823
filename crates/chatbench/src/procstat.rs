//! Process figures from `/proc` and `getrusage`: the server's CPU time, RSS and threads (to
//! report CPU per delivered message and memory per connection), the bench's own CPU (to show
//! it was not the bottleneck), and the open-file limit (which caps how many sockets it holds).

use std::io;

/// One reading of a server process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcSample {
    /// utime + stime, in microseconds.
    pub cpu_us: u64,
    /// Resident set size now (VmRSS), in bytes.
    pub rss_bytes: u64,
    /// Peak resident set size (VmHWM), in bytes.
    pub peak_rss_bytes: u64,
    /// Number of threads.
    pub threads: u64,
}

impl ProcSample {
    /// Reads `/proc/PID/stat` and `/proc/PID/status`.
    pub fn read(pid: u32) -> io::Result<ProcSample> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let bad = || {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("/proc/{pid} unreadable"),
            )
        };
        let ticks = parse_stat_cpu_ticks(&stat).ok_or_else(bad)?;
        Ok(ProcSample {
            cpu_us: ticks * 1_000_000 / clock_ticks_per_sec(),
            rss_bytes: parse_status_kib(&status, "VmRSS").unwrap_or(0) * 1024,
            peak_rss_bytes: parse_status_kib(&status, "VmHWM").unwrap_or(0) * 1024,
            threads: parse_status_kib(&status, "Threads").unwrap_or(0),
        })
    }

    /// Reads several processes (a cluster) and adds them up.
    pub fn read_all(pids: &[u32]) -> io::Result<ProcSample> {
        let mut total = ProcSample::default();
        for &pid in pids {
            let s = ProcSample::read(pid)?;
            total.cpu_us += s.cpu_us;
            total.rss_bytes += s.rss_bytes;
            total.peak_rss_bytes += s.peak_rss_bytes;
            total.threads += s.threads;
        }
        Ok(total)
    }
}

/// utime + stime (fields 14 and 15) from a `/proc/PID/stat` line, in clock ticks. The command
/// name (field 2) may hold spaces and parentheses, so fields are counted after the last `)`.
pub fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // `rest` starts at field 3 (state): utime is field 14, so the 12th item here.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The number on the `key:` line of `/proc/PID/status` (`VmRSS:  1234 kB` gives 1234).
pub fn parse_status_kib(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let value = line.strip_prefix(key)?.strip_prefix(':')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

/// The kernel's clock ticks per second (`sysconf(_SC_CLK_TCK)`, 100 almost everywhere).
pub fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// This process's user + system CPU time so far, in microseconds (`getrusage(RUSAGE_SELF)`,
/// microsecond resolution unlike `/proc/self/stat`'s ticks).
pub fn self_cpu_us() -> u64 {
    // SAFETY: an all-zero rusage is a valid value, and getrusage only writes into it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0;
    }
    let us = |tv: libc::timeval| tv.tv_sec as u64 * 1_000_000 + tv.tv_usec as u64;
    us(ru.ru_utime) + us(ru.ru_stime)
}

/// Raises the soft open-file limit to the hard one and returns the limit now in force.
pub fn raise_nofile_limit() -> u64 {
    // SAFETY: an all-zero rlimit is valid; getrlimit/setrlimit read or write only it.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: `lim` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 1024;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: `raised` is a valid rlimit not above the hard limit.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = lim.rlim_max;
        }
    }
    lim.rlim_cur as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_cpu_counts_fields_after_the_name() {
        let stat = "4242 (chat (srv) x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 \
                    250 75 0 0 20 0 9 0 12345 1000000 500 18446744073709551615";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(325));
        assert_eq!(parse_stat_cpu_ticks("garbage"), None);
    }

    #[test]
    fn status_lines_are_found_by_key() {
        let status = "Name:\tchatserver\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\nThreads:\t6\n";
        assert_eq!(parse_status_kib(status, "VmRSS"), Some(10240));
        assert_eq!(parse_status_kib(status, "VmHWM"), Some(20480));
        assert_eq!(parse_status_kib(status, "Threads"), Some(6));
        assert_eq!(parse_status_kib(status, "VmSwap"), None);
    }

    #[test]
    fn this_process_is_readable() {
        let me = ProcSample::read(std::process::id()).unwrap();
        assert!(me.rss_bytes > 0 && me.threads >= 1);
        assert!(raise_nofile_limit() >= 16);
        let spin: u64 = (0..2_000_000u64).map(|i| i ^ (i >> 3)).sum();
        assert!(spin > 0 && self_cpu_us() > 0);
    }
}
