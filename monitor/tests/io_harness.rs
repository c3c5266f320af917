//! The TLB and block programs' kernel logic, driven through `BPF_PROG_TEST_RUN` with synthetic
//! events, chosen processes and exact timestamps: the same inline functions the tracepoint
//! programs run, fed through raw-tracepoint harnesses, read back through the agent.

mod support;

use std::collections::BTreeMap;

use aya::programs::{RawTracePointRunOptions, TestRun as _};
use kvmtop::{
    session::{Config, Session},
    signals::{
        block::{BlockCounterKey, BlockOp, DevId, OpTotals},
        tlb::{Flushes, TlbCounterKey, TlbEvent, TlbReason},
    },
};
use monitor_common::{
    block::{HARNESS_COMPLETE, HARNESS_ISSUE, HARNESS_SUBMIT, PROG_BLOCK_HARNESS, dev_of},
    latency::{HIST_BUCKETS, bucket_of},
    tlb::{HARNESS_PV_TLB_FLUSH, HARNESS_TLB_FLUSH, PROG_TLB_HARNESS, TLB_FLUSH_ALL},
};

/// Pids near the top of the range the kernel can ever hand out (`PID_MAX_LIMIT`, 4 Mi), which
/// the watched-VMM bitmap covers, and far above the usual `pid_max`: no real process collides
/// with them. Each test has its own (and the sched harness uses 4 100 000 – 4 190 000).
const SYNTHETIC_PID: u32 = 4_191_000;
/// A device number no real disk has (major 4095 is the largest the kernel encodes), so real
/// requests never meet the synthetic ones in the pending map.
const MAJOR: u32 = 4095;

struct Harness {
    session: Session,
    pid: u32,
}

impl Harness {
    fn open(test: &str, pid_offset: u32) -> Option<Self> {
        if let Some(reason) = support::missing_prerequisite(false, &[]) {
            support::skip(test, &reason);
            return None;
        }
        let mut session = Session::open(&Config::default()).expect("opening a session");
        let pid = SYNTHETIC_PID + pid_offset;
        let failed = session.vmm_watch_mut().insert(pid);
        assert!(failed.is_empty(), "cannot watch {failed:?}");
        Some(Self { session, pid })
    }

    fn run(&mut self, program: &str, cpu: Option<u32>, args: &[u64]) {
        let harness = self
            .session
            .kernel_mut()
            .load_harness(program)
            .expect("loading harness");
        let mut options = RawTracePointRunOptions::new();
        options.args[..args.len()].copy_from_slice(args);
        options.cpu = cpu;
        harness.test_run(options).expect("BPF_PROG_TEST_RUN");
    }

    fn flush(&mut self, cpu: u32, pid: u32, tid: u32, reason: u32, pages: u64) {
        let args = [
            HARNESS_TLB_FLUSH,
            pid.into(),
            tid.into(),
            reason.into(),
            pages,
        ];
        self.run(PROG_TLB_HARNESS, Some(cpu), &args);
    }

    /// The synthetic process's TLB counters, per key and CPU.
    fn tlb(&self) -> BTreeMap<TlbCounterKey, BTreeMap<u32, Flushes>> {
        self.session
            .tlb_counters()
            .read()
            .vmm
            .into_iter()
            .filter(|(k, _)| k.pid == self.pid)
            .collect()
    }

    fn submit(&mut self, pid: u32, dev: u32, sector: u64, rwbs: &str, bytes: u64, at: u64) {
        let args = [
            HARNESS_SUBMIT,
            pid.into(),
            dev.into(),
            sector,
            rwbs_arg(rwbs),
            bytes,
            at,
        ];
        self.run(PROG_BLOCK_HARNESS, None, &args);
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
        self.run(PROG_BLOCK_HARNESS, None, &args);
    }

    fn complete(&mut self, dev: u32, sector: u64, at: u64) {
        self.run(
            PROG_BLOCK_HARNESS,
            None,
            &[HARNESS_COMPLETE, 0, dev.into(), sector, at],
        );
    }

    fn block(&mut self, pid: u32) -> BTreeMap<(DevId, BlockOp), OpTotals> {
        self.session
            .block_counters_mut()
            .read(&[])
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

fn flushes(events: u64, pages: u64, full: u64) -> Flushes {
    Flushes {
        events,
        pages,
        full,
    }
}

#[test]
fn shootdowns_are_counted_per_thread_reason_and_cpu_for_watched_vmms_only() {
    let Some(mut h) = Harness::open(
        "shootdowns_are_counted_per_thread_reason_and_cpu_for_watched_vmms_only",
        0,
    ) else {
        return;
    };
    let cpus = u32::try_from(aya::util::nr_cpus().expect("CPU count")).unwrap_or(1);
    let other_cpu = 1.min(cpus - 1);
    let (p, sender, vcpu) = (h.pid, h.pid + 1, h.pid + 2);
    // The sender thread: three ranged flushes of 16 pages and one of everything.
    for _ in 0..3 {
        h.flush(0, p, sender, 4, 16);
    }
    h.flush(0, p, sender, 4, TLB_FLUSH_ALL);
    // The vCPU thread received two of them on the other CPU, and switched mm once.
    h.flush(other_cpu, p, vcpu, 1, 16);
    h.flush(other_cpu, p, vcpu, 1, TLB_FLUSH_ALL);
    h.flush(other_cpu, p, vcpu, 0, TLB_FLUSH_ALL);
    // A process that is not a VMM: counted for the host only.
    h.flush(0, p + 500, p + 501, 4, 16);
    // Guest PV flushes: two checks, one of which flushed.
    h.run(
        PROG_TLB_HARNESS,
        Some(other_cpu),
        &[HARNESS_PV_TLB_FLUSH, p.into(), vcpu.into(), 1],
    );
    h.run(
        PROG_TLB_HARNESS,
        Some(other_cpu),
        &[HARNESS_PV_TLB_FLUSH, p.into(), vcpu.into(), 0],
    );

    let key = |tid, event| TlbCounterKey { pid: p, tid, event };
    let flush = |reason| TlbEvent::Flush(reason);
    let expected: BTreeMap<TlbCounterKey, BTreeMap<u32, Flushes>> = [
        (
            key(sender, flush(TlbReason::RemoteSendIpi)),
            [(0, flushes(4, 48, 1))].into(),
        ),
        (
            key(vcpu, flush(TlbReason::RemoteShootdown)),
            [(other_cpu, flushes(2, 16, 1))].into(),
        ),
        (
            key(vcpu, flush(TlbReason::TaskSwitch)),
            [(other_cpu, flushes(1, 0, 1))].into(),
        ),
        (
            key(vcpu, TlbEvent::PvFlush { flushed: true }),
            [(other_cpu, flushes(1, 0, 0))].into(),
        ),
        (
            key(vcpu, TlbEvent::PvFlush { flushed: false }),
            [(other_cpu, flushes(1, 0, 0))].into(),
        ),
    ]
    .into();
    assert_eq!(h.tlb(), expected);
    let unwatched = h.session.tlb_counters().read();
    assert!(unwatched.vmm.keys().all(|k| k.pid != p + 500));
    // Host-wide counts include every task (the real ones too, so only a lower bound holds).
    let sent_on_0 = unwatched
        .host
        .get(&0)
        .and_then(|r| r.get(&TlbReason::RemoteSendIpi))
        .copied()
        .unwrap_or_default();
    assert!(sent_on_0.events >= 5, "{sent_on_0:?}");
}

#[test]
fn block_requests_are_attributed_to_their_submitter_with_exact_buckets() {
    let Some(mut h) = Harness::open(
        "block_requests_are_attributed_to_their_submitter_with_exact_buckets",
        10,
    ) else {
        return;
    };
    let p = h.pid;
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
    // Pending requests older than a minute are taken as lost, so this one is submitted now.
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
    let totals = h.session.block_counters_mut().read(&[]);
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
    let p = h.pid;
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
