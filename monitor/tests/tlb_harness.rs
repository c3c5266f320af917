//! The TLB programs' kernel logic, driven through `BPF_PROG_TEST_RUN` with synthetic events,
//! chosen processes and CPUs: the same inline functions the tracepoint programs run, fed through
//! a raw-tracepoint harness, read back through the agent.

mod support;

use std::collections::BTreeMap;

use kvmtop::families::tlb::{Flushes, TlbCounterKey, TlbEvent, TlbReason};
use monitor_common::tlb::{
    HARNESS_PV_TLB_FLUSH, HARNESS_TLB_FLUSH, PROG_TLB_HARNESS, TLB_FLUSH_ALL,
};
use support::harness::VmmHarness;

struct Harness(VmmHarness);

impl Harness {
    fn open(test: &str, pid_offset: u32) -> Option<Self> {
        VmmHarness::open(test, pid_offset).map(Self)
    }

    fn flush(&mut self, cpu: u32, pid: u32, tid: u32, reason: u32, pages: u64) {
        let args = [
            HARNESS_TLB_FLUSH,
            pid.into(),
            tid.into(),
            reason.into(),
            pages,
        ];
        self.0.run(PROG_TLB_HARNESS, Some(cpu), &args);
    }

    /// The synthetic process's TLB counters, per key and CPU.
    fn tlb(&self) -> BTreeMap<TlbCounterKey, BTreeMap<u32, Flushes>> {
        self.0
            .session
            .families()
            .tlb
            .counters()
            .read()
            .vmm
            .into_iter()
            .filter(|(k, _)| k.pid == self.0.pid)
            .collect()
    }
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
    let (p, sender, vcpu) = (h.0.pid, h.0.pid + 1, h.0.pid + 2);
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
    h.0.run(
        PROG_TLB_HARNESS,
        Some(other_cpu),
        &[HARNESS_PV_TLB_FLUSH, p.into(), vcpu.into(), 1],
    );
    h.0.run(
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
    let unwatched = h.0.session.families().tlb.counters().read();
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
