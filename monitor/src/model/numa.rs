//! NUMA figures over a window: where each VM's memory sits, its hinting faults, and how far its
//! vCPUs run from their memory.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use schemars::JsonSchema;

use super::{LostEvents, SourceState, interned::StaticText};

/// Host-wide state of the NUMA sources.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
pub struct HostNuma {
    /// `numa_fault`, the placement tracepoints (`sched_move_numa`, `sched_swap_numa`,
    /// `sched_stick_numa`) and, while it stands in for `numa_fault`, `numa_fault_procfs`.
    pub sources: BTreeMap<String, SourceState>,
    /// Where each source runs (`fentry:task_numa_fault`, `procfs:/proc/PID/task/TID/sched`, …).
    pub hooks: BTreeMap<String, String>,
    /// Where the VMs' NUMA fault figures come from.
    pub fault_source: FaultSource,
    /// Per source, events the kernel did not run its program for (another BPF program was
    /// running on that CPU): in the window and since start. Only sources that lost any.
    pub lost: BTreeMap<String, LostEvents>,
    /// Faults and placement decisions not counted because a kernel map (`NUMA_DROPS` counts
    /// them) was full.
    pub dropped: LostEvents,
}

/// Where the VMs' NUMA fault figures come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FaultSource {
    /// The `numa_fault` program counts every hinting fault (`faults` of each VM).
    Hook,
    /// `task_numa_fault` could not be hooked (`sources.numa_fault` says why): NUMA balancing's
    /// own per-thread statistics are read from procfs instead (`balancing` of each VM).
    ProcfsFallback,
    /// Neither: the hook was refused and this kernel prints no NUMA balancing statistics.
    #[default]
    None,
}

impl FaultSource {
    /// As snapshots and metrics name it.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Hook => "hook",
            Self::ProcfsFallback => "procfs_fallback",
            Self::None => "none",
        }
    }
}

/// A VM's NUMA figures.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct VmNuma {
    /// Null when it could not be read yet.
    #[serde(skip_serializing_if = "super::recorded::absent")]
    pub memory: Option<MemoryFigures>,
    /// Null when `task_numa_fault` cannot be hooked on this kernel.
    #[serde(skip_serializing_if = "super::recorded::absent")]
    pub faults: Option<NumaFaultFigures>,
    /// NUMA balancing's own statistics of the VM's threads, read from procfs when
    /// `task_numa_fault` cannot be hooked; null while the hook runs, and until the first reading.
    #[serde(skip_serializing_if = "super::recorded::absent")]
    pub balancing: Option<BalancingFigures>,
    /// The scheduler's NUMA placement decisions about the VM's threads over the window; null
    /// when none of the placement tracepoints is attached.
    #[serde(skip_serializing_if = "super::recorded::absent")]
    pub placement: Option<PlacementDecisions>,
    /// The mean over the vCPUs of their `remote_memory_share`.
    #[serde(skip_serializing_if = "super::recorded::absent")]
    pub vcpu_memory_mismatch: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MemoryFigures {
    /// Bytes mapped by the VMM process, all nodes (from `numa_maps`).
    #[serde(default, skip_serializing_if = "super::recorded::unset")]
    #[schemars(!default, !skip_serializing_if)]
    pub resident_bytes: u64,
    #[serde(default, skip_serializing_if = "super::recorded::empty")]
    #[schemars(!default, !skip_serializing_if)]
    pub by_node: Vec<NodeMemory>,
    /// Anonymous memory, the part of it in transparent huge pages, and hugetlbfs memory.
    #[serde(default, skip_serializing_if = "super::recorded::unset")]
    #[schemars(!default, !skip_serializing_if)]
    pub anon_bytes: u64,
    #[serde(default, skip_serializing_if = "super::recorded::unset")]
    #[schemars(!default, !skip_serializing_if)]
    pub thp_bytes: u64,
    #[serde(default, skip_serializing_if = "super::recorded::unset")]
    #[schemars(!default, !skip_serializing_if)]
    pub hugetlb_bytes: u64,
    /// The guest's RAM as configured (QEMU `-m`), when known.
    #[serde(skip_serializing_if = "super::recorded::absent")]
    pub guest_memory_bytes: Option<u64>,
    /// (THP + hugetlbfs) / guest RAM or, when that is unknown, / (anonymous + hugetlbfs).
    #[serde(skip_serializing_if = "super::recorded::absent")]
    pub huge_page_coverage: Option<f64>,
    /// How old the reading is: placement is read at most every 30 s.
    #[serde(default, skip_serializing_if = "super::recorded::unset")]
    #[schemars(!default, !skip_serializing_if)]
    pub age_seconds: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NodeMemory {
    pub node: u32,
    pub bytes: u64,
    pub share: f64,
}

/// NUMA hinting faults of the VM's threads over the window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NodeFaults {
    pub cpu_node: Option<u32>,
    pub memory_node: u32,
    pub faults: u64,
    pub pages: u64,
    pub local_pages: u64,
}

/// NUMA balancing's own per-thread statistics of a VM (`/proc/PID/task/TID/sched`), summed over
/// its threads. Each VM is read at most every 10 s, so these figures cover the span between its
/// two latest readings, not the window. The kernel keeps no running count of hinting faults
/// there, only decaying averages (halved at each scan pass), so they say where the VM's recent
/// faults went, not how many there were: they do not replace `faults`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BalancingFigures {
    /// Pages NUMA balancing migrated on the VM's faults between the two latest readings
    /// (`numa_pages_migrated`, threads seen in both): what `faults.migrated_pages` counts, over
    /// `span_seconds`. Null until the second reading.
    #[serde(skip_serializing_if = "super::recorded::absent")]
    pub migrated_pages: Option<u64>,
    #[serde(skip_serializing_if = "super::recorded::absent")]
    pub migrated_pages_per_s: Option<f64>,
    /// Scan passes over the VM's memory between the two readings (`mm->numa_scan_seq`).
    #[serde(skip_serializing_if = "super::recorded::absent")]
    pub scan_passes: Option<u64>,
    /// Seconds between the two latest readings.
    #[serde(skip_serializing_if = "super::recorded::absent")]
    pub span_seconds: Option<f64>,
    /// Seconds since the latest reading.
    #[serde(default, skip_serializing_if = "super::recorded::unset")]
    #[schemars(!default, !skip_serializing_if)]
    pub age_seconds: f64,
    /// The threads' recent hinting faults by memory node, in pages (decaying averages).
    #[serde(default, skip_serializing_if = "super::recorded::empty")]
    #[schemars(!default, !skip_serializing_if)]
    pub recent_faults_by_node: Vec<NodeFaultWeight>,
    /// Of those, the share on memory of a node other than the one the faulting thread runs on
    /// now: the procfs estimate of `faults.remote_pages / faults.pages` (the hook judges each
    /// fault by the CPU it was taken on). Null without recent faults or known nodes.
    #[serde(skip_serializing_if = "super::recorded::absent")]
    pub recent_remote_share: Option<f64>,
    /// The vCPU threads' own figures, by vCPU index.
    #[serde(default, skip_serializing_if = "super::recorded::empty")]
    #[schemars(!default, !skip_serializing_if)]
    pub vcpus: Vec<VcpuBalancing>,
    /// Pages migrated since kvmtop began reading the VM (for Prometheus counters).
    #[serde(default, skip_serializing_if = "super::recorded::not_recording")]
    #[schemars(skip)]
    pub migrated_pages_cumulative: u64,
}

/// Recent hinting faults on one node's memory (decaying averages, pages).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NodeFaultWeight {
    #[serde(default, skip_serializing_if = "super::recorded::unset")]
    #[schemars(!default, !skip_serializing_if)]
    pub node: u32,
    /// On pages only the faulting thread touched lately.
    #[serde(default, skip_serializing_if = "super::recorded::unset")]
    #[schemars(!default, !skip_serializing_if)]
    pub private: u64,
    /// On pages other threads touched too.
    #[serde(default, skip_serializing_if = "super::recorded::unset")]
    #[schemars(!default, !skip_serializing_if)]
    pub shared: u64,
    /// Of all the VM's recent faults.
    #[serde(default, skip_serializing_if = "super::recorded::unset")]
    #[schemars(!default, !skip_serializing_if)]
    pub share: f64,
}

/// One vCPU thread's NUMA balancing statistics.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct VcpuBalancing {
    #[serde(default, skip_serializing_if = "super::recorded::unset")]
    #[schemars(!default, !skip_serializing_if)]
    pub index: u32,
    #[serde(default, skip_serializing_if = "super::recorded::unset")]
    #[schemars(!default, !skip_serializing_if)]
    pub tid: u32,
    /// The node of the CPU the thread last ran on.
    #[serde(skip_serializing_if = "super::recorded::absent")]
    pub current_node: Option<u32>,
    /// The node NUMA balancing wants the thread on (`numa_preferred_nid`); null for none yet.
    #[serde(skip_serializing_if = "super::recorded::absent")]
    pub preferred_node: Option<u32>,
    /// Between the two latest readings; null until the second.
    #[serde(skip_serializing_if = "super::recorded::absent")]
    pub migrated_pages: Option<u64>,
    /// Of the thread's recent faults, the share on memory of another node than `current_node`.
    #[serde(skip_serializing_if = "super::recorded::absent")]
    pub recent_remote_share: Option<f64>,
}

/// The scheduler's NUMA placement decisions about a VM's threads over the window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PlacementDecisions {
    /// A thread moved to a CPU of another node, usually its preferred one (`sched_move_numa`).
    #[serde(default, skip_serializing_if = "super::recorded::unset")]
    #[schemars(!default, !skip_serializing_if)]
    pub moves: u64,
    /// A thread exchanged CPUs with a thread on another node (`sched_swap_numa`; counted for each
    /// of the two that is the VM's).
    #[serde(default, skip_serializing_if = "super::recorded::unset")]
    #[schemars(!default, !skip_serializing_if)]
    pub swaps: u64,
    /// A move the scheduler wanted found no CPU on the wanted node (`sched_stick_numa`).
    #[serde(default, skip_serializing_if = "super::recorded::unset")]
    #[schemars(!default, !skip_serializing_if)]
    pub stuck: u64,
    /// By kind and node pair, largest first.
    #[serde(default, skip_serializing_if = "super::recorded::empty")]
    #[schemars(!default, !skip_serializing_if)]
    pub by_node: Vec<NodeMoves>,
    /// Moves, swaps and stuck since counting began (for Prometheus counters).
    #[serde(default, skip_serializing_if = "super::recorded::not_recording")]
    #[schemars(skip)]
    pub cumulative: [u64; 3],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NodeMoves {
    /// `move`, `swap` or `stick`.
    #[serde(deserialize_with = "super::interned::text")]
    pub kind: StaticText,
    /// Null when the record named no node.
    pub from_node: Option<u32>,
    /// For `stick`, the node the thread could not go to; null when there was no candidate.
    pub to_node: Option<u32>,
    pub count: u64,
}
