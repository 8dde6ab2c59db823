//! What the cluster's Redis spent on a round: commands processed, PUBLISHes and CPU, read
//! before and after the measured phase and divided by the messages delivered.
//!
//! With `--redis URL` the bench keeps one connection for the round (authenticated when the URL
//! has a password) and reads `INFO all`: `total_commands_processed` less the bench's own `INFO`
//! (from `cmdstat_info`), `cmdstat_publish`'s calls, and `used_cpu_user + used_cpu_sys` (in
//! microseconds). With `--redis-pid PID` alone the CPU comes from `/proc` (in clock ticks, 10 ms
//! each: coarser, so INFO's is used when there are both). Redis counts every client: on a
//! Redis that others use at the same time, the figures include their work.

use crate::procstat::ProcSample;
use crate::report::Report;
use crate::{io_err, BenchError, Result, Settings};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// One `INFO` reading.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct InfoSample {
    /// `total_commands_processed`.
    pub commands: u64,
    /// `cmdstat_info`'s calls (the bench's own readings, taken out of `commands`).
    pub info_calls: u64,
    /// `cmdstat_publish`'s calls.
    pub publish_calls: u64,
    /// `used_cpu_user + used_cpu_sys`, in microseconds.
    pub cpu_us: u64,
}

/// Reads the figures out of an `INFO all` reply (`key:value` lines; `cmdstat_NAME:calls=N,...`).
pub fn parse_info(text: &str) -> InfoSample {
    let mut s = InfoSample::default();
    let mut cpu_s = 0.0;
    for line in text.lines() {
        let Some((key, value)) = line.trim_end().split_once(':') else {
            continue;
        };
        let calls = || {
            value
                .split(',')
                .find_map(|kv| kv.strip_prefix("calls="))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        match key {
            "total_commands_processed" => s.commands = value.parse().unwrap_or(0),
            "used_cpu_user" | "used_cpu_sys" => cpu_s += value.parse::<f64>().unwrap_or(0.0),
            "cmdstat_info" => s.info_calls = calls(),
            "cmdstat_publish" => s.publish_calls = calls(),
            _ => {}
        }
    }
    s.cpu_us = (cpu_s * 1e6).round() as u64;
    s
}

/// A connection for `INFO`.
pub struct RedisProbe {
    reader: BufReader<TcpStream>,
    shown: String,
}

/// `redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]` → (host:port, user, password).
fn parse_url(url: &str) -> Option<(String, Option<String>, Option<String>)> {
    let rest = url.strip_prefix("redis://")?;
    let authority = rest.split(['/', '?']).next()?;
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    if hostport.is_empty() {
        return None;
    }
    let hostport = if hostport
        .rsplit_once(':')
        .is_some_and(|(_, p)| !p.contains(']'))
    {
        hostport.to_string()
    } else {
        format!("{hostport}:6379")
    };
    let (user, password) = match userinfo.map(|u| u.split_once(':')) {
        Some(Some((user, pw))) => (
            (!user.is_empty()).then(|| percent_decode(user)),
            Some(percent_decode(pw)),
        ),
        Some(None) => (None, None),
        None => (None, None),
    };
    Some((hostport, user, password))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Checks a `--redis` URL before anything runs.
pub fn check_url(url: &str) -> Result<()> {
    parse_url(url).map(|_| ()).ok_or_else(|| bad_url(url))
}

fn bad_url(url: &str) -> BenchError {
    BenchError::Settings(format!(
        "--redis must be redis://[[USER]:PASSWORD@]HOST[:PORT], not {:?}",
        mask(url)
    ))
}

/// One RESP command.
fn command(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

impl RedisProbe {
    /// Connects (and authenticates) to the Redis `url` names.
    pub fn connect(url: &str) -> Result<RedisProbe> {
        let bad = || bad_url(url);
        let (hostport, user, password) = parse_url(url).ok_or_else(bad)?;
        let shown = mask(url);
        let addr = hostport
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(bad)?;
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .map_err(io_err(format!("connecting to Redis at {shown}")))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(io_err("setting a timeout"))?;
        let mut probe = RedisProbe {
            reader: BufReader::new(stream),
            shown,
        };
        if let Some(pw) = password {
            let mut args = vec!["AUTH"];
            args.extend(user.as_deref());
            args.push(&pw);
            probe.call(&args, "AUTH")?;
        }
        Ok(probe)
    }

    /// Reads `INFO all`.
    pub fn sample(&mut self) -> Result<InfoSample> {
        let text = self.call(&["INFO", "all"], "INFO")?;
        Ok(parse_info(&text))
    }

    /// Sends a command and reads a simple or bulk string reply.
    fn call(&mut self, args: &[&str], what: &str) -> Result<String> {
        let ctx = format!("{what} on Redis at {}", self.shown);
        self.reader
            .get_mut()
            .write_all(&command(args))
            .map_err(io_err(ctx.clone()))?;
        let mut line = String::new();
        self.reader
            .read_line(&mut line)
            .map_err(io_err(ctx.clone()))?;
        let line = line.trim_end();
        if let Some(len) = line.strip_prefix('$') {
            let len: usize = len
                .parse()
                .map_err(|_| BenchError::Settings(format!("{ctx}: bad reply {line:?}")))?;
            let mut body = vec![0u8; len + 2];
            self.reader
                .read_exact(&mut body)
                .map_err(io_err(ctx.clone()))?;
            body.truncate(len);
            return Ok(String::from_utf8_lossy(&body).into_owned());
        }
        match line.strip_prefix('+') {
            Some(ok) => Ok(ok.to_string()),
            None => Err(BenchError::Settings(format!("{ctx}: {line}"))),
        }
    }
}

/// The URL with its password replaced by `***` (any `scheme://user:password@`).
fn mask(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    match authority.rfind('@').and_then(|at| {
        let (user, _) = rest[..at].split_once(':')?;
        Some(format!("{scheme}://{user}:***{}", &rest[at..]))
    }) {
        Some(masked) => masked,
        None => url.to_string(),
    }
}

/// One reading of Redis: `INFO` (with `--redis`) and `/proc` (with `--redis-pid`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Reading {
    info: Option<InfoSample>,
    proc_cpu_us: Option<u64>,
}

/// Samples Redis around measured rounds, as the settings say.
pub struct RedisWatch {
    probe: Option<RedisProbe>,
    pids: Vec<u32>,
}

impl RedisWatch {
    /// `None` when the settings name no Redis to watch.
    pub fn open(settings: &Settings) -> Result<Option<RedisWatch>> {
        if settings.redis.is_none() && settings.redis_pids.is_empty() {
            return Ok(None);
        }
        let probe = settings
            .redis
            .as_deref()
            .map(RedisProbe::connect)
            .transpose()?;
        Ok(Some(RedisWatch {
            probe,
            pids: settings.redis_pids.clone(),
        }))
    }

    /// Reads Redis now.
    pub fn read(&mut self) -> Result<Reading> {
        let info = self.probe.as_mut().map(RedisProbe::sample).transpose()?;
        let proc_cpu_us = if self.pids.is_empty() {
            None
        } else {
            let s = ProcSample::read_all(&self.pids).map_err(io_err("reading Redis's /proc"))?;
            Some(s.cpu_us)
        };
        Ok(Reading { info, proc_cpu_us })
    }
}

/// Fills the report's Redis figures per delivered message from readings before and after.
pub fn fill(report: &mut Report, before: &Reading, after: &Reading) {
    let per_msg = |v: u64| {
        if report.delivered > 0 {
            v as f64 / report.delivered as f64
        } else {
            0.0
        }
    };
    if let (Some(b), Some(a)) = (before.info, after.info) {
        let info = a.info_calls.saturating_sub(b.info_calls);
        let commands = a.commands.saturating_sub(b.commands).saturating_sub(info);
        report.redis_cmds_per_msg = Some(per_msg(commands));
        report.redis_publish_per_msg =
            Some(per_msg(a.publish_calls.saturating_sub(b.publish_calls)));
        report.redis_cpu_us_per_msg = Some(per_msg(a.cpu_us.saturating_sub(b.cpu_us)));
    }
    if report.redis_cpu_us_per_msg.is_none() {
        if let (Some(b), Some(a)) = (before.proc_cpu_us, after.proc_cpu_us) {
            report.redis_cpu_us_per_msg = Some(per_msg(a.saturating_sub(b)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_gives_commands_publishes_and_cpu() {
        let text = "# Stats\r\ntotal_connections_received:5\r\ntotal_commands_processed:1234\r\n\
                    # CPU\r\nused_cpu_sys:1.500000\r\nused_cpu_user:0.250001\r\n\
                    used_cpu_sys_children:9.0\r\n# Commandstats\r\n\
                    cmdstat_publish:calls=100,usec=50,usec_per_call=0.50,rejected_calls=0\r\n\
                    cmdstat_info:calls=7,usec=70\r\n";
        assert_eq!(
            parse_info(text),
            InfoSample {
                commands: 1234,
                info_calls: 7,
                publish_calls: 100,
                cpu_us: 1_750_001,
            }
        );
        assert_eq!(parse_info(""), InfoSample::default());
    }

    #[test]
    fn urls_give_address_and_credentials() {
        let p = |u: &str| parse_url(u);
        assert_eq!(p("redis://h"), Some(("h:6379".into(), None, None)));
        assert_eq!(
            p("redis://:p%40ss@127.0.0.1:7000/2"),
            Some(("127.0.0.1:7000".into(), None, Some("p@ss".into())))
        );
        assert_eq!(
            p("redis://u:pw@h:1"),
            Some(("h:1".into(), Some("u".into()), Some("pw".into())))
        );
        assert_eq!(p("http://h"), None);
        assert_eq!(p("redis://"), None);
        assert_eq!(mask("redis://u:pw@h:1/2"), "redis://u:***@h:1/2");
        assert_eq!(mask("redis://:pw@h:1"), "redis://:***@h:1");
        assert_eq!(mask("redis://h:1"), "redis://h:1");
        assert_eq!(mask("http://:pw@x"), "http://:***@x");
    }

    #[test]
    fn figures_are_per_delivered_message() {
        let mut r = Report {
            delivered: 100,
            ..Report::default()
        };
        let at = |commands, info_calls, publish_calls, cpu_us| Reading {
            info: Some(InfoSample {
                commands,
                info_calls,
                publish_calls,
                cpu_us,
            }),
            proc_cpu_us: None,
        };
        fill(&mut r, &at(1000, 5, 10, 0), &at(1301, 6, 110, 5000));
        assert_eq!(
            r.redis_cmds_per_msg,
            Some(3.0),
            "the bench's INFO taken out"
        );
        assert_eq!(r.redis_publish_per_msg, Some(1.0));
        assert_eq!(r.redis_cpu_us_per_msg, Some(50.0));
        let pid = |cpu| Reading {
            info: None,
            proc_cpu_us: Some(cpu),
        };
        let mut q = Report {
            delivered: 100,
            ..Report::default()
        };
        fill(&mut q, &pid(0), &pid(200));
        assert_eq!(q.redis_cpu_us_per_msg, Some(2.0), "from /proc without INFO");
        assert_eq!(q.redis_cmds_per_msg, None);
    }
}
