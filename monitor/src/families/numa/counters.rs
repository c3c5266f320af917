//! The NUMA maps of the kernel programs, read into running totals: faults per (VMM, CPU node,
//! memory node), placement decisions per (VMM, kind, from node, to node).

use std::collections::HashMap;

use aya::maps::{MapData, PerCpuArray, PerCpuHashMap};
use monitor_common::{
    numa::{
        NUMA_DROPS_MAP, NUMA_FAULTS_MAP, NUMA_MOVES_MAP, NUMA_NODE_NONE, NumaFaultKey,
        NumaFaultStat, NumaMoveKey, NumaMoveKind,
    },
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
/// Placement decisions of one kind about the threads of one VMM process, between two nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NumaMoveId {
    pub pid: u32,
    pub kind: MoveKind,
    /// `None` when the record named no node (-1).
    pub from_node: Option<u32>,
    pub to_node: Option<u32>,
}

/// [`NumaMoveKind`] on this side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MoveKind {
    Move,
    Swap,
    Stick,
}

impl MoveKind {
    /// As snapshots and metrics name it.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Move => "move",
            Self::Swap => "swap",
            Self::Stick => "stick",
        }
    }
}

impl NumaMoveId {
    /// `None` for a kind this agent does not know.
    #[must_use]
    pub fn decode(raw: &NumaMoveKey) -> Option<Self> {
        let kind = match raw.kind {
            k if k == NumaMoveKind::Move as u32 => MoveKind::Move,
            k if k == NumaMoveKind::Swap as u32 => MoveKind::Swap,
            k if k == NumaMoveKind::Stick as u32 => MoveKind::Stick,
            _ => return None,
        };
        let node = |n: u32| (n != NUMA_NODE_NONE).then_some(n);
        Some(Self {
            pid: raw.tgid,
            kind,
            from_node: node(raw.from_node),
            to_node: node(raw.to_node),
        })
    }
}

/// What the NUMA maps hold at one instant.
#[derive(Clone, Debug, Default)]
pub struct NumaReading {
    pub faults: HashMap<NumaFaultId, NumaFaultCounts>,
    pub moves: HashMap<NumaMoveId, u64>,
    /// Events lost to a full map.
    pub dropped: u64,
}

/// The NUMA maps of the running kernel programs.
pub struct NumaCounters {
    faults: Batched<PerCpuHashMap<MapData, NumaFaultKey, NumaFaultStat>>,
    moves: Batched<PerCpuHashMap<MapData, NumaMoveKey, u64>>,
    drops: PerCpuArray<MapData, u64>,
}

impl NumaCounters {
    pub fn open(kernel: &mut Kernel) -> anyhow::Result<Self> {
        Ok(Self {
            faults: kernel.take_map(NUMA_FAULTS_MAP)?,
            moves: kernel.take_map(NUMA_MOVES_MAP)?,
            drops: kernel.take_map(NUMA_DROPS_MAP)?,
        })
    }

    /// Every counter summed over the CPUs, and the events lost to a full map.
    #[must_use]
    pub fn read(&self) -> NumaReading {
        let mut faults: HashMap<NumaFaultId, NumaFaultCounts> = HashMap::new();
        for (key, per_cpu) in self.faults.entries() {
            let slot = faults.entry(NumaFaultId::decode(&key)).or_default();
            for stat in per_cpu.iter() {
                slot.add_raw(stat);
            }
        }
        let mut moves: HashMap<NumaMoveId, u64> = HashMap::new();
        for (key, per_cpu) in self.moves.entries() {
            let Some(id) = NumaMoveId::decode(&key) else {
                continue;
            };
            let slot = moves.entry(id).or_default();
            *slot = per_cpu.iter().fold(*slot, |a, b| a.wrapping_add(*b));
        }
        let dropped = self.drops.get(&0, 0).map_or(0, |per_cpu| {
            per_cpu.iter().fold(0u64, |a, b| a.wrapping_add(*b))
        });
        NumaReading {
            faults,
            moves,
            dropped,
        }
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
        let stale: Vec<NumaMoveKey> = self
            .moves
            .all_keys()
            .into_iter()
            .filter(|k| !keep(k.tgid))
            .collect();
        self.moves.remove_keys(&stale);
    }
}
