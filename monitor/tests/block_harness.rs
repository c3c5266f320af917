//! The block programs' kernel logic, driven through `BPF_PROG_TEST_RUN` with synthetic requests,
//! chosen processes and exact timestamps: the same inline functions the tracepoint programs run,
//! fed through a raw-tracepoint harness, read back through the agent.

mod support;

use std::collections::BTreeMap;

use kvmtop::families::block::{
    BlockCounterKey, BlockOp, BlockTotals, DevId, OpTotals, expiry::EXPIRE_AFTER,
};
use monitor_common::{
    block::{
        BLOCK_PENDING_CAPACITY, HARNESS_COMPLETE, HARNESS_ISSUE, HARNESS_SUBMIT,
        PROG_BLOCK_HARNESS, PROG_BLOCK_RQ_COMPLETE_RAW, PROG_BLOCK_RQ_ISSUE_RAW, dev_of,
    },
    histogram::{HIST_BUCKETS, bucket_of},
};
use support::harness::VmmHarness;

/// A device number no real disk has (major 4095 is the largest the kernel encodes), so real
/// requests never meet the synthetic ones in the pending map.
const MAJOR: u32 = 4095;

struct Harness(VmmHarness);

/// How a submission keys its request, and whether it keeps an existing entry.
#[derive(Clone, Copy)]
enum Submission {
    /// By device and start sector, as the classic programs key it.
    BySector,
    /// By its address, as the raw-argument programs key it.
    ByAddress,
    /// By its address, at an insert (kernels before 6.5), keeping an existing live entry.
    InsertByAddress,
}

impl Harness {
    fn open(test: &str, pid_offset: u32) -> Option<Self> {
        VmmHarness::open(test, pid_offset).map(Self)
    }

    fn submit(&mut self, pid: u32, dev: u32, sector: u64, rwbs: &str, bytes: u64, at: u64) {
        self.submit_keyed(pid, dev, sector, rwbs, bytes, at, Submission::BySector);
    }

    /// A submission as the raw-argument programs make it: the request keyed by its address
    /// alone, its device kept in the pending entry.
    fn submit_by_address(&mut self, pid: u32, dev: u32, rq: u64, rwbs: &str, bytes: u64, at: u64) {
        self.submit_keyed(pid, dev, rq, rwbs, bytes, at, Submission::ByAddress);
    }

    /// A read of 4 KiB inserted into a queue on a kernel without `block_io_start`: an existing
    /// entry (the request requeued) keeps its submission time.
    fn insert_by_address(&mut self, pid: u32, dev: u32, rq: u64, at: u64) {
        self.submit_keyed(pid, dev, rq, "RS", 4_096, at, Submission::InsertByAddress);
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "the harness operation's arguments"
    )]
    fn submit_keyed(
        &mut self,
        pid: u32,
        dev: u32,
        id: u64,
        rwbs: &str,
        bytes: u64,
        at: u64,
        how: Submission,
    ) {
        let (by_address, keep_first) = match how {
            Submission::BySector => (false, false),
            Submission::ByAddress => (true, false),
            Submission::InsertByAddress => (true, true),
        };
        let args = [
            HARNESS_SUBMIT,
            pid.into(),
            dev.into(),
            id,
            rwbs_arg(rwbs),
            bytes,
            at,
            u64::from(by_address),
            u64::from(keep_first),
        ];
        self.0.run(PROG_BLOCK_HARNESS, None, &args);
    }

    /// An issue in the context of `current` (a kworker, say); `fallback` as on kernels without
    /// `block_io_start`.
    fn issue(&mut self, current: u32, dev: u32, sector: u64, bytes: u64, at: u64, fallback: bool) {
        let args = [
            HARNESS_ISSUE,
            current.into(),
            dev.into(),
            sector,
            rwbs_arg("RS"),
            bytes,
            at,
            u64::from(fallback),
        ];
        self.0.run(PROG_BLOCK_HARNESS, None, &args);
    }

    fn complete(&mut self, dev: u32, sector: u64, at: u64) {
        self.0.run(
            PROG_BLOCK_HARNESS,
            None,
            &[HARNESS_COMPLETE, 0, dev.into(), sector, at, 0],
        );
    }

    /// A completion whose entry the kernel refuses to remove (a bucket lock held past its
    /// timeout).
    fn complete_unremoved(&mut self, dev: u32, sector: u64, at: u64) {
        self.0.run(
            PROG_BLOCK_HARNESS,
            None,
            &[HARNESS_COMPLETE, 0, dev.into(), sector, at, 1],
        );
    }

    /// The agent's reading of the block maps: totals, requests in flight, expired requests.
    fn read(&mut self) -> BlockTotals {
        self.0.session.families_mut().block.counters_mut().read(&[])
    }

    fn block(&mut self, pid: u32) -> BTreeMap<(DevId, BlockOp), OpTotals> {
        self.read()
            .stats
            .into_iter()
            .filter(|(k, _)| k.pid == pid)
            .map(|(BlockCounterKey { dev, op, .. }, t)| ((dev, op), t))
            .collect()
    }
}

/// `rwbs` as the harness takes it: its first two bytes, little-endian.
fn rwbs_arg(rwbs: &str) -> u64 {
    let bytes = rwbs.as_bytes();
    u64::from(bytes[0]) | (u64::from(*bytes.get(1).unwrap_or(&0)) << 8)
}

fn buckets(intervals: &[u64]) -> [u64; HIST_BUCKETS] {
    let mut expected = [0; HIST_BUCKETS];
    for ns in intervals {
        expected[bucket_of(*ns)] += 1;
    }
    expected
}

#[test]
fn block_requests_are_attributed_to_their_submitter_with_exact_buckets() {
    let Some(mut h) = Harness::open(
        "block_requests_are_attributed_to_their_submitter_with_exact_buckets",
        10,
    ) else {
        return;
    };
    let p = h.0.pid;
    let dev = dev_of(MAJOR, 0xA_0000 + (p & 0xFFFF));
    let kworker = 0;
    // 20 reads of 4 KiB, merged to 8 KiB before issue: queued 3 µs, 100 µs at the device; the
    // issue and completion run outside the VMM (a kworker, an interrupt).
    for i in 0..20 {
        let (sector, t) = (1_000 + i * 16, 1_000_000 + i * 1_000_000);
        h.submit(p, dev, sector, "RS", 4_096, t);
        h.issue(kworker, dev, sector, 8_192, t + 3_000, false);
        h.complete(dev, sector, t + 103_000);
    }
    // 4 writes with a pre-flush ("FWS"): 1 µs queued, 2 ms at the device.
    for i in 0..4 {
        let (sector, t) = (50_000 + i * 8, 100_000_000 + i * 10_000_000);
        h.submit(p, dev, sector, "FWS", 4_096, t);
        h.issue(kworker, dev, sector, 0, t + 1_000, false);
        h.complete(dev, sector, t + 2_001_000);
    }
    // A flush the block layer serves itself: never issued, 40 µs from submission to completion.
    h.submit(p, dev, 0, "FF", 0, 200_000_000);
    h.complete(dev, 0, 200_040_000);
    // A discard, and a request still in flight.
    h.submit(p, dev, 70_000, "DS", 1 << 20, 300_000_000);
    h.issue(kworker, dev, 70_000, 1 << 20, 300_000_500, false);
    h.complete(dev, 70_000, 300_500_500);
    // Pending requests older than EXPIRE_AFTER are taken as lost, so this one is submitted now.
    let now = kvmtop::host::clock::monotonic_ns();
    h.submit(p, dev, 90_000, "RS", 4_096, now);
    // Another process's request on the same device is not counted for anyone.
    h.submit(p + 500, dev, 80_000, "RS", 4_096, 500_000_000);
    h.issue(kworker, dev, 80_000, 4_096, 500_001_000, false);
    h.complete(dev, 80_000, 500_100_000);

    let stats = h.block(p);
    let dev_id = DevId::from_kernel(dev);
    let reads = &stats[&(dev_id, BlockOp::Read)];
    assert_eq!(reads.requests(), 20);
    assert_eq!(reads.bytes, 20 * 8_192, "bytes as issued, after merges");
    assert_eq!(reads.latency.buckets, buckets(&[103_000 - 3_000; 20]));
    assert_eq!(reads.latency.sum_ns, 20 * 100_000);
    assert_eq!(reads.queue.buckets, buckets(&[3_000; 20]));
    let writes = &stats[&(dev_id, BlockOp::Write)];
    assert_eq!(writes.requests(), 4);
    assert_eq!(writes.bytes, 4 * 4_096, "a 0-byte issue keeps the size");
    assert_eq!(writes.latency.buckets, buckets(&[2_000_000; 4]));
    assert_eq!(writes.queue.buckets, buckets(&[1_000; 4]));
    let flush = &stats[&(dev_id, BlockOp::Flush)];
    assert_eq!(
        (flush.requests(), flush.unissued, flush.queue.count),
        (1, 1, 0)
    );
    assert_eq!(flush.latency.buckets, buckets(&[40_000]));
    let discard = &stats[&(dev_id, BlockOp::Discard)];
    assert_eq!((discard.requests(), discard.bytes), (1, 1 << 20));
    assert_eq!(discard.latency.max_ns, 500_000);
    assert_eq!(stats.len(), 4, "{stats:#?}");
    assert!(h.block(p + 500).is_empty());
    // The request still in flight is the only one pending for this process.
    let totals = h.0.session.families_mut().block.counters_mut().read(&[]);
    assert_eq!(totals.in_flight.get(&(p, dev_id)), Some(&1));
    h.complete(dev, 90_000, now + 10_000);
    assert_eq!(h.block(p)[&(dev_id, BlockOp::Read)].requests(), 21);
}

#[test]
fn older_kernels_attribute_at_issue_in_the_submitters_context() {
    let Some(mut h) = Harness::open(
        "older_kernels_attribute_at_issue_in_the_submitters_context",
        20,
    ) else {
        return;
    };
    let p = h.0.pid;
    let dev = dev_of(MAJOR, 0xB_0000 + (p & 0xFFFF));
    // Issued directly by the VMM (no insert), then completed: attributed, no queue time.
    h.issue(p, dev, 8, 4_096, 1_000, true);
    h.complete(dev, 8, 51_000);
    // Issued by a kworker with no earlier submission seen: not attributed.
    h.issue(0, dev, 16, 4_096, 2_000, true);
    h.complete(dev, 16, 52_000);
    // Without the fallback (block_io_start kernels), an issue never creates a request.
    h.issue(p, dev, 24, 4_096, 3_000, false);
    h.complete(dev, 24, 53_000);

    let stats = h.block(p);
    let reads = &stats[&(DevId::from_kernel(dev), BlockOp::Read)];
    assert_eq!(reads.requests(), 1, "{stats:#?}");
    assert_eq!(reads.latency.buckets, buckets(&[50_000]));
    assert_eq!(reads.queue.buckets, buckets(&[0]));
}

#[test]
fn requests_in_flight_end_with_their_process() {
    let Some(mut h) = Harness::open("requests_in_flight_end_with_their_process", 30) else {
        return;
    };
    let p = h.0.pid;
    let dev = dev_of(MAJOR, 0xC_0000 + (p & 0xFFFF));
    let dev_id = DevId::from_kernel(dev);
    let now = kvmtop::host::clock::monotonic_ns();
    h.submit(p, dev, 100, "RS", 4_096, now);
    h.issue(0, dev, 100, 4_096, now + 1_000, false);
    let in_flight = |h: &mut Harness| {
        let totals = h.0.session.families_mut().block.counters_mut().read(&[]);
        totals.in_flight.get(&(p, dev_id)).copied()
    };
    assert_eq!(in_flight(&mut h), Some(1));
    // The process exits (or its pid goes to another process): its totals go, and so does its
    // request in flight, in the window that finds it gone and after.
    let totals =
        h.0.session
            .families_mut()
            .block
            .counters_mut()
            .read_retaining(|pid| pid != p, &[]);
    assert_eq!(totals.in_flight.get(&(p, dev_id)), None, "{totals:#?}");
    assert_eq!(in_flight(&mut h), None);
    // Completed late, when a new process may have the pid, it is counted for no one.
    h.complete(dev, 100, now + 100_000);
    assert!(h.block(p).is_empty(), "{:#?}", h.block(p));
}

/// A request whose completion never comes (the kernel skipped the completion program, say) is
/// removed once pending longer than `EXPIRE_AFTER` and counted as expired for its VM and device,
/// once; it no longer counts as in flight, and a completion arriving after all counts nothing.
#[test]
fn a_request_whose_completion_is_missed_expires_and_is_counted_once() {
    let Some(mut h) = Harness::open(
        "a_request_whose_completion_is_missed_expires_and_is_counted_once",
        40,
    ) else {
        return;
    };
    let p = h.0.pid;
    let dev = dev_of(MAJOR, 0xD_0000 + (p & 0xFFFF));
    let dev_id = DevId::from_kernel(dev);
    let bound = u64::try_from(EXPIRE_AFTER.as_nanos()).unwrap();
    let now = kvmtop::host::clock::monotonic_ns();
    let long_ago = now
        .checked_sub(bound + 1_000_000_000)
        .expect("the host has been up longer than the expiry bound");
    // Submitted and issued longer ago than the bound; its completion is never run.
    h.submit(p, dev, 200, "RS", 4_096, long_ago);
    h.issue(0, dev, 200, 4_096, long_ago + 1_000, false);
    // Pending for 1 s less than the bound: a slow request, still in flight.
    h.submit(p, dev, 300, "WS", 4_096, long_ago + 2_000_000_000);
    // Just submitted.
    h.submit(p, dev, 400, "RS", 4_096, now);

    let totals = h.read();
    assert_eq!(totals.in_flight.get(&(p, dev_id)), Some(&2), "{totals:#?}");
    assert_eq!(totals.expired.get(&(p, dev_id)), Some(&1), "{totals:#?}");
    assert_eq!(totals.expired_total, 1);
    // Removed from the kernel map, so a second reading does not count it again.
    let again = h.read();
    assert_eq!(again.expired.get(&(p, dev_id)), Some(&1));
    assert_eq!(again.in_flight.get(&(p, dev_id)), Some(&2));
    // Its completion, should it come after all, finds no request: nothing is counted.
    h.complete(dev, 200, now + 1_000);
    assert!(h.block(p).is_empty(), "{:#?}", h.block(p));
    // The others complete as usual.
    h.complete(dev, 300, now + 2_000);
    h.complete(dev, 400, now + 3_000);
    let stats = h.block(p);
    assert_eq!(stats[&(dev_id, BlockOp::Write)].requests(), 1);
    assert_eq!(stats[&(dev_id, BlockOp::Read)].requests(), 1);
    let totals = h.read();
    assert_eq!(totals.in_flight.get(&(p, dev_id)), None);
    assert_eq!(totals.expired.get(&(p, dev_id)), Some(&1));
    // The process goes: its expired count goes with its other totals, the host total stays.
    let counters = h.0.session.families_mut().block.counters_mut();
    let totals = counters.read_retaining(|pid| pid != p, &[]);
    assert_eq!(totals.expired.get(&(p, dev_id)), None);
    assert_eq!(totals.expired_total, 1);
}

/// Requests beyond the pending map's capacity are not tracked, and each one is counted as
/// dropped: none is lost silently (an LRU map would have evicted tracked ones instead).
#[test]
fn requests_beyond_the_pending_map_s_capacity_are_counted_as_dropped() {
    let Some(mut h) = Harness::open(
        "requests_beyond_the_pending_map_s_capacity_are_counted_as_dropped",
        50,
    ) else {
        return;
    };
    let p = h.0.pid;
    let dev = dev_of(MAJOR, 0xE_0000 + (p & 0xFFFF));
    let dev_id = DevId::from_kernel(dev);
    let extra = 5;
    let now = kvmtop::host::clock::monotonic_ns();
    for i in 0..u64::from(BLOCK_PENDING_CAPACITY) + extra {
        h.submit(p, dev, i * 8, "RS", 4_096, now);
    }
    let totals = h.read();
    assert_eq!(totals.dropped, extra);
    assert_eq!(
        totals.in_flight.get(&(p, dev_id)),
        Some(&u64::from(BLOCK_PENDING_CAPACITY))
    );
    // The first request is still tracked, so its completion counts.
    h.complete(dev, 0, now + 1_000);
    assert_eq!(h.block(p)[&(dev_id, BlockOp::Read)].requests(), 1);
}

/// On BTF and raw tracepoints a request is known by its address alone, and its device is read
/// once, when a VMM submits it. The real issue and completion programs, run on a request none of
/// whose fields can be read (not a kernel address), still time it and count it for the device
/// noted at submission: completion reads nothing of the request.
#[test]
fn a_request_known_by_address_completes_without_reading_its_device() {
    let Some(mut h) = Harness::open(
        "a_request_known_by_address_completes_without_reading_its_device",
        60,
    ) else {
        return;
    };
    let p = h.0.pid;
    let dev = dev_of(MAJOR, 0xF_0000 + (p & 0xFFFF));
    let dev_id = DevId::from_kernel(dev);
    // A user-space address: `bpf_probe_read_kernel` refuses it, and no request lives there.
    let rq = 0xDEAD_0000 + u64::from(p);
    // The programs time the request with the kernel's monotonic clock.
    let now = kvmtop::host::clock::monotonic_ns();
    h.submit_by_address(p, dev, rq, "WS", 4_096, now);
    h.0.run(PROG_BLOCK_RQ_ISSUE_RAW, None, &[rq]);
    let totals = h.read();
    assert_eq!(totals.in_flight.get(&(p, dev_id)), Some(&1), "{totals:#?}");
    h.0.run(PROG_BLOCK_RQ_COMPLETE_RAW, None, &[rq]);

    let stats = h.block(p);
    assert_eq!(stats.len(), 1, "{stats:#?}");
    let writes = &stats[&(dev_id, BlockOp::Write)];
    assert_eq!(writes.requests(), 1);
    assert_eq!(
        writes.bytes, 4_096,
        "an unreadable size at issue keeps the submitted one"
    );
    assert_eq!(
        (writes.unissued, writes.queue.count),
        (0, 1),
        "the issue was seen"
    );
    assert_eq!(h.read().in_flight.get(&(p, dev_id)), None);
}

/// Since Linux 6.15 the kernel may refuse to remove a map entry (a bucket lock held past its
/// timeout). A completion whose entry stays is counted once, never in flight nor expired, and
/// the key's next request, on either kind of kernel, is tracked and counted as any other.
#[test]
fn a_completed_request_whose_entry_the_kernel_keeps_is_counted_once() {
    let Some(mut h) = Harness::open(
        "a_completed_request_whose_entry_the_kernel_keeps_is_counted_once",
        70,
    ) else {
        return;
    };
    let p = h.0.pid;
    let dev = dev_of(MAJOR, 0xE_0000 + (p & 0xFFFF));
    let dev_id = DevId::from_kernel(dev);
    let rq = 0xBEEF_0000 + u64::from(p);
    let now = kvmtop::host::clock::monotonic_ns();
    let reads = |h: &mut Harness| {
        h.block(p)
            .get(&(dev_id, BlockOp::Read))
            .map(|reads| (reads.requests(), reads.latency.buckets))
    };
    h.submit_by_address(p, dev, rq, "RS", 4_096, now);
    h.issue(0, 0, rq, 4_096, now + 1_000, false);
    h.complete_unremoved(0, rq, now + 21_000);
    assert_eq!(reads(&mut h), Some((1, buckets(&[20_000]))));
    let totals = h.read();
    assert_eq!(totals.in_flight.get(&(p, dev_id)), None, "{totals:#?}");
    // A request at the key that no VMM submitted (a kworker's, say) counts nothing.
    h.issue(0, 0, rq, 4_096, now + 30_000, false);
    h.complete_unremoved(0, rq, now + 40_000);
    assert_eq!(reads(&mut h), Some((1, buckets(&[20_000]))));

    // The key's next VMM request replaces the kept entry at submission...
    h.submit_by_address(p, dev, rq, "RS", 4_096, now + 50_000);
    assert_eq!(h.read().in_flight.get(&(p, dev_id)), Some(&1));
    h.issue(0, 0, rq, 4_096, now + 51_000, false);
    h.complete_unremoved(0, rq, now + 91_000);
    assert_eq!(reads(&mut h), Some((2, buckets(&[20_000, 40_000]))));
    // ... and, without `block_io_start`, at an insert (which keeps a live entry)...
    h.complete_unremoved(0, rq, now + 95_000);
    h.insert_by_address(p, dev, rq, now + 100_000);
    h.insert_by_address(p, dev, rq, now + 110_000);
    h.issue(0, 0, rq, 4_096, now + 120_000, false);
    h.complete_unremoved(0, rq, now + 200_000);
    assert_eq!(reads(&mut h), Some((3, buckets(&[20_000, 40_000, 80_000]))),);
    let queued = h.block(p)[&(dev_id, BlockOp::Read)].queue.buckets;
    assert_eq!(
        queued,
        buckets(&[1_000, 1_000, 20_000]),
        "queued from the first insert"
    );
    // ... or at an issue in the VMM's context (a request known by its start sector here, as
    // the harness gives an issue's device with its key).
    h.issue(p, dev, 8, 4_096, now + 300_000, true);
    h.complete_unremoved(dev, 8, now + 310_000);
    h.issue(p, dev, 8, 4_096, now + 400_000, true);
    h.complete(dev, 8, now + 560_000);
    assert_eq!(
        reads(&mut h),
        Some((5, buckets(&[20_000, 40_000, 80_000, 10_000, 160_000])))
    );

    // A kept entry as old as an expired request is removed without being counted as expired.
    let long_ago = now - 2 * u64::try_from(EXPIRE_AFTER.as_nanos()).unwrap();
    let old = rq + 0x1000;
    h.submit_by_address(p, dev, old, "RS", 4_096, long_ago);
    h.complete_unremoved(0, old, long_ago + 10_000);
    let totals = h.read();
    assert_eq!(totals.in_flight.get(&(p, dev_id)), None, "{totals:#?}");
    assert_eq!(totals.expired.get(&(p, dev_id)), None, "{totals:#?}");
    assert_eq!(reads(&mut h).map(|(n, _)| n), Some(6));
    // The refusal is logged once per load, not per completion.
    let messages = h.0.session.kernel_mut().diagnostics();
    let refused = messages
        .iter()
        .filter(|m| m.starts_with("block: the kernel refused"))
        .count();
    assert_eq!(refused, 1, "{messages:?}");
}
