//! Running totals and what a window makes of them.

/// Events per second over a window; 0 for an empty window.
#[must_use]
#[expect(
    clippy::cast_precision_loss,
    reason = "counts and bytes in a window stay far below 2^52"
)]
pub fn rate(count: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}
