//! Two readings of the TLB totals → the TLB figures of a snapshot window.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::{Flushes, TlbCounterKey, TlbEvent, TlbProbe, TlbReason, TlbTotals};
use crate::{
    discovery::Vmm,
    model::{
        Snapshot,
        tlb::{
            CpuShootdowns, CpuTlb, FlushCount, HostTlb, PvFlushes, ThreadShootdowns,
            TlbReasonCount, VmTlb,
        },
    },
    session::Sample,
    signals::SourceState,
};

/// Fills the TLB figures of `snapshot`, the window between two samples: the host's, and each
/// VM's (a VM whose pid was another process at `earlier` counts from zero).
pub fn fill(snapshot: &mut Snapshot, earlier: &Sample, later: &Sample) {
    let seconds = snapshot.window.duration_seconds;
    let mut pv_events = 0;
    for vm in &mut snapshot.vms {
        let Some(vmm) = later.vmms.iter().find(|v| v.id.pid == vm.pid) else {
            continue;
        };
        let before = earlier
            .vmms
            .iter()
            .any(|v| v.id == vmm.id)
            .then_some(&earlier.tlb);
        vm.tlb = self::vm(vmm, &later.tlb, before, seconds);
        pv_events += vm.tlb.pv_flushes.checks;
    }
    snapshot.tlb = host(&later.tlb, &earlier.tlb, seconds, pv_events);
}

/// One VM's counters over the window: key → (CPU → flushes in the window, running total).
type KeyWindows = Vec<(TlbCounterKey, BTreeMap<u32, Flushes>, u64)>;

/// A VM's figures. `before` is `None` for a VM new in this window (everything counts).
#[must_use]
pub fn vm(vmm: &Vmm, now: &TlbTotals, before: Option<&TlbTotals>, seconds: f64) -> VmTlb {
    let pid = vmm.id.pid;
    let windows: KeyWindows = now
        .vmm
        .iter()
        .filter(|(key, _)| key.pid == pid)
        .map(|(key, cpus)| {
            let earlier = before.and_then(|b| b.vmm.get(key));
            let window = cpus
                .iter()
                .map(|(cpu, running)| {
                    let start = earlier
                        .and_then(|e| e.get(cpu))
                        .copied()
                        .unwrap_or_default();
                    (*cpu, running.since(&start))
                })
                .collect();
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

    let vcpu_cpus = now.vcpu_cpus.get(&pid).cloned().unwrap_or_default();
    let received_on_vcpu_cpus = received_on(&vcpu_cpus, now, before, seconds);

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
        vcpu_cpus: vcpu_cpus.into_iter().collect(),
        received_on_vcpu_cpus,
        pv_flushes: pv,
    }
}

/// Received shootdowns per thread, busiest first, with the vCPU each thread runs.
fn by_thread_list(vmm: &Vmm, by_thread: BTreeMap<u32, u64>, seconds: f64) -> Vec<ThreadShootdowns> {
    let vcpu_of: HashMap<u32, u32> = vmm
        .vcpus
        .iter()
        .filter_map(|v| Some((v.tid?, v.index)))
        .collect();
    let mut threads: Vec<ThreadShootdowns> = by_thread
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(tid, count)| ThreadShootdowns {
            tid,
            vcpu: vcpu_of.get(&tid).copied(),
            count,
            rate: rate(count, seconds),
        })
        .collect();
    threads.sort_by(|a, b| b.count.cmp(&a.count).then(a.tid.cmp(&b.tid)));
    threads
}

/// Shootdowns received on `cpus` by any task over the window; `None` without CPUs.
fn received_on(
    cpus: &BTreeSet<u32>,
    now: &TlbTotals,
    before: Option<&TlbTotals>,
    seconds: f64,
) -> Option<FlushCount> {
    if cpus.is_empty() {
        return None;
    }
    let mut count = FlushCount::default();
    for cpu in cpus {
        let running = reason_on_cpu(now, *cpu, TlbReason::RemoteShootdown);
        let start = before.map_or_else(Flushes::default, |b| {
            reason_on_cpu(b, *cpu, TlbReason::RemoteShootdown)
        });
        add(&mut count, &running.since(&start), running.events);
    }
    count.rate = rate(count.count, seconds);
    Some(count)
}

/// The host's figures: every CPU that flushed in the window, and the state of each source.
#[must_use]
pub fn host(now: &TlbTotals, before: &TlbTotals, seconds: f64, pv_events: u64) -> HostTlb {
    let mut all_events = 0;
    let cpus = now
        .host
        .iter()
        .filter_map(|(cpu, reasons)| {
            let window = |reason: TlbReason| -> (Flushes, u64) {
                let running = reasons.get(&reason).copied().unwrap_or_default();
                let start = reason_on_cpu(before, *cpu, reason);
                (running.since(&start), running.events)
            };
            let flushes: u64 = reasons.keys().map(|r| window(*r).0.events).sum();
            all_events += flushes;
            if flushes == 0 {
                return None;
            }
            let count = |reason| {
                let (w, cumulative) = window(reason);
                let mut c = FlushCount::default();
                add(&mut c, &w, cumulative);
                c.rate = rate(c.count, seconds);
                c
            };
            Some(CpuTlb {
                cpu: *cpu,
                received: count(TlbReason::RemoteShootdown),
                sent: count(TlbReason::RemoteSendIpi),
                flushes,
            })
        })
        .collect();
    let events = |probe| match probe {
        TlbProbe::Flush => all_events,
        TlbProbe::PvFlush => pv_events,
    };
    HostTlb {
        sources: now
            .sources
            .iter()
            .map(|(probe, a)| (probe.name(), SourceState::from_window(a, events(*probe))))
            .collect(),
        tracepoints: now
            .sources
            .keys()
            .map(|probe| (probe.name(), probe.tracepoint()))
            .collect(),
        cpus,
        dropped: now.dropped,
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
        total.add(f);
    }
    total
}

fn add(count: &mut FlushCount, window: &Flushes, cumulative: u64) {
    count.count += window.events;
    count.pages += window.pages;
    count.full_flushes += window.full;
    count.cumulative += cumulative;
}

#[expect(
    clippy::cast_precision_loss,
    reason = "event counts stay far below 2^52"
)]
fn rate(count: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}
