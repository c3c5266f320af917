//! Observations for the rules, taken from a snapshot (what the kernel programs measured) and
//! from the kernel's own per-thread accounting in procfs (run-queue wait, migrations).

use std::collections::BTreeMap;

use super::inputs::{BlockObservation, ByReason, VcpuObservations, VmObservations};
use crate::{
    host::proc::ThreadAccounting,
    model::{self, DetailGroup, Exits, block::VmBlock},
    model::{DetailKind, ExitSource},
};

/// Run-queue wait share and migrations per second of one thread over `seconds`.
#[must_use]
pub fn thread_rates(
    before: Option<&ThreadAccounting>,
    now: &ThreadAccounting,
    seconds: f64,
) -> (Option<f64>, Option<f64>) {
    if seconds <= 0.0 {
        return (None, None);
    }
    let Some(before) = before else {
        return (None, None);
    };
    #[expect(clippy::cast_precision_loss, reason = "counter deltas far below 2^52")]
    let delta = |a: Option<u64>, b: Option<u64>| Some(b?.checked_sub(a?)? as f64);
    (
        delta(before.run_delay_ns, now.run_delay_ns).map(|ns| (ns / (seconds * 1e9)).min(1.0)),
        delta(before.migrations, now.migrations).map(|n| n / seconds),
    )
}

/// What the snapshot says about one VM, in the rules' terms. `threads` gives, per vCPU
/// index, its run-queue wait share and migrations per second when they could be measured.
#[must_use]
pub fn vm_observations(
    vm: &model::Vm,
    uptime_seconds: Option<f64>,
    threads: &BTreeMap<u32, (Option<f64>, Option<f64>)>,
) -> VmObservations {
    let hardware_live = vm.families.exits.is_live(ExitSource::KvmExit);
    let exit_p99_ns: ByReason = vm
        .families
        .exits
        .by_reason
        .iter()
        .filter(|r| r.source == ExitSource::KvmExit)
        .filter_map(|r| Some((r.reason.clone(), to_f64(r.latency.as_ref()?.p99_ns))))
        .collect();
    VmObservations {
        uptime_seconds,
        exit_rates: hardware_live.then(|| rates(&vm.families.exits, ExitSource::KvmExit)),
        pio_rates: detail(vm, DetailKind::Pio).map(|g| summed(g.ports())),
        msr_write_rates: detail(vm, DetailKind::Msr).map(|g| summed(g.msr_writes())),
        exit_p99_ns: hardware_live.then_some(exit_p99_ns),
        pio_exits_per_s: detail(vm, DetailKind::Pio).map(|g| g.rate),
        guest_ipis_per_s: detail(vm, DetailKind::ApicIpi).map(|g| g.rate),
        rss_by_node: vm
            .families
            .numa
            .memory
            .as_ref()
            .map(|m| m.by_node.iter().map(|n| (n.node, n.bytes)).collect()),
        anon_huge_pages_bytes: vm.families.numa.memory.as_ref().map(|m| m.thp_bytes),
        numa_hint_faults: vm.families.numa.faults.as_ref().map(|f| to_f64(f.pages)),
        numa_hint_faults_remote: vm
            .families
            .numa
            .faults
            .as_ref()
            .map(|f| to_f64(f.remote_pages)),
        numa_recent_remote_fault_share: vm
            .families
            .numa
            .balancing
            .as_ref()
            .filter(|b| b.scan_passes.is_some_and(|passes| passes > 0))
            .and_then(|b| b.recent_remote_share),
        tlb_shootdowns_per_s: vm
            .families
            .tlb
            .received_on_vcpu_cpus
            .as_ref()
            .map(|f| f.rate),
        block: block_observations(&vm.families.block),
        vcpus: vm
            .vcpus
            .iter()
            .filter_map(|v| {
                let index = v.index?;
                // The kernel programs' figures first; the kernel's own per-thread accounting
                // in procfs where they are unavailable.
                let (procfs_wait, procfs_migrations) =
                    threads.get(&index).copied().unwrap_or((None, None));
                let sched = v.sched.as_ref().map(|s| &s.figures);
                let migrations = sched.and_then(|s| s.migrations.as_ref());
                let run_delay_share = sched.and_then(|s| s.steal).or(procfs_wait);
                let migrations_per_s = migrations.map(|m| m.rate).or(procfs_migrations);
                let cross_node_migrations_per_min =
                    migrations.map(|m| m.by_class.get("cross_node").map_or(0.0, |c| c.rate * 60.0));
                Some(VcpuObservations {
                    index,
                    exit_rates: v
                        .exits
                        .is_live(ExitSource::KvmExit)
                        .then(|| rates(&v.exits, ExitSource::KvmExit)),
                    userspace_exit_rates: v
                        .exits
                        .sources
                        .contains_key("userspace")
                        .then(|| rates(&v.exits, ExitSource::Userspace)),
                    exit_time_share: v.time.handling_exits,
                    median_halt_ns: median_halt(&v.exits),
                    run_delay_share,
                    migrations_per_s,
                    cross_node_migrations_per_min,
                    ..VcpuObservations::default()
                })
            })
            .collect(),
    }
}

/// Per drive (by the label the configuration facts use: its id, else its position), the worst
/// p99 of the host devices behind it. Drives whose devices had no completed request in the
/// window are left out; a VM whose drives could not be mapped has no block observations.
fn block_observations(block: &VmBlock) -> Option<BTreeMap<String, BlockObservation>> {
    let mapped: BTreeMap<String, BlockObservation> = block
        .drives
        .iter()
        .enumerate()
        .filter_map(|(i, drive)| {
            let p99 = block
                .devices
                .iter()
                .filter(|d| drive.devices.contains(&d.device))
                .filter_map(|d| d.latency.as_ref().map(|l| to_f64(l.p99_ns)))
                .reduce(f64::max)?;
            let label = drive
                .id
                .as_ref()
                .map_or_else(|| format!("disk{i}"), |id| id.exact().to_owned());
            Some((
                label,
                BlockObservation {
                    p99_ns: Some(p99),
                    ..BlockObservation::default()
                },
            ))
        })
        .collect();
    (!block.drives.is_empty() && block.drives.iter().any(|d| !d.devices.is_empty()))
        .then_some(mapped)
}

/// Rates by reason name of one source.
fn rates(exits: &Exits, source: ExitSource) -> ByReason {
    exits
        .by_reason
        .iter()
        .filter(|r| r.source == source)
        .map(|r| (r.reason.clone(), r.rate))
        .collect()
}

/// The detail group of a kind; present (with zero rate) when the VM had none of them but the
/// source ran, so "no MSR writes" is told apart from "not measured".
fn detail(vm: &model::Vm, kind: DetailKind) -> Option<&DetailGroup> {
    vm.families.exits.details.iter().find(|g| g.kind == kind)
}

/// Rates by key, adding up the rates of a key listed more than once (a port read and written).
fn summed<K: Ord>(rates: impl Iterator<Item = (K, f64)>) -> BTreeMap<K, f64> {
    let mut out = BTreeMap::new();
    for (key, rate) in rates {
        *out.entry(key).or_insert(0.0) += rate;
    }
    out
}

/// Median halt of the vCPU's commonest halt outcome, ns.
fn median_halt(exits: &Exits) -> Option<f64> {
    exits
        .by_reason
        .iter()
        .filter(|r| r.source == ExitSource::Halt)
        .max_by_key(|r| r.count)
        .and_then(|r| Some(to_f64(r.latency.as_ref()?.p50_ns)))
}

#[expect(clippy::cast_precision_loss, reason = "nanoseconds far below 2^52")]
fn to_f64(ns: u64) -> f64 {
    ns as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fixture;

    #[test]
    #[expect(clippy::float_cmp, reason = "the figures are copied, not computed")]
    fn snapshot_figures_become_rule_inputs() {
        let snapshot = fixture::snapshot();
        let threads = [(0, (Some(0.25), Some(12.0)))].into();
        let obs = vm_observations(&snapshot.vms[0], Some(3600.0), &threads);
        let exits = obs
            .exit_rates
            .as_ref()
            .expect("kvm_exit is live in the fixture");
        assert_eq!(exits["IO_INSTRUCTION"], 100_000.0);
        assert_eq!(obs.pio_rates.as_ref().unwrap()[&0x80], 99_500.0);
        assert_eq!(
            obs.exit_p99_ns.as_ref().unwrap()["IO_INSTRUCTION"],
            60_000.0
        );
        // The kernel programs' figures win over procfs ones.
        let vcpu0 = obs.vcpu(0).unwrap();
        assert_eq!(vcpu0.run_delay_share, Some(0.12));
        assert_eq!(vcpu0.migrations_per_s, Some(4.0));
        assert!(vcpu0.cross_node_migrations_per_min.is_some());
        assert!(obs.rss_by_node.as_ref().is_some_and(|n| n.len() == 2));
        // Without them, procfs figures are used.
        let mut bare = snapshot.vms[0].clone();
        bare.vcpus[0].sched = None;
        let obs = vm_observations(&bare, Some(3600.0), &threads);
        let vcpu0 = obs.vcpu(0).unwrap();
        assert_eq!(vcpu0.run_delay_share, Some(0.25));
        assert_eq!(vcpu0.migrations_per_s, Some(12.0));
        assert_eq!(vcpu0.exit_time_share, Some(0.42));
        assert_eq!(vcpu0.userspace_exit_rates.as_ref().unwrap()["IO"], 99_000.0);
        // vCPU 1 has the kernel programs' figures and no procfs ones.
        assert_eq!(obs.vcpu(1).unwrap().run_delay_share, Some(0.12));
        let block = obs.block.as_ref().expect("the fixture's drive is mapped");
        assert!(block["virtio-disk0"].p99_ns.is_some_and(|p| p > 0.0));
        // The fixture has no MSR details: not measured, not zero.
        assert!(obs.msr_write_rates.is_none());
    }

    #[test]
    fn thread_rates_need_two_readings() {
        let now = ThreadAccounting {
            run_delay_ns: Some(2_000_000_000),
            migrations: Some(30),
        };
        assert_eq!(thread_rates(None, &now, 2.0), (None, None));
        let before = ThreadAccounting {
            run_delay_ns: Some(1_000_000_000),
            migrations: Some(10),
        };
        assert_eq!(
            thread_rates(Some(&before), &now, 2.0),
            (Some(0.5), Some(10.0))
        );
        // A counter that went backwards (pid reuse) stays unknown.
        assert_eq!(thread_rates(Some(&now), &before, 2.0), (None, None));
    }
}
