//! When a pending block request is taken as one whose completion was missed.
//!
//! The kernel programs keep a request pending from submission to completion. A completion the
//! programs never match (the kernel skipped the completion program because another BPF program
//! was running on that CPU; on classic tracepoints, a front merge moved the start sector that
//! stands in for the request's address; a request merged into another) would leave the
//! request pending for good: counted as in flight, and its latency lost without a trace. The
//! agent therefore removes requests pending longer than [`EXPIRE_AFTER`] and counts them as
//! expired, per VM and device.
//!
//! The aging works on (entry, submission time) pairs only, whatever identifies a request in the
//! kernel map.

use std::time::Duration;

/// How long a request may be pending before it is taken as lost.
///
/// Well above any I/O a working device completes: `NVMe` and SATA SSDs complete in micro- to
/// milliseconds even at their p99.99, a busy disk with a deep queue in tens to hundreds of
/// milliseconds, and mq-deadline's longest deadline (`write_expire`) is 5 s, so a request queued
/// behind a flood of reads is dispatched within about that. Well below the point where the
/// kernel itself declares a request stuck: the SCSI and `NVMe` command timeouts are 30 s
/// (`/sys/block/*/device/timeout`, `nvme_core.io_timeout`). A request that takes longer than
/// this on a stalling device is counted as expired rather than completed, which is the signal
/// that matters there; short enough that a missed completion stops counting as in flight within
/// a few windows.
pub const EXPIRE_AFTER: Duration = Duration::from_secs(10);

/// Pending entries split by age.
#[derive(Debug, PartialEq, Eq)]
pub struct Aged<T> {
    /// Pending for at most [`EXPIRE_AFTER`]: still in flight.
    pub live: Vec<T>,
    /// Pending for longer: their completion was missed.
    pub expired: Vec<T>,
}

/// Splits `entries` at `now_ns` (`CLOCK_MONOTONIC`, the programs' clock) by the submission time
/// `submitted_ns` gives for each. A submission stamped after `now_ns` (on another CPU, after
/// the reading of the clock) is live.
pub fn age<T>(
    entries: impl IntoIterator<Item = T>,
    now_ns: u64,
    submitted_ns: impl Fn(&T) -> u64,
) -> Aged<T> {
    let bound = u64::try_from(EXPIRE_AFTER.as_nanos()).unwrap_or(u64::MAX);
    let (expired, live) = entries
        .into_iter()
        .partition(|entry| now_ns.saturating_sub(submitted_ns(entry)) > bound);
    Aged { live, expired }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    #[test]
    fn requests_pending_past_the_bound_expire_and_the_others_stay_in_flight() {
        let now = 10_000 * SECOND;
        let bound = 10 * SECOND;
        let entries = [
            ("just submitted", now),
            ("slow but plausible", now - 5 * SECOND),
            ("exactly at the bound", now - bound),
            ("just past the bound", now - bound - 1),
            ("missed an hour ago", now - 3_600 * SECOND),
            ("stamped after the reading", now + 1_000),
        ];
        let aged = age(entries, now, |(_, at)| *at);
        let names = |v: &[(&'static str, u64)]| v.iter().map(|(n, _)| *n).collect::<Vec<_>>();
        assert_eq!(
            names(&aged.live),
            [
                "just submitted",
                "slow but plausible",
                "exactly at the bound",
                "stamped after the reading"
            ]
        );
        assert_eq!(
            names(&aged.expired),
            ["just past the bound", "missed an hour ago"]
        );
    }

    #[test]
    fn a_clock_near_boot_expires_nothing_it_cannot() {
        // Submitted at 0 with the clock at 3 s: 3 s old, not older than the bound.
        let aged = age([0_u64], 3 * SECOND, |at| *at);
        assert_eq!(aged.expired, Vec::<u64>::new());
    }
}
