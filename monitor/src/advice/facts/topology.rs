//! CPU and NUMA topology: governors, cores, nodes and their huge page pools.

use std::path::Path;

use serde::Serialize;

use super::parse::{field_value, numbered_entries, parse_cpu_list, read_line, read_text, read_u64};

/// One `cpuN` directory.
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

/// One `nodeN` directory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NodeFacts {
    pub id: u32,
    pub cpus: Option<Vec<u32>>,
    /// `MemTotal` of the node's `meminfo`.
    pub mem_total: Option<u64>,
    /// Sorted by size.
    pub hugepages: Vec<HugePagePool>,
}

fn read_u32(path: &Path) -> Option<u32> {
    read_u64(path).and_then(|n| u32::try_from(n).ok())
}

/// A governor name is a short identifier; anything else is not trusted.
fn read_governor(path: &Path) -> Option<String> {
    read_line(path).filter(|g| {
        g.len() <= 32
            && g.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    })
}

pub(super) fn read_cpus(dir: &Path) -> Option<Vec<CpuFacts>> {
    let cpus = numbered_entries(dir, "cpu")?;
    Some(
        cpus.into_iter()
            .map(|cpu| {
                let d = dir.join(format!("cpu{cpu}"));
                CpuFacts {
                    cpu,
                    governor: read_governor(&d.join("cpufreq/scaling_governor")),
                    package: read_u32(&d.join("topology/physical_package_id")),
                    core: read_u32(&d.join("topology/core_id")),
                }
            })
            .collect(),
    )
}

/// `hugepages-2048kB` → 2 MiB.
fn hugepage_size(name: &str) -> Option<u64> {
    let kb: u64 = name
        .strip_prefix("hugepages-")?
        .strip_suffix("kB")?
        .parse()
        .ok()?;
    kb.checked_mul(1024)
}

fn read_pools(dir: &Path) -> Vec<HugePagePool> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut pools: Vec<HugePagePool> = entries
        .take(64)
        .filter_map(Result::ok)
        .filter_map(|e| {
            let size_bytes = hugepage_size(e.file_name().to_str()?)?;
            let d = e.path();
            Some(HugePagePool {
                size_bytes,
                nr: read_u64(&d.join("nr_hugepages")),
                free: read_u64(&d.join("free_hugepages")),
            })
        })
        .collect();
    pools.sort_by_key(|p| p.size_bytes);
    pools
}

pub(super) fn read_nodes(dir: &Path) -> Option<Vec<NodeFacts>> {
    let nodes = numbered_entries(dir, "node")?;
    if nodes.is_empty() {
        return None;
    }
    Some(
        nodes
            .into_iter()
            .map(|id| {
                let d = dir.join(format!("node{id}"));
                // Node meminfo lines read "Node 0 MemTotal:  123 kB".
                let mem_total = read_text(&d.join("meminfo")).and_then(|text| {
                    text.lines().find_map(|line| {
                        let rest = line.strip_prefix(&format!("Node {id} "))?;
                        field_value(rest, "MemTotal")
                    })
                });
                NodeFacts {
                    id,
                    cpus: read_line(&d.join("cpulist"))
                        .or_else(|| d.join("cpulist").exists().then(String::new))
                        .and_then(|l| parse_cpu_list(&l)),
                    mem_total,
                    hugepages: read_pools(&d.join("hugepages")),
                }
            })
            .collect(),
    )
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
