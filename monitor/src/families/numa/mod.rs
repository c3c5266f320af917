//! NUMA placement of VMs: the hinting faults the kernel counts for their processes, per CPU node
//! and memory node; the scheduler's placement decisions about their threads (moves, swaps, moves
//! that found no CPU); and where their memory sits, read from procfs ([`memory`]).
//!
//! The fault and placement programs test the watched-VMM bitmap the TLB and block programs
//! share; memory placement is read at most every [`memory::REFRESH_PERIOD`] per VM, spread over
//! the samples, because reading it walks the guest's page tables. Where `task_numa_fault` cannot
//! be hooked, NUMA balancing's own per-thread statistics stand in for the fault figures, read
//! from procfs under a budget ([`balancing`]).

pub mod balancing;
mod counters;
mod figures;
pub mod memory;
pub mod sources;
mod window;

use std::collections::HashMap;

pub use self::{
    balancing::{BalancingReader, Statistics, VmBalancing},
    counters::{MoveKind, NumaCounters, NumaFaultCounts, NumaFaultId, NumaMoveId, NumaReading},
    memory::{MemoryPlacement, MemoryReader},
};
use crate::{
    bpf::{
        Kernel,
        hooks::{SourceSpec, Sources, attached},
    },
    family::{Family, HostView, Pair, Vms},
    model::Snapshot,
};

/// The NUMA family.
pub struct Numa {
    counters: NumaCounters,
    sources: Sources,
    memory: MemoryReader,
    /// Reads procfs only while `task_numa_fault` cannot be hooked.
    balancing: Option<BalancingReader>,
    proc_root: std::path::PathBuf,
}

/// Running fault and placement totals, and the latest procfs readings of each VM.
#[derive(Clone, Debug)]
pub struct NumaTotals {
    pub faults: HashMap<NumaFaultId, NumaFaultCounts>,
    pub moves: HashMap<NumaMoveId, u64>,
    /// Events not counted because a kernel map was full.
    pub dropped: u64,
    /// By pid; each read at most every [`memory::REFRESH_PERIOD`].
    pub memory: HashMap<u32, MemoryPlacement>,
    /// By pid; each read at most every [`balancing::READ_PERIOD`]; empty while the hook runs.
    pub balancing: HashMap<u32, VmBalancing>,
    /// Whether this kernel prints NUMA balancing statistics, as far as the readings tell.
    pub statistics: Statistics,
}

impl Default for NumaTotals {
    fn default() -> Self {
        Self {
            faults: HashMap::new(),
            moves: HashMap::new(),
            dropped: 0,
            memory: HashMap::new(),
            balancing: HashMap::new(),
            statistics: Statistics::Unknown,
        }
    }
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

    fn sources(host: &HostView) -> Vec<SourceSpec> {
        sources::table(host)
    }

    fn start(kernel: &mut Kernel, sources: Sources, host: &HostView) -> anyhow::Result<Self> {
        let fallback = !attached(&sources, sources::NUMA_FAULT);
        if fallback {
            log::warn!(
                "numa source numa_fault_procfs: stands in for numa_fault, reading NUMA balancing \
                 statistics from {}/PID/task/TID/sched",
                host.proc_root.display()
            );
        }
        Ok(Self {
            counters: NumaCounters::open(kernel)?,
            sources,
            memory: MemoryReader::default(),
            balancing: fallback.then(BalancingReader::default),
            proc_root: host.proc_root.clone(),
        })
    }

    fn sources_attached(&self) -> &Sources {
        &self.sources
    }

    /// Reads the placement of the VMs whose reading is due: before the counters are sampled, so
    /// these slow reads do not come between the families' readings.
    fn follow(&mut self, vms: &Vms<'_>) -> Vec<String> {
        if let Some(balancing) = &mut self.balancing {
            balancing.refresh(&self.proc_root, vms.vmms);
        }
        self.memory.refresh(&self.proc_root, vms.vmms)
    }

    fn sample(&mut self, vms: &Vms<'_>) -> NumaTotals {
        self.counters.retain(|pid| vms.keeps(pid));
        let NumaReading {
            mut faults,
            mut moves,
            dropped,
        } = self.counters.read();
        faults.retain(|id, _| vms.keeps(id.pid));
        moves.retain(|id, _| vms.keeps(id.pid));
        let (mut balancing, statistics) = self
            .balancing
            .as_ref()
            .map_or((HashMap::new(), Statistics::Unknown), |b| {
                (b.readings(), b.statistics())
            });
        balancing.retain(|pid, _| vms.keeps(*pid));
        NumaTotals {
            faults,
            moves,
            dropped,
            memory: self.memory.placements(),
            balancing,
            statistics,
        }
    }

    fn window(&self, pair: &Pair<'_, NumaTotals>, snapshot: &mut Snapshot) {
        window::fill(pair, &self.sources, snapshot);
    }
}
