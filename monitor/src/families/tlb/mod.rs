//! TLB shootdowns per VMM process and thread: sent (the VMM changed its mappings and interrupted
//! the other CPUs running its threads), received (a CPU running one of its threads was told to
//! flush), by reason, with the pages flushed; host-wide flushes per CPU; and KVM's paravirtual
//! TLB flushes of guests.
//!
//! `tlb_flush` fires on every context switch, so its program counts the host-wide per-CPU
//! figures (one array slot) and then tests the watched-VMM bitmap before anything else.

mod counters;
pub mod sources;
mod window;

pub use self::counters::{
    Affinities, Flushes, TlbCounterKey, TlbCounters, TlbEvent, TlbReason,
    TlbTotals,
};
use crate::{
    bpf::{
        Kernel,
        hooks::{SourceSpec, Sources},
    },
    family::{Family, HostView, Pair, Vms},
    model::Snapshot,
};

/// The TLB family.
pub struct Tlb {
    counters: TlbCounters,
    sources: Sources,
    proc_root: std::path::PathBuf,
    affinities: Affinities,
}

impl Tlb {
    /// The TLB maps, e.g. for tests that drive the harness.
    #[must_use]
    pub fn counters(&self) -> &TlbCounters {
        &self.counters
    }
}

impl Family for Tlb {
    const NAME: &'static str = "tlb";
    type Totals = TlbTotals;

    fn sources(host: &HostView) -> Vec<SourceSpec> {
        sources::table(host)
    }

    fn start(kernel: &mut Kernel, sources: Sources, host: &HostView) -> anyhow::Result<Self> {
        Ok(Self {
            counters: TlbCounters::open(kernel, &host.proc_root)?,
            sources,
            proc_root: host.proc_root.clone(),
            affinities: Affinities::default(),
        })
    }

    fn sources_attached(&self) -> &Sources {
        &self.sources
    }

    fn sample(&mut self, vms: &Vms<'_>) -> TlbTotals {
        let by_pid: std::collections::HashMap<u32, &crate::discovery::Vmm> =
            vms.vmms.iter().map(|v| (v.id.pid, v)).collect();
        // Discovery keeps each VMM's threads sorted by tid.
        let listed = |pid: u32, tid: u32| {
            by_pid
                .get(&pid)
                .is_some_and(|v| v.threads.binary_search_by_key(&tid, |t| t.tid).is_ok())
        };
        let mut totals = self.counters.read_retaining(|pid| vms.keeps(pid), listed);
        totals.vcpu_cpus = self.affinities.vcpu_cpus(&self.proc_root, vms.vmms);
        totals
    }

    fn window(&self, pair: &Pair<'_, TlbTotals>, snapshot: &mut Snapshot) {
        window::fill(pair, &self.sources, snapshot);
    }
}
