//! The per-event accounting shared by the NUMA programs and the test harness: every input (the
//! process, the CPU, the nodes) is an argument, so the harness can drive it with exact values.

#![expect(clippy::inline_always)]

use aya_ebpf::{
    macros::map,
    maps::{PerCpuArray, PerCpuHashMap},
};
use monitor_common::{
    numa::{
        NUMA_FAULTS_CAPACITY, NUMA_MOVES_CAPACITY, NumaFaultKey, NumaFaultStat, NumaMoveKey,
        TNF_FAULT_LOCAL, TNF_MIGRATE_FAIL, TNF_MIGRATED,
    },
    places::PLACE_UNKNOWN,
};

use crate::{places::place, vmms::is_vmm};

#[map(name = "NUMA_FAULTS")]
static NUMA_FAULTS: PerCpuHashMap<NumaFaultKey, NumaFaultStat> =
    PerCpuHashMap::with_max_entries(NUMA_FAULTS_CAPACITY, 0);

#[map(name = "NUMA_MOVES")]
static NUMA_MOVES: PerCpuHashMap<NumaMoveKey, u64> =
    PerCpuHashMap::with_max_entries(NUMA_MOVES_CAPACITY, 0);

#[map(name = "NUMA_DROPS")]
static NUMA_DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Counts one fault of VMM process `tgid` (the caller tested it) on `cpu`.
#[inline(always)]
pub fn on_numa_fault(tgid: u32, cpu: u32, mem_node: u32, pages: u32, flags: u64) {
    let here = place(cpu);
    let cpu_node = if here.known == 0 {
        PLACE_UNKNOWN
    } else {
        here.node
    };
    let key = NumaFaultKey {
        tgid,
        cpu_node,
        mem_node,
        pad: 0,
    };
    let pages = u64::from(pages);
    let of = |flag: u64| if flags & flag == 0 { 0 } else { pages };
    if let Some(stat) = NUMA_FAULTS.get_ptr_mut(key) {
        // SAFETY: per-CPU value owned by this CPU while the program runs.
        unsafe {
            (*stat).faults += 1;
            (*stat).pages += pages;
            (*stat).local_pages += of(TNF_FAULT_LOCAL);
            (*stat).migrated_pages += of(TNF_MIGRATED);
            (*stat).migrate_failed_pages += of(TNF_MIGRATE_FAIL);
        }
        return;
    }
    let first = NumaFaultStat {
        faults: 1,
        pages,
        local_pages: of(TNF_FAULT_LOCAL),
        migrated_pages: of(TNF_MIGRATED),
        migrate_failed_pages: of(TNF_MIGRATE_FAIL),
    };
    // Per-CPU values: writing the first ones is right even if another CPU created the key.
    if NUMA_FAULTS.insert(key, first, 0).is_err() {
        count_drop();
    }
}

/// Counts one placement decision (`kind`, a `NumaMoveKind`) about a task of process `tgid`,
/// which the record names (the current task may be another), from node `from` to node `to`;
/// nothing unless `tgid` is a watched VMM.
#[inline(always)]
pub fn on_numa_move(kind: u32, tgid: u32, from_node: u32, to_node: u32) {
    if !is_vmm(tgid) {
        return;
    }
    let key = NumaMoveKey {
        tgid,
        kind,
        from_node,
        to_node,
    };
    if let Some(count) = NUMA_MOVES.get_ptr_mut(key) {
        // SAFETY: per-CPU value owned by this CPU while the program runs.
        unsafe { *count += 1 };
        return;
    }
    // Per-CPU values: writing the first one is right even if another CPU created the key.
    if NUMA_MOVES.insert(key, 1, 0).is_err() {
        count_drop();
    }
}

/// Counts an event lost to a full map.
#[inline(always)]
fn count_drop() {
    if let Some(drops) = NUMA_DROPS.get_ptr_mut(0) {
        // SAFETY: per-CPU slot owned by this CPU while the program runs.
        unsafe { *drops += 1 };
    }
    crate::diagnostics::report(monitor_common::diagnostics::Condition::NumaMapFull);
}
