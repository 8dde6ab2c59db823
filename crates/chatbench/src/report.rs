//! The figures a scenario produces, as a human table and as JSON, and the A/B comparison.

use crate::procstat::ProcSample;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// A latency histogram in microseconds, 1 µs to 10 min at 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// Records a latency given in nanoseconds (clamped into the histogram's range).
pub fn record_ns(hist: &mut Histogram<u64>, ns: u64) {
    hist.saturating_record((ns / 1000).max(1));
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest seen.
    pub max: u64,
}

impl Latency {
    /// The percentiles of a histogram (all zero when it is empty).
    pub fn from_histogram(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// Everything one run of a scenario measured. `delivered`/`lost` count messages (deliveries
/// for `group`, successful/failed requests for `logins`, connections for `idle`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// Server(s) measured.
    pub targets: Vec<String>,
    /// `across` or `local` (pairs and group on several targets: see `crate::Layout`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layout: Option<String>,
    /// Users (connections) taking part.
    pub users: u64,
    /// Messages in flight per sender.
    pub window: u64,
    /// Setup (registration, login, group creation) time, not measured.
    pub setup_s: f64,
    /// Length of the measured phase (sending time, without the grace period).
    pub duration_s: f64,
    /// Messages sent.
    pub sent: u64,
    /// Messages received (within the duration and the grace period after it).
    pub delivered: u64,
    /// Sent but never received.
    pub lost: u64,
    /// Deliveries per second within the duration.
    pub msgs_per_sec: f64,
    /// Send-to-receipt latency.
    pub latency_us: Latency,
    /// Error replies the server sent during the run.
    pub errors: u64,
    /// Connections the server closed during the run.
    pub disconnects: u64,
    /// Server CPU (utime+stime) per delivered message, with `--server-pid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cpu_us_per_msg: Option<f64>,
    /// Server RSS at the end, with `--server-pid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_rss_bytes: Option<u64>,
    /// Server peak RSS (VmHWM), with `--server-pid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_peak_rss_bytes: Option<u64>,
    /// Server threads at the end, with `--server-pid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_threads: Option<u64>,
    /// Redis commands processed per delivered message (less the bench's own INFO), with
    /// `--redis`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_cmds_per_msg: Option<f64>,
    /// Redis PUBLISH calls per delivered message, with `--redis`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_publish_per_msg: Option<f64>,
    /// Redis CPU (user + system) per delivered message: `INFO` with `--redis`, else `/proc`
    /// with `--redis-pid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_cpu_us_per_msg: Option<f64>,
    /// The bench's own CPU time during the measured phase.
    pub bench_cpu_s: f64,
    /// The bench's CPU time over wall time: cores the load generator used.
    pub bench_cores: f64,
    /// What went wrong or was capped, in words (first error reply, limits applied…).
    pub notes: Vec<String>,
    /// Scenario-specific figures (login rates, RSS per connection…).
    #[serde(flatten)]
    pub extra: BTreeMap<String, f64>,
}

impl Report {
    /// Fills the server figures from samples taken before and after the measured phase.
    pub fn set_server(&mut self, before: &ProcSample, after: &ProcSample) {
        let cpu = after.cpu_us.saturating_sub(before.cpu_us) as f64;
        self.server_cpu_us_per_msg = Some(if self.delivered > 0 {
            cpu / self.delivered as f64
        } else {
            0.0
        });
        self.server_rss_bytes = Some(after.rss_bytes);
        self.server_peak_rss_bytes = Some(after.peak_rss_bytes);
        self.server_threads = Some(after.threads);
    }

    /// Fills the bench's own CPU figures from `self_cpu_us` readings around `wall_s`.
    pub fn set_bench_cpu(&mut self, cpu_before_us: u64, cpu_after_us: u64, wall_s: f64) {
        self.bench_cpu_s = cpu_after_us.saturating_sub(cpu_before_us) as f64 / 1e6;
        self.bench_cores = if wall_s > 0.0 {
            self.bench_cpu_s / wall_s
        } else {
            0.0
        };
    }

    /// The numeric figures by name, for the table and for comparisons.
    pub fn figures(&self) -> Vec<(String, f64)> {
        let mut f: Vec<(String, f64)> = vec![
            ("setup_s".into(), self.setup_s),
            ("sent".into(), self.sent as f64),
            ("delivered".into(), self.delivered as f64),
            ("lost".into(), self.lost as f64),
            ("msgs_per_sec".into(), self.msgs_per_sec),
            ("latency_p50_us".into(), self.latency_us.p50 as f64),
            ("latency_p90_us".into(), self.latency_us.p90 as f64),
            ("latency_p99_us".into(), self.latency_us.p99 as f64),
            ("latency_p999_us".into(), self.latency_us.p999 as f64),
            ("latency_max_us".into(), self.latency_us.max as f64),
            ("errors".into(), self.errors as f64),
            ("disconnects".into(), self.disconnects as f64),
        ];
        let opt = |name: &str, v: Option<f64>| v.map(|v| (name.to_string(), v));
        f.extend(opt("server_cpu_us_per_msg", self.server_cpu_us_per_msg));
        f.extend(opt(
            "server_rss_bytes",
            self.server_rss_bytes.map(|v| v as f64),
        ));
        f.extend(opt(
            "server_peak_rss_bytes",
            self.server_peak_rss_bytes.map(|v| v as f64),
        ));
        f.extend(opt("server_threads", self.server_threads.map(|v| v as f64)));
        f.extend(opt("redis_cmds_per_msg", self.redis_cmds_per_msg));
        f.extend(opt("redis_publish_per_msg", self.redis_publish_per_msg));
        f.extend(opt("redis_cpu_us_per_msg", self.redis_cpu_us_per_msg));
        f.push(("bench_cpu_s".into(), self.bench_cpu_s));
        f.push(("bench_cores".into(), self.bench_cores));
        f.extend(self.extra.iter().map(|(k, v)| (k.clone(), *v)));
        f
    }

    /// The human table.
    pub fn table(&self) -> String {
        let mut s = format!(
            "{} against {}{} — {} users, window {}, {:.1} s (setup {:.1} s)\n",
            self.scenario,
            self.targets.join(","),
            self.layout
                .as_ref()
                .map_or(String::new(), |l| format!(" ({l})")),
            self.users,
            self.window,
            self.duration_s,
            self.setup_s
        );
        for (name, v) in self.figures() {
            let _ = writeln!(s, "  {name:<26} {}", fmt_num(v));
        }
        for note in &self.notes {
            let _ = writeln!(s, "  note: {note}");
        }
        if self.lost > 0 {
            let _ = writeln!(s, "  WARNING: {} lost (sent but never received)", self.lost);
        }
        s
    }
}

/// A number as the table prints it: integers plainly, others with 2 decimals.
pub fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.2}")
    }
}

/// One figure compared between servers A and B over alternating rounds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Ratio {
    /// Mean over rounds on A.
    pub a: f64,
    /// Mean over rounds on B.
    pub b: f64,
    /// b / a of the means (None when a is 0).
    pub ratio: Option<f64>,
    /// Smallest per-round ratio b_i / a_i.
    pub min: Option<f64>,
    /// Largest per-round ratio.
    pub max: Option<f64>,
}

/// Compares the rounds of A and B figure by figure (rounds are paired in order): A's figures,
/// and scenario figures only B reports (counts reported only when not zero, such as
/// `noseq_msgs` against a server without the message log), which count as 0 where absent.
pub fn compare(a: &[Report], b: &[Report]) -> BTreeMap<String, Ratio> {
    let mut out = BTreeMap::new();
    let Some(first) = a.first() else {
        return out;
    };
    let mut names: Vec<String> = first.figures().into_iter().map(|(n, _)| n).collect();
    for name in b.first().into_iter().flat_map(|r| r.extra.keys()) {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    for name in names {
        let pick = |reports: &[Report]| -> Vec<f64> {
            reports
                .iter()
                .map(|r| {
                    r.figures()
                        .into_iter()
                        .find(|(n, _)| *n == name)
                        .map_or(0.0, |(_, v)| v)
                })
                .collect()
        };
        let (va, vb) = (pick(a), pick(b));
        if va.is_empty() || vb.is_empty() {
            continue;
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let (ma, mb) = (mean(&va), mean(&vb));
        let per_round: Vec<f64> = va
            .iter()
            .zip(&vb)
            .filter(|(x, _)| **x != 0.0)
            .map(|(x, y)| y / x)
            .collect();
        let min = per_round.iter().cloned().reduce(f64::min);
        let max = per_round.iter().cloned().reduce(f64::max);
        let ratio = (ma != 0.0).then(|| mb / ma);
        out.insert(
            name,
            Ratio {
                a: ma,
                b: mb,
                ratio,
                min,
                max,
            },
        );
    }
    out
}

/// The comparison as a table: figure, A, B, B/A and the spread of per-round ratios.
pub fn compare_table(ratios: &BTreeMap<String, Ratio>) -> String {
    let mut s = format!(
        "  {:<26} {:>14} {:>14} {:>8}  {}\n",
        "figure", "A (mean)", "B (mean)", "B/A", "per-round B/A min..max"
    );
    let r = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
    for (name, x) in ratios {
        let _ = writeln!(
            s,
            "  {name:<26} {:>14} {:>14} {:>8}  {}..{}",
            fmt_num(x.a),
            fmt_num(x.b),
            r(x.ratio),
            r(x.min),
            r(x.max)
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_histogram() {
        let mut h = new_histogram();
        for us in 1..=1000u64 {
            record_ns(&mut h, us * 1000);
        }
        let l = Latency::from_histogram(&h);
        assert_eq!(
            (l.p50, l.p90, l.p99, l.p999, l.max),
            (500, 900, 990, 999, 1000)
        );
        assert_eq!(
            Latency::from_histogram(&new_histogram()),
            Latency::default()
        );
        record_ns(&mut h, 0);
        assert_eq!(h.min(), 1);
    }

    #[test]
    fn json_has_the_promised_fields() {
        let mut r = Report {
            delivered: 10,
            ..Report::default()
        };
        r.extra.insert("logins_per_sec".into(), 5.0);
        let before = ProcSample::default();
        let after = ProcSample {
            cpu_us: 50,
            rss_bytes: 4096,
            peak_rss_bytes: 8192,
            threads: 3,
        };
        r.set_server(&before, &after);
        let v = serde_json::to_value(&r).unwrap();
        for key in ["delivered", "lost", "msgs_per_sec", "server_rss_bytes"] {
            assert!(v.get(key).is_some(), "{key}");
        }
        assert_eq!(v["server_cpu_us_per_msg"], 5.0);
        assert_eq!(v["latency_us"]["p999"], 0);
        assert_eq!(v["logins_per_sec"], 5.0);
        assert!(r.table().contains("logins_per_sec"));
    }

    #[test]
    fn comparison_pairs_rounds() {
        let rep = |rate: f64| Report {
            msgs_per_sec: rate,
            ..Report::default()
        };
        let ratios = compare(&[rep(100.0), rep(200.0)], &[rep(150.0), rep(200.0)]);
        let m = &ratios["msgs_per_sec"];
        assert_eq!((m.a, m.b), (150.0, 175.0));
        assert_eq!(m.min, Some(1.0));
        assert_eq!(m.max, Some(1.5));
        assert!(ratios["lost"].ratio.is_none());
        let mut only_b = rep(1.0);
        only_b.extra.insert("noseq_msgs".into(), 7.0);
        let ratios = compare(&[rep(1.0)], &[only_b]);
        assert_eq!((ratios["noseq_msgs"].a, ratios["noseq_msgs"].b), (0.0, 7.0));
        assert!(compare_table(&ratios).contains("msgs_per_sec"));
    }
}
