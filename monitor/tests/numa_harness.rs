//! The NUMA programs' kernel logic, driven through `BPF_PROG_TEST_RUN` with synthetic events:
//! faults are attributed to their VM and split local/remote by node on a fixture two-node
//! topology this host does not have, and the scheduler's placement decisions (which a one-node
//! host never makes) are counted per VM, kind and node pair, from the classic records' fields and
//! from the raw tracepoints' task pointers and CPU ids.

mod support;

use std::path::Path;

use kvmtop::{
    families::numa::{MoveKind, NumaFaultCounts, NumaFaultId, NumaMoveId},
    host::topology::Topology,
    model::running::Running as _,
};
use monitor_common::numa::{
    HARNESS_MOVED_IS_CURRENT, HARNESS_NUMA_FAULT, HARNESS_NUMA_MOVE, HARNESS_NUMA_PLACEMENT_RAW,
    HARNESS_OTHER_IS_CURRENT, NUMA_NODE_NONE, NumaMoveKind, PROG_NUMA_HARNESS, TNF_FAULT_LOCAL,
    TNF_MIGRATE_FAIL, TNF_MIGRATED,
};
use support::harness::VmmHarness;

/// A fault of process `pid` on `cpu`, as `task_numa_fault` gets it.
fn fault(h: &mut VmmHarness, pid: u32, cpu: u64, mem_node: u64, pages: u64, flags: u64) {
    h.run(
        PROG_NUMA_HARNESS,
        None,
        &[HARNESS_NUMA_FAULT, pid.into(), cpu, mem_node, pages, flags],
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

    let reading = h.session.families().numa.counters().read();
    let (faults, dropped) = (reading.faults, reading.dropped);
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

/// A placement record: `kind` about a task of `tgid` from node `from` to node `to`; for a swap,
/// `other` is the tgid of the task that moved the other way.
fn decision(h: &mut VmmHarness, kind: NumaMoveKind, tgid: u32, from: u32, to: u32, other: u32) {
    h.run(
        PROG_NUMA_HARNESS,
        None,
        &[
            HARNESS_NUMA_MOVE,
            u64::from(kind as u32),
            tgid.into(),
            from.into(),
            to.into(),
            other.into(),
        ],
    );
}

#[test]
fn placement_decisions_are_counted_per_vm_kind_and_node_pair() {
    const TEST: &str = "placement_decisions_are_counted_per_vm_kind_and_node_pair";
    let Some(mut h) = VmmHarness::open(TEST, 41) else {
        return;
    };
    let (me, stranger) = (h.pid, h.pid + 1);
    for _ in 0..2 {
        decision(&mut h, NumaMoveKind::Move, me, 0, 1, 0);
    }
    decision(&mut h, NumaMoveKind::Move, me, 1, 0, 0);
    // A swap with a task of another process: only the VM's side counts, from 1 to 0.
    decision(&mut h, NumaMoveKind::Swap, stranger, 0, 1, me);
    // A swap between two threads of the VM counts twice, once each way.
    decision(&mut h, NumaMoveKind::Swap, me, 0, 1, me);
    // A move that found no CPU, with and without a candidate node.
    decision(&mut h, NumaMoveKind::Stick, me, 1, 0, 0);
    decision(&mut h, NumaMoveKind::Stick, me, 1, NUMA_NODE_NONE, 0);
    // Not a watched VMM.
    decision(&mut h, NumaMoveKind::Move, stranger, 0, 1, 0);

    assert_moves(
        &h,
        me,
        &[
            (MoveKind::Move, Some(0), Some(1), 2),
            (MoveKind::Move, Some(1), Some(0), 1),
            (MoveKind::Swap, Some(1), Some(0), 2),
            (MoveKind::Swap, Some(0), Some(1), 1),
            (MoveKind::Stick, Some(1), Some(0), 1),
            (MoveKind::Stick, Some(1), None, 1),
        ],
    );
}

/// Asserts that the placement decisions counted are exactly `expected` (kind, from node, to
/// node, count), all of process `pid`, and that no fault and no drop was counted.
fn assert_moves(h: &VmmHarness, pid: u32, expected: &[(MoveKind, Option<u32>, Option<u32>, u64)]) {
    let reading = h.session.families().numa.counters().read();
    let expected: std::collections::HashMap<NumaMoveId, u64> = expected
        .iter()
        .map(|&(kind, from_node, to_node, count)| {
            let id = NumaMoveId {
                pid,
                kind,
                from_node,
                to_node,
            };
            (id, count)
        })
        .collect();
    assert_eq!(reading.moves, expected);
    assert!(reading.faults.is_empty(), "{:?}", reading.faults);
    assert_eq!(reading.dropped, 0);
}

/// The raw arguments of a placement tracepoint, run through its raw program's handler:
/// `kind` from `src_cpu` to `dst_cpu` (a C int; -1 for none), with the moved and the other task
/// the test's own (`current` flags) or null.
fn raw_decision(h: &mut VmmHarness, kind: NumaMoveKind, src_cpu: i32, dst_cpu: i32, current: u64) {
    let cpu = |c: i32| u64::from(c.cast_unsigned());
    h.run(
        PROG_NUMA_HARNESS,
        None,
        &[
            HARNESS_NUMA_PLACEMENT_RAW,
            u64::from(kind as u32),
            cpu(src_cpu),
            cpu(dst_cpu),
            current,
        ],
    );
}

/// The BTF and raw placement programs get task pointers and CPU ids instead of the classic
/// record's tgids and nodes. Their handlers read the tgid from a real task (the test's own, at
/// the offset this kernel's BTF gives) and name each CPU's node from the CPU places the agent
/// wrote (a fixture two-node topology), as the classic records do with `cpu_to_node`.
#[test]
fn raw_placement_arguments_are_read_from_the_task_and_the_cpu_places() {
    const TEST: &str = "raw_placement_arguments_are_read_from_the_task_and_the_cpu_places";
    let Some(mut h) = VmmHarness::open(TEST, 42) else {
        return;
    };
    // The handlers read the current task's tgid: this test process is the watched VMM.
    let me = std::process::id();
    let failed = h.session.families_mut().vmm_watch_mut().insert(me);
    assert!(failed.is_empty(), "cannot watch {failed:?}");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/topology/dual-socket");
    let topology = Topology::read(&root).expect("fixture topology");
    h.session
        .families_mut()
        .places_mut()
        .write(&topology)
        .expect("writing CPU places");
    let (moved, other, both) = (
        HARNESS_MOVED_IS_CURRENT,
        HARNESS_OTHER_IS_CURRENT,
        HARNESS_MOVED_IS_CURRENT | HARNESS_OTHER_IS_CURRENT,
    );
    // CPU 1 is on node 0, CPU 5 on node 1; CPU 4000 is not described.
    raw_decision(&mut h, NumaMoveKind::Move, 1, 5, moved);
    raw_decision(&mut h, NumaMoveKind::Move, 4000, 1, moved);
    // A null task counts nothing.
    raw_decision(&mut h, NumaMoveKind::Move, 1, 5, 0);
    // Both tasks the VM's: once each way.
    raw_decision(&mut h, NumaMoveKind::Swap, 1, 5, both);
    // Only the other task the VM's: it moved from the destination to the source.
    raw_decision(&mut h, NumaMoveKind::Swap, 5, 1, other);
    // Only the task that stuck counts, never the candidate; no candidate CPU is no node.
    raw_decision(&mut h, NumaMoveKind::Stick, 1, 5, both);
    raw_decision(&mut h, NumaMoveKind::Stick, 5, -1, moved);

    assert_moves(
        &h,
        me,
        &[
            (MoveKind::Move, Some(0), Some(1), 1),
            (MoveKind::Move, None, Some(0), 1),
            (MoveKind::Swap, Some(0), Some(1), 2),
            (MoveKind::Swap, Some(1), Some(0), 1),
            (MoveKind::Stick, Some(0), Some(1), 1),
            (MoveKind::Stick, Some(1), None, 1),
        ],
    );
}
