//! What the rules look at: configuration facts plus observations over a window. Every
//! observation is optional, so a signal that is not collected (yet) is simply absent, and
//! the rules that need it stay quiet and list it as out of reach.

use std::{borrow::Cow, collections::BTreeMap};

use serde::Serialize;

use super::facts::{HostFacts, VmFacts, VmStat};
use crate::model::{HostState, Untrusted};

/// Events per second by reason name, the names borrowed from the snapshot's (copied only for
/// the few reasons it does not name itself).
pub type ByReason = BTreeMap<Cow<'static, str>, f64>;

/// Everything one evaluation looks at.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Inputs {
    /// Length of the observation window; `None` when there are no observations.
    pub window_seconds: Option<f64>,
    pub host: HostFacts,
    pub host_observations: HostObservations,
    pub vms: Vec<VmInputs>,
}

/// Host-wide observations over the window.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HostObservations {
    /// Share of all CPU time not idle (0–1).
    pub cpu_busy_share: Option<f64>,
    /// CPU used by ksmd, as a share of one CPU.
    pub ksmd_cpu_share: Option<f64>,
    /// Pages swapped in per second (`pswpin`).
    pub swap_in_pages_per_s: Option<f64>,
    /// Pages swapped out per second (`pswpout`).
    pub swap_out_pages_per_s: Option<f64>,
    /// NUMA hinting faults in the window (`numa_hint_faults`).
    pub numa_hint_faults: Option<f64>,
    /// Of those, faults on memory of the faulting CPU's node (`numa_hint_faults_local`).
    pub numa_hint_faults_local: Option<f64>,
}

impl HostObservations {
    /// Swap and NUMA-fault observations from two readings of `/proc/vmstat` taken `seconds`
    /// apart. A counter missing from either reading, or running backwards, stays unknown.
    #[must_use]
    pub fn from_vmstat(before: &VmStat, after: &VmStat, seconds: f64) -> Self {
        #[expect(
            clippy::cast_precision_loss,
            reason = "counter deltas are far below 2^52"
        )]
        let delta = |a: Option<u64>, b: Option<u64>| Some(b?.checked_sub(a?)? as f64);
        let rate = |a, b| delta(a, b).filter(|_| seconds > 0.0).map(|d| d / seconds);
        Self {
            swap_in_pages_per_s: rate(before.pswpin, after.pswpin),
            swap_out_pages_per_s: rate(before.pswpout, after.pswpout),
            numa_hint_faults: delta(before.numa_hint_faults, after.numa_hint_faults),
            numa_hint_faults_local: delta(
                before.numa_hint_faults_local,
                after.numa_hint_faults_local,
            ),
            ..Self::default()
        }
    }
}

impl Inputs {
    /// The host's capacity and memory management as these inputs read them.
    #[must_use]
    pub fn host_state(&self) -> HostState {
        let host = &self.host;
        let observed = &self.host_observations;
        HostState {
            cpus: host
                .online_cpus
                .as_ref()
                .and_then(|cpus| u32::try_from(cpus.len()).ok())
                .filter(|&n| n > 0),
            cpu_busy: observed.cpu_busy_share,
            memory_bytes: host.meminfo.mem_total,
            memory_available_bytes: host.meminfo.mem_available,
            swap_bytes: host.meminfo.swap_total,
            swap_free_bytes: host.meminfo.swap_free,
            swap_in_pages_per_second: observed.swap_in_pages_per_s,
            swap_out_pages_per_second: observed.swap_out_pages_per_s,
            transparent_hugepages: host.thp.enabled.as_deref().map(Untrusted::new),
            ksm_run: host.ksm.run,
            ksm_pages_sharing: host.ksm.pages_sharing,
            numa_balancing: host.numa_balancing,
        }
    }
}

/// One VM: its configuration and what was observed of it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VmInputs {
    pub facts: VmFacts,
    pub observations: VmObservations,
}

/// Observations of one block device of a VM.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BlockObservation {
    /// 99th percentile of request issue → completion, ns.
    pub p99_ns: Option<f64>,
    /// Share of the host device's busy time taken by this VM's requests.
    pub device_time_share: Option<f64>,
    /// The host device is rotational (`queue/rotational`).
    pub rotational: Option<bool>,
}

/// Observations of one VM over the window.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VmObservations {
    /// Seconds since the VM's process started.
    pub uptime_seconds: Option<f64>,
    /// Hardware exits per second by the kernel's reason name (`IO_INSTRUCTION`, `npf`), summed
    /// over vCPUs. A reason missing from a present map had no exits. When `None`, VM-wide
    /// rates are summed from the vCPUs' maps if every vCPU has one.
    pub exit_rates: Option<ByReason>,
    /// Port I/O exits per second by port.
    pub pio_rates: Option<BTreeMap<u16, f64>>,
    /// All port I/O exits per second as `kvm_pio` counts them: the measure of E1 on hosts where
    /// `kvm_exit` is silent (nested, PVM).
    pub pio_exits_per_s: Option<f64>,
    /// MSR writes per second by MSR index.
    pub msr_write_rates: Option<BTreeMap<u32, f64>>,
    /// 99th percentile of `kvm_exit` → `kvm_entry` by reason name, ns.
    pub exit_p99_ns: Option<ByReason>,
    /// IPIs the guest sent per second (`kvm_apic_ipi`).
    pub guest_ipis_per_s: Option<f64>,
    /// NUMA hinting faults of the VM's process in the window.
    pub numa_hint_faults: Option<f64>,
    /// Of those, faults on memory of another node than the faulting CPU's.
    pub numa_hint_faults_remote: Option<f64>,
    /// Where the fault hook cannot run: of the VM threads' recent hinting faults (NUMA
    /// balancing's decaying per-thread statistics in procfs), the share on memory of another
    /// node than the one each thread runs on. Only when NUMA balancing scanned the VM between
    /// its two latest readings, so the figures are current; a share, never a count.
    pub numa_recent_remote_fault_share: Option<f64>,
    /// Resident memory per NUMA node (`numa_maps`), bytes.
    pub rss_by_node: Option<BTreeMap<u32, u64>>,
    /// `AnonHugePages` of the process (`smaps_rollup`), bytes.
    pub anon_huge_pages_bytes: Option<u64>,
    /// Host TLB-shootdown IPIs per second received by the CPUs running this VM's vCPUs.
    pub tlb_shootdowns_per_s: Option<f64>,
    /// By drive label ([`super::facts::DiskFacts::label`]).
    pub block: Option<BTreeMap<String, BlockObservation>>,
    pub vcpus: Vec<VcpuObservations>,
}

/// Observations of one vCPU over the window.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VcpuObservations {
    pub index: u32,
    /// Hardware exits per second by reason name.
    pub exit_rates: Option<ByReason>,
    /// Returns to the VMM per second by `KVM_EXIT_*` name (`IO`, `MMIO`).
    pub userspace_exit_rates: Option<ByReason>,
    /// MMIO writes completed in the kernel per second (`kvm_fast_mmio`).
    pub fast_mmio_per_s: Option<f64>,
    /// Share of the vCPU's time spent between `kvm_exit` and `kvm_entry`.
    pub exit_time_share: Option<f64>,
    /// Median time halted (`kvm_vcpu_wakeup`), ns.
    pub median_halt_ns: Option<f64>,
    /// Halt-polling time that ended in a wakeup, ns in the window.
    pub halt_poll_success_ns: Option<f64>,
    /// Halt-polling time that ended without one, ns in the window.
    pub halt_poll_fail_ns: Option<f64>,
    /// Run-queue wait (schedstat `run_delay` delta) as a share of wall time: the guest's steal.
    pub run_delay_share: Option<f64>,
    /// Migrations of the vCPU thread between host CPUs per second.
    pub migrations_per_s: Option<f64>,
    /// Of those, migrations to another NUMA node, per minute.
    pub cross_node_migrations_per_min: Option<f64>,
}

/// The rate of the first of `names` present in `rates`; 0 when the map has none of them.
pub(crate) fn rate_in(rates: &ByReason, names: &[&str]) -> f64 {
    names
        .iter()
        .filter_map(|n| rates.get(*n))
        .fold(0.0, |a, b| a + b)
}

impl VmObservations {
    /// VM-wide hardware exits per second for any of `names` (VMX and SVM spellings).
    #[must_use]
    pub fn exit_rate(&self, names: &[&str]) -> Option<f64> {
        if let Some(rates) = &self.exit_rates {
            return Some(rate_in(rates, names));
        }
        if self.vcpus.is_empty() {
            return None;
        }
        self.vcpus.iter().try_fold(0.0, |acc, v| {
            Some(acc + rate_in(v.exit_rates.as_ref()?, names))
        })
    }

    /// Share of resident memory outside the node holding most of it.
    #[must_use]
    pub fn off_node_rss_share(&self) -> Option<f64> {
        let nodes = self.rss_by_node.as_ref()?;
        let total = nodes.values().fold(0u64, |a, b| a.saturating_add(*b));
        let home = nodes.values().max()?;
        #[expect(clippy::cast_precision_loss, reason = "a share needs no exact bytes")]
        (total > 0).then(|| total.saturating_sub(*home) as f64 / total as f64)
    }

    /// The vCPU with `index`.
    #[must_use]
    pub fn vcpu(&self, index: u32) -> Option<&VcpuObservations> {
        self.vcpus.iter().find(|v| v.index == index)
    }

    /// The highest run-queue wait share among the vCPUs that have one.
    #[must_use]
    pub fn max_run_delay_share(&self) -> Option<f64> {
        self.vcpus
            .iter()
            .filter_map(|v| v.run_delay_share)
            .fold(None, |m, x| Some(m.map_or(x, |m: f64| m.max(x))))
    }
}
