//! Latency as Prometheus histograms, built from the kernel's log2 histograms.
//!
//! The `prometheus` crate's `Histogram` observes values one by one; kvmtop already has the
//! bucket counts, so the metric family is assembled directly. Bucket bounds are powers of two
//! nanoseconds, the kernel's own bucket edges, so no count is re-binned or estimated; each
//! family picks the powers where its intervals live.

use prometheus::proto::{
    Bucket, Histogram as PromHistogram, LabelPair, Metric, MetricFamily, MetricType,
};

use crate::model::Histogram;

/// Exponents k of the `le` bounds 2^k ns for exits: every power from 256 ns to 262 µs (where
/// exits live), then every other power up to 4.3 s (halts, slow userspace round trips).
pub const EXIT_POWERS: &[usize] = &[
    8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 20, 22, 24, 26, 28, 30, 32,
];
/// For block requests and run-queue waits: every power from 1 µs to 1.07 s (device latencies
/// and scheduler waits spread over all of it), then 4.3 s and 17 s.
pub const WAIT_POWERS: &[usize] = &[
    10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 32, 34,
];

/// No bucket but `+Inf`: the histogram's sum and count only, which keep rates and means exact
/// in three series (the levels below `full`, see [`super::Level`]).
pub const SUM_AND_COUNT: &[usize] = &[];
/// Block latency below `full`: every other power from 16 µs to 1.07 s, a subset of
/// [`WAIT_POWERS`] so every `le` means the same at every level; enough for a p99 alert.
pub const BLOCK_LATENCY_COARSE: &[usize] = &[14, 16, 18, 20, 22, 24, 26, 28, 30];

/// `full` at the full level, else `reduced`.
#[must_use]
pub fn powers(
    level: super::Level,
    full: &'static [usize],
    reduced: &'static [usize],
) -> &'static [usize] {
    if level.full() { full } else { reduced }
}

/// A histogram metric family.
pub struct Family {
    family: MetricFamily,
    powers: &'static [usize],
}

impl Family {
    #[must_use]
    pub fn new(name: &str, help: &str, powers: &'static [usize]) -> Self {
        let mut family = MetricFamily::default();
        family.set_name(name.to_owned());
        family.set_help(help.to_owned());
        family.set_field_type(MetricType::HISTOGRAM);
        Self { family, powers }
    }

    /// Adds one series. `labels` are (name, value); values are escaped by the encoder.
    pub fn add(&mut self, labels: &[(&str, &str)], histogram: &Histogram) {
        let mut prom = PromHistogram::default();
        // Histograms the kernel updates from several CPUs are read while they change, so a
        // bucket may already hold an interval the count does not: never let `+Inf` fall below
        // a bucket.
        let in_buckets: u64 = histogram.buckets.iter().sum();
        prom.set_sample_count(histogram.count.max(in_buckets));
        #[expect(
            clippy::cast_precision_loss,
            reason = "seconds as f64, as Prometheus keeps them"
        )]
        prom.set_sample_sum(histogram.sum_ns as f64 / 1e9);
        prom.set_bucket(
            self.powers
                .iter()
                .map(|&k| {
                    let mut bucket = Bucket::default();
                    bucket.set_cumulative_count(histogram.count_below_pow2(k));
                    #[expect(clippy::cast_precision_loss, reason = "powers of two are exact")]
                    bucket.set_upper_bound((1u64 << k) as f64 / 1e9);
                    bucket
                })
                .collect(),
        );
        let mut sorted: Vec<_> = labels.to_vec();
        sorted.sort_unstable();
        let mut metric = Metric::from_label(
            sorted
                .into_iter()
                .map(|(name, value)| {
                    let mut pair = LabelPair::default();
                    pair.set_name(name.to_owned());
                    pair.set_value(value.to_owned());
                    pair
                })
                .collect(),
        );
        metric.set_histogram(prom);
        self.family.mut_metric().push(metric);
    }

    /// The family, or `None` without series: the encoder refuses empty families (a host
    /// with no VM, or no source attached).
    #[must_use]
    pub fn into_family(self) -> Option<MetricFamily> {
        (!self.family.get_metric().is_empty()).then_some(self.family)
    }
}
