//! VM exits per VMM process and vCPU thread: counts by source and reason, handling latency, and
//! the details (ports, MSRs, guest-physical regions, …) KVM's tracepoints report.
//!
//! Sources: `kvm_exit`/`kvm_entry` (hardware exits and their handling time), `kvm_userspace_exit`
//! and the `KVM_RUN` ioctl (returns to the VMM and the time spent there), `kvm_vcpu_wakeup`
//! (halts), and one detail tracepoint per [`crate::model::DetailKind`]. Hosts where
//! `kvm_exit` never fires (nested, PVM) still get an exit view from the others.

mod counters;
pub mod details;
mod layout;
pub mod reasons;
pub mod sources;
mod window;

use std::collections::HashSet;

pub use self::counters::{ExitCounterKey, ExitCounters, ExitTotals};
pub use self::window::TOP_DETAILS;
use crate::{
    bpf::{
        Kernel,
        hooks::{SourceSpec, Sources},
    },
    discovery::Vmm,
    family::{Family, HostView, Pair, VcpuSighting, Vms},
    model::Snapshot,
};

/// The exit family.
pub struct Exits {
    counters: ExitCounters,
    sources: Sources,
}

impl Exits {
    /// The exit maps, e.g. for tests that drive the harness.
    #[must_use]
    pub fn counters(&self) -> &ExitCounters {
        &self.counters
    }
}

impl Family for Exits {
    const NAME: &'static str = "exits";
    type Totals = ExitTotals;

    fn sources(host: &HostView) -> Vec<SourceSpec> {
        sources::table(host)
    }

    fn start(kernel: &mut Kernel, sources: Sources, _host: &HostView) -> anyhow::Result<Self> {
        Ok(Self {
            counters: ExitCounters::open(kernel)?,
            sources,
        })
    }

    fn sources_attached(&self) -> &Sources {
        &self.sources
    }

    fn sample(&mut self, vms: &Vms<'_>) -> ExitTotals {
        let removed = self.counters.retain(|pid| vms.keeps(pid));
        let mut totals = self.counters.read();
        totals.unknown_vmms = removed
            .into_iter()
            .filter(|pid| vms.vmms.iter().all(|v| v.id.pid != *pid))
            .collect();
        // Keys a program added after the removal above belong to processes already gone too.
        totals.counts.retain(|k, _| vms.keeps(k.pid));
        totals.latency.retain(|k, _| vms.keeps(k.pid));
        totals.details.retain(|k, _| vms.keeps(k.pid));
        totals
    }

    fn unknown_vmms(totals: &ExitTotals) -> Vec<u32> {
        totals.unknown_vmms.clone()
    }

    /// `kvm_exit` records carry the vCPU id; and when a VM has exactly one vCPU whose thread is
    /// unknown and exactly one unassigned thread that entered `KVM_RUN`, that thread is it (only
    /// vCPU threads call `KVM_RUN`).
    fn vcpu_threads(totals: &ExitTotals, vmms: &[Vmm]) -> Vec<VcpuSighting> {
        let mut seen: Vec<VcpuSighting> = totals
            .counts
            .keys()
            .filter_map(|key| {
                Some(VcpuSighting {
                    pid: key.pid,
                    tid: key.tid,
                    index: key.vcpu_id?,
                })
            })
            .collect();
        for vmm in vmms {
            let unknown: Vec<u32> = vmm
                .vcpus
                .iter()
                .filter(|v| v.tid.is_none())
                .map(|v| v.index)
                .collect();
            let [index] = unknown[..] else { continue };
            let runners: HashSet<u32> = totals
                .counts
                .keys()
                .filter(|k| k.pid == vmm.id.pid)
                .map(|k| k.tid)
                .filter(|tid| vmm.vcpus.iter().all(|v| v.tid != Some(*tid)))
                .collect();
            if let [tid] = runners.into_iter().collect::<Vec<_>>()[..] {
                seen.push(VcpuSighting {
                    pid: vmm.id.pid,
                    tid,
                    index,
                });
            }
        }
        seen
    }

    fn window(&self, pair: &Pair<'_, ExitTotals>, snapshot: &mut Snapshot) {
        window::fill(pair, &self.sources, snapshot);
    }
}
