//! The NUMA fault map of the kernel programs, read into running totals per (VMM, CPU node,
//! memory node).

use std::collections::HashMap;

use aya::maps::{MapData, PerCpuArray, PerCpuHashMap};
use monitor_common::{
    numa::{NUMA_DROPS_MAP, NUMA_FAULTS_MAP, NumaFaultKey, NumaFaultStat},
    places::PLACE_UNKNOWN,
};

use crate::bpf::{Kernel, batch::Batched};

/// NUMA faults of one VMM process from CPUs of one node on memory of one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NumaFaultId {
    pub pid: u32,
    /// The faulting CPU's node, when the topology names it.
    pub cpu_node: Option<u32>,
    /// Where the memory is after the fault (the target node when it was migrated).
    pub mem_node: u32,
}

impl NumaFaultId {
    #[must_use]
    pub fn decode(raw: &NumaFaultKey) -> Self {
        Self {
            pid: raw.tgid,
            cpu_node: (raw.cpu_node != PLACE_UNKNOWN).then_some(raw.cpu_node),
            mem_node: raw.mem_node,
        }
    }
}

/// Fault counts; "local" is the kernel's own verdict (`TNF_FAULT_LOCAL`): the memory sat on the
/// faulting CPU's node when the fault was taken, before any migration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NumaFaultCounts {
    pub faults: u64,
    pub pages: u64,
    pub local_pages: u64,
    pub migrated_pages: u64,
    pub migrate_failed_pages: u64,
}

impl NumaFaultCounts {
    #[must_use]
    pub fn remote_pages(&self) -> u64 {
        self.pages.saturating_sub(self.local_pages)
    }

    /// Adds one CPU's (or one key's) counts.
    pub fn add_raw(&mut self, raw: &NumaFaultStat) {
        self.faults = self.faults.wrapping_add(raw.faults);
        self.pages = self.pages.wrapping_add(raw.pages);
        self.local_pages = self.local_pages.wrapping_add(raw.local_pages);
        self.migrated_pages = self.migrated_pages.wrapping_add(raw.migrated_pages);
        self.migrate_failed_pages = self
            .migrate_failed_pages
            .wrapping_add(raw.migrate_failed_pages);
    }
}

crate::running_totals!(NumaFaultCounts {
    faults,
    pages,
    local_pages,
    migrated_pages,
    migrate_failed_pages,
});


/// The NUMA maps of the running kernel programs.
pub struct NumaCounters {
    faults: Batched<PerCpuHashMap<MapData, NumaFaultKey, NumaFaultStat>>,
    drops: PerCpuArray<MapData, u64>,
}

impl NumaCounters {
    pub fn open(kernel: &mut Kernel) -> anyhow::Result<Self> {
        Ok(Self {
            faults: kernel.take_map(NUMA_FAULTS_MAP)?,
            drops: kernel.take_map(NUMA_DROPS_MAP)?,
        })
    }

    /// Every counter summed over the CPUs, and the faults lost to a full map.
    #[must_use]
    pub fn read(&self) -> (HashMap<NumaFaultId, NumaFaultCounts>, u64) {
        let mut faults: HashMap<NumaFaultId, NumaFaultCounts> = HashMap::new();
        for (key, per_cpu) in self.faults.entries() {
            let slot = faults.entry(NumaFaultId::decode(&key)).or_default();
            for stat in per_cpu.iter() {
                slot.add_raw(stat);
            }
        }
        let dropped = self.drops.get(&0, 0).map_or(0, |per_cpu| {
            per_cpu.iter().fold(0u64, |a, b| a.wrapping_add(*b))
        });
        (faults, dropped)
    }

    /// Removes the counters of processes for which `keep(pid)` is false.
    pub fn retain(&mut self, keep: impl Fn(u32) -> bool) {
        let stale: Vec<NumaFaultKey> = self
            .faults
            .all_keys()
            .into_iter()
            .filter(|k| !keep(k.tgid))
            .collect();
        // Already gone is fine.
        self.faults.remove_keys(&stale);
    }
}
