//! The NUMA programs' kernel logic, driven through `BPF_PROG_TEST_RUN` with synthetic faults:
//! they are attributed to their VM and split local/remote by node on a fixture two-node topology
//! this host does not have.

mod support;

use std::path::Path;

use kvmtop::{
    families::numa::{NumaFaultCounts, NumaFaultId},
    host::topology::Topology,
    model::running::Running as _,
};
use monitor_common::numa::{PROG_NUMA_HARNESS, TNF_FAULT_LOCAL, TNF_MIGRATE_FAIL, TNF_MIGRATED};
use support::harness::VmmHarness;

/// A fault of process `pid` on `cpu`, as `task_numa_fault` gets it.
fn fault(h: &mut VmmHarness, pid: u32, cpu: u64, mem_node: u64, pages: u64, flags: u64) {
    h.run(
        PROG_NUMA_HARNESS,
        None,
        &[pid.into(), cpu, mem_node, pages, flags],
    );
}

#[test]
fn numa_faults_are_attributed_to_nodes_and_split_local_remote() {
    const TEST: &str = "numa_faults_are_attributed_to_nodes_and_split_local_remote";
    let Some(mut h) = VmmHarness::open(TEST, 40) else {
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/topology/dual-socket");
    let topology = Topology::read(&root).expect("fixture topology");
    h.session
        .families_mut()
        .places_mut()
        .write(&topology)
        .expect("writing CPU places");
    let me = h.pid;
    // CPU 1 is on node 0, CPU 5 on node 1.
    for _ in 0..3 {
        fault(&mut h, me, 1, 0, 1, TNF_FAULT_LOCAL);
    }
    // A THP's worth of remote memory, left where it is.
    fault(&mut h, me, 5, 0, 512, 0);
    // A remote page migrated to the faulting CPU's node: memory node is the target.
    fault(&mut h, me, 5, 1, 1, TNF_MIGRATED);
    // A remote page the kernel failed to move.
    fault(&mut h, me, 1, 1, 1, TNF_MIGRATE_FAIL);
    // Not a watched VMM.
    fault(&mut h, me + 1, 1, 1, 1, 0);

    let (faults, dropped) = h.session.families().numa.counters().read();
    let id = |cpu_node, mem_node| NumaFaultId {
        pid: h.pid,
        cpu_node: Some(cpu_node),
        mem_node,
    };
    let counts =
        |faults, pages, local_pages, migrated_pages, migrate_failed_pages| NumaFaultCounts {
            faults,
            pages,
            local_pages,
            migrated_pages,
            migrate_failed_pages,
        };
    assert_eq!(faults.len(), 4, "{faults:?}");
    assert_eq!(faults[&id(0, 0)], counts(3, 3, 3, 0, 0));
    assert_eq!(faults[&id(1, 0)], counts(1, 512, 0, 0, 0));
    assert_eq!(faults[&id(1, 1)], counts(1, 1, 0, 1, 0));
    assert_eq!(faults[&id(0, 1)], counts(1, 1, 0, 0, 1));
    let all = faults
        .values()
        .fold(NumaFaultCounts::default(), |mut a, c| {
            a.merge(c);
            a
        });
    assert_eq!((all.local_pages, all.remote_pages()), (3, 514));
    assert_eq!(dropped, 0);
}
