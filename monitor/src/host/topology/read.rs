//! Walking the sysfs tree into a [`Topology`].

use std::{collections::BTreeMap, fs, io, path::Path};

use super::{
    Cpu, CpuSet, HugePages, Llc, Node, Topology, TopologyError,
    sysfs::{cpu_list, number, numbered_entries, optional_number, read_optional, read_required},
};

/// What `cpuN/topology/` says about one CPU.
#[derive(Default)]
struct CoreFacts {
    siblings: CpuSet,
    core_id: Option<u32>,
    package_id: Option<u32>,
}

/// The highest-level cache of one CPU.
struct CacheFacts {
    level: u8,
    cpus: CpuSet,
    size_kib: Option<u64>,
}

/// Reads the topology below `sys_root`.
pub(super) fn topology(sys_root: &Path) -> Result<Topology, TopologyError> {
    let cpu_dir = sys_root.join("devices/system/cpu");
    let online_path = cpu_dir.join("online");
    let online = cpu_list(&online_path, &read_required(&online_path)?)?;
    // `isolated` appeared in 4.x; without it nothing is known to be isolated.
    let isolated_path = cpu_dir.join("isolated");
    let isolated = match read_optional(&isolated_path)? {
        Some(text) => cpu_list(&isolated_path, &text)?,
        None => CpuSet::new(),
    };

    let entries = numbered_entries(&cpu_dir, "cpu")?.ok_or_else(|| TopologyError::Missing {
        path: cpu_dir.clone(),
    })?;
    if entries.is_empty() {
        return Err(TopologyError::malformed(&cpu_dir, "no cpuN directories"));
    }

    let mut cpus = Vec::with_capacity(entries.len());
    let mut caches = Vec::with_capacity(entries.len());
    for (id, dir) in &entries {
        let is_online = online.contains(id);
        let core = read_core(*id, dir, is_online)?;
        let cache = read_last_cache(*id, dir, is_online)?;
        cpus.push(Cpu {
            id: *id,
            online: is_online,
            isolated: isolated.contains(id),
            core_id: core.core_id,
            package_id: core.package_id,
            smt_siblings: core.siblings,
            llc: None,
            node: None,
        });
        caches.push(cache);
    }

    // Domains are keyed by their CPU set: the cache `id` file is missing on older kernels and
    // some architectures, while `shared_cpu_list` is always there.
    let mut domains: BTreeMap<&CpuSet, (u8, Option<u64>)> = BTreeMap::new();
    for cache in caches.iter().flatten() {
        domains
            .entry(&cache.cpus)
            .or_insert((cache.level, cache.size_kib));
    }
    let llcs: Vec<Llc> = domains
        .into_iter()
        .enumerate()
        .map(|(id, (cpus, (level, size_kib)))| Llc {
            id,
            level,
            cpus: cpus.clone(),
            size_kib,
        })
        .collect();

    let all: CpuSet = cpus.iter().map(|c| c.id).collect();
    let nodes = read_nodes(sys_root, &all)?;

    for ((cpu, cache), (_, dir)) in cpus.iter_mut().zip(&caches).zip(&entries) {
        cpu.llc = cache
            .as_ref()
            .and_then(|c| llcs.binary_search_by(|d| d.cpus.cmp(&c.cpus)).ok());
        cpu.node = match nodes.iter().find(|n| n.cpus.contains(&cpu.id)) {
            Some(node) => Some(node.id),
            None => linked_node(dir)?,
        };
    }

    Ok(Topology {
        cpus,
        online,
        isolated,
        llcs,
        nodes,
    })
}

/// Reads `cpuN/topology/`. An offline CPU has no such directory, which is not an error.
fn read_core(id: u32, dir: &Path, online: bool) -> Result<CoreFacts, TopologyError> {
    let topo = dir.join("topology");
    let siblings_path = topo.join("thread_siblings_list");
    // `core_cpus_list` is the newer name for the same set; a kernel may one day drop the old one.
    let alternative = topo.join("core_cpus_list");
    let (path, text) = match read_optional(&siblings_path)? {
        Some(text) => (siblings_path, text),
        None => match read_optional(&alternative)? {
            Some(text) => (alternative, text),
            None if online => {
                return Err(TopologyError::Missing {
                    path: siblings_path,
                });
            }
            None => return Ok(CoreFacts::default()),
        },
    };
    let siblings = cpu_list(&path, &text)?;
    if online && !siblings.contains(&id) {
        return Err(TopologyError::malformed(
            &path,
            format!("does not list CPU {id} itself"),
        ));
    }
    Ok(CoreFacts {
        siblings,
        core_id: topology_id(&topo.join("core_id"))?,
        package_id: topology_id(&topo.join("physical_package_id"))?,
    })
}

/// Reads a topology id; the kernel writes -1 where the firmware gives none (some arm64 hosts).
fn topology_id(path: &Path) -> Result<Option<u32>, TopologyError> {
    Ok(optional_number::<i64>(path)?.and_then(|v| u32::try_from(v).ok()))
}

/// Reads the highest-level cache under `cpuN/cache/`; `None` when the kernel lists no caches
/// (offline CPUs, some virtual machines and architectures).
fn read_last_cache(id: u32, dir: &Path, online: bool) -> Result<Option<CacheFacts>, TopologyError> {
    let Some(indexes) = numbered_entries(&dir.join("cache"), "index")? else {
        return Ok(None);
    };
    // Highest level wins; at equal level a data or unified cache beats an instruction cache,
    // which only matters on CPUs whose caches stop at L1.
    let mut best: Option<((u8, bool), &Path)> = None;
    for (_, index) in &indexes {
        let level_path = index.join("level");
        let level: u8 = number(&level_path, &read_required(&level_path)?)?;
        let kind = read_optional(&index.join("type"))?;
        let key = (level, kind.is_none_or(|k| k.trim() != "Instruction"));
        if best.is_none_or(|(b, _)| key > b) {
            best = Some((key, index));
        }
    }
    let Some(((level, _), index)) = best else {
        return Ok(None);
    };
    let shared_path = index.join("shared_cpu_list");
    let cpus = cpu_list(&shared_path, &read_required(&shared_path)?)?;
    if online && !cpus.contains(&id) {
        return Err(TopologyError::malformed(
            &shared_path,
            format!("does not list CPU {id} itself"),
        ));
    }
    let size_path = index.join("size");
    let size_kib = match read_optional(&size_path)? {
        // The kernel prints the size as "<n>K".
        Some(text) => match text.trim().strip_suffix('K') {
            Some(digits) => Some(number(&size_path, digits)?),
            None => {
                return Err(TopologyError::malformed(
                    &size_path,
                    format!("'{}' is not a size in K", text.trim()),
                ));
            }
        },
        None => None,
    };
    Ok(Some(CacheFacts {
        level,
        cpus,
        size_kib,
    }))
}

/// The node a `cpuN/nodeM` link names. The kernel keeps that link while a CPU is offline,
/// unlike the node's `cpulist`, so it is the way to place an offline CPU.
fn linked_node(cpu_dir: &Path) -> Result<Option<u32>, TopologyError> {
    Ok(numbered_entries(cpu_dir, "node")?.and_then(|links| links.first().map(|(id, _)| *id)))
}

/// Reads `devices/system/node/`. Without it (a kernel built without NUMA) the host is one node 0
/// holding `all_cpus`, with no distances or memory figures.
fn read_nodes(sys_root: &Path, all_cpus: &CpuSet) -> Result<Vec<Node>, TopologyError> {
    let dir = sys_root.join("devices/system/node");
    let entries = match numbered_entries(&dir, "node")? {
        Some(entries) if !entries.is_empty() => entries,
        _ => {
            return Ok(vec![Node {
                id: 0,
                cpus: all_cpus.clone(),
                distances: BTreeMap::new(),
                mem_total_kib: None,
                hugepages: Vec::new(),
            }]);
        }
    };
    // Each `distance` file lists one value per online node, in node order, without naming them.
    let online_path = dir.join("online");
    let order: Vec<u32> = match read_optional(&online_path)? {
        Some(text) => cpu_list(&online_path, &text)?.into_iter().collect(),
        None => entries.iter().map(|(id, _)| *id).collect(),
    };

    let mut nodes = Vec::with_capacity(entries.len());
    for (id, path) in &entries {
        let cpulist_path = path.join("cpulist");
        let cpus = cpu_list(&cpulist_path, &read_required(&cpulist_path)?)?;

        let distance_path = path.join("distance");
        let distances = match read_optional(&distance_path)? {
            Some(text) => {
                let values = text
                    .split_whitespace()
                    .map(|v| number::<u32>(&distance_path, v))
                    .collect::<Result<Vec<_>, _>>()?;
                if values.len() != order.len() {
                    return Err(TopologyError::malformed(
                        &distance_path,
                        format!(
                            "{} distances for {} online nodes",
                            values.len(),
                            order.len()
                        ),
                    ));
                }
                order.iter().copied().zip(values).collect()
            }
            None => BTreeMap::new(),
        };

        let meminfo_path = path.join("meminfo");
        let mem_total_kib = match read_optional(&meminfo_path)? {
            Some(text) => mem_total(&meminfo_path, &text, *id)?,
            None => None,
        };

        nodes.push(Node {
            id: *id,
            cpus,
            distances,
            mem_total_kib,
            hugepages: read_hugepages(&path.join("hugepages"))?,
        });
    }
    Ok(nodes)
}

/// The `Node N MemTotal:  <n> kB` line of a node's `meminfo`; `None` if there is none for `node`.
fn mem_total(path: &Path, text: &str, node: u32) -> Result<Option<u64>, TopologyError> {
    let prefix = format!("Node {node} MemTotal:");
    let Some(rest) = text.lines().find_map(|l| l.strip_prefix(&prefix)) else {
        return Ok(None);
    };
    match rest.trim().strip_suffix("kB") {
        Some(value) => number(path, value).map(Some),
        None => Err(TopologyError::malformed(
            path,
            format!("MemTotal '{}' is not in kB", rest.trim()),
        )),
    }
}

/// Reads `nodeN/hugepages/hugepages-<size>kB/`; empty when the kernel has no hugetlbfs.
fn read_hugepages(dir: &Path) -> Result<Vec<HugePages>, TopologyError> {
    let unreadable = |source| TopologyError::Unreadable {
        path: dir.to_owned(),
        source,
    };
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(unreadable(e)),
    };
    let mut pools = Vec::new();
    for entry in entries {
        let entry = entry.map_err(unreadable)?;
        let name = entry.file_name();
        let Some(size) = name
            .to_str()
            .and_then(|n| n.strip_prefix("hugepages-")?.strip_suffix("kB"))
            .and_then(|s| s.parse::<u64>().ok())
        else {
            continue;
        };
        let pool = entry.path();
        let total_path = pool.join("nr_hugepages");
        let free_path = pool.join("free_hugepages");
        pools.push(HugePages {
            page_size_kib: size,
            total: number(&total_path, &read_required(&total_path)?)?,
            free: number(&free_path, &read_required(&free_path)?)?,
        });
    }
    pools.sort_unstable_by_key(|p| p.page_size_kib);
    Ok(pools)
}
