//! Exit-handling latency: log2 histograms kept in the kernel per (VMM, vCPU thread, source, reason).
//!
//! Three intervals are measured, each from an event to the next one on the same thread:
//! `kvm_exit` → `kvm_entry` (a hardware exit handled, by KVM or through the VMM),
//! `kvm_userspace_exit` → the next `KVM_RUN` ioctl (time spent in the VMM), and the halt a
//! `kvm_vcpu_wakeup` reports (the kernel measures that one itself).

use crate::exits::ExitKey;

/// Hash map: [`ExitKey`] → [`LatencyHist`]. Not per-CPU: every key names one thread, and a
/// thread's events never run concurrently, so plain updates are exact and the memory is
/// independent of the number of CPUs.
pub const EXIT_LATENCY_MAP: &str = "EXIT_LATENCY";
pub const EXIT_LATENCY_CAPACITY: u32 = 8_192;
/// Hash maps: thread id → [`PendingExit`], the exit each thread is handling right now.
pub const PENDING_EXITS_MAP: &str = "PENDING_EXITS";
pub const PENDING_USERSPACE_MAP: &str = "PENDING_USERSPACE";
/// Threads tracked at once (vCPU threads of every VM on the host).
pub const PENDING_CAPACITY: u32 = 16_384;

/// Program names.
pub const PROG_KVM_ENTRY: &str = "kvm_entry";
/// `syscalls:sys_enter_ioctl`, filtered to `KVM_RUN` in its first instructions.
pub const PROG_KVM_RUN: &str = "kvm_run";
pub const PROG_VCPU_WAKEUP: &str = "kvm_vcpu_wakeup";

/// `KVM_RUN`, i.e. `_IO(KVMIO, 0x80)`.
pub const KVM_RUN_IOCTL: u64 = 0xAE80;

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

/// The exit a thread is handling: what to file its latency under once it ends.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingExit {
    /// `bpf_ktime_get_ns()` at the exit; 0 once the interval has been recorded.
    pub start_ns: u64,
    /// The key the interval is recorded under (its `tid` is the map key).
    pub key: ExitKey,
}

/// `ExitKey::reason` of a halt (source [`crate::ExitSource::Halt`]): bit 0 set when the vCPU
/// blocked (it was not woken while KVM polled), bit 1 set when the wakeup was spurious (KVM found
/// nothing to do and halts again).
pub const HALT_BLOCKED: u64 = 1;
pub const HALT_SPURIOUS: u64 = 2;

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
const _: () = assert!(core::mem::size_of::<PendingExit>() == 40);
const _: () = assert!(bucket_of(0) == 0);
const _: () = assert!(bucket_of(1) == 0);
const _: () = assert!(bucket_of(2) == 1);
const _: () = assert!(bucket_of(1023) == 9);
const _: () = assert!(bucket_of(1024) == 10);
const _: () = assert!(bucket_of(u64::MAX) == HIST_BUCKETS - 1);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: #[repr(C)], integers only, no padding (sizes asserted above).
    unsafe impl aya::Pod for super::LatencyHist {}
    unsafe impl aya::Pod for super::PendingExit {}
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
