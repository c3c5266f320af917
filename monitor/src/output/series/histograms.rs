//! Latency as Prometheus histograms, built from the kernel's log2 histograms.
//!
//! The `prometheus` crate's `Histogram` observes values one by one; kvmtop already has the
//! bucket counts, so the metric family is assembled directly. Bucket bounds are powers of two
//! nanoseconds, the kernel's own bucket edges, so no count is re-binned or estimated; each
//! family picks the powers where its intervals live.

use prometheus::proto::{
    Bucket, Histogram as PromHistogram, LabelPair, Metric, MetricFamily, MetricType,
};

use super::text;
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
    name: &'static str,
    help: &'static str,
    powers: &'static [usize],
    /// The `le` label of each power's bucket, as the encoder writes its bound.
    bounds: Vec<String>,
    series: Vec<Series>,
}

/// One histogram series.
struct Series {
    /// Label names and values, sorted.
    labels: Vec<(&'static str, String)>,
    /// Cumulative count at each of the family's powers.
    buckets: Vec<u64>,
    count: u64,
    sum_seconds: f64,
}

impl Family {
    #[must_use]
    pub fn new(name: &'static str, help: &'static str, powers: &'static [usize]) -> Self {
        Self {
            name,
            help,
            powers,
            bounds: powers.iter().map(|&k| bound(k).to_string()).collect(),
            series: Vec::new(),
        }
    }

    /// Adds one series. `labels` are (name, value); values are escaped when written.
    pub fn add(&mut self, labels: &[(&'static str, &str)], histogram: &Histogram) {
        // Histograms the kernel updates from several CPUs are read while they change, so a
        // bucket may already hold an interval the count does not: never let `+Inf` fall below
        // a bucket.
        let in_buckets: u64 = histogram.buckets.iter().sum();
        let mut labels: Vec<_> = labels
            .iter()
            .map(|&(name, value)| (name, value.to_owned()))
            .collect();
        labels.sort_unstable();
        self.series.push(Series {
            labels,
            buckets: self
                .powers
                .iter()
                .map(|&k| histogram.count_below_pow2(k))
                .collect(),
            count: histogram.count.max(in_buckets),
            #[expect(
                clippy::cast_precision_loss,
                reason = "seconds as f64, as Prometheus keeps them"
            )]
            sum_seconds: histogram.sum_ns as f64 / 1e9,
        });
    }

    /// The family, or `None` without series: the encoder refuses empty families (a host
    /// with no VM, or no source attached).
    #[must_use]
    pub fn into_nonempty(self) -> Option<Self> {
        (!self.series.is_empty()).then_some(self)
    }

    /// Appends the family's text exposition to `out`, as the crate's `TextEncoder` writes it:
    /// per series each bucket, `+Inf`, `_sum` and `_count`.
    pub fn write_text(&self, out: &mut String) {
        text::write_header(out, self.name, self.help, "histogram");
        for series in &self.series {
            let labels = || series.labels.iter().map(|(n, v)| (*n, v.as_str()));
            for (bound, &cumulative) in self.bounds.iter().zip(&series.buckets) {
                text::write_sample(
                    out,
                    self.name,
                    "_bucket",
                    labels(),
                    Some(("le", bound)),
                    as_sample(cumulative),
                );
            }
            let count = as_sample(series.count);
            text::write_sample(
                out,
                self.name,
                "_bucket",
                labels(),
                Some(("le", "+Inf")),
                count,
            );
            text::write_sample(out, self.name, "_sum", labels(), None, series.sum_seconds);
            text::write_sample(out, self.name, "_count", labels(), None, count);
        }
    }

    /// The family as the crate's message.
    #[must_use]
    pub fn into_proto(self) -> MetricFamily {
        let mut family = MetricFamily::default();
        family.set_name(self.name.to_owned());
        family.set_help(self.help.to_owned());
        family.set_field_type(MetricType::HISTOGRAM);
        for series in self.series {
            let mut prom = PromHistogram::default();
            prom.set_sample_count(series.count);
            prom.set_sample_sum(series.sum_seconds);
            prom.set_bucket(
                self.powers
                    .iter()
                    .zip(series.buckets)
                    .map(|(&k, cumulative)| {
                        let mut bucket = Bucket::default();
                        bucket.set_cumulative_count(cumulative);
                        bucket.set_upper_bound(bound(k));
                        bucket
                    })
                    .collect(),
            );
            let mut metric = Metric::from_label(
                series
                    .labels
                    .into_iter()
                    .map(|(name, value)| {
                        let mut pair = LabelPair::default();
                        pair.set_name(name.to_owned());
                        pair.set_value(value);
                        pair
                    })
                    .collect(),
            );
            metric.set_histogram(prom);
            family.mut_metric().push(metric);
        }
        family
    }
}

/// The upper bound of the bucket of power `k`, 2^k ns, in seconds.
#[expect(clippy::cast_precision_loss, reason = "powers of two are exact")]
fn bound(k: usize) -> f64 {
    (1u64 << k) as f64 / 1e9
}

/// A count as the encoder writes it, through f64.
#[expect(
    clippy::cast_precision_loss,
    reason = "the encoder writes counts as f64; exact below 2^53"
)]
fn as_sample(count: u64) -> f64 {
    count as f64
}

#[cfg(test)]
mod tests {
    use prometheus::{Encoder as _, TextEncoder};

    use super::*;

    /// Two series with hostile label values: the text written directly is what the crate's
    /// encoder writes from the messages.
    #[test]
    fn the_text_is_the_encoders() {
        let mut family = Family::new("demo_seconds", "A \\ demo\nhelp.", EXIT_POWERS);
        let mut histogram = Histogram::default();
        for (bucket, n) in [(8, 3), (9, 1), (12, 40), (31, 2)] {
            histogram.buckets[bucket] = n;
        }
        histogram.count = 45;
        histogram.sum_ns = 1_234_567_891;
        family.add(&[("vm", "we\"b\n\\"), ("pid", "7")], &histogram);
        family.add(&[("pid", "8"), ("vm", "a")], &Histogram::default());
        let mut direct = String::new();
        family.write_text(&mut direct);
        let mut encoded = Vec::new();
        TextEncoder::new()
            .encode(&[family.into_proto()], &mut encoded)
            .unwrap();
        assert_eq!(direct, String::from_utf8(encoded).unwrap());
        assert!(
            direct.contains(r#"demo_seconds_bucket{pid="7",vm="we\"b\n\\",le="0.000004096"}"#),
            "{direct}"
        );
    }
}
