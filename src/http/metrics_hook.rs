//! `/metrics` (Prometheus text format): the server's registry (`crate::metrics`), rendered.

/// The `/metrics` page: `(Content-Type, body)`, or `None` (404) when there is nothing to
/// render. Runs on an IO thread: rendering reads atomics and takes a few short locks (see
/// [`Metrics::render`](crate::metrics::Metrics::render)); it never blocks on I/O.
pub(crate) fn render(metrics: &crate::metrics::Metrics) -> Option<(&'static str, Vec<u8>)> {
    Some((crate::metrics::CONTENT_TYPE, metrics.render().into_bytes()))
}
