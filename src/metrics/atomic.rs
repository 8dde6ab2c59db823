//! Lock-free metric types for the hot path, encoded through prometheus-client's
//! [`EncodeMetric`]: a counter striped over cache lines (threads add without contending), a
//! histogram of atomic buckets (prometheus-client's own `Histogram` takes a mutex on every
//! observation), and a fixed set of labelled children (no map, no lock: prometheus-client's
//! `Family` takes a read lock per lookup).
//!
//! Thread contract: every method is thread safe; writers use relaxed atomics, so a scrape may
//! see one metric a few increments ahead of another (never a torn value).

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Stripes of a [`StripedCounter`]: more than the threads that add to one counter at once on
/// the machines this runs on, a power of two.
const STRIPES: usize = 16;

/// One stripe on a cache line of its own (128 bytes: adjacent-line prefetch pairs lines).
#[repr(align(128))]
#[derive(Default, Debug)]
struct Stripe(AtomicU64);

static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's stripe, handed out round-robin at the thread's first add.
    static SLOT: usize = NEXT_SLOT.fetch_add(1, Ordering::Relaxed) % STRIPES;
}

/// A monotonic counter that many threads add to without sharing a cache line (one stripe per
/// thread, summed at scrape time). Clones share the count.
#[derive(Clone, Debug, Default)]
pub(crate) struct StripedCounter {
    stripes: Arc<[Stripe; STRIPES]>,
}

impl StripedCounter {
    /// Adds `n`. Lock-free; one relaxed `fetch_add` on the calling thread's stripe.
    pub(crate) fn add(&self, n: u64) {
        let slot = SLOT.with(|s| *s);
        self.stripes[slot].0.fetch_add(n, Ordering::Relaxed);
    }

    /// The total so far.
    pub(crate) fn get(&self) -> u64 {
        self.stripes
            .iter()
            .map(|s| s.0.load(Ordering::Relaxed))
            .sum()
    }
}

impl TypedMetric for StripedCounter {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for StripedCounter {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_counter::<NoLabelSet, _, u64>(&self.get(), None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// A histogram of durations with fixed upper bounds (seconds) and atomic buckets. Observing
/// is three relaxed `fetch_add`s; the count is derived from the buckets at scrape time, so
/// `_count` always equals the `+Inf` bucket. Clones share the buckets.
#[derive(Clone, Debug)]
pub(crate) struct AtomicHistogram {
    inner: Arc<HistogramInner>,
}

#[derive(Debug)]
struct HistogramInner {
    /// Upper bounds in seconds, ascending (for encoding).
    bounds: &'static [f64],
    /// The same bounds in nanoseconds (for observing without float maths).
    bounds_ns: Vec<u64>,
    /// One per bound, then one for +Inf.
    buckets: Vec<AtomicU64>,
    sum_ns: AtomicU64,
}

impl AtomicHistogram {
    /// A histogram with these upper bounds (seconds, ascending; +Inf is added).
    pub(crate) fn new(bounds: &'static [f64]) -> Self {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]), "ascending bounds");
        AtomicHistogram {
            inner: Arc::new(HistogramInner {
                bounds,
                bounds_ns: bounds.iter().map(|b| (b * 1e9) as u64).collect(),
                buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
                sum_ns: AtomicU64::new(0),
            }),
        }
    }

    /// Records one duration. Lock-free.
    pub(crate) fn observe(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let i = self.inner.bounds_ns.partition_point(|&b| b < ns);
        self.inner.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.inner.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Observations so far.
    #[cfg(test)]
    pub(crate) fn count(&self) -> u64 {
        self.inner
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .sum()
    }
}

impl TypedMetric for AtomicHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for AtomicHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let inner = &self.inner;
        // Per-bucket counts; the encoder makes them cumulative.
        let buckets: Vec<(f64, u64)> = inner
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(inner.buckets.iter().map(|b| b.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = inner.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// A metric with one label that takes a fixed set of values: `N` children, chosen by index
/// (an enum's discriminant), with no map and no lock. Clones share the children.
#[derive(Clone, Debug)]
pub(crate) struct Labeled<M, const N: usize> {
    key: &'static str,
    values: [&'static str; N],
    children: [M; N],
}

impl<M: Default, const N: usize> Labeled<M, N> {
    /// Children for label `key` with these `values`, each `M::default()`.
    pub(crate) fn new(key: &'static str, values: [&'static str; N]) -> Self {
        Labeled {
            key,
            values,
            children: std::array::from_fn(|_| M::default()),
        }
    }
}

impl<M, const N: usize> Labeled<M, N> {
    /// The child for the `i`-th value.
    pub(crate) fn get(&self, i: usize) -> &M {
        &self.children[i]
    }
}

impl<M: TypedMetric, const N: usize> TypedMetric for Labeled<M, N> {
    const TYPE: MetricType = M::TYPE;
}

impl<M: EncodeMetric + TypedMetric, const N: usize> EncodeMetric for Labeled<M, N> {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (value, child) in self.values.iter().zip(&self.children) {
            let labels = [(self.key, *value)];
            child.encode(encoder.encode_family(&labels)?)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        M::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_striped_counter_sums_what_every_thread_added() {
        let c = StripedCounter::default();
        std::thread::scope(|s| {
            for _ in 0..8 {
                let c = c.clone();
                s.spawn(move || {
                    for _ in 0..1000 {
                        c.add(1);
                    }
                });
            }
        });
        c.add(5);
        assert_eq!(c.get(), 8005);
    }

    #[test]
    fn a_duration_lands_in_the_first_bucket_whose_bound_is_not_below_it() {
        static BOUNDS: [f64; 3] = [0.001, 0.01, 0.1];
        let h = AtomicHistogram::new(&BOUNDS);
        h.observe(Duration::from_micros(1000)); // exactly on a bound: le="0.001"
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_secs(3)); // +Inf
        let counts: Vec<u64> = h
            .inner
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        assert_eq!(counts, [1, 1, 0, 1]);
        assert_eq!(h.count(), 3);
        assert_eq!(h.inner.sum_ns.load(Ordering::Relaxed), 3_006_000_000);
    }
}
