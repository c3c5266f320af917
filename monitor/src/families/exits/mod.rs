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

use std::collections::{BTreeSet, HashSet};

pub use self::counters::{ExitCounterKey, ExitCounters, ExitTotals, ThreadRunFd};
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

    /// Asks the kernel programs which file each thread of a VMM runs `KVM_RUN` on while one of
    /// its vCPUs has no known thread.
    fn follow(&mut self, vms: &Vms<'_>) -> Vec<String> {
        let unmatched: BTreeSet<u32> = vms
            .vmms
            .iter()
            .filter(|vmm| vmm.vcpus.iter().any(|vcpu| vcpu.tid.is_none()))
            .map(|vmm| vmm.id.pid)
            .collect();
        self.counters.ask_about(&unmatched)
    }

    fn sample(&mut self, vms: &Vms<'_>) -> ExitTotals {
        let (mut totals, removed) = self.counters.read_retaining(|pid| vms.keeps(pid));
        totals.run_fds = self.counters.take_run_fds();
        totals.run_fds.retain(|run| vms.keeps(run.pid));
        totals.unknown_vmms = removed
            .into_iter()
            .filter(|pid| vms.vmms.iter().all(|v| v.id.pid != *pid))
            .collect();
        totals
    }

    fn unknown_vmms(totals: &ExitTotals) -> Vec<u32> {
        totals.unknown_vmms.clone()
    }

    /// `kvm_exit` records carry the vCPU id; a thread of a VMM asked about was seen running
    /// `KVM_RUN` on a vCPU's file; and when a VM has exactly one vCPU whose thread is unknown
    /// and exactly one unassigned thread that entered `KVM_RUN`, that thread is it (only vCPU
    /// threads call `KVM_RUN`).
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
        seen.extend(totals.run_fds.iter().filter_map(|run| {
            let vmm = vmms.iter().find(|vmm| vmm.id.pid == run.pid)?;
            let vcpu = vmm.vcpus.iter().find(|vcpu| vcpu.fd == run.fd)?;
            Some(VcpuSighting {
                pid: run.pid,
                tid: run.tid,
                index: vcpu.index,
            })
        }));
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A thread seen running `KVM_RUN` on a vCPU's file is that vCPU's thread; a file that is no
    /// vCPU's, or a process that is no VMM here, tells nothing.
    #[test]
    fn a_run_on_a_vcpu_file_matches_the_thread() {
        let vmm = Vmm {
            id: crate::discovery::VmmId {
                pid: 4242,
                start_time: 1,
            },
            kind: crate::discovery::VmmKind::Other {
                exe: "minivmm".into(),
            },
            name: "vm".into(),
            uuid: None,
            comm: "worker".into(),
            qemu: None,
            vcpus: (0..3)
                .map(|index| crate::discovery::Vcpu {
                    index,
                    fd: 20 + index,
                    tid: None,
                    tid_source: None,
                })
                .collect(),
            threads: Vec::new(),
        };
        let run = |pid, tid, fd| ThreadRunFd { pid, tid, fd };
        let totals = ExitTotals {
            run_fds: vec![
                run(4242, 4251, 21),
                run(4242, 4252, 22),
                run(4242, 4253, 99),
                run(7, 8, 20),
            ],
            ..ExitTotals::default()
        };
        let seen = <Exits as Family>::vcpu_threads(&totals, &[vmm]);
        let sighting = |tid, index| VcpuSighting {
            pid: 4242,
            tid,
            index,
        };
        assert_eq!(seen, [sighting(4251, 1), sighting(4252, 2)]);
    }
}
