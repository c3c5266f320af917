//! Two readings of the TLB totals → the TLB figures of a snapshot window.

use std::collections::{BTreeMap, BTreeSet};

use super::{
    counters::{Flushes, TlbCounterKey, TlbEvent, TlbReason, TlbTotals},
    sources::{PV_TLB_FLUSH, TLB_FLUSH},
};
use crate::{
    bpf::hooks::Sources,
    discovery::Vmm,
    families::{by_pid::ByPid, small_map::inserted},
    family::Pair,
    model::{
        LostEvents,
        Snapshot, SourceState, rate,
        running::Running,
        tlb::{
            CpuShootdowns, CpuTlb, FlushCount, HostTlb, PvFlushes, ThreadShootdowns,
            TlbReasonCount, VmTlb,
        },
    },
};

/// Fills the TLB figures of `snapshot`: the host's, and each VM's (a VM new in the window
/// counts its own counters from zero).
pub fn fill(pair: &Pair<'_, TlbTotals>, sources: &Sources, snapshot: &mut Snapshot) {
    let mut pv_events = 0;
    let counters = ByPid::new(&pair.now.vmm, |key, _| key.pid);
    for (span, vm) in pair.vms.iter().zip(&mut snapshot.vms) {
        let mine = counters.of(span.pid());
        let tlb = self::vm(span.vmm, mine, pair.now, pair.before, span.new, pair.seconds);
        pv_events += tlb.pv_flushes.checks;
        vm.families.tlb = tlb;
    }
    snapshot.families.tlb = host(pair.now, pair.before, pair.seconds, sources, pv_events);
}

/// One VM's counters over the window: key → (CPU → flushes in the window, running total).
type KeyWindows = Vec<(TlbCounterKey, BTreeMap<u32, Flushes>, u64)>;

/// A VM's figures between the readings `earlier` and `now`. `new` when the VM did not exist at
/// `earlier` (its pid was another process or none): its own counters then count in full. The
/// host's per-CPU counters are not the VM's, so they always count from `earlier`.
/// `mine` are the VM's own counters of `now`.
fn vm(
    vmm: &Vmm,
    mine: &[(&TlbCounterKey, &BTreeMap<u32, Flushes>)],
    now: &TlbTotals,
    earlier: &TlbTotals,
    new: bool,
    seconds: f64,
) -> VmTlb {
    let pid = vmm.id.pid;
    let before = (!new).then_some(earlier);
    let windows: KeyWindows = mine
        .iter()
        .map(|&(key, cpus)| {
            let earlier = before.and_then(|b| b.vmm.get(key));
            let window = inserted(cpus.iter().map(|(cpu, running)| {
                let start = earlier
                    .and_then(|e| e.get(cpu))
                    .copied()
                    .unwrap_or_default();
                (*cpu, running.since(&start))
            }));
            let cumulative = cpus.values().map(|f| f.events).sum();
            (*key, window, cumulative)
        })
        .collect();

    let mut by_reason: BTreeMap<TlbReason, FlushCount> = BTreeMap::new();
    let mut by_thread: BTreeMap<u32, u64> = BTreeMap::new();
    let mut by_cpu: BTreeMap<u32, u64> = BTreeMap::new();
    let mut pv = PvFlushes::default();
    for (key, cpus, cumulative) in &windows {
        let total = sum(cpus.values());
        match key.event {
            TlbEvent::Flush(reason) => {
                let slot = by_reason.entry(reason).or_default();
                add(slot, &total, *cumulative);
                if reason == TlbReason::RemoteShootdown {
                    *by_thread.entry(key.tid).or_default() += total.events;
                    for (cpu, f) in cpus {
                        *by_cpu.entry(*cpu).or_default() += f.events;
                    }
                }
            }
            TlbEvent::PvFlush { flushed } => {
                pv.checks += total.events;
                if flushed {
                    pv.flushed += total.events;
                }
            }
        }
    }
    pv.flushed_rate = rate(pv.flushed, seconds);
    for count in by_reason.values_mut() {
        count.rate = rate(count.count, seconds);
    }

    let received_by_thread = by_thread_list(vmm, by_thread, seconds);
    let received_by_cpu = by_cpu
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(cpu, count)| CpuShootdowns {
            cpu,
            count,
            rate: rate(count, seconds),
        })
        .collect();

    let no_cpus = BTreeSet::new();
    let vcpu_cpus = now.vcpu_cpus.get(&pid).unwrap_or(&no_cpus);
    let received_on_vcpu_cpus = received_on(vcpu_cpus, now, earlier, seconds);

    let pick = |reason| by_reason.get(&reason).copied().unwrap_or_default();
    let mut reasons: Vec<TlbReasonCount> = by_reason
        .iter()
        .filter(|(_, c)| c.count > 0)
        .map(|(reason, flushes)| TlbReasonCount {
            reason: reason.as_str(),
            code: reason.code(),
            flushes: *flushes,
        })
        .collect();
    reasons.sort_by(|a, b| {
        b.flushes
            .count
            .cmp(&a.flushes.count)
            .then(a.code.cmp(&b.code))
    });
    VmTlb {
        sent: pick(TlbReason::RemoteSendIpi),
        received: pick(TlbReason::RemoteShootdown),
        by_reason: reasons,
        received_by_thread,
        received_by_cpu,
        vcpu_cpus: vcpu_cpus.iter().copied().collect(),
        received_on_vcpu_cpus,
        pv_flushes: pv,
    }
}

/// Received shootdowns per thread, busiest first, with the vCPU each thread runs.
fn by_thread_list(vmm: &Vmm, by_thread: BTreeMap<u32, u64>, seconds: f64) -> Vec<ThreadShootdowns> {
    // A VM has a few vCPUs: looked up in its list rather than in a map built each window.
    let vcpu_of = |tid: u32| {
        vmm.vcpus
            .iter()
            .filter(|v| v.tid == Some(tid))
            .map(|v| v.index)
            .next_back()
    };
    let mut threads: Vec<ThreadShootdowns> = by_thread
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(tid, count)| ThreadShootdowns {
            tid,
            vcpu: vcpu_of(tid),
            count,
            rate: rate(count, seconds),
        })
        .collect();
    threads.sort_by(|a, b| b.count.cmp(&a.count).then(a.tid.cmp(&b.tid)));
    threads
}

/// Shootdowns received on `cpus` by any task between the host-wide readings `before` and `now`;
/// `None` without CPUs.
fn received_on(
    cpus: &BTreeSet<u32>,
    now: &TlbTotals,
    before: &TlbTotals,
    seconds: f64,
) -> Option<FlushCount> {
    if cpus.is_empty() {
        return None;
    }
    let mut count = FlushCount::default();
    for cpu in cpus {
        let running = reason_on_cpu(now, *cpu, TlbReason::RemoteShootdown);
        let start = reason_on_cpu(before, *cpu, TlbReason::RemoteShootdown);
        add(&mut count, &running.since(&start), running.events);
    }
    count.rate = rate(count.count, seconds);
    Some(count)
}

/// The host's figures: every CPU that has flushed since counting began (its window counts may
/// be 0, so its running totals are always there for cumulative series), and the state of each
/// source.
#[must_use]
pub fn host(
    now: &TlbTotals,
    before: &TlbTotals,
    seconds: f64,
    sources: &Sources,
    pv_events: u64,
) -> HostTlb {
    let mut all_events = 0;
    let cpus = now
        .host
        .iter()
        .map(|(cpu, reasons)| {
            let window = |reason: TlbReason| -> (Flushes, u64) {
                let running = reasons.get(&reason).copied().unwrap_or_default();
                let start = reason_on_cpu(before, *cpu, reason);
                (running.since(&start), running.events)
            };
            let flushes: u64 = reasons.keys().map(|r| window(*r).0.events).sum();
            all_events += flushes;
            let count = |reason| {
                let (w, cumulative) = window(reason);
                let mut c = FlushCount::default();
                add(&mut c, &w, cumulative);
                c.rate = rate(c.count, seconds);
                c
            };
            CpuTlb {
                cpu: *cpu,
                received: count(TlbReason::RemoteShootdown),
                sent: count(TlbReason::RemoteSendIpi),
                flushes,
            }
        })
        .collect();
    let events = |name: &str| match name {
        TLB_FLUSH => all_events,
        PV_TLB_FLUSH => pv_events,
        _ => 0,
    };
    HostTlb {
        sources: sources
            .iter()
            .map(|(name, source)| {
                let state = SourceState::from_window(&source.attachment, events(name));
                ((*name).to_owned(), state)
            })
            .collect(),
        hooks: sources
            .iter()
            .map(|(name, source)| ((*name).to_owned(), source.hook.to_string()))
            .collect(),
        cpus,
        // Filled by the session, which reads what the kernel skipped.
        lost: BTreeMap::new(),
        dropped: LostEvents::between(before.dropped, now.dropped),
    }
}

fn reason_on_cpu(totals: &TlbTotals, cpu: u32, reason: TlbReason) -> Flushes {
    totals
        .host
        .get(&cpu)
        .and_then(|r| r.get(&reason))
        .copied()
        .unwrap_or_default()
}

fn sum<'a>(flushes: impl Iterator<Item = &'a Flushes>) -> Flushes {
    let mut total = Flushes::default();
    for f in flushes {
        total.merge(f);
    }
    total
}

fn add(count: &mut FlushCount, window: &Flushes, cumulative: u64) {
    count.count += window.events;
    count.pages += window.pages;
    count.full_flushes += window.full;
    count.cumulative += cumulative;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::{Vcpu, VmmId, VmmKind};

    const PID: u32 = 4_000;

    fn vmm() -> Vmm {
        Vmm {
            id: VmmId {
                pid: PID,
                start_time: 1,
            },
            kind: VmmKind::Qemu,
            name: "vm".into(),
            uuid: None,
            comm: "qemu".into(),
            qemu: None,
            vcpus: vec![Vcpu {
                index: 0,
                fd: 20,
                tid: Some(PID + 1),
                tid_source: None,
            }],
            threads: Vec::new(),
        }
    }

    fn flushes(events: u64) -> Flushes {
        Flushes {
            events,
            pages: events,
            full: 0,
        }
    }

    /// Host-wide totals: `received` shootdowns and `switches` task switches on each CPU.
    fn host_totals(cpus: &[(u32, u64, u64)]) -> TlbTotals {
        let mut totals = TlbTotals::default();
        for &(cpu, received, switches) in cpus {
            let reasons = totals.host.entry(cpu).or_default();
            reasons.insert(TlbReason::RemoteShootdown, flushes(received));
            reasons.insert(TlbReason::TaskSwitch, flushes(switches));
        }
        totals
    }

    #[test]
    fn a_new_vm_counts_host_cpus_from_the_earlier_reading_and_its_own_keys_in_full() {
        let earlier = host_totals(&[(2, 1_000, 50)]);
        let mut now = host_totals(&[(2, 1_030, 60)]);
        now.vcpu_cpus.insert(PID, [2].into());
        let key = TlbCounterKey {
            pid: PID,
            tid: PID + 1,
            event: TlbEvent::Flush(TlbReason::RemoteShootdown),
        };
        now.vmm.insert(key, [(2, flushes(7))].into());

        let mine = ByPid::new(&now.vmm, |key, _| key.pid);
        let mine = mine.of(vmm().id.pid);
        let new = vm(&vmm(), mine, &now, &earlier, true, 10.0);
        let on_cpus = new
            .received_on_vcpu_cpus
            .expect("the vCPUs' CPUs are known");
        assert_eq!((on_cpus.count, on_cpus.cumulative), (30, 1_030));
        assert_eq!(new.received.count, 7, "the VM's own counters count in full");

        // The same VM seen at `earlier` too: its counters count from there.
        let mut earlier_with_vm = earlier.clone();
        earlier_with_vm.vmm.insert(key, [(2, flushes(5))].into());
        let known = vm(&vmm(), mine, &now, &earlier_with_vm, false, 10.0);
        assert_eq!(known.received_on_vcpu_cpus.map(|c| c.count), Some(30));
        assert_eq!(known.received.count, 2);
    }

    #[test]
    fn every_cpu_with_running_totals_is_listed_even_without_flushes_in_the_window() {
        let earlier = host_totals(&[(0, 10, 100), (1, 20, 200)]);
        let now = host_totals(&[(0, 10, 100), (1, 25, 230)]);
        let host = host(&now, &earlier, 5.0, &Sources::new(), 0);
        let cpus: Vec<(u32, u64, u64, u64)> = host
            .cpus
            .iter()
            .map(|c| (c.cpu, c.flushes, c.received.count, c.received.cumulative))
            .collect();
        assert_eq!(cpus, [(0, 0, 0, 10), (1, 35, 5, 25)]);
    }
}
