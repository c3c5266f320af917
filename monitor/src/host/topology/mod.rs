//! Host CPU and NUMA topology from sysfs: which CPUs share a core, a last-level cache (LLC), a
//! package and a NUMA node.
//!
//! What a vCPU thread loses when the scheduler moves it depends on what the two host CPUs share:
//! an SMT sibling keeps L1 and L2 warm, a CPU on the same LLC keeps L3, and a CPU on another node
//! loses L3 and turns guest memory remote. [`Topology::classify_migration`] names that class.
//!
//! Everything is read below a sysfs root the caller passes ([`DEFAULT_SYS_ROOT`] on a real host),
//! so tests run against fixture trees. Contents are not trusted: a file the kernel always writes
//! that is missing or malformed is a [`TopologyError`] naming it; facts some kernels or
//! architectures do not provide (caches, NUMA, `isolated`, hugepages) degrade to `None` or empty.

mod cpulist;
mod read;
mod sysfs;
#[cfg(test)]
mod tests;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

use serde::Serialize;

pub use cpulist::{CpuListError, CpuSet, MAX_CPU_ID, format_cpu_list, parse_cpu_list};
pub use sysfs::TopologyError;

/// Where sysfs is mounted on a real host.
pub const DEFAULT_SYS_ROOT: &str = "/sys";

/// One logical CPU (a hardware thread) as the kernel numbers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cpu {
    pub id: u32,
    /// Listed in `cpu/online`.
    pub online: bool,
    /// Listed in `cpu/isolated` (`isolcpus=`): the scheduler does not balance onto it.
    pub isolated: bool,
    /// `topology/core_id`: unique only within a package, so cores are told apart by
    /// [`Cpu::smt_siblings`] instead. `None` when the kernel does not report it.
    pub core_id: Option<u32>,
    /// `topology/physical_package_id` (the socket); `None` when unreported.
    pub package_id: Option<u32>,
    /// The online hardware threads of this CPU's core, itself included. Empty when unknown,
    /// which is the case for an offline CPU: the kernel removes its `topology/` directory.
    pub smt_siblings: CpuSet,
    /// Index into [`Topology::llcs`]; `None` when the kernel reports no caches for this CPU.
    pub llc: Option<usize>,
    /// The NUMA node whose `cpulist` names this CPU or, for an offline CPU (which the kernel
    /// drops from those lists), the node its `cpuN/nodeM` link points to.
    pub node: Option<u32>,
}

/// A last-level cache domain: the CPUs sharing one instance of the highest cache level.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Llc {
    /// Position in [`Topology::llcs`]; domains are ordered by their lowest CPU.
    pub id: usize,
    /// Cache level (3 on most servers, 2 on some small or virtual CPUs).
    pub level: u8,
    /// `shared_cpu_list` of the cache: its online CPUs.
    pub cpus: CpuSet,
    /// Size of one instance, from the cache's `size` file.
    pub size_kib: Option<u64>,
}

/// One NUMA node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    pub id: u32,
    /// The node's `cpulist`, as the kernel reports it (online CPUs on x86).
    pub cpus: CpuSet,
    /// Distance to each online node by node id, from the node's `distance` file (10 is
    /// local; only the ratios mean anything). Empty when the kernel reports none.
    pub distances: BTreeMap<u32, u32>,
    /// `Node N MemTotal:` from the node's `meminfo`.
    pub mem_total_kib: Option<u64>,
    /// Hugepage pools on this node, by ascending page size.
    pub hugepages: Vec<HugePages>,
}

/// The hugepage pool of one page size on one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct HugePages {
    pub page_size_kib: u64,
    /// `nr_hugepages`: pages reserved in the pool.
    pub total: u64,
    /// `free_hugepages`: pages not yet handed out.
    pub free: u64,
}

/// What a move of a thread from one host CPU to another crosses, from cheapest to dearest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MigrationClass {
    /// No move at all.
    SameCpu,
    /// To an SMT sibling: L1 and L2 stay warm.
    SameCore,
    /// To another core under the same last-level cache.
    SameLlc,
    /// To another LLC on the same node: the cache working set is lost, memory stays local.
    CrossLlc,
    /// To another NUMA node: caches are lost and the guest's memory becomes remote.
    CrossNode,
    /// A CPU not in the topology, or one whose node or cache the kernel does not report.
    Unknown,
}

/// The CPUs, caches and NUMA nodes of the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Topology {
    cpus: Vec<Cpu>,
    online: CpuSet,
    isolated: CpuSet,
    llcs: Vec<Llc>,
    nodes: Vec<Node>,
}

impl Topology {
    /// Reads the topology below `sys_root` (normally [`DEFAULT_SYS_ROOT`]).
    pub fn read(sys_root: &Path) -> Result<Self, TopologyError> {
        read::topology(sys_root)
    }

    /// Every CPU with a `cpuN` directory (online or not), by id.
    #[must_use]
    pub fn cpus(&self) -> &[Cpu] {
        &self.cpus
    }

    /// The CPU with this id, if the host has it.
    #[must_use]
    pub fn cpu(&self, id: u32) -> Option<&Cpu> {
        self.cpus
            .binary_search_by_key(&id, |c| c.id)
            .ok()
            .map(|i| &self.cpus[i])
    }

    /// `cpu/online`.
    #[must_use]
    pub fn online(&self) -> &CpuSet {
        &self.online
    }

    /// `cpu/isolated`; empty when the kernel does not provide it.
    #[must_use]
    pub fn isolated(&self) -> &CpuSet {
        &self.isolated
    }

    /// Last-level cache domains, ordered by lowest CPU.
    #[must_use]
    pub fn llcs(&self) -> &[Llc] {
        &self.llcs
    }

    /// NUMA nodes by id; a host without NUMA support in sysfs has one node 0 holding every CPU.
    #[must_use]
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The NUMA node of `cpu`.
    #[must_use]
    pub fn node_of(&self, cpu: u32) -> Option<u32> {
        self.cpu(cpu)?.node
    }

    /// The last-level cache domain of `cpu`.
    #[must_use]
    pub fn llc_of(&self, cpu: u32) -> Option<&Llc> {
        self.llcs.get(self.cpu(cpu)?.llc?)
    }

    /// The distance from node `from` to node `to` (10 is local), if the kernel reports it.
    #[must_use]
    pub fn distance(&self, from: u32, to: u32) -> Option<u32> {
        let node = self.nodes.iter().find(|n| n.id == from)?;
        node.distances.get(&to).copied()
    }

    /// Physical cores with at least one online thread.
    #[must_use]
    pub fn cores(&self) -> usize {
        self.cpus
            .iter()
            .filter(|c| !c.smt_siblings.is_empty())
            .map(|c| &c.smt_siblings)
            .collect::<BTreeSet<_>>()
            .len()
    }

    /// Packages (sockets) with at least one CPU that reports its package.
    #[must_use]
    pub fn packages(&self) -> usize {
        self.cpus
            .iter()
            .filter_map(|c| c.package_id)
            .collect::<BTreeSet<_>>()
            .len()
    }

    /// Whether any core runs more than one online hardware thread.
    #[must_use]
    pub fn smt_active(&self) -> bool {
        self.cpus.iter().any(|c| c.smt_siblings.len() > 1)
    }

    /// What a move from `from_cpu` to `to_cpu` crosses.
    ///
    /// The node is checked before the LLC because sub-NUMA clustering splits one L3 across
    /// nodes: such a move shares a cache yet still makes memory remote, and that is the dearer
    /// loss.
    #[must_use]
    pub fn classify_migration(&self, from_cpu: u32, to_cpu: u32) -> MigrationClass {
        let (Some(from), Some(to)) = (self.cpu(from_cpu), self.cpu(to_cpu)) else {
            return MigrationClass::Unknown;
        };
        if from_cpu == to_cpu {
            return MigrationClass::SameCpu;
        }
        match (from.node, to.node) {
            (Some(a), Some(b)) if a != b => return MigrationClass::CrossNode,
            (Some(_), Some(_)) => {}
            _ => return MigrationClass::Unknown,
        }
        match (from.llc, to.llc) {
            (Some(a), Some(b)) if a != b => return MigrationClass::CrossLlc,
            (Some(_), Some(_)) => {}
            _ => return MigrationClass::Unknown,
        }
        if from.smt_siblings.contains(&to_cpu) {
            MigrationClass::SameCore
        } else {
            MigrationClass::SameLlc
        }
    }
}
