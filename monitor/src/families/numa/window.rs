//! A VM's NUMA figures over a window: where its memory sits, its hinting faults (from the hook,
//! or NUMA balancing's statistics in procfs where it cannot run), the scheduler's placement
//! decisions about its threads, and how far its vCPUs run from their memory.

use std::collections::{BTreeMap, HashMap};

use super::{
    NumaTotals, Statistics,
    counters::{NumaFaultCounts, NumaFaultId},
    figures,
    memory::MemoryPlacement,
    sources::{MOVE_NUMA, NUMA_FAULT, NUMA_FAULT_PROCFS, PROCFS_HOOK, STICK_NUMA, SWAP_NUMA},
};
use crate::{
    bpf::hooks::{Sources, attached},
    families::by_pid::ByPid,
    family::Pair,
    model::{
        LostEvents, Snapshot, SourceState, Vm,
        numa::{
            FaultSource, HostNuma, MemoryFigures, NodeFaults, NodeMemory, NumaFaultFigures, VmNuma,
        },
        running::Running,
    },
};

/// Why the procfs fallback cannot stand in for the hook on a kernel without NUMA balancing.
const NO_STATISTICS: &str = "this kernel prints no NUMA balancing statistics in \
                             /proc/PID/task/TID/sched (built without CONFIG_NUMA_BALANCING)";

/// Fills each VM's NUMA figures and its vCPUs' `remote_memory_share` (their placement, which
/// the sched family fills, must be there), and the state of the sources.
pub fn fill(pair: &Pair<'_, NumaTotals>, sources: &Sources, snapshot: &mut Snapshot) {
    let faults_attached = attached(sources, NUMA_FAULT);
    let placement_attached = [MOVE_NUMA, SWAP_NUMA, STICK_NUMA]
        .iter()
        .any(|name| attached(sources, name));
    let mut fault_events = 0;
    // Moves, swaps, stuck.
    let mut decisions = [0u64; 3];
    let mut active = 0;
    let faults_of = ByPid::new(&pair.now.faults, |id, _| id.pid);
    let moves_of = ByPid::new(&pair.now.moves, |id, _| id.pid);
    for (span, vm) in pair.vms.iter().zip(&mut snapshot.vms) {
        let guest_bytes = span
            .vmm
            .qemu
            .as_ref()
            .and_then(|q| q.memory.as_ref())
            .and_then(|m| m.size_bytes);
        let before = pair.before_for(span);
        let faults = faults_attached
            .then(|| faults(faults_of.of(vm.pid), before.map(|b| &b.faults)));
        fault_events += faults.as_ref().map_or(0, |f| f.faults);
        // Only read while the hook is refused (the map is empty otherwise).
        let balancing = pair.now.balancing.get(&vm.pid).map(|reading| {
            active += usize::from(reading.active());
            figures::balancing(reading, &span.vmm.vcpus)
        });
        let placement = placement_attached.then(|| {
            figures::placement(moves_of.of(vm.pid), before.map(|b| &b.moves))
        });
        if let Some(p) = &placement {
            for (sum, n) in decisions.iter_mut().zip([p.moves, p.swaps, p.stuck]) {
                *sum += n;
            }
        }
        let numa = VmNuma {
            faults,
            balancing,
            placement,
            ..VmNuma::default()
        };
        fill_vm(vm, pair.now.memory.get(&vm.pid), guest_bytes, numa);
    }
    let mut states: BTreeMap<String, SourceState> = sources
        .iter()
        .map(|(name, source)| {
            let events = match *name {
                NUMA_FAULT => fault_events,
                MOVE_NUMA => decisions[0],
                SWAP_NUMA => decisions[1],
                STICK_NUMA => decisions[2],
                _ => 0,
            };
            let state = SourceState::from_window(&source.attachment, events);
            ((*name).to_owned(), state)
        })
        .collect();
    let mut hooks: BTreeMap<String, String> = sources
        .iter()
        .map(|(name, source)| ((*name).to_owned(), source.hook.to_string()))
        .collect();
    let fault_source = if faults_attached {
        FaultSource::Hook
    } else {
        // The fallback runs exactly when the hook does not: its state is a source's like any.
        let state = match pair.now.statistics {
            Statistics::Absent => SourceState::Unavailable(NO_STATISTICS.to_owned()),
            _ if active > 0 => SourceState::Live,
            _ => SourceState::Silent,
        };
        let kind = if matches!(state, SourceState::Unavailable(_)) {
            FaultSource::None
        } else {
            FaultSource::ProcfsFallback
        };
        states.insert(NUMA_FAULT_PROCFS.to_owned(), state);
        hooks.insert(NUMA_FAULT_PROCFS.to_owned(), PROCFS_HOOK.to_owned());
        kind
    };
    snapshot.families.numa = HostNuma {
        sources: states,
        hooks,
        fault_source,
        // Filled by the session, which reads what the kernel skipped.
        lost: BTreeMap::new(),
        dropped: LostEvents::between(pair.before.dropped, pair.now.dropped),
    };
}

/// Fills `vm.families.numa` with `numa` plus the memory figures, and each vCPU's
/// `remote_memory_share`.
fn fill_vm(
    vm: &mut Vm,
    placement: Option<&MemoryPlacement>,
    guest_bytes: Option<u64>,
    numa: VmNuma,
) {
    let mut shares = Vec::new();
    for vcpu in &mut vm.vcpus {
        let Some(sched) = vcpu.sched.as_mut() else {
            continue;
        };
        let node = sched.placement.dominant_node.or(sched.placement.node);
        let share = placement.and_then(|p| remote_share(&p.by_node, node?));
        sched.placement.remote_memory_share = share;
        shares.extend(share);
    }
    #[expect(clippy::cast_precision_loss, reason = "a handful of vCPUs")]
    let mismatch = (!shares.is_empty()).then(|| shares.iter().sum::<f64>() / shares.len() as f64);
    vm.families.numa = VmNuma {
        memory: placement.map(|p| memory_figures(p, guest_bytes)),
        vcpu_memory_mismatch: mismatch,
        ..numa
    };
}

/// The share of the resident memory not on `node`; `None` without memory.
#[must_use]
pub fn remote_share(by_node: &BTreeMap<u32, u64>, node: u32) -> Option<f64> {
    let total = by_node
        .values()
        .fold(0u64, |sum, &bytes| sum.saturating_add(bytes));
    let local = by_node.get(&node).copied().unwrap_or(0);
    #[expect(clippy::cast_precision_loss, reason = "bytes, far below 2^52 in ratio")]
    (total > 0).then(|| 1.0 - local as f64 / total as f64)
}

#[expect(clippy::cast_precision_loss, reason = "byte counts; ratios only")]
fn memory_figures(placement: &MemoryPlacement, guest_bytes: Option<u64>) -> MemoryFigures {
    let resident = placement.resident_bytes();
    let ratio = |part: u64, whole: u64| (whole > 0).then(|| (part as f64 / whole as f64).min(1.0));
    let huge = placement.thp_bytes.saturating_add(placement.hugetlb_bytes);
    let base = guest_bytes
        .filter(|&b| b > 0)
        .unwrap_or(placement.anon_bytes.saturating_add(placement.hugetlb_bytes));
    MemoryFigures {
        resident_bytes: resident,
        by_node: placement
            .by_node
            .iter()
            .map(|(&node, &bytes)| NodeMemory {
                node,
                bytes,
                share: ratio(bytes, resident).unwrap_or(0.0),
            })
            .collect(),
        anon_bytes: placement.anon_bytes,
        thp_bytes: placement.thp_bytes,
        hugetlb_bytes: placement.hugetlb_bytes,
        guest_memory_bytes: guest_bytes,
        huge_page_coverage: ratio(huge, base),
        age_seconds: placement.read_at.elapsed().as_secs_f64(),
    }
}

type Faults = HashMap<NumaFaultId, NumaFaultCounts>;

/// A VM's fault figures, from its counters in the later reading (`mine`) and the earlier one
/// (`None` for a VM new in the window).
fn faults(
    mine: &[(&NumaFaultId, &NumaFaultCounts)],
    before: Option<&Faults>,
) -> NumaFaultFigures {
    let mut by_node: BTreeMap<(Option<u32>, u32), NumaFaultCounts> = BTreeMap::new();
    for &(id, counts) in mine {
        let was = before
            .and_then(|b| b.get(id))
            .copied()
            .unwrap_or_default();
        let NumaFaultId {
            cpu_node, mem_node, ..
        } = *id;
        by_node
            .entry((cpu_node, mem_node))
            .or_default()
            .merge(&counts.since(&was));
    }
    by_node.retain(|_, c| c.faults > 0);
    let mut all = NumaFaultCounts::default();
    for counts in by_node.values() {
        all.merge(counts);
    }
    NumaFaultFigures {
        faults: all.faults,
        pages: all.pages,
        local_pages: all.local_pages,
        remote_pages: all.remote_pages(),
        migrated_pages: all.migrated_pages,
        migrate_failed_pages: all.migrate_failed_pages,
        by_node: by_node
            .into_iter()
            .map(|((cpu_node, memory_node), c)| NodeFaults {
                cpu_node,
                memory_node,
                faults: c.faults,
                pages: c.pages,
                local_pages: c.local_pages,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use std::{path::Path, time::Instant};

    use super::*;
    use crate::{
        host::proc::memory::{parse_numa_maps, parse_smaps_rollup},
        host::topology::Topology,
    };

    fn fixture_memory(name: &str) -> MemoryPlacement {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/numa");
        let text = std::fs::read_to_string(root.join(format!("{name}.numa_maps"))).unwrap();
        let rollup = std::fs::read_to_string(root.join(format!("{name}.smaps_rollup"))).unwrap();
        let (anon_bytes, thp_bytes, hugetlb_bytes) =
            parse_smaps_rollup(&rollup);
        MemoryPlacement {
            by_node: parse_numa_maps(&text),
            anon_bytes,
            thp_bytes,
            hugetlb_bytes,
            read_at: Instant::now(),
        }
    }

    #[test]
    fn vcpus_on_the_node_without_most_memory_are_mostly_remote() {
        // The dual-socket fixture host: CPU 1 is on node 0, CPU 5 on node 1.
        let sys = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/topology/dual-socket");
        let topology = Topology::read(&sys).unwrap();
        let memory = fixture_memory("dual-node-thp");
        let on_node = |cpu| remote_share(&memory.by_node, topology.node_of(cpu).unwrap()).unwrap();
        let (near, far) = (on_node(1), on_node(5));
        assert!(near > 0.24 && near < 0.25, "{near}");
        assert!(far > 0.75 && far < 0.76, "{far}");
        assert_eq!(remote_share(&BTreeMap::new(), 0), None);
    }

    #[test]
    fn huge_page_coverage_against_guest_ram() {
        let thp = memory_figures(&fixture_memory("dual-node-thp"), Some(8 << 30));
        assert_eq!(thp.huge_page_coverage, Some(7.0 / 8.0));
        assert_eq!(thp.by_node.len(), 2);
        assert!((thp.by_node[1].share - 0.25).abs() < 0.01, "{thp:?}");
        let hugetlb = memory_figures(&fixture_memory("hugetlb-1g"), None);
        // Without -m: hugetlbfs 16 GiB of 16 GiB + 48 MiB anonymous.
        let coverage = hugetlb.huge_page_coverage.unwrap();
        assert!(coverage > 0.99 && coverage < 1.0, "{coverage}");
    }

    #[test]
    fn faults_over_the_window_by_node() {
        let key = |cpu_node, mem_node| NumaFaultId {
            pid: 7,
            cpu_node,
            mem_node,
        };
        let counts = |faults, pages, local_pages, migrated_pages| NumaFaultCounts {
            faults,
            pages,
            local_pages,
            migrated_pages,
            migrate_failed_pages: 0,
        };
        let mut before = Faults::default();
        before.insert(key(Some(0), 1), counts(2, 2, 0, 0));
        let mut now = before.clone();
        now.insert(key(Some(0), 1), counts(5, 5, 0, 1));
        now.insert(key(Some(1), 1), counts(4, 4, 4, 0));
        now.insert(key(None, 0), counts(1, 512, 0, 512));
        let mine = ByPid::new(&now, |id, _| id.pid);
        let f = faults(mine.of(7), Some(&before));
        assert_eq!(
            (f.faults, f.pages, f.local_pages, f.remote_pages),
            (8, 519, 4, 515)
        );
        assert_eq!(f.migrated_pages, 513);
        assert_eq!(f.by_node.len(), 3);
        assert_eq!(faults(mine.of(8), None).faults, 0);
    }
}
