//! Log2 latency histograms, as the kernel programs keep them, and the percentiles users see.

use monitor_common::histogram::{HIST_BUCKETS, bucket_floor_ns};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::running::Running;

/// Intervals in nanoseconds, bucketed by floor(log2(ns)) (see `monitor_common::latency`).
/// Serialized (only in recordings, as a running total) with its non-empty buckets alone.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "Sparse")]
pub struct Histogram {
    pub count: u64,
    pub sum_ns: u64,
    /// Largest interval since counting began (the kernel keeps no per-window maximum).
    pub max_ns: u64,
    pub buckets: [u64; HIST_BUCKETS],
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            count: 0,
            sum_ns: 0,
            max_ns: 0,
            buckets: [0; HIST_BUCKETS],
        }
    }
}

/// A [`Histogram`] as stored: its non-empty buckets as `[index, count]` pairs.
#[derive(Deserialize)]
struct Sparse {
    count: u64,
    sum_ns: u64,
    max_ns: u64,
    buckets: Vec<(usize, u64)>,
}

/// Written as [`Sparse`] without building one: a window of 100 VMs writes some 1,500
/// histograms, and a copy and a bucket list for each showed in the flight recorder's profile.
impl Serialize for Histogram {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut sparse = serializer.serialize_struct("Sparse", 4)?;
        sparse.serialize_field("count", &self.count)?;
        sparse.serialize_field("sum_ns", &self.sum_ns)?;
        sparse.serialize_field("max_ns", &self.max_ns)?;
        sparse.serialize_field("buckets", &NonEmptyBuckets(&self.buckets))?;
        sparse.end()
    }
}

/// The non-empty buckets of a histogram as `[index, count]` pairs, as [`Sparse`] holds them.
struct NonEmptyBuckets<'a>(&'a [u64; HIST_BUCKETS]);

impl Serialize for NonEmptyBuckets<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(
            self.0
                .iter()
                .enumerate()
                .filter(|&(_, &n)| n > 0)
                .map(|(i, &n)| (i, n)),
        )
    }
}

impl TryFrom<Sparse> for Histogram {
    type Error = String;

    /// A recording can come from anywhere: a bucket index out of range is refused.
    fn try_from(s: Sparse) -> Result<Self, String> {
        let mut buckets = [0; HIST_BUCKETS];
        for (index, count) in s.buckets {
            *buckets
                .get_mut(index)
                .ok_or_else(|| format!("histogram bucket {index} of {HIST_BUCKETS}"))? = count;
        }
        Ok(Self {
            count: s.count,
            sum_ns: s.sum_ns,
            max_ns: s.max_ns,
            buckets,
        })
    }
}

/// One non-empty bucket of a histogram: `count` intervals in `[floor_ns, 2 × floor_ns)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Bucket {
    pub floor_ns: u64,
    pub count: u64,
}

/// The summary shown per reason, VM and vCPU.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LatencySummary {
    pub count: u64,
    pub total_ns: u64,
    pub mean_ns: u64,
    pub p50_ns: u64,
    pub p90_ns: u64,
    pub p99_ns: u64,
    /// The largest interval in the window, or an upper bound of it: the top of the highest
    /// non-empty bucket, capped by the largest interval ever seen.
    pub max_ns: u64,
}

/// Counts, sums and buckets are running totals. The kernel keeps no per-window maximum, so a
/// window keeps the running one (an upper bound, see [`LatencySummary::max_ns`]) and a group the
/// largest of its members'.
impl Running for Histogram {
    fn since(&self, earlier: &Self) -> Self {
        Self {
            count: self.count.since(&earlier.count),
            sum_ns: self.sum_ns.since(&earlier.sum_ns),
            max_ns: self.max_ns,
            buckets: self.buckets.since(&earlier.buckets),
        }
    }

    fn merge(&mut self, other: &Self) {
        self.count.merge(&other.count);
        self.sum_ns.merge(&other.sum_ns);
        self.max_ns = self.max_ns.max(other.max_ns);
        self.buckets.merge(&other.buckets);
    }
}

impl Histogram {
    /// Upper end (exclusive) of a bucket, capped by the largest interval seen.
    fn bucket_ceiling(&self, bucket: usize) -> u64 {
        let top = if bucket + 1 >= HIST_BUCKETS {
            self.max_ns.max(bucket_floor_ns(bucket))
        } else {
            bucket_floor_ns(bucket + 1)
        };
        top.min(self.max_ns.max(bucket_floor_ns(bucket)))
    }

    /// The `q`-quantile (0 < q ≤ 1), interpolated linearly inside its bucket as Prometheus'
    /// `histogram_quantile` does; `None` without intervals.
    #[must_use]
    #[expect(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "counts and nanoseconds far below 2^52; the result is a non-negative time"
    )]
    pub fn quantile(&self, q: f64) -> Option<u64> {
        let total: u64 = self.buckets.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let mut below = 0u64;
        for (bucket, &n) in self.buckets.iter().enumerate() {
            if n == 0 {
                continue;
            }
            if (below + n) as f64 >= rank {
                let floor = bucket_floor_ns(bucket) as f64;
                let ceiling = self.bucket_ceiling(bucket) as f64;
                let within = ((rank - below as f64) / n as f64).clamp(0.0, 1.0);
                return Some((floor + (ceiling - floor) * within).round() as u64);
            }
            below += n;
        }
        None
    }

    /// Top of the highest non-empty bucket, capped by the largest interval seen.
    #[must_use]
    pub fn max_bound(&self) -> Option<u64> {
        let highest = self.buckets.iter().rposition(|&n| n > 0)?;
        Some(self.bucket_ceiling(highest))
    }

    #[must_use]
    pub fn summary(&self) -> Option<LatencySummary> {
        Some(LatencySummary {
            count: self.count,
            total_ns: self.sum_ns,
            mean_ns: self.sum_ns.checked_div(self.count)?,
            p50_ns: self.quantile(0.5)?,
            p90_ns: self.quantile(0.9)?,
            p99_ns: self.quantile(0.99)?,
            max_ns: self.max_bound()?,
        })
    }

    /// The non-empty buckets, for snapshots.
    #[must_use]
    pub fn nonempty_buckets(&self) -> Vec<Bucket> {
        self.buckets
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(bucket, &count)| Bucket {
                floor_ns: bucket_floor_ns(bucket),
                count,
            })
            .collect()
    }

    /// Intervals shorter than `2^k` ns: the cumulative count of a Prometheus bucket with that
    /// bound (an interval of exactly 2^k ns falls in the next bucket, a 1-ns difference).
    #[must_use]
    pub fn count_below_pow2(&self, k: usize) -> u64 {
        // Bucket b holds [2^b, 2^(b+1)): all of it is below 2^k when b + 1 ≤ k.
        self.buckets.iter().take(k.min(HIST_BUCKETS)).sum()
    }
}

#[cfg(test)]
mod tests {
    use monitor_common::histogram::bucket_of;

    use super::*;

    fn of(intervals: &[u64]) -> Histogram {
        let mut h = Histogram::default();
        for &ns in intervals {
            h.count += 1;
            h.sum_ns += ns;
            h.max_ns = h.max_ns.max(ns);
            h.buckets[bucket_of(ns)] += 1;
        }
        h
    }

    #[test]
    fn percentiles_interpolate_inside_the_bucket() {
        // 100 intervals of 3 µs: bucket [2048, 4096) capped by the max 3000.
        let h = of(&[3_000; 100]);
        assert_eq!(h.quantile(0.5), Some(2_524));
        assert_eq!(h.quantile(1.0), Some(3_000));
        assert_eq!(h.max_bound(), Some(3_000));
    }

    #[test]
    fn percentiles_pick_the_right_bucket() {
        // 90 fast (1.5 µs) and 10 slow (100 µs) intervals.
        let mut intervals = vec![1_500; 90];
        intervals.extend([100_000; 10]);
        let h = of(&intervals);
        let p50 = h.quantile(0.5).unwrap();
        assert!((1_024..2_048).contains(&p50), "{p50}");
        let p99 = h.quantile(0.99).unwrap();
        assert!((65_536..=100_000).contains(&p99), "{p99}");
        let s = h.summary().unwrap();
        assert_eq!(s.mean_ns, (90 * 1_500 + 10 * 100_000) / 100);
    }

    #[test]
    fn window_difference_and_merge() {
        let earlier = of(&[1_000, 2_000]);
        let later = of(&[1_000, 2_000, 2_000, 70_000]);
        let window = later.since(&earlier);
        assert_eq!(window.count, 2);
        assert_eq!(window.sum_ns, 72_000);
        assert_eq!(window.buckets[bucket_of(2_000)], 1);
        let mut both = window.clone();
        both.merge(&window);
        assert_eq!(both.count, 4);
        assert_eq!(Histogram::default().summary(), None);
    }

    #[test]
    fn cumulative_counts_for_prometheus() {
        let h = of(&[500, 1_000, 5_000]);
        assert_eq!(h.count_below_pow2(10), 2); // < 1024 ns
        assert_eq!(h.count_below_pow2(13), 3); // < 8192 ns
    }

    #[test]
    fn a_histogram_is_stored_with_its_nonempty_buckets_and_read_back_whole() {
        let h = of(&[500, 1_000, 5_000, 5_000]);
        let written = serde_json::to_string(&h).unwrap();
        assert_eq!(
            written,
            r#"{"count":4,"sum_ns":11500,"max_ns":5000,"buckets":[[8,1],[9,1],[12,2]]}"#
        );
        let read: Histogram = serde_json::from_str(&written).unwrap();
        assert_eq!(read, h);
        assert_eq!(
            serde_json::to_string(&Histogram::default()).unwrap(),
            r#"{"count":0,"sum_ns":0,"max_ns":0,"buckets":[]}"#
        );
        let beyond =
            format!(r#"{{"count":1,"sum_ns":1,"max_ns":1,"buckets":[[{HIST_BUCKETS},1]]}}"#);
        assert!(serde_json::from_str::<Histogram>(&beyond).is_err());
    }
}
