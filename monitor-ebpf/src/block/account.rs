//! The per-request accounting shared by the block programs and the test harness. Every input
//! (the current process, the time) is an argument, so the harness can drive it with exact values.
//!
//! A request's own events are ordered by the block layer (created, then issued, then completed),
//! so its pending entry needs no locking. Completions of different requests of one (VMM, device,
//! operation) can run on several CPUs at once, so the shared totals are added atomically.

#![expect(clippy::inline_always)]

use aya_ebpf::{
    bindings::{BPF_ANY, BPF_F_NO_PREALLOC, BPF_NOEXIST},
    macros::map,
    maps::{HashMap, PerCpuArray},
};
use monitor_common::{
    block::{
        BLOCK_PENDING_CAPACITY, BLOCK_STATS_CAPACITY, BlockKey, BlockStats, PendingRequest,
        RequestKey,
    },
    diagnostics::Condition,
    histogram::{LatencyHist, bucket_of},
};

use crate::{atomic::atomic_add, diagnostics::report};

#[map(name = "BLOCK_PENDING")]
static BLOCK_PENDING: HashMap<RequestKey, PendingRequest> =
    HashMap::with_max_entries(BLOCK_PENDING_CAPACITY, 0);

#[map(name = "BLOCK_STATS")]
static BLOCK_STATS: HashMap<BlockKey, BlockStats> =
    HashMap::with_max_entries(BLOCK_STATS_CAPACITY, BPF_F_NO_PREALLOC);

#[map(name = "BLOCK_DROPS")]
static BLOCK_DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Inserted for a key's first completion: a map value, so the helper copies it without a
/// 700-byte stack buffer (the BPF stack has 512).
static ZERO_STATS: BlockStats = BlockStats::ZERO;

/// A request as its record describes it.
pub struct Request {
    pub key: RequestKey,
    /// The whole disk's `dev_t`, kept in the pending entry for the totals.
    pub dev: u32,
    /// `monitor_common::block::BlockOp` as u32.
    pub op: u32,
    pub bytes: u32,
}

/// A request created by `tgid` (a watched VMM: the caller tested it). `keep_first` keeps an
/// existing entry, for kernels where a requeued request passes the submission point again.
#[inline(always)]
pub fn on_submit(tgid: u32, request: &Request, now: u64, keep_first: bool) {
    let pending = PendingRequest {
        tgid,
        op: request.op,
        dev: request.dev,
        bytes: request.bytes,
        submit_ns: now,
        issue_ns: 0,
    };
    let flags = if keep_first { BPF_NOEXIST } else { BPF_ANY };
    track(request.key, &pending, flags);
}

/// A request handed to the driver: when it is pending, its issue time and its size then are
/// kept. Returns whether it was pending. `bytes` is called only then, so that the raw-argument
/// programs read nothing of the many requests no VMM submitted.
#[inline(always)]
pub fn issue_pending(key: &RequestKey, now: u64, bytes: impl FnOnce() -> u32) -> bool {
    let Some(pending) = BLOCK_PENDING.get_ptr_mut(key) else {
        return false;
    };
    // SAFETY: as below.
    if unsafe { (*pending).is_completed() } {
        // An earlier request at this key, counted: this one was not submitted by a VMM, or on
        // kernels without `block_io_start` is tracked from here by the caller.
        return false;
    }
    let bytes = bytes();
    // SAFETY: this request's entry; its events are serialised by the block layer.
    unsafe {
        // The last issue counts, as for biolatency: a requeued request is timed from its final
        // dispatch.
        (*pending).issue_ns = now;
        if bytes != 0 {
            (*pending).bytes = bytes;
        }
    }
    true
}

/// A request not pending at its issue, issued in the context of `tgid`, a watched VMM, on
/// kernels where submissions are only seen at insert/issue (without `block_io_start`): tracked
/// from here, with no time queued.
#[inline(always)]
pub fn issue_untracked(tgid: u32, request: &Request, now: u64) {
    let pending = PendingRequest {
        tgid,
        op: request.op,
        dev: request.dev,
        bytes: request.bytes,
        submit_ns: now,
        issue_ns: now,
    };
    track(request.key, &pending, BPF_ANY);
}

/// Starts tracking a request. A request the map refuses is counted: it is then lost to every
/// figure. An existing entry kept under `BPF_NOEXIST` is the caller's intent, not a loss, unless
/// it is a completed request's (see `PendingRequest::COMPLETED`), which this one replaces.
#[inline(always)]
fn track(key: RequestKey, pending: &PendingRequest, flags: u32) {
    match BLOCK_PENDING.insert(key, pending, u64::from(flags)) {
        Ok(()) => {}
        Err(EEXIST) => {
            if let Some(existing) = BLOCK_PENDING.get_ptr_mut(key) {
                // SAFETY: this key's entry; its request's events are serialised by the block
                // layer, and a completed one has no more.
                unsafe {
                    if (*existing).is_completed() {
                        *existing = *pending;
                    }
                }
            }
        }
        Err(E2BIG) => drop_one(Condition::BlockMapFull),
        Err(_) => drop_one(Condition::BlockMapRefused),
    }
}

/// From the kernel's errno-base.h, as negative map helper results: the key exists and
/// `BPF_NOEXIST` kept it; the map is full.
const EEXIST: i32 = -17;
const E2BIG: i32 = -7;

/// A request completed: its intervals go to its submitter's totals, under the device kept since
/// its submission (the key may not name one).
#[inline(always)]
pub fn on_complete(key: &RequestKey, now: u64) {
    complete(key, now, |key| BLOCK_PENDING.remove(key).is_ok());
}

/// [`on_complete`] with the removal of the entry given, so the harness can make it fail.
#[inline(always)]
pub fn complete(key: &RequestKey, now: u64, remove: impl FnOnce(&RequestKey) -> bool) {
    let Some(entry) = BLOCK_PENDING.get_ptr_mut(key) else {
        return;
    };
    // SAFETY: as in `issue_pending`; copied out before the entry is marked and removed.
    let pending = unsafe { *entry };
    if pending.is_completed() {
        // An earlier request at this key, counted, whose entry the kernel kept; this one was
        // never tracked.
        remove(key);
        return;
    }
    // Marked before the removal: the kernel may refuse that (a bucket lock held past its
    // timeout), and the entry must not then stay in flight.
    // SAFETY: as above.
    unsafe { (*entry).tgid = PendingRequest::COMPLETED };
    if !remove(key) {
        report(Condition::BlockMapRefused);
    }
    let stats_key = BlockKey {
        tgid: pending.tgid,
        dev: pending.dev,
        op: pending.op,
        pad: 0,
    };
    let Some(stats) = stats_for(&stats_key) else {
        drop_one(Condition::BlockMapFull);
        return;
    };
    // SAFETY: a map value; the fields are only ever changed with atomic adds (and the racy
    // maximum, see `record`).
    unsafe {
        atomic_add(&raw mut (*stats).bytes, u64::from(pending.bytes));
        if pending.issue_ns != 0 && pending.issue_ns <= now {
            record(&raw mut (*stats).latency, now - pending.issue_ns);
            record(
                &raw mut (*stats).queue,
                pending.issue_ns.saturating_sub(pending.submit_ns),
            );
        } else {
            atomic_add(&raw mut (*stats).unissued, 1);
            record(
                &raw mut (*stats).latency,
                now.saturating_sub(pending.submit_ns),
            );
        }
    }
}

#[inline(always)]
fn stats_for(key: &BlockKey) -> Option<*mut BlockStats> {
    if let Some(stats) = BLOCK_STATS.get_ptr_mut(key) {
        return Some(stats);
    }
    // BPF_NOEXIST: never reset totals another CPU created meanwhile.
    #[expect(
        clippy::needless_borrows_for_generic_args,
        reason = "by value would copy 700 bytes onto the 512-byte BPF stack"
    )]
    let _ = BLOCK_STATS.insert(key, &ZERO_STATS, u64::from(BPF_NOEXIST));
    BLOCK_STATS.get_ptr_mut(key)
}

/// Adds one interval to a histogram shared between CPUs.
///
/// # Safety
/// `hist` must point into a live map value.
#[inline(always)]
unsafe fn record(hist: *mut LatencyHist, ns: u64) {
    // SAFETY: the caller's guarantee; the bucket index is bounded by `get_mut`.
    unsafe {
        atomic_add(&raw mut (*hist).count, 1);
        atomic_add(&raw mut (*hist).sum_ns, ns);
        // Not atomic: two CPUs may race and keep the smaller of two new maxima. The maximum is
        // an upper bound for the percentiles' last bucket, where being off by one request of a
        // near-identical size does not matter.
        if ns > (*hist).max_ns {
            (*hist).max_ns = ns;
        }
        if let Some(bucket) = (*hist).buckets.get_mut(bucket_of(ns)) {
            atomic_add(bucket, 1);
        }
    }
}

#[inline(always)]
fn drop_one(why: Condition) {
    if let Some(drops) = BLOCK_DROPS.get_ptr_mut(0) {
        // SAFETY: per-CPU slot owned by this CPU while the program runs.
        unsafe { *drops += 1 };
    }
    report(why);
}
