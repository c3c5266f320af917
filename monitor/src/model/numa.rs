//! NUMA figures over a window: where each VM's memory sits, its hinting faults, and how far its
//! vCPUs run from their memory.

use std::collections::BTreeMap;

use serde::Serialize;
use schemars::JsonSchema;

use super::{LostEvents, SourceState};

/// Host-wide state of the NUMA sources.
#[derive(Clone, Debug, Default, Serialize, JsonSchema)]
pub struct HostNuma {
    /// `numa_fault`.
    pub sources: BTreeMap<String, SourceState>,
    /// Where each source runs (`fentry:task_numa_fault`, …).
    pub hooks: BTreeMap<String, String>,
    /// Per source, events the kernel did not run its program for (another BPF program was
    /// running on that CPU): in the window and since start. Only sources that lost any.
    pub lost: BTreeMap<String, LostEvents>,
    /// Faults not counted because a kernel map (`NUMA_DROPS` counts them) was full.
    pub dropped: LostEvents,
}

/// A VM's NUMA figures.
#[derive(Clone, Debug, Default, PartialEq, Serialize, JsonSchema)]
pub struct VmNuma {
    /// Null when it could not be read yet.
    pub memory: Option<MemoryFigures>,
    /// Null when `task_numa_fault` cannot be hooked on this kernel.
    pub faults: Option<NumaFaultFigures>,
    /// The mean over the vCPUs of their `remote_memory_share`.
    pub vcpu_memory_mismatch: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct MemoryFigures {
    /// Bytes mapped by the VMM process, all nodes (from `numa_maps`).
    pub resident_bytes: u64,
    pub by_node: Vec<NodeMemory>,
    /// Anonymous memory, the part of it in transparent huge pages, and hugetlbfs memory.
    pub anon_bytes: u64,
    pub thp_bytes: u64,
    pub hugetlb_bytes: u64,
    /// The guest's RAM as configured (QEMU `-m`), when known.
    pub guest_memory_bytes: Option<u64>,
    /// (THP + hugetlbfs) / guest RAM or, when that is unknown, / (anonymous + hugetlbfs).
    pub huge_page_coverage: Option<f64>,
    /// How old the reading is: placement is read at most every 30 s.
    pub age_seconds: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, JsonSchema)]
pub struct NodeMemory {
    pub node: u32,
    pub bytes: u64,
    pub share: f64,
}

/// NUMA hinting faults of the VM's threads over the window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, JsonSchema)]
pub struct NumaFaultFigures {
    pub faults: u64,
    pub pages: u64,
    /// Pages whose memory was on the faulting CPU's node (the kernel's `TNF_FAULT_LOCAL`).
    pub local_pages: u64,
    pub remote_pages: u64,
    pub migrated_pages: u64,
    pub migrate_failed_pages: u64,
    /// By (faulting CPU's node, memory node after the fault).
    pub by_node: Vec<NodeFaults>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
pub struct NodeFaults {
    pub cpu_node: Option<u32>,
    pub memory_node: u32,
    pub faults: u64,
    pub pages: u64,
    pub local_pages: u64,
}
