//! NUMA placement of VMs: the hinting faults the kernel counts for their processes, per CPU node
//! and memory node, and where their memory sits, read from procfs ([`memory`]).
//!
//! The fault program tests the watched-VMM bitmap the TLB and block programs share; memory
//! placement is read at most every [`memory::REFRESH_PERIOD`] per VM, spread over the samples,
//! because reading it walks the guest's page tables.

mod counters;
pub mod memory;
pub mod sources;
mod window;

use std::collections::HashMap;

pub use self::{
    counters::{NumaCounters, NumaFaultCounts, NumaFaultId},
    memory::{MemoryPlacement, MemoryReader},
};
use crate::{
    bpf::{
        Kernel,
        hooks::{SourceSpec, Sources},
    },
    family::{Family, HostView, Pair, Vms},
    model::Snapshot,
};

/// The NUMA family.
pub struct Numa {
    counters: NumaCounters,
    sources: Sources,
    memory: MemoryReader,
    proc_root: std::path::PathBuf,
}

/// Running fault totals, and the latest memory placement of each VM.
#[derive(Clone, Debug, Default)]
pub struct NumaTotals {
    pub faults: HashMap<NumaFaultId, NumaFaultCounts>,
    /// Faults not counted because the kernel map was full.
    pub dropped: u64,
    /// By pid; each read at most every [`memory::REFRESH_PERIOD`].
    pub memory: HashMap<u32, MemoryPlacement>,
}

impl Numa {
    /// The fault maps, e.g. for tests that drive the harness.
    #[must_use]
    pub fn counters(&self) -> &NumaCounters {
        &self.counters
    }
}

impl Family for Numa {
    const NAME: &'static str = "numa";
    type Totals = NumaTotals;

    fn sources(_host: &HostView) -> Vec<SourceSpec> {
        sources::table()
    }

    fn start(kernel: &mut Kernel, sources: Sources, host: &HostView) -> anyhow::Result<Self> {
        Ok(Self {
            counters: NumaCounters::open(kernel)?,
            sources,
            memory: MemoryReader::default(),
            proc_root: host.proc_root.clone(),
        })
    }

    fn sources_attached(&self) -> &Sources {
        &self.sources
    }

    /// Reads the placement of the VMs whose reading is due: before the counters are sampled, so
    /// these slow reads do not come between the families' readings.
    fn follow(&mut self, vms: &Vms<'_>) -> Vec<String> {
        self.memory.refresh(&self.proc_root, vms.vmms)
    }

    fn sample(&mut self, vms: &Vms<'_>) -> NumaTotals {
        self.counters.retain(|pid| vms.keeps(pid));
        let (mut faults, dropped) = self.counters.read();
        faults.retain(|id, _| vms.keeps(id.pid));
        NumaTotals {
            faults,
            dropped,
            memory: self.memory.placements(),
        }
    }

    fn window(&self, pair: &Pair<'_, NumaTotals>, snapshot: &mut Snapshot) {
        window::fill(pair, &self.sources, snapshot);
    }
}
