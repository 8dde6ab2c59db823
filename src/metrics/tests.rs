//! The renderer: what the instrumentation counts comes out under the documented names, in a
//! text that a Prometheus parser reads.

use super::*;
use prometheus_parse::{Scrape, Value};

/// Parses a rendering.
fn scrape(m: &Metrics) -> Scrape {
    let text = m.render();
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("Prometheus text")
}

/// The value of `name` with `label` (`key=value`, or none), as a counter or gauge.
fn value(s: &Scrape, name: &str, label: Option<(&str, &str)>) -> f64 {
    let found: Vec<f64> = s
        .samples
        .iter()
        .filter(|x| x.metric == name)
        .filter(|x| label.is_none_or(|(k, v)| x.labels.get(k) == Some(v)))
        .filter_map(|x| match x.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(v),
            _ => None,
        })
        .collect();
    assert_eq!(found.len(), 1, "one sample of {name} {label:?} in {s:?}");
    found[0]
}

#[test]
fn counters_come_out_under_their_names_and_labels() {
    let m = Metrics::new();
    m.received(Kind::One);
    m.received(Kind::One);
    m.received(Kind::Group);
    m.stored(Kind::One, 2);
    m.stored(Kind::Group, 0);
    m.delivered(3, 4);
    m.login_succeeded();
    m.login_failed(errno::BAD_CREDENTIALS);
    m.login_failed(errno::RATE_LIMITED);
    m.login_failed(errno::RATE_LIMITED);
    m.login_failed(errno::BAD_FIELD);
    let s = scrape(&m);
    let received = "clusterchat_messages_received_total";
    assert_eq!(value(&s, received, Some(("kind", "one"))), 2.0);
    assert_eq!(value(&s, received, Some(("kind", "group"))), 1.0);
    let stored = "clusterchat_messages_stored_total";
    assert_eq!(value(&s, stored, Some(("kind", "one"))), 2.0);
    assert_eq!(value(&s, stored, Some(("kind", "group"))), 0.0);
    let delivered = "clusterchat_messages_delivered_total";
    assert_eq!(value(&s, delivered, Some(("kind", "one"))), 3.0);
    assert_eq!(value(&s, delivered, Some(("kind", "group"))), 4.0);
    assert_eq!(value(&s, "clusterchat_logins_succeeded_total", None), 1.0);
    let failed = "clusterchat_logins_failed_total";
    assert_eq!(value(&s, failed, Some(("reason", "bad_password"))), 1.0);
    assert_eq!(value(&s, failed, Some(("reason", "rate_limited"))), 2.0);
    assert_eq!(value(&s, failed, Some(("reason", "bad_request"))), 1.0);
    assert_eq!(value(&s, failed, Some(("reason", "already_online"))), 0.0);
    assert!(s.docs.contains_key(received), "HELP text");
}

#[test]
fn the_latency_histogram_has_cumulative_buckets_and_a_count() {
    let m = Metrics::new();
    m.delivery_latency(Duration::from_micros(50));
    m.delivery_latency(Duration::from_millis(3));
    m.delivery_latency(Duration::from_secs(2));
    let s = scrape(&m);
    let h = s
        .samples
        .iter()
        .find(|x| x.metric == "clusterchat_delivery_latency_seconds")
        .expect("the histogram");
    let Value::Histogram(buckets) = &h.value else {
        panic!("not a histogram: {h:?}");
    };
    let le = |bound: f64| {
        buckets
            .iter()
            .find(|b| b.less_than == bound)
            .map(|b| b.count)
    };
    assert_eq!(le(0.0001), Some(1.0));
    assert_eq!(le(0.0025), Some(1.0));
    assert_eq!(le(0.005), Some(2.0));
    assert_eq!(le(1.0), Some(2.0));
    assert_eq!(le(f64::INFINITY), Some(3.0));
    assert_eq!(
        value(&s, "clusterchat_delivery_latency_seconds_count", None),
        3.0
    );
}

#[test]
fn sampled_metrics_read_the_sampler_at_each_scrape() {
    let m = Metrics::new();
    let s = scrape(&m);
    let open = "clusterchat_connections_open";
    assert_eq!(
        value(&s, open, Some(("transport", "tcp"))),
        0.0,
        "no sampler yet"
    );
    assert!(
        !s.samples
            .iter()
            .any(|x| x.metric == "clusterchat_db_pool_max_connections"),
        "no pool: no pool metrics"
    );
    let calls = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let seen = Arc::clone(&calls);
    m.set_sampler(Box::new(move || {
        let n = seen.fetch_add(1, Ordering::Relaxed) + 1;
        Samples {
            net: clusterchat_net::NetStats {
                accepted: 10 * n,
                refused_full: 1,
                refused_address: 2,
                refused_no_descriptor: 3,
                open: 4,
                output_bytes: 512,
            },
            users_online: 5,
            pool: Some(crate::store::PoolState {
                in_use: 1,
                idle: 2,
                max: 8,
            }),
            worker_jobs: 6,
        }
    }));
    m.connection_opened(Transport::Tcp);
    for _ in 0..3 {
        m.connection_opened(Transport::Http);
    }
    m.upgraded();
    m.upgraded();
    m.connection_closed(Transport::WebSocket);
    let s = scrape(&m);
    assert_eq!(value(&s, open, Some(("transport", "tcp"))), 1.0);
    assert_eq!(value(&s, open, Some(("transport", "http"))), 1.0);
    assert_eq!(value(&s, open, Some(("transport", "websocket"))), 1.0);
    assert_eq!(
        value(&s, "clusterchat_connections_accepted_total", None),
        10.0
    );
    let refused = "clusterchat_connections_refused_total";
    assert_eq!(value(&s, refused, Some(("reason", "full"))), 1.0);
    assert_eq!(value(&s, refused, Some(("reason", "address"))), 2.0);
    assert_eq!(value(&s, refused, Some(("reason", "no_descriptor"))), 3.0);
    assert_eq!(value(&s, "clusterchat_output_queued_bytes", None), 512.0);
    assert_eq!(value(&s, "clusterchat_users_logged_in", None), 5.0);
    assert_eq!(value(&s, "clusterchat_worker_queue_jobs", None), 6.0);
    let pool = "clusterchat_db_pool_connections";
    assert_eq!(value(&s, pool, Some(("state", "in_use"))), 1.0);
    assert_eq!(value(&s, pool, Some(("state", "idle"))), 2.0);
    assert_eq!(value(&s, "clusterchat_db_pool_max_connections", None), 8.0);
    let s = scrape(&m);
    assert_eq!(
        value(&s, "clusterchat_connections_accepted_total", None),
        20.0,
        "sampled again"
    );
}
