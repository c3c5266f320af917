//! The CPUs and NUMA nodes as the tuning rules see them: cores, governors, nodes and their huge
//! page pools. Built from the one topology reader ([`crate::host::topology`]) and the cpufreq
//! governors ([`crate::host::cpu::governors`]).

use std::{collections::BTreeMap, path::Path};

use serde::Serialize;

use crate::host::{
    cpu,
    topology::{CpuSet, Topology},
};

/// One CPU.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CpuFacts {
    pub cpu: u32,
    /// `cpufreq/scaling_governor`; `None` without cpufreq (common in VMs and on some servers).
    pub governor: Option<String>,
    /// `topology/physical_package_id`.
    pub package: Option<u32>,
    /// `topology/core_id`.
    pub core: Option<u32>,
}

/// One huge page size of one node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HugePagePool {
    pub size_bytes: u64,
    pub nr: Option<u64>,
    pub free: Option<u64>,
}

/// One NUMA node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NodeFacts {
    pub id: u32,
    pub cpus: Option<Vec<u32>>,
    /// `MemTotal` of the node's `meminfo`, in bytes.
    pub mem_total: Option<u64>,
    /// Sorted by size.
    pub hugepages: Vec<HugePagePool>,
}

/// What the rules know of the CPUs and nodes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuTopology {
    pub online: Option<Vec<u32>>,
    pub cpus: Option<Vec<CpuFacts>>,
    pub smt_active: Option<bool>,
    pub nodes: Option<Vec<NodeFacts>>,
}

impl CpuTopology {
    /// The topology under `sys_root`, or nothing known when it cannot be read.
    #[must_use]
    pub fn read(sys_root: &Path) -> Self {
        match Topology::read(sys_root) {
            Ok(topology) => Self::of(&topology, &cpu::governors(sys_root)),
            Err(e) => {
                log::debug!("host topology for the advice: {e}");
                Self::default()
            }
        }
    }

    fn of(topology: &Topology, governors: &BTreeMap<u32, String>) -> Self {
        let list = |set: &CpuSet| set.iter().copied().collect::<Vec<u32>>();
        let nodes: Vec<NodeFacts> = topology
            .nodes()
            .iter()
            .map(|node| NodeFacts {
                id: node.id,
                cpus: Some(list(&node.cpus)),
                mem_total: node.mem_total_kib.and_then(|kib| kib.checked_mul(1024)),
                hugepages: node
                    .hugepages
                    .iter()
                    .map(|pool| HugePagePool {
                        size_bytes: pool.page_size_kib.saturating_mul(1024),
                        nr: Some(pool.total),
                        free: Some(pool.free),
                    })
                    .collect(),
            })
            .collect();
        Self {
            online: Some(list(topology.online())),
            cpus: Some(
                topology
                    .cpus()
                    .iter()
                    .map(|c| CpuFacts {
                        cpu: c.id,
                        governor: governors.get(&c.id).cloned(),
                        package: c.package_id,
                        core: c.core_id,
                    })
                    .collect(),
            ),
            smt_active: Some(topology.smt_active()),
            // A kernel without NUMA sysfs has no node directories: the node count is unknown.
            nodes: (!nodes.is_empty()).then_some(nodes),
        }
    }
}

impl super::HostFacts {
    /// Physical cores: distinct (package, core) pairs over the CPUs whose topology is known.
    #[must_use]
    pub fn physical_cores(&self) -> Option<u32> {
        self.cores_among(None)
    }

    /// Physical cores among `cpus` (all CPUs when `None`).
    #[must_use]
    pub fn cores_among(&self, cpus: Option<&[u32]>) -> Option<u32> {
        let mut cores: Vec<(u32, u32)> = self
            .cpus
            .as_ref()?
            .iter()
            .filter(|c| cpus.is_none_or(|set| set.contains(&c.cpu)))
            .filter_map(|c| Some((c.package?, c.core?)))
            .collect();
        cores.sort_unstable();
        cores.dedup();
        (!cores.is_empty()).then(|| u32::try_from(cores.len()).unwrap_or(u32::MAX))
    }

    /// The node owning `cpu`.
    #[must_use]
    pub fn node_of_cpu(&self, cpu: u32) -> Option<u32> {
        self.nodes
            .as_ref()?
            .iter()
            .find(|n| n.cpus.as_ref().is_some_and(|c| c.contains(&cpu)))
            .map(|n| n.id)
    }

    /// Nodes with at least one CPU or some memory; `None` when NUMA sysfs is unknown.
    #[must_use]
    pub fn node_count(&self) -> Option<usize> {
        Some(self.nodes.as_ref()?.len())
    }

    /// The governor of `cpu`.
    #[must_use]
    pub fn governor(&self, cpu: u32) -> Option<&str> {
        self.cpus
            .as_ref()?
            .iter()
            .find(|c| c.cpu == cpu)?
            .governor
            .as_deref()
    }

    /// Every huge page pool of every node, as (node, pool).
    pub fn hugepage_pools(&self) -> impl Iterator<Item = (u32, &HugePagePool)> {
        self.nodes
            .iter()
            .flatten()
            .flat_map(|n| n.hugepages.iter().map(move |p| (n.id, p)))
    }
}
