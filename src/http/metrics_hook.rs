//! HOOK for `/metrics` (Prometheus text format): not wired yet. The metrics work replaces the
//! body of [`render`] with a call into its registry (`crate::metrics`); until then the route
//! answers 404.

/// The `/metrics` page: `(Content-Type, body)`, or `None` (404) while metrics are not built
/// in. Runs on an IO thread: it must not block.
pub(crate) fn render() -> Option<(&'static str, Vec<u8>)> {
    None
}
