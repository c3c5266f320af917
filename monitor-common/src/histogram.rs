//! The log2 histogram of nanosecond intervals every family keeps in the kernel (exit handling,
//! run-queue waits, block request latency), and its bucket arithmetic, shared by the programs
//! and the agent.

/// Number of log2 buckets: bucket `i` ≥ 1 counts intervals in `[2^i, 2^(i+1))` ns, bucket 0
/// counts 0–1 ns, and the last bucket also takes everything longer (2^39 ns ≈ 9 minutes).
pub const HIST_BUCKETS: usize = 40;

/// A log2 histogram of nanosecond intervals, with exact count, sum and maximum.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LatencyHist {
    pub count: u64,
    pub sum_ns: u64,
    pub max_ns: u64,
    pub buckets: [u64; HIST_BUCKETS],
}

impl LatencyHist {
    pub const ZERO: Self = Self {
        count: 0,
        sum_ns: 0,
        max_ns: 0,
        buckets: [0; HIST_BUCKETS],
    };

    /// Adds one interval. Not atomic: for histograms only one thread's events update (a
    /// thread's events never run concurrently).
    #[inline(always)]
    #[expect(clippy::inline_always, reason = "on the kernel hot path")]
    pub fn record(&mut self, ns: u64) {
        self.count += 1;
        self.sum_ns += ns;
        if ns > self.max_ns {
            self.max_ns = ns;
        }
        // `get_mut` keeps a bounds check the verifier can see.
        if let Some(bucket) = self.buckets.get_mut(bucket_of(ns)) {
            *bucket += 1;
        }
    }
}

/// The histogram bucket of an interval: floor(log2(ns)), capped at the last bucket.
/// Branch-free apart from the cap, so the verifier sees a bounded index.
#[inline(always)]
#[must_use]
#[expect(clippy::inline_always, reason = "on the kernel hot path")]
#[expect(
    clippy::cast_possible_truncation,
    reason = "a log2 of a u64 is below 64"
)]
pub const fn bucket_of(ns: u64) -> usize {
    let mut v = ns;
    let mut log = 0u64;
    let mut shift = ((v > 0xFFFF_FFFF) as u64) << 5;
    v >>= shift;
    log |= shift;
    shift = ((v > 0xFFFF) as u64) << 4;
    v >>= shift;
    log |= shift;
    shift = ((v > 0xFF) as u64) << 3;
    v >>= shift;
    log |= shift;
    shift = ((v > 0xF) as u64) << 2;
    v >>= shift;
    log |= shift;
    shift = ((v > 0x3) as u64) << 1;
    v >>= shift;
    log |= shift;
    log |= v >> 1;
    let log = log as usize;
    if log < HIST_BUCKETS {
        log
    } else {
        HIST_BUCKETS - 1
    }
}

/// Lower bound (inclusive) of a bucket, in ns.
#[must_use]
pub const fn bucket_floor_ns(bucket: usize) -> u64 {
    if bucket == 0 { 0 } else { 1 << bucket }
}

const _: () = assert!(core::mem::size_of::<LatencyHist>() == 8 * (3 + HIST_BUCKETS));
const _: () = assert!(bucket_of(0) == 0);
const _: () = assert!(bucket_of(1) == 0);
const _: () = assert!(bucket_of(2) == 1);
const _: () = assert!(bucket_of(1023) == 9);
const _: () = assert!(bucket_of(1024) == 10);
const _: () = assert!(bucket_of(u64::MAX) == HIST_BUCKETS - 1);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: #[repr(C)], integers only, no padding (size asserted above).
    unsafe impl aya::Pod for super::LatencyHist {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_power_of_two_starts_its_bucket() {
        for i in 1..64 {
            let floor = 1u64 << i;
            let expected = i.min(HIST_BUCKETS - 1);
            assert_eq!(bucket_of(floor), expected, "2^{i}");
            assert_eq!(
                bucket_of(floor - 1),
                (i - 1).min(HIST_BUCKETS - 1),
                "2^{i}-1"
            );
        }
    }
}
